"""The access-token functions alone, per token: sign, and verify with and without the remembered-token cache.

    uv run --frozen python bench/tokens_bench.py [--repeat 7] [--min-time 0.2] [--algorithms HS256,ES256,RS256]

For each algorithm, with the keys the service uses (HS256: a 48-character secret; ES256: a P-256 key; RS256: an
RSA key of ``app.security.keys.GENERATED_RSA_BITS``, as ``refreshd keys generate`` makes them):

- *sign*: ``encode_access_token``, what every login and refresh pays to issue an access token;
- *verify, cache hit*: ``decode_access_token`` of a token verified before, with the server's cache
  (``VERIFIED_CACHE_SIZE``): a look-up by the token's text, then every claim checked, as a client's second and later
  ``/users/me`` with the same token;
- *verify, every token new*: the same with ``cache_size=0``, so every call parses the token and checks its
  signature: a token the server has not seen, or one evicted.

``timeit`` style: each figure is the best of ``--repeat`` repetitions of a loop that runs at least ``--min-time``
seconds (the median of the repetitions beside it), per call, in one thread. Prints a markdown table; nothing is
written (bench/results/2026-12-03-asymmetric-keys.md has a run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata

from perf import database  # first: puts the repository root on sys.path for ``app``

from app.security.keys import GENERATED_RSA_BITS, generate_key
from app.security.tokens import (
    VERIFIED_CACHE_SIZE,
    SigningKeys,
    decode_access_token,
    encode_access_token,
)

ALGORITHMS = ("HS256", "ES256", "RS256")
KEY_NAMES = {
    "HS256": "HMAC-SHA256, 48-character secret",
    "ES256": "ECDSA P-256",
    "RS256": f"RSA {GENERATED_RSA_BITS}",
}


@dataclass(frozen=True)
class Timing:
    best_us: float
    median_us: float

    def __str__(self) -> str:
        return f"{self.best_us:,.1f} ({self.median_us:,.1f})"


def timed(call: Callable[[], object], *, repeat: int, min_time: float) -> Timing:
    """Per call, in µs: the best and the median of ``repeat`` loops of at least ``min_time`` seconds each."""
    timer = timeit.Timer(call)
    number = 1
    while timer.timeit(number) < min_time:
        number *= 2
    per_call = [total / number * 1e6 for total in timer.repeat(repeat=repeat, number=number)]
    return Timing(min(per_call), statistics.median(per_call))


def keys_for(algorithm: str, *, cache_size: int, now: datetime) -> SigningKeys:
    if algorithm.startswith("HS"):
        secret = database.Secrets.generate().access
        return SigningKeys.hmac(secret, algorithm, cache_size=cache_size)
    return SigningKeys.key_set([generate_key(algorithm, now, "k1")], cache_size=cache_size)


@dataclass(frozen=True)
class Row:
    algorithm: str
    sign: Timing
    hit: Timing
    new: Timing


def measure(algorithm: str, *, repeat: int, min_time: float) -> Row:
    now = datetime.now(UTC)
    cached = keys_for(algorithm, cache_size=VERIFIED_CACHE_SIZE, now=now)
    # The same key without the cache: a twin sharing the key objects.
    uncached = SigningKeys(cached.algorithm, cached.signer, cached.kid, cached.verifiers, 0)

    def sign() -> str:
        return encode_access_token(
            user_id=42,
            session_id="0123456789abcdef0123456789abcdef",
            issued_at=now,
            expires_at=now + timedelta(minutes=15),
            keys=cached,
        )

    token = sign()
    decode_access_token(token, keys=cached, now=now)  # remembered from here on
    return Row(
        algorithm,
        sign=timed(sign, repeat=repeat, min_time=min_time),
        hit=timed(
            lambda: decode_access_token(token, keys=cached, now=now),
            repeat=repeat,
            min_time=min_time,
        ),
        new=timed(
            lambda: decode_access_token(token, keys=uncached, now=now),
            repeat=repeat,
            min_time=min_time,
        ),
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def table(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"Per call in µs, best of {args.repeat} (median in brackets), one thread; "
        f"Python {platform.python_version()}, python-jose {_version('python-jose')}, "
        f"cryptography {_version('cryptography')}, {os.cpu_count()} CPUs",
        "",
        "| algorithm | key | sign | verify, cache hit | verify, every token new (`cache_size=0`) "
        "| new tokens verified per second, one core |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.algorithm} | {KEY_NAMES.get(row.algorithm, '')} | {row.sign} | {row.hit} | {row.new} "
            f"| {1e6 / row.new.best_us:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per loop, at least")
    parser.add_argument(
        "--algorithms",
        default=",".join(ALGORITHMS),
        help="comma-separated (default HS256,ES256,RS256)",
    )
    args = parser.parse_args(argv)
    rows = [
        measure(name.strip().upper(), repeat=args.repeat, min_time=args.min_time)
        for name in args.algorithms.split(",")
        if name.strip()
    ]
    print(table(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
