"""Running the ``refreshd`` command line as a subprocess, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import ACCESS_SECRET, REFRESH_SECRET, ROOT


def run_cli(
    database_url: str, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": database_url,
            "ENVIRONMENT": "test",
            "JWT_SECRET": ACCESS_SECRET,
            "REFRESH_JWT_SECRET": REFRESH_SECRET,
            "LOGIN_FAILURE_FLOOR_MS": "0",
            **env,
        },
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
