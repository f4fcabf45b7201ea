"""The start-up self-test every replica passes before its pool turns Ready (ORCH-3049).

Four items, in order, each under its own short time limit:

- preload: the adapter's own `preload()` (the engine is up and has decoded one token);
- decode: a short greedy stream through the ordinary `stream()` path yields at least one token
  and ends normally;
- cancel: a longer stream closed after its first token (`aclose()`, the adapter's cancel) gives
  its slot back: every slot is free again within `cancel_free_s`;
- telemetry: the engine's load signals can be scraped (`metrics()`) with sane values, and the
  replica reports the identity (engine version, model digest) its metrics are labelled with.

An item after a failed one is skipped. Decode and cancel are also skipped, with the reason,
when the engine serves other traffic at the same time (`shared`, e.g. the old adapters of an
endpoint pool during a reload, or slots still busy after `settle_s`): a queued decode would
time out and a slot count cannot tell the self-test's stream from someone else's. The pool
manager treats a failed self-test as a failed preload (same backoff and restart rules) and logs
one `self_test` event per replica.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llama_orch.reference_impl.adapters.base import CompletionRequest, SamplerParams
from llama_orch.reference_impl.pool.preflight import PoolFault

log = logging.getLogger("llama_orch.reference_impl.pool")

Item = Literal["preload", "decode", "cancel", "telemetry"]
ITEMS: tuple[Item, ...] = ("preload", "decode", "cancel", "telemetry")
Status = Literal["pass", "fail", "skip"]

PROMPT = "Hello"
GREEDY = SamplerParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0)


@dataclass(frozen=True)
class SelfTestLimits:
    """Sizes and time limits of the self-test: a few tokens, ~0.2 s on an idle CPU llama-server."""

    decode_tokens: int = 2
    cancel_tokens: int = 32
    step_s: float = 10.0  # decode, first cancel token, metrics scrape
    cancel_free_s: float = 5.0  # how long a closed stream may hold its slot (one token)
    settle_s: float = 1.0  # wait for idle slots before decode/cancel; still busy: skip them
    poll_s: float = 0.02


@dataclass(frozen=True)
class ItemResult:
    """One item's outcome; `reason` says why it failed (or was skipped)."""

    item: Item
    status: Status
    duration_ms: int = 0
    reason: str | None = None
    cause: BaseException | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SelfTestResult:
    """All items of one replica's self-test, in ITEMS order."""

    replica_id: str
    items: tuple[ItemResult, ...]

    @property
    def passed(self) -> bool:
        """No item failed (skipped items say why in their reason)."""
        return all(r.status != "fail" for r in self.items)

    @property
    def failure(self) -> ItemResult | None:
        return next((r for r in self.items if r.status == "fail"), None)

    def summary(self) -> dict[str, Status]:
        return {r.item: r.status for r in self.items}

    def event(self) -> dict[str, Any]:
        """The `items` field of the `self_test` log event."""
        return {
            r.item: {"status": r.status, "ms": r.duration_ms, "reason": r.reason}
            for r in self.items
        }


class SelfTestFailed(Exception):
    """An item failed; the message names the item and is what `last_error` shows."""


class _Skipped(Exception):
    """An item cannot be judged honestly right now (the engine is busy); the message says why."""


def _request(adapter: Any, kind: str, max_tokens: int) -> CompletionRequest:
    rid = f"selftest-{kind}-{adapter.replica_id}-{uuid.uuid4().hex[:8]}"
    return CompletionRequest(rid, PROMPT, max_tokens, 0, GREEDY, "selftest")


async def _decode(adapter: Any, limits: SelfTestLimits) -> None:
    await _idle(adapter, limits)
    async with asyncio.timeout(limits.step_s):
        async with adapter.stream(_request(adapter, "decode", limits.decode_tokens)) as stream:
            got = [event async for event in stream]
    if not got:
        raise SelfTestFailed("decode ended without a token")
    if stream.end is None:
        raise SelfTestFailed(f"decode of {len(got)} tokens did not end normally")


async def _free_slots(adapter: Any, limits: SelfTestLimits, wait_s: float) -> tuple[int, int]:
    """Poll `props()` until every slot is free or `wait_s` has passed; (free, total) last seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        props = await adapter.props()
        if props.slots_free >= props.slots_total or loop.time() >= deadline:
            return props.slots_free, props.slots_total
        await asyncio.sleep(limits.poll_s)


async def _idle(adapter: Any, limits: SelfTestLimits) -> None:
    """Skip the item unless every slot is free: other work would queue ahead of (decode) or
    be counted as (cancel) the self-test's own stream."""
    free, total = await _free_slots(adapter, limits, limits.settle_s)
    if free < total:
        raise _Skipped(f"skipped: the engine is busy with other work ({free} of {total} free)")


async def _cancel(adapter: Any, limits: SelfTestLimits) -> None:
    await _idle(adapter, limits)
    stream = adapter.stream(_request(adapter, "cancel", limits.cancel_tokens))
    try:
        async with asyncio.timeout(limits.step_s):
            async for _ in stream:
                break
            else:
                raise SelfTestFailed("cancel stream ended without a token")
    finally:
        await stream.aclose()
    free, total = await _free_slots(adapter, limits, limits.cancel_free_s)
    if free < total:
        raise SelfTestFailed(
            f"cancel did not free the slot within {limits.cancel_free_s:g} s "
            f"(slots free {free} of {total})"
        )


async def _telemetry(adapter: Any, limits: SelfTestLimits) -> None:
    async with asyncio.timeout(limits.step_s):
        signals = await adapter.metrics()
        props = await adapter.props()
    for name in ("waiting", "running"):
        value = getattr(signals, name)
        if not isinstance(value, int) or value < 0:
            raise SelfTestFailed(f"metrics scrape gave {name}={value!r}")
    kv = signals.kv_pressure
    if kv is not None and not (math.isfinite(kv) and 0.0 <= kv <= 1.0):
        raise SelfTestFailed(f"metrics scrape gave kv_pressure={kv!r}")
    for name in ("engine_version", "model_digest"):
        if not getattr(props, name):
            raise SelfTestFailed(f"replica reports no {name} to label its metrics with")


def _reason(exc: BaseException, item: Item, limits: SelfTestLimits) -> str:
    if isinstance(exc, TimeoutError):
        return f"{item} did not finish within {limits.step_s:g} s"
    if isinstance(exc, SelfTestFailed):
        return str(exc)
    return f"{item} failed: {exc or repr(exc)}"


SHARED_REASON = "skipped: the engine also serves live traffic (endpoint pool reload)"


async def run_self_test(
    adapter: Any, limits: SelfTestLimits | None = None, *, shared: bool = False
) -> SelfTestResult:
    """Run the four items on one replica; never raises for a failed item (see `.failure`).

    `shared`: the engine serves live traffic meanwhile, so decode and cancel are skipped."""
    limits = limits or SelfTestLimits()
    steps: dict[Item, Callable[[], Awaitable[None]]] = {
        "preload": adapter.preload,
        "decode": lambda: _decode(adapter, limits),
        "cancel": lambda: _cancel(adapter, limits),
        "telemetry": lambda: _telemetry(adapter, limits),
    }
    results: list[ItemResult] = []
    failed: Item | None = None
    busy = SHARED_REASON if shared else None
    for item in ITEMS:
        if failed is not None:
            results.append(ItemResult(item, "skip", reason=f"{failed} failed"))
            continue
        if busy is not None and item in ("decode", "cancel"):
            results.append(ItemResult(item, "skip", reason=busy))
            continue
        started = time.monotonic()
        try:
            await steps[item]()
        except _Skipped as skip:
            busy = str(skip)
            ms = int((time.monotonic() - started) * 1000)
            results.append(ItemResult(item, "skip", ms, busy))
            continue
        except Exception as exc:
            ms = int((time.monotonic() - started) * 1000)
            results.append(ItemResult(item, "fail", ms, _reason(exc, item, limits), exc))
            failed = item
            continue
        results.append(ItemResult(item, "pass", int((time.monotonic() - started) * 1000)))
    return SelfTestResult(adapter.replica_id, tuple(results))


async def self_test_replicas(
    pool_id: str,
    engine: str,
    adapters: Sequence[Any],
    limits: SelfTestLimits | None = None,
    *,
    shared: bool = False,
) -> tuple[SelfTestResult, ...]:
    """Self-test every replica at once and log one `self_test` event each."""
    results = await asyncio.gather(*(run_self_test(a, limits, shared=shared) for a in adapters))
    for result in results:
        failure = result.failure
        log.log(
            logging.INFO if failure is None else logging.WARNING,
            "start-up self-test " + ("passed" if failure is None else f"failed: {failure.item}"),
            extra={
                "event": "self_test",
                "outcome": "pass" if failure is None else "fail",
                "pool_id": pool_id,
                "engine": engine,
                "replica_id": result.replica_id,
                "items": result.event(),
            },
        )
    return tuple(results)


def raise_on_failure(results: Sequence[SelfTestResult]) -> None:
    """A failed item is a PoolFault naming the replica and the item (what `last_error` shows);
    a failed preload keeps its cause, and stays permanent when the cause was."""
    for result in results:
        failure = result.failure
        if failure is None:
            continue
        where = f"start-up self-test on {result.replica_id}"
        cause = failure.cause
        if failure.item == "preload" and cause is not None:
            # a PoolFault or an AdapterError that no retry can fix (the deployment is wrong)
            permanent = bool(getattr(cause, "permanent", False))
            text = str(cause) or repr(cause)
            raise PoolFault(f"{where}: preload: {text}", permanent=permanent) from cause
        raise PoolFault(f"{where}: {failure.reason}")


def pool_summary(results: Sequence[SelfTestResult]) -> dict[str, Status]:
    """Per item over all replicas: fail if any failed, else skip if any skipped, else pass."""
    out: dict[str, Status] = {}
    for item in ITEMS:
        seen = {r.status for res in results for r in res.items if r.item == item}
        out[item] = "fail" if "fail" in seen else "skip" if "skip" in seen or not seen else "pass"
    return out
