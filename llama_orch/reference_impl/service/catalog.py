"""The catalog service: registration under the trust policy, verification, and what it shows.

Every verification, at ingest (`createCatalogModel`), on demand (`verifyCatalogModel`) or at
load time (a pool rollout), is logged as one `catalog_verification` record and counted in
`catalog_verifications_total{result,reason,engine}` (ORCH-3064). Under `strict` a failed
verification refuses the artifact with `UNTRUSTED_ARTIFACT` (ORCH-3061); under `permissive`
it is accepted with a warning, and its signatures show `verified: false`.

The trust policy is the deployment's: a `trust_policy` sent with an entry is not applied (a
client cannot weaken it); the entry shows the policy that judged it, with the CA roots by
subject name. The `engine` label of a verification is the entry's `engine` when it names one,
else the engine of the deployment's first pool; at load time, the loading pool's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from llama_orch.reference_impl.config import OrchestratorConfig, TrustMode
from llama_orch.reference_impl.pool import trust
from llama_orch.reference_impl.pool.model_catalog import (
    SERVABLE,
    CatalogError,
    Entry,
    ModelCatalog,
    ModelState,
)
from llama_orch.reference_impl.service.metrics import ServiceMetrics

log = logging.getLogger("llama_orch.reference_impl.service")

__all__ = ["CatalogError", "CatalogService", "ModelState", "NewModel", "Untrusted"]


class Untrusted(Exception):
    """The strict trust policy refused the artifact (`UNTRUSTED_ARTIFACT`)."""

    def __init__(self, verdict: trust.Verdict) -> None:
        super().__init__(f"untrusted artifact ({verdict.reason}): {verdict.detail}")
        self.verdict = verdict


@dataclass(frozen=True)
class NewModel:
    """A registration request, free of HTTP details; documents are plain JSON values."""

    model_id: str
    digest: str
    source_url: str | None = None
    tags: tuple[str, ...] = ()
    manifests: tuple[dict[str, Any], ...] = ()
    signatures: tuple[dict[str, Any], ...] = ()
    sbom: dict[str, Any] | None = None
    engine: str | None = None


def _artifact(digest: str, source_url, manifests, signatures, sbom) -> trust.Artifact:
    def doc(d: dict[str, Any]) -> trust.Document:
        return trust.Document(str(d.get("digest") or ""), d.get("content"))

    return trust.Artifact(
        digest=digest,
        source_url=source_url,
        manifests=tuple(doc(m) for m in manifests),
        sbom=doc(sbom) if sbom is not None else None,
        signatures=tuple(
            trust.Signature(
                str(s.get("signer") or ""),
                str(s.get("algo") or ""),
                s.get("value"),
                s.get("certificate"),
            )
            for s in signatures
        ),
    )


class CatalogService:
    """The catalog with its trust policy, verification counting and lifecycle gauge."""

    def __init__(
        self,
        config: OrchestratorConfig,
        metrics: ServiceMetrics,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        tp = config.catalog.trust_policy
        base = config.source_path.parent if config.source_path is not None else None
        self.policy = trust.Policy(
            strict=tp.mode is TrustMode.STRICT,
            allowed_registries=tuple(tp.allowed_registries),
            require_signature=tp.require_signature,
            require_sbom=tp.require_sbom,
            roots=trust.load_roots(tp.ca_roots, base),
        )
        self._mode = tp.mode.value
        self.catalog = ModelCatalog(config.catalog.max_entries)
        self._metrics = metrics
        self._wall = wall_clock
        self._default_engine = config.pools[0].engine.value
        metrics.add_producer(self._families)

    # -- registration and verification ------------------------------------------------
    def register(self, new: NewModel) -> Entry:
        """Verify and record a model; Untrusted (strict) or CatalogError refuse it."""
        entry = Entry(
            model_id=new.model_id,
            digest=new.digest,
            source_url=new.source_url,
            tags=list(dict.fromkeys(new.tags)),
            manifests=[dict(m) for m in new.manifests],
            signatures=[dict(s) for s in new.signatures],
            sbom=dict(new.sbom) if new.sbom is not None else None,
            engine=new.engine or self._default_engine,
            created_ms=int(self._wall() * 1000),
        )
        problem = self.catalog.conflict(entry)
        if problem is not None:
            raise problem
        verdict = self._verify(entry, "ingest", entry.engine)
        if not verdict.passed and self.policy.strict:
            raise Untrusted(verdict)
        return self.catalog.add(entry)

    def verify(self, model_id: str) -> trust.Verdict | None:
        """Run the trust rules again on a stored entry; None when there is no such entry."""
        entry = self.catalog.get(model_id)
        if entry is None:
            return None
        return self._verify(entry, "verify", entry.engine)

    def load_refusal(self, entry: Entry, engine: str) -> str | None:
        """Why `entry` may not be loaded by a pool of `engine` now, or None (ORCH-3061)."""
        if entry.state not in SERVABLE:
            return f"model {entry.model_id} is {entry.state.value}; only Active or Canary roll out"
        verdict = self._verify(entry, "load", engine)
        if not verdict.passed and self.policy.strict:
            return f"UNTRUSTED_ARTIFACT: {Untrusted(verdict)}"
        return None

    def _verify(self, entry: Entry, stage: str, engine: str) -> trust.Verdict:
        artifact = _artifact(
            entry.digest, entry.source_url, entry.manifests, entry.signatures, entry.sbom
        )
        verdict = trust.evaluate(artifact, self.policy, datetime.now(UTC))
        for sig, ok in zip(entry.signatures, verdict.signatures_ok, strict=True):
            sig["verified"] = ok
        result = "pass" if verdict.passed else "fail"
        self._metrics.catalog_verifications.labels(result, verdict.reason, engine).inc()
        level = logging.INFO if verdict.passed else logging.WARNING
        log.log(
            level,
            "catalog verification",
            extra={
                "event": "catalog_verification",
                "model_id": entry.model_id,
                "model_digest": entry.digest,
                "stage": stage,
                "result": result,
                "reason": verdict.reason,
                "engine": engine,
                "detail": verdict.detail,
            },
        )
        return verdict

    # -- reading ------------------------------------------------------------------------
    def get(self, model_id: str) -> Entry | None:
        return self.catalog.get(model_id)

    def resolve(self, ref: str) -> Entry | None:
        return self.catalog.resolve(ref)

    def trust_policy(self) -> dict[str, Any]:
        """The policy as an entry shows it (CA roots by subject, not by file)."""
        p = self.policy
        return {
            "mode": self._mode,
            "allowed_registries": list(p.allowed_registries),
            "require_signature": p.require_signature,
            "require_sbom": p.require_sbom,
            "ca_roots": [r.name for r in p.roots],
        }

    def _families(self) -> Iterator[Metric]:
        """`model_state{model_id,state}`: 1 on each entry's current state, 0 on the others."""
        gauge = GaugeMetricFamily(
            "model_state", "Lifecycle state of a catalogued model.", labels=["model_id", "state"]
        )
        for entry in self.catalog.entries():
            for state in ModelState:
                gauge.add_metric([entry.model_id, state.value], float(entry.state is state))
        yield gauge
