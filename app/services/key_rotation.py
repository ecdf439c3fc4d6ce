"""Staged rotation of the access-token signing keys, without logging anyone out.

1. ``generate``: a new key joins the file, *published*: it is in ``/.well-known/jwks.json`` but signs nothing, so
   every resource server can learn it before the first token it signs reaches them.
2. ``promote``: it becomes the first key and signs; the key it replaces stays and verifies the tokens it signed.
   Safe once the new key has been published for ``JWKS_MAX_AGE`` (every cached JWK Set has been refetched) plus one
   ``JWT_SIGNING_KEYS_RELOAD_INTERVAL`` (every server process has read the file).
3. ``retire``: the old key leaves the file. Safe once it stopped signing ``JWT_EXPIRES_IN`` ago plus one reload
   interval (the last token it signed, on the last server to notice, has expired).

Each step refuses to run early unless forced, and says when it will be safe. The file is rewritten whole (a
temporary file renamed over it, mode 0600), under a lock, so two operators cannot lose each other's change and a
server never reads half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from app.security.keys import (
    ASYMMETRIC_ALGORITHMS,
    KeySetError,
    SigningKey,
    dump_key_set,
    generate_key,
    parse_key_set,
    with_notes,
)


class RotationError(Exception):
    """A step refused, with the reason and what to do, in one line."""


class Role(StrEnum):
    SIGNING = "signing"  # the first key: signs every new token
    PUBLISHED = "published"  # has never signed: waiting to be promoted
    VERIFYING = "verifying"  # signed before; verifies the tokens it signed until it is retired


@dataclass(frozen=True)
class RotationPolicy:
    access_ttl: timedelta
    reload_interval: timedelta
    jwks_max_age: timedelta

    @property
    def promote_after(self) -> timedelta:
        return self.jwks_max_age + self.reload_interval

    @property
    def retire_after(self) -> timedelta:
        return self.access_ttl + self.reload_interval


@dataclass(frozen=True)
class KeyStatus:
    kid: str
    algorithm: str
    role: Role
    created: datetime | None
    promoted: datetime | None
    demoted: datetime | None
    # When the key's next step (promote a published key, retire a verifying one) is safe; None for the signing
    # key, or when the file does not say when the key was created or stopped signing.
    next_step_at: datetime | None


def _role(key: SigningKey, position: int) -> Role:
    if position == 0:
        return Role.SIGNING
    notes = key.notes
    if notes.created is not None and notes.promoted is None and notes.demoted is None:
        return Role.PUBLISHED
    # Signed before, or a key of another tool's file whose history is unknown: it may have signed.
    return Role.VERIFYING


class KeyFile:
    """One key set file, as ``refreshd keys`` reads and changes it."""

    def __init__(self, path: Path, policy: RotationPolicy, algorithm: str | None = None) -> None:
        """``algorithm``: the set's, for a file whose keys do not name theirs (JWT_ALGORITHM)."""
        # The file itself, not a link to it: a rename over the link would replace the link.
        self.path = Path(os.path.realpath(path))
        self.policy = policy
        self.algorithm = algorithm

    # --- reading --------------------------------------------------------------------------------------------

    def read(self) -> tuple[SigningKey, ...]:
        """The keys, the signing key first; none when there is no file yet."""
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return ()
        except OSError as exc:
            raise RotationError(f"{self.path} cannot be read ({exc.strerror})") from None
        try:
            return parse_key_set(content, _algorithm_of(content, self.algorithm))
        except KeySetError as exc:
            raise RotationError(f"{self.path}: {exc}") from None

    def status(self) -> list[KeyStatus]:
        return [self._status(key, position) for position, key in enumerate(self.read())]

    def _status(self, key: SigningKey, position: int) -> KeyStatus:
        role = _role(key, position)
        notes = key.notes
        next_step_at = None
        if role is Role.PUBLISHED and notes.created is not None:
            next_step_at = notes.created + self.policy.promote_after
        elif role is Role.VERIFYING and notes.demoted is not None:
            next_step_at = notes.demoted + self.policy.retire_after
        return KeyStatus(
            key.kid,
            key.algorithm,
            role,
            notes.created,
            notes.promoted,
            notes.demoted,
            next_step_at,
        )

    # --- the steps ------------------------------------------------------------------------------------------

    def generate(self, algorithm: str, now: datetime, kid: str | None = None) -> KeyStatus:
        """Add a new key: published, or signing at once when it is the file's first."""
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise RotationError(f"--alg must be one of {', '.join(ASYMMETRIC_ALGORITHMS)}")
        with self._locked():
            keys = self.read()
            if keys and keys[0].algorithm != algorithm:
                raise RotationError(
                    f"{self.path} holds {keys[0].algorithm} keys: a set has one algorithm "
                    f"(rotate to another with a new file and a restart)"
                )
            try:
                key = generate_key(algorithm, now, kid)
            except KeySetError as exc:
                raise RotationError(str(exc)) from None
            if any(existing.kid == key.kid for existing in keys):
                raise RotationError(f"{self.path} already has a key {key.kid!r}")
            if not keys:
                key = with_notes(key, promoted=now)
            self._write((*keys, key))
        return self._status(key, len(keys))

    def promote(self, kid: str, now: datetime, *, force: bool = False) -> KeyStatus:
        """Make ``kid`` the signing key; the one it replaces only verifies from now on. Returns the replaced key's
        status (its ``next_step_at``: when it may be retired)."""
        with self._locked():
            keys = self.read()
            position = self._position(keys, kid)
            if position == 0:
                raise RotationError(f"{kid!r} is already the signing key")
            key = keys[position]
            ready = self._status(key, position).next_step_at
            if not force and key.notes.created is None and key.notes.promoted is None:
                raise RotationError(
                    f"the file does not say when {kid!r} was published: resource servers may not have it "
                    f"yet; promote it JWKS_MAX_AGE after it was added, with --force"
                )
            if not force and _role(key, position) is Role.PUBLISHED and ready and now < ready:
                raise RotationError(
                    f"{kid!r} was published at {_when(key.notes.created)}: resource servers may "
                    f"cache the old JWK Set for JWKS_MAX_AGE and servers reread the file every "
                    f"JWT_SIGNING_KEYS_RELOAD_INTERVAL; promote it from {_when(ready)} (or --force)"
                )
            previous = with_notes(keys[0], demoted=now)
            promoted = with_notes(key, promoted=now, demoted=None)
            rest = [k for i, k in enumerate(keys) if i not in (0, position)]
            self._write((promoted, previous, *rest))
        return self._status(previous, 1)

    def retire(self, kid: str, now: datetime, *, force: bool = False) -> KeyStatus:
        """Remove ``kid``: tokens it signed are refused from then on."""
        with self._locked():
            keys = self.read()
            position = self._position(keys, kid)
            if position == 0:
                raise RotationError(
                    f"{kid!r} is the signing key: promote another key first "
                    f"(`refreshd keys generate`, then `refreshd keys promote`)"
                )
            key = keys[position]
            status = self._status(key, position)
            if not force and status.role is Role.VERIFYING:
                if status.next_step_at is None:
                    raise RotationError(
                        f"the file does not say when {kid!r} stopped signing: tokens it signed may "
                        f"still be valid; wait JWT_EXPIRES_IN after it stopped, then --force"
                    )
                if now < status.next_step_at:
                    raise RotationError(
                        f"{kid!r} stopped signing at {_when(key.notes.demoted)}: tokens it signed "
                        f"are valid for JWT_EXPIRES_IN; retire it from {_when(status.next_step_at)} "
                        f"(or --force, and those tokens are refused)"
                    )
            self._write(tuple(k for i, k in enumerate(keys) if i != position))
        return status

    def _position(self, keys: tuple[SigningKey, ...], kid: str) -> int:
        for position, key in enumerate(keys):
            if key.kid == kid:
                return position
        known = ", ".join(key.kid for key in keys) or "none"
        raise RotationError(f"{self.path} has no key {kid!r} (it has: {known})")

    # --- the file -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One change at a time: a lock file beside the key file, held for the read-change-write."""
        lock = self.path.with_name(f".{self.path.name}.lock")
        try:
            handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise RotationError(f"cannot lock {self.path} ({exc.strerror})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)

    def _write(self, keys: tuple[SigningKey, ...]) -> None:
        """Replace the file whole: a server rereading it sees the old set or the new one. The new file keeps the
        old one's owner and group (the server must still read it) and its mode, at most 0640 (owner read-write,
        group read: what a production start accepts); a new file is 0600."""
        try:
            before: os.stat_result | None = self.path.stat()
        except FileNotFoundError:
            before = None
        mode = 0o600 if before is None else stat.S_IMODE(before.st_mode) & 0o640
        try:
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        except OSError as exc:
            raise RotationError(f"cannot write beside {self.path} ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                if before is not None:
                    _keep_owner(handle.fileno(), before, self.path)
                handle.write(dump_key_set(keys))
                handle.flush()
                os.fchmod(handle.fileno(), mode)
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            temporary = ""
        finally:
            if temporary:
                os.unlink(temporary)


def _keep_owner(fd: int, before: os.stat_result, path: Path) -> None:
    """Give the replacement the old file's owner and group, or refuse: written by another user (an operator
    with sudo), the server could no longer read it, and the next reload would fail."""
    mine = os.fstat(fd)
    if (mine.st_uid, mine.st_gid) == (before.st_uid, before.st_gid):
        return
    try:
        os.fchown(fd, before.st_uid, before.st_gid)
    except PermissionError:
        raise RotationError(
            f"{path} belongs to uid {before.st_uid}, gid {before.st_gid}: run this command as its owner "
            f"(a file written by another user could be unreadable to the server)"
        ) from None


def _algorithm_of(content: bytes, fallback: str | None) -> str:
    """The set's algorithm: its first key's ``alg`` (parse_key_set then holds every key to it), else
    ``fallback``."""
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        raise KeySetError("the key set is not JSON") from None
    try:
        algorithm = document["keys"][0].get("alg", fallback)
    except (KeyError, IndexError, TypeError, AttributeError):
        raise KeySetError('the key set is not a JWK Set: {"keys": [...]}') from None
    if algorithm is None:
        raise KeySetError("the key set's first key does not name its alg: set JWT_ALGORITHM")
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        raise KeySetError(f"the first key's alg is {algorithm!r}, not ES256 or RS256")
    return str(algorithm)


def _when(value: datetime | None) -> str:
    return "an unknown time" if value is None else f"{value:%Y-%m-%dT%H:%M:%SZ}"
