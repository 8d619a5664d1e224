"""Property-based fuzzing (hypothesis) of every parser that reads outside input.

Each property states the parser's contract: for *any* input it returns a valid value or
raises its documented error type (which the API turns into a 4xx problem), never anything
else - an unexpected exception would be a 500, a crash of a worker, or a platform response
that stops a sync. Inputs are arbitrary bytes and text plus mutations of valid ones
(truncated, spliced, with huge numbers, NULs and odd unicode), so the parsers' deeper
branches are reached, not only the first check.

Deterministic (``derandomize``) and bounded, like the rest of the suite; the figures of a
run (examples per parser) are written to ``.artifacts/reliability/hypothesis.json``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from omnify.chat import slack
from omnify.connections import oauth_state
from omnify.core.errors import AppError, BadRequest, UnprocessableEntity, UnsupportedMediaType
from omnify.core.pagination import decode_cursor, encode_cursor
from omnify.core.security import password_problems
from omnify.files import archives, images, multipart, sniffing
from omnify.files.sniffing import FileCategory
from omnify.integrations.base import ConnectorError
from omnify.integrations.google import mapping as google
from omnify.integrations.http import parse_retry_after
from omnify.integrations.linkedin import mapping as linkedin
from omnify.integrations.meta import mapping as meta
from omnify.integrations.shopify import mapping as shopify
from omnify.integrations.tiktok import mapping as tiktok
from omnify.rules.definition import RuleDefinition
from omnify.settings import Settings
from omnify.webhooks.inbound import InvalidSignature, MalformedDelivery, ShopifyProvider
from tests.reliability import write_figures

#: Examples per property: enough to reach the branches, bounded for CI (about 20 s in all).
EXAMPLES = 100
fuzz = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
SETTINGS = Settings(env="test", secret_key="p" * 48, slack_signing_secret="slack-signing-secret")

#: Examples each property ran (written as figures at the end of the module).
RAN: dict[str, int] = {}


def counted(name: str) -> None:
    RAN[name] = RAN.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    yield
    write_figures("hypothesis", {"database": "none", "examples_per_property": EXAMPLES,
                                 "properties": len(RAN), "examples": sum(RAN.values()),
                                 "examples_by_property": dict(sorted(RAN.items())), "failures": 0})


# ---------------------------------------------------------------------------- strategies
#: Text with the characters that break parsers: NUL, surrogate-free astral planes, bidi
#: controls, combining marks, full-width look-alikes.
odd_text = st.text(st.characters(codec="utf-8"), max_size=80) | st.sampled_from(
    ["\x00", "\u202e", "\ufeff", "\uff11\uff12\uff13", "e\u0301", "\U0001d7d8", "9" * 400, "-0", "1e309", "NaN", " ", ""])
huge_ints = st.integers(min_value=-(10**30), max_value=10**30) | st.sampled_from([2**63, -(2**63) - 1, 10**400])
json_values = st.recursive(
    st.none() | st.booleans() | huge_ints | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=20,
)


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` truncated, with a byte range overwritten, or with bytes inserted."""
    n = len(valid)
    truncated = st.integers(0, n).map(lambda i: valid[:i])
    overwritten = st.tuples(st.integers(0, max(n - 1, 0)), st.binary(min_size=1, max_size=16)).map(
        lambda t: valid[: t[0]] + t[1] + valid[t[0] + len(t[1]):])
    inserted = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=64)).map(
        lambda t: valid[: t[0]] + t[1] + valid[t[0]:])
    return truncated | overwritten | inserted


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (3, 2), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 90, 200)).save(out, "JPEG", exif=Image.Exif())
    return out.getvalue()


def _docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document>" + "hello " * 200 + "</w:document>")
    return out.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="5" height="5"/></svg>'
CSV = b"date,spend,clicks\n2026-01-01,10.5,3\n2026-01-02,7,1\n"
SAMPLES = {"png": _png(), "jpeg": _jpeg(), "docx": _docx(), "svg": SVG, "csv": CSV, "pdf": b"%PDF-1.4\n%\xe2\xe3\n1 0 obj"}
any_file = st.binary(max_size=600) | st.sampled_from(list(SAMPLES.values())).flatmap(mutations)


# ---------------------------------------------------------------------------- cursors
@fuzz
@given(st.text(max_size=200) | st.binary(max_size=120).map(lambda b: base64.urlsafe_b64encode(b).decode()))
def test_cursor_is_a_position_or_a_400(cursor: str) -> None:
    counted("cursor")
    try:
        created, row_id = decode_cursor(cursor)
    except BadRequest as exc:
        assert exc.status == 400 and exc.code == "invalid-cursor"
        return
    assert isinstance(created, datetime) and isinstance(row_id, uuid.UUID)


@fuzz
@given(st.datetimes(timezones=st.just(UTC)), st.uuids())
def test_cursor_round_trips(created: datetime, row_id: uuid.UUID) -> None:
    counted("cursor_round_trip")
    assert decode_cursor(encode_cursor(created, row_id)) == (created, row_id)


# ---------------------------------------------------------------- inbound webhook (Shopify)
SECRET = "shopify-app-secret"
header_names = st.sampled_from([ShopifyProvider.HMAC, ShopifyProvider.TOPIC, ShopifyProvider.SHOP,
                                ShopifyProvider.WEBHOOK_ID, ShopifyProvider.TRIGGERED_AT, "x-shopify-topic",
                                "X-Other"])
headers_strategy = st.dictionaries(header_names, odd_text, max_size=6)


@fuzz
@given(headers_strategy, st.binary(max_size=300), st.booleans())
def test_shopify_webhook_is_verified_or_refused(headers: dict[str, str], body: bytes, sign: bool) -> None:
    """Any headers and body: a verified delivery, or InvalidSignature / MalformedDelivery
    (401 / 400 at the receiver). Signed bodies reach the header parsing behind the HMAC."""
    counted("shopify_webhook")
    if sign:
        headers = {**headers, ShopifyProvider.HMAC: ShopifyProvider.signature(body, SECRET)}
    try:
        delivery = ShopifyProvider().verify(headers, body, [SECRET, "old-secret"])
    except InvalidSignature:
        assert not sign
        return
    except MalformedDelivery:
        return
    assert delivery.delivery_id and delivery.topic
    assert delivery.occurred_at is None or delivery.occurred_at.tzinfo is not None


# ---------------------------------------------------------------------------- Slack
@fuzz
@given(st.binary(max_size=200), st.none() | odd_text | huge_ints.map(str), st.none() | odd_text, st.booleans())
def test_slack_request_signature_is_a_yes_or_no(body: bytes, timestamp: str | None, signature: str | None,
                                                sign: bool) -> None:
    """Slack's v0 signature over any body and headers: True or False, never an exception
    (the interactions route answers 401 on False)."""
    counted("slack_signature")
    now = 1_800_000_000.0
    if sign and timestamp is not None:
        base = b"v0:" + timestamp.encode("utf-8", "surrogatepass") + b":" + body
        signature = "v0=" + hmac.new(b"slack-signing-secret", base, hashlib.sha256).hexdigest()
    result = slack.verify_request(SETTINGS, body, timestamp, signature, now=now)
    assert result in (True, False)
    if result:
        assert timestamp is not None and abs(int(timestamp.strip()) - now) <= 300


def test_slack_accepts_a_fresh_valid_signature() -> None:
    now = time.time()
    body, ts = b"payload=%7B%7D", str(int(now))
    sig = "v0=" + hmac.new(b"slack-signing-secret", f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    assert slack.verify_request(SETTINGS, body, ts, sig, now=now)
    assert not slack.verify_request(SETTINGS, body, str(int(now) - 301), sig, now=now)


# ---------------------------------------------------------------------------- OAuth state
@fuzz
@given(st.text(max_size=300) | st.from_regex(r"[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{1,80}\.[A-Za-z0-9_-]{0,43}",
                                             fullmatch=True))
def test_oauth_state_is_claims_or_invalid(token: str) -> None:
    counted("oauth_state")
    try:
        claims = oauth_state.verify_state(SETTINGS, token)
    except oauth_state.InvalidState:
        return
    assert isinstance(claims.org_id, uuid.UUID)


@fuzz
@given(st.dictionaries(st.sampled_from(["sub", "org", "cli", "plt", "jti", "typ", "exp", "iat"]), json_values,
                       max_size=8))
def test_oauth_state_with_odd_claims_is_invalid_not_an_error(claims: dict[str, Any]) -> None:
    """Even a correctly signed state with claims of the wrong types (a key leak, a future
    version) is refused as InvalidState (a 400 at the callback)."""
    import jwt

    counted("oauth_state_claims")
    now = int(time.time())
    payload = {"iss": SETTINGS.jwt_issuer, "aud": oauth_state.STATE_AUDIENCE, "iat": now, "exp": now + 600,
               "typ": oauth_state.STATE_TYPE, "sub": str(uuid.uuid4()), "jti": "n", **claims}
    try:
        token = jwt.encode(payload, SETTINGS.secret_key.get_secret_value(), algorithm=SETTINGS.jwt_algorithm)
    except (TypeError, ValueError, OverflowError):
        assume(False)  # not encodable as a JWT at all: nothing to verify
    with contextlib.suppress(oauth_state.InvalidState):
        oauth_state.verify_state(SETTINGS, token)


# ---------------------------------------------------------------------------- rules
metrics = st.sampled_from(["spend", "impressions", "clicks", "ctr", "cpa", "roas", "conversions", "nope"])
condition = st.fixed_dictionaries({"metric": metrics, "window": st.sampled_from(["last_7_days", "today", "x"]),
                                   "op": st.sampled_from([">", "<", ">=", "==", "~"]), "value": json_values})
definitions = st.fixed_dictionaries(
    {"scope": st.one_of(st.just({}), st.dictionaries(st.sampled_from(["client_ids", "platforms", "level"]),
                                                     json_values, max_size=3)),
     "conditions": st.recursive(condition, lambda inner: st.dictionaries(st.sampled_from(["all", "any", "not"]),
                                                                         st.lists(inner, max_size=3), max_size=2),
                                max_leaves=8),
     "actions": st.lists(st.dictionaries(st.sampled_from(["type", "channels", "percent", "max_daily_budget"]),
                                         json_values, max_size=4), max_size=3)},
    optional={"max_actions_per_run": json_values, "schedule": json_values, "min_data": json_values,
              "cooldown_hours": json_values},
) | json_values


@fuzz
@given(definitions)
def test_rule_definition_is_valid_or_a_validation_error(raw: Any) -> None:
    counted("rule_definition")
    try:
        parsed = RuleDefinition.model_validate(raw)
    except ValidationError as exc:
        json.dumps(exc.errors(include_url=False, include_input=False), default=str)  # reportable as a 422
        return
    assert RuleDefinition.model_validate(parsed.model_dump(mode="json")) == parsed


# ---------------------------------------------------------------------------- passwords
@fuzz
@given(st.text(max_size=300), odd_text)
def test_password_policy_explains_or_accepts(password: str, name: str) -> None:
    """The policy behind register, reset and change (a password over zxcvbn's 72 characters
    was a 500 until schemathesis found it)."""
    counted("password_policy")
    problems = password_problems(password, Settings(env="test"), ["person@example.com", name])
    assert all(isinstance(p, str) for p in problems)


# ---------------------------------------------------------------------------- files
@fuzz
@given(any_file, st.sampled_from(list(FileCategory)))
def test_upload_inspection_accepts_or_refuses_with_a_4xx(data: bytes, category: FileCategory) -> None:
    """Sniffing (magic bytes, OOXML zips, SVG safety, CSV/text) of any bytes: a detected
    type, or an AppError with a 4xx status (413/415/422)."""
    counted("upload_inspection")
    try:
        detected = sniffing.inspect_upload(io.BytesIO(data), category)
    except AppError as exc:
        assert 400 <= exc.status < 500, exc
        return
    assert detected.kind in sniffing.POLICIES[category].allowed


@fuzz
@given(st.binary(max_size=200) | st.sampled_from([SAMPLES["png"], SAMPLES["jpeg"]]).flatmap(mutations))
def test_image_headers_are_read_or_refused(data: bytes) -> None:
    """Truncated, spliced and polyglot images: their info, or InvalidImage / ImageTooLarge (422)."""
    counted("image_inspection")
    try:
        info = images.inspect_image(io.BytesIO(data))
    except (images.InvalidImage, images.ImageTooLarge):
        return
    assert info.width > 0 and info.height > 0


@fuzz
@given(st.binary(max_size=200) | st.just(SAMPLES["docx"]).flatmap(mutations))
def test_archives_are_checked_or_refused(data: bytes) -> None:
    counted("archive_check")
    try:
        summary = archives.check_archive(io.BytesIO(data))
    except (archives.InvalidArchive, archives.ArchiveBomb):
        return
    assert summary.entries >= 0


@fuzz
@given(odd_text | st.text(max_size=600))
def test_filenames_are_sanitized(name: str) -> None:
    counted("filename")
    clean = sniffing.sanitize_filename(name)
    assert clean and "/" not in clean and "\\" not in clean and "\x00" not in clean
    assert len(clean.encode("utf-8")) <= 255


BOUNDARY = "fuzzboundary"


def _multipart(fields: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


VALID_FORM = _multipart([("category", None, b"other"), ("file", "a.txt", b"hello\n")])


async def _read_all(content_type: str, body: bytes, piece: int) -> list[tuple[str, bytes]]:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), piece):
            yield body[i:i + piece]

    # As the upload route reads: text fields, then the file part's data, then the rest checked.
    reader = multipart.MultipartReader(content_type, chunks())
    parts: list[tuple[str, bytes]] = []
    while (part := await reader.next_part()) is not None:
        if part.is_file:
            parts.append((part.name, b"".join([p async for p in reader.iter_data()])))
            await reader.finish()
            break
        parts.append((part.name, (await reader.read_text()).encode()))
    return parts


@fuzz
@given(st.sampled_from([f"multipart/form-data; boundary={BOUNDARY}", "multipart/form-data",
                        'multipart/form-data; boundary=""', "text/plain", f"multipart/form-data; boundary={'b' * 300}"])
       | st.text(st.characters(max_codepoint=255), max_size=80),  # a header is latin-1, as ASGI decodes it
       st.binary(max_size=300) | mutations(VALID_FORM), st.integers(1, 64))
def test_multipart_bodies_are_parsed_or_refused(content_type: str, body: bytes, piece: int) -> None:
    """The streaming multipart reader behind uploads, over any Content-Type and body cut at
    any chunk size: parts, or a 400/415/422 problem."""
    counted("multipart")
    try:
        parts = asyncio.run(_read_all(content_type, body, piece))
    except (BadRequest, UnsupportedMediaType, UnprocessableEntity) as exc:
        assert 400 <= exc.status < 500
        return
    assert all(isinstance(name, str) for name, _ in parts)


def test_multipart_valid_form_is_read_whole() -> None:
    parts = asyncio.run(_read_all(f"multipart/form-data; boundary={BOUNDARY}", VALID_FORM, 7))
    assert parts == [("category", b"other"), ("file", b"hello\n")]


# ------------------------------------------------------------------- platform responses
statuses = st.sampled_from([200, 400, 401, 403, 404, 408, 409, 429, 500, 502, 503])
bodies = json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200)
header_values = st.dictionaries(
    st.sampled_from(["retry-after", "x-business-use-case-usage", "x-app-usage", "x-ad-account-usage",
                     "x-shopify-shop-api-call-limit", "x-restli-protocol-version", "content-type"]),
    odd_text | json_values.map(json.dumps), max_size=4)
MAPPERS: dict[str, Callable[[httpx.Response], ConnectorError | None]] = {
    "meta": meta.error_for_response, "google": google.error_for_response,
    "shopify": shopify.error_for_response, "linkedin": linkedin.error_for_response,
}


def _safe_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v.encode("ascii", "ignore").decode().replace("\r", "").replace("\n", "") for k, v in headers.items()}


@fuzz
@given(st.sampled_from(sorted(MAPPERS)), statuses, bodies, header_values)
def test_platform_error_responses_map_to_a_connector_error(platform: str, status: int, body: bytes,
                                                          headers: dict[str, str]) -> None:
    """A platform's error answer, whatever its body and headers: a typed ConnectorError (the
    sync's retry/backoff/circuit decisions) or None for a success, never a crash."""
    counted("platform_errors")
    response = httpx.Response(status, content=body, headers=_safe_headers(headers),
                              request=httpx.Request("GET", "https://platform.example/v1/x"))
    error = MAPPERS[platform](response)  # None: no opinion, the generic status mapping decides
    assert error is None or isinstance(error, ConnectorError)


@fuzz
@given(json_values, statuses)
def test_tiktok_envelopes_map_to_a_connector_error(body: Any, status: int) -> None:
    counted("tiktok_envelope")
    error = tiktok.error_from_envelope(body, http_status=status, where="GET /x", rate_limit_wait=1.0)
    assert error is None or isinstance(error, ConnectorError)


@fuzz
@given(st.none() | odd_text | st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")))
def test_platform_headers_are_parsed_or_ignored(value: str | None) -> None:
    counted("platform_headers")
    assert parse_retry_after(value, 7.0) >= 0.0
    assert isinstance(meta.parse_usage_header(value), list)
    limit = shopify.parse_call_limit(value)
    assert limit is None or limit[1] > 0


@fuzz
@given(json_values)
def test_platform_values_are_parsed_or_refused(value: Any) -> None:
    """Scalars of platform payloads (times, durations) of any JSON type: a value or
    None, or the mapper's InvalidRequest, never a TypeError or OverflowError."""
    counted("platform_values")
    for parse in (meta.parse_time, shopify.parse_time, tiktok.parse_time, google.parse_duration):
        with contextlib.suppress(ConnectorError):
            parse(value)
