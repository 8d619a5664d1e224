"""JSON log lines, request context, access log and redaction."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from omnify.core.logging import (
    REDACTED,
    configure_logging,
    get_logger,
    is_sensitive_key,
    redact,
    redact_processor,
    redact_text,
)


async def test_access_log_is_json_with_ids_route_and_latency(make_client, parse_lines, capsys) -> None:
    _, client = await make_client()
    capsys.readouterr()
    resp = await client.get("/api/v1/things/abc-123", headers={"X-Request-ID": "req-logs-1"})
    assert resp.status_code == 200
    lines = parse_lines(capsys.readouterr().out)

    access = [e for e in lines if e.get("event") == "http_request"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "req-logs-1"
    assert entry["route"] == "/api/v1/things/{thing_id}"
    assert entry["method"] == "GET"
    assert entry["status"] == 200
    assert isinstance(entry["latency_ms"], float | int) and entry["latency_ms"] >= 0
    assert entry["org_id"] == "org-42"
    assert entry["user_id"] == "user-7"
    assert entry["level"] == "info"
    assert "timestamp" in entry
    # The raw path (which may hold ids or tokens) is not logged, only the template.
    assert "abc-123" not in json.dumps(entry)

    app_line = next(e for e in lines if e.get("event") == "thing_loaded")
    assert app_line["request_id"] == "req-logs-1"
    assert app_line["org_id"] == "org-42"


async def test_access_log_sees_identity_bound_only_in_contextvars(make_client, parse_lines, capsys) -> None:
    _, client = await make_client()
    capsys.readouterr()
    await client.get("/ctx-only")
    entry = next(e for e in parse_lines(capsys.readouterr().out) if e.get("event") == "http_request")
    assert entry["user_id"] == "ctx-user"


async def test_request_context_does_not_leak_between_requests(make_client, parse_lines, capsys) -> None:
    _, client = await make_client()
    await client.get("/api/v1/things/a")
    capsys.readouterr()
    await client.get("/small")
    entry = next(e for e in parse_lines(capsys.readouterr().out) if e.get("event") == "http_request")
    assert entry["org_id"] is None and entry["user_id"] is None


async def test_secrets_redacted_in_emitted_line(make_client, parse_lines, capsys) -> None:
    _, client = await make_client()
    capsys.readouterr()
    await client.get("/api/v1/things/x")
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "abc.def.ghi" not in out
    assert "xyz987token" not in out
    line = next(e for e in parse_lines(out) if e.get("event") == "thing_loaded")
    assert line["password"] == REDACTED
    assert line["headers"]["Authorization"] == REDACTED
    assert line["note"] == f"client sent Bearer {REDACTED} in a message"


async def test_unhandled_error_logged_with_request_id_and_no_secret(make_client, parse_lines, capsys) -> None:
    _, client = await make_client()
    capsys.readouterr()
    resp = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["request_id"] == "boom-1"
    out = capsys.readouterr().out
    lines = parse_lines(out)
    access = next(e for e in lines if e.get("event") == "http_request")
    assert access["status"] == 500 and access["level"] == "error"
    error = next(e for e in lines if e.get("event") == "unhandled_error")
    assert error["request_id"] == "boom-1"
    assert "RuntimeError" in error["exception"]
    assert "hunter2" not in out


async def test_stdlib_loggers_are_bridged_to_json(settings_for, parse_lines, capsys) -> None:
    configure_logging(settings_for())
    structlog.contextvars.bind_contextvars(request_id="bridge-1")
    try:
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 4242)
        logging.getLogger("sqlalchemy.pool").warning("connect to postgresql://app:s3cr3t@db/omnify failed")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = parse_lines(capsys.readouterr().out)
    uvicorn_line = next(e for e in lines if e["logger"] == "uvicorn.error")
    assert uvicorn_line["event"] == "Started server process [4242]"
    assert uvicorn_line["request_id"] == "bridge-1"
    assert "color_message" not in uvicorn_line
    sa_line = next(e for e in lines if e["logger"] == "sqlalchemy.pool")
    assert sa_line["level"] == "warning"
    assert "s3cr3t" not in sa_line["event"]


async def test_level_and_console_rendering(settings_for, capsys) -> None:
    configure_logging(settings_for(log_level="warning", log_json=False))
    log = get_logger("omnify.tests.console")
    log.info("quiet_event")
    log.warning("loud_event", token="should-not-show")
    out = capsys.readouterr().out
    assert "quiet_event" not in out
    assert "loud_event" in out
    assert "should-not-show" not in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.strip().splitlines()[-1])
    configure_logging(settings_for())  # back to JSON for later tests


def test_invalid_log_level_is_a_clear_error(settings_for) -> None:
    with pytest.raises(ValueError, match="OMNIFY_LOG_LEVEL"):
        configure_logging(settings_for(log_level="chatty"))


def test_reconfiguring_does_not_duplicate_handlers(settings_for) -> None:
    configure_logging(settings_for())
    configure_logging(settings_for())
    marked = [h for h in logging.getLogger().handlers if getattr(h, "_omnify_log_handler", False)]
    assert len(marked) == 1


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("password", True),
        ("new_password", True),
        ("Authorization", True),
        ("X-Api-Key", True),
        ("api_key", True),
        ("access_token", True),
        ("refresh_token", True),
        ("client_secret", True),
        ("Cookie", True),
        ("set-cookie", True),
        ("api_key_id", False),
        ("token_prefix", False),
        ("email", False),
        ("event", False),
    ],
)
def test_sensitive_keys(key: str, sensitive: bool) -> None:
    assert is_sensitive_key(key) is sensitive


def test_redact_walks_nested_structures() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLWJ5dGVz"
    event = {
        "event": "login",
        "user": {"email": "a@example.com", "password": "pw-123", "tokens": [{"refresh_token": "r1"}]},
        "headers": [("authorization", "Basic dXNlcjpwYXNz"), ("accept", "application/json")],
        "message": f"got {jwt} and omk_live_AbCdEf123456 from https://u:pa55@example.com/cb?code=xyz&state=1",
        "count": 3,
        "api_key_id": "3f2a",
    }
    out = redact(event)
    assert out["event"] == "login"
    assert out["user"]["email"] == "a@example.com"
    assert out["user"]["password"] == REDACTED
    assert out["user"]["tokens"] == REDACTED
    assert out["headers"][0] == ("authorization", REDACTED)
    assert out["headers"][1] == ("accept", "application/json")
    assert jwt not in out["message"]
    assert "AbCdEf123456" not in out["message"]
    assert "pa55" not in out["message"]
    assert "code=xyz" not in out["message"] and "state=1" in out["message"]
    assert out["count"] == 3
    assert out["api_key_id"] == "3f2a"
    assert event["user"]["password"] == "pw-123"  # input untouched


def test_redact_text() -> None:
    assert redact_text("nothing secret here, 42 rows") == "nothing secret here, 42 rows"
    assert redact_text("Authorization: Bearer abc123") == f"Authorization: Bearer {REDACTED}"
    assert redact_text('{"password": "pw1", "n": 1}') == f'{{"password": "{REDACTED}", "n": 1}}'
    assert redact_text("retry token=t0k3n now") == f"retry token={REDACTED} now"
    # OAuth callbacks of TikTok (auth_code) and Shopify (code, hmac), and Shopify's token shapes.
    assert redact_text("GET /cb?auth_code=ab12cd&state=s1") == f"GET /cb?auth_code={REDACTED}&state=s1"
    assert redact_text("/cb?code=c0de&hmac=9f8e&shop=a.myshopify.com") == (
        f"/cb?code={REDACTED}&hmac={REDACTED}&shop=a.myshopify.com")
    assert redact_text("refused shpat_0123456789abcdef") == f"refused shpat_{REDACTED}"
    assert redact_text("secret shpss_abcdef012345 rotated") == f"secret shpss_{REDACTED} rotated"


def test_hex_trace_ids_pass_redaction_untouched_and_anything_else_is_redacted() -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    out = redact_processor(None, "info", {"event": "x", "trace_id": trace_id, "span_id": span_id, "token": "t"})
    assert out == {"event": "x", "trace_id": trace_id, "span_id": span_id, "token": REDACTED}
    # A trace id that is not an id (a job header is free text) goes through the patterns.
    out = redact_processor(None, "info", {"event": "x", "trace_id": "Bearer abc.def"})
    assert out["trace_id"] == f"Bearer {REDACTED}"


async def test_a_row_changed_meanwhile_is_a_409_not_a_500(make_client, parse_lines, capsys) -> None:
    """An UPDATE that matched no row (another request deleted or changed it: StaleDataError)
    is the client's race, not a bug: 409 problem+json, and no traceback in the log."""
    _, client = await make_client()
    capsys.readouterr()
    resp = await client.post("/stale")
    assert resp.status_code == 409, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"].endswith("/concurrent-change")
    lines = parse_lines(capsys.readouterr().out)
    assert not any(e.get("event") == "unhandled_error" for e in lines)
    assert any(e.get("event") == "concurrent_change" for e in lines)


def test_the_web_error_page_shows_a_row_changed_meanwhile_as_a_409() -> None:
    from sqlalchemy.orm.exc import StaleDataError

    from omnify.web.errors import describe

    status, title, detail, _ = describe(StaleDataError("0 were matched"))
    assert status == 409 and "meanwhile" in detail and title == "Changed meanwhile"


async def test_a_constraint_lost_to_another_request_is_a_409_not_a_500(make_client, parse_lines, capsys) -> None:
    """A parent deleted (or a unique value taken) by another request between a service's check
    and its write: the web scan's run-now racing a rule's deletion."""
    _, client = await make_client()
    capsys.readouterr()
    resp = await client.post("/fk-race")
    assert resp.status_code == 409, resp.text
    assert resp.json()["type"].endswith("/concurrent-change")
    lines = parse_lines(capsys.readouterr().out)
    assert not any(e.get("event") == "unhandled_error" for e in lines)
    assert any(e.get("event") == "concurrent_change" and e.get("error_type") == "IntegrityError" for e in lines)
