"""Rest.li protocol 2.0 URL encoding, both ways, and LinkedIn URNs.

Why hand-rolled and in one place: LinkedIn's ``/rest`` APIs read structured query parameters
(``search=(status:(values:List(ACTIVE)))``, ``dateRange=(start:(year:2026,month:1,day:1))``)
whose structural characters ``( ) , :`` must reach the server *unescaped* while every string
inside them is percent-encoded (``List(urn%3Ali%3AsponsoredAccount%3A1)``). A generic HTTP
client's query encoder escapes the parentheses (LinkedIn then reads one long literal string and
answers 400), so the connector builds the query string itself with :func:`query` and the
sandbox parses the raw query string with :func:`decode`, rejecting what LinkedIn rejects (an
unescaped ``:`` inside a list item), which is how a shape mistake of ours would show up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

Value = str | int | float | bool | list[Any] | dict[str, Any] | None

URN_ACCOUNT = "urn:li:sponsoredAccount:"
URN_CAMPAIGN_GROUP = "urn:li:sponsoredCampaignGroup:"
URN_CAMPAIGN = "urn:li:sponsoredCampaign:"
URN_CREATIVE = "urn:li:sponsoredCreative:"


class RestliDecodeError(ValueError):
    """A query value that is not valid Rest.li 2.0 (what LinkedIn answers 400 for)."""


# ------------------------------------------------------------------------------ encoding
def encode(value: Value) -> str:
    """One value in Rest.li 2.0 form (strings fully percent-encoded, structure left bare)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value, safe="") if value else "''"
    if isinstance(value, list | tuple):
        return "List(" + ",".join(encode(v) for v in value) + ")"
    if isinstance(value, Mapping):
        return "(" + ",".join(f"{encode(str(k))}:{encode(v)}" for k, v in sorted(value.items())) + ")"
    return str(value)


def query(params: Mapping[str, Value], *, fields: list[str] | None = None) -> str:
    """A whole query string. ``fields`` (a projection) stays in its comma form, as LinkedIn's
    own client sends it (the 2.0 ``List()`` form is not accepted for projections)."""
    parts = [f"{quote(k, safe='')}={encode(v)}" for k, v in params.items() if v is not None]
    if fields:
        parts.append("fields=" + ",".join(fields))
    return "&".join(parts)


def date_range(start: Any, end: Any) -> dict[str, Any]:
    """``dateRange`` of adAnalytics from two ``date`` objects (both inclusive)."""
    return {"start": {"year": start.year, "month": start.month, "day": start.day},
            "end": {"year": end.year, "month": end.month, "day": end.day}}


# ------------------------------------------------------------------------------ decoding
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> RestliDecodeError:
        return RestliDecodeError(f"{message} at position {self.pos} of {self.text!r}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self, *, nested: bool) -> Any:
        if self.text.startswith("List(", self.pos):
            self.pos += len("List(")
            return self.list_()
        if self.peek() == "(":
            self.pos += 1
            return self.object_()
        return self.leaf(nested=nested)

    def list_(self) -> list[Any]:
        items: list[Any] = []
        if self.peek() == ")":
            self.pos += 1
            return items
        while True:
            items.append(self.value(nested=True))
            ch = self.peek()
            self.pos += 1
            if ch == ")":
                return items
            if ch != ",":
                raise self.error("expected ',' or ')' in List()")

    def object_(self) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        if self.peek() == ")":
            self.pos += 1
            return obj
        while True:
            key = self.leaf(nested=True, key=True)
            if self.peek() != ":":
                raise self.error("expected ':' after an object key")
            self.pos += 1
            obj[key] = self.value(nested=True)
            ch = self.peek()
            self.pos += 1
            if ch == ")":
                return obj
            if ch != ",":
                raise self.error("expected ',' or ')' in an object")

    def leaf(self, *, nested: bool, key: bool = False) -> str:
        start = self.pos
        stops = ",():" if nested else ""
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        raw = self.text[start:self.pos]
        if nested and not key and self.peek() == ":":
            raise self.error("unescaped ':' in a value (strings inside Rest.li structures must be percent-encoded)")
        if nested and self.peek() == "(":
            raise self.error("unexpected '('")
        if raw == "''":
            return ""
        if not raw and nested:
            raise self.error("empty value")
        return unquote(raw)


def decode(raw: str) -> Any:
    """One raw (still percent-encoded) query value -> str / list / dict. A top-level plain
    string is simply percent-decoded (LinkedIn tolerates ``account=urn:li:...`` there)."""
    if not (raw.startswith("List(") or raw.startswith("(")):
        return unquote(raw)
    parser = _Parser(raw)
    value = parser.value(nested=True)
    if parser.pos != len(raw):
        raise parser.error("trailing characters")
    return value


def parse_query(raw_query: str) -> dict[str, str]:
    """Raw query string -> {name: raw value} (values still encoded; decode each with
    :func:`decode`). A repeated name keeps its last value."""
    out: dict[str, str] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out[unquote(name)] = value
    return out


# ------------------------------------------------------------------------------ URNs
def urn_id(value: Any, prefix: str | None = None) -> str:
    """``urn:li:sponsoredCampaign:123`` -> ``"123"`` (a bare id passes through)."""
    text = str(value)
    if prefix is not None and text.startswith(prefix):
        return text[len(prefix):]
    return text.rsplit(":", 1)[-1] if text.startswith("urn:li:") else text
