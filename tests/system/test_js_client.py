"""The browser client, clients/js (@refreshd/client), through its own npm scripts: types, unit tests (vitest, Node),
the bundle's size, and the browser tests (playwright-core driving Debian's Chromium against real refreshd
servers, which the tests start from this checkout). Part of the README's one test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow

PACKAGE = ROOT / "clients" / "js"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
BUDGET = 4096


def npm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    npm_path = shutil.which("npm")
    assert npm_path is not None, "npm is needed for clients/js (Node 20+)"
    result = subprocess.run(
        [npm_path, *args],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={
            **os.environ,
            "REFRESHD_PYTHON": os.environ.get("REFRESHD_PYTHON") or sys.executable,
            "NO_COLOR": "1",
        },
    )
    assert result.returncode == 0, (
        f"npm {' '.join(args)}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    """Exactly the lock file's packages (npm ci), once per checkout."""
    if not (PACKAGE / "node_modules" / ".package-lock.json").exists():
        npm("ci", "--no-audit", "--no-fund")


def test_types() -> None:
    npm("run", "typecheck")


def test_unit() -> None:
    output = npm("test").stdout
    assert re.search(r"Tests\s+\d+ passed", output), output
    assert "failed" not in output


def test_bundle_size() -> None:
    output = npm("run", "size").stdout
    match = re.search(r"(\d+) bytes gzipped", output)
    assert match is not None, output
    print(output.strip().splitlines()[-1])  # shown in CI's log with -s, and in the report
    assert int(match.group(1)) <= BUDGET


def test_in_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    output = npm("run", "test:browser", timeout=900).stdout
    assert re.search(r"Tests\s+8 passed \(8\)", output), output
