"""KV residency: which sessions' KV caches a replica still holds, bounded LRU (ORCH-3022).

A replica keeps at most one session's KV per slot, the way llama-server keeps one prompt cache
per slot: when a session's KV lands on a replica whose resident sessions already fill its
slots, the least recently used session there loses its KV. Its next turn is placed cold
(`kv_warmth` false) and SessionInfo reports `kv_bytes` 0. Every completed turn of a session is
a use; a session ending or expiring gives its place up.
"""

from __future__ import annotations

from collections import OrderedDict


class KvResidency:
    """Per replica: resident session ids, least recently used first."""

    __slots__ = ("_by_replica", "_where")

    def __init__(self) -> None:
        self._by_replica: dict[str, OrderedDict[str, None]] = {}
        self._where: dict[str, str] = {}

    def place(self, replica_id: str, session_id: str, capacity: int) -> list[str]:
        """`session_id`'s KV is now on `replica_id` (a use); returns the sessions evicted."""
        self.drop(session_id)
        lane = self._by_replica.setdefault(replica_id, OrderedDict())
        lane[session_id] = None
        self._where[session_id] = replica_id
        evicted: list[str] = []
        while len(lane) > max(1, capacity):
            old, _ = lane.popitem(last=False)
            del self._where[old]
            evicted.append(old)
        return evicted

    def drop(self, session_id: str) -> None:
        """The session's KV is gone (ended, expired, or moved)."""
        replica_id = self._where.pop(session_id, None)
        if replica_id is not None:
            lane = self._by_replica[replica_id]
            del lane[session_id]
            if not lane:
                del self._by_replica[replica_id]

    def resident(self, replica_id: str) -> list[str]:
        """Sessions holding KV on `replica_id`, least recently used first."""
        return list(self._by_replica.get(replica_id, ()))
