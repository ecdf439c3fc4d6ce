"""Email delivery against a real SMTP server on loopback, the development log mailer, and the templates."""

from __future__ import annotations

import asyncio
import base64
import logging
import stat
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from app.services.mail import (
    InvalidMessage,
    LogMailer,
    MailError,
    Message,
    SmtpConfig,
    SmtpMailer,
    Templates,
    build_mailer,
    humanize,
    render_confirmation,
    render_reset,
)
from tests.servers import free_port
from tests.smtp import SmtpServer, smtp_server
from tests.support import T0, FakeClock

# aiosmtpd warns when AUTH is allowed without TLS: on loopback in tests, that is the point.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SENDER = "refreshd <no-reply@auth.example.test>"
LOGIN = ("mailer", "s3cret-Password-42")
# Longer than a mail line of 78: it must still arrive (and be saved) in one piece.
URL = "https://app.example.test/reset-password?code=" + "Zx9_" * 30


def config(server: SmtpServer, **overrides: object) -> SmtpConfig:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "starttls": False,  # the test server speaks plain SMTP
        "timeout": 5.0,
        "sender": SENDER,
    }
    values.update(overrides)
    return SmtpConfig(**values)  # type: ignore[arg-type]


def reset_message(to: str = "zoe@example.test", username: str = "Zoë Łukasiewicz") -> Message:
    return render_reset(
        Templates(), to=to, username=username, url=URL, expires_in=timedelta(hours=1)
    )


def saved_files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def auth_server() -> Iterator[SmtpServer]:
    with smtp_server(auth=LOGIN) as running:
        yield running


# --- SMTP ------------------------------------------------------------------------------------------------


async def test_message_arrives_whole(server: SmtpServer) -> None:
    message = Message(
        to="zoe@example.test",
        subject="Réinitialisez votre mot de passe, Zoë",
        text=f"Bonjour Zoë Łukasiewicz,\n\n{URL}\n\n— refreshd ✓\n",
    )
    await SmtpMailer(config(server), clock=FakeClock()).send(message)

    [received] = await server.wait_for_async(1)
    assert received["From"] == SENDER
    assert received["To"] == "zoe@example.test"
    assert received["Subject"] == message.subject
    assert received.get_content_type() == "text/plain"
    assert received.get_content_charset() == "utf-8"
    assert received.get_content().replace("\r\n", "\n") == message.text  # CRLF on the wire
    assert parsedate_to_datetime(received["Date"]) == T0.replace(microsecond=0)
    assert received["Message-ID"].startswith("<")
    assert received["Message-ID"].endswith("@auth.example.test>")
    assert server.envelopes == [("no-reply@auth.example.test", ["zoe@example.test"])]


async def test_rendered_reset_arrives_with_its_link(server: SmtpServer) -> None:
    message = reset_message()
    await SmtpMailer(config(server)).send(message)

    [received] = await server.wait_for_async(1)
    body = received.get_content()
    assert "Hello Zoë Łukasiewicz," in body
    assert URL in body.splitlines()
    assert "expires in 1 hour" in body


async def test_each_message_has_its_own_message_id(server: SmtpServer) -> None:
    mailer = SmtpMailer(config(server))
    await asyncio.gather(*(mailer.send(reset_message(to=f"u{i}@example.test")) for i in range(3)))

    received = await server.wait_for_async(3)
    assert len({m["Message-ID"] for m in received}) == 3
    assert sorted(m["To"] for m in received) == [f"u{i}@example.test" for i in range(3)]


async def test_login_with_the_right_credentials_delivers(auth_server: SmtpServer) -> None:
    mailer = SmtpMailer(config(auth_server, username=LOGIN[0], password=LOGIN[1]))
    await mailer.send(reset_message())

    assert len(await auth_server.wait_for_async(1)) == 1


async def test_wrong_password_is_a_mail_error_without_the_password(
    auth_server: SmtpServer,
) -> None:
    wrong = "Wrong-pass-Nobody-Knows-77"
    mailer = SmtpMailer(config(auth_server, username=LOGIN[0], password=wrong))
    with pytest.raises(MailError) as caught:
        await mailer.send(reset_message())

    error = caught.value
    assert "authentication failed" in str(error)
    assert error.code == 535
    assert not error.temporary
    assert wrong not in str(error)
    assert wrong not in repr(error)
    assert error.__cause__ is None
    assert auth_server.messages == []


async def test_no_login_where_login_is_required(auth_server: SmtpServer) -> None:
    with pytest.raises(MailError) as caught:
        await SmtpMailer(config(auth_server)).send(reset_message())

    assert caught.value.code == 530
    assert auth_server.messages == []


async def test_a_server_echoing_the_password_does_not_put_it_in_the_error(
    auth_server: SmtpServer,
) -> None:
    encoded = base64.b64encode(LOGIN[1].encode()).decode()
    auth_server.reply = f"554 5.7.1 refused {LOGIN[1]} {encoded}"
    mailer = SmtpMailer(config(auth_server, username=LOGIN[0], password=LOGIN[1]))
    with pytest.raises(MailError) as caught:
        await mailer.send(reset_message())

    assert LOGIN[1] not in str(caught.value)
    assert encoded not in str(caught.value)
    assert "[redacted]" in str(caught.value)


async def test_required_starttls_is_not_skipped(auth_server: SmtpServer) -> None:
    """A server without STARTTLS gets neither the password nor the message when STARTTLS is asked for."""
    mailer = SmtpMailer(config(auth_server, starttls=True, username=LOGIN[0], password=LOGIN[1]))
    with pytest.raises(MailError) as caught:
        await mailer.send(reset_message())

    assert "STARTTLS" in str(caught.value)
    assert not caught.value.temporary  # a configuration problem: retrying will not help
    assert auth_server.messages == []


@pytest.mark.parametrize(
    ("reply", "code", "temporary"),
    [("451 4.3.0 Try again later", 451, True), ("554 5.7.1 Message rejected", 554, False)],
)
async def test_a_refused_message_is_a_mail_error(
    server: SmtpServer, reply: str, code: int, temporary: bool
) -> None:
    server.reply = reply
    with pytest.raises(MailError) as caught:
        await SmtpMailer(config(server)).send(reset_message())

    assert caught.value.code == code
    assert caught.value.temporary is temporary
    assert reply.split(" ", 1)[1] in str(caught.value)


async def test_connection_refused_fails_fast() -> None:
    port = free_port()  # nothing listens there
    mailer = SmtpMailer(SmtpConfig("127.0.0.1", port, starttls=False, timeout=2.0))
    started = time.monotonic()
    with pytest.raises(MailError) as caught:
        await mailer.send(reset_message())

    assert time.monotonic() - started < 1.5
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert caught.value.temporary


async def test_a_silent_server_times_out() -> None:
    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        mailer = SmtpMailer(SmtpConfig("127.0.0.1", port, starttls=False, timeout=0.3))
        started = time.monotonic()
        with pytest.raises(MailError) as caught:
            await mailer.send(reset_message())
    finally:
        silent.close()
        await silent.wait_closed()

    assert time.monotonic() - started < 2.0
    assert "timed out after 0.3s" in str(caught.value)
    assert caught.value.temporary


@pytest.mark.parametrize(
    "message",
    [
        Message(to="zoe@example.test", subject="Hi\r\nBcc: all@example.test", text="x"),
        Message(to="zoe@example.test", subject="Hi\nBcc: all@example.test", text="x"),
        Message(to="zoe@example.test\r\nBcc: all@example.test", subject="Hi", text="x"),
        Message(to="zoe@example.test\rBcc: all@example.test", subject="Hi", text="x"),
        Message(to=" ", subject="Hi", text="x"),
    ],
)
async def test_header_injection_is_refused_before_sending(
    server: SmtpServer, message: Message
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        await SmtpMailer(config(server)).send(message)

    assert isinstance(caught.value, ValueError)
    assert server.messages == []


def test_config_keeps_the_password_out_of_its_repr() -> None:
    smtp = SmtpConfig("smtp.example.test", username="mailer", password=LOGIN[1])
    assert LOGIN[1] not in repr(smtp)
    assert "mailer" in repr(smtp)


@pytest.mark.parametrize(
    "values",
    [
        {"host": ""},
        {"host": "smtp.example.test", "port": 0},
        {"host": "smtp.example.test", "username": "mailer"},
        {"host": "smtp.example.test", "password": "only-a-password"},
        {"host": "smtp.example.test", "timeout": 0},
        {"host": "smtp.example.test", "sender": "no address"},
        {"host": "smtp.example.test", "sender": "a@example.test\r\nBcc: b@example.test"},
    ],
)
def test_config_refuses_what_cannot_work(values: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SmtpConfig(**values)  # type: ignore[arg-type]


# --- development: the log mailer ---------------------------------------------------------------------


async def test_log_mailer_logs_the_link_and_saves_a_private_eml(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = tmp_path / "outbox" / "mail"  # created on first use
    mailer = LogMailer(logging.getLogger("refreshd.mail"), outbox)
    message = reset_message()
    with caplog.at_level(logging.WARNING, logger="refreshd.mail"):
        await mailer.send(message)

    assert URL in caplog.text
    assert "zoe@example.test" in caplog.text
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    [path] = saved_files(outbox)
    assert path.suffix == ".eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    raw = path.read_bytes()
    # Readable as it is in an editor: the link whole on one line, the name in clear UTF-8.
    assert URL.encode() in raw.splitlines()
    assert "Hello Zoë Łukasiewicz,".encode() in raw
    saved = message_from_bytes(raw, policy=policy.default)
    assert isinstance(saved, EmailMessage)
    assert saved["To"] == "zoe@example.test"
    assert saved["Subject"] == "Reset your password"
    assert saved["Message-ID"]
    assert saved["Date"]
    assert saved.get_content() == message.text


async def test_log_mailer_never_overwrites(tmp_path: Path) -> None:
    mailer = LogMailer(folder=tmp_path, clock=FakeClock())  # same instant for both
    await mailer.send(reset_message())
    await mailer.send(reset_message())

    assert len(saved_files(tmp_path)) == 2


async def test_log_mailer_without_folder_only_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="refreshd.mail"):
        await LogMailer().send(reset_message())

    assert URL in caplog.text
    assert saved_files(tmp_path) == []


async def test_log_mailer_refuses_header_injection(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="refreshd.mail"), pytest.raises(InvalidMessage):
        await LogMailer().send(
            Message(to="a@example.test\nBcc: b@example.test", subject="x", text="y")
        )

    assert "Bcc" not in caplog.text


async def test_log_mailer_that_cannot_write_raises_mail_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(MailError, match="could not write email"):
        await LogMailer(folder=blocker).send(reset_message())


def test_build_mailer_picks_smtp_when_configured(tmp_path: Path) -> None:
    smtp = SmtpConfig("smtp.example.test")
    mailer = build_mailer(smtp, outbox=tmp_path)
    assert isinstance(mailer, SmtpMailer)
    assert mailer.config is smtp


def test_build_mailer_falls_back_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="refreshd.mail"):
        mailer = build_mailer(None, outbox=tmp_path, logger=logging.getLogger("refreshd.mail"))

    assert isinstance(mailer, LogMailer)
    assert mailer.folder == tmp_path
    assert "development only" in caplog.text


# --- templates ---------------------------------------------------------------------------------------


def test_default_templates_render_the_link() -> None:
    reset = render_reset(
        Templates(), to="a@example.test", username="alice", url=URL, expires_in="1 hour"
    )
    assert reset == Message(
        to="a@example.test",
        subject="Reset your password",
        text=(
            "Hello alice,\n\n"
            "We received a request to reset your password. Open this link to choose a new one:\n\n"
            f"{URL}\n\n"
            "The link works once and expires in 1 hour. If you did not ask for this, ignore this "
            "message: your password stays as it is.\n"
        ),
    )
    confirm = render_confirmation(
        Templates(), to="a@example.test", username="alice", url=URL, expires_in=timedelta(days=2)
    )
    assert confirm.subject == "Confirm your email address"
    assert URL in confirm.text.splitlines()
    assert "expires in 2 days" in confirm.text
    assert "$" not in reset.text + confirm.text


def test_values_are_not_templates_themselves() -> None:
    """``safe_substitute`` runs once: a ``$url`` inside a username stays text."""
    message = render_reset(
        Templates(), to="a@example.test", username="$url ${email}", url=URL, expires_in="1 hour"
    )
    assert message.text.startswith("Hello $url ${email},")


def test_a_line_break_in_a_value_cannot_break_the_subject() -> None:
    templates = Templates(reset_subject="Password reset for $username")
    message = render_reset(
        templates, to="a@example.test", username="bob\r\nBcc: x", url=URL, expires_in="1 hour"
    )
    assert message.subject == "Password reset for bob Bcc: x"


def test_load_without_a_folder_gives_the_defaults() -> None:
    assert Templates.load(None) == Templates()


def test_override_folder(tmp_path: Path) -> None:
    (tmp_path / "reset_password.txt").write_text(
        "Subject: $username, your new password\n\nGo to ${url} within $expires_in.\n-- Support\n",
        encoding="utf-8",
    )
    templates = Templates.load(tmp_path)

    assert templates.confirm_subject == Templates().confirm_subject  # no file: the default
    assert templates.confirm_text == Templates().confirm_text
    message = render_reset(
        templates, to="a@example.test", username="Zoë", url=URL, expires_in=timedelta(minutes=30)
    )
    assert message.subject == "Zoë, your new password"
    assert message.text == f"Go to {URL} within 30 minutes.\n-- Support\n"


def test_override_with_windows_line_endings(tmp_path: Path) -> None:
    (tmp_path / "email_confirmation.txt").write_bytes(b"Subject: Welcome\r\n\r\nConfirm: $url\r\n")
    templates = Templates.load(tmp_path)

    assert templates.confirm_subject == "Welcome"
    assert templates.confirm_text == "Confirm: $url\n"


@pytest.mark.parametrize(
    ("filename", "content", "complaint"),
    [
        ("reset_password.txt", "Subject: Reset\n\nNo link here.\n", "must contain $url"),
        ("email_confirmation.txt", "Subject: Hi\n\nurl: url\n", "must contain $url"),
        ("email_confirmation.txt", "Subject: $url\n\nNo link in the body.\n", "must contain $url"),
        ("reset_password.txt", "Reset your password\n\n$url\n", "first line must be 'Subject"),
        ("reset_password.txt", "Subject: Reset\n$url\n", "then a blank line"),
        ("reset_password.txt", "Subject:\n\n$url\n", "first line must be 'Subject"),
        ("reset_password.txt", "Subject: Reset\n\n$link or $url\n", "unknown placeholder(s) $link"),
    ],
)
def test_a_bad_override_is_refused_at_load(
    tmp_path: Path, filename: str, content: str, complaint: str
) -> None:
    (tmp_path / filename).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="email template") as caught:
        Templates.load(tmp_path)

    assert filename in str(caught.value)
    assert complaint in str(caught.value)


def test_a_missing_template_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Templates.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(hours=1), "1 hour"),
        (timedelta(minutes=90), "90 minutes"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=7), "7 days"),
        (timedelta(seconds=45), "45 seconds"),
        (timedelta(seconds=1), "1 second"),
    ],
)
def test_humanize(delta: timedelta, text: str) -> None:
    assert humanize(delta) == text
