"""The basic rules every check stands on, named by the requirements whose text states them.

A check that finds one of these broken on its way raises `outcomes.Violation` with the group
below: the check fails when it proves one of those requirements, and is otherwise blocked by
them (its own requirement `unverified`), so one fault fails the requirements whose text it
breaks and no others (OC-HARNESS-8111).

`answering(method, path)` names, for each OrchQueue v1 operation, the requirements whose text
says what the operation answers: a target that does not answer an operation, or answers it
with the wrong shape, breaks those, and only those.
"""

from __future__ import annotations

from llama_orch.harness.openapi import find_operation

# A request with the target's own valid key is accepted (never 401).
AUTH = ("ORCH-3035", "OC-CTRL-2040")
# A stream uses only the five event names, each an `event:` line and a `data: <json>` line.
STREAM_FRAMING = ("ORCH-2002", "OC-CTRL-2020")
# A `data:` line holds JSON (ORCH-2002's `data: <json>`) and it is one object (OC-CTRL-2022).
STREAM_JSON = ("ORCH-2002", "OC-CTRL-2022")
# Every event's data is one JSON object; events in order; one terminal event, last.
STREAM_ORDER = ("OC-CTRL-2022",)
# The `started` event says where the task stands.
STARTED_FIELDS = ("OC-CTRL-2021", "OC-CTRL-2050", "ORCH-3029")
# Every error body and SSE `error` event is an ErrorEnvelope with an ErrorKind `code`.
ERROR_ENVELOPE = ("ORCH-2006", "OC-CTRL-2030")
# ... and with a human-readable `message` (ORCH-2006 only; OC-CTRL-2030 asks for the code).
ERROR_MESSAGE = ("ORCH-2006",)
# A full queue answers 429 with Retry-After, X-Backoff-Ms and the policy in force.
BACKPRESSURE = ("ORCH-2007", "OC-CTRL-2011")
# A cancel answers 204 and stops the task.
CANCEL = ("ORCH-2003",)

# operationId -> the requirements whose text says what the operation answers.
ANSWERS: dict[str, tuple[str, ...]] = {
    "createTask": ("ORCH-2001",),
    "streamTask": ("ORCH-2002",),
    "cancelTask": ("ORCH-2003",),
    "getSession": ("ORCH-2004",),
    "deleteSession": ("ORCH-2005",),
    "drainPool": ("ORCH-2101",),
    "reloadPool": ("ORCH-2102",),
    "getPoolHealth": ("ORCH-2103", "OC-CTRL-2001"),
    "listReplicaSets": ("ORCH-2104",),
    "getCapabilities": ("ORCH-3095", "OC-CTRL-2060"),
}
HEALTH = ANSWERS["getPoolHealth"]
REPLICA_SETS = ANSWERS["listReplicaSets"]
METRICS_PATH = "/metrics"
# The metrics exposition itself: the operational metrics are exported (L2).
METRICS = ("ORCH-3028",)


def operation_id(method: str, path: str) -> str | None:
    """The operationId serving a concrete request (`/v1/tasks/<id>/stream`), or None."""
    found = find_operation(method, path.split("?", 1)[0])
    return str(found[2].get("operationId")) if found else None


def answering(method: str, path: str) -> tuple[str, ...]:
    """The requirements an operation breaks when it does not answer as documented.

    Operations outside the table (optional features) name their first `x-req-id`; a path
    that is no OrchQueue v1 operation names nothing (except `/metrics`).
    """
    bare = path.split("?", 1)[0]
    if bare == METRICS_PATH:
        return METRICS
    found = find_operation(method, bare)
    if found is None:
        return ()
    op = found[2]
    own = ANSWERS.get(str(op.get("operationId")))
    if own is not None:
        return own
    ids = op.get("x-req-id") or []
    return (str(ids[0]),) if ids else ()
