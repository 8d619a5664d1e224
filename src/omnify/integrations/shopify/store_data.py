"""Deterministic Shopify store data: products, customers and a year of orders.

Why a BG/NBD process: the brain estimates customer lifetime value and repeat-purchase
probability from orders, so the sandbox's customers must behave like real ones, and the
model those estimators assume is the right generator to test them against (ground truth
is kept on each customer: ``purchase_rate_per_week``, ``dropout_p``, ``mean_order_value``).

* Acquisition: first purchases spread over the year with weekly and Q4 seasonality.
* Repeat purchases (BG/NBD, Fader-Hardie-Lee 2005): while "alive" a customer buys as a
  Poisson process with rate lambda ~ Gamma(r, alpha); after each purchase they drop out
  with probability p ~ Beta(a, b). Default parameters are the paper's CDNOW fit.
* Order value (Gamma-Gamma): each customer's spend level nu ~ Gamma(q, gamma), order
  targets ~ Gamma(p, nu), filled with catalogue products near that target.
* Shopify lifecycle: discounts, shipping, tax (exact Decimal, half-even cents), refunds and
  cancellations that move ``updated_at`` later (so incremental syncs have work to do),
  fulfilment and auto-archiving (``closed_at``) so the default ``status=open`` filter hides
  most orders, as on a real shop.

Everything derives from ``random.Random`` seeded from (seed, shop), so runs are identical.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

_FIRST = (
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Elijah",
    "Sophia",
    "James",
    "Isabella",
    "Lucas",
    "Mia",
    "Mateo",
    "Amelia",
    "Ethan",
    "Harper",
    "Levi",
    "Evelyn",
    "Aiden",
    "Luna",
    "Leo",
    "Camila",
    "Jack",
    "Sofia",
    "Henry",
    "Aria",
    "Owen",
    "Chloe",
    "Ezra",
    "Layla",
    "Kai",
)
_LAST = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Lewis",
)
_PRODUCT_ADJ = ("Trail", "Summit", "Everyday", "Ultralight", "Classic", "Merino", "Storm", "Coastal", "Alpine", "Urban")
_PRODUCT_NOUN = (
    ("Backpack", "Bags", Decimal("89.00")),
    ("Rain Jacket", "Outerwear", Decimal("149.00")),
    ("Water Bottle", "Accessories", Decimal("24.00")),
    ("Hiking Socks", "Apparel", Decimal("18.00")),
    ("Fleece", "Outerwear", Decimal("79.00")),
    ("Beanie", "Accessories", Decimal("28.00")),
    ("Trail Shoes", "Footwear", Decimal("129.00")),
    ("Headlamp", "Gear", Decimal("39.00")),
    ("Camp Mug", "Gear", Decimal("16.00")),
    ("Base Layer", "Apparel", Decimal("64.00")),
    ("Daypack", "Bags", Decimal("59.00")),
    ("Gloves", "Accessories", Decimal("34.00")),
)
_VENDORS = ("Acme Outdoor", "Northpeak", "Riverstone Supply")
_SIZES = ("S", "M", "L", "XL")

CENT = Decimal("0.01")
MAX_TIMESTAMP = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    shop: str  # "acme-outdoor.myshopify.com"
    seed: int = 7
    customers: int = 400
    products: int = 24
    end: date | None = None  # last day with orders; default today (UTC)
    days: int = 365
    currency: str = "USD"
    timezone: str = "America/New_York"
    tax_rate: Decimal = Decimal("0.0825")
    # BG/NBD (per week; CDNOW fit) and Gamma-Gamma (CDNOW fit, scaled by spend_scale)
    r: float = 0.243
    alpha: float = 4.414
    a: float = 0.793
    b: float = 2.426
    gg_p: float = 6.25
    gg_q: float = 3.74
    gg_gamma: float = 15.44
    spend_scale: float = 2.2
    newsletter_only_share: float = 0.08  # customers who signed up but never ordered


@dataclass(slots=True)
class Variant:
    id: int
    product_id: int
    title: str
    sku: str
    price: Decimal
    inventory_quantity: int


@dataclass(slots=True)
class Product:
    id: int
    title: str
    handle: str
    vendor: str
    product_type: str
    status: str
    tags: str
    created_at: datetime
    updated_at: datetime
    variants: list[Variant]


@dataclass(slots=True)
class LineItem:
    id: int
    product: Product
    variant: Variant
    quantity: int

    @property
    def total(self) -> Decimal:
        return self.variant.price * self.quantity


@dataclass(slots=True)
class Order:
    id: int
    number: int
    customer_id: int | None
    email: str | None
    created_at: datetime
    updated_at: datetime
    line_items: list[LineItem]
    total_line_items_price: Decimal
    total_discounts: Decimal
    subtotal_price: Decimal
    shipping: Decimal
    total_tax: Decimal
    total_price: Decimal
    refunded: Decimal = Decimal("0.00")
    discount_code: str | None = None
    financial_status: str = "paid"
    fulfillment_status: str | None = None
    fulfilled_at: datetime | None = None
    closed_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    refunded_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"#{self.number}"

    @property
    def current_total_price(self) -> Decimal:
        return Decimal("0.00") if self.cancelled_at else self.total_price - self.refunded


@dataclass(slots=True)
class Customer:
    id: int
    first_name: str
    last_name: str
    email: str
    phone: str
    created_at: datetime
    updated_at: datetime
    accepts_marketing: bool
    city: str
    province_code: str
    # ground truth of the generating process
    purchase_rate_per_week: float
    dropout_p: float
    mean_order_value: float
    order_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Store:
    config: StoreConfig
    shop_id: int
    name: str
    products: dict[int, Product]
    customers: dict[int, Customer]
    orders: dict[int, Order]
    next_order_seq: int
    rng: random.Random

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.timezone)

    def customer_orders(self, customer_id: int) -> list[Order]:
        return [self.orders[o] for o in self.customers[customer_id].order_ids]

    def customer_totals(self, customer_id: int) -> tuple[int, Decimal, Order | None]:
        """(orders_count, total_spent, last order) as Shopify computes them: cancelled orders
        do not count, refunds reduce the amount spent."""
        orders = [o for o in self.customer_orders(customer_id) if o.cancelled_at is None]
        spent = sum((o.current_total_price for o in orders), Decimal("0.00"))
        last = max(orders, key=lambda o: o.created_at) if orders else None
        return len(orders), spent, last

    def new_order(self, *, customer_id: int | None = None, at: datetime | None = None) -> Order:
        """A new (unfulfilled, paid) order, e.g. to fire ``orders/create`` in a test."""
        now = at or datetime.now(UTC)
        if customer_id is None:
            customer_id = self.rng.choice(sorted(self.customers))
        customer = self.customers[customer_id]
        seq = self.next_order_seq
        self.next_order_seq += 1
        order = _build_order(self, seq, customer, now, customer.mean_order_value)
        order.updated_at = now
        self.orders[order.id] = order
        customer.order_ids.append(order.id)
        customer.updated_at = now
        return order

    def refund(self, order_id: int, *, at: datetime | None = None, amount: Decimal | None = None) -> Order:
        order = self.orders[order_id]
        now = at or datetime.now(UTC)
        remaining = order.total_price - order.refunded
        value = remaining if amount is None else min(amount.quantize(CENT), remaining)
        order.refunded += value
        order.refunded_at = now
        order.updated_at = now
        order.financial_status = "refunded" if order.refunded >= order.total_price else "partially_refunded"
        if order.customer_id is not None:
            self.customers[order.customer_id].updated_at = now
        return order


def _rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - seeded test data, not security


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _seasonal_weight(d: date) -> float:
    weekly = (0.9, 0.92, 0.95, 1.0, 1.08, 1.15, 1.05)[d.weekday()]
    q4 = 1.0 + (0.6 if d.month == 11 and 20 <= d.day <= 30 else 0.35 if d.month in (11, 12) else 0.0)
    summer = 1.1 if d.month in (6, 7) else 1.0
    return weekly * q4 * summer


def _shop_time(rng: random.Random, day: date, tz: ZoneInfo) -> datetime:
    """A plausible local shopping time (evening-heavy), returned in UTC."""
    hour = min(23, max(6, int(rng.gauss(19, 3.5))))
    local = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=tz)
    return local.astimezone(UTC)


def _build_products(cfg: StoreConfig, rng: random.Random, start: date) -> dict[int, Product]:
    products: dict[int, Product] = {}
    tz = ZoneInfo(cfg.timezone)
    for i in range(cfg.products):
        noun, ptype, base_price = _PRODUCT_NOUN[i % len(_PRODUCT_NOUN)]
        adj = _PRODUCT_ADJ[(i * 7 + rng.randrange(3)) % len(_PRODUCT_ADJ)]
        pid = 7_400_000_000_000 + i * 1_013 + rng.randrange(1, 900)
        price = _money(base_price * Decimal(str(rng.choice((0.85, 1.0, 1.0, 1.15, 1.3)))))
        price = price.quantize(Decimal("1")) - Decimal("0.01") if price > 20 else price  # x.99 pricing
        sized = ptype in ("Apparel", "Outerwear", "Footwear")
        variants = [
            Variant(
                id=42_000_000_000_000 + i * 10 + vi,
                product_id=pid,
                title=size if sized else "Default Title",
                sku=f"{noun[:3].upper()}-{i:03d}-{size if sized else 'OS'}",
                price=price,
                inventory_quantity=rng.randrange(0, 250),
            )
            for vi, size in enumerate(_SIZES if sized else ("OS",))
        ]
        created = _shop_time(rng, start - timedelta(days=rng.randrange(60, 720)), tz)
        status = "active" if i < cfg.products - 2 else ("draft" if i == cfg.products - 2 else "archived")
        title = f"{adj} {noun}"
        products[pid] = Product(
            id=pid,
            title=title,
            handle=title.lower().replace(" ", "-"),
            vendor=rng.choice(_VENDORS),
            product_type=ptype,
            status=status,
            tags=", ".join(sorted({ptype.lower(), adj.lower()})),
            created_at=created,
            updated_at=created + timedelta(days=rng.randrange(0, 400)),
            variants=variants,
        )
    return products


def _pick_lines(store: Store, rng: random.Random, target: float, first_line_id: int) -> list[LineItem]:
    """Fill an order towards a target value with catalogue products priced near it."""
    active = [p for p in store.products.values() if p.status == "active"]
    lines: list[LineItem] = []
    remaining = max(target, 12.0)
    while remaining > 8.0 and len(lines) < 5:
        ranked = sorted(active, key=lambda p: abs(float(p.variants[0].price) - remaining))
        product = rng.choice(ranked[:3])
        variant = rng.choice(product.variants)
        quantity = 2 if float(variant.price) < 30 and rng.random() < 0.25 else 1
        lines.append(LineItem(first_line_id + len(lines), product, variant, quantity))
        remaining -= float(variant.price) * quantity
        if rng.random() < 0.45:
            break
    return lines


def _build_order(store: Store, seq: int, customer: Customer | None, at: datetime, target: float) -> Order:
    cfg = store.config
    rng = store.rng
    order_id = 5_600_000_000_000 + seq * 137 + rng.randrange(1, 100)
    lines = _pick_lines(store, rng, rng.gammavariate(cfg.gg_p, target / cfg.gg_p), order_id * 10)
    items_total = sum((li.total for li in lines), Decimal("0.00"))
    code = None
    discount = Decimal("0.00")
    if rng.random() < 0.2:
        code = rng.choice(("WELCOME10", "SAVE10", "FRIENDS10"))
        discount = _money(items_total * Decimal("0.10"))
    subtotal = items_total - discount
    shipping = Decimal("0.00") if subtotal >= Decimal("75.00") else Decimal("6.95")
    tax = _money(subtotal * cfg.tax_rate)
    total = subtotal + shipping + tax
    return Order(
        id=order_id,
        number=1000 + seq,
        customer_id=customer.id if customer else None,
        email=customer.email if customer else None,
        created_at=at,
        updated_at=at,
        line_items=lines,
        total_line_items_price=items_total,
        total_discounts=discount,
        subtotal_price=subtotal,
        shipping=shipping,
        total_tax=tax,
        total_price=total,
        discount_code=code,
    )


def generate_store(cfg: StoreConfig) -> Store:
    rng = _rng(cfg.seed, cfg.shop)
    end = cfg.end or datetime.now(UTC).date()
    start = end - timedelta(days=cfg.days - 1)
    tz = ZoneInfo(cfg.timezone)
    end_at = datetime.combine(end, time(23, 59, 59), tzinfo=tz).astimezone(UTC)
    shop_name = cfg.shop.split(".")[0].replace("-", " ").title()
    store = Store(cfg, 60_000_000 + rng.randrange(10_000_000), shop_name, {}, {}, {}, 1, rng)
    store.products = _build_products(cfg, rng, start)

    days = [start + timedelta(days=i) for i in range(cfg.days)]
    weights = [_seasonal_weight(d) for d in days]
    first_purchases: list[tuple[datetime, Customer, bool]] = []
    for i in range(cfg.customers):
        first = rng.choice(_FIRST)
        last = rng.choice(_LAST)
        acquired_day = rng.choices(days, weights)[0]
        acquired = _shop_time(rng, acquired_day, tz)
        lam = rng.gammavariate(cfg.r, 1.0 / cfg.alpha)  # purchases per week while alive
        p = rng.betavariate(cfg.a, cfg.b)
        nu = rng.gammavariate(cfg.gg_q, 1.0 / cfg.gg_gamma)
        mean_value = cfg.gg_p / nu * cfg.spend_scale
        customer = Customer(
            id=6_900_000_000_000 + i * 211 + rng.randrange(1, 200),
            first_name=first,
            last_name=last,
            email=f"{first}.{last}.{i}@example.com".lower(),
            phone=f"+1555{rng.randrange(10**6, 10**7)}",
            created_at=acquired - timedelta(minutes=rng.randrange(1, 30)),
            updated_at=acquired,
            accepts_marketing=rng.random() < 0.55,
            city=rng.choice(("Denver", "Austin", "Portland", "Boston")),
            province_code=rng.choice(("CO", "TX", "OR", "MA")),
            purchase_rate_per_week=lam,
            dropout_p=p,
            mean_order_value=mean_value,
        )
        store.customers[customer.id] = customer
        first_purchases.append((acquired, customer, rng.random() < cfg.newsletter_only_share))

    # BG/NBD purchase times for every buying customer, then number orders chronologically.
    purchases: list[tuple[datetime, Customer]] = []
    for acquired, customer, newsletter_only in first_purchases:
        if newsletter_only:
            continue
        t = acquired
        while t <= end_at:
            purchases.append((t, customer))
            if rng.random() < customer.dropout_p or customer.purchase_rate_per_week <= 0:
                break
            gap_weeks = rng.expovariate(customer.purchase_rate_per_week)
            if gap_weeks * 7 * 86400 > (end_at - t).total_seconds():
                break  # next purchase falls after the data window (or in the far future)
            t = t + timedelta(weeks=gap_weeks)
            t = _shop_time(rng, t.astimezone(tz).date(), tz)
    purchases.sort(key=lambda x: (x[0], x[1].id))
    for seq, (at, customer) in enumerate(purchases, start=1):
        order = _build_order(store, seq, customer, at, customer.mean_order_value)
        _settle(order, rng, end_at)
        store.orders[order.id] = order
        customer.order_ids.append(order.id)
        customer.updated_at = max(customer.updated_at, order.updated_at)
    store.next_order_seq = len(purchases) + 1
    return store


def _settle(order: Order, rng: random.Random, end_at: datetime) -> None:
    """Lifecycle after checkout: fulfilment, archiving, refunds, cancellations, pending payment."""
    age = end_at - order.created_at
    roll = rng.random()
    if roll < 0.02 and age > timedelta(days=1):
        order.cancelled_at = min(order.created_at + timedelta(hours=rng.randrange(1, 20)), end_at)
        order.cancel_reason = rng.choice(("customer", "inventory", "fraud"))
        order.financial_status = "voided" if rng.random() < 0.5 else "refunded"
        order.refunded = order.total_price if order.financial_status == "refunded" else Decimal("0.00")
        order.closed_at = order.cancelled_at
        order.updated_at = order.cancelled_at
        return
    if age < timedelta(days=2) and rng.random() < 0.1:
        order.financial_status = "pending"
        return
    if age > timedelta(days=3):
        order.fulfillment_status = "fulfilled"
        order.fulfilled_at = order.created_at + timedelta(hours=rng.randrange(6, 72))
        order.closed_at = order.fulfilled_at  # shop setting: archive fulfilled + paid orders
        order.updated_at = order.fulfilled_at
    if roll > 0.93 and age > timedelta(days=10):
        refund_at = min(order.created_at + timedelta(days=rng.randrange(5, 30)), end_at)
        order.refunded_at = refund_at
        if roll > 0.965:
            order.refunded = order.total_price
            order.financial_status = "refunded"
        else:
            order.refunded = _money(order.total_price * Decimal("0.3"))
            order.financial_status = "partially_refunded"
        order.updated_at = max(order.updated_at, refund_at)


# ------------------------------------------------------------------------------ REST rendering
def iso(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).isoformat(timespec="seconds")


def _s(value: Decimal) -> str:
    return format(value.quantize(CENT), "f")


def product_json(store: Store, p: Product) -> dict[str, Any]:
    tz = store.tz
    return {
        "id": p.id,
        "title": p.title,
        "body_html": f"<p>The {p.title.lower()} by {p.vendor}.</p>",
        "vendor": p.vendor,
        "product_type": p.product_type,
        "handle": p.handle,
        "created_at": iso(p.created_at, tz),
        "updated_at": iso(p.updated_at, tz),
        "published_at": iso(p.created_at, tz) if p.status == "active" else None,
        "template_suffix": None,
        "published_scope": "global",
        "tags": p.tags,
        "status": p.status,
        "admin_graphql_api_id": f"gid://shopify/Product/{p.id}",
        "variants": [
            {
                "id": v.id,
                "product_id": p.id,
                "title": v.title,
                "price": _s(v.price),
                "sku": v.sku,
                "position": i + 1,
                "inventory_policy": "deny",
                "compare_at_price": None,
                "option1": v.title,
                "option2": None,
                "option3": None,
                "taxable": True,
                "barcode": None,
                "inventory_quantity": v.inventory_quantity,
                "requires_shipping": True,
                "created_at": iso(p.created_at, tz),
                "updated_at": iso(p.updated_at, tz),
                "admin_graphql_api_id": f"gid://shopify/ProductVariant/{v.id}",
            }
            for i, v in enumerate(p.variants)
        ],
        "options": [
            {
                "id": p.id + 1,
                "product_id": p.id,
                "name": "Size" if len(p.variants) > 1 else "Title",
                "position": 1,
                "values": [v.title for v in p.variants],
            }
        ],
        "images": [],
        "image": None,
    }


def _address(c: Customer) -> dict[str, Any]:
    return {
        "first_name": c.first_name,
        "last_name": c.last_name,
        "address1": f"{c.id % 900 + 100} Main St",
        "city": c.city,
        "province_code": c.province_code,
        "country_code": "US",
        "zip": f"{c.id % 90000 + 10000}",
        "phone": c.phone,
        "name": f"{c.first_name} {c.last_name}",
    }


def customer_json(store: Store, c: Customer, *, embedded: bool = False) -> dict[str, Any]:
    tz = store.tz
    data: dict[str, Any] = {
        "id": c.id,
        "email": c.email,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "created_at": iso(c.created_at, tz),
        "updated_at": iso(c.updated_at, tz),
        "state": "enabled" if c.order_ids else "disabled",
        "note": None,
        "verified_email": True,
        "multipass_identifier": None,
        "tax_exempt": False,
        "phone": c.phone,
        "tags": "",
        "currency": store.config.currency,
        "email_marketing_consent": {
            "state": "subscribed" if c.accepts_marketing else "not_subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": iso(c.created_at, tz),
        },
        "admin_graphql_api_id": f"gid://shopify/Customer/{c.id}",
        "default_address": {"id": c.id + 7, "customer_id": c.id, "default": True, **_address(c)},
    }
    if not embedded:  # the order's embedded customer lost these in 2022-04
        count, spent, last = store.customer_totals(c.id)
        data.update(
            {
                "orders_count": count,
                "total_spent": _s(spent),
                "last_order_id": last.id if last else None,
                "last_order_name": last.name if last else None,
                "addresses": [data["default_address"]],
            }
        )
    return data


def order_json(store: Store, o: Order) -> dict[str, Any]:
    tz = store.tz
    cur = store.config.currency
    customer = store.customers.get(o.customer_id) if o.customer_id is not None else None

    def money_set(v: Decimal) -> dict[str, Any]:
        amount = {"amount": _s(v), "currency_code": cur}
        return {"shop_money": amount, "presentment_money": dict(amount)}

    line_items = []
    for li in o.line_items:
        line_items.append(
            {
                "id": li.id,
                "admin_graphql_api_id": f"gid://shopify/LineItem/{li.id}",
                "product_id": li.product.id,
                "variant_id": li.variant.id,
                "title": li.product.title,
                "variant_title": None if li.variant.title == "Default Title" else li.variant.title,
                "name": li.product.title
                if li.variant.title == "Default Title"
                else f"{li.product.title} - {li.variant.title}",
                "sku": li.variant.sku,
                "vendor": li.product.vendor,
                "quantity": li.quantity,
                "current_quantity": 0 if o.cancelled_at else li.quantity,
                "price": _s(li.variant.price),
                "price_set": money_set(li.variant.price),
                "total_discount": "0.00",
                "taxable": True,
                "requires_shipping": True,
                "gift_card": False,
                "fulfillment_status": o.fulfillment_status,
            }
        )
    refunds = []
    if o.refunded and o.refunded_at:
        refunds.append(
            {
                "id": o.id + 3,
                "order_id": o.id,
                "created_at": iso(o.refunded_at, tz),
                "processed_at": iso(o.refunded_at, tz),
                "note": None,
                "transactions": [{"kind": "refund", "status": "success", "amount": _s(o.refunded), "currency": cur}],
            }
        )
    return {
        "id": o.id,
        "admin_graphql_api_id": f"gid://shopify/Order/{o.id}",
        "name": o.name,
        "order_number": o.number,
        "number": o.number - 1000,
        "email": o.email,
        "contact_email": o.email,
        "created_at": iso(o.created_at, tz),
        "updated_at": iso(o.updated_at, tz),
        "processed_at": iso(o.created_at, tz),
        "closed_at": iso(o.closed_at, tz) if o.closed_at else None,
        "cancelled_at": iso(o.cancelled_at, tz) if o.cancelled_at else None,
        "cancel_reason": o.cancel_reason,
        "currency": cur,
        "presentment_currency": cur,
        "financial_status": o.financial_status,
        "fulfillment_status": o.fulfillment_status,
        "confirmed": True,
        "test": False,
        "source_name": "web",
        "buyer_accepts_marketing": bool(customer and customer.accepts_marketing),
        "taxes_included": False,
        "total_line_items_price": _s(o.total_line_items_price),
        "total_discounts": _s(o.total_discounts),
        "subtotal_price": _s(o.subtotal_price),
        "total_tax": _s(o.total_tax),
        "total_price": _s(o.total_price),
        "current_total_price": _s(o.current_total_price),
        "total_price_set": money_set(o.total_price),
        "total_shipping_price_set": money_set(o.shipping),
        "total_weight": 0,
        "tags": "",
        "discount_codes": (
            [{"code": o.discount_code, "amount": _s(o.total_discounts), "type": "percentage"}]
            if o.discount_code
            else []
        ),
        "tax_lines": [{"title": "State Tax", "rate": float(store.config.tax_rate), "price": _s(o.total_tax)}],
        "shipping_lines": [
            {
                "id": o.id + 1,
                "title": "Free shipping" if not o.shipping else "Standard",
                "price": _s(o.shipping),
                "code": "STANDARD",
                "source": "shopify",
            }
        ],
        "customer": customer_json(store, customer, embedded=True) if customer else None,
        "line_items": line_items,
        "refunds": refunds,
    }
