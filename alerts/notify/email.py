"""E-mail channel: one multipart message a notification over SMTP, STARTTLS unless turned off."""

from __future__ import annotations

import asyncio
import html
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate

from alerts.errors import DeliveryError, PermanentError, RetryableError
from alerts.types import Notification

IDEMPOTENCY_HEADER = "X-Firesentry-Idempotency-Key"
# Deliberately plain: one address, no display name, nothing that could smuggle in a header.
ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


@dataclass(frozen=True, slots=True)
class EmailOptions:
    """Where and how to submit mail."""

    host: str
    sender: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = True  # False only for a server on a trusted network (warned at start)
    ssl_context: ssl.SSLContext | None = None  # None: the system's trust store
    timeout_s: float = 20.0
    local_hostname: str | None = None


def build_message(sender: str, n: Notification) -> EmailMessage:
    """The message for one notification: text and HTML parts, and the same Message-ID on retry."""
    title = str(n.payload.get("title", ""))
    text = str(n.payload.get("text", ""))
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = n.receiver.strip()
    msg["Subject"] = title
    msg["Date"] = formatdate(usegmt=True)
    # A Message-ID derived from the key lets mail systems drop a copy sent twice after a retry.
    msg["Message-ID"] = f"<{n.idempotency_key}@{sender.rpartition('@')[2] or 'firesentry'}>"
    msg[IDEMPOTENCY_HEADER] = n.idempotency_key
    msg["Content-Language"] = str(n.payload.get("locale", "en"))
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alarms
    msg.set_content(text)
    msg.add_alternative(
        f"<html><body><h2>{html.escape(title)}</h2>"
        f'<pre style="font-family: inherit; white-space: pre-wrap">{html.escape(text)}</pre>'
        "</body></html>",
        subtype="html",
    )
    return msg


def _by_code(code: int, text: bytes | str, what: str) -> DeliveryError:
    detail = text.decode(errors="replace") if isinstance(text, bytes) else text
    msg = f"{what}: SMTP {code} {detail}"[:300]
    if code >= 500:
        return PermanentError(msg)
    return RetryableError(msg)  # 4xx, and the -1 smtplib uses when there was no reply


class EmailNotifier:
    """Delivers notifications of channel 'email' through one SMTP server."""

    channel = "email"

    def __init__(self, options: EmailOptions) -> None:
        self.opts = options

    async def send(self, n: Notification) -> None:
        """Submit one message; 4xx and connection trouble are retryable, 5xx are not."""
        rcpt = n.receiver.strip()
        if not ADDRESS.match(rcpt):
            raise PermanentError(f"{n.receiver!r} is not an e-mail address")
        msg = build_message(self.opts.sender, n)
        # smtplib blocks; a thread keeps the event loop (and the other channels) running.
        await asyncio.to_thread(self._submit, msg, rcpt)

    def _submit(self, msg: EmailMessage, rcpt: str) -> None:
        o = self.opts
        try:
            with smtplib.SMTP(
                o.host, o.port, local_hostname=o.local_hostname, timeout=o.timeout_s
            ) as smtp:
                if o.starttls:
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise PermanentError(
                            f"the SMTP server {o.host}:{o.port} does not offer STARTTLS; use one "
                            "that does, or set notify.email.starttls: false for a server on a "
                            "trusted network (alerts and the password then travel in clear)"
                        )
                    smtp.starttls(context=o.ssl_context or ssl.create_default_context())
                if o.username:
                    smtp.login(o.username, o.password or "")
                smtp.send_message(msg, from_addr=o.sender, to_addrs=[rcpt])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _by_code(code, text, f"recipient {rcpt} refused") from exc
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, exc.smtp_error, type(exc).__name__) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"the SMTP server does not support it: {exc}") from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise RetryableError(f"SMTP server disconnected: {exc}") from exc
        except smtplib.SMTPException as exc:
            # What is left (no common AUTH mechanism, …) is configuration, not a passing fault.
            raise PermanentError(f"{type(exc).__name__}: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"the SMTP server's certificate is not trusted: {exc}") from exc
        except OSError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
