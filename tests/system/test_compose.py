"""compose.yaml: refreshd with PostgreSQL and Redis, as the README's production-like setup describes it.

No compose engine runs here: the file is read, and what can drift is checked. Every variable it gives refreshd is
a real setting, the services it waits for say when they are healthy, and it fails loudly without its secrets.
``tests/system/test_container.py`` starts the built image with this very environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
# ${NAME}, ${NAME:-default}, ${NAME:?error}, as compose interpolates them.
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


def load() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation of the forms this file uses: a missing required variable is an error."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group("name", "op", "arg")
        if name in variables and variables[name] != "":
            return variables[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return VARIABLE.sub(substitute, value)


def refreshd_environment(variables: dict[str, str]) -> dict[str, str]:
    environment = load()["services"]["refreshd"]["environment"]
    return {key: interpolate(str(value), variables) for key, value in environment.items()}


def test_refreshd_is_given_real_settings_only() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    given = set(load()["services"]["refreshd"]["environment"])
    assert given <= settings, given - settings
    assert {"DATABASE_URL", "REDIS_URL", "JWT_SECRET", "REFRESH_JWT_SECRET"} <= given


def test_it_refuses_to_start_without_its_secrets() -> None:
    for missing in ("POSTGRES_PASSWORD", "JWT_SECRET", "REFRESH_JWT_SECRET"):
        variables = {"POSTGRES_PASSWORD": "p", "JWT_SECRET": "a", "REFRESH_JWT_SECRET": "b"}
        del variables[missing]
        with pytest.raises(KeyError, match=missing):
            refreshd_environment(variables)


def test_refreshd_waits_for_healthy_postgresql_and_redis_built_from_this_dockerfile() -> None:
    services = load()["services"]
    assert set(services) == {"refreshd", "postgres", "redis"}
    refreshd = services["refreshd"]
    assert refreshd["build"] == "."
    assert (ROOT / "Dockerfile").exists()
    assert refreshd["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    environment = refreshd_environment(
        {"POSTGRES_PASSWORD": "pw", "JWT_SECRET": "a", "REFRESH_JWT_SECRET": "b"}
    )
    assert environment["DATABASE_URL"] == "postgresql+asyncpg://refreshd:pw@postgres:5432/refreshd"
    assert environment["REDIS_URL"].startswith("redis://redis:6379/")
    postgres = services["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("refreshd", "refreshd")
    # Published on loopback only, and stopped within the grace a SIGTERM needs.
    assert all(str(port).startswith("127.0.0.1:") for port in refreshd["ports"])
    assert refreshd["stop_grace_period"] == "10s"
