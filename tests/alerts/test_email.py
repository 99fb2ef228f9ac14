"""E-mail over SMTP against a local aiosmtpd server."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.errors import PermanentError, RetryableError
from alerts.notify.email import EmailNotifier, EmailOptions
from alerts.outbox import Notifier
from simulators.services.smtp import FakeSmtpServer
from tests.alerts.util import note

SENDER = "alerts@firesentry.example"
RCPT = "safety.manager@example.com"


@pytest.fixture()
def smtp() -> Iterator[FakeSmtpServer]:
    """A plain SMTP server."""
    with FakeSmtpServer() as fake:
        yield fake


@pytest.fixture()
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl tool)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl tool is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def options(
    port: int, starttls: bool = False, ssl_context: ssl.SSLContext | None = None
) -> EmailOptions:
    """Options for the local server on port."""
    return EmailOptions(
        host="127.0.0.1",
        port=port,
        sender=SENDER,
        starttls=starttls,
        ssl_context=ssl_context,
        timeout_s=5,
    )


async def test_email_is_multipart_with_subject_and_key(smtp: FakeSmtpServer) -> None:
    """The message has the title as subject, text and HTML parts, and the key in two headers."""
    notifier: Notifier = EmailNotifier(options(smtp.port))
    n = note(
        "email", RCPT, title="【紧急】火警：3号楼", text="单位: 3号楼\n设备: SD-1", locale="zh-CN"
    )
    await notifier.send(n)
    [mail] = smtp.messages
    msg = mail.message
    assert mail.mail_from == SENDER and mail.rcpt_tos == [RCPT]
    assert msg["Subject"] == "【紧急】火警：3号楼" and msg["To"] == RCPT
    assert msg["Message-ID"] == f"<{n.idempotency_key}@firesentry.example>"
    assert mail.idempotency_key == n.idempotency_key
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert (
        plain is not None
        and plain.get_content().replace("\r\n", "\n").strip() == "单位: 3号楼\n设备: SD-1"
    )
    assert html is not None and "<h2>【紧急】火警：3号楼</h2>" in html.get_content()


async def test_email_4xx_reply_is_retryable(smtp: FakeSmtpServer) -> None:
    """A 451 answer to DATA raises RetryableError, and the retry is accepted once."""
    smtp.fail_next("451 4.3.0 Try again later")
    n = note("email", RCPT)
    notifier = EmailNotifier(options(smtp.port))
    with pytest.raises(RetryableError, match="451"):
        await notifier.send(n)
    await notifier.send(n)
    assert smtp.keys == [n.idempotency_key]


async def test_email_5xx_recipient_is_permanent(smtp: FakeSmtpServer) -> None:
    """A 550 answer to RCPT TO raises PermanentError."""
    smtp.refuse_next_rcpt("550 5.1.1 No such user")
    with pytest.raises(PermanentError, match="550"):
        await EmailNotifier(options(smtp.port)).send(note("email", RCPT))
    assert smtp.messages == []


async def test_email_connection_refused_is_retryable() -> None:
    """A server that does not listen raises RetryableError."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the notifier connects
    with pytest.raises(RetryableError, match="ConnectionRefused"):
        await EmailNotifier(options(port)).send(note("email", RCPT))


async def test_email_bad_address_is_permanent(smtp: FakeSmtpServer) -> None:
    """A receiver that is not one plain address is refused before connecting."""
    with pytest.raises(PermanentError, match="not an e-mail address"):
        await EmailNotifier(options(smtp.port)).send(note("email", "a@b.com\nBcc: x@y.com"))
    assert smtp.attempts == 0


async def test_email_uses_starttls_when_asked(certificate: tuple[Path, Path]) -> None:
    """With starttls the message travels encrypted and the server certificate is verified."""
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    with FakeSmtpServer(tls_context=server_ctx, require_starttls=True) as smtp:
        with pytest.raises(PermanentError, match="530"):
            await EmailNotifier(options(smtp.port)).send(note("email", RCPT))
        await EmailNotifier(options(smtp.port, starttls=True, ssl_context=client_ctx)).send(
            note("email", RCPT)
        )
        assert [m.tls for m in smtp.messages] == [True]


async def test_email_starttls_is_the_default(certificate: tuple[Path, Path]) -> None:
    """Options that do not mention starttls upgrade the connection before sending."""
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    opts = EmailOptions(host="127.0.0.1", sender=SENDER, ssl_context=client_ctx, timeout_s=5)
    with FakeSmtpServer(tls_context=server_ctx, require_starttls=True) as smtp:
        await EmailNotifier(dataclasses.replace(opts, port=smtp.port)).send(note("email", RCPT))
        assert [m.tls for m in smtp.messages] == [True]


async def test_email_server_without_starttls_is_refused(smtp: FakeSmtpServer) -> None:
    """By default a server that offers no STARTTLS gets nothing: a permanent error says why."""
    opts = EmailOptions(host="127.0.0.1", port=smtp.port, sender=SENDER, timeout_s=5)
    with pytest.raises(PermanentError, match=r"does not offer STARTTLS.*starttls: false"):
        await EmailNotifier(opts).send(note("email", RCPT))
    assert smtp.messages == []
