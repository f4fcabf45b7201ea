"""The load runner: closed-loop (fixed concurrency) or open-loop (arrival rate) task starts.

A target is anything with `async run_task(task_no) -> TaskResult`; every target measures with
`TaskTimer`, so the HTTP target and a bare engine stream are timed from the same points: the
clock starts just before the request is sent, TTFT ends at the first token, the inter-token
latencies (ITL) are the gaps between consecutive tokens and end-to-end ends at the terminal
event.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

OK = "ok"


@dataclass
class TaskResult:
    """Outcome and timings of one task; `outcome` is "ok" or an error code."""

    task_no: int
    outcome: str = OK
    tokens: int = 0
    ttft_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    e2e_ms: float | None = None
    admit_ms: float | None = None
    detail: str | None = None
    priority: str | None = None
    queue_wait_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == OK


class TaskTimer:
    """Collects the timestamps of one task and turns them into a TaskResult."""

    def __init__(self, task_no: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._t0 = clock()
        self._last: float | None = None
        self.result = TaskResult(task_no)

    def _ms_since(self, t: float) -> float:
        return (self._clock() - t) * 1000.0

    def admitted(self) -> None:
        """The admission request was answered (HTTP targets only)."""
        self.result.admit_ms = self._ms_since(self._t0)

    def dispatched(self) -> None:
        """The target said the task left its queue for an engine slot (first call counts)."""
        if self.result.queue_wait_ms is None:
            self.result.queue_wait_ms = self._ms_since(self._t0)

    def token(self) -> None:
        now = self._clock()
        if self._last is None:
            self.result.ttft_ms = (now - self._t0) * 1000.0
        else:
            self.result.itl_ms.append((now - self._last) * 1000.0)
        self._last = now
        self.result.tokens += 1

    def finish(self, outcome: str = OK, detail: str | None = None) -> TaskResult:
        """Close the task; end-to-end is recorded for every outcome, reported only for ok."""
        self.result.e2e_ms = self._ms_since(self._t0)
        self.result.outcome = outcome
        self.result.detail = detail
        return self.result


@runtime_checkable
class LoadTarget(Protocol):
    """What the runner drives: one call runs one task to its end and never raises."""

    async def run_task(self, task_no: int) -> TaskResult: ...


StreamFn = Callable[[str, int, int | None], AsyncIterator[str]]


def error_code_of(exc: BaseException) -> str:
    """An error code for an exception: its `code` attribute (str or enum) or its class name."""
    code = getattr(exc, "code", None)
    code = getattr(code, "value", code)
    return code if isinstance(code, str) and code else f"EXC_{type(exc).__name__}"


class DirectStreamTarget:
    """A bare engine stream measured like the orchestrator: no admission, no network hop.

    `stream(prompt, max_tokens, seed)` yields token texts; an exception is an error outcome
    whose code comes from `error_code_of`.
    """

    def __init__(
        self, stream: StreamFn, *, prompt: str, max_tokens: int, seed: int | None = None
    ) -> None:
        self._stream = stream
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.seed = seed

    async def run_task(self, task_no: int) -> TaskResult:
        timer = TaskTimer(task_no)
        try:
            async for _text in self._stream(self.prompt, self.max_tokens, self.seed):
                timer.token()
        except Exception as exc:
            return timer.finish(error_code_of(exc), str(exc) or None)
        return timer.finish()


@dataclass(frozen=True)
class LoadPlan:
    """How many tasks to start and when.

    Exactly one of `concurrency` (closed loop: that many tasks in flight) and `rate` (open
    loop: task starts per second, whatever is in flight). The run stops starting tasks after
    `requests` tasks or `duration_s` seconds, whichever comes first, and waits for the tasks
    in flight. `warmup` tasks run first, closed-loop with the same concurrency (1 in rate
    mode), and are not counted.
    """

    concurrency: int | None = None
    rate: float | None = None
    requests: int | None = None
    duration_s: float | None = None
    warmup: int = 0
    arrival: Literal["poisson", "fixed"] = "poisson"
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("give exactly one of concurrency and rate")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be positive")
        if self.requests is None and self.duration_s is None:
            raise ValueError("give requests, duration_s or both")
        if self.requests is not None and self.requests < 1:
            raise ValueError("requests must be at least 1")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError("duration_s must be positive")
        if self.warmup < 0:
            raise ValueError("warmup must not be negative")
        if self.arrival not in ("poisson", "fixed"):
            raise ValueError("arrival must be poisson or fixed")

    @property
    def mode(self) -> str:
        return "concurrency" if self.concurrency is not None else "rate"


@dataclass(frozen=True)
class Progress:
    """A snapshot for the progress line."""

    name: str
    phase: Literal["warmup", "run"]
    started: int
    finished: int
    failed: int
    in_flight: int
    tokens: int
    elapsed_s: float
    planned: int | None
    duration_s: float | None
    done: bool = False


ProgressFn = Callable[[Progress], None]


@dataclass
class RunResult:
    """The measured tasks of one run (warm-up excluded), sorted by task number."""

    name: str
    plan: LoadPlan
    results: list[TaskResult]
    wall_s: float
    max_in_flight: int


class _Run:
    """Mutable state of one phase: counters, in-flight tracking and the stop condition."""

    def __init__(self, target: LoadTarget, plan: LoadPlan, phase: str, name: str) -> None:
        self.target = target
        self.plan = plan
        self.phase = phase
        self.name = name
        self.results: list[TaskResult] = []
        self.started = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.t0 = time.perf_counter()
        if phase == "warmup":
            self.limit: int | None = plan.warmup
            self.deadline: float | None = None
        else:
            self.limit = plan.requests
            self.deadline = None if plan.duration_s is None else self.t0 + plan.duration_s

    def next_task_no(self) -> int | None:
        """The next task number, or None once the plan says stop."""
        if self.limit is not None and self.started >= self.limit:
            return None
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return None
        self.started += 1
        # Warm-up tasks get negative numbers so measured tasks are numbered 0..n-1.
        return -self.started if self.phase == "warmup" else self.started - 1

    async def one(self, task_no: int) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            result = await self.target.run_task(task_no)
        except Exception as exc:  # a target is meant not to raise; count it, keep going
            result = TaskResult(task_no, outcome=error_code_of(exc), detail=str(exc) or None)
        finally:
            self.in_flight -= 1
        self.results.append(result)

    def snapshot(self, done: bool = False) -> Progress:
        return Progress(
            name=self.name,
            phase=self.phase,  # type: ignore[arg-type]
            started=self.started,
            finished=len(self.results),
            failed=sum(1 for r in self.results if not r.ok),
            in_flight=self.in_flight,
            tokens=sum(r.tokens for r in self.results),
            elapsed_s=time.perf_counter() - self.t0,
            planned=self.limit,
            duration_s=self.plan.duration_s if self.phase == "run" else None,
            done=done,
        )


async def _closed_loop(run: _Run, workers: int) -> None:
    async def worker() -> None:
        while (task_no := run.next_task_no()) is not None:
            await run.one(task_no)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def _open_loop(run: _Run, rate: float, arrival: str, seed: int) -> None:
    rng = random.Random(seed)
    pending: set[asyncio.Task[None]] = set()
    due = run.t0  # absolute schedule, so a late wake-up does not shift later arrivals
    while True:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task_no = run.next_task_no()
        if task_no is None:
            break
        task = asyncio.create_task(run.one(task_no))
        pending.add(task)
        task.add_done_callback(pending.discard)
        if run.limit is not None and run.started >= run.limit:
            break
        due += rng.expovariate(rate) if arrival == "poisson" else 1.0 / rate
        if run.deadline is not None and due >= run.deadline:
            break
    if pending:
        await asyncio.gather(*pending)


async def _ticker(run: _Run, progress: ProgressFn, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        progress(run.snapshot())


async def _phase(
    run: _Run, progress: ProgressFn | None, interval: float, body: Awaitable[None]
) -> None:
    ticker = asyncio.create_task(_ticker(run, progress, interval)) if progress else None
    try:
        await body
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    if progress is not None:
        progress(run.snapshot(done=True))


async def run_load(
    target: LoadTarget,
    plan: LoadPlan,
    *,
    name: str = "target",
    progress: ProgressFn | None = None,
    progress_interval: float = 1.0,
) -> RunResult:
    """Run the warm-up, then the measured phase, against one target."""
    if plan.warmup:
        warm = _Run(target, plan, "warmup", name)
        await _phase(warm, progress, progress_interval, _closed_loop(warm, plan.concurrency or 1))
    run = _Run(target, plan, "run", name)
    if plan.rate is not None:
        body = _open_loop(run, plan.rate, plan.arrival, plan.seed)
    else:
        body = _closed_loop(run, plan.concurrency or 1)
    await _phase(run, progress, progress_interval, body)
    wall_s = time.perf_counter() - run.t0
    results = sorted(run.results, key=lambda r: r.task_no)
    return RunResult(name, plan, results, wall_s, run.max_in_flight)


async def run_schedule(
    target: LoadTarget,
    count: int,
    schedule: Callable[[int], Awaitable[None]],
    *,
    name: str = "target",
    progress: ProgressFn | None = None,
    progress_interval: float = 1.0,
) -> RunResult:
    """Run tasks 0..count-1, each as soon as `await schedule(task_no)` returns.

    For scenarios that neither loop shape fits: `schedule` may sleep, wait on an event (e.g.
    "the backlog is admitted") or both. All tasks are pending at once, so nothing but the
    schedule and the target limits how many are in flight. No warm-up.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    plan = LoadPlan(concurrency=count, requests=count)  # nominal: every task may be in flight
    run = _Run(target, plan, "run", name)

    async def one(task_no: int) -> None:
        await schedule(task_no)
        run.started += 1
        await run.one(task_no)

    await _phase(run, progress, progress_interval, asyncio.gather(*(one(n) for n in range(count))))
    wall_s = time.perf_counter() - run.t0
    results = sorted(run.results, key=lambda r: r.task_no)
    return RunResult(name, plan, results, wall_s, run.max_in_flight)
