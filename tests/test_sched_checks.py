"""The scheduling checks' own arithmetic: the seeded EDF-vs-FIFO load really separates the two
schedules, and the WFQ tolerance admits exactly the fair dispatch counts."""

from __future__ import annotations

import pytest

from llama_orch.harness.checks.test_deadlines import MARGIN_MS, list_schedule, seeded_load
from llama_orch.harness.checks.test_fairness import SHARE_BOUND, W_BATCH, W_INTERACTIVE, WINDOW


@pytest.mark.parametrize("slots", [1, 2, 4, 8])
def test_the_seeded_load_separates_edf_from_fifo(slots: int) -> None:
    load = seeded_load(slots)
    n = len(load.holds)
    edf = list_schedule(sorted(range(n), key=lambda i: (load.budgets[i], i)), load.holds, slots)
    fifo = list_schedule(list(range(n)), load.holds, slots)
    assert all(edf[i] <= load.budgets[i] - MARGIN_MS // 2 for i in range(n))
    late = [i for i in range(n) if fifo[i] > load.budgets[i] + MARGIN_MS // 2]
    assert len(late) == load.fifo_misses >= 2
    assert seeded_load(slots) == load  # the same seed, the same load


def test_the_share_tolerance_accepts_fair_counts_and_rejects_strict_priority() -> None:
    def ok(batch: int) -> bool:
        inter = WINDOW - batch
        return abs(inter / W_INTERACTIVE - batch / W_BATCH) <= SHARE_BOUND + 1e-9

    assert [b for b in range(WINDOW + 1) if ok(b)] == [2, 3, 4]
    assert not ok(0)  # strict interactive-first precedence
    assert not ok(WINDOW // 2)  # round robin between the classes
