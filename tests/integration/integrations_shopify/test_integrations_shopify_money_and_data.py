"""Money conversion (shared by every connector) and the seeded Shopify store generator."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from statistics import mean

import pytest

from omnify.integrations.money import (
    MoneyError,
    currency_exponent,
    decimal_to_minor,
    format_decimal,
    minor_to_decimal,
)
from omnify.integrations.shopify.store_data import StoreConfig, generate_store, order_json


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("12.34", "USD", 1234),
        ("0.1", "usd", 10),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        (Decimal("99.99"), "EUR", 9999),
        (19.99, "USD", 1999),
        (7, "USD", 700),
        ("-5.50", "USD", -550),
        ("", "USD", 0),
        (None, "USD", 0),
        ("0.005", "USD", 0),
        ("0.015", "USD", 2),  # half-even
    ],
)
def test_decimal_to_minor(value: object, currency: str, minor: int) -> None:
    assert decimal_to_minor(value, currency) == minor  # type: ignore[arg-type]


def test_strict_and_invalid_amounts() -> None:
    with pytest.raises(MoneyError):
        decimal_to_minor("12.345", "USD", strict=True)
    with pytest.raises(MoneyError):
        decimal_to_minor("12.5", "JPY", strict=True)
    for bad in ("abc", "NaN", "Infinity", True):
        with pytest.raises(MoneyError):
            decimal_to_minor(bad, "USD")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        currency_exponent("US")
    assert (currency_exponent("jpy"), currency_exponent("BHD"), currency_exponent("GBP")) == (0, 3, 2)
    assert minor_to_decimal(12345, "USD") == Decimal("123.45") and format_decimal(Decimal("1E+3")) == "1000"
    assert str(minor_to_decimal(1500, "JPY")) == "1500" and str(minor_to_decimal(5, "KWD")) == "0.005"
    with pytest.raises(MoneyError):
        minor_to_decimal(1.5, "USD")  # type: ignore[arg-type]


def test_store_is_deterministic_and_shop_specific() -> None:
    cfg = StoreConfig(shop="acme-outdoor.myshopify.com", end=date(2025, 6, 30))
    a, b = generate_store(cfg), generate_store(cfg)
    assert [order_json(a, o) for o in a.orders.values()] == [order_json(b, o) for o in b.orders.values()]
    other = generate_store(StoreConfig(shop="bright-smiles.myshopify.com", end=date(2025, 6, 30)))
    assert set(other.orders) != set(a.orders)


def test_orders_follow_the_generating_process_and_add_up() -> None:
    store = generate_store(StoreConfig(shop="acme-outdoor.myshopify.com", end=date(2025, 6, 30)))
    start = date(2024, 7, 1)
    orders = list(store.orders.values())
    assert all(start <= o.created_at.astimezone(store.tz).date() <= date(2025, 6, 30) for o in orders)
    assert [o.number for o in sorted(orders, key=lambda o: o.created_at)] == sorted(o.number for o in orders)
    for o in orders:  # Shopify's arithmetic, exact to the cent
        assert o.total_line_items_price == sum(li.total for li in o.line_items)
        assert o.subtotal_price == o.total_line_items_price - o.total_discounts
        assert o.total_price == o.subtotal_price + o.shipping + o.total_tax
        assert o.updated_at >= o.created_at
    buyers = [c for c in store.customers.values() if c.order_ids]
    fast = [len(c.order_ids) for c in buyers if c.purchase_rate_per_week > 0.2]
    slow = [len(c.order_ids) for c in buyers if c.purchase_rate_per_week < 0.01]
    assert fast and slow and mean(fast) > 2 * mean(slow)  # the rate drives repeat purchases
    assert sum(1 for c in store.customers.values() if not c.order_ids) > 0  # newsletter-only sign-ups
    assert sum(1 for o in orders if o.refunded) > 0 and sum(1 for o in orders if o.cancelled_at) > 0
