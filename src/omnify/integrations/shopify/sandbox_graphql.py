"""The GraphQL Admin API of the Shopify sandbox: the subset Omnify reads, with Shopify's
cost-based throttling and bulk operations.

Executed by graphql-core against a schema that mirrors Shopify's names and shapes (``Order``,
``MoneyBag``, Relay connections with ``edges``/``nodes``/``pageInfo``, search ``query``
strings, ``gid://shopify/...`` ids), so the official ``ShopifyAPI`` GraphQL client and our
connector read it as they read Shopify. What Shopify does that clients must cope with:

* **Cost.** Every query has a *requested* cost computed before it runs (objects 1, scalars 0,
  a connection 2 + ``first`` x the cost of one node, mutations 10) and an *actual* cost from
  what it returned; both come back in ``extensions.cost`` with the bucket's
  ``throttleStatus`` (``maximumAvailable`` 2000, ``restoreRate`` 100/s on standard plans).
  A query over 1000 points fails with ``MAX_COST_EXCEEDED``; one costing more than what is
  left fails with ``THROTTLED`` - both as HTTP 200 with ``errors``, like Shopify.
* **Bulk operations.** ``bulkOperationRunQuery`` runs a query over every record without
  paging; ``currentBulkOperation`` / ``node(id:)`` report its status and, once
  ``COMPLETED``, a ``url`` to a JSONL file: one line per node, nested connection nodes on
  their own lines with ``__parentId``. One bulk query per shop and app at a time.
"""

from __future__ import annotations

import base64
import json
import operator
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import graphql
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)

from omnify.integrations.shopify.store_data import Customer, Order, Product, Store, iso

MAX_QUERY_COST = 1000
MAX_PAGE = 250
MUTATION_COST = 10

SDL = """
scalar DateTime
scalar Decimal
scalar UnsignedInt64
scalar URL

interface Node { id: ID! }

type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }

type ShopPlan { displayName: String! partnerDevelopment: Boolean! shopifyPlus: Boolean! }
type Shop implements Node {
  id: ID! name: String! email: String! myshopifyDomain: String! currencyCode: CurrencyCode!
  ianaTimezone: String! timezoneAbbreviation: String! plan: ShopPlan! createdAt: DateTime! updatedAt: DateTime!
}
enum CurrencyCode { USD EUR GBP CAD AUD JPY }

type MoneyV2 { amount: Decimal! currencyCode: CurrencyCode! }
type MoneyBag { shopMoney: MoneyV2! presentmentMoney: MoneyV2! }

enum OrderDisplayFinancialStatus { PENDING AUTHORIZED PARTIALLY_PAID PARTIALLY_REFUNDED VOIDED PAID REFUNDED EXPIRED }
enum OrderDisplayFulfillmentStatus { UNFULFILLED PARTIALLY_FULFILLED FULFILLED RESTOCKED PENDING_FULFILLMENT OPEN
    IN_PROGRESS ON_HOLD SCHEDULED REQUEST_DECLINED }
enum OrderSortKeys { ID CREATED_AT UPDATED_AT PROCESSED_AT TOTAL_PRICE ORDER_NUMBER }
enum CustomerSortKeys { ID CREATED_AT UPDATED_AT NAME }
enum ProductSortKeys { ID CREATED_AT UPDATED_AT TITLE }
enum ProductStatus { ACTIVE ARCHIVED DRAFT }
enum CustomerState { DISABLED INVITED ENABLED DECLINED }

type ProductVariant implements Node { id: ID! legacyResourceId: UnsignedInt64! title: String! sku: String price:
    Decimal! }
type Product implements Node {
  id: ID! legacyResourceId: UnsignedInt64! title: String! handle: String! status: ProductStatus! vendor: String!
  productType: String! createdAt: DateTime! updatedAt: DateTime!
}
type LineItem implements Node {
  id: ID! title: String! name: String! sku: String quantity: Int! currentQuantity: Int! variantTitle: String
  vendor: String originalUnitPriceSet: MoneyBag! product: Product variant: ProductVariant
}
type LineItemEdge { cursor: String! node: LineItem! }
type LineItemConnection { edges: [LineItemEdge!]! nodes: [LineItem!]! pageInfo: PageInfo! }

type Customer implements Node {
  id: ID! legacyResourceId: UnsignedInt64! email: String firstName: String lastName: String displayName: String!
  phone: String numberOfOrders: UnsignedInt64! amountSpent: MoneyV2! state: CustomerState!
  createdAt: DateTime! updatedAt: DateTime!
}
type CustomerEdge { cursor: String! node: Customer! }
type CustomerConnection { edges: [CustomerEdge!]! nodes: [Customer!]! pageInfo: PageInfo! }

type Order implements Node {
  id: ID! legacyResourceId: UnsignedInt64! name: String! email: String createdAt: DateTime! updatedAt: DateTime!
  processedAt: DateTime! closedAt: DateTime cancelledAt: DateTime currencyCode: CurrencyCode!
  displayFinancialStatus: OrderDisplayFinancialStatus displayFulfillmentStatus: OrderDisplayFulfillmentStatus!
  totalPriceSet: MoneyBag! currentTotalPriceSet: MoneyBag! subtotalPriceSet: MoneyBag totalTaxSet: MoneyBag
  totalRefundedSet: MoneyBag! customer: Customer
  lineItems(first: Int, after: String, last: Int, before: String, reverse: Boolean): LineItemConnection!
}
type OrderEdge { cursor: String! node: Order! }
type OrderConnection { edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! }
type ProductEdge { cursor: String! node: Product! }
type ProductConnection { edges: [ProductEdge!]! nodes: [Product!]! pageInfo: PageInfo! }

enum BulkOperationStatus { CANCELED CANCELING COMPLETED CREATED EXPIRED FAILED RUNNING }
enum BulkOperationType { QUERY MUTATION }
enum BulkOperationErrorCode { ACCESS_DENIED INTERNAL_SERVER_ERROR TIMEOUT }
type BulkOperation implements Node {
  id: ID! status: BulkOperationStatus! type: BulkOperationType! errorCode: BulkOperationErrorCode
  createdAt: DateTime! completedAt: DateTime objectCount: UnsignedInt64! rootObjectCount: UnsignedInt64!
  fileSize: UnsignedInt64 url: URL partialDataUrl: URL query: String!
}
type BulkOperationUserError { field: [String!] message: String! code: String }
type BulkOperationRunQueryPayload { bulkOperation: BulkOperation userErrors: [BulkOperationUserError!]! }
type BulkOperationCancelPayload { bulkOperation: BulkOperation userErrors: [BulkOperationUserError!]! }

type QueryRoot {
  shop: Shop!
  orders(first: Int, after: String, last: Int, before: String, query: String, sortKey: OrderSortKeys, reverse:
      Boolean): OrderConnection!
  customers(first: Int, after: String, last: Int, before: String, query: String, sortKey: CustomerSortKeys, reverse:
      Boolean): CustomerConnection!
  products(first: Int, after: String, last: Int, before: String, query: String, sortKey: ProductSortKeys, reverse:
      Boolean): ProductConnection!
  order(id: ID!): Order
  customer(id: ID!): Customer
  product(id: ID!): Product
  node(id: ID!): Node
  currentBulkOperation(type: BulkOperationType): BulkOperation
}
type Mutation {
  bulkOperationRunQuery(query: String!): BulkOperationRunQueryPayload
  bulkOperationCancel(id: ID!): BulkOperationCancelPayload
}
schema { query: QueryRoot mutation: Mutation }
"""

SCHEMA = graphql.build_schema(SDL)
_node = SCHEMA.get_type("Node")
assert isinstance(_node, GraphQLInterfaceType)
_node.resolve_type = lambda obj, _info, _type: obj["__typename"]  # type: ignore[assignment,misc,return-value]


class GraphQLFailure(Exception):
    """A request-level GraphQL error (HTTP 200 with ``errors``), e.g. THROTTLED."""

    def __init__(self, message: str, code: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra


def gid(kind: str, ident: int | str) -> str:
    return f"gid://shopify/{kind}/{ident}"


def gid_number(value: str, kind: str) -> int:
    m = re.fullmatch(rf"gid://shopify/{kind}/(\d+)", value or "")
    if m is None:
        raise graphql.GraphQLError(f"Invalid global id '{value}'")
    return int(m.group(1))


# ------------------------------------------------------------------------------ cost
@dataclass(slots=True)
class CostBucket:
    """Shopify's leaky bucket of query points for one shop and app."""

    maximum: float = 2000.0
    restore_rate: float = 100.0
    available: float = 2000.0
    updated: float = field(default_factory=time.monotonic)

    def refill(self) -> None:
        now = time.monotonic()
        self.available = min(self.maximum, self.available + (now - self.updated) * self.restore_rate)
        self.updated = now

    def status(self) -> dict[str, float]:
        return {"maximumAvailable": self.maximum, "currentlyAvailable": float(int(self.available)),
                "restoreRate": self.restore_rate}


def _fields(selection: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode]) -> list[FieldNode]:
    out: list[FieldNode] = []
    for sel in selection.selections if selection else ():
        if isinstance(sel, FieldNode):
            out.append(sel)
        elif isinstance(sel, InlineFragmentNode):
            out += _fields(sel.selection_set, fragments)
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
            out += _fields(fragments[sel.name.value].selection_set, fragments)
    return out


def _arg(node: FieldNode, name: str, variables: Mapping[str, Any]) -> Any:
    for arg in node.arguments or ():
        if arg.name.value == name:
            return graphql.value_from_ast_untyped(arg.value, dict(variables))
    return None


def query_cost(
    selection: SelectionSetNode | None,
    parent: GraphQLObjectType | GraphQLInterfaceType,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    data: Any = None,
) -> int:
    """Requested cost (``data`` None: connections counted at ``first``) or actual cost (the
    counts in ``data``, the result of the same selection)."""
    total = 0
    for node in _fields(selection, fragments):
        name = node.name.value
        if name.startswith("__") or name not in parent.fields:
            continue
        named = get_named_type(parent.fields[name].type)
        if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            continue
        key = node.alias.value if node.alias else name
        value = data.get(key) if isinstance(data, Mapping) else None
        if named.name.endswith("Connection"):
            edge_type = SCHEMA.get_type(named.name.removesuffix("Connection") + "Edge")
            node_type = SCHEMA.get_type(named.name.removesuffix("Connection"))
            assert isinstance(edge_type, GraphQLObjectType) and isinstance(node_type, GraphQLObjectType)
            per_node: list[tuple[SelectionSetNode | None, str]] = []
            for part in _fields(node.selection_set, fragments):
                if part.name.value == "nodes":
                    per_node.append((part.selection_set, "nodes"))
                elif part.name.value == "edges":
                    for inner in _fields(part.selection_set, fragments):
                        if inner.name.value == "node":
                            per_node.append((inner.selection_set, "edges"))
            if data is None:
                count = int(_arg(node, "first", variables) or _arg(node, "last", variables) or 0)
                total += 2 + count * (1 + sum(query_cost(s, node_type, fragments, variables) for s, _ in per_node))
            else:
                total += 2
                for sel, where in per_node:
                    items = (value or {}).get(where) or []
                    nodes = [i.get("node") for i in items] if where == "edges" else items
                    total += sum(1 + query_cost(sel, node_type, fragments, variables, n) for n in nodes)
        else:
            if data is not None and value is None:
                continue
            total += 1 + query_cost(node.selection_set, named, fragments, variables, value)
    return total


# ------------------------------------------------------------------------------ search + paging
_TERM = re.compile(r"(\w+):(>=|<=|>|<)?(?:'([^']*)'|\"([^\"]*)\"|(\S+))")


_COMPARE: dict[str, Callable[[datetime, datetime], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "=": operator.eq}


def _search(items: list[dict[str, Any]], query: str | None) -> list[dict[str, Any]]:
    """Shopify search syntax, the part clients use: ``updated_at:>='2026-01-01T00:00:00Z'``,
    ``created_at:<=...``, ``status:active``; terms are ANDed; unknown fields are ignored."""
    if not query:
        return items
    out = items
    for m in _TERM.finditer(query):
        key, op = m.group(1), m.group(2) or "="
        raw = next(v for v in m.group(3, 4, 5) if v is not None)
        if key in ("updated_at", "created_at"):
            try:
                bound = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise graphql.GraphQLError(f"Invalid date in search query: {raw}") from None
            if bound.tzinfo is None:
                bound = bound.replace(tzinfo=UTC)
            attr = "_updated" if key == "updated_at" else "_created"
            compare = _COMPARE[op]
            out = [i for i in out if compare(i[attr], bound)]
        elif key == "status":
            wanted = {s.strip().upper() for s in raw.split(",")}
            out = [i for i in out if str(i.get("status", "")).upper() in wanted]
    return out


def _encode(key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode().rstrip("=")


def _decode(cursor: str) -> list[Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise graphql.GraphQLError(f"Invalid cursor for current pagination sort: {cursor}") from None
    if not isinstance(value, list):
        raise graphql.GraphQLError(f"Invalid cursor for current pagination sort: {cursor}")
    return value


_SORT_FIELD = {"ID": "_id", "CREATED_AT": "_created", "UPDATED_AT": "_updated", "PROCESSED_AT": "_created",
               "TOTAL_PRICE": "_total", "ORDER_NUMBER": "_id", "NAME": "displayName", "TITLE": "title"}


def connection(items: list[dict[str, Any]], args: Mapping[str, Any], *, bulk: bool) -> dict[str, Any]:
    """A Relay connection over ``items`` (dicts carrying ``_id`` and sort fields)."""
    first, last = args.get("first"), args.get("last")
    if not bulk:
        if first is None and last is None:
            raise graphql.GraphQLError("you must provide one of first or last")
        for n in (first, last):
            if n is not None and not 0 <= n <= MAX_PAGE:
                raise graphql.GraphQLError(f"The 'first' and 'last' arguments must be between 0 and {MAX_PAGE}")
    sort = _SORT_FIELD.get(str(args.get("sortKey") or "ID"), "_id")

    def key(item: dict[str, Any]) -> list[Any]:
        value = item[sort]
        return [value.isoformat() if isinstance(value, datetime) else str(value) if isinstance(value, Decimal)
                else value, item["_id"]]

    ordered = sorted(_search(items, args.get("query")), key=key, reverse=bool(args.get("reverse")))
    keys = [key(i) for i in ordered]
    lo, hi = 0, len(ordered)
    if args.get("after"):
        after = _decode(args["after"])
        lo = next((n for n, k in enumerate(keys) if (k > after if not args.get("reverse") else k < after)), hi)
    if args.get("before"):
        before = _decode(args["before"])
        hi = next((n for n, k in enumerate(keys) if (k >= before if not args.get("reverse") else k <= before)), hi)
    window = list(range(lo, hi))
    if not bulk:
        window = window[: first] if first is not None else window[-last:] if last else []
    page = [ordered[n] for n in window]
    cursors = [_encode(tuple(keys[n])) for n in window]
    return {
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, page, strict=True)],
        "nodes": page,
        "pageInfo": {"hasNextPage": bool(window) and window[-1] + 1 < hi,
                     "hasPreviousPage": bool(window) and window[0] > 0,
                     "startCursor": cursors[0] if cursors else None, "endCursor": cursors[-1] if cursors else None},
    }


# ------------------------------------------------------------------------------ nodes
def _money(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"amount": format(amount.quantize(Decimal("0.01")), "f"), "currencyCode": currency}


def _bag(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"shopMoney": _money(amount, currency), "presentmentMoney": _money(amount, currency)}


def product_node(store: Store, p: Product) -> dict[str, Any]:
    tz = store.tz
    return {"__typename": "Product", "_id": p.id, "_created": p.created_at, "_updated": p.updated_at,
            "id": gid("Product", p.id), "legacyResourceId": str(p.id), "title": p.title, "handle": p.handle,
            "status": p.status.upper(), "vendor": p.vendor, "productType": p.product_type,
            "createdAt": iso(p.created_at, tz), "updatedAt": iso(p.updated_at, tz)}


def customer_node(store: Store, c: Customer) -> dict[str, Any]:
    tz = store.tz
    return {"__typename": "Customer", "_id": c.id, "_created": c.created_at, "_updated": c.updated_at,
            "id": gid("Customer", c.id), "legacyResourceId": str(c.id), "email": c.email,
            "firstName": c.first_name, "lastName": c.last_name, "displayName": f"{c.first_name} {c.last_name}",
            "phone": c.phone, "numberOfOrders": lambda _i: str(store.customer_totals(c.id)[0]),
            "amountSpent": lambda _i: _money(store.customer_totals(c.id)[1], store.config.currency),
            "state": "ENABLED" if c.order_ids else "DISABLED",
            "createdAt": iso(c.created_at, tz), "updatedAt": iso(c.updated_at, tz)}


def order_node(store: Store, o: Order, *, bulk: bool) -> dict[str, Any]:
    """Cheap to build (a page is cut from every visible order): nested parts are resolvers,
    computed only when the query selects them."""
    tz, cur = store.tz, store.config.currency

    def lines() -> list[dict[str, Any]]:
        return [{"__typename": "LineItem", "_id": li.id, "id": gid("LineItem", li.id), "title": li.product.title,
                 "name": li.product.title if li.variant.title == "Default Title"
                 else f"{li.product.title} - {li.variant.title}",
                 "sku": li.variant.sku, "quantity": li.quantity,
                 "currentQuantity": 0 if o.cancelled_at else li.quantity,
                 "variantTitle": None if li.variant.title == "Default Title" else li.variant.title,
                 "vendor": li.product.vendor, "originalUnitPriceSet": _bag(li.variant.price, cur),
                 "product": lambda _info, p=li.product: product_node(store, p),
                 "variant": {"__typename": "ProductVariant", "id": gid("ProductVariant", li.variant.id),
                             "legacyResourceId": str(li.variant.id), "title": li.variant.title,
                             "sku": li.variant.sku, "price": format(li.variant.price, "f")}}
                for li in o.line_items]

    def customer(_info: Any) -> dict[str, Any] | None:
        found = store.customers.get(o.customer_id) if o.customer_id is not None else None
        return customer_node(store, found) if found else None

    status = o.financial_status.upper()
    return {
        "__typename": "Order", "_id": o.id, "_created": o.created_at, "_updated": o.updated_at,
        "_total": o.total_price, "id": gid("Order", o.id), "legacyResourceId": str(o.id), "name": f"#{o.number}",
        "email": o.email, "createdAt": lambda _i: iso(o.created_at, tz), "updatedAt": lambda _i: iso(o.updated_at, tz),
        "processedAt": lambda _i: iso(o.created_at, tz),
        "closedAt": lambda _i: iso(o.closed_at, tz) if o.closed_at else None,
        "cancelledAt": lambda _i: iso(o.cancelled_at, tz) if o.cancelled_at else None, "currencyCode": cur,
        "displayFinancialStatus": status if status in _FINANCIAL else "PAID",
        "displayFulfillmentStatus": "FULFILLED" if o.fulfillment_status == "fulfilled" else "UNFULFILLED",
        "totalPriceSet": lambda _i: _bag(o.total_price, cur),
        "currentTotalPriceSet": lambda _i: _bag(o.current_total_price, cur),
        "subtotalPriceSet": lambda _i: _bag(o.subtotal_price, cur), "totalTaxSet": lambda _i: _bag(o.total_tax, cur),
        "totalRefundedSet": lambda _i: _bag(o.refunded, cur),
        "customer": customer,
        "lineItems": lambda _info, **args: connection(lines(), args, bulk=bulk),
    }


_FINANCIAL = {"PENDING", "AUTHORIZED", "PARTIALLY_PAID", "PARTIALLY_REFUNDED", "VOIDED", "PAID", "REFUNDED",
              "EXPIRED"}


# ------------------------------------------------------------------------------ bulk operations
@dataclass(slots=True)
class BulkOperation:
    number: int
    query: str
    created: datetime
    lines: list[str]
    root_count: int
    ready_at: float
    status: str = "CREATED"
    completed: datetime | None = None

    def node(self, file_url: str) -> dict[str, Any]:
        if self.status in ("CREATED", "RUNNING") and time.monotonic() >= self.ready_at:
            self.status, self.completed = "COMPLETED", datetime.now(UTC)
        elif self.status == "CREATED":
            self.status = "RUNNING"
        done = self.status == "COMPLETED"
        body = "".join(self.lines).encode()
        return {"__typename": "BulkOperation", "id": gid("BulkOperation", self.number), "status": self.status,
                "type": "QUERY", "errorCode": None, "createdAt": self.created.isoformat(),
                "completedAt": self.completed.isoformat() if self.completed else None,
                "objectCount": str(len(self.lines) if done else 0), "rootObjectCount": str(self.root_count if done
                                                                                           else 0),
                "fileSize": str(len(body)) if done and self.lines else None,
                "url": file_url if done and self.lines else None, "partialDataUrl": None, "query": self.query}


def flatten(value: Any, parent: str | None = None) -> tuple[list[str], int]:
    """A bulk query's result -> Shopify's JSONL lines (and how many root objects)."""
    lines: list[str] = []
    roots = 0
    conn = value if isinstance(value, Mapping) else {}
    nodes = conn.get("nodes") or [e["node"] for e in conn.get("edges") or []]
    for node in nodes:
        flat: dict[str, Any] = {}
        children: list[Any] = []
        for k, v in node.items():
            if isinstance(v, Mapping) and ("edges" in v or "nodes" in v):
                children.append(v)
            else:
                flat[k] = v
        if parent is not None:
            flat["__parentId"] = parent
        else:
            roots += 1
        lines.append(json.dumps(flat, separators=(",", ":")) + "\n")
        for child in children:
            lines += flatten(child, str(node.get("id")))[0]
    return lines, roots


class AdminGraphQL:
    """One shop's GraphQL Admin endpoint state: buckets and bulk operations per app."""

    def __init__(self, *, bulk_seconds: float = 0.0, bucket_size: float = 2000.0, restore_rate: float = 100.0) -> None:
        self.bulk_seconds = bulk_seconds  # how long a bulk operation stays RUNNING
        self.bucket_size = bucket_size  # Shopify standard plans: 2000 points, 100/s (Plus: 20000, 1000/s)
        self.restore_rate = restore_rate
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], CostBucket] = {}
        self._bulk: dict[tuple[str, str], list[BulkOperation]] = {}
        self._seq = 2_000_000

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._bulk.clear()

    def bucket(self, shop: str, app: str) -> CostBucket:
        with self._lock:
            return self._buckets.setdefault((shop, app), CostBucket(self.bucket_size, self.restore_rate,
                                                                    self.bucket_size))

    def bulk_file(self, number: int) -> str | None:
        with self._lock:
            for ops in self._bulk.values():
                for op in ops:
                    if op.number == number and op.status == "COMPLETED":
                        return "".join(op.lines)
        return None

    # -- execution -----------------------------------------------------------------
    def execute(
        self,
        *,
        shop: str,
        app: str,
        store: Store,
        orders: list[Order],
        shop_node: dict[str, Any],
        query: str,
        variables: Mapping[str, Any] | None,
        operation: str | None,
        file_url: Callable[[int], str],
    ) -> dict[str, Any]:
        try:
            document = graphql.parse(query)
        except graphql.GraphQLError as exc:
            return {"errors": [exc.formatted]}
        errors = graphql.validate(SCHEMA, document)
        if errors:
            return {"errors": [e.formatted for e in errors]}
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        op = next((d for d in ops if operation is None or (d.name and d.name.value == operation)), None)
        if op is None:
            return {"errors": [{"message": f"Unknown operation named '{operation}'."}]}
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        variables = dict(variables or {})
        root_type = SCHEMA.mutation_type if op.operation.value == "mutation" else SCHEMA.query_type
        assert root_type is not None
        requested = (MUTATION_COST * len(_fields(op.selection_set, fragments)) if op.operation.value == "mutation"
                     else query_cost(op.selection_set, root_type, fragments, variables))
        bucket = self.bucket(shop, app)
        with self._lock:
            bucket.refill()
            if requested > MAX_QUERY_COST:
                return {"errors": [{"message": f"Query cost is {requested}, which exceeds the single query max cost "
                                               f"limit ({MAX_QUERY_COST}).",
                                    "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                                                   "maxCost": MAX_QUERY_COST}}],
                        "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                                "throttleStatus": bucket.status()}}}
            if requested > bucket.available:
                return throttled(requested, bucket)
            bucket.available -= requested
        root = self._root(shop, app, store, orders, shop_node, file_url, bulk=False)
        result = graphql.execute_sync(SCHEMA, document, root_value=root, variable_values=variables,
                                      operation_name=operation)
        data = result.data
        actual = requested if op.operation.value == "mutation" else query_cost(
            op.selection_set, root_type, fragments, variables, data)
        with self._lock:
            bucket.available = min(bucket.maximum, bucket.available + max(0, requested - actual))
            status = bucket.status()
        body: dict[str, Any] = {"data": data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        body["extensions"] = {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                                       "throttleStatus": status}}
        return body

    def _root(self, shop: str, app: str, store: Store, orders: list[Order], shop_node: dict[str, Any],
              file_url: Callable[[int], str], *, bulk: bool) -> dict[str, Any]:
        def nodes(kind: str) -> list[dict[str, Any]]:
            if kind == "Order":
                return [order_node(store, o, bulk=bulk) for o in orders]
            if kind == "Customer":
                return [customer_node(store, c) for c in store.customers.values()]
            return [product_node(store, p) for p in store.products.values()]

        def one(kind: str, ident: str) -> dict[str, Any] | None:
            number = gid_number(ident, kind)
            return next((n for n in nodes(kind) if n["_id"] == number), None)

        def node(_info: Any, id: str) -> dict[str, Any] | None:
            m = re.fullmatch(r"gid://shopify/(\w+)/(\d+)", id)
            if m is None:
                raise graphql.GraphQLError(f"Invalid global id '{id}'")
            if m.group(1) == "BulkOperation":
                op = self._find_bulk(shop, app, int(m.group(2)))
                return op.node(file_url(op.number)) if op else None
            return one(m.group(1), id) if m.group(1) in ("Order", "Customer", "Product") else None

        def current(_info: Any, type: str = "QUERY") -> dict[str, Any] | None:
            with self._lock:
                ops = self._bulk.get((shop, app)) or []
                op = ops[-1] if ops else None
            return op.node(file_url(op.number)) if op else None

        def run_bulk(_info: Any, query: str) -> dict[str, Any]:
            return self._run_bulk(shop, app, store, orders, shop_node, file_url, query)

        def cancel(_info: Any, id: str) -> dict[str, Any]:
            op = self._find_bulk(shop, app, gid_number(id, "BulkOperation"))
            if op is None:
                return {"bulkOperation": None, "userErrors": [{"field": ["id"], "message": "Bulk operation not found"}]}
            if op.status in ("CREATED", "RUNNING"):
                op.status = "CANCELED"
            return {"bulkOperation": op.node(file_url(op.number)), "userErrors": []}

        return {
            "shop": shop_node,
            "orders": lambda _info, **args: connection(nodes("Order"), args, bulk=bulk),
            "customers": lambda _info, **args: connection(nodes("Customer"), args, bulk=bulk),
            "products": lambda _info, **args: connection(nodes("Product"), args, bulk=bulk),
            "order": lambda _info, id: one("Order", id),
            "customer": lambda _info, id: one("Customer", id),
            "product": lambda _info, id: one("Product", id),
            "node": node,
            "currentBulkOperation": current,
            "bulkOperationRunQuery": run_bulk,
            "bulkOperationCancel": cancel,
        }

    def _find_bulk(self, shop: str, app: str, number: int) -> BulkOperation | None:
        with self._lock:
            return next((o for o in self._bulk.get((shop, app)) or [] if o.number == number), None)

    def _run_bulk(self, shop: str, app: str, store: Store, orders: list[Order], shop_node: dict[str, Any],
                  file_url: Callable[[int], str], query: str) -> dict[str, Any]:
        def user_error(message: str, code: str = "INVALID") -> dict[str, Any]:
            return {"bulkOperation": None, "userErrors": [{"field": ["query"], "message": message, "code": code}]}

        with self._lock:
            ops = self._bulk.setdefault((shop, app), [])
            if ops and ops[-1].status in ("CREATED", "RUNNING") and time.monotonic() < ops[-1].ready_at:
                return user_error(f"A bulk query operation for this app and shop is already in progress: "
                                  f"{gid('BulkOperation', ops[-1].number)}.", "OPERATION_IN_PROGRESS")
        try:
            document = graphql.parse(query)
        except graphql.GraphQLError as exc:
            return user_error(f"Invalid bulk query: {exc.message}")
        errors = graphql.validate(SCHEMA, document)
        if errors:
            return user_error(f"Invalid bulk query: {errors[0].message}")
        roots = [f for d in document.definitions if isinstance(d, OperationDefinitionNode)
                 for f in _fields(d.selection_set, {})]
        if len(roots) != 1 or not roots[0].name.value.endswith("s"):
            return user_error("Bulk queries must contain exactly one top-level connection field.")
        root = self._root(shop, app, store, orders, shop_node, file_url, bulk=True)
        result = graphql.execute_sync(SCHEMA, document, root_value=root)
        if result.errors:
            return user_error(f"Invalid bulk query: {result.errors[0].message}")
        data = result.data or {}
        key = roots[0].alias.value if roots[0].alias else roots[0].name.value
        lines, count = flatten(data.get(key))
        with self._lock:
            self._seq += 1
            op = BulkOperation(self._seq, query, datetime.now(UTC), lines, count,
                               ready_at=time.monotonic() + self.bulk_seconds)
            ops.append(op)
        return {"bulkOperation": op.node(file_url(op.number)) | {"status": "CREATED"}, "userErrors": []}


def throttled(requested: int, bucket: CostBucket) -> dict[str, Any]:
    """Shopify's answer when the bucket cannot pay for the query (HTTP 200)."""
    return {"errors": [{"message": "Throttled", "extensions": {
                "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                    "throttleStatus": bucket.status()}}}
