"""An AsyncStore behind a Starlette endpoint: 200 concurrent requests, each a
read-modify-write of one counter retried on ConflictError, lose no update."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import statekeep
import statekeep.aio
from conformance.models import Counter

from .conftest import LagProbe, with_store


def app_over(store: statekeep.aio.AsyncStore) -> Starlette:
    async def add(request: Request) -> JSONResponse:
        amount = int(request.query_params["amount"])
        tries = 0
        while True:
            tries += 1
            counter = await store.get(Counter, request.path_params["id"])
            counter.total += amount
            try:
                await store.save(counter)
            except statekeep.ConflictError:
                await asyncio.sleep(0)
                continue
            return JSONResponse({"total": counter.total, "tries": tries})

    return Starlette(routes=[Route("/counters/{id}/add", add, methods=["POST"])])


def test_200_concurrent_read_modify_writes_lose_no_update(store_url: str) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save(Counter(id="hits"))
        transport = httpx.ASGITransport(app=app_over(store))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            LagProbe() as probe,
        ):
            replies = await asyncio.gather(
                *(client.post(f"/counters/hits/add?amount={1 + i % 3}") for i in range(200))
            )
        assert {reply.status_code for reply in replies} == {200}
        expected = sum(1 + i % 3 for i in range(200))
        assert (await store.get(Counter, "hits")).total == expected
        assert sorted(reply.json()["total"] for reply in replies)[-1] == expected
        assert probe.worst < 0.25, f"the loop stalled {probe.worst * 1000:.0f} ms"

    with_store(store_url, body)
