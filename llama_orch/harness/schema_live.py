"""Live resources the schema checks point stateful operations at: a real task, session and
pool, and (extended profile) a catalog entry signed at run time and a stored artifact.

Generated requests only reach the error paths of most operations; a request on a live resource
is what makes the target answer with a success body that the contract's schema can judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llama_orch.harness.client import OrchClient, task_body
from llama_orch.harness.discovery import Target
from llama_orch.harness.signing import model_entry
from llama_orch.harness.steps.catalog import CATALOG
from llama_orch.harness.steps.world import poll

PROMPT = "[[sim tokens=4]] schema check"
SLOW_PROMPT = "[[sim tokens=40 itl_ms=25]] schema check, canceled"


@dataclass
class Live:
    """The target, and resources on it that stateful operations are pointed at.

    Tracebacks print the arguments of failing frames, so the target stays out of the repr.
    """

    target: Target = field(repr=False)
    client: OrchClient = field(repr=False)
    engine: str | None = None
    model: str | None = None
    pool: str | None = None
    models: list[str] = field(default_factory=list)  # catalog entries to retire at the end

    def model_entry(self) -> dict[str, Any] | None:
        """A catalog entry the target's trust policy accepts; None without a test CA."""
        registry = self.target.description.catalog.registry
        if self.target.authority is None or not registry:
            return None
        entry = model_entry(registry, signer=self.target.authority.issue())
        self.models.append(entry["id"])
        return entry

    def catalogued(self) -> str | None:
        """The id of an entry registered for the live request; None when none could be."""
        entry = self.model_entry()
        if entry is None:
            return None
        resp = self.client.request("POST", CATALOG, json_body=entry)
        return entry["id"] if resp.status_code == 201 else None

    def artifact(self) -> str | None:
        body = {"kind": "trace", "content": {"schema check": True}, "tags": ["llorch"]}
        resp = self.client.request("POST", "/v1/artifacts", json_body=body)
        return resp.json().get("id") if resp.status_code == 201 else None

    def body(self, prompt: str, **extra: Any) -> dict[str, Any]:
        assert self.engine and self.model
        return task_body(
            engine=self.engine,
            model_ref=self.model,
            prompt=prompt,
            deadline_ms=self.client.timeouts.deadline_ms,
            **extra,
        )

    def task(self, prompt: str = PROMPT, *, run: bool = True) -> dict[str, Any] | None:
        """An admitted task (streamed to its end when `run`); None when none can be admitted."""
        if self.engine is None or self.model is None:
            return None
        body = self.body(prompt, max_tokens=8)
        if self.client.submit(body).status_code != 202:
            return None
        if run:
            self.client.stream(body["task_id"], validate=False)
        return body

    def settle_pool(self) -> None:
        """Give a drained or reloaded pool back: reload its own model, wait until Ready."""
        if self.pool is None or self.model is None:
            return
        self.client.reload(self.pool, self.model)

        def ready() -> bool:
            resp = self.client.pool_health(self.pool)
            if resp.status_code != 200:
                return True  # no health to wait for: a target that cannot say is not waited on
            body = resp.json()
            return body.get("ready") is True and body.get("draining") is not True

        poll(ready, self.client.timeouts.settle_s, 0.1)


def live_kwargs(op_id: str, live: Live) -> dict[str, Any] | None:
    """Fixed parts of a request that points the operation at a live resource."""
    if op_id == "createTask" and live.engine and live.model:
        return {"body": live.body(PROMPT)}
    if op_id in ("streamTask", "cancelTask", "getSession", "deleteSession"):
        task = live.task(
            SLOW_PROMPT if op_id == "cancelTask" else PROMPT, run=op_id != "cancelTask"
        )
        if task is None:
            return None
        key = "session_id" if "Session" in op_id else "task_id"
        return {"path_parameters": {"id": task[key]}}
    if op_id == "getPoolHealth" and live.pool:
        return {"path_parameters": {"id": live.pool}}
    if op_id == "drainPool" and live.pool:
        return {"path_parameters": {"id": live.pool}, "body": {"deadline_ms": 1000}}
    if op_id == "reloadPool" and live.pool and live.model:
        return {"path_parameters": {"id": live.pool}, "body": {"new_model_ref": live.model}}
    return live_extended(op_id, live)


def live_extended(op_id: str, live: Live) -> dict[str, Any] | None:
    """Live requests of the catalog and artifact operations (extended profile)."""
    if op_id == "createCatalogModel":
        entry = live.model_entry()
        return {"body": entry} if entry is not None else None
    if op_id in ("getCatalogModel", "verifyCatalogModel", "setCatalogModelState"):
        model_id = live.catalogued()
        if model_id is None:
            return None
        extra = {"body": {"state": "Active"}} if op_id == "setCatalogModelState" else {}
        return {"path_parameters": {"id": model_id}, **extra}
    if op_id == "getArtifact":
        artifact_id = live.artifact()
        return {"path_parameters": {"id": artifact_id}} if artifact_id else None
    return None
