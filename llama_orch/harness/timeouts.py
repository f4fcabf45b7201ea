"""Every wait of the harness, in one place, each with the bound it stands for.

A hanging or lying target must cost a bounded amount of time: every HTTP call, stream read,
poll and the whole run have a ceiling from this table. The defaults are what a conformant
target on a loaded 2-core CI machine meets; a slow target raises them in its target
description (`timeouts:` in target.yaml or `--timeout NAME=SECONDS`), never the checks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


class TimeoutsError(ValueError):
    """A timeout override names an unknown timeout or a value that is not a positive number."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds. The docstring of each field says what it bounds and why that value."""

    connect_s: float = 5.0
    """TCP connect to the target: loopback or LAN answer in milliseconds."""

    request_s: float = 10.0
    """One non-streaming request/response (admission, cancel, reads of the control plane).
    Admission is a queue operation, not inference (ORCH-2001): seconds are generous."""

    stream_gap_s: float = 10.0
    """Silence between two chunks of a task stream. The test directives never ask for a
    token gap above 7 s (the watchdog scenario), and targets may send keep-alives."""

    stream_s: float = 30.0
    """A whole task stream of a test directive (at most 40 tokens, 250 ms apart)."""

    settle_s: float = 10.0
    """A pool returning to Ready after a reload, slots freeing after cancels."""

    check_s: float = 180.0
    """One check, setup and cleanup included: the net under every other bound."""

    run_s: float = 1800.0
    """A whole `llorch check` run; checks not started by then end as `error`."""

    deadline_ms: int = 600_000
    """The `deadline_ms` the harness puts on tasks outside the deadline checks: far beyond any
    test task's length, so no target can read it as infeasible (never 0: only our spec reads
    0 as "no deadline")."""

    def scaled(self, factor: float) -> Timeouts:
        """Every bound times `factor` (a slow target), deadline_ms included."""
        if not factor > 0:
            raise TimeoutsError(f"timeout scale must be positive, not {factor!r}")
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = int(value * factor) if isinstance(value, int) else value * factor
        return replace(self, **values)

    def with_overrides(self, overrides: dict[str, Any]) -> Timeouts:
        """A copy with named fields replaced; unknown names or bad values raise TimeoutsError."""
        known = {f.name: f for f in fields(self)}
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in known:
                raise TimeoutsError(f"unknown timeout {name!r}; known: {', '.join(sorted(known))}")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise TimeoutsError(f"timeout {name} must be a number, not {value!r}") from None
            if not number > 0:
                raise TimeoutsError(f"timeout {name} must be positive, not {value!r}")
            values[name] = int(number) if name == "deadline_ms" else number
        return replace(self, **values)


DEFAULT = Timeouts()
