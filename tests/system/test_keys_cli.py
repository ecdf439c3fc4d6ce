"""``refreshd keys`` as an operator runs it: what each step prints, its refusals in one line, the file it writes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from app.security.keys import parse_key_set
from tests.cli_support import run_cli

DATABASE = "sqlite:///unused.db"  # the keys commands never open the database


def keys(*args: str, **env: str) -> tuple[int, str, str]:
    result = run_cli(DATABASE, "keys", *args, **env)
    return result.returncode, result.stdout, result.stderr


def test_a_rotation_as_printed(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    status, out, _ = keys(
        "generate", "--alg", "RS256", "--kid", "r1", JWT_SIGNING_KEYS_FILE=str(path)
    )
    assert status == 0
    assert out.startswith(f"r1: signing in {path}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    status, out, _ = keys("generate", "--alg", "RS256", "--kid", "r2", "--file", str(path))
    assert status == 0
    assert "r2: published" in out
    assert "next: `refreshd keys promote r2` from " in out

    status, _, err = keys("promote", "r2", "--file", str(path))
    assert status == 1
    assert err.count("\n") == 1
    assert err.startswith("refreshd: 'r2' was published at ")
    assert err.rstrip().endswith("(or --force)")

    status, out, _ = keys("promote", "r2", "--force", "--file", str(path))
    assert status == 0
    assert out.startswith(f"r2: signing in {path}; r1 now only verifies\n")
    assert "next: `refreshd keys retire r1` from " in out

    status, out, _ = keys("list", "--json", "--file", str(path))
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["kid"], r["alg"], r["role"]) for r in rows] == [
        ("r2", "RS256", "signing"),
        ("r1", "RS256", "verifying"),
    ]
    assert rows[0]["next_step_at"] == "-"
    status, out, _ = keys("list", "--file", str(path))
    assert out.splitlines()[0].split()[:3] == ["r2", "RS256", "signing"]
    assert "retire: safe from " in out.splitlines()[1]

    status, _, err = keys("retire", "r2", "--file", str(path))
    assert (status, err.split(":")[1].strip()) == (1, "'r2' is the signing key")
    status, out, _ = keys("retire", "r1", "--force", "--file", str(path))
    assert status == 0
    assert [k.kid for k in parse_key_set(path.read_bytes(), "RS256")] == ["r2"]


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    status, _, err = keys("list")
    assert (status, err) == (
        1,
        "refreshd: set JWT_SIGNING_KEYS_FILE, or name the file with --file\n",
    )
    status, _, err = keys("generate", "--alg", "HS256", "--file", str(tmp_path / "k.json"))
    assert status == 2
    assert "invalid choice: 'HS256'" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    status, _, err = keys("list", "--file", str(broken))
    assert (status, err) == (1, f"refreshd: {broken}: the key set is not JSON\n")
    status, out, _ = keys("list", "--file", str(tmp_path / "none.json"))
    assert status == 0
    assert "no keys" in out
