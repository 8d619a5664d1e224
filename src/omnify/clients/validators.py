"""Validation of the profile's standardised values (phone, time zone, currency, URL, colour).

Each check leans on the authority for its standard rather than a home-made regex:
``phonenumbers`` (Google's libphonenumber metadata) for E.164, the IANA database shipped
with the OS or ``tzdata`` for time zones, ``pycountry`` (ISO 4217) for currencies.
Validators return the canonical form, so equal values are stored identically.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

import phonenumbers
import pycountry
from pydantic import AfterValidator

#: ISO 4217 codes that are not money one can spend on ads.
_NON_CURRENCIES = frozenset({"XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XBA", "XBB", "XBC", "XBD", "XDR",
                             "XSU", "XUA"})
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def e164_phone(value: str) -> str:
    """A phone number in international form, returned as strict E.164 (``+14155552671``).

    Spaces, dashes and brackets are tolerated on input (people paste them), the leading
    ``+`` and country code are not optional: a profile is shared across countries, so a
    national-format number is ambiguous.
    """
    raw = value.strip()
    if not raw.startswith("+"):
        raise ValueError("must be in international E.164 form, starting with + and the country code")
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("is not a valid phone number for its country code")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def iana_timezone(value: str) -> str:
    name = value.strip()
    if name not in _zones():
        raise ValueError("must be an IANA time zone name such as Europe/Paris or America/New_York")
    return name


def iso_currency(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or code in _NON_CURRENCIES or pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError("must be an ISO 4217 currency code such as EUR or USD")
    return code


def web_url(value: str) -> str:
    """An absolute http(s) URL with a real host; stored as given (minus whitespace).

    pydantic's ``HttpUrl`` accepts the URL first; this adds what it lets through but a
    profile must not hold: credentials in the URL, and hosts without a dot (``http://intranet``).
    """
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    if parts.username or parts.password:
        raise ValueError("must not contain a user name or password")
    if "." not in parts.hostname.strip("."):
        raise ValueError("must have a public host name, e.g. https://example.com")
    if any(ch.isspace() for ch in url) or len(url) > 2048:
        raise ValueError("must be at most 2048 characters without spaces")
    return url


def hex_color(value: str) -> str:
    color = value.strip()
    if not _HEX_COLOR.fullmatch(color):
        raise ValueError("must be a hex colour such as #1A2B3C")
    return color.upper()


def clean_text(value: str) -> str:
    """Collapse runs of whitespace and drop control characters from a one-line value."""
    text = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C" or ch in "\t\n")
    text = " ".join(text.split())
    if not text:
        raise ValueError("must not be blank")
    return text


def clean_multiline(value: str) -> str:
    """Keep line breaks (descriptions, briefs) but drop other control characters."""
    text = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C" or ch in "\n\t")
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise ValueError("must not be blank")
    return text


def name_key(value: str) -> str:
    """The comparison key for company names: NFKC, case-folded, single-spaced.

    "ACME  Corp" and "acme corp" are the same company to a person, so they collide in
    the per-organization uniqueness check.
    """
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


Phone = Annotated[str, AfterValidator(e164_phone)]
TimeZoneName = Annotated[str, AfterValidator(iana_timezone)]
CurrencyCode = Annotated[str, AfterValidator(iso_currency)]
WebUrl = Annotated[str, AfterValidator(web_url)]
HexColor = Annotated[str, AfterValidator(hex_color)]
OneLine = Annotated[str, AfterValidator(clean_text)]
MultiLine = Annotated[str, AfterValidator(clean_multiline)]
