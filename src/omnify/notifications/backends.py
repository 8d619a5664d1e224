"""E-mail backends: console and file (development), SMTP, AWS SES, Resend.

All take the same :class:`OutgoingEmail` (a rendered message with its recipients) and
either return the provider's message id or raise :class:`EmailSendError` saying whether
a retry can help (``permanent=False``: connection refused, throttling, 4xx SMTP
replies, 5xx HTTP) or not (``permanent=True``: recipient refused, sender not verified,
bad API key). The outbox sender uses that to retry with backoff or give up at once.

Blocking clients (smtplib, boto3) run in a worker thread so the event loop keeps
serving; Resend is called with httpx's async client. Error messages never include
credentials: they name the provider's error code, not the request.
"""

from __future__ import annotations

import email.policy
import email.utils
import json
import smtplib
import ssl
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol, TextIO

import anyio
import httpx

from omnify.core.logging import get_logger
from omnify.notifications.rendering import RenderedEmail
from omnify.settings import Settings

log = get_logger(__name__)

DEFAULT_RESEND_URL = "https://api.resend.com"
_POLICY = email.policy.default.clone(max_line_length=998)


class EmailSendError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    to: str
    sender: str
    content: RenderedEmail
    message_id: str
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: (filename, content type, bytes), e.g. a client report's PDF.
    attachments: tuple[tuple[str, str, bytes], ...] = ()

    def mime(self) -> EmailMessage:
        """multipart/alternative: text first, HTML last (clients show the last they can).

        Header lines may run to RFC 5322's 998 characters: with the default 78 a long URL in
        ``List-Unsubscribe`` would be RFC 2047-encoded, which mail clients cannot follow."""
        msg = EmailMessage(policy=_POLICY)
        msg["From"] = self.sender
        msg["To"] = self.to
        msg["Subject"] = self.content.subject
        msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
        msg["Message-ID"] = self.message_id
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        for name, value in self.headers.items():
            msg[name] = value
        msg.set_content(self.content.text)
        msg.add_alternative(self.content.html, subtype="html")
        for filename, content_type, data in self.attachments:  # multipart/mixed around the alternatives
            maintype, _, subtype = content_type.partition("/")
            msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
        return msg

    @property
    def sender_address(self) -> str:
        return email.utils.parseaddr(self.sender)[1]


class EmailBackend(Protocol):
    name: str

    async def send(self, message: OutgoingEmail) -> str | None:
        """Hand the message over; the provider's id for it, when it gives one."""
        ...


# --------------------------------------------------------------------- console / file
class ConsoleBackend:
    """Prints the text part (development default: invitation links show in the terminal)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    async def send(self, message: OutgoingEmail) -> str | None:
        out = self.stream or sys.stdout
        out.write(f"---------- e-mail {message.message_id}\nFrom: {message.sender}\nTo: {message.to}\n"
                  f"Subject: {message.content.subject}\n\n{message.content.text}---------- end\n")
        out.flush()
        return message.message_id


class FileBackend:
    """Writes each message as an ``.eml`` file (open it in any mail client)."""

    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _write(self, message: OutgoingEmail) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        path.write_bytes(message.mime().as_bytes())
        return path.name

    async def send(self, message: OutgoingEmail) -> str | None:
        return await anyio.to_thread.run_sync(self._write, message)


# ------------------------------------------------------------------------------- SMTP
@dataclass(frozen=True, slots=True)
class SmtpOptions:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_ssl: bool = False
    timeout: float = 20.0
    ssl_context: ssl.SSLContext | None = None


class SmtpBackend:
    name = "smtp"

    def __init__(self, options: SmtpOptions) -> None:
        self.options = options

    def _send(self, message: OutgoingEmail) -> str:
        o = self.options
        context = o.ssl_context or ssl.create_default_context()
        try:
            client: smtplib.SMTP
            if o.use_ssl:
                client = smtplib.SMTP_SSL(o.host, o.port, timeout=o.timeout, context=context)
            else:
                client = smtplib.SMTP(o.host, o.port, timeout=o.timeout)
            with client:
                client.ehlo()
                if o.starttls and not o.use_ssl:
                    client.starttls(context=context)
                    client.ehlo()
                if o.username:
                    client.login(o.username, o.password or "")
                refused = client.send_message(message.mime(), from_addr=message.sender_address, to_addrs=[message.to])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise EmailSendError(f"SMTP refused the recipient ({codes})", permanent=all(c >= 500 for c in codes)) \
                from None
        except smtplib.SMTPAuthenticationError as exc:
            raise EmailSendError(f"SMTP authentication failed ({exc.smtp_code})", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            raise EmailSendError(f"SMTP error {exc.smtp_code}", permanent=exc.smtp_code >= 500) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise EmailSendError(f"SMTP connection failed: {type(exc).__name__}", permanent=False) from None
        if refused:
            raise EmailSendError("SMTP refused the recipient", permanent=True)
        return message.message_id

    async def send(self, message: OutgoingEmail) -> str | None:
        return await anyio.to_thread.run_sync(self._send, message)


# -------------------------------------------------------------------------------- SES
#: SES error codes that a retry cannot fix.
_SES_PERMANENT = frozenset({
    "MessageRejected", "MailFromDomainNotVerifiedException", "ConfigurationSetDoesNotExistException",
    "AccountSendingPausedException", "BadRequestException", "NotFoundException", "InvalidParameterValue",
    "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
})


class SesBackend:
    """Amazon SES v2 ``SendEmail`` with the raw MIME message (so both parts go as built)."""

    name = "ses"

    def __init__(self, *, region: str, endpoint_url: str | None = None, configuration_set: str | None = None,
                 client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("sesv2", region_name=region, endpoint_url=endpoint_url,
                                  config=Config(retries={"mode": "standard", "max_attempts": 3},
                                                connect_timeout=5, read_timeout=20))
        self._client = client
        self.configuration_set = configuration_set

    def _send(self, message: OutgoingEmail) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {
            "FromEmailAddress": message.sender_address,
            "Destination": {"ToAddresses": [message.to]},
            "Content": {"Raw": {"Data": message.mime().as_bytes()}},
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        try:
            response = self._client.send_email(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            raise EmailSendError(f"SES refused the message ({code})", permanent=code in _SES_PERMANENT) from None
        except BotoCoreError as exc:
            raise EmailSendError(f"SES unreachable: {type(exc).__name__}", permanent=False) from None
        return str(response.get("MessageId", ""))

    async def send(self, message: OutgoingEmail) -> str | None:
        return await anyio.to_thread.run_sync(self._send, message)


# ----------------------------------------------------------------------------- Resend
class ResendBackend:
    """Resend's HTTP API (``POST /emails``); the Idempotency-Key makes a retry after a lost
    response send the message once."""

    name = "resend"

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_RESEND_URL, timeout: float = 20.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._transport = transport

    async def send(self, message: OutgoingEmail) -> str | None:
        body: dict[str, Any] = {
            "from": message.sender,
            "to": [message.to],
            "subject": message.content.subject,
            "text": message.content.text,
            "html": message.content.html,
            "headers": {"Message-ID": message.message_id, **message.headers},
        }
        if message.reply_to:
            body["reply_to"] = message.reply_to
        if message.attachments:
            import base64

            body["attachments"] = [{"filename": name, "content": base64.b64encode(data).decode("ascii")}
                                   for name, _type, data in message.attachments]
        headers = {"Authorization": f"Bearer {self._api_key}", "Idempotency-Key": message.message_id.strip("<>"),
                   "User-Agent": "omnify"}
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport,
                                         follow_redirects=False) as client:
                response = await client.post(f"{self.base_url}/emails", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EmailSendError(f"Resend unreachable: {type(exc).__name__}", permanent=False) from None
        if response.status_code >= 400:
            name = ""
            try:
                doc = response.json()
                name = str(doc.get("name") or doc.get("error") or "") if isinstance(doc, dict) else ""
            except (ValueError, json.JSONDecodeError):
                pass
            transient = response.status_code == 429 or response.status_code >= 500
            raise EmailSendError(f"Resend answered {response.status_code} {name}".strip(), permanent=not transient)
        try:
            return str(response.json().get("id") or "") or None
        except ValueError:
            return None


# ---------------------------------------------------------------------------- factory
def _secret(value: Any) -> str | None:
    if value is None:
        return None
    raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    return str(raw) or None


def backend_from_settings(settings: Settings) -> EmailBackend:
    kind = settings.email_backend
    if kind == "console":
        return ConsoleBackend()
    if kind == "file":
        directory = getattr(settings, "email_file_dir", None) or settings.data_dir / "mail"
        return FileBackend(Path(directory))
    if kind == "smtp":
        return SmtpBackend(SmtpOptions(
            host=settings.smtp_host, port=settings.smtp_port, username=settings.smtp_username,
            password=_secret(settings.smtp_password), starttls=settings.smtp_starttls,
            use_ssl=bool(getattr(settings, "smtp_use_ssl", False)),
            timeout=float(getattr(settings, "smtp_timeout_seconds", 20.0)),
        ))
    if kind == "ses":
        return SesBackend(region=getattr(settings, "ses_region", None) or settings.aws_region,
                          endpoint_url=getattr(settings, "ses_endpoint_url", None),
                          configuration_set=getattr(settings, "ses_configuration_set", None))
    if kind == "resend":
        key = _secret(settings.resend_api_key)
        if not key:
            raise ValueError("OMNIFY_RESEND_API_KEY is required for the resend e-mail backend")
        return ResendBackend(key, base_url=getattr(settings, "resend_api_url", None) or DEFAULT_RESEND_URL)
    raise ValueError(f"unknown e-mail backend {kind!r}")  # pragma: no cover - Literal-typed
