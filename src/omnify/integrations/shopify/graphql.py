"""What the Shopify connector asks the GraphQL Admin API, and how it reads the answers.

Pure (no I/O). Why GraphQL: Shopify made the REST Admin API legacy (2024-10) and new
resources and fields land only in GraphQL. Facts encoded here:

* Ids are global (``gid://shopify/Order/123``); our stored external ids stay the numeric
  tail, the same as REST and webhook payloads, so history and inbound events keep matching.
* Throttling is by query *cost*: every response carries ``extensions.cost`` (requested and
  actual cost, and the bucket's ``throttleStatus``). A query the bucket cannot pay for is
  answered HTTP 200 with a ``THROTTLED`` error; waiting ``(requested - available) /
  restoreRate`` seconds is exactly enough. Page sizes here keep each query under the
  single-query limit of 1000 points.
* Bulk operations (``bulkOperationRunQuery``) read a whole history without paging or cost;
  the result is a JSONL file where nested connection nodes are separate lines pointing at
  their parent through ``__parentId``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

ORDER_FIELDS = """id name email createdAt updatedAt displayFinancialStatus currencyCode
  totalPriceSet { shopMoney { amount currencyCode } } customer { id }"""
LINE_ITEM_FIELDS = """id title sku quantity originalUnitPriceSet { shopMoney { amount currencyCode } }
  product { id } variant { id }"""
CUSTOMER_FIELDS = "id email firstName lastName numberOfOrders amountSpent { amount currencyCode } createdAt updatedAt"
PRODUCT_FIELDS = "id title status vendor productType updatedAt"

SHOP = "query Shop { shop { id name myshopifyDomain currencyCode ianaTimezone plan { displayName } } }"

ORDERS = f"""query Orders($first: Int!, $after: String, $query: String, $lines: Int!) {{
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    edges {{ node {{ {ORDER_FIELDS}
      lineItems(first: $lines) {{ edges {{ node {{ {LINE_ITEM_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }}
    }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}"""

ORDER_LINES = f"""query OrderLines($id: ID!, $after: String) {{
  order(id: $id) {{ lineItems(first: 50, after: $after) {{ edges {{ node {{ {LINE_ITEM_FIELDS} }} }}
    pageInfo {{ hasNextPage endCursor }} }} }}
}}"""

CUSTOMERS = f"""query Customers($first: Int!, $after: String, $query: String) {{
  customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    edges {{ node {{ {CUSTOMER_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }}
  }}
}}"""

PRODUCTS = f"""query Products($first: Int!, $after: String, $query: String) {{
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    edges {{ node {{ {PRODUCT_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }}
  }}
}}"""

#: Inner queries of bulk operations (no paging arguments: bulk reads everything).
BULK_QUERIES = {
    "orders": f"{{ orders(query: $query) {{ edges {{ node {{ {ORDER_FIELDS} "
              f"lineItems {{ edges {{ node {{ {LINE_ITEM_FIELDS} }} }} }} }} }} }} }}",
    "customers": f"{{ customers(query: $query) {{ edges {{ node {{ {CUSTOMER_FIELDS} }} }} }} }}",
    "products": f"{{ products(query: $query) {{ edges {{ node {{ {PRODUCT_FIELDS} }} }} }} }}",
}

BULK_RUN = """mutation RunBulk($query: String!) {
  bulkOperationRunQuery(query: $query) { bulkOperation { id status } userErrors { field message code } }
}"""

BULK_STATUS = """query BulkStatus($id: ID!) {
  node(id: $id) { ... on BulkOperation { id status errorCode objectCount url partialDataUrl } }
}"""


def bulk_query(resource: str, search: str | None) -> str:
    """A bulk operation's inner query: GraphQL variables do not reach inside it, so the search
    string is inlined (JSON-quoted, which is also a valid GraphQL string literal)."""
    arg = f"(query: {json.dumps(search)})" if search else ""
    return BULK_QUERIES[resource].replace("(query: $query)", arg)


def updated_since_query(since: str | None) -> str | None:
    return f"updated_at:>='{since}'" if since else None


_GID = re.compile(r"gid://shopify/\w+/(\d+)")


def legacy_id(value: Any) -> str | None:
    """``gid://shopify/Order/123`` -> ``"123"`` (what REST and webhooks call the order)."""
    if value in (None, ""):
        return None
    m = _GID.fullmatch(str(value))
    return m.group(1) if m else str(value)


def edges(connection: Any) -> list[dict[str, Any]]:
    if not isinstance(connection, Mapping):
        return []
    nodes = connection.get("nodes")
    if isinstance(nodes, list):
        return [n for n in nodes if isinstance(n, dict)]
    return [e["node"] for e in connection.get("edges") or [] if isinstance(e, Mapping) and isinstance(
        e.get("node"), dict)]


def page_after(connection: Any) -> str | None:
    info = connection.get("pageInfo") if isinstance(connection, Mapping) else None
    if isinstance(info, Mapping) and info.get("hasNextPage") and info.get("endCursor"):
        return str(info["endCursor"])
    return None


def cost(body: Any) -> Mapping[str, Any]:
    ext = body.get("extensions") if isinstance(body, Mapping) else None
    value = ext.get("cost") if isinstance(ext, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def wait_for(body: Any, next_cost: float | None = None) -> float:
    """Seconds until the bucket can pay for ``next_cost`` (default: what this query asked for)."""
    c = cost(body)
    status = c.get("throttleStatus")
    if not isinstance(status, Mapping):
        return 0.0
    try:
        available = float(status.get("currentlyAvailable", 0))
        rate = float(status.get("restoreRate") or 0)
        needed = float(next_cost if next_cost is not None else c.get("requestedQueryCost") or 0)
    except (TypeError, ValueError):
        return 0.0
    if rate <= 0 or needed <= available:
        return 0.0
    return (needed - available) / rate


def error_codes(body: Any) -> list[str]:
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if not isinstance(errors, list):
        return []
    out = []
    for e in errors:
        ext = e.get("extensions") if isinstance(e, Mapping) else None
        out.append(str(ext.get("code")) if isinstance(ext, Mapping) and ext.get("code") else "")
    return out


def error_text(body: Any) -> str:
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if isinstance(errors, str):
        return errors
    if isinstance(errors, list):
        return "; ".join(str(e.get("message") if isinstance(e, Mapping) else e) for e in errors)
    return ""


def parse_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """A bulk result -> root objects, each nested connection's children gathered back under
    ``{"<field>": {"nodes": [...]}}`` (children carry ``__parentId`` and follow their parent;
    which field they belong to is told by their id's type: ``LineItem`` -> ``lineItems``)."""
    current: dict[str, Any] | None = None
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        item = json.loads(raw)
        parent = item.pop("__parentId", None)
        if parent is None:
            if current is not None:
                yield current
            current = item
            continue
        if current is None or current.get("id") != parent:
            raise ValueError(f"bulk result: child of {parent} does not follow its parent")
        kind = str(item.get("id", "")).split("/")[-2] if "/" in str(item.get("id", "")) else "Child"
        field = kind[0].lower() + kind[1:] + "s"
        current.setdefault(field, {"nodes": []})["nodes"].append(item)
    if current is not None:
        yield current
