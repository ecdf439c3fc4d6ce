"""The signing-key file of a running service: read and checked at start, reread when it changes.

A server picks a changed ``JWT_SIGNING_KEYS_FILE`` up by itself: it rereads the file every
``JWT_SIGNING_KEYS_RELOAD_INTERVAL`` (a mounted secret is replaced behind the process's back, with no signal), and at
once on SIGHUP. A file that does not load (half-written by a hand edit, a key that does not parse, a mode that lets
others read it in production) is refused with its reason in the log, and the keys in use stay: a server never ends
up with no key, nor with a key set it would refuse at start. Each process reads the file on its own, so several
instances reading one file agree within one interval; the staged rotation (``app.services.key_rotation``) waits
longer than that between its steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.security.keys import MAX_FILE_BYTES, KeySetError, SigningKey, parse_key_set
from app.services.tokens import PublishedKeys, TokenKeys

if TYPE_CHECKING:
    from app.settings import Settings

logger = logging.getLogger("refreshd.keys")
# Group and others: no bits at all, except that a group may read (a mounted secret shared with the service's group,
# Kubernetes' defaultMode 0440).
_FORBIDDEN_MODE = stat.S_IWGRP | stat.S_IXGRP | stat.S_IRWXO


@dataclass(frozen=True)
class LoadedKeys:
    keys: tuple[SigningKey, ...]
    digest: str  # of the file's bytes: a reload that finds the same bytes does nothing


def _read(
    path: Path, algorithm: str, *, production: bool, unless: str | None = None
) -> LoadedKeys | None:
    """The keys of the file; None when its bytes have the digest ``unless`` (what is in use): parsing costs an
    RSA key ~150 ms of a CPU, during which the GIL would stall the event loop at every reload interval."""
    try:
        # Non-blocking, then a regular file only: a FIFO or a device named by mistake must not hang the start or
        # the watcher.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise KeySetError(f"{path} is not a regular file")
            content = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeySetError(
            f"{path} does not exist; create it with "
            f"`refreshd keys generate --alg {algorithm} --file {path}`"
        ) from None
    except OSError as exc:
        raise KeySetError(f"{path} cannot be read ({exc.strerror})") from None
    if production and mode & _FORBIDDEN_MODE:
        raise KeySetError(
            f"{path} has mode {stat.S_IMODE(mode):04o}: others may read or change the private keys "
            f"(chmod 600 {path}, or 640 for a group that must read it)"
        )
    digest = hashlib.sha256(content).hexdigest()
    if digest == unless:
        return None
    try:
        keys = parse_key_set(content, algorithm)
    except KeySetError as exc:
        raise KeySetError(f"{path}: {exc}") from None
    except (
        Exception
    ) as exc:  # whatever else a strange file makes the parser raise: refused, in one line
        raise KeySetError(f"{path}: unreadable key set ({type(exc).__name__})") from None
    return LoadedKeys(keys, digest)


def load_signing_keys(settings: Settings) -> LoadedKeys | None:
    """The key set access tokens are signed with, checked as a start needs it; None with an HMAC algorithm.
    ``KeySetError`` names the setting and the problem."""
    if not settings.asymmetric_tokens:
        return None
    path = settings.jwt_signing_keys_file
    if path is None:
        raise KeySetError(
            f"JWT_ALGORITHM={settings.jwt_algorithm} needs JWT_SIGNING_KEYS_FILE: create one with "
            f"`refreshd keys generate --alg {settings.jwt_algorithm} --file signing-keys.json`"
        )
    try:
        loaded = _read(
            path, settings.jwt_algorithm, production=settings.environment == "production"
        )
        assert loaded is not None  # no digest to skip
        return loaded
    except KeySetError as exc:
        raise KeySetError(f"JWT_SIGNING_KEYS_FILE: {exc}") from None


def published_keys(settings: Settings, loaded: LoadedKeys | None) -> PublishedKeys:
    if loaded is None:
        return PublishedKeys.of_secret(
            settings.jwt_secret.get_secret_value(), settings.jwt_algorithm
        )
    return PublishedKeys.of_key_set(loaded.keys)


class KeyFileWatcher:
    """Rereads the key file of one process and swaps the keys its requests use."""

    def __init__(
        self,
        settings: Settings,
        keys: TokenKeys,
        loaded: LoadedKeys,
        report: Callable[[str | None], None] | None = None,
    ) -> None:
        """``report``: told of each reread that changed the keys (the new signing kid) or was refused (None)."""
        assert settings.jwt_signing_keys_file is not None
        self.path = settings.jwt_signing_keys_file
        self.algorithm = settings.jwt_algorithm
        self.production = settings.environment == "production"
        self.interval = settings.jwt_signing_keys_reload_interval.total_seconds()
        self.keys = keys
        self.digest = loaded.digest
        self.refused_digest: str | None = None
        self.report = report or (lambda _kid: None)
        self.wake = asyncio.Event()  # set by SIGHUP

    async def check(self) -> bool:
        """Reread the file; whether the keys in use changed."""
        try:
            loaded = await asyncio.to_thread(
                _read, self.path, self.algorithm, production=self.production, unless=self.digest
            )
        except KeySetError as exc:
            # Once per problem, not every interval: the file stays broken until someone fixes it.
            problem = hashlib.sha256(str(exc).encode()).hexdigest()
            if problem != self.refused_digest:
                self.refused_digest = problem
                logger.error("signing keys not reloaded, the keys in use stay: %s", exc)
                self.report(None)
            return False
        self.refused_digest = None
        if loaded is None:  # the same bytes: nothing to do
            return False
        self.keys.published = PublishedKeys.of_key_set(loaded.keys)
        self.digest = loaded.digest
        self.report(loaded.keys[0].kid)
        logger.info(
            "signing keys reloaded: %s signs, %d key(s) verify (%s)",
            loaded.keys[0].kid,
            len(loaded.keys),
            ", ".join(key.kid for key in loaded.keys),
        )
        return True

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.interval)
            self.wake.clear()
            try:
                await self.check()
            except Exception:  # never let the watcher die: the next round tries again
                logger.exception("signing keys not reloaded")
