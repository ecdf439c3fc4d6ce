"""``refreshd keys``: the access-token signing keys (ES256/RS256) and their staged rotation."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.support import CommandError, _now, _settings

if TYPE_CHECKING:
    from app.services.key_rotation import KeyFile, KeyStatus


def add_key_commands(commands: Any, command: Any) -> None:
    """``command(commands, name, text)`` makes a subcommand parser (``app.cli.parser._command``)."""
    keys_parser = command(commands, "keys", "the keys that sign access tokens (ES256, RS256)")
    actions = keys_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = command(
        actions,
        "generate",
        "add a new private key, published but not signing (the first key signs)",
    )
    generate.add_argument(
        "--alg",
        choices=("ES256", "RS256"),
        help="the set's algorithm (default: JWT_ALGORITHM when it is ES256 or RS256, else ES256)",
    )
    generate.add_argument(
        "--kid", help="the key's id (default: the algorithm, the date and a thumbprint)"
    )
    _file_argument(generate)
    generate.set_defaults(handler=_generate)
    listing = command(actions, "list", "show each key's kid, algorithm, role and age")
    _file_argument(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=_list)
    for name, text, handler in (
        ("promote", "make a published key the signing key; the old one still verifies", _promote),
        ("retire", "remove a key that no longer signs: tokens it signed are refused", _retire),
    ):
        step = command(actions, name, text)
        step.add_argument("kid", help="the key's id (see `refreshd keys list`)")
        step.add_argument(
            "--force", action="store_true", help="even before it is safe (see the module's help)"
        )
        _file_argument(step)
        step.set_defaults(handler=handler)


def _file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file", type=Path, help="the key set file (default: JWT_SIGNING_KEYS_FILE)"
    )


def _key_file(args: argparse.Namespace) -> KeyFile:
    from app.services.key_rotation import KeyFile, RotationPolicy

    settings = _settings()
    path = args.file or settings.jwt_signing_keys_file
    if path is None:
        raise CommandError("set JWT_SIGNING_KEYS_FILE, or name the file with --file")
    policy = RotationPolicy(
        access_ttl=settings.jwt_expires_in,
        reload_interval=settings.jwt_signing_keys_reload_interval,
        jwks_max_age=settings.jwks_max_age,
    )
    algorithm = settings.jwt_algorithm if settings.asymmetric_tokens else None
    return KeyFile(Path(path), policy, algorithm)


def _step(work: Any) -> Any:
    from app.services.key_rotation import RotationError

    try:
        return work()
    except RotationError as exc:
        raise CommandError(str(exc)) from None


def _stamp(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%dT%H:%M:%SZ}"


def _age(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = max(0, int((now - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _next(status: KeyStatus, now: datetime) -> str:
    from app.services.key_rotation import Role

    if status.role is Role.SIGNING:
        return "signs new tokens"
    verb = "promote" if status.role is Role.PUBLISHED else "retire"
    if status.next_step_at is None:
        return f"{verb}: no record of when it is safe"
    if status.next_step_at <= now:
        return f"{verb}: safe now"
    return f"{verb}: safe from {_stamp(status.next_step_at)}"


def _list(args: argparse.Namespace) -> int:
    keys = _key_file(args)
    statuses = _step(keys.status)
    now = _now()
    if not statuses:
        print(f"{keys.path}: no keys (`refreshd keys generate` makes the first)")
        return 0
    for status in statuses:
        if args.json:
            print(
                json.dumps(
                    {
                        "kid": status.kid,
                        "alg": status.algorithm,
                        "role": status.role.value,
                        "created": _stamp(status.created),
                        "promoted": _stamp(status.promoted),
                        "demoted": _stamp(status.demoted),
                        "next_step_at": _stamp(status.next_step_at),
                    }
                )
            )
        else:
            print(
                f"{status.kid:<32} {status.algorithm:<6} {status.role.value:<10} "
                f"{_age(status.created, now):>5}  {_next(status, now)}"
            )
    return 0


def _generate(args: argparse.Namespace) -> int:
    keys = _key_file(args)
    now = _now()
    algorithm = args.alg or keys.algorithm or "ES256"
    status = _step(lambda: keys.generate(algorithm, now, args.kid))
    print(f"{status.kid}: {status.role.value} in {keys.path}")
    _reload_hint(keys.policy.reload_interval)
    if status.next_step_at is not None:
        print(
            f"next: `refreshd keys promote {status.kid}` from {_stamp(status.next_step_at)}, "
            "when every resource server has its public key"
        )
    return 0


def _promote(args: argparse.Namespace) -> int:
    keys = _key_file(args)
    previous = _step(lambda: keys.promote(args.kid, _now(), force=args.force))
    print(f"{args.kid}: signing in {keys.path}; {previous.kid} now only verifies")
    _reload_hint(keys.policy.reload_interval)
    print(
        f"next: `refreshd keys retire {previous.kid}` from {_stamp(previous.next_step_at)}, "
        "when the last token it signed has expired"
    )
    return 0


def _retire(args: argparse.Namespace) -> int:
    keys = _key_file(args)
    status = _step(lambda: keys.retire(args.kid, _now(), force=args.force))
    print(f"{status.kid}: removed from {keys.path}; tokens it signed are refused")
    _reload_hint(keys.policy.reload_interval)
    return 0


def _reload_hint(interval: timedelta) -> None:
    print(
        f"running servers read the change within {int(interval.total_seconds())}s "
        "(JWT_SIGNING_KEYS_RELOAD_INTERVAL), or at once on SIGHUP"
    )
