"""Email delivery for password reset and email confirmation: SMTP, or the log in development.

Plain text only. Every delivery failure is one ``MailError`` whose text never holds the SMTP credentials; a mailer
keeps no state, so a caller that gets one can report it and try again later.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import ssl
import string
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

import aiosmtplib

from app.clock import Clock, system_clock

mail_logger = logging.getLogger("refreshd.mail")

DEFAULT_SENDER = "refreshd <no-reply@localhost>"
# RFC 5322's limit; under it a body line (a long link with its token) is sent whole, not broken up by
# quoted-printable, so it stays clickable and copyable in the .eml files of development.
MAX_LINE_BYTES = 998


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str


class MailError(Exception):
    """A message could not be delivered. ``temporary``: a later attempt may succeed (4xx, network, timeout)."""

    def __init__(self, message: str, *, code: int | None = None, temporary: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.temporary = temporary


class InvalidMessage(MailError, ValueError):
    """Refused before any delivery: a header would break the message (CR/LF injection) or is empty."""


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send. ``starttls`` requires the upgrade (it is not attempted opportunistically);
    ``use_tls`` is implicit TLS from the first byte (port 465), and then ``starttls`` does not apply.
    ``timeout`` bounds one whole send, in seconds."""

    host: str
    port: int = 587
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    use_tls: bool = False
    timeout: float = 10.0
    sender: str = DEFAULT_SENDER

    def __post_init__(self) -> None:
        if not self.host or _has_line_break(self.host):
            raise ValueError("SMTP host is empty or malformed")
        if not 0 < self.port < 65536:
            raise ValueError(f"SMTP port {self.port} is out of range")
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP username and password go together: set both or neither")
        if not self.timeout > 0:
            raise ValueError("SMTP timeout must be positive")
        _sender_domain(self.sender)  # raises on a sender that cannot be a From header


class Mailer(Protocol):
    async def send(self, message: Message) -> None: ...


class SmtpMailer:
    """Sends each message over its own SMTP connection (these are rare: resets and confirmations)."""

    def __init__(self, config: SmtpConfig, *, clock: Clock = system_clock) -> None:
        self.config = config
        self._clock = clock

    async def send(self, message: Message) -> None:
        config = self.config
        email = compose(message, sender=config.sender, clock=self._clock)
        try:
            # aiosmtplib's timeout is per operation; this one bounds the whole exchange.
            async with asyncio.timeout(config.timeout):
                await aiosmtplib.send(
                    email,
                    hostname=config.host,
                    port=config.port,
                    username=config.username,
                    password=config.password,
                    use_tls=config.use_tls,
                    # Required when asked for: a server without STARTTLS must not get the password in clear.
                    start_tls=config.starttls and not config.use_tls,
                    timeout=config.timeout,
                )
        except (aiosmtplib.SMTPException, TimeoutError, OSError) as exc:
            # ``from None``: the server's reply is quoted below with the credentials taken out; the original
            # exception is not kept where a traceback would print it.
            raise self._failure(exc) from None

    def _failure(self, exc: BaseException) -> MailError:
        where = f"could not send email through {self.config.host}:{self.config.port}"
        if isinstance(exc, TimeoutError):  # also aiosmtplib's SMTPTimeoutError
            return MailError(f"{where}: timed out after {self.config.timeout:g}s", temporary=True)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            reason = (
                "authentication failed"
                if isinstance(exc, aiosmtplib.SMTPAuthenticationError)
                else "the server refused it"
            )
            reply = self._redact(f"{exc.code} {exc.message}")
            return MailError(
                f"{where}: {reason} ({reply})", code=exc.code, temporary=400 <= exc.code < 500
            )
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            replies = "; ".join(self._redact(f"{e.code} {e.message}") for e in exc.recipients)
            return MailError(f"{where}: the recipient was refused ({replies})")
        if isinstance(exc, ssl.SSLError):
            return MailError(f"{where}: TLS failed ({self._redact(str(exc))})")
        if isinstance(exc, aiosmtplib.SMTPException):
            # Refused, reset or dropped connections may pass; a missing extension (STARTTLS, AUTH) will not.
            network = isinstance(
                exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected
            )
            return MailError(f"{where}: {self._redact(exc.message)}", temporary=network)
        return MailError(f"{where}: {self._redact(str(exc))}", temporary=True)

    def _redact(self, text: str) -> str:
        """Remove the credentials, plain and as AUTH PLAIN/LOGIN encode them, should a server echo them."""
        user, password = self.config.username, self.config.password
        if not user or not password:
            return text
        forms = {user, password, f"\0{user}\0{password}"}
        forms |= {base64.b64encode(form.encode()).decode() for form in tuple(forms)}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "[redacted]")
        return text


class LogMailer:
    """For development only: writes each message to the log instead of sending it.

    The whole message, link included, goes to the ``refreshd.mail`` logger at WARNING, so the person running the
    service can open the link; with ``folder`` it is also saved there as an ``.eml`` file (readable only by its
    owner). A link in the log can take over an account: never use this where others read the logs.
    """

    def __init__(
        self,
        logger: logging.Logger = mail_logger,
        folder: Path | None = None,
        *,
        sender: str = DEFAULT_SENDER,
        clock: Clock = system_clock,
    ) -> None:
        _sender_domain(sender)
        self.logger = logger
        self.folder = folder
        self.sender = sender
        self._clock = clock

    async def send(self, message: Message) -> None:
        email = compose(message, sender=self.sender, clock=self._clock)
        self.logger.warning(
            "email not sent (no SMTP configured; development only)\nTo: %s\nSubject: %s\n\n%s",
            message.to,
            message.subject,
            message.text,
            # The one log line allowed to carry a secret (the link), so a developer can click it.
            extra={"redaction_exempt": True},
        )
        if self.folder is None:
            return
        try:
            path = await asyncio.to_thread(self._save, bytes(email))
        except OSError as exc:
            raise MailError(
                f"could not write email to {self.folder}: {exc.strerror or exc}"
            ) from exc
        self.logger.warning("email saved as %s", path)

    def _save(self, data: bytes) -> Path:
        assert self.folder is not None
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{self._clock():%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(4)}.eml"
        path = self.folder / name
        # O_EXCL: never overwrite; 0600: the file holds a working link.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return path


class DisabledMailer:
    """Production without SMTP: no email is sent, and no link is ever written to a log."""

    async def send(self, message: Message) -> None:
        raise MailError("email delivery is not configured (set SMTP_HOST)")


def build_mailer(
    smtp: SmtpConfig | None, *, outbox: Path | None = None, logger: logging.Logger = mail_logger
) -> Mailer:
    """SMTP when configured; otherwise the development log mailer (and ``outbox`` folder, if given)."""
    if smtp is not None:
        return SmtpMailer(smtp)
    logger.warning(
        "no SMTP server configured: emails are written to this log%s instead of being sent "
        "(development only)",
        f" and to {outbox}" if outbox else "",
    )
    return LogMailer(logger, outbox)


def compose(message: Message, *, sender: str, clock: Clock = system_clock) -> EmailMessage:
    """The RFC 5322 message, refusing header values that would add headers of their own."""
    for name, value in (("recipient", message.to), ("subject", message.subject)):
        if _has_line_break(value):
            raise InvalidMessage(f"the {name} contains a line break")
        if not value.strip():
            raise InvalidMessage(f"the {name} is empty")
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(clock())
    email["Message-ID"] = make_msgid(domain=_sender_domain(sender))
    text = message.text if message.text.endswith("\n") else message.text + "\n"
    email.set_content(text, charset="utf-8", cte=_transfer_encoding(text))
    return email


def _transfer_encoding(text: str) -> str:
    lines = text.encode().splitlines()
    if max((len(line) for line in lines), default=0) > MAX_LINE_BYTES:
        return "quoted-printable"
    # aiosmtplib re-encodes 8bit for a server without 8BITMIME.
    return "7bit" if text.isascii() else "8bit"


def _has_line_break(value: str) -> bool:
    return "\r" in value or "\n" in value or "\0" in value


def _sender_domain(sender: str) -> str:
    """The domain of the From address, for Message-IDs (so no host name lookup, and no host name leaked)."""
    address = parseaddr(sender)[1]
    if _has_line_break(sender) or "@" not in address:
        raise ValueError(f"the sender {sender!r} is not an email address")
    return address.rpartition("@")[2]


# --- templates ----------------------------------------------------------------------------------------------

PLACEHOLDERS = frozenset({"url", "username", "email", "expires_in"})
RESET_FILE = "reset_password.txt"
CONFIRMATION_FILE = "email_confirmation.txt"


@dataclass(frozen=True)
class Templates:
    """Subjects and bodies as ``string.Template`` text with ``$url``, ``$username``, ``$email``, ``$expires_in``."""

    reset_subject: str = "Reset your password"
    reset_text: str = (
        "Hello $username,\n\n"
        "We received a request to reset your password. Open this link to choose a new one:\n\n"
        "$url\n\n"
        "The link works once and expires in $expires_in. If you did not ask for this, ignore this "
        "message: your password stays as it is.\n"
    )
    confirm_subject: str = "Confirm your email address"
    confirm_text: str = (
        "Hello $username,\n\n"
        "Please confirm your email address by opening this link:\n\n"
        "$url\n\n"
        "The link expires in $expires_in. If you did not create an account, ignore this message.\n"
    )

    @classmethod
    def load(cls, folder: Path | None) -> Templates:
        """Defaults, overridden by ``reset_password.txt`` / ``email_confirmation.txt`` in ``folder``.

        Each file is ``Subject: ...`` on its first line, a blank line, then the body, which must contain ``$url``.
        """
        if folder is None:
            return cls()
        if not folder.is_dir():
            raise ValueError(f"email template folder {folder} does not exist")
        overrides: dict[str, str] = {}
        for filename, prefix in ((RESET_FILE, "reset"), (CONFIRMATION_FILE, "confirm")):
            path = folder / filename
            if path.is_file():
                subject, text = _parse_template(path)
                overrides[f"{prefix}_subject"] = subject
                overrides[f"{prefix}_text"] = text
        return cls(**overrides)


def _parse_template(path: Path) -> tuple[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    head, blank = [*lines, "", ""][:2]
    label, _, subject = head.partition(":")
    if label.strip().lower() != "subject" or not subject.strip() or blank.strip():
        raise ValueError(
            f"email template {path.name}: the first line must be 'Subject: ...', then a blank line"
        )
    text = "\n".join(lines[2:]) + "\n"
    for part in (subject, text):
        unknown = set(string.Template(part).get_identifiers()) - PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"email template {path.name}: unknown placeholder(s) "
                f"{', '.join('$' + name for name in sorted(unknown))}; "
                f"use {', '.join('$' + name for name in sorted(PLACEHOLDERS))}"
            )
    if "url" not in string.Template(text).get_identifiers():
        raise ValueError(f"email template {path.name}: the body must contain $url (the link)")
    return subject.strip(), text


def render_reset(
    templates: Templates, *, to: str, username: str, url: str, expires_in: str | timedelta
) -> Message:
    return _render(
        templates.reset_subject,
        templates.reset_text,
        to=to,
        username=username,
        url=url,
        expires_in=expires_in,
    )


def render_confirmation(
    templates: Templates, *, to: str, username: str, url: str, expires_in: str | timedelta
) -> Message:
    return _render(
        templates.confirm_subject,
        templates.confirm_text,
        to=to,
        username=username,
        url=url,
        expires_in=expires_in,
    )


def _render(
    subject: str, text: str, *, to: str, username: str, url: str, expires_in: str | timedelta
) -> Message:
    values = {
        "url": url,
        "username": username,
        "email": to,
        "expires_in": expires_in if isinstance(expires_in, str) else humanize(expires_in),
    }
    rendered_subject = string.Template(subject).safe_substitute(values)
    return Message(
        to=to,
        # A value with a line break (an odd username) must not make the message unsendable.
        subject=" ".join(rendered_subject.split()),
        text=string.Template(text).safe_substitute(values),
    )


def humanize(delta: timedelta) -> str:
    """``1 hour``, ``30 minutes``, ``2 days``: the largest unit that states the duration exactly."""
    seconds = int(delta.total_seconds())
    for unit, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds and seconds % unit == 0:
            count = seconds // unit
            return f"{count} {name}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"
