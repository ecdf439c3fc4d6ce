"""What schema revision this build expects, read from its own Alembic scripts."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parent.parent


def alembic_base() -> Path:
    """A checkout keeps alembic.ini beside app/; an installed package (the image) runs from a folder with it."""
    return Path.cwd() if (Path.cwd() / "alembic.ini").exists() else ROOT


def alembic_config() -> Config:
    base = alembic_base()
    config = Config(str(base / "alembic.ini"))
    config.set_main_option("script_location", str(base / "migrations"))
    return config


@lru_cache(maxsize=1)
def expected_head() -> str | None:
    """The head revision, or None when the migration scripts are not beside this build."""
    base = alembic_base()
    if not (base / "migrations").is_dir():
        return None
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return heads[0] if len(heads) == 1 else None
