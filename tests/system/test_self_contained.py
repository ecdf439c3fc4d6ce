"""The repository is all a user clones: nothing in it may read the reference material kept beside the checkout
during development (a folder named ``shared`` next to the repository)."""

from __future__ import annotations

import subprocess

from tests.support import ROOT, STRAPI_FIXTURE

# Spelled in two pieces so that this file does not match itself.
OUTSIDE = ".." + "/shared"


def test_no_tracked_file_names_the_folder_beside_the_checkout() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    offenders = []
    for name in filter(None, tracked):
        path = ROOT / name.decode()
        if not path.is_file():
            continue  # deleted in the work tree
        if OUTSIDE.encode() in path.read_bytes():
            offenders.append(name.decode())
    assert offenders == []


def test_the_strapi_fixture_lives_inside_the_repository() -> None:
    assert STRAPI_FIXTURE.is_relative_to(ROOT)
    assert STRAPI_FIXTURE.read_bytes().startswith(b"SQLite format 3\0")
