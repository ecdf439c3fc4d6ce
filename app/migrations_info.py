"""What schema revision this build expects, and where its Alembic scripts are.

The head revision is a constant, not read from the scripts at run time: the server would otherwise import Alembic
(11 MB of resident memory per worker) only to answer ``/readyz``. ``tests/system/test_migrations.py`` checks that it is
Alembic's one head, so a new migration cannot land without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_HEAD = "0007"


def alembic_base() -> Path:
    """A checkout keeps alembic.ini beside app/; an installed package (the image) runs from a folder with it."""
    return Path.cwd() if (Path.cwd() / "alembic.ini").exists() else ROOT


def alembic_config() -> Config:
    from alembic.config import Config

    base = alembic_base()
    config = Config(str(base / "alembic.ini"))
    config.set_main_option("script_location", str(base / "migrations"))
    return config


def expected_head() -> str:
    """The revision this build's schema is at."""
    return SCHEMA_HEAD
