"""Watchdog rules (OC-CORE-1022, ORCH-3016): which tasks have run or waited too long.

- running: more than `wall_ms` since dispatch -> "wall"; else more than `idle_ms` since the
  dispatch or the last token -> "idle" (wall wins when both hold);
- queued: more than `wall_ms` since admission -> "wall".
"Exceeds" is strict: a task at exactly the limit is still within it.
"""

from __future__ import annotations

from .queue import TaskEntry


def running_overdue(entry: TaskEntry, now_ms: int, wall_ms: int, idle_ms: int) -> str | None:
    """ "wall", "idle" or None for a dispatched task."""
    if now_ms - entry.dispatch_ms > wall_ms:
        return "wall"
    if now_ms - entry.last_progress_ms > idle_ms:
        return "idle"
    return None


def queued_overdue(entry: TaskEntry, now_ms: int, wall_ms: int) -> bool:
    """True when a task has waited in the queue past the wall timeout."""
    return now_ms - entry.admit_ms > wall_ms
