"""The items API: the cached read path, the rate limiter on its own Redis, and the worker's reports."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shop.models import Item
from shop.queue import run_worker
from shop.worker import FUNCTIONS


async def test_healthy_with_every_server(client: httpx.AsyncClient) -> None:
    """The three Redis clients and the database answer: the health route says so."""
    response = await client.get("/health")
    assert 200 == response.status_code


async def test_an_item_is_cached_until_it_changes(app: FastAPI, client: httpx.AsyncClient) -> None:
    """A read is served from the cache, even after the row changed behind the API, until the API changes it."""
    await client.put("/items/1", params={"name": "ada"})
    assert {"id": 1, "name": "ada"} == (await client.get("/items/1")).json()
    async with app.state.sessions.begin() as session:
        (await session.get(Item, 1)).name = "changed behind the API"
    assert {"id": 1, "name": "ada"} == (await client.get("/items/1")).json()
    await client.put("/items/1", params={"name": "grace"})
    assert {"id": 1, "name": "grace"} == (await client.get("/items/1")).json()


async def test_a_missing_item_is_a_404(client: httpx.AsyncClient) -> None:
    assert 404 == (await client.get("/items/404")).status_code


async def test_reports_are_rate_limited(client: httpx.AsyncClient) -> None:
    """Two report requests per period are taken (rate_limit=2), the third is refused with a 429 and Retry-After."""
    assert [200, 200] == [(await client.post("/reports")).status_code for _ in range(2)]
    refused = await client.post("/reports")
    assert 429 == refused.status_code
    assert "60" == refused.headers["retry-after"]


async def test_the_worker_builds_the_report(app: FastAPI, client: httpx.AsyncClient) -> None:
    """A report is a job on the queue; once the worker has run it, the API serves its result."""
    for item_id in (1, 2):
        await client.put(f"/items/{item_id}", params={"name": f"item {item_id}"})
    report_id = (await client.post("/reports")).json()["report_id"]
    assert 404 == (await client.get(f"/reports/{report_id}")).status_code
    ctx = {"sessions": app.state.sessions, "queue": app.state.queue}
    assert 1 == await run_worker(app.state.queue, FUNCTIONS, ctx, burst=True)
    assert {"items": 2} == (await client.get(f"/reports/{report_id}")).json()
