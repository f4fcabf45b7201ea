"""Priority classes for bench tasks: a weighted, seeded mix, and the `name=weight` list syntax.

A mix assigns each task number a class by hashing (seed, task number) onto the cumulative
weights. The hash, not a shared RNG, is what makes the assignment repeatable: it does not depend
on the order in which concurrent workers happen to take task numbers, and a warm-up or a shorter
run gives the same class to the same task number.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

PRIORITIES: tuple[str, ...] = ("interactive", "batch")
"""The OrchQueue v1 priority classes, highest first."""


def parse_weights(text: str, *, option: str = "--priority-mix") -> dict[str, float]:
    """`interactive=0.2,batch=0.8` -> {"interactive": 0.2, "batch": 0.8}, in that order.

    Raises ValueError naming `option` and the faulty item: an unknown class, a repeated class,
    a missing `=`, or a weight that is not a finite number above zero.
    """
    weights: dict[str, float] = {}
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(f"{option}: expected CLASS=WEIGHT[,CLASS=WEIGHT], got {text!r}")
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"{option}: {item!r} is not CLASS=WEIGHT")
        if name not in PRIORITIES:
            known = ", ".join(PRIORITIES)
            raise ValueError(f"{option}: unknown priority class {name!r} (known: {known})")
        if name in weights:
            raise ValueError(f"{option}: class {name!r} given twice")
        try:
            weight = float(raw)
        except ValueError:
            raise ValueError(f"{option}: weight of {name!r} is not a number: {raw!r}") from None
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"{option}: weight of {name!r} must be above 0, got {raw!r}")
        weights[name] = weight
    return weights


def _unit(seed: int, task_no: int) -> float:
    """A uniform number in [0, 1) that depends only on (seed, task_no)."""
    digest = hashlib.blake2b(f"{seed}:{task_no}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class PriorityMix:
    """Which class each task number gets: class i with probability weight_i / sum(weights)."""

    weights: tuple[tuple[str, float], ...]
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("a priority mix needs at least one class")
        for name, weight in self.weights:
            if name not in PRIORITIES:
                raise ValueError(f"unknown priority class {name!r}")
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"weight of {name!r} must be above 0, got {weight!r}")

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> PriorityMix:
        """A mix from `--priority-mix` text; see `parse_weights` for the errors."""
        return cls(tuple(parse_weights(text).items()), seed)

    @property
    def shares(self) -> dict[str, float]:
        """Each class's expected fraction of tasks."""
        total = sum(w for _, w in self.weights)
        return {name: w / total for name, w in self.weights}

    def priority_of(self, task_no: int) -> str:
        """The class of task `task_no` (warm-up tasks, numbered below 0, included)."""
        point = _unit(self.seed, task_no) * sum(w for _, w in self.weights)
        for name, weight in self.weights:
            if point < weight:
                return name
            point -= weight
        return self.weights[-1][0]  # float rounding at the very top of the range

    def describe(self) -> str:
        """The mix as `name=weight` text, for the report."""
        return ",".join(f"{name}={weight:g}" for name, weight in self.weights)
