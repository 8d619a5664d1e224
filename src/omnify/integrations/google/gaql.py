"""A parser for the subset of the Google Ads Query Language the sandbox answers.

Why a real parser in a sandbox: a sandbox that ignored the query would answer a connector
that forgot its ``WHERE segments.date BETWEEN`` exactly like one that sent it. Parsing it
(and refusing unknown fields, resources and syntax as Google does) makes the sandbox test
our queries, not just our HTTP.

Supported: ``SELECT f[, f...] FROM resource [WHERE cond [AND cond...]] [ORDER BY f [ASC|DESC]
[, ...]] [LIMIT n] [PARAMETERS ...]`` with conditions ``=, !=, >, >=, <, <=, IN (...),
NOT IN (...), BETWEEN a AND b, DURING <preset>, IS NULL, IS NOT NULL, LIKE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>>=|<=|!=|=|>|<)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "ORDER", "BY", "LIMIT", "ASC", "DESC", "IN", "NOT", "BETWEEN",
             "DURING", "IS", "NULL", "LIKE", "PARAMETERS"}


class GaqlError(ValueError):
    """A query Google would refuse; ``code`` is the QueryError enum value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str  # = != > >= < <= IN NOT_IN BETWEEN DURING IS_NULL IS_NOT_NULL LIKE
    values: tuple[Any, ...] = ()


@dataclass(slots=True)
class Query:
    select: list[str]
    resource: str
    where: list[Condition] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    value: str


def tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise GaqlError("UNEXPECTED_INPUT", f"Error in query: unexpected input {text[pos:pos + 20]!r}.")
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            tokens.append(_Tok("kw", value.upper()))
        else:
            tokens.append(_Tok(kind, value))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise GaqlError("UNEXPECTED_END_OF_QUERY", "Error in query: unexpected end of query.")
        self.i += 1
        return tok

    def kw(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "kw" and tok.value == word:
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str, code: str) -> None:
        if not self.kw(word):
            got = self.peek()
            raise GaqlError(code, f"Error in query: expected {word}, got {got.value if got else 'end of query'}.")

    def field_name(self) -> str:
        tok = self.take()
        if tok.kind != "word":
            raise GaqlError("EXPECTED_FIELD_NAME", f"Error in query: expected a field name, got {tok.value!r}.")
        return tok.value

    def literal(self) -> Any:
        tok = self.take()
        if tok.kind == "string":
            return tok.value[1:-1].replace("\\'", "'").replace('\\"', '"')
        if tok.kind == "number":
            return float(tok.value) if "." in tok.value else int(tok.value)
        if tok.kind == "word":  # enum constant (ENABLED) or boolean
            low = tok.value.lower()
            return {"true": True, "false": False}.get(low, tok.value)
        raise GaqlError("EXPECTED_LITERAL", f"Error in query: expected a value, got {tok.value!r}.")

    def parse(self) -> Query:
        self.expect_kw("SELECT", "EXPECTED_SELECT")
        select = [self.field_name()]
        while (tok := self.peek()) is not None and tok.value == ",":
            self.i += 1
            select.append(self.field_name())
        self.expect_kw("FROM", "EXPECTED_FROM")
        resource = self.field_name()
        query = Query(select=select, resource=resource)
        if self.kw("WHERE"):
            query.where.append(self.condition())
            while self.kw("AND"):
                query.where.append(self.condition())
        if self.kw("ORDER"):
            self.expect_kw("BY", "EXPECTED_BY")
            while True:
                name = self.field_name()
                desc = False
                if self.kw("DESC"):
                    desc = True
                else:
                    self.kw("ASC")
                query.order_by.append((name, desc))
                if (tok := self.peek()) is not None and tok.value == ",":
                    self.i += 1
                    continue
                break
        if self.kw("LIMIT"):
            tok = self.take()
            if tok.kind != "number" or "." in tok.value or int(tok.value) <= 0:
                raise GaqlError("LIMIT_VALUE_NOT_POSITIVE", "Error in query: LIMIT must be a positive integer.")
            query.limit = int(tok.value)
        if self.kw("PARAMETERS"):
            self.i = len(self.t)
        if self.peek() is not None:
            raise GaqlError("UNEXPECTED_INPUT", f"Error in query: unexpected input {self.peek().value!r}.")  # type: ignore[union-attr]
        return query

    def condition(self) -> Condition:
        name = self.field_name()
        tok = self.take()
        if tok.kind == "op":
            return Condition(name, tok.value, (self.literal(),))
        if tok.kind == "kw":
            if tok.value == "IN":
                return Condition(name, "IN", self.value_list())
            if tok.value == "NOT":
                self.expect_kw("IN", "EXPECTED_IN")
                return Condition(name, "NOT_IN", self.value_list())
            if tok.value == "BETWEEN":
                low = self.literal()
                self.expect_kw("AND", "EXPECTED_AND")
                return Condition(name, "BETWEEN", (low, self.literal()))
            if tok.value == "DURING":
                return Condition(name, "DURING", (str(self.take().value).upper(),))
            if tok.value == "IS":
                if self.kw("NOT"):
                    self.expect_kw("NULL", "EXPECTED_NULL")
                    return Condition(name, "IS_NOT_NULL")
                self.expect_kw("NULL", "EXPECTED_NULL")
                return Condition(name, "IS_NULL")
            if tok.value == "LIKE":
                return Condition(name, "LIKE", (self.literal(),))
        raise GaqlError("INVALID_OPERATOR", f"Error in query: unexpected operator {tok.value!r}.")

    def value_list(self) -> tuple[Any, ...]:
        if self.take().value != "(":
            raise GaqlError("EXPECTED_OPENING_PARENTHESIS", "Error in query: expected '('.")
        values = [self.literal()]
        while True:
            tok = self.take()
            if tok.value == ")":
                return tuple(values)
            if tok.value != ",":
                raise GaqlError("EXPECTED_CLOSING_PARENTHESIS", "Error in query: expected ')'.")
            values.append(self.literal())


def parse(text: str) -> Query:
    if not text or not text.strip():
        raise GaqlError("QUERY_ERROR", "Error in query: the query is empty.")
    return _Parser(tokenize(text)).parse()


def _cmp_values(a: Any, b: Any) -> tuple[Any, Any]:
    if (isinstance(a, int | float) and not isinstance(a, bool)) or (
            isinstance(b, int | float) and not isinstance(b, bool)):
        try:
            return float(a), float(b)
        except (TypeError, ValueError):
            pass
    return str(a), str(b)


def matches(value: Any, cond: Condition) -> bool:
    """Evaluate one non-date condition against a field value (None = field unset)."""
    op = cond.op
    if op == "IS_NULL":
        return value in (None, "", [])
    if op == "IS_NOT_NULL":
        return value not in (None, "", [])
    if value is None:
        return False
    if op in ("IN", "NOT_IN"):
        hit = any(_cmp_values(value, v)[0] == _cmp_values(value, v)[1] for v in cond.values)
        return hit if op == "IN" else not hit
    if op == "LIKE":
        pattern = "^" + re.escape(str(cond.values[0])).replace("%", ".*").replace("_", ".") + "$"
        return re.match(pattern, str(value)) is not None
    if op == "BETWEEN":
        lo, v1 = _cmp_values(cond.values[0], value)
        hi, v2 = _cmp_values(cond.values[1], value)
        return bool(lo <= v1 and v2 <= hi)
    a, b = _cmp_values(value, cond.values[0])
    return bool({"=": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op])
