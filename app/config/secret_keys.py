"""Signing keys: which values are unfit for production, and the development secrets file that fills them in."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

# Secrets that appear in docs, tutorials and plugin defaults: anyone can sign tokens with them.
WELL_KNOWN_SECRETS = frozenset(
    s.lower()
    for s in (
        "SomethingSecret",
        "SuperSecretKey",
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "secret",
        "jwt-secret",
        "jwt_secret",
        "mysecret",
        "my-secret",
        "your-secret-key",
        "your_secret_key",
        "yoursecretkey",
        "tobemodified",
        "supersecret",
        "super-secret",
        "password",
        "default",
        "development",
        "dev-secret",
        "test",
        "refresh-secret",
    )
)
MIN_SECRET_BYTES = 32
SECRET_FIELDS = ("jwt_secret", "refresh_jwt_secret")


def secret_problem(name: str, value: str) -> str | None:
    """Why ``value`` is not fit to sign production tokens, or None."""
    if not value:
        return f"{name} is missing"
    if value.strip().lower() in WELL_KNOWN_SECRETS:
        return f"{name} is a well-known placeholder value"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{name} is shorter than {MIN_SECRET_BYTES} bytes"
    return None


def read_secrets(path: Path) -> dict[str, Any]:
    """The development secrets stored at ``path``; empty when there is no file (or it holds no object)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text() or "{}")
    return data if isinstance(data, dict) else {}


def write_secrets(path: Path, values: dict[str, Any], *, create_only: bool) -> dict[str, Any]:
    """Write atomically (a whole file or none). When creating, the first of several starting workers wins and
    the others adopt its secrets, so every worker signs with the same keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".refreshd-secrets-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(values, handle, indent=2)
        if create_only:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return read_secrets(path)
        else:
            os.replace(temporary, path)
            temporary = ""
        return values
    finally:
        if temporary:
            os.unlink(temporary)
