"""Weighted fair queuing over flows (ORCH-3075, OC-CORE-1004) and the admission-share EWMA.

Algorithm: self-clocked fair queuing (SCFQ). Each backlogged flow sits once in a heap keyed by
the virtual finish tag of its head task; a task costs 1, so a flow of weight w advances its tag
by 1/w per dispatch. Virtual time is the tag of the task last served. The heap holds flows,
not tasks, so a dispatch costs O(log flows) whatever the queue depth.

Guarantee used by the tests: while flows i and j stay backlogged, their dispatch counts obey
|n_i/w_i - n_j/w_j| <= 1/w_i + 1/w_j, so every flow's share is within about one task of
N * w_i / sum(w) after N dispatches.

Flows emptied by a cancel keep their heap entry (lazy deletion) and are skipped when popped.
Ties between equal tags go to the higher class, then the tenant name, for reproducibility.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from itertools import count

from .queue import Flow, FlowKey
from .types import RANK


class Wfq:
    """SCFQ heap over the flows of one scheduling group."""

    __slots__ = ("_counter", "heap", "vtime")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, str, int, Flow]] = []
        self.vtime = 0.0
        self._counter = count()

    def _push(self, flow: Flow) -> None:
        tenant, priority = flow.key
        heapq.heappush(self.heap, (flow.tag, RANK[priority], tenant, next(self._counter), flow))
        flow.in_heap = True

    def next_tag(self, flow: Flow) -> float:
        """Finish tag the flow's head has (in the heap) or would get (on activation)."""
        if flow.in_heap:
            return flow.tag
        return max(self.vtime, flow.last_finish) + 1.0 / flow.weight

    def activate(self, flow: Flow) -> None:
        """A task joined `flow`: make sure the flow competes for dispatch."""
        if not flow.in_heap:
            flow.tag = self.next_tag(flow)
            self._push(flow)

    def pop(self, on_skip: Callable[[Flow], None] | None = None) -> Flow | None:
        """The flow whose head has the smallest finish tag; None when nothing is backlogged.

        Flows found empty (their tasks were cancelled) are dropped and passed to `on_skip`.
        """
        while self.heap:
            tag, _, _, _, flow = heapq.heappop(self.heap)
            flow.in_heap = False
            if not len(flow):
                if on_skip is not None:
                    on_skip(flow)
                continue
            self.vtime = tag
            flow.last_finish = tag
            return flow
        return None

    def peek(self, on_skip: Callable[[Flow], None] | None = None) -> Flow | None:
        """The flow `pop` would return, left in place (empty flows are dropped as in pop)."""
        while self.heap:
            flow = self.heap[0][4]
            if len(flow):
                return flow
            heapq.heappop(self.heap)
            flow.in_heap = False
            if on_skip is not None:
                on_skip(flow)
        return None

    def served(self, flow: Flow) -> None:
        """Re-queue `flow` after its head left, if it still has tasks."""
        if len(flow):
            flow.tag = flow.last_finish + 1.0 / flow.weight
            self._push(flow)

    def tasks_ahead(self, flow: Flow, rank_in_flow: int, peers: Iterable[Flow]) -> int:
        """Estimated dispatches before the task at `rank_in_flow` of `flow`.

        Replays the SCFQ tags: the task's tag is the flow's next tag plus rank/w; each peer
        flow g serves every task whose tag is below it, at most len(g).
        """
        mine = self.next_tag(flow) + rank_in_flow / flow.weight
        ahead = rank_in_flow
        for other in peers:
            size = len(other)
            if other is flow or not size:
                continue
            gap = mine - self.next_tag(other)
            if gap > 0:
                ahead += min(size, math.ceil(gap * other.weight - 1e-9))
        return ahead


class ShareTracker:
    """EWMA of each flow's share of dispatches (the `admission_share` gauge, ORCH-3076).

    At every dispatch each key's share s becomes (1 - alpha) * s + alpha * [key was served];
    decay is applied lazily so an update costs O(1). With alpha = 0.02 the memory is about
    50 dispatches.
    """

    def __init__(self, alpha: float = 0.02) -> None:
        self.alpha = alpha
        self.steps = 0
        self._values: dict[FlowKey, tuple[float, int]] = {}

    def observe(self, key: FlowKey) -> None:
        self.steps += 1
        value, at = self._values.get(key, (0.0, self.steps))
        decayed = value * (1.0 - self.alpha) ** (self.steps - at)
        self._values[key] = (decayed + self.alpha, self.steps)

    def shares(self) -> dict[FlowKey, float]:
        """Current shares; keys whose share has decayed below 1e-6 are forgotten."""
        out: dict[FlowKey, float] = {}
        for key, (value, at) in list(self._values.items()):
            share = value * (1.0 - self.alpha) ** (self.steps - at)
            if share < 1e-6:
                del self._values[key]
            else:
                out[key] = share
        return out
