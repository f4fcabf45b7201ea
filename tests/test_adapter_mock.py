"""The in-process mock adapter: directive behaviour, determinism, cancel and lifecycle.

The mock is the controllable engine behind the embedded default target, so every directive key
must do what specs/80 section 6 says, with delays as lower bounds and prompt cancels.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from llama_orch.engine_sim.tokens import iter_tokens, token_text
from llama_orch.reference_impl.adapters import (
    AdapterError,
    CompletionRequest,
    EngineAdapter,
    MockAdapter,
    SamplerParams,
    StreamEnd,
    TokenEvent,
    TokenStream,
)

T = TypeVar("T")
SAMPLER = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)
CLOCK_SLACK = 1e-6  # event-loop timers may fire up to the monotonic clock resolution early


def run(coro: Coroutine[Any, Any, T]) -> T:
    """No pytest-asyncio here: each async test body runs in its own event loop."""
    return asyncio.run(coro)


def mock(**kw: Any) -> MockAdapter:
    kw.setdefault("model_ref", "hf:org/model@rev")
    kw.setdefault("ctx_max", 4096)
    return MockAdapter("mock", kw.pop("replica_id", "r0"), **kw)


def req(prompt: str, max_tokens: int = 16, seed: int = 7, rid: str = "t1") -> CompletionRequest:
    return CompletionRequest(rid, prompt, max_tokens, seed, SAMPLER, "v1")


async def collect(stream: TokenStream) -> list[TokenEvent]:
    return [ev async for ev in stream]


async def timed(stream: TokenStream) -> tuple[float, list[tuple[float, TokenEvent]]]:
    """Start time and (arrival time, event) pairs on the event loop's clock."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    return start, [(loop.time(), ev) async for ev in stream]


def ids(events: list[TokenEvent]) -> list[int | None]:
    return [ev.token_id for ev in events]


async def first_error(stream: TokenStream) -> tuple[list[TokenEvent], AdapterError]:
    got: list[TokenEvent] = []
    with pytest.raises(AdapterError) as info:
        async for ev in stream:
            got.append(ev)
    return got, info.value


@pytest.mark.req("OC-HARNESS-8404")
@pytest.mark.parametrize(
    ("prompt", "max_tokens", "count", "reason"),
    [
        ("[[sim tokens=5]] hi", 10, 5, "stop"),
        ("[[sim tokens=40]] hi", 10, 10, "length"),
        ("[[sim]] hi", 12, 12, "length"),
        ("hi", 9, 9, "length"),
        ("[[sim tokens=0]] hi", 9, 0, "stop"),
    ],
)
def test_tokens_directive_sets_the_length(
    prompt: str, max_tokens: int, count: int, reason: str
) -> None:
    async def body() -> None:
        stream = mock().stream(req(prompt, max_tokens))
        events = await collect(stream)
        assert [ev.index for ev in events] == list(range(count))
        assert all(ev.token_id is not None and ev.text == token_text(ev.token_id) for ev in events)
        assert stream.end is not None
        assert (stream.end.tokens_out, stream.end.finish_reason) == (count, reason)

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_ttft_is_a_lower_bound() -> None:
    async def body() -> None:
        start, got = await timed(mock().stream(req("[[sim tokens=2 ttft_ms=60]] q")))
        assert got[0][0] - start >= 0.060 - CLOCK_SLACK
        assert got[0][0] - start < 2.0

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_itl_is_a_lower_bound_between_tokens() -> None:
    async def body() -> None:
        start, got = await timed(mock().stream(req("[[sim tokens=5 itl_ms=25]] q")))
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(got)]
        assert len(got) == 5
        assert min(gaps) >= 0.025 - CLOCK_SLACK
        assert got[0][0] - start < 0.025  # no ttft asked: the first token comes at once
        assert got[-1][0] - start < 4 * 0.025 + 2.0  # generous: timers, not busy loops

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_hold_keeps_the_slot_busy_after_the_last_token() -> None:
    async def body() -> None:
        adapter = mock(slots=1)
        loop = asyncio.get_running_loop()
        stream = adapter.stream(req("[[sim tokens=2 hold_ms=80]] q"))
        events = [await stream.__anext__(), await stream.__anext__()]
        last = loop.time()
        ending = asyncio.ensure_future(collect(stream))
        await asyncio.sleep(0.03)
        assert (await adapter.props()).slots_free == 0
        assert not ending.done()
        assert await ending == []
        assert loop.time() - last >= 0.080 - CLOCK_SLACK
        assert len(events) == 2 and stream.end == StreamEnd(2, "stop", stream.end.decode_ms)
        assert (await adapter.props()).slots_free == 1

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_fail_after_raises_worker_reset_mid_stream() -> None:
    async def body() -> None:
        adapter = mock()
        got, err = await first_error(adapter.stream(req("[[sim tokens=10 fail_after=3]] q")))
        assert len(got) == 3
        assert (err.code, err.retriable, err.engine) == ("WORKER_RESET", True, "mock")
        assert (await adapter.props()).slots_free == 1
        # Not below the token count: no effect.
        events = await collect(adapter.stream(req("[[sim tokens=4 fail_after=4]] q", rid="t2")))
        assert len(events) == 4
        # Zero: fails before the first token.
        got, err = await first_error(adapter.stream(req("[[sim fail_after=0]] q", rid="t3")))
        assert got == [] and err.code == "WORKER_RESET"

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_overload_n_counts_requests_with_the_same_prompt_per_instance() -> None:
    async def body() -> None:
        adapter = mock()
        prompt = "[[sim tokens=1 overload=2]] same"
        for _ in range(2):
            got, err = await first_error(adapter.stream(req(prompt)))
            assert got == [] and (err.code, err.retriable) == ("REPLICA_EXHAUSTED", True)
        assert len(await collect(adapter.stream(req(prompt)))) == 1
        assert len(await collect(adapter.stream(req(prompt)))) == 1
        # Another ordinary prompt has its own count, and so does another instance.
        _, err = await first_error(adapter.stream(req("[[sim tokens=1 overload=2]] other")))
        assert err.code == "REPLICA_EXHAUSTED"
        _, err = await first_error(mock().stream(req(prompt)))
        assert err.code == "REPLICA_EXHAUSTED"
        assert (await adapter.props()).slots_free == 1

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
@pytest.mark.parametrize(("value", "refused"), [("true", True), ("false", False), ("0", False)])
def test_overload_true_always_false_or_zero_never(value: str, refused: bool) -> None:
    async def body() -> None:
        adapter = mock()
        for _ in range(3):
            stream = adapter.stream(req(f"[[sim tokens=1 overload={value}]] q"))
            if refused:
                _, err = await first_error(stream)
                assert err.code == "REPLICA_EXHAUSTED"
            else:
                assert len(await collect(stream)) == 1

    run(body())


@pytest.mark.req("OC-HARNESS-8405")
def test_diverge_at_departs_only_on_a_salted_replica() -> None:
    async def body() -> None:
        prompt = "[[sim tokens=12 diverge_at=4]] same question"
        normal = ids(await collect(mock().stream(req(prompt))))
        salted = ids(await collect(mock(salt="replica-b").stream(req(prompt))))
        assert salted[:4] == normal[:4]
        assert all(a != b for a, b in zip(salted[4:], normal[4:], strict=True))
        # Without the key a salted replica is normal, and an unsalted one ignores the key.
        plain = ids(await collect(mock(salt="replica-b").stream(req("same question", 12))))
        assert plain == normal

    run(body())


@pytest.mark.req("OC-HARNESS-8405")
def test_tokens_are_a_pure_function_of_prompt_seed_and_index() -> None:
    async def body() -> None:
        a = ids(await collect(mock(replica_id="a").stream(req("hello", 20, seed=1))))
        b = ids(await collect(mock(replica_id="b", slots=4).stream(req("hello", 20, seed=1))))
        other_seed = ids(await collect(mock().stream(req("hello", 20, seed=2))))
        timed_keys = "[[sim tokens=20 itl_ms=1 ttft_ms=2 hold_ms=1]] hello"
        steered = ids(await collect(mock().stream(req(timed_keys, 50, seed=1))))
        assert a == b == steered
        assert a != other_seed
        assert a == [tid for tid, _ in iter_tokens("hello", 1, 20)]

    run(body())


@pytest.mark.req("OC-HARNESS-8401")
@pytest.mark.parametrize("prompt", [" [[sim tokens=2]] x", "x [[sim tokens=2]]", "[[simple]]"])
def test_directive_only_at_the_very_start(prompt: str) -> None:
    async def body() -> None:
        events = await collect(mock().stream(req(prompt, 6)))
        assert ids(events) == [tid for tid, _ in iter_tokens(prompt, 7, 6)]

    run(body())


@pytest.mark.req("OC-HARNESS-8403")
@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        ("[[sim tokns=1]] x", "tokns"),
        ("[[sim tokens=1 tokens=2]] x", "twice"),
        ("[[sim tokens=-1]] x", "tokens"),
        ("[[sim tokens=3000000000]] x", "range"),
        ("[[sim tokens=1 x", "unterminated"),
        ("[[sim tokens=1\titl_ms=2]] x", "tokens"),
    ],
)
def test_invalid_directive_is_invalid_params_before_any_token(prompt: str, named: str) -> None:
    async def body() -> None:
        adapter = mock()
        got, err = await first_error(adapter.stream(req(prompt)))
        assert got == []
        assert (err.code, err.retriable, err.engine) == ("INVALID_PARAMS", False, "mock")
        assert named in err.message
        assert (await adapter.props()).slots_free == 1
        assert (await adapter.metrics()).running == 0

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_aclose_stops_the_stream_and_frees_the_slot() -> None:
    async def body() -> None:
        adapter = mock(slots=1)
        stream = adapter.stream(req("[[sim tokens=100 itl_ms=500]] q", 100))
        assert (await stream.__anext__()).index == 0
        assert (await adapter.metrics()).running == 1
        t0 = time.monotonic()
        await stream.aclose()
        assert time.monotonic() - t0 < 0.5
        assert (await adapter.props()).slots_free == 1
        assert (await adapter.metrics()).running == 0
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        await stream.aclose()  # idempotent

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_aclose_from_another_task_while_waiting_for_a_token() -> None:
    async def body() -> None:
        adapter = mock()
        stream = adapter.stream(req("[[sim tokens=100 itl_ms=2000]] q", 100))
        await stream.__anext__()
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.01)
        t0 = time.monotonic()
        await stream.aclose()
        assert (await adapter.props()).slots_free == 1
        with pytest.raises(StopAsyncIteration):
            await pending
        assert time.monotonic() - t0 < 0.5
        assert stream.end is not None and stream.end.finish_reason == "canceled"

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
@pytest.mark.parametrize("phase", ["ttft", "itl", "hold"])
def test_cancel_stops_within_one_interval_and_frees_the_slot(phase: str) -> None:
    keys = {"ttft": "ttft_ms=3000", "itl": "itl_ms=3000", "hold": "hold_ms=3000"}[phase]

    async def body() -> None:
        adapter = mock(slots=1)
        stream = adapter.stream(req(f"[[sim tokens=3 {keys}]] q", 50, rid="job"))
        consumer = asyncio.ensure_future(collect(stream))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        assert await adapter.cancel("job") is True
        assert (await adapter.props()).slots_free == 1  # free when cancel() returns
        events = await consumer
        assert time.monotonic() - t0 < 0.5
        want = {"ttft": 0, "itl": 1, "hold": 3}[phase]
        assert len(events) == want
        assert stream.end == StreamEnd(want, "canceled", stream.end.decode_ms)
        assert await adapter.cancel("job") is False

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_cancel_between_tokens_ends_the_next_read_at_once() -> None:
    async def body() -> None:
        adapter = mock()
        stream = adapter.stream(req("[[sim itl_ms=3000]] q", 5, rid="job"))
        await stream.__anext__()
        assert await adapter.cancel("job") is True
        t0 = time.monotonic()
        assert await collect(stream) == []
        assert time.monotonic() - t0 < 0.5
        assert stream.end is not None and stream.end.tokens_out == 1

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_cancelling_the_consumer_task_frees_the_slot() -> None:
    async def body() -> None:
        adapter = mock(slots=1)
        consumer = asyncio.ensure_future(collect(adapter.stream(req("[[sim itl_ms=3000]] q", 5))))
        await asyncio.sleep(0.02)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert (await adapter.props()).slots_free == 1
        assert (await adapter.metrics()).running == 0

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_slots_queue_extra_streams_and_metrics_count_them() -> None:
    async def body() -> None:
        adapter = mock(slots=1)
        first = asyncio.ensure_future(collect(adapter.stream(req("[[sim hold_ms=100]] a", 2))))
        second = asyncio.ensure_future(
            collect(adapter.stream(req("[[sim tokens=1]] b", 2, rid="t2")))
        )
        await asyncio.sleep(0.03)
        load = await adapter.metrics()
        assert (load.running, load.waiting, load.kv_pressure) == (1, 1, 1.0)
        assert not second.done()
        assert (len(await first), len(await second)) == (2, 1)
        load = await adapter.metrics()
        assert (load.running, load.waiting) == (0, 0)

    run(body())


@pytest.mark.req("OC-HARNESS-8404")
def test_cancel_while_waiting_for_a_slot_leaves_the_queue() -> None:
    async def body() -> None:
        adapter = mock(slots=1)
        first = asyncio.ensure_future(collect(adapter.stream(req("[[sim hold_ms=100]] a", 1))))
        queued = adapter.stream(req("b", 3, rid="t2"))
        second = asyncio.ensure_future(collect(queued))
        await asyncio.sleep(0.02)
        assert (await adapter.metrics()).waiting == 1
        assert await adapter.cancel("t2") is True
        assert await second == [] and queued.end is not None
        assert (await adapter.metrics()).waiting == 0
        assert len(await first) == 1
        assert (await adapter.props()).slots_free == 1
        assert len(await collect(adapter.stream(req("c", 2, rid="t3")))) == 2

    run(body())


def test_duplicate_request_id_is_refused() -> None:
    async def body() -> None:
        adapter = mock(slots=2)
        one = adapter.stream(req("[[sim itl_ms=1000]] a", 5, rid="dup"))
        await one.__anext__()
        _, err = await first_error(adapter.stream(req("a", 5, rid="dup")))
        assert err.code == "INVALID_PARAMS"
        await one.aclose()

    run(body())


def test_props_health_and_preload() -> None:
    async def body() -> None:
        adapter = mock(slots=3, engine_version="mock-9")
        assert isinstance(adapter, EngineAdapter)
        health = await adapter.health()
        assert (health.live, health.ready) == (True, False)
        await adapter.preload()
        assert await adapter.health() == type(health)(live=True, ready=True, detail=None)
        props = await adapter.props()
        digest = "sha256:" + hashlib.sha256(b"hf:org/model@rev").hexdigest()
        assert (props.slots_total, props.slots_free, props.ctx_max) == (3, 3, 4096)
        assert (props.engine_version, props.model_digest) == ("mock-9", digest)
        assert (await mock(model_ref="other").props()).model_digest != digest
        assert "cancel" in props.capabilities
        assert adapter.estimate_tokens("") == 0 and adapter.estimate_tokens("abcde") == 2

    run(body())


def test_preload_fail_keeps_the_replica_unready() -> None:
    async def body() -> None:
        adapter = mock(preload_fail="out of VRAM")
        with pytest.raises(AdapterError) as info:
            await adapter.preload()
        assert (info.value.code, info.value.message) == ("POOL_UNAVAILABLE", "out of VRAM")
        health = await adapter.health()
        assert (health.live, health.ready, health.detail) == (True, False, "out of VRAM")
        _, err = await first_error(adapter.stream(req("q")))
        assert err.code == "POOL_UNAVAILABLE"

    run(body())


def test_close_resets_running_streams() -> None:
    async def body() -> None:
        adapter = mock()
        await adapter.preload()
        stream = adapter.stream(req("[[sim itl_ms=2000]] q", 5))
        await stream.__anext__()
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.01)
        await adapter.close()
        with pytest.raises(AdapterError) as info:
            await pending
        assert info.value.code == "WORKER_RESET"
        assert (await adapter.health()).live is False

    run(body())


def test_adapter_error_codes_are_closed() -> None:
    with pytest.raises(ValueError):
        AdapterError("NOPE", "x")  # type: ignore[arg-type]
    assert AdapterError("INVALID_PARAMS", "x").retriable is False
    assert AdapterError("DECODE_TIMEOUT", "x", retriable=True).retriable is True


def test_instant_streams_are_cheap() -> None:
    async def body() -> float:
        n = 20_000
        t0 = time.perf_counter()
        events = await collect(mock().stream(req("fast", n)))
        assert len(events) == n
        return n / (time.perf_counter() - t0)

    # About 600k tokens/s on a dev box; the floor only catches a pathological slowdown.
    assert run(body()) > 20_000
