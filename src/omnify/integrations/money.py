"""Exact conversion between platform decimal amounts and our integer minor units.

Why here and why Decimal: TikTok reports spend as decimal strings ("12.34"), Shopify prices
are decimal strings too, and both must land as integer minor units without a float ever
touching them (0.1 + 0.2 style drift makes daily sums disagree with the platform's own UI).
The minor-unit digits are ISO 4217's, which is what both platforms use for their amounts.

This module lives in the Shopify package only until a shared money helper exists (requested
in notes/INTEGRATIONS_REQUESTS.md); TikTok imports it from here.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

# ISO 4217 currencies whose minor unit is not 2 digits (the table's "E" column). Everything
# else in active use has 2. Kept as data, not logic: it changes about once a decade.
_EXPONENTS: dict[str, int] = {
    # 0 digits
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # 3 digits
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    # 4 digits
    "CLF": 4,
    "UYW": 4,
}


class MoneyError(ValueError):
    """An amount that cannot be represented exactly (or is not a number at all)."""


def currency_exponent(currency: str) -> int:
    """Minor-unit digits of an ISO 4217 code (2 unless the currency is listed otherwise)."""
    code = currency.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise MoneyError(f"not an ISO 4217 currency code: {currency!r}")
    return _EXPONENTS.get(code, 2)


def to_decimal(value: str | int | float | Decimal | None) -> Decimal:
    """A platform amount as Decimal. Floats go through ``repr`` (shortest round-trip form),
    which is what a JSON number with at most ~15 significant digits really meant."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        raise MoneyError("a boolean is not an amount")
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise MoneyError(f"not a decimal amount: {value!r}") from None
    if not d.is_finite():
        raise MoneyError(f"not a finite amount: {value!r}")
    return d


def decimal_to_minor(value: str | int | float | Decimal | None, currency: str, *, strict: bool = False) -> int:
    """``"12.34" USD -> 1234``; ``"1500" JPY -> 1500``.

    Platforms occasionally report more digits than the currency has (TikTok's computed
    metrics, Shopify's tax lines in some locales). ``strict=True`` refuses those (use it for
    values we will write back, e.g. a budget); otherwise the value is rounded half-even,
    the banker's rounding platforms use for settlement, so sums do not drift upward.
    """
    d = to_decimal(value)
    exp = currency_exponent(currency)
    scaled = d.scaleb(exp)
    integral = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    if strict and integral != scaled:
        raise MoneyError(f"{value!r} has more precision than {currency.upper()} allows")
    return int(integral)


def minor_to_decimal(amount_minor: int, currency: str) -> Decimal:
    """``1234 USD -> Decimal("12.34")`` (exactly ``exp`` fractional digits)."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise MoneyError("minor units must be an integer")
    exp = currency_exponent(currency)
    return Decimal(amount_minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))


def format_decimal(amount: Decimal) -> str:
    """Plain positional notation (never ``1E+3``), as platforms expect in JSON strings."""
    return format(amount, "f")


def format_minor(amount_minor: int, currency: str) -> str:
    """``123456, "EUR"`` -> ``"1,234.56 EUR"`` (as many decimals as the currency has)."""
    return f"{minor_to_decimal(amount_minor, currency):,.{currency_exponent(currency)}f} {currency}"
