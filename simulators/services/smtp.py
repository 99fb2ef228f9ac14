"""A fake SMTP server (aiosmtpd, a dev dependency) that keeps messages, never delivers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from simulators.services.server import ServerThread


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the fake SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    tls: bool
    idempotency_key: str


class FakeSmtpServer(ServerThread):
    """An SMTP server (aiosmtpd) that keeps messages instead of delivering them."""

    thread_name = "fake-smtp"

    def __init__(
        self, tls_context: ssl.SSLContext | None = None, require_starttls: bool = False
    ) -> None:
        super().__init__()
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.messages: list[ReceivedMail] = []
        self._data_replies: list[str] = []
        self._rcpt_replies: list[str] = []
        self._server: asyncio.Server | None = None

    async def _open(self) -> int:
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return SMTP(
                self,
                hostname="fake-smtp.test",
                tls_context=self.tls_context,
                require_starttls=self.require_starttls,
                loop=loop,
            )

        self._server = await loop.create_server(factory, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def fail_next(self, *replies: str) -> None:
        """Answer the next DATA commands with these replies, e.g. "451 4.3.0 Try again later"."""
        with self._lock:
            self._data_replies.extend(replies)

    def refuse_next_rcpt(self, *replies: str) -> None:
        """Answer the next RCPT TO commands with these replies, e.g. "550 5.1.1 No such user"."""
        with self._lock:
            self._rcpt_replies.extend(replies)

    @property
    def keys(self) -> list[str]:
        """Idempotency keys of the accepted messages, in order (repeats included)."""
        with self._lock:
            return [m.idempotency_key for m in self.messages]

    def wait_for(self, predicate: Callable[[list[ReceivedMail]], bool], timeout: float) -> bool:
        """Wait until the accepted messages satisfy predicate, or the timeout passes."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept the recipient unless told to refuse it."""
        with self._lock:
            reply = self._rcpt_replies.pop(0) if self._rcpt_replies else None
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the message unless told to fail it."""
        with self._lock:
            self.attempts += 1
            reply = self._data_replies.pop(0) if self._data_replies else None
        if await self._pause():
            return "421 4.3.2 Shutting down"
        if reply is not None:
            return reply
        raw = cast(bytes, envelope.original_content or envelope.content or b"")
        message = BytesParser(policy=policy.default).parsebytes(raw)
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            message=message,
            raw=raw,
            tls=session.ssl is not None,
            idempotency_key=str(message.get("X-Firesentry-Idempotency-Key", "")),
        )
        with self._cond:
            self.messages.append(mail)
            self._cond.notify_all()
        return "250 2.0.0 Message accepted for delivery"
