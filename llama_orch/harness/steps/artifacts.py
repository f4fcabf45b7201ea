"""Artifact steps: store plans, summaries, diffs and traces, read them back, across tenants.

Content is unique per scenario, so nothing a scenario stores collides with what another stored.
The content-addressing rule checked is the one of specs/20 section 9: `digest` is the SHA-256
of the canonical JSON of `content`, `id` the same over `{kind, content, parent}`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest
from pytest_bdd import then, when

from llama_orch.harness.client import OrchClient
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.responses import assert_schema, json_body
from llama_orch.harness.steps.world import World, precondition

ARTIFACTS = "/v1/artifacts"


def content_address(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _stored(world: World, label: str) -> dict[str, Any]:
    stored = world.extra.get("artifacts", {}).get(label)
    assert stored is not None, f"no artifact {label!r} stored in this scenario"
    return stored


def _store(world: World, label: str, body: dict[str, Any]) -> None:
    resp = world.record(world.orch.request("POST", ARTIFACTS, json_body=body))
    ref = json_body(resp) if resp.status_code == 201 else None
    world.extra.setdefault("artifacts", {})[label] = {"body": body, "ref": ref, "resp": resp}


@when(P('I store a {kind:W} artifact with tags "{tags:Q}"'))
def store(world: World, kind: str, tags: str) -> None:
    content = {"text": f"llorch compliance {uuid.uuid4()}", "steps": ["read", "patch"]}
    _store(world, "first", {"kind": kind, "content": content, "tags": _tags(tags)})


@when(P('I store the same artifact again with tags "{tags:Q}"'))
def store_again(world: World, tags: str) -> None:
    first = _stored(world, "first")["body"]
    _store(world, "again", {**first, "tags": _tags(tags)})


@when(P("I store a {kind:W} artifact derived from it"))
def store_derived(world: World, kind: str) -> None:
    first = _stored(world, "first")
    precondition(first["ref"] is not None, "the parent artifact was not stored")
    content = {"unified": f"--- a\n+++ b\n@@ {uuid.uuid4()} @@\n"}
    _store(world, "derived", {"kind": kind, "content": content, "parent": first["ref"]["id"]})


@when(P("I read the {label:W} artifact"))
def read(world: World, label: str) -> None:
    ref = _stored(world, label)["ref"]
    precondition(ref is not None, f"the {label} artifact was not stored")
    world.record(world.orch.get(f"{ARTIFACTS}/{ref['id']}"))


@when(P("I read the {label:W} artifact with the tenant key"))
def read_as_tenant(world: World, label: str, request: pytest.FixtureRequest) -> None:
    ref = _stored(world, label)["ref"]
    precondition(ref is not None, f"the {label} artifact was not stored")
    key = world.target.tenant_key
    precondition(key, "no second tenant's key (--tenant-key-env)")
    tenant = OrchClient.for_target(world.target, key=key)
    request.addfinalizer(tenant.close)
    world.record(tenant.get(f"{ARTIFACTS}/{ref['id']}"))
    world.orch.exchanges.extend(tenant.exchanges)


@then(P("the {label:W} artifact was stored under its content address"))
def content_addressed(world: World, label: str) -> None:
    stored = _stored(world, label)
    resp = stored["resp"]
    assert resp.status_code == 201, f"storing answered {resp.status_code}: {resp.text[:300]}"
    ref, body = stored["ref"], stored["body"]
    assert_schema("ArtifactRef", ref)
    assert ref.get("digest") == content_address(body["content"]), f"digest {ref.get('digest')!r}"
    identity = {"kind": body["kind"], "content": body["content"], "parent": body.get("parent")}
    assert ref.get("id") == content_address(identity), f"id {ref.get('id')!r}"


@then("storing it again gave the same id with both sets of tags")
def same_id(world: World) -> None:
    first, again = _stored(world, "first"), _stored(world, "again")
    assert again["resp"].status_code == 201, f"the repeat answered {again['resp'].status_code}"
    assert again["ref"]["id"] == first["ref"]["id"], "the same artifact got another id"
    want = set(first["body"]["tags"]) | set(again["body"]["tags"])
    got = set(again["ref"].get("tags") or [])
    assert want <= got, f"tags {sorted(got)}, expected at least {sorted(want)}"


@then(P("the {label:W} artifact is returned with its content, tags and created_ms"))
def returned(world: World, label: str) -> None:
    resp, stored = world.response, _stored(world, label)
    assert resp.status_code == 200, f"GET answered {resp.status_code}: {resp.text[:300]}"
    got = json_body(resp)
    assert_schema("Artifact", got)
    assert got.get("content") == stored["body"]["content"], "the content came back changed"
    assert got.get("kind") == stored["body"]["kind"], f"kind {got.get('kind')!r}"
    assert set(stored["body"].get("tags") or []) <= set(got.get("tags") or []), "tags are lost"
    assert isinstance(got.get("created_ms"), int), f"created_ms {got.get('created_ms')!r}"
    assert got.get("id") == stored["ref"]["id"], f"id {got.get('id')!r}"


@then("the derived artifact names its parent")
def names_parent(world: World) -> None:
    got = json_body(world.response)
    parent = _stored(world, "first")["ref"]["id"]
    assert got.get("parent") == parent, f"parent {got.get('parent')!r}, expected {parent}"
