"""Building blocks of the OrchQueue v1 pact: a case type and the matchers the cases share.

A `ContractCase` defines one Pact interaction (request, response, provider state, requirement
IDs) and an `exercise` that drives `OrchClient` against Pact's mock server and checks that the
client gets what it needs from the response. Responses are matched loosely where the API
leaves room (types, formats, enums) and exactly where it does not (status codes, error codes,
the booleans of a ready pool, `api_version`).

Values only the provider knows at verification time (an admitted task's id, a served engine
and model, a ready pool) come from provider states through `ProviderState` generators; task
and session ids come from `Uuid` generators, so every verification run sends fresh ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pact import generate, match
from pact.interaction import HttpInteraction
from pact.match.matcher import GenericMatcher

from llama_orch.harness.client import OrchClient, task_body

TASK_ID = "6f1c2a9e-4b7d-4c1e-9a51-0d3e8b7f2c10"
SESSION_ID = "0b9d4e3a-71c2-4f5e-8d6a-2c4b1e9f7a33"
ENGINE, MODEL, POOL = "llamacpp", "repo:mock/tiny-llama", "mock-llamacpp"
UUID_RE = r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"
ENGINE_RE = r"^(llamacpp|vllm|tgi|triton)$"
JSON = "application/json"

# Provider states, named as the provider side (`harness.contracts.states`) knows them.
SERVED = "a replica set serves a model"
QUEUE_FULL = "the queue of a replica set is full"
STREAMING = "a task that streams a few tokens is admitted"
RUNNING = "a task is running"
SESSION = "a session with one finished task exists"
POOL_READY = "a pool is ready"
LONE_POOL = "a pool that alone serves its replica set is ready"


@dataclass(frozen=True)
class ContractCase:
    """One interaction of the pact and the client calls that exercise it."""

    key: str  # stable id of the interaction, and of its check
    description: str
    operation: str  # OpenAPI operationId
    requirements: tuple[str, ...]
    define: Callable[[HttpInteraction], object]  # request and response of the interaction
    exercise: Callable[[OrchClient], None]  # runs against the mock server; asserts
    state: str | None = None
    state_params: dict[str, Any] = field(default_factory=dict)
    credentials: bool = True  # False: the request is sent without an API key


def from_state(name: str, example: object) -> object:
    """A value the provider state supplies at verification time (`example` for the mock)."""
    return match.like(example, generator=generate.provider_state(f"${{{name}}}"))


def path_from_state(example: str, template: str) -> object:
    """A request path filled in from provider-state values, e.g. `/v1/tasks/${task_id}`."""
    return match.like(example, generator=generate.provider_state(template))


def fresh_uuid(example: str) -> object:
    """A UUID-shaped value, newly generated for every verification run."""
    return GenericMatcher("regex", example, generator=generate.uuid("lowercase"), regex=UUID_RE)


def engine_name() -> object:
    return match.regex(ENGINE, regex=ENGINE_RE)


def task_request(prompt: str, ctx_state: str) -> dict[str, Any]:
    """A TaskRequest for the replica set the provider state names, shaped like `task_body`.

    `ctx_state` names the state value used as `ctx`: `ctx` (within the model's limit) or
    `ctx_over` (one above it).
    """
    example = task_body(
        engine=ENGINE,
        model_ref=MODEL,
        prompt=prompt,
        task_id=TASK_ID,
        session_id=SESSION_ID,
        ctx=client_ctx(ctx_state),
        max_tokens=8,
    )
    body: dict[str, Any] = {k: match.like(v) for k, v in example.items()}
    body["task_id"] = fresh_uuid(TASK_ID)
    body["session_id"] = fresh_uuid(SESSION_ID)
    body["engine"] = from_state("engine", ENGINE)
    body["model_ref"] = from_state("model_ref", MODEL)
    body["ctx"] = from_state(ctx_state, example["ctx"])
    return body


def client_ctx(ctx_state: str) -> int:
    return 512 if ctx_state == "ctx" else 4097


def client_task(prompt: str, ctx_state: str) -> dict[str, Any]:
    """The TaskRequest the client sends in the consumer test (fresh ids, as in real use)."""
    return task_body(
        engine=ENGINE, model_ref=MODEL, prompt=prompt, ctx=client_ctx(ctx_state), max_tokens=8
    )
