"""Pact cases of the data plane: admission, refusals, the SSE stream, cancel and sessions."""

from __future__ import annotations

from pact import match
from pact.interaction import HttpInteraction

from llama_orch.harness.client import OrchClient
from llama_orch.harness.contracts.interactions import (
    JSON,
    QUEUE_FULL,
    RUNNING,
    SERVED,
    SESSION,
    SESSION_ID,
    STREAMING,
    TASK_ID,
    UUID_RE,
    ContractCase,
    client_task,
    path_from_state,
    task_request,
)

INT_RE = r"^[0-9]+$"
# The stream of ORCH-2002 / OC-CTRL-2020, in any form the WHATWG event-stream rules allow:
# lines end in CRLF, LF or CR; `field:value` with or without a space; comment lines (`: ping`
# keep-alives) and `id:`/`retry:` lines anywhere; blocks holding only comments. Every event
# names one of the five events and its data line follows its event line. The order of events
# (OC-CTRL-2022) and `id:` lines (OC-CTRL-2024, only for targets claiming `sse_resume`) are
# not this interaction's business.
EOL = r"(?:\r\n|\n|\r)"
CHAR = r"[^:\r\n]"  # a character of a field name


def _name_except(*words: str) -> str:
    """A field name that is none of `words` (the pattern language has no look-ahead)."""
    firsts = "".join(sorted({w[0] for w in words}))
    alternatives = [rf"[^:\r\n{firsts}]{CHAR}*"]
    for word in words:
        for n in range(1, len(word)):
            alternatives.append(rf"{word[:n]}(?:[^:\r\n{word[n]}]{CHAR}*)?")
        alternatives.append(rf"{word}{CHAR}+")
    return "(?:" + "|".join(alternatives) + ")"


# Comment lines, and field lines other than event and data (id, retry, unknown fields: the
# SSE rules ignore the last kind), with or without a value.
OTHER = rf"(?::[^\r\n]*|{_name_except('event', 'data')}(?::[^\r\n]*)?){EOL}"
EVENT = rf"event: ?(?:started|token|metrics|end|error){EOL}"
DATA = rf"data:[^\r\n]*{EOL}"
FRAME = rf"(?:{OTHER})*{EVENT}(?:{OTHER})*{DATA}(?:{OTHER})*{EOL}"
KEEPALIVE = rf"(?:{OTHER})*{EOL}"
SSE_RE = rf"^(?:{KEEPALIVE})*{FRAME}(?:{FRAME}|{KEEPALIVE})*(?:{OTHER})*$"
SSE_EXAMPLE = (
    'event: started\ndata: {"queue_position":0,"predicted_start_ms":0}\n\n'
    'event: token\nid: 0\ndata: {"t":"Hello","i":0}\n\n'
    'event: metrics\ndata: {"queue_depth":0,"on_time_probability":1.0}\n\n'
    'event: token\nid: 1\ndata: {"t":" world","i":1}\n\n'
    'event: end\ndata: {"tokens_out":2,"decode_ms":12}\n\n'
)
ADMIT_PROMPT = "[[sim tokens=2]] pact: admitted"
OVER_PROMPT = "[[sim tokens=2]] pact: ctx over the limit"
FULL_PROMPT = "[[sim tokens=1]] pact: one more for a full queue"
SESSION_PATH = f"/v1/sessions/{SESSION_ID}"


def _admit(i: HttpInteraction) -> object:
    return (
        i.with_request("POST", "/v1/tasks")
        .with_body(task_request(ADMIT_PROMPT, "ctx"), JSON)
        .will_respond_with(202)
        .with_body(
            {
                "task_id": match.regex(TASK_ID, regex=UUID_RE),
                "queue_position": match.int(0),
                "predicted_start_ms": match.int(0),
                "backoff_ms": match.int(0),
            },
            JSON,
        )
    )


def _exercise_admit(client: OrchClient) -> None:
    resp = client.submit(client_task(ADMIT_PROMPT, "ctx"))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert {"task_id", "queue_position", "predicted_start_ms", "backoff_ms"} <= body.keys()


def _over_ctx(i: HttpInteraction) -> object:
    return (
        i.with_request("POST", "/v1/tasks")
        .with_body(task_request(OVER_PROMPT, "ctx_over"), JSON)
        .will_respond_with(400)
        .with_body({"code": "INVALID_PARAMS"}, JSON)
    )


def _exercise_over_ctx(client: OrchClient) -> None:
    resp = client.submit(client_task(OVER_PROMPT, "ctx_over"))
    assert resp.status_code == 400 and resp.json()["code"] == "INVALID_PARAMS", resp.text


def _queue_full(i: HttpInteraction) -> object:
    return (
        i.with_request("POST", "/v1/tasks")
        .with_body(task_request(FULL_PROMPT, "ctx"), JSON)
        .will_respond_with(429)
        .with_header("Retry-After", match.regex("1", regex=INT_RE))
        .with_header("X-Backoff-Ms", match.regex("1000", regex=INT_RE))
        .with_body(
            {
                "code": match.regex(
                    "ADMISSION_REJECT", regex=r"^(ADMISSION_REJECT|QUEUE_FULL_DROP_LRU)$"
                ),
                "retriable": True,
                "policy_label": match.regex(
                    "reject", regex=r"^(reject|drop-lru|shed-low-priority)$"
                ),
            },
            JSON,
        )
    )


def _exercise_queue_full(client: OrchClient) -> None:
    resp = client.submit(client_task(FULL_PROMPT, "ctx"))
    assert resp.status_code == 429, resp.text
    assert int(resp.headers["Retry-After"]) >= 0 and int(resp.headers["X-Backoff-Ms"]) >= 0
    assert resp.json()["policy_label"] == "reject"


def _stream(i: HttpInteraction) -> object:
    path = path_from_state(f"/v1/tasks/{TASK_ID}/stream", "/v1/tasks/${task_id}/stream")
    return (
        i.with_request("GET", path)
        .with_header("Accept", "text/event-stream")
        .will_respond_with(200)
        .with_header(
            "Content-Type", match.regex("text/event-stream", regex=r"^text/event-stream(;.*)?$")
        )
        .with_body(SSE_EXAMPLE, "text/event-stream")
        .with_matching_rules({"body": {"$": {"matchers": [{"match": "regex", "regex": SSE_RE}]}}})
    )


def _exercise_stream(client: OrchClient) -> None:
    resp, events = client.stream(TASK_ID)
    assert resp.status_code == 200
    assert [e.event for e in events] == ["started", "token", "metrics", "token", "end"], events
    assert [e.data["i"] for e in events if e.event == "token"] == [0, 1]


def _cancel(i: HttpInteraction) -> object:
    path = path_from_state(f"/v1/tasks/{TASK_ID}/cancel", "/v1/tasks/${task_id}/cancel")
    return i.with_request("POST", path).will_respond_with(204)


def _exercise_cancel(client: OrchClient) -> None:
    assert client.cancel(TASK_ID).status_code == 204


def _get_session(i: HttpInteraction) -> object:
    return (
        i.with_request("GET", path_from_state(SESSION_PATH, "/v1/sessions/${session_id}"))
        .will_respond_with(200)
        .with_body(
            {
                "ttl_ms_remaining": match.int(599000),
                "turns": match.int(1),
                "kv_bytes": match.int(1048576),
                "kv_warmth": match.bool(False),
            },
            JSON,
        )
    )


def _exercise_get_session(client: OrchClient) -> None:
    resp = client.get_session(SESSION_ID)
    assert resp.status_code == 200 and resp.json()["turns"] == 1, resp.text


def _delete_session(i: HttpInteraction) -> object:
    path = path_from_state(SESSION_PATH, "/v1/sessions/${session_id}")
    return i.with_request("DELETE", path).will_respond_with(204)


def _exercise_delete_session(client: OrchClient) -> None:
    assert client.delete_session(SESSION_ID).status_code == 204


CASES: tuple[ContractCase, ...] = (
    ContractCase(
        "admit-task",
        "a task for a served model is admitted",
        "createTask",
        ("ORCH-2001",),
        _admit,
        _exercise_admit,
        SERVED,
    ),
    ContractCase(
        "reject-ctx-over-limit",
        "a task whose ctx exceeds the model's limit is refused with INVALID_PARAMS",
        "createTask",
        ("ORCH-3014", "OC-CORE-1020"),
        _over_ctx,
        _exercise_over_ctx,
        SERVED,
    ),
    ContractCase(
        "queue-full-backpressure",
        "a task for a full queue is refused with 429 and backoff headers",
        "createTask",
        ("ORCH-2007", "OC-CTRL-2011"),
        _queue_full,
        _exercise_queue_full,
        QUEUE_FULL,
    ),
    ContractCase(
        "stream-task",
        "the stream of an admitted task is framed SSE from started to end",
        "streamTask",
        ("ORCH-2002", "OC-CTRL-2020"),
        _stream,
        _exercise_stream,
        STREAMING,
        {"tokens": 2},
    ),
    ContractCase(
        "cancel-running-task",
        "cancelling a running task answers 204",
        "cancelTask",
        ("ORCH-2003",),
        _cancel,
        _exercise_cancel,
        RUNNING,
    ),
    ContractCase(
        "get-session",
        "a session with a finished task reports its state",
        "getSession",
        ("ORCH-2004",),
        _get_session,
        _exercise_get_session,
        SESSION,
    ),
    ContractCase(
        "delete-session",
        "deleting a session answers 204",
        "deleteSession",
        ("ORCH-2005",),
        _delete_session,
        _exercise_delete_session,
        SESSION,
    ),
)
