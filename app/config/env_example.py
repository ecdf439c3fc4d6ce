"""``.env.example``, written from ``Settings``: every setting, its default and its one-line description.

    python -m app.config.env_example          rewrite .env.example from app/settings.py
    python -m app.config.env_example --check  exit 1 if .env.example is not what app/settings.py says

``tests/unit/test_env_example.py`` runs the check, so a setting cannot be added without it.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from app.durations import format_duration
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / ".env.example"
WIDTH = 118

HEADER = """\
# refreshd configuration: every setting, its default, and what it does. Generated from app/settings.py by
# `python -m app.config.env_example`: edit the descriptions there, not here.
#
# Settings come from the environment, or from a .env file in the working directory: copy this file to .env and
# uncomment what you change. Nothing needs setting in development; production needs at least JWT_SECRET,
# REFRESH_JWT_SECRET and DATABASE_URL (see README "Production").
# Durations: '600s', '15m', '2h', '30d' or plain seconds. Lists: comma-separated. A setting shown as NAME= has
# no default: leave it commented out to keep it unset.
"""

# The sections, in order, and their settings, in order. The mixins' settings follow, each under a heading of its own.
SECTIONS: dict[str, tuple[str, ...]] = {
    "The service": ("environment", "public_url", "log_level", "log_format", "dev_secrets_file"),
    "Database": ("database_url", "db_pool_size", "sqlite_busy_timeout_ms"),
    "Tokens and sessions": (
        "jwt_secret",
        "jwt_algorithm",
        "jwt_expires_in",
        "refresh_jwt_secret",
        "refresh_jwt_algorithm",
        "refresh_token_expires_in",
        "session_max_age",
        "refresh_token_reuse_grace",
        "refresh_token_rotation",
        "request_refresh_on_all",
        "session_purge_interval",
        "session_purge_batch",
        "audit_retention",
    ),
    "Browsers: the refresh cookie and CORS": (
        "cookie_response",
        "production_url",
        "cookie_name",
        "cookie_secure",
        "cookie_samesite",
        "cookie_domain",
        "cors_origins",
    ),
    "Accounts": (
        "allow_register",
        "email_confirmation",
        "password_min_length",
        "password_max_bytes",
        "reset_password_url",
        "reset_password_ttl",
        "email_confirmation_ttl",
        "email_confirmation_redirect",
    ),
    "Email": (
        "smtp_host",
        "smtp_port",
        "smtp_username",
        "smtp_password",
        "smtp_starttls",
        "smtp_use_tls",
        "smtp_timeout",
        "mail_from",
        "mail_outbox",
        "mail_templates",
    ),
    "Rate limits and proxies": (
        "rate_limit_enabled",
        "rate_limit_max",
        "rate_limit_interval",
        "rate_limit_ipv6_prefix",
        "rate_limit_per_email",
        "rate_limit_login_attempts",
        "redis_url",
        "trusted_proxies",
        "max_body_size",
    ),
    "Password hashing": (
        "argon2_memory_cost",
        "argon2_time_cost",
        "argon2_parallelism",
        "hash_workers",
        "hash_anonymous_concurrency",
        "login_failure_floor_ms",
    ),
    "Metrics": ("metrics_enabled", "metrics_token", "metrics_port", "metrics_host"),
}


def env_name(name: str) -> str:
    """The environment variable of a setting (settings are read case-insensitively, without a prefix)."""
    return name.upper()


def default_text(field: FieldInfo) -> str:
    """The default as the environment would spell it; empty for none."""
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    text = str(value)
    if any(c.isspace() or c in "#'\"\\$" for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _sections() -> Iterator[tuple[str, list[tuple[str, FieldInfo]]]]:
    """SECTIONS in order; then the settings of each mixin (``app/config/docs.py``, ...) under its module's own
    first line; then anything left."""
    fields = Settings.model_fields
    placed = {name for names in SECTIONS.values() for name in names}
    for title, names in SECTIONS.items():
        yield title, [(name, fields[name]) for name in names if name in fields]
    for base in reversed(Settings.__mro__[1:]):
        own = [name for name in vars(base).get("__annotations__", {}) if name in fields]
        members = [(name, fields[name]) for name in own if name not in placed]
        if members:
            placed.update(own)
            doc = sys.modules[base.__module__].__doc__ or base.__name__
            yield doc.strip().splitlines()[0].rstrip(".").replace("``", "`"), members
    rest = [(name, field) for name, field in fields.items() if name not in placed]
    if rest:
        yield "More", rest


def render() -> str:
    """The whole ``.env.example``."""
    parts = [HEADER]
    for title, members in _sections():
        if not members:
            continue
        parts.append(f"\n# --- {title} " + "-" * (WIDTH - 7 - len(title)) + "\n")
        for name, field in members:
            comment = f"{env_name(name)}: {field.description or ''}".rstrip(": ")
            parts.append("\n")
            parts.extend(
                line + "\n"
                for line in textwrap.wrap(
                    comment, WIDTH, initial_indent="# ", subsequent_indent="#   "
                )
            )
            parts.append(f"# {env_name(name)}={default_text(field)}\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.config.env_example", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 if the file is out of date"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not PATH.exists() or PATH.read_text() != text:
            print(
                f"{PATH.name} is out of date: run `python -m app.config.env_example`",
                file=sys.stderr,
            )
            return 1
        return 0
    PATH.write_text(text)
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
