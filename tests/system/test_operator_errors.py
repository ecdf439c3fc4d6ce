"""Every wrong input an operator can give gets one line naming the setting or argument, and no traceback: the
command line and the server alike, each run as a subprocess as an operator would run it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.cli_support import run_cli
from tests.servers import free_port
from tests.support import ACCESS_SECRET, REFRESH_SECRET, ROOT, recreate_postgres_database


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line of standard error, checked to be one and to hold no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'refreshd.db'}"


# --- settings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "garbage"}, "DATABASE_URL: not a database URL"),
        (
            {"DATABASE_URL": "mysql://root:hunter2@db/app"},
            "DATABASE_URL: unsupported database 'mysql'",
        ),
        (
            {"DATABASE_URL": "sqlite:///no/such/folder/refreshd.db"},
            "DATABASE_URL: the folder 'no/such/folder' of the SQLite file does not exist",
        ),
        ({"DATABASE_URL": "postgresql://u:p@db:99999/app"}, "DATABASE_URL: the port is not"),
        ({"REDIS_URL": "garbage"}, "REDIS_URL: not a Redis URL"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL: Input should be 'DEBUG', 'INFO'"),
        ({"PRODUCTION_URL": "not a url"}, "PRODUCTION_URL: 'not a url' is not an http(s) URL"),
        (
            {"PRODUCTION_URL": "ftp://files.example.com"},
            "PRODUCTION_URL: 'ftp://files.example.com'",
        ),
        ({"PUBLIC_URL": "localhost:8000"}, "PUBLIC_URL: 'localhost:8000' is not an http(s) URL"),
        ({"JWT_EXPIRES_IN": "soon"}, "JWT_EXPIRES_IN: invalid duration 'soon'"),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    env = {"DATABASE_URL": sqlite_url(tmp_path), **env}
    result = run_cli(env.pop("DATABASE_URL"), "audit", **env)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("refreshd: invalid configuration: ")
    assert expected in line
    assert "hunter2" not in line  # a database URL's password is never repeated


def test_migrate_names_a_bad_database_url(tmp_path: Path) -> None:
    result = run_cli(f"sqlite:///{tmp_path}/missing/refreshd.db", "migrate")
    assert result.returncode == 1
    assert "DATABASE_URL: the folder" in one_line(result)


@pytest.mark.parametrize("command", ["audit", "migrate"])
def test_a_database_server_that_is_down_is_named(command: str) -> None:
    url = f"postgresql://postgres:secret-pass@127.0.0.1:{free_port()}/refreshd"
    result = run_cli(url, command)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("refreshd: DATABASE_URL: cannot ")
    assert "Connect" in line  # ConnectionRefusedError, as the driver says it
    assert "secret-pass" not in line


def test_a_database_that_refuses_the_login_is_named() -> None:
    url = "postgresql://no_such_role@127.0.0.1:5432/postgres"
    result = run_cli(url, "audit")
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("refreshd: DATABASE_URL: cannot use the database: ")
    assert "no_such_role" in line


# --- an unmigrated database ----------------------------------------------------------------------------------


def test_an_unmigrated_sqlite_database_is_named(tmp_path: Path) -> None:
    result = run_cli(sqlite_url(tmp_path), "user", "list")
    assert result.returncode == 1
    assert one_line(result) == "refreshd: schema not migrated: run `refreshd migrate`"


def test_an_unmigrated_postgres_database_is_named() -> None:
    url = recreate_postgres_database("unmigrated_cli")
    result = run_cli(url, "audit")
    assert result.returncode == 1
    assert one_line(result) == "refreshd: schema not migrated: run `refreshd migrate`"


# --- arguments and standard input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["import-strapi", "strapi.db", "--batch-size", "0"],
            "argument --batch-size: '0': must be 1",
        ),
        (["audit", "--limit", "-5"], "argument --limit: '-5': must be 1 or more"),
        (["audit", "--limit", "many"], "argument --limit: 'many' is not a whole number"),
        (["user", "list", "--after", "x"], "argument --after: 'x' is not a user id"),
        (["serve", "--port", "70000"], "argument --port: '70000': a port is from 0"),
        (["user", "frobnicate"], "argument ACTION: invalid choice: 'frobnicate'"),
    ],
)
def test_a_bad_argument_is_one_line_naming_it(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = run_cli(sqlite_url(tmp_path), *args)
    assert result.returncode == 2
    line = one_line(result)
    assert expected in line
    assert line.startswith("refreshd")
    assert line.endswith("--help`)")


def test_user_create_without_a_terminal_says_to_use_password_stdin(database_url: str) -> None:
    result = run_cli(database_url, "user", "create", "carol", "carol@example.com", stdin="")
    assert result.returncode == 1
    assert "--password-stdin" in one_line(result)


@pytest.mark.parametrize(
    "command", [["create", "carol", "carol@example.com"], ["set-password", "--id", "1"]]
)
def test_empty_standard_input_is_named(database_url: str, command: list[str]) -> None:
    result = run_cli(database_url, "user", *command, "--password-stdin", stdin="")
    assert result.returncode == 1
    assert one_line(result) == (
        "refreshd: --password-stdin: standard input is empty (write the password to it)"
    )


def test_a_reader_that_goes_away_ends_the_output_quietly(database_url: str) -> None:
    """`refreshd audit | head`: the pipe's reader is gone before the first line (its end closed before the
    command starts, so every write fails), and the command stops with the shell's SIGPIPE status, silently."""
    created = run_cli(
        database_url,
        "user",
        "create",
        "carol",
        "carol@example.com",
        "--password-stdin",
        stdin="Carol-pass-123\n",
    )
    assert created.returncode == 0, created.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "audit"],
            cwd=ROOT,
            env={**_env(database_url)},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == ""


# --- the server ----------------------------------------------------------------------------------------------


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "test",
        "JWT_SECRET": ACCESS_SECRET,
        "REFRESH_JWT_SECRET": REFRESH_SECRET,
        **extra,
    }


SERVER_COMMANDS = {
    "refreshd serve": [sys.executable, "-m", "app.cli", "serve", "--port", "0"],
    "uvicorn": [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "app.main:create_app",
        "--port",
        "0",
    ],
}


@pytest.mark.parametrize("server", SERVER_COMMANDS)
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL: Input should be"),
        ({"DATABASE_URL": "garbage"}, "DATABASE_URL: not a database URL"),
        ({"REDIS_URL": "garbage"}, "REDIS_URL: not a Redis URL"),
        ({"PRODUCTION_URL": "https://"}, "PRODUCTION_URL: 'https://' is not"),
        ({"JWT_ALGORITHM": "ES256"}, "JWT_ALGORITHM=ES256 needs JWT_SIGNING_KEYS_FILE: create one"),
        (
            {"JWT_ALGORITHM": "RS256", "JWT_SIGNING_KEYS_FILE": "/nonexistent/keys.json"},
            "JWT_SIGNING_KEYS_FILE: /nonexistent/keys.json does not exist",
        ),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
def test_the_server_refuses_a_bad_setting_in_one_line(
    tmp_path: Path, server: str, env: dict[str, str], expected: str
) -> None:
    result = subprocess.run(
        SERVER_COMMANDS[server],
        cwd=ROOT,
        env=_env(sqlite_url(tmp_path), **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    line = one_line(result)
    assert line.startswith("refreshd: invalid configuration: ")
    assert expected in line


def test_serve_on_an_unmigrated_database_says_so_and_serves(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=_env(sqlite_url(tmp_path), LOG_LEVEL="WARNING"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # printed before the server starts
        assert first.strip() == (
            "refreshd: warning: schema not migrated: run `refreshd migrate`; "
            "serving anyway, /readyz answers 503 meanwhile"
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)  # polling for the listener
        assert ready.status_code == 503
        assert ready.json()["migrations"] == "schema not migrated: run `refreshd migrate`"
    finally:
        process.kill()
        process.wait()
