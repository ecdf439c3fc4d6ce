""".env.example is generated from Settings, and stays complete and true: every setting, its default, its
description."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from app.config import env_example
from app.settings import Settings
from tests.support import ROOT


def test_the_committed_file_is_what_settings_say() -> None:
    committed = (ROOT / ".env.example").read_text()
    assert committed == env_example.render(), (
        ".env.example is out of date: run `python -m app.config.env_example`"
    )
    assert env_example.main(["--check"]) == 0


def test_every_setting_has_a_one_line_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []
    multiline = [
        name for name, field in Settings.model_fields.items() if "\n" in (field.description or "")
    ]
    assert multiline == []


def test_every_setting_is_listed_once() -> None:
    text = env_example.render()
    for name in Settings.model_fields:
        assert text.count(f"\n# {name.upper()}=") == 1, name


def test_the_listed_defaults_are_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommenting every line of the file changes nothing: each value it shows is the default, spelled as the
    environment reads it."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    lines = env_example.render().splitlines()
    assignments = [
        line.removeprefix("# ") for line in lines if line.startswith("# ") and "=" in line
    ]
    assignments = [line for line in assignments if line.split("=", 1)[0].isupper()]
    assert len(assignments) == len(Settings.model_fields)
    uncommented = tmp_path / ".env"
    uncommented.write_text("\n".join(assignments) + "\n")
    # NAME= is a setting without a default, which the file says to leave commented out.
    values = {k: v for k, v in dotenv_values(uncommented).items() if v}
    assert Settings(_env_file=None, **values) == Settings(_env_file=None)  # type: ignore[arg-type]
