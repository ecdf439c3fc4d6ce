"""The hash limit: how many password verifies per second this machine's cores do with the service's defaults."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from app.security.passwords import Argon2Params, build_context, hash_password
from perf.database import BENCH_PASSWORD


@dataclass(frozen=True)
class HashLimit:
    threads: int
    verifies: int
    seconds: float
    params: Argon2Params

    @property
    def per_second(self) -> float:
        return self.verifies / self.seconds


def measure(seconds: float, threads: int | None = None) -> HashLimit:
    """``threads`` (default: one per core) threads verifying one argon2id hash as fast as they can."""
    threads = threads or os.cpu_count() or 1
    params = Argon2Params()
    context = build_context(params)
    stored = hash_password(context, BENCH_PASSWORD)
    secret = BENCH_PASSWORD.encode()
    context.verify(secret, stored)  # warm up
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def work(index: int) -> None:
        start.wait()
        while not stop.is_set():
            context.verify(secret, stored)
            counts[index] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    return HashLimit(threads, sum(counts), elapsed, params)
