"""The offline demo source that the shipped example jobs read: an orders API on Starlette.

Mounted at `/demo` by serve/app.py (routes below are relative to the mount). One `GET /orders`
answers every pagination style of the job file at once, so each example job picks its own:

    page:         ?page=2&per_page=500          (page starts at 1)
    offset:       ?offset=1000&limit=500        (`total` in the body)
    cursor:       ?cursor=<next_cursor>         (opaque; page size from per_page or limit)
    link_header:  Link: <absolute next url>; rel="next"
    next_url:     "next" in the body (absolute URL, null on the last page)

`updated_since` (ISO 8601, inclusive) filters by `updated_at`; `created_gte` (inclusive) and
`created_lt` (exclusive) filter by `created_at`, each an ISO 8601 instant, a date `YYYY-MM-DD`
(midnight UTC) or whole epoch seconds (all digits: `1704067200`); no zone means UTC. All three
combine. `GET /orders.json` is the whole (filtered) list as a bare array, for `records: "$"`.

For dependent (fan-out) jobs:

    GET /customers                        customers 0..249, `{id, name, email, created_at,
                                          updated_at}`, the same on every call
    GET /customers/{customer_id}/orders   that customer's orders: the /orders records whose
                                          `customer` is `Customer {customer_id:03d}`

Customer ids are 0..249 because order `i` belongs to customer `i % 250` (its `customer` and
`email` fields name it), whatever the number of rows; a customer may have no orders. Both
routes page like /orders (every style above, the same body `{"data", "next", "next_cursor",
"total"}` and Link header); the per-customer route also takes `updated_since`, `created_gte`
and `created_lt`. An unknown customer id gets 404 `{"detail": ...}`. Bad parameters get 400
`{"detail": ...}` naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_STATUSES = ("paid", "pending", "refunded")
_PLACES = (
    ("Berlin", "DE"),
    ("Paris", "FR"),
    ("Lisbon", "PT"),
    ("Osaka", "JP"),
    ("Austin", "US"),
    ("Lagos", "NG"),
    ("Lima", "PE"),
)
_TAGS = ("gift", "express", "bulk", "returning")


def demo_orders(n: int) -> list[dict[str, Any]]:
    """Orders 1..n, the same on every call (tests compute expected sums from this)."""
    orders = []
    for i in range(1, n + 1):
        created = _EPOCH + timedelta(minutes=17 * i)
        customer = i % 250
        city, country = _PLACES[i % len(_PLACES)]
        # every fifth e-mail in mixed case, so `lower(email)` in an example transform shows
        domain = "Example.COM" if i % 5 == 0 else "example.com"
        orders.append(
            {
                "id": i,
                "customer": f"Customer {customer:03d}",
                "email": f"customer{customer:03d}@{domain}",
                "amount": round(((i * 37) % 1000) / 7, 2),
                "status": _STATUSES[i % 3],
                "created_at": _iso(created),
                "updated_at": _iso(created + timedelta(hours=(i * 7) % 48)),
                "shipping": {"city": city, "country": country},
                "tags": [tag for k, tag in enumerate(_TAGS) if i % (k + 2) == 0],
            }
        )
    return orders


CUSTOMERS = 250


def demo_customers() -> list[dict[str, Any]]:
    """Customers 0..249 (order `i` belongs to customer `i % 250`), the same on every call."""
    customers = []
    for c in range(CUSTOMERS):
        created = _EPOCH - timedelta(days=365) + timedelta(hours=31 * c)
        customers.append(
            {
                "id": c,
                "name": f"Customer {c:03d}",
                "email": f"customer{c:03d}@example.com",
                "created_at": _iso(created),
                "updated_at": _iso(created + timedelta(days=(c * 11) % 90, minutes=c)),
            }
        )
    return customers


def build_demo_app(rows: int = 2500) -> Starlette:
    orders = demo_orders(rows)
    customers = demo_customers()
    customer_ids = [c["id"] for c in customers]
    updated = [datetime.fromisoformat(o["updated_at"]) for o in orders]
    created = [datetime.fromisoformat(o["created_at"]) for o in orders]

    @lru_cache(maxsize=64)
    def select(
        since: datetime | None,
        gte: datetime | None = None,
        lt: datetime | None = None,
        customer: int | None = None,
    ) -> tuple[list[dict[str, Any]], list[int]]:
        """Orders updated at or after `since`, created in [gte, lt), of `customer`, and
        their ids (sorted: bisected by cursors)."""
        if since is None and gte is None and lt is None and customer is None:
            chosen = orders
        else:
            chosen = [
                o
                for o, u, c in zip(orders, updated, created, strict=True)
                if (since is None or u >= since)
                and (gte is None or c >= gte)
                and (lt is None or c < lt)
                and (customer is None or o["id"] % CUSTOMERS == customer)
            ]
        return chosen, [o["id"] for o in chosen]

    def filtered(query: QueryParams, customer: int | None = None) -> tuple[list[Any], list[int]]:
        return select(
            _since(query),
            _instant(query, "created_gte"),
            _instant(query, "created_lt"),
            customer,
        )

    async def list_orders(request: Request) -> Response:
        return _page(request, *filtered(request.query_params))

    async def all_orders(request: Request) -> Response:
        return _json(filtered(request.query_params)[0])

    async def list_customers(request: Request) -> Response:
        return _page(request, customers, customer_ids)

    async def customer_orders(request: Request) -> Response:
        raw = request.path_params["customer_id"]
        if not re.fullmatch(r"[0-9]+", raw) or int(raw) >= CUSTOMERS:
            return _json({"detail": f"no customer {raw!r} (ids are 0..{CUSTOMERS - 1})"}, 404)
        return _page(request, *filtered(request.query_params, int(raw)))

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "rows": rows})

    return Starlette(
        routes=[
            Route("/orders", list_orders),
            Route("/orders.json", all_orders),
            Route("/customers", list_customers),
            Route("/customers/{customer_id}/orders", customer_orders),
            Route("/health", health),
        ],
        exception_handlers={_BadRequest: _bad_request},
    )


def _page(request: Request, chosen: list[dict[str, Any]], ids: list[int]) -> Response:
    """One page of `chosen` (records with sorted integer ids) in the style the query asks."""
    query = request.query_params
    start, size, next_params = _window(query, ids)
    chunk = chosen[start : start + size]
    more = bool(chunk) and start + len(chunk) < len(chosen)
    cursor = _encode_cursor(chunk[-1]["id"]) if more else None
    next_url = str(request.url.include_query_params(**next_params(start + size, cursor)))
    headers = {}
    if more:
        first = request.url.remove_query_params(["page", "offset", "cursor"])
        headers["Link"] = f'<{next_url}>; rel="next", <{first}>; rel="first"'
    body = {
        "data": chunk,
        "next": next_url if more else None,
        "next_cursor": cursor,
        "total": len(chosen),
    }
    return _json(body, headers=headers)


NextParams = Callable[[int, str | None], dict[str, Any]]


def _window(query: QueryParams, ids: list[int]) -> tuple[int, int, NextParams]:
    """(first index, page size, how to build the next page's params) for the style asked."""
    if "cursor" in query:
        size = _int(query, "limit" if "limit" in query else "per_page", DEFAULT_PER_PAGE)
        token = query["cursor"]
        start = bisect_right(ids, _decode_cursor(token)) if token else 0
        return start, size, lambda _end, cursor: {"cursor": cursor}
    if "offset" in query or "limit" in query:
        offset = _int(query, "offset", 0, low=0, high=None)
        size = _int(query, "limit", DEFAULT_PER_PAGE)
        return offset, size, lambda end, _cursor: {"offset": end}
    page = _int(query, "page", 1, high=None)
    size = _int(query, "per_page", DEFAULT_PER_PAGE)
    return (page - 1) * size, size, lambda _end, _cursor: {"page": page + 1}


class _BadRequest(Exception):
    pass


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _json({"detail": str(exc)}, status=400)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # orjson: a 1,000-order page serializes in about a millisecond
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _int(
    query: QueryParams, name: str, default: int, low: int = 1, high: int | None = MAX_PER_PAGE
) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _BadRequest(f"{name} must be {bounds}, got {value}")
    return value


def _since(query: QueryParams) -> datetime | None:
    raw = query.get("updated_since")
    if not raw:
        return None
    try:
        since = datetime.fromisoformat(raw.replace(" ", "+"))  # an unescaped `+` reads as space
    except ValueError:
        raise _BadRequest(f"updated_since must be an ISO 8601 timestamp, got {raw!r}") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def _instant(query: QueryParams, name: str) -> datetime | None:
    """An ISO 8601 instant, a date (midnight UTC) or whole epoch seconds; no zone means UTC."""
    raw = query.get(name)
    if not raw:
        return None
    try:
        if re.fullmatch(r"-?[0-9]+", raw.strip()):
            return datetime.fromtimestamp(int(raw), UTC)
        moment = datetime.fromisoformat(raw.replace(" ", "+"))  # an unescaped `+` reads as space
    except (ValueError, OverflowError, OSError):
        raise _BadRequest(
            f"{name} must be an ISO 8601 timestamp, a date YYYY-MM-DD or epoch seconds, got {raw!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, value = text.partition(":")
        if prefix != "after":
            raise ValueError(prefix)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _BadRequest(f"cursor {token!r} is not one this API gave out") from None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
