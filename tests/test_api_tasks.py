"""Admission, SSE streaming, cancel and resume over real HTTP against the reference app."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from httpx_sse import connect_sse

from tests._api import TEST_CONFIG, events, task_body
from tests._server import running_server


@pytest.fixture(scope="module")
def server():
    with running_server(TEST_CONFIG) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c:
        yield c


@pytest.mark.req(
    "ORCH-2001", "ORCH-2002", "ORCH-3029", "OC-CTRL-2020", "OC-CTRL-2021", "OC-CTRL-2022"
)
def test_task_is_admitted_and_streamed_in_order(client) -> None:
    body = task_body(prompt="[[sim tokens=12]] hello")
    resp = client.post("/v1/tasks", json=body)
    assert resp.status_code == 202, resp.text
    admitted = resp.json()
    assert admitted["task_id"] == body["task_id"]
    assert {"queue_position", "predicted_start_ms", "backoff_ms"} <= set(admitted)
    evs = events(client, body["task_id"])
    names = [n for n, _, _ in evs]
    assert names[0] == "started" and names[-1] == "end"
    assert set(names) <= {"started", "token", "metrics", "end", "error"}
    started = evs[0][1]
    assert isinstance(started["queue_position"], int)
    assert isinstance(started["predicted_start_ms"], int)
    tokens = [(d, i) for n, d, i in evs if n == "token"]
    assert [d["i"] for d, _ in tokens] == list(range(12))
    assert [i for _, i in tokens] == [str(k) for k in range(12)]
    assert evs[-1][1]["tokens_out"] == 12 and evs[-1][1]["decode_ms"] >= 0


@pytest.mark.req("ORCH-3045", "OC-CORE-1030")
def test_seed_is_derived_from_task_id_when_omitted(client) -> None:
    body = task_body(prompt="[[sim tokens=8]] same prompt")
    client.post("/v1/tasks", json=body)
    first = [d["t"] for n, d, _ in events(client, body["task_id"]) if n == "token"]
    replay = [d["t"] for n, d, _ in events(client, body["task_id"]) if n == "token"]
    other = task_body(prompt="[[sim tokens=8]] same prompt", seed=12345)
    client.post("/v1/tasks", json=other)
    third = [d["t"] for n, d, _ in events(client, other["task_id"]) if n == "token"]
    again = task_body(prompt="[[sim tokens=8]] same prompt", seed=12345)
    client.post("/v1/tasks", json=again)
    fourth = [d["t"] for n, d, _ in events(client, again["task_id"]) if n == "token"]
    assert first == replay
    assert third == fourth and third != first


@pytest.mark.req("ORCH-2003", "ORCH-3026", "ORCH-3017", "OC-CTRL-2012", "OC-CORE-1005")
def test_cancel_of_running_task_is_race_free(client) -> None:
    body = task_body(prompt="[[sim tokens=500 itl_ms=20]] slow")
    client.post("/v1/tasks", json=body)
    received: list[tuple[str, dict]] = []
    canceled_at: list[int] = []

    def read() -> None:
        with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=10) as c:
            with connect_sse(c, "GET", f"/v1/tasks/{body['task_id']}/stream") as source:
                for sse in source.iter_sse():
                    received.append((sse.event, __import__("json").loads(sse.data)))

    reader = threading.Thread(target=read)
    reader.start()
    while sum(1 for n, _ in received if n == "token") < 5:
        time.sleep(0.01)
    resp = client.post(f"/v1/tasks/{body['task_id']}/cancel")
    assert resp.status_code == 204
    canceled_at.append(sum(1 for n, _ in received if n == "token"))
    reader.join(timeout=5)
    assert not reader.is_alive(), "the stream must end after a cancel"
    names = [n for n, _ in received]
    assert names[-1] == "end"
    tokens = [d for n, d in received if n == "token"]
    assert received[-1][1]["tokens_out"] == len(tokens)
    # Anything after the 204 was already in flight; with 20 ms per token that is at most one.
    assert len(tokens) - canceled_at[0] <= 1
    # Cancel is idempotent and the slot is free again: the next task runs at once.
    assert client.post(f"/v1/tasks/{body['task_id']}/cancel").status_code == 204
    nxt = task_body(prompt="[[sim tokens=3]] next")
    assert client.post("/v1/tasks", json=nxt).json()["queue_position"] == 0


@pytest.mark.req("ORCH-2003", "OC-CORE-1005")
def test_cancel_of_queued_task_ends_it_without_tokens(client) -> None:
    blocker = task_body(prompt="[[sim tokens=1 hold_ms=3000]] hold")
    queued = task_body(prompt="[[sim tokens=5]] wait")
    client.post("/v1/tasks", json=blocker)
    assert client.post("/v1/tasks", json=queued).json()["queue_position"] >= 0
    assert client.post(f"/v1/tasks/{queued['task_id']}/cancel").status_code == 204
    evs = events(client, queued["task_id"])
    assert [n for n, _, _ in evs if n == "token"] == []
    assert evs[-1][0] == "end" and evs[-1][1]["tokens_out"] == 0
    client.post(f"/v1/tasks/{blocker['task_id']}/cancel")


@pytest.mark.req("ORCH-2002", "OC-CTRL-2022")
def test_last_event_id_resumes_without_duplicates_or_gaps(client) -> None:
    body = task_body(prompt="[[sim tokens=20]] resume me")
    client.post("/v1/tasks", json=body)
    full = events(client, body["task_id"])
    resumed = events(client, body["task_id"], **{"Last-Event-ID": "7"})
    assert resumed[0][0] != "started"
    idx = [d["i"] for n, d, _ in resumed if n == "token"]
    assert idx == list(range(8, 20))
    assert resumed[-1] == full[-1]


@pytest.mark.req("ORCH-3016", "OC-CORE-1022")
def test_watchdog_ends_an_idle_task(client) -> None:
    body = task_body(prompt="[[sim tokens=3 itl_ms=3000]] stuck")
    client.post("/v1/tasks", json=body)
    evs = events(client, body["task_id"])
    assert evs[-1][0] == "error"
    assert evs[-1][1]["code"] == "DECODE_TIMEOUT"
    assert "idle" in evs[-1][1]["message"]


@pytest.mark.req("ORCH-2006", "OC-CTRL-2030")
def test_engine_failure_mid_stream_is_a_typed_error_event(client) -> None:
    body = task_body(prompt="[[sim tokens=10 fail_after=4]] flaky")
    client.post("/v1/tasks", json=body)
    evs = events(client, body["task_id"])
    assert [d["i"] for n, d, _ in evs if n == "token"] == [0, 1, 2, 3]
    assert evs[-1][0] == "error"
    assert evs[-1][1]["code"] == "WORKER_RESET" and evs[-1][1]["engine"] == "llamacpp"


def _fill(client, engine: str, hold_prompt: str, n: int, priority: str = "interactive"):
    ids = []
    for _ in range(n):
        body = task_body(engine=engine, prompt=hold_prompt, priority=priority)
        resp = client.post("/v1/tasks", json=body)
        assert resp.status_code == 202, resp.text
        ids.append(body["task_id"])
    return ids


@pytest.mark.req(
    "ORCH-3004", "ORCH-3005", "ORCH-2007", "OC-CTRL-2011", "OC-CORE-1001", "OC-CORE-1002"
)
def test_full_queue_with_reject_policy_answers_429_with_backpressure(client) -> None:
    ids = _fill(client, "llamacpp", "[[sim tokens=1 hold_ms=3000]] hold", 3)  # 1 runs, 2 queue
    resp = client.post("/v1/tasks", json=task_body())
    try:
        assert resp.status_code == 429
        body = resp.json()
        assert body["policy_label"] == "reject"
        assert body["code"] == "ADMISSION_REJECT" and body["retriable"] is True
        backoff = int(resp.headers["X-Backoff-Ms"])
        assert body["retry_after_ms"] == backoff
        assert int(resp.headers["Retry-After"]) == -(-backoff // 1000)
    finally:
        for tid in ids:
            client.post(f"/v1/tasks/{tid}/cancel")


@pytest.mark.req("ORCH-3005", "OC-CORE-1002")
def test_drop_lru_evicts_the_oldest_queued_task(client) -> None:
    ids = _fill(client, "vllm", "[[sim tokens=1 hold_ms=3000]] hold", 3)  # 1 runs, 2 queue
    newcomer = task_body(engine="vllm")
    try:
        assert client.post("/v1/tasks", json=newcomer).status_code == 202
        evicted = events(client, ids[1])
        assert evicted[-1][0] == "error"
        assert evicted[-1][1]["code"] == "QUEUE_FULL_DROP_LRU"
    finally:
        for tid in [*ids, newcomer["task_id"]]:
            client.post(f"/v1/tasks/{tid}/cancel")


@pytest.mark.req("ORCH-3005", "OC-CORE-1002")
def test_shed_low_priority_sheds_queued_batch_work(client) -> None:
    running = _fill(client, "tgi", "[[sim tokens=1 hold_ms=3000]] hold", 1)
    batch = _fill(client, "tgi", "[[sim tokens=2]] later", 2, priority="batch")
    urgent = task_body(engine="tgi", priority="interactive")
    try:
        assert client.post("/v1/tasks", json=urgent).status_code == 202
        shed = [events(client, tid)[-1] for tid in batch]
        assert sum(1 for name, data, _ in shed if name == "error") == 1
        assert all(d["code"] == "ADMISSION_REJECT" for n, d, _ in shed if n == "error")
    finally:
        for tid in [*running, *batch, urgent["task_id"]]:
            client.post(f"/v1/tasks/{tid}/cancel")


@pytest.mark.req("OC-CTRL-2023", "ORCH-3100", "OC-METRICS-7110", "ORCH-3081")
def test_metrics_events_carry_planning_hints(client) -> None:
    body = task_body(prompt="[[sim tokens=3]] plan", deadline_ms=60_000)
    client.post("/v1/tasks", json=body)
    metrics = [d for n, d, _ in events(client, body["task_id"]) if n == "metrics"]
    assert metrics, "at least one metrics event between started and end"
    assert all(isinstance(m["queue_depth"], int) for m in metrics)
    probabilities = [m["on_time_probability"] for m in metrics if "on_time_probability" in m]
    assert probabilities and all(0.0 <= p <= 1.0 for p in probabilities)
    assert any(isinstance(m.get("kv_warmth"), bool) for m in metrics)
