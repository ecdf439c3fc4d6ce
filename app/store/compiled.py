"""Statements compiled once to the driver's own SQL, with their values' conversions derived from the columns.

A statement is written once with SQLAlchemy Core, compiled at first use for the database's dialect and cached:
each call only binds values and runs the SQL on asyncpg or sqlite3. What SQLAlchemy would do to a value on its way
in and out (a UTC time stored as text on SQLite, 0/1 read back as a boolean, JSON encoded) is taken from the
dialect's own processors for each parameter's and each result column's type, never written by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import SelectBase
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any] | None
Row = dict[str, Any]


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor:
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor:
    return type_.dialect_impl(dialect).result_processor(dialect, None)


def _result_columns(statement: ClauseElement) -> list[tuple[str, TypeEngine[Any]]]:
    """The names and types of what ``statement`` returns: a SELECT's columns, or a DML statement's RETURNING."""
    if isinstance(statement, SelectBase):
        columns = list(statement.selected_columns)
    elif isinstance(statement, UpdateBase):
        columns = list(statement.exported_columns)
    else:
        return []
    return [(str(column.key), column.type) for column in columns]


def _parameter(compiled: SQLCompiler, name: str) -> BindParameter[Any]:
    """The parameter ``name`` stands for; one of an IN list's is named after its list (``id_1_3`` of ``id_1``)."""
    parameter = compiled.binds.get(name)
    if parameter is None:
        parameter = compiled.binds[name.rsplit("_", 1)[0]]
    return parameter


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement in the driver's SQL: its parameters in positional order with their conversions, and its result
    columns by name with theirs."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    unique: tuple[tuple[str, Processor], ...]  # each parameter once, with its conversion
    order: (
        tuple[int, ...] | None
    )  # for each position, its parameter in ``unique``; None: the same order
    columns: tuple[str, ...]
    results: tuple[
        tuple[int, Callable[[Any], Any]], ...
    ]  # (position, conversion), only where one is needed
    writes: bool

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Dialect) -> Compiled:
        # IN lists of values given in the statement (``column.in_([...])``) are spelled out, one parameter each.
        compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        assert isinstance(compiled, SQLCompiler)
        names = tuple(compiled.positiontup or ())
        parameters = [_parameter(compiled, name) for name in names]
        # Values fixed in the statement (the 1 of generation + 1); every other parameter must be given.
        fixed = {
            name: compiled.params.get(name)
            for name, parameter in zip(names, parameters, strict=True)
            if not parameter.required
        }
        unique: dict[str, Processor] = {}
        for name, parameter in zip(names, parameters, strict=True):
            if name not in unique:
                unique[name] = _bind_processor(parameter.type, dialect)
        positions = {name: index for index, name in enumerate(unique)}
        order = tuple(positions[name] for name in names)
        columns = _result_columns(statement)
        results = tuple(
            (position, processor)
            for position, (_name, type_) in enumerate(columns)
            if (processor := _result_processor(type_, dialect)) is not None
        )
        writes = bool(compiled.isinsert or compiled.isupdate or compiled.isdelete)
        return cls(
            compiled.string,
            names,
            fixed,
            tuple(unique.items()),
            None if len(order) == len(unique) else order,
            tuple(name for name, _ in columns),
            results,
            writes,
        )

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The parameters in the driver's order, converted as the dialect stores them (each value once, however
        often SQLite's positional style repeats it)."""
        defaults = self.defaults
        converted = []
        for name, process in self.unique:
            value = values[name] if name in values else defaults[name]
            if process is not None and value is not None:
                value = process(value)
            converted.append(value)
        if self.order is None:
            return converted
        return [converted[index] for index in self.order]

    def row(self, raw: Sequence[Any] | None) -> Row | None:
        """A driver's row as ``{column name: value}``, each value as its column's type reads it."""
        if raw is None:
            return None
        values = list(raw)
        for position, process in self.results:
            values[position] = process(values[position])
        return dict(zip(self.columns, values, strict=True))


class StatementCache:
    """Compiled statements by statement object: the store's statements are module constants, compiled once."""

    LIMIT = 512  # statements built per call (rare) must not grow it without bound

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[ClauseElement, Compiled] = {}

    def __call__(self, statement: ClauseElement) -> Compiled:
        compiled = self._compiled.get(statement)
        if compiled is None:
            if len(self._compiled) >= self.LIMIT:
                self._compiled.clear()
            compiled = self._compiled[statement] = Compiled.of(statement, self.dialect)
        return compiled
