"""What a target declares about itself, read before any check runs (OC-HARNESS-8005).

Discovery follows OC-CTRL-2060: capability data comes from `GET /v1/capabilities` when the
target serves it, else from an enriched `GET /v1/replicasets` (replica sets carrying `ctx_max`,
`supported_workloads`, `rate_limits`, `features`, `api_version`). Only fields the OrchQueue v1
contract defines are read; facts that live in open objects are found through the target
description's `facts` paths, and are otherwise unknown (the checks needing them say so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from llama_orch.harness.description import TargetDescription, fact_at
from llama_orch.harness.signing import Authority
from llama_orch.harness.timeouts import Timeouts

ENRICHMENT_KEYS = ("ctx_max", "supported_workloads", "rate_limits", "features")


class TargetError(RuntimeError):
    """The target cannot be used: unreachable, not OrchQueue v1, or failed to start."""


@dataclass(frozen=True)
class Group:
    """Replica sets a task reaches by naming `engine` and `model_ref` (usually exactly one)."""

    engine: str
    model_ref: str
    set_ids: tuple[str, ...]
    pools: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.engine, self.model_ref)

    @property
    def label(self) -> str:
        return f"{self.engine} / {self.model_ref}"


@dataclass
class Target:
    """The orchestrator under test: its description, keys, and what it declared."""

    url: str
    description: TargetDescription
    api_key: str | None = field(repr=False)
    embedded: bool = False
    tenant_key: str | None = field(default=None, repr=False)
    data_plane_key: str | None = field(default=None, repr=False)
    authority: Authority | None = field(default=None, repr=False)  # the catalog test CA
    capabilities: dict[str, Any] = field(default_factory=dict)
    capabilities_source: str = "capabilities"  # or "replicasets"
    replica_sets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def api_key_env(self) -> str:
        return self.description.auth.key_env

    @property
    def log_path(self):
        return self.description.log

    @property
    def timeouts(self) -> Timeouts:
        return self.description.bounds()

    def headers(self, key: str | None = None) -> dict[str, str]:
        """The auth header for `key` (default: the target's own key) in the target's scheme."""
        return self.description.auth.headers(self.api_key if key is None else key)

    def secrets(self) -> list[str]:
        return [k for k in (self.api_key, self.tenant_key, self.data_plane_key) if k]

    # -- facts ---------------------------------------------------------------------------
    def fact(self, rs: dict[str, Any], name: str) -> Any:
        """A fact of one replica set, where the description says it lives (else None)."""
        if name == "model_ref" and self.description.model_ref:
            return self.description.model_ref
        return fact_at(rs, getattr(self.description.facts, name))

    def claimed(self) -> set[str]:
        """Optional features the target claims: capability data, then the description."""
        flags: set[str] = set()
        for engine in self.capabilities.get("engines") or []:
            for name, value in ((engine or {}).get("features") or {}).items():
                if value is True:
                    flags.add(name)
        for name, value in self.description.features.items():
            (flags.add if value else flags.discard)(name)
        return flags

    def groups(self) -> list[Group]:
        """Replica sets grouped by (engine, model_ref), narrowed by the description."""
        found: dict[tuple[str, str], Group] = {}
        desc = self.description
        for rs in self.replica_sets:
            engine, ref = rs.get("engine"), self.fact(rs, "model_ref")
            if not isinstance(engine, str) or not isinstance(ref, str) or not ref:
                continue
            pools = pools_of(rs)
            if desc.engine and engine != desc.engine:
                continue
            if desc.pool and desc.pool not in pools:
                continue
            old = found.get((engine, ref))
            set_id = str(rs.get("id"))
            if old is None:
                found[(engine, ref)] = Group(engine, ref, (set_id,), pools)
            else:
                found[(engine, ref)] = Group(engine, ref, (*old.set_ids, set_id), old.pools + pools)
        return list(found.values())

    def why_no_groups(self) -> str:
        """Why `groups()` is empty, with how to fix it."""
        if not self.replica_sets:
            return "GET /v1/replicasets lists no replica set"
        if not self.description.model_ref and not self.description.facts.model_ref:
            return (
                "the target's model reference is unknown: the contract does not say where a "
                "replica set names its model; give --model-ref, or --fact model_ref=PATH "
                "(facts.model_ref in target.yaml) naming where its replica sets hold it"
            )
        where = self.description.facts.model_ref
        return (
            f"no replica set holds a model reference at {where!r}"
            + (f" for engine {self.description.engine!r}" if self.description.engine else "")
            + (f" with pool {self.description.pool!r}" if self.description.pool else "")
        )


def pools_of(rs: dict[str, Any]) -> tuple[str, ...]:
    """The pool ids of a replica set's replicas (`replicas[].pool_id`, contract-defined)."""
    out: list[str] = []
    for replica in rs.get("replicas") or []:
        pool = replica.get("pool_id") if isinstance(replica, dict) else None
        if isinstance(pool, str) and pool not in out:
            out.append(pool)
    return tuple(out)


def _get(http: httpx.Client, path: str) -> httpx.Response:
    try:
        return http.get(path)
    except httpx.HTTPError as exc:
        raise TargetError(f"target {http.base_url} is unreachable ({path}): {exc}") from exc


def _json(resp: httpx.Response, path: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise TargetError(f"GET {path} answered {resp.status_code} without a JSON body") from None


def _refused(resp: httpx.Response, path: str, target: Target) -> TargetError:
    desc = target.description
    return TargetError(
        f"GET {path} answered {resp.status_code}: the target refused the key in "
        f"${desc.auth.key_env} sent as {desc.auth.header_name()} (scheme {desc.auth.scheme}); "
        "is the key right, or does the target use another scheme (--auth-scheme)?"
    )


def enriched(sets: list[Any], target: Target) -> dict[str, Any] | None:
    """Capability data built from replica sets that carry it (OC-CTRL-2060), else None.

    Also used by the capability checks, which read the data afresh when they judge it."""
    engines = []
    versions = set()
    for rs in sets:
        if not isinstance(rs, dict):
            continue
        if isinstance(rs.get("api_version"), str):
            versions.add(rs["api_version"])
        if any(k in rs for k in ENRICHMENT_KEYS):
            engines.append(
                {"engine": rs.get("engine"), **{k: rs[k] for k in ENRICHMENT_KEYS if k in rs}}
            )
    if not engines:
        return None
    version = target.description.api_version
    if len(versions) == 1:
        version = versions.pop()
    elif len(versions) > 1:
        raise TargetError(f"replica sets declare several API versions: {sorted(versions)}")
    return {"api_version": version, "engines": engines}


def discover(
    target: Target, contract_version: str, transport: httpx.BaseTransport | None = None
) -> Target:
    """Fill in the target's capability data and replica sets; TargetError if unusable.

    `transport` is the test seam (an httpx.MockTransport); None is real HTTP.
    """
    bounds = target.timeouts
    with httpx.Client(
        base_url=target.url,
        headers=target.headers(),
        timeout=httpx.Timeout(bounds.request_s, connect=bounds.connect_s),
        transport=transport,
    ) as http:
        caps = _get(http, "/v1/capabilities")
        sets = _get(http, "/v1/replicasets")
    for resp, path in ((caps, "/v1/capabilities"), (sets, "/v1/replicasets")):
        if resp.status_code in (401, 403):
            raise _refused(resp, path, target)
    if sets.status_code == 200:
        body = _json(sets, "/v1/replicasets")
        if not isinstance(body, list):
            raise TargetError("GET /v1/replicasets did not answer a JSON array")
        target.replica_sets = [rs for rs in body if isinstance(rs, dict)]
    if caps.status_code == 200:
        body = _json(caps, "/v1/capabilities")
        if not isinstance(body, dict):
            raise TargetError("GET /v1/capabilities did not answer a JSON object")
        target.capabilities, target.capabilities_source = body, "capabilities"
    else:
        found = enriched(target.replica_sets, target) if sets.status_code == 200 else None
        if found is None:
            raise TargetError(
                "the target publishes no capability data (OC-CTRL-2060): "
                f"GET /v1/capabilities answered {caps.status_code} and GET /v1/replicasets "
                f"answered {sets.status_code} without capability fields "
                f"({', '.join(ENRICHMENT_KEYS)})"
            )
        target.capabilities, target.capabilities_source = found, "replicasets"
    if target.description.api_version and not target.capabilities.get("api_version"):
        target.capabilities["api_version"] = target.description.api_version
    version = str(target.capabilities.get("api_version") or "")
    if not version:
        raise TargetError(
            "the target's capability data states no api_version; give api_version in the "
            "target description if its replica sets carry the capability data without it"
        )
    if version.split(".")[0] != contract_version.split(".")[0]:
        raise TargetError(
            f"target speaks API {version!r}; this harness checks OrchQueue v{contract_version}"
        )
    return target
