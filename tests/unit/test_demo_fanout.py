"""The demo API's dependent endpoints (customers, a customer's orders) and created_at windows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from demo.app import build_demo_app, demo_customers, demo_orders

ROWS = 2500


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(build_demo_app(ROWS))


def of_customer(customer: int) -> list[dict[str, Any]]:
    return [o for o in demo_orders(ROWS) if o["customer"] == f"Customer {customer:03d}"]


def created(order: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(order["created_at"])


def test_customers_are_0_to_249_the_same_on_every_call(client: TestClient) -> None:
    first = client.get("/customers", params={"per_page": 1000}).json()
    second = client.get("/customers", params={"per_page": 1000}).json()
    assert first == second
    assert first["total"] == 250
    assert first["next"] is None
    assert [c["id"] for c in first["data"]] == list(range(250))
    assert first["data"] == demo_customers()
    assert first["data"][7] == {
        "id": 7,
        "name": "Customer 007",
        "email": "customer007@example.com",
        "created_at": "2023-01-10T01:00:00Z",
        "updated_at": "2023-03-28T01:07:00Z",
    }
    # every customer an order names exists
    names = {c["name"] for c in first["data"]}
    assert {o["customer"] for o in demo_orders(ROWS)} == names


def test_customers_page_like_orders(client: TestClient) -> None:
    seen: list[dict[str, Any]] = []
    page = 1
    while True:
        response = client.get("/customers", params={"page": page, "per_page": 100})
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"data", "next", "next_cursor", "total"}
        seen += body["data"]
        if body["next"] is None:
            assert "link" not in response.headers
            break
        assert 'rel="next"' in response.headers["link"]
        page += 1
    assert page == 3
    assert seen == demo_customers()
    assert client.get("/customers").json()["data"] == demo_customers()[:100]


@pytest.mark.parametrize("customer", [0, 1, 42, 249])
def test_a_customers_orders_are_the_orders_filtered_by_customer(
    client: TestClient, customer: int
) -> None:
    body = client.get(f"/customers/{customer}/orders", params={"per_page": 1000}).json()
    assert body["data"] == of_customer(customer)
    assert body["total"] == 10
    assert body["next"] is None and body["next_cursor"] is None
    assert all(o["id"] % 250 == customer for o in body["data"])


def test_a_customers_orders_page_across_pages(client: TestClient) -> None:
    expected = of_customer(3)
    pages = []
    page = 1
    while True:
        body = client.get("/customers/3/orders", params={"page": page, "per_page": 3}).json()
        assert body["total"] == len(expected)
        pages.append(body["data"])
        if body["next"] is None:
            break
        assert "page=" + str(page + 1) in body["next"]
        page += 1
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [o for p in pages for o in p] == expected
    beyond = client.get("/customers/3/orders", params={"page": 5, "per_page": 3}).json()
    assert beyond["data"] == [] and beyond["next"] is None


def test_a_customers_orders_page_by_cursor(client: TestClient) -> None:
    got: list[dict[str, Any]] = []
    params: dict[str, Any] = {"cursor": "", "limit": 4}
    while True:
        body = client.get("/customers/9/orders", params=params).json()
        got += body["data"]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert got == of_customer(9)


def test_a_customers_orders_honour_updated_since(client: TestClient) -> None:
    since = "2024-01-10T00:00:00Z"
    body = client.get("/customers/5/orders", params={"updated_since": since}).json()
    expected = [
        o
        for o in of_customer(5)
        if datetime.fromisoformat(o["updated_at"]) >= datetime(2024, 1, 10, tzinfo=UTC)
    ]
    assert 0 < len(expected) < len(of_customer(5))
    assert body["data"] == expected


def test_customers_with_no_orders_yet_exist() -> None:
    small = TestClient(build_demo_app(100))
    body = small.get("/customers/200/orders").json()
    assert body == {"data": [], "next": None, "next_cursor": None, "total": 0}


@pytest.mark.parametrize("customer_id", ["250", "-1", "1000", "abc", "1.5"])
def test_an_unknown_customer_is_404(client: TestClient, customer_id: str) -> None:
    response = client.get(f"/customers/{customer_id}/orders")
    assert response.status_code == 404
    assert "detail" in response.json()


WINDOWS = [
    # (created_gte, created_lt, lower, upper)
    (
        "2024-01-02",
        "2024-01-03",
        datetime(2024, 1, 2, tzinfo=UTC),
        datetime(2024, 1, 3, tzinfo=UTC),
    ),
    (
        "2024-01-05T10:00:00Z",
        "2024-01-05T12:00:00+00:00",
        datetime(2024, 1, 5, 10, tzinfo=UTC),
        datetime(2024, 1, 5, 12, tzinfo=UTC),
    ),
    (
        str(int(datetime(2024, 1, 10, tzinfo=UTC).timestamp())),
        str(int(datetime(2024, 1, 11, 6, tzinfo=UTC).timestamp())),
        datetime(2024, 1, 10, tzinfo=UTC),
        datetime(2024, 1, 11, 6, tzinfo=UTC),
    ),
]


@pytest.mark.parametrize(("gte", "lt", "lower", "upper"), WINDOWS)
def test_orders_created_window(
    client: TestClient, gte: str, lt: str, lower: datetime, upper: datetime
) -> None:
    body = client.get(
        "/orders", params={"created_gte": gte, "created_lt": lt, "per_page": 1000}
    ).json()
    expected = [o for o in demo_orders(ROWS) if lower <= created(o) < upper]
    assert expected
    assert body["data"] == expected
    assert body["total"] == len(expected)
    bare = client.get("/orders.json", params={"created_gte": gte, "created_lt": lt}).json()
    assert bare == expected


def test_created_bounds_are_inclusive_below_exclusive_above(client: TestClient) -> None:
    # order 60 is created at 2024-01-01 + 17*60 min = 2024-01-01T17:00:00Z
    at = demo_orders(ROWS)[59]["created_at"]
    assert at == "2024-01-01T17:00:00Z"
    gte = client.get("/orders", params={"created_gte": at, "per_page": 1}).json()
    assert gte["data"][0]["id"] == 60
    lt = client.get("/orders", params={"created_lt": at, "per_page": 1000}).json()
    assert [o["id"] for o in lt["data"]] == list(range(1, 60))
    only = client.get(
        "/orders", params={"created_gte": at, "created_lt": "2024-01-01T17:00:01Z"}
    ).json()
    assert [o["id"] for o in only["data"]] == [60]


def test_created_window_with_no_orders_is_empty(client: TestClient) -> None:
    for params in (
        {"created_gte": "2024-01-01T00:01:00Z", "created_lt": "2024-01-01T00:17:00Z"},
        {"created_lt": "2023-12-31"},
        {"created_gte": "2030-01-01"},
        {"created_gte": "2024-02-01", "created_lt": "2024-01-01"},
    ):
        body = client.get("/orders", params=params).json()
        assert body == {"data": [], "next": None, "next_cursor": None, "total": 0}, params


def test_created_window_combines_with_updated_since_and_paging(client: TestClient) -> None:
    params = {
        "created_gte": "2024-01-03",
        "created_lt": "2024-01-13",
        "updated_since": "2024-01-08",
    }
    expected = [
        o
        for o in demo_orders(ROWS)
        if datetime(2024, 1, 3, tzinfo=UTC) <= created(o) < datetime(2024, 1, 13, tzinfo=UTC)
        and datetime.fromisoformat(o["updated_at"]) >= datetime(2024, 1, 8, tzinfo=UTC)
    ]
    got: list[dict[str, Any]] = []
    for page in range(1, 100):
        body = client.get("/orders", params={**params, "page": page, "per_page": 50}).json()
        got += body["data"]
        if body["next"] is None:
            break
    assert len(expected) > 50
    assert got == expected


def test_a_customers_orders_in_a_created_window(client: TestClient) -> None:
    params = {"created_gte": "2024-01-05", "created_lt": "2024-01-20"}
    body = client.get("/customers/17/orders", params=params).json()
    expected = [
        o
        for o in of_customer(17)
        if datetime(2024, 1, 5, tzinfo=UTC) <= created(o) < datetime(2024, 1, 20, tzinfo=UTC)
    ]
    assert 0 < len(expected) < len(of_customer(17))
    assert body["data"] == expected
    empty = client.get("/customers/17/orders", params={"created_gte": "2031-01-01"}).json()
    assert empty["data"] == []


@pytest.mark.parametrize("name", ["created_gte", "created_lt"])
@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "1.5", "2024-01-01T25:00", "9" * 30])
@pytest.mark.parametrize("path", ["/orders", "/orders.json", "/customers/1/orders"])
def test_bad_created_bounds_are_400_naming_the_parameter(
    client: TestClient, path: str, name: str, value: str
) -> None:
    response = client.get(path, params={name: value})
    assert response.status_code == 400
    assert name in response.json()["detail"]


def test_bad_paging_on_the_new_routes_is_400(client: TestClient) -> None:
    for path in ("/customers", "/customers/1/orders"):
        response = client.get(path, params={"per_page": "x"})
        assert response.status_code == 400
        assert "per_page" in response.json()["detail"]
    response = client.get("/customers/1/orders", params={"updated_since": "nope"})
    assert response.status_code == 400
    assert "updated_since" in response.json()["detail"]
