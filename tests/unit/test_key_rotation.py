"""The staged rotation's file steps: generate, promote, retire, each refused until it is safe (time injected)."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.security.keys import parse_key_set
from app.services.key_rotation import KeyFile, Role, RotationError, RotationPolicy

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
POLICY = RotationPolicy(
    access_ttl=timedelta(minutes=15),
    reload_interval=timedelta(seconds=10),
    jwks_max_age=timedelta(minutes=5),
)


@pytest.fixture
def keys(tmp_path: Path) -> KeyFile:
    return KeyFile(tmp_path / "signing-keys.json", POLICY)


def kids(keys: KeyFile) -> list[tuple[str, Role]]:
    return [(status.kid, status.role) for status in keys.status()]


def test_no_file_is_no_keys(keys: KeyFile) -> None:
    assert keys.status() == []


def test_the_first_key_signs_at_once_and_the_file_is_private(keys: KeyFile) -> None:
    first = keys.generate("ES256", T0, "k1")
    assert (first.role, first.promoted, first.next_step_at) == (Role.SIGNING, T0, None)
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    assert [k.kid for k in parse_key_set(keys.path.read_bytes(), "ES256")] == ["k1"]


def test_the_whole_rotation(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    published = keys.generate("ES256", T0 + timedelta(days=30), "k2")
    assert published.role is Role.PUBLISHED
    assert published.next_step_at == T0 + timedelta(days=30, minutes=5, seconds=10)
    assert kids(keys) == [("k1", Role.SIGNING), ("k2", Role.PUBLISHED)]

    promoted_at = T0 + timedelta(days=31)
    replaced = keys.promote("k2", promoted_at)
    assert kids(keys) == [("k2", Role.SIGNING), ("k1", Role.VERIFYING)]
    old = keys.status()[1]
    assert old == replaced
    assert old.demoted == promoted_at
    assert old.next_step_at == promoted_at + timedelta(minutes=15, seconds=10)

    keys.retire("k1", promoted_at + timedelta(hours=1))
    assert kids(keys) == [("k2", Role.SIGNING)]


def test_promote_waits_for_resource_servers_to_see_the_key(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    keys.generate("ES256", T0, "k2")
    early = T0 + timedelta(minutes=5)
    with pytest.raises(RotationError, match=r"promote it from 2026-12-03T09:05:10Z \(or --force\)"):
        keys.promote("k2", early)
    assert kids(keys)[0] == ("k1", Role.SIGNING)  # unchanged
    keys.promote("k2", T0 + timedelta(minutes=5, seconds=10))
    assert kids(keys)[0] == ("k2", Role.SIGNING)


def test_promote_can_be_forced(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    keys.generate("ES256", T0, "k2")
    keys.promote("k2", T0, force=True)
    assert kids(keys) == [("k2", Role.SIGNING), ("k1", Role.VERIFYING)]


def test_retire_waits_for_the_last_token_of_the_key_to_expire(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    keys.generate("ES256", T0, "k2")
    keys.promote("k2", T0 + timedelta(hours=1))
    with pytest.raises(RotationError, match=r"retire it from 2026-12-03T10:15:10Z"):
        keys.retire("k1", T0 + timedelta(hours=1, minutes=15))
    assert [kid for kid, _ in kids(keys)] == ["k2", "k1"]
    keys.retire("k1", T0 + timedelta(hours=1), force=True)
    assert kids(keys) == [("k2", Role.SIGNING)]


def test_a_key_that_never_signed_retires_at_once(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    keys.generate("ES256", T0, "k2")
    keys.retire("k2", T0)
    assert kids(keys) == [("k1", Role.SIGNING)]


def test_the_signing_key_cannot_be_retired(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    with pytest.raises(RotationError, match="is the signing key: promote another key first"):
        keys.retire("k1", T0 + timedelta(days=365), force=True)


def test_rolling_back_to_the_previous_key_needs_no_wait(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    keys.generate("ES256", T0, "k2")
    keys.promote("k2", T0 + timedelta(hours=1))
    keys.promote("k1", T0 + timedelta(hours=1, minutes=1))
    assert kids(keys) == [("k1", Role.SIGNING), ("k2", Role.VERIFYING)]


def test_unknown_kids_and_repeated_steps(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    with pytest.raises(RotationError, match=r"has no key 'k9' \(it has: k1\)"):
        keys.promote("k9", T0)
    with pytest.raises(RotationError, match="is already the signing key"):
        keys.promote("k1", T0)
    with pytest.raises(RotationError, match="already has a key 'k1'"):
        keys.generate("ES256", T0, "k1")


def test_one_algorithm_per_file(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    with pytest.raises(RotationError, match="holds ES256 keys"):
        keys.generate("RS256", T0, "r1")
    with pytest.raises(RotationError, match="--alg must be one of ES256, RS256"):
        keys.generate("HS256", T0, "h1")


def test_rsa_keys_rotate_too(keys: KeyFile) -> None:
    keys.generate("RS256", T0, "r1")
    keys.generate("RS256", T0, "r2")
    keys.promote("r2", T0 + timedelta(hours=1))
    assert kids(keys) == [("r2", Role.SIGNING), ("r1", Role.VERIFYING)]


def test_a_group_readable_mode_is_kept_and_others_lose_access(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    os.chmod(keys.path, 0o644)
    keys.generate("ES256", T0, "k2")
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o640


def test_a_broken_file_is_never_overwritten(keys: KeyFile) -> None:
    keys.path.write_text('{"keys": [{"kid": "half')
    with pytest.raises(RotationError, match=r"signing-keys\.json: the key set is not JSON"):
        keys.generate("ES256", T0, "k1")
    assert keys.path.read_text() == '{"keys": [{"kid": "half'


def test_keys_from_another_tool_retire_only_when_forced(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    keys.generate("ES256", T0, "k2")
    keys.promote("k2", T0 + timedelta(hours=1))
    document = json.loads(keys.path.read_text())
    for entry in document["keys"]:
        entry.pop("refreshd")
    keys.path.write_text(json.dumps(document))
    # Nothing says whether or when it signed: it may have, so it retires only when forced.
    assert kids(keys) == [("k2", Role.SIGNING), ("k1", Role.VERIFYING)]
    with pytest.raises(RotationError, match="does not say when 'k1' stopped signing"):
        keys.retire("k1", T0 + timedelta(days=365))
    keys.retire("k1", T0 + timedelta(days=365), force=True)
    assert kids(keys) == [("k2", Role.SIGNING)]


def test_no_temporary_file_is_left_behind(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    keys.generate("ES256", T0, "k2")
    keys.promote("k2", T0, force=True)
    names = sorted(p.name for p in keys.path.parent.iterdir())
    assert names == [".signing-keys.json.lock", "signing-keys.json"]


def test_a_key_of_unknown_age_is_promoted_only_when_forced(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    keys.generate("ES256", T0, "k2")
    document = json.loads(keys.path.read_text())
    del document["keys"][1]["refreshd"]  # added by hand: nobody knows since when it is published
    keys.path.write_text(json.dumps(document))
    with pytest.raises(RotationError, match="does not say when 'k2' was published"):
        keys.promote("k2", T0 + timedelta(days=30))
    keys.promote("k2", T0 + timedelta(days=30), force=True)
    assert kids(keys)[0] == ("k2", Role.SIGNING)


def test_group_write_and_special_bits_are_dropped(keys: KeyFile) -> None:
    keys.generate("ES256", T0, "k1")
    os.chmod(keys.path, 0o2670)  # noqa: S103 - the mode to be corrected
    keys.generate("ES256", T0, "k2")
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o640


def test_a_link_to_the_file_is_followed_not_replaced(tmp_path: Path) -> None:
    target = KeyFile(tmp_path / "real.json", POLICY)
    target.generate("ES256", T0, "k1")
    link = tmp_path / "signing-keys.json"
    link.symlink_to(target.path)
    KeyFile(link, POLICY).generate("ES256", T0, "k2")
    assert link.is_symlink()
    assert [k.kid for k in parse_key_set(target.path.read_bytes(), "ES256")] == ["k1", "k2"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_the_file_keeps_its_owner_and_group(keys: KeyFile) -> None:
    """An operator with sudo must not leave a file the service's user can no longer read."""
    keys.generate("ES256", T0, "k1")
    os.chown(keys.path, 4321, 4322)
    keys.generate("ES256", T0, "k2")
    owner = keys.path.stat()
    assert (owner.st_uid, owner.st_gid) == (4321, 4322)


def test_a_file_whose_keys_do_not_name_their_algorithm(tmp_path: Path) -> None:
    made = KeyFile(tmp_path / "k.json", POLICY)
    made.generate("RS256", T0, "r1")
    document = json.loads(made.path.read_text())
    del document["keys"][0]["alg"]
    made.path.write_text(json.dumps(document))
    with pytest.raises(RotationError, match="does not name its alg: set JWT_ALGORITHM"):
        made.status()
    assert [s.kid for s in KeyFile(made.path, POLICY, "RS256").status()] == ["r1"]
