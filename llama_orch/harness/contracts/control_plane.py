"""Pact cases of the control plane and of authentication: capabilities, replica sets, pools."""

from __future__ import annotations

from pact import match
from pact.interaction import HttpInteraction

from llama_orch.harness.client import OrchClient
from llama_orch.harness.contracts.interactions import (
    JSON,
    LONE_POOL,
    MODEL,
    POOL,
    POOL_READY,
    SERVED,
    ContractCase,
    engine_name,
    from_state,
    path_from_state,
)
from llama_orch.harness.openapi import load_doc

POOL_PATH = f"/v1/pools/{POOL}"
WORKLOAD_RE = r"^(completion|embedding|rerank)$"
VERSION_RE = r"^[0-9]+\.[0-9]+\.[0-9]+$"


def api_version() -> str:
    """The version both OpenAPI documents declare; capabilities must report exactly this."""
    return str(load_doc("data.yaml")["info"]["version"])


def _no_key(i: HttpInteraction) -> object:
    return i.with_request("GET", "/v1/capabilities").will_respond_with(401)


def _exercise_no_key(client: OrchClient) -> None:
    resp = client.capabilities()
    assert resp.status_code == 401
    assert "authorization" not in {k.lower() for k in client.exchanges[-1].request_headers}


def _capabilities(i: HttpInteraction) -> object:
    engine = {
        "engine": engine_name(),
        "ctx_max": match.int(4096),
        "supported_workloads": match.each_like(match.regex("completion", regex=WORKLOAD_RE)),
        "rate_limits": match.like({}),
        "features": match.like({}),
    }
    version = match.regex(api_version(), regex=VERSION_RE)
    return (
        i.with_request("GET", "/v1/capabilities")
        .will_respond_with(200)
        .with_body({"api_version": version, "engines": match.each_like(engine)}, JSON)
    )


def _exercise_capabilities(client: OrchClient) -> None:
    body = client.capabilities().json()
    assert body["api_version"] and body["engines"][0]["ctx_max"] == 4096


def _capabilities_version(i: HttpInteraction) -> object:
    return (
        i.with_request("GET", "/v1/capabilities")
        .will_respond_with(200)
        .with_body({"api_version": api_version()}, JSON)
    )


def _exercise_capabilities_version(client: OrchClient) -> None:
    assert client.capabilities().json()["api_version"] == api_version()


def _replica_sets(i: HttpInteraction) -> object:
    replica_set = {
        "id": match.str("rs-llama"),
        "engine": engine_name(),
        "load": match.number(0.5),
        "slots_total": match.int(2),
        "slots_free": match.int(1),
        "slo": match.like({}),
    }
    return (
        i.with_request("GET", "/v1/replicasets")
        .will_respond_with(200)
        .with_body(match.each_like(replica_set), JSON)
    )


def _exercise_replica_sets(client: OrchClient) -> None:
    sets = client.replica_sets().json()
    assert sets[0]["slots_total"] >= sets[0]["slots_free"]


def _pool_health(i: HttpInteraction) -> object:
    path = path_from_state(f"{POOL_PATH}/health", "/v1/pools/${pool_id}/health")
    body = {"live": True, "ready": True, "draining": False, "metrics": match.like({})}
    return i.with_request("GET", path).will_respond_with(200).with_body(body, JSON)


def _exercise_pool_health(client: OrchClient) -> None:
    health = client.pool_health(POOL).json()
    assert health["ready"] is True and health["draining"] is False


def _drain(i: HttpInteraction) -> object:
    path = path_from_state(f"{POOL_PATH}/drain", "/v1/pools/${pool_id}/drain")
    return (
        i.with_request("POST", path)
        .with_body({"deadline_ms": match.int(1000)}, JSON)
        .will_respond_with(202)
    )


def _exercise_drain(client: OrchClient) -> None:
    assert client.drain(POOL, 1000).status_code == 202


def _reload(i: HttpInteraction) -> object:
    path = path_from_state(f"{POOL_PATH}/reload", "/v1/pools/${pool_id}/reload")
    return (
        i.with_request("POST", path)
        .with_body({"new_model_ref": from_state("model_ref", MODEL)}, JSON)
        .will_respond_with(202)
    )


def _exercise_reload(client: OrchClient) -> None:
    assert client.reload(POOL, MODEL).status_code == 202


CASES: tuple[ContractCase, ...] = (
    ContractCase(
        "capabilities-without-key",
        "a request without an API key is refused with 401",
        "getCapabilities",
        ("ORCH-3035", "OC-CTRL-2040"),
        _no_key,
        _exercise_no_key,
        credentials=False,
    ),
    ContractCase(
        "capabilities",
        "the capability document states an API version and what each engine offers",
        "getCapabilities",
        ("ORCH-3095", "OC-CTRL-2060"),
        _capabilities,
        _exercise_capabilities,
    ),
    ContractCase(
        "capabilities-version",
        "the capability document names the API version of the contract",
        "getCapabilities",
        ("ORCH-3096", "OC-CTRL-2061"),
        _capabilities_version,
        _exercise_capabilities_version,
    ),
    ContractCase(
        "list-replica-sets",
        "replica sets are listed with their load, slots and SLO snapshot",
        "listReplicaSets",
        ("ORCH-2104",),
        _replica_sets,
        _exercise_replica_sets,
        SERVED,
    ),
    ContractCase(
        "pool-health",
        "a ready pool reports live, ready, not draining and its metrics",
        "getPoolHealth",
        ("OC-CTRL-2001",),
        _pool_health,
        _exercise_pool_health,
        POOL_READY,
    ),
    ContractCase(
        "drain-pool",
        "draining a pool with a deadline answers 202",
        "drainPool",
        ("ORCH-2101", "OC-CTRL-2002"),
        _drain,
        _exercise_drain,
        LONE_POOL,
    ),
    ContractCase(
        "reload-pool",
        "reloading a pool with its current model answers 202",
        "reloadPool",
        ("ORCH-2102",),
        _reload,
        _exercise_reload,
        LONE_POOL,
    ),
)
