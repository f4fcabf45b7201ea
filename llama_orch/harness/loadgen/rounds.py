"""Side-by-side runs: the orchestrator and its baseline, interleaved over several rounds.

On a shared machine two runs made minutes apart see different neighbours, so the bench never
compares them. Each round runs every side once (warm-up included), alternating which goes
first, and the report takes medians over rounds: of each side's own figures, and of the
per-round differences (added TTFT) and ratios (tasks/s) between a side and the baseline.

CPU cost comes from /proc (`procstat`): the CPU seconds the side's proxy processes (the
orchestrator, or a peer proxy) spent during the measured phase, divided by the tasks that
completed. The engine's processes are metered the same way when known, so the engine's own
cost per task shows next to the proxy's.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_orch.harness.loadgen.load import LoadPlan, LoadTarget, ProgressFn, RunResult, run_load
from llama_orch.harness.loadgen.procstat import CpuMeter
from llama_orch.harness.loadgen.report import aligned
from llama_orch.harness.loadgen.stats import RunSummary, summarize


@dataclass
class Side:
    """One thing measured: a target and the processes whose CPU it charges.

    `proxy_pids`: the processes between client and engine (empty for the engine alone);
    `engine_pids`: the engine's processes, when local and known.
    """

    name: str
    target: LoadTarget
    where: str
    proxy_pids: tuple[int, ...] = ()
    engine_pids: tuple[int, ...] = ()
    per_priority: bool = False


@dataclass(frozen=True)
class RoundFigures:
    """One side's figures in one round."""

    summary: RunSummary
    proxy_cpu_s: float | None
    engine_cpu_s: float | None
    proxy_rss_bytes: int | None

    def per_task_ms(self, cpu_s: float | None) -> float | None:
        ok = self.summary.tasks_ok
        return None if cpu_s is None or ok == 0 else cpu_s * 1000.0 / ok

    @property
    def proxy_cpu_ms_per_task(self) -> float | None:
        return self.per_task_ms(self.proxy_cpu_s)

    @property
    def engine_cpu_ms_per_task(self) -> float | None:
        return self.per_task_ms(self.engine_cpu_s)

    def value(self, key: str) -> float | None:
        """A figure by report key (see FIGURES)."""
        s = self.summary
        if key == "tasks_per_s":
            return s.tasks_per_s
        if key == "tokens_per_s":
            return s.tokens_per_s
        if key == "proxy_cpu_ms_per_task":
            return self.proxy_cpu_ms_per_task
        if key == "engine_cpu_ms_per_task":
            return self.engine_cpu_ms_per_task
        if key == "proxy_rss_mb":
            return None if self.proxy_rss_bytes is None else self.proxy_rss_bytes / 2**20
        metric, stat = key.split("_", 1)
        dist = s.latency_ms.get(metric)
        return getattr(dist, stat) if dist is not None else None


# Report keys, in table order: (key, column title).
FIGURES: tuple[tuple[str, str], ...] = (
    ("tasks_per_s", "tasks/s"),
    ("ttft_p50", "TTFT p50"),
    ("ttft_p99", "TTFT p99"),
    ("e2e_p50", "E2E p50"),
    ("proxy_cpu_ms_per_task", "CPU ms/task"),
    ("engine_cpu_ms_per_task", "engine CPU ms/task"),
)


def _median(values: Sequence[float | None]) -> float | None:
    data = [v for v in values if v is not None]
    return statistics.median(data) if data else None


@dataclass
class SideResult:
    """All rounds of one side."""

    side: Side
    rounds: list[RoundFigures] = field(default_factory=list)

    def median(self, key: str) -> float | None:
        return _median([r.value(key) for r in self.rounds])

    @property
    def tasks_ok(self) -> int:
        return sum(r.summary.tasks_ok for r in self.rounds)

    @property
    def tasks_total(self) -> int:
        return sum(r.summary.tasks_total for r in self.rounds)

    @property
    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rounds:
            for code, n in r.summary.errors.items():
                out[code] = out.get(code, 0) + n
        return out


def versus(side: SideResult, base: SideResult) -> dict[str, float | None]:
    """Medians over rounds of the side's added TTFT/E2E (ms) and tasks/s ratio to `base`."""

    def diffs(key: str) -> float | None:
        pairs = zip(side.rounds, base.rounds, strict=False)
        vals = [(a.value(key), b.value(key)) for a, b in pairs]
        return _median([a - b for a, b in vals if a is not None and b is not None])

    ratios = [
        a.summary.tasks_per_s / b.summary.tasks_per_s
        for a, b in zip(side.rounds, base.rounds, strict=False)
        if b.summary.tasks_per_s > 0
    ]
    return {
        "added_ttft_p50_ms": diffs("ttft_p50"),
        "added_ttft_p99_ms": diffs("ttft_p99"),
        "added_e2e_p50_ms": diffs("e2e_p50"),
        "tasks_per_s_ratio": _median(ratios),
    }


async def _measure(
    side: Side, plan: LoadPlan, progress: ProgressFn | None, interval: float
) -> RoundFigures:
    proxy = CpuMeter(side.proxy_pids) if side.proxy_pids else None
    engine = CpuMeter(side.engine_pids) if side.engine_pids else None
    if plan.warmup:  # warm-up outside the CPU window
        warm = LoadPlan(
            concurrency=plan.concurrency or 1, requests=plan.warmup, seed=plan.seed, warmup=0
        )
        await run_load(side.target, warm, name=side.name)
    measured = LoadPlan(
        concurrency=plan.concurrency,
        rate=plan.rate,
        requests=plan.requests,
        duration_s=plan.duration_s,
        arrival=plan.arrival,
        seed=plan.seed,
    )
    for meter in (proxy, engine):
        if meter is not None:
            meter.start()
    run: RunResult = await run_load(
        side.target, measured, name=side.name, progress=progress, progress_interval=interval
    )
    proxy_cpu = proxy.stop() if proxy is not None else None
    engine_cpu = engine.stop() if engine is not None else None
    return RoundFigures(
        summary=summarize(run, per_priority=side.per_priority),
        proxy_cpu_s=proxy_cpu[0] if proxy_cpu else None,
        engine_cpu_s=engine_cpu[0] if engine_cpu else None,
        proxy_rss_bytes=proxy_cpu[1] if proxy_cpu else None,
    )


async def run_rounds(
    sides: Sequence[Side],
    plan: LoadPlan,
    rounds: int,
    *,
    progress: ProgressFn | None = None,
    interval: float = 5.0,
    between: Callable[[int], Any] | None = None,
) -> list[SideResult]:
    """Run every side once per round; odd rounds run the sides in reverse order."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    results = [SideResult(s) for s in sides]
    for n in range(rounds):
        order = list(range(len(sides)))
        if n % 2:
            order.reverse()
        for i in order:
            results[i].rounds.append(await _measure(sides[i], plan, progress, interval))
        if between is not None:
            between(n)
    return results


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def format_rounds(results: Sequence[SideResult], baseline: int | None) -> str:
    """The side-by-side table (medians over rounds) and each side's figures against the
    baseline side."""
    count = len(results[0].rounds) if results else 0
    head = ["side", "ok/total", *(title for _, title in FIGURES)]
    rows = [head]
    for r in results:
        rows.append(
            [r.side.name, f"{r.tasks_ok}/{r.tasks_total}"]
            + [_fmt(r.median(key)) for key, _ in FIGURES]
        )
    lines = [f"medians of {count} interleaved round(s); latency in ms", *aligned(rows)]
    for r in results:
        if r.errors:
            codes = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items()))
            lines.append(f"  {r.side.name} errors: {codes}")
    if baseline is not None:
        base = results[baseline]
        for i, r in enumerate(results):
            if i == baseline:
                continue
            v = versus(r, base)
            lines.append(
                f"{r.side.name} vs {base.side.name}: added TTFT p50 "
                f"{_fmt(v['added_ttft_p50_ms'], True)} ms, p99 {_fmt(v['added_ttft_p99_ms'], True)}"
                f" ms, E2E p50 {_fmt(v['added_e2e_p50_ms'], True)} ms; tasks/s ratio "
                f"{_fmt(v['tasks_per_s_ratio'])}"
            )
    return "\n".join(lines) + "\n"


def rounds_json(results: Sequence[SideResult], baseline: int | None) -> dict[str, Any]:
    """The JSON form: per side, the medians and every round's run; the comparisons."""
    doc: dict[str, Any] = {"sides": []}
    for r in results:
        doc["sides"].append(
            {
                "name": r.side.name,
                "target": r.side.where,
                "proxy_pids": list(r.side.proxy_pids),
                "engine_pids": list(r.side.engine_pids),
                "medians": {key: _round(r.median(key)) for key, _ in FIGURES},
                "rounds": [
                    {
                        **f.summary.to_dict(),
                        "proxy_cpu_ms_per_task": _round(f.proxy_cpu_ms_per_task),
                        "engine_cpu_ms_per_task": _round(f.engine_cpu_ms_per_task),
                        "proxy_rss_bytes": f.proxy_rss_bytes,
                    }
                    for f in r.rounds
                ],
            }
        )
    if baseline is not None:
        base = results[baseline]
        doc["baseline"] = base.side.name
        doc["versus_baseline"] = {
            r.side.name: {k: _round(v) for k, v in versus(r, base).items()}
            for i, r in enumerate(results)
            if i != baseline
        }
    return doc


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
