"""Password hashing off the event loop, in a bounded pool of threads (argon2 and bcrypt release the GIL)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from app.security import passwords
from app.security.passwords import Argon2Params


class PasswordHasher:
    def __init__(self, params: Argon2Params, workers: int) -> None:
        self.params = params
        self.workers = workers
        self._context = passwords.build_context(params)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refreshd-hash")
        self._dummy_hash = passwords.make_dummy_hash(self._context)

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, passwords.hash_password, self._context, password
        )

    async def verify(self, password: str, stored_hash: str | None) -> tuple[bool, str | None]:
        """(ok, upgraded hash or None). An absent hash costs one dummy verify: no timing oracle."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool,
            passwords.verify_password,
            self._context,
            password,
            stored_hash,
            self._dummy_hash,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
