"""Profile validators: E.164, IANA time zones, ISO 4217, URLs, colours, name keys."""

from __future__ import annotations

import pytest

from omnify.clients.validators import e164_phone, hex_color, iana_timezone, iso_currency, name_key, web_url


@pytest.mark.parametrize(("raw", "expected"), [
    ("+14155552671", "+14155552671"),
    ("+1 (415) 555-2671", "+14155552671"),
    ("+33 1 42 68 53 00", "+33142685300"),
])
def test_e164_accepts_international_numbers(raw: str, expected: str) -> None:
    assert e164_phone(raw) == expected


@pytest.mark.parametrize("raw", ["4155552671", "+1 555", "+999 1234567", "+44 abc", "", "+"])
def test_e164_refuses_national_or_invalid_numbers(raw: str) -> None:
    with pytest.raises(ValueError):
        e164_phone(raw)


def test_timezones() -> None:
    assert iana_timezone(" Europe/Paris ") == "Europe/Paris"
    assert iana_timezone("UTC") == "UTC"
    for bad in ("Europe/Atlantis", "CEST", "GMT+2", "../etc/passwd"):
        with pytest.raises(ValueError):
            iana_timezone(bad)


def test_currencies() -> None:
    assert iso_currency("eur") == "EUR"
    assert iso_currency("JPY") == "JPY"
    for bad in ("EURO", "XXX", "XAU", "ZZZ", "€"):
        with pytest.raises(ValueError):
            iso_currency(bad)


def test_urls() -> None:
    assert web_url(" https://example.com/a?b=c ") == "https://example.com/a?b=c"
    for bad in ("example.com", "javascript:alert(1)", "ftp://example.com", "https://u:p@example.com",
                "http://intranet", "https://exa mple.com"):
        with pytest.raises(ValueError):
            web_url(bad)


def test_colours_and_name_keys() -> None:
    assert hex_color("#abc") == "#ABC"
    with pytest.raises(ValueError):
        hex_color("blue")
    assert name_key("  ACME\u00a0  Corp ") == name_key("acme corp") == "acme corp"
    assert name_key("Straße") == name_key("STRASSE")
