"""Message formats of non-standard endpoints: chat destinations share the delivery engine.

A standard endpoint gets the signed Standard Webhooks envelope. A chat destination
(``slack_webhook``, ``slack_app``, ``teams_webhook``) gets the same event rendered for its
platform (Block Kit, Adaptive Card) at send time, by a :class:`Format` that another domain
registers (see :data:`FORMAT_MODULES`). Everything else - the outbox, claims and leases,
the SSRF guard, retries with backoff, ``Retry-After``, dead letters, replay, the attempt
log, disabling an endpoint that keeps failing - is the one engine of
:mod:`omnify.webhooks.service`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

from omnify.settings import Settings
from omnify.webhooks.models import WebhookEndpoint
from omnify.webhooks.transport import AttemptResult

#: Modules that call :func:`register` on import.
FORMAT_MODULES = ("omnify.chat.formats",)


@dataclass(frozen=True, slots=True)
class Prepared:
    url: str
    body: bytes
    headers: dict[str, str]


class Format(Protocol):
    async def prepare(self, settings: Settings, endpoint: WebhookEndpoint, secret: str,
                      envelope: dict[str, Any]) -> Prepared:
        """The request for one delivery of ``envelope`` (the stored event) to ``endpoint``."""
        ...

    def judge(self, result: AttemptResult) -> AttemptResult:
        """Reclassify an answer (e.g. Slack's HTTP 200 with ``"ok": false``)."""
        ...


_formats: dict[str, Format] = {}
_loaded: list[bool] = []


def register(kind: str, fmt: Format) -> None:
    _formats[kind] = fmt


def get(kind: str) -> Format:
    if not _loaded:
        for module in FORMAT_MODULES:
            importlib.import_module(module)
        _loaded.append(True)
    try:
        return _formats[kind]
    except KeyError:
        raise LookupError(f"no message format registered for endpoint kind {kind!r}") from None
