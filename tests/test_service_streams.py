"""Task event logs and their readers after issue 16: pre-built SSE blocks, batched reads,
heartbeats, and the bound on finished streams kept for replay.

The wire format must stay what specs/20 section 4.1 describes; readers must get every event
exactly once, in order, however many arrive between two reads; finished streams must not pile
up without bound under sustained load; and `tokens_out` must already count every token a client
has seen once the terminal event is out, although it is added in batches.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time

import httpx
import pytest

from llama_orch.reference_impl.service.streams import DATA, EVENT_ID, FRAME, NAME, TaskEvents
from tests._api import TEST_CONFIG, events, task_body
from tests._server import running_server


def _wire(events_: list) -> str:
    return b"".join(e[FRAME] for e in events_).decode()


@pytest.mark.req("ORCH-2002", "OC-CTRL-2022", "OC-CTRL-2024")
def test_blocks_are_the_documented_sse_framing() -> None:
    ev = TaskEvents("t")
    ev.emit("started", {"queue_position": 0, "predicted_start_ms": 5})
    ev.token('say "hi" é\n', 0.0)
    ev.token("x", 0.0, token_id=42)
    ev.end(0.0, "length")
    assert _wire(ev.events) == (
        "event: started\ndata: "
        + json.dumps({"queue_position": 0, "predicted_start_ms": 5}, separators=(",", ":"))
        + "\n\nevent: token\nid: 0\ndata: "
        + json.dumps({"t": 'say "hi" é\n', "i": 0}, separators=(",", ":"), ensure_ascii=False)
        + "\n\nevent: token\nid: 1\ndata: "
        + '{"t":"x","i":1,"token_id":42}'
        + "\n\nevent: end\ndata: "
        + '{"tokens_out":2,"decode_ms":0,"finish_reason":"length"}'
        + "\n\n"
    )
    for e in ev.events:  # every payload is one JSON object on one line
        assert isinstance(json.loads(e[DATA]), dict) and b"\n" not in e[DATA]


@pytest.mark.req("OC-CTRL-2024")
def test_kept_events_are_not_tracked_by_the_garbage_collector() -> None:
    """Finished streams stay replayable by the thousand; their events must not lengthen every
    full collection (issue 16 measured 30-140 ms pauses when they did)."""
    ev = TaskEvents("t")
    ev.emit("started", {"queue_position": 0})
    for n in range(4):
        ev.token(f"w{n}", 0.0, token_id=n)
    ev.end(0.0, "stop")
    gc.collect()
    assert len(ev.events) == 6
    assert not [e for e in ev.events if gc.is_tracked(e)]


@pytest.mark.req("OC-CTRL-2022")
def test_a_reader_gets_every_ready_event_in_one_batch_in_order() -> None:
    async def go() -> list[list[str]]:
        ev = TaskEvents("t")
        ev.emit("started", {})
        seen: list[list[str]] = []

        async def reader() -> None:
            async for batch in ev.follow():
                assert batch is not None
                seen.append([e[NAME] + (e[EVENT_ID] or "") for e in batch])

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)  # the reader takes `started` and waits
        for _ in range(3):  # three tokens in one loop turn: one wake-up, one batch
            ev.token("a", 0.0)
        await asyncio.sleep(0.01)
        ev.token("b", 0.0)
        ev.end(0.0)
        await asyncio.wait_for(task, 2)
        return seen

    assert asyncio.run(go()) == [["started"], ["token0", "token1", "token2"], ["token3", "end"]]


@pytest.mark.req("OC-CTRL-2024")
def test_resume_skips_started_and_the_tokens_the_reader_holds() -> None:
    async def go(last: str | None) -> list[str]:
        ev = TaskEvents("t")
        ev.emit("started", {})
        for _ in range(4):
            ev.token("a", 0.0)
        ev.end(0.0)
        return [e[NAME] + (e[EVENT_ID] or "") async for b in ev.follow(last) for e in b]

    assert asyncio.run(go("1")) == ["token2", "token3", "end"]
    assert asyncio.run(go(None))[:2] == ["started", "token0"]
    assert asyncio.run(go("99")) == ["token0", "token1", "token2", "token3", "end"]


def test_heartbeats_while_idle_leave_no_waiters_behind() -> None:
    async def go() -> tuple[int, int, list[str]]:
        ev = TaskEvents("t")
        ev.emit("started", {})
        pings = 0
        names: list[str] = []
        waiting_max = 0

        async def reader() -> None:
            nonlocal pings, waiting_max
            async for batch in ev.follow(heartbeat_s=0.01):
                waiting_max = max(waiting_max, len(ev._waiters))
                if batch is None:
                    pings += 1
                else:
                    names.extend(e[NAME] for e in batch)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.1)
        ev.end(0.0)
        await asyncio.wait_for(task, 2)
        return pings, waiting_max, names

    pings, waiting_max, names = asyncio.run(go())
    assert pings >= 3 and names == ["started", "end"]
    assert waiting_max <= 1  # a heartbeat removes its waiter; they do not pile up


def test_a_reader_that_goes_away_removes_its_waiter() -> None:
    async def go() -> int:
        ev = TaskEvents("t")
        ev.emit("started", {})
        agen = ev.follow()
        assert [e[NAME] for e in await agen.__anext__()] == ["started"]
        pending = asyncio.create_task(agen.__anext__())
        await asyncio.sleep(0)
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        return len(ev._waiters)

    assert asyncio.run(go()) == 0


# -- the orchestrator's retention bound and tokens_out -------------------------------------------


def _tokens_out(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tokens_out_total{")
    )


@pytest.fixture
def server():
    with running_server(TEST_CONFIG) as running:
        yield running


@pytest.mark.req("OC-CTRL-2024")
def test_finished_streams_beyond_the_bound_are_reaped_oldest_first(server) -> None:
    server.orchestrator.max_finished = 3
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client:
        ids = []
        for _ in range(5):
            body = task_body(prompt="[[sim tokens=2]] hi")
            assert client.post("/v1/tasks", json=body).status_code == 202
            assert events(client, body["task_id"])[-1][0] == "end"
            ids.append(body["task_id"])
        finished = [t for t in ids if t in server.orchestrator.records]
        assert finished == ids[-3:]  # the two oldest are gone, the newest three replayable
        assert client.get(f"/v1/tasks/{ids[0]}/stream").status_code == 404
        assert events(client, ids[-1])[-1][0] == "end"
        # and by age: everything finished before now + retention is reaped
        server.orchestrator.reap(time.monotonic() + 10_000)
        assert not [t for t in ids if t in server.orchestrator.records]


@pytest.mark.req("OC-CTRL-2012")
def test_tokens_out_counts_every_token_a_client_saw_once_the_stream_ended(server) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client:
        before = _tokens_out(client)
        body = task_body(prompt="[[sim tokens=7]] hi")
        assert client.post("/v1/tasks", json=body).status_code == 202
        seen = events(client, body["task_id"])
        assert seen[-1][0] == "end"
        assert _tokens_out(client) - before == 7
        # a cancel from another request: counted before the 204
        slow = task_body(prompt="[[sim tokens=200 itl_ms=10]] slow")
        assert client.post("/v1/tasks", json=slow).status_code == 202
        deadline = time.monotonic() + 5
        rec = server.orchestrator.records[slow["task_id"]]
        while rec.stream.tokens < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        mid = _tokens_out(client)
        assert client.post(f"/v1/tasks/{slow['task_id']}/cancel").status_code == 204
        after = _tokens_out(client)
        streamed = [e for e in events(client, slow["task_id"]) if e[0] == "token"]
        assert after - before - 7 == len(streamed) >= 3
        assert mid <= after
