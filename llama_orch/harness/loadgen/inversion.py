"""The priority-inversion scenario (ORCH-3051): interactive tasks arriving into a batch backlog.

Shape: `backlog` long batch tasks are sent at once, enough to fill every slot of the pool
several times over; once all of them have been answered (admitted or refused), `probes` short
interactive tasks arrive at a fixed `probe_rate`. A scheduler that ranks `interactive` above
`batch` (strict precedence, or WFQ with a larger interactive weight) starts each probe at the
next free slot; one that serves in arrival order, or batch first, leaves the probes behind the
backlog.

Verdict, from client-side TTFT (POST sent to first token), with D the batch tasks' median
decode time (E2E minus TTFT) and share_b = w_batch / (w_interactive + w_batch) from the target's
class weights:

- INCONCLUSIVE when either class has no successful task, or the batch p95 TTFT is below D
  (less than one batch task's worth of queueing: the backlog never formed, so the run shows
  nothing either way);
- INVERSION when any interactive task failed while batch tasks were served, when interactive
  p95 TTFT exceeds `ratio` x batch p95 TTFT ("well below"), or when it exceeds the WFQ bound
  D + share_b x batch p95 TTFT: without preemption a probe may wait for a running batch task
  to end (up to D), and beyond that WFQ lets at most the batch class's weight share of the
  backlog go ahead of it. Strict precedence (share 0) meets any such bound;
- otherwise no inversion.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import aiohttp

from llama_orch.harness.loadgen.client import OrchQueueTarget, TaskTemplate
from llama_orch.harness.loadgen.load import ProgressFn, RunResult, run_schedule
from llama_orch.harness.loadgen.stats import ClassSummary, by_priority

NAME = "priority-inversion"
DEFAULT_BATCH_PROMPT = "[[sim tokens=16 itl_ms=40]] batch backlog"
DEFAULT_CLASS_WEIGHTS: dict[str, float] = {"interactive": 8.0, "batch": 1.0}
BACKLOG_PER_SLOT = 4
Status = Literal["none", "inversion", "inconclusive"]


@dataclass(frozen=True)
class Scenario:
    """Sizes and shapes of one priority-inversion run."""

    backlog: int
    probes: int = 20
    probe_rate: float = 20.0
    batch_prompt: str = DEFAULT_BATCH_PROMPT
    ratio: float = 0.5
    class_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CLASS_WEIGHTS))

    def __post_init__(self) -> None:
        if self.backlog < 1 or self.probes < 1:
            raise ValueError("the scenario needs at least one backlog task and one probe")
        if not self.probe_rate > 0:
            raise ValueError("probe_rate must be positive")
        if not 0 < self.ratio <= 1:
            raise ValueError("ratio must lie in (0, 1]")
        if set(self.class_weights) != {"interactive", "batch"}:
            raise ValueError("class_weights must give `interactive` and `batch`")

    @property
    def batch_share(self) -> float:
        """The batch class's share of dispatches while both classes wait (WFQ)."""
        w = self.class_weights
        return w["batch"] / (w["interactive"] + w["batch"])

    @property
    def tasks(self) -> int:
        return self.backlog + self.probes

    def priority_of(self, task_no: int) -> str:
        """Tasks 0..backlog-1 are the batch backlog; the rest are interactive probes."""
        return "batch" if task_no < self.backlog else "interactive"

    def settings(self) -> dict[str, Any]:
        return {
            "name": NAME,
            "backlog": self.backlog,
            "probes": self.probes,
            "probe_rate_per_s": self.probe_rate,
            "batch_prompt": self.batch_prompt,
            "ratio": self.ratio,
            "class_weights": dict(self.class_weights),
        }


@dataclass(frozen=True)
class Verdict:
    """The scenario's outcome, its one-line report and the figures behind it."""

    status: Status
    line: str
    figures: dict[str, float | None]

    @property
    def exit_code(self) -> int:
        """0 no inversion, 1 inversion (a failed check), 2 no result (fix the scenario)."""
        return {"none": 0, "inversion": 1, "inconclusive": 2}[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.status, "line": self.line, "figures": self.figures}


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


def _p95(c: ClassSummary | None) -> float | None:
    dist = c.latency_ms.get("ttft") if c else None
    return dist.p95 if dist else None


def batch_decode_ms(run: RunResult) -> float | None:
    """D: median time from first token to end of the successful batch tasks."""
    spans = [
        r.e2e_ms - r.ttft_ms
        for r in run.results
        if r.ok and r.priority == "batch" and r.e2e_ms is not None and r.ttft_ms is not None
    ]
    return statistics.median(spans) if spans else None


def judge(scenario: Scenario, run: RunResult) -> Verdict:
    """Apply the module's verdict rules to a finished run."""
    classes = by_priority(run.results)
    inter, batch = classes.get("interactive"), classes.get("batch")
    ip95, bp95, decode = _p95(inter), _p95(batch), batch_decode_ms(run)
    figures: dict[str, float | None] = {
        "interactive_ttft_p95_ms": ip95,
        "batch_ttft_p95_ms": bp95,
        "batch_decode_ms": decode,
        "ratio_limit_ms": None,
        "wfq_bound_ms": None,
    }

    def verdict(status: Status, text: str) -> Verdict:
        rounded = {k: None if v is None else round(v, 3) for k, v in figures.items()}
        return Verdict(status, text, rounded)

    if batch is None or not batch.tasks_ok or decode is None or bp95 is None:
        return verdict("inconclusive", "priority inversion: INCONCLUSIVE (no batch task finished)")
    if inter is not None and inter.tasks_ok < inter.tasks_total:
        codes = ", ".join(f"{k} {v}" for k, v in sorted(inter.errors.items()))
        return verdict(
            "inversion",
            f"INVERSION: {inter.tasks_total - inter.tasks_ok} of {inter.tasks_total} interactive "
            f"tasks failed ({codes}) while {batch.tasks_ok} batch tasks were served",
        )
    if inter is None or ip95 is None:
        return verdict(
            "inconclusive", "priority inversion: INCONCLUSIVE (no interactive task finished)"
        )
    if bp95 < decode:
        return verdict(
            "inconclusive",
            f"priority inversion: INCONCLUSIVE (no backlog formed: batch p95 TTFT {_ms(bp95)} "
            f"is under one batch decode, {_ms(decode)}; raise --backlog)",
        )
    ratio_limit = scenario.ratio * bp95
    bound = decode + scenario.batch_share * bp95
    figures["ratio_limit_ms"], figures["wfq_bound_ms"] = ratio_limit, bound
    compared = f"interactive p95 TTFT {_ms(ip95)} vs batch {_ms(bp95)}"
    if ip95 > ratio_limit or ip95 > bound:
        broken = []
        if ip95 > ratio_limit:
            broken.append(f"limit {scenario.ratio:g} x batch = {_ms(ratio_limit)}")
        if ip95 > bound:
            broken.append(f"WFQ bound {_ms(bound)}")
        return verdict("inversion", f"INVERSION: {compared}; over {' and '.join(broken)}")
    return verdict(
        "none",
        f"priority inversion: none ({compared}; limits {_ms(ratio_limit)} and WFQ bound "
        f"{_ms(bound)})",
    )


async def replica_slots(client: aiohttp.ClientSession, engine: str, model_ref: str) -> int | None:
    """Total `slots_total` of the target's replica sets for `engine` (and `model_ref` where a
    set names one under `slo.model_ref`); None when the target does not say."""
    try:
        async with client.get("v1/replicasets") as resp:
            if resp.status != 200:
                return None
            sets = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None
    if not isinstance(sets, list):
        return None
    total = 0
    for rs in sets:
        if not isinstance(rs, dict) or rs.get("engine") != engine:
            continue
        slo = rs.get("slo") if isinstance(rs.get("slo"), dict) else {}
        if slo.get("model_ref", model_ref) != model_ref:
            continue
        slots = rs.get("slots_total")
        if isinstance(slots, int) and slots > 0:
            total += slots
    return total or None


def default_backlog(slots: int) -> int:
    """Enough batch tasks to fill every slot BACKLOG_PER_SLOT times."""
    return max(BACKLOG_PER_SLOT, BACKLOG_PER_SLOT * slots)


async def run_scenario(
    client: aiohttp.ClientSession,
    template: TaskTemplate,
    scenario: Scenario,
    *,
    progress: ProgressFn | None = None,
    progress_interval: float = 1.0,
) -> RunResult:
    """Send the backlog, then the probes once the backlog is answered; the probes use
    `template` (its prompt and max_tokens), the backlog `scenario.batch_prompt`."""
    shapes = {
        "batch": replace(template, priority="batch", prompt=scenario.batch_prompt),
        "interactive": replace(template, priority="interactive"),
    }
    answered = 0
    backlog_in = asyncio.Event()

    def on_admitted(task_no: int, _status: int | None) -> None:
        nonlocal answered
        if task_no < scenario.backlog:
            answered += 1
            if answered >= scenario.backlog:
                backlog_in.set()

    target = OrchQueueTarget(
        client,
        template,
        shape=lambda n: shapes[scenario.priority_of(n)],
        on_admitted=on_admitted,
    )
    loop = asyncio.get_running_loop()
    probes_from: list[float] = []

    async def schedule(task_no: int) -> None:
        if task_no < scenario.backlog:
            return
        await backlog_in.wait()
        if not probes_from:
            probes_from.append(loop.time())
        delay = probes_from[0] + (task_no - scenario.backlog) / scenario.probe_rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    return await run_schedule(
        target,
        scenario.tasks,
        schedule,
        name="orchestrator",
        progress=progress,
        progress_interval=progress_interval,
    )
