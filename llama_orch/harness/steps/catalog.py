"""Catalog steps: model entries made at run time, registration, trust refusals, tag rollouts.

Entries come from `harness.signing`: fresh model bytes, a manifest and an SBOM, signed by a
signer that the target's test CA (the description's `catalog`) issued, or deliberately not.
Every entry a scenario registers is retired when the scenario ends, and a pool it rolled out
is reloaded with its original model by the world, so the catalog's served state is left as
it was found (entries themselves stay, archived, as the catalog keeps Retired models).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import time
from typing import Any

import httpx
import pytest
from pytest_bdd import given, then, when

from llama_orch.harness.signing import UNTRUSTED_REGISTRY, Authority, model_entry, tag_reference
from llama_orch.harness.steps.fixtures import P
from llama_orch.harness.steps.responses import json_body
from llama_orch.harness.steps.world import PoolRestore, World, poll, precondition

CATALOG = "/v1/catalog/models"


def authority(world: World) -> Authority:
    a = world.target.authority
    precondition(a is not None, "no catalog test CA: give catalog.ca_cert_env and ca_key_env")
    assert a is not None
    return a


def registry(world: World) -> str:
    reg = world.target.description.catalog.registry
    precondition(reg, "no registry the target allows: give catalog.registry")
    return str(reg)


def entry_of(world: World) -> dict[str, Any]:
    entry = world.extra.get("entry")
    assert entry is not None, "no model entry in this scenario yet"
    return entry


def retire(orch, model_id: str) -> None:
    """Retire an entry this scenario registered (drain deadline 0); errors are not its verdict."""
    with contextlib.suppress(httpx.HTTPError):
        orch.request(
            "POST", f"{CATALOG}/{model_id}/state", json_body={"state": "Retired", "deadline_ms": 0}
        )


def register(world: World, request: pytest.FixtureRequest, entry: dict[str, Any]):
    """POST the entry; a 201 is remembered and retired at the scenario's end."""
    resp = world.record(world.orch.request("POST", CATALOG, json_body=entry))
    if resp.status_code == 201:
        orch, model_id = world.orch, entry["id"]
        request.addfinalizer(lambda: retire(orch, model_id))
    return resp


def move(world: World, state: str, deadline_ms: int | None = None) -> httpx.Response:
    body: dict[str, Any] = {"state": state}
    if deadline_ms is not None:
        body["deadline_ms"] = deadline_ms
    path = f"{CATALOG}/{entry_of(world)['id']}/state"
    return world.record(world.orch.request("POST", path, json_body=body))


def read_entry(world: World) -> dict[str, Any]:
    resp = world.orch.get(f"{CATALOG}/{entry_of(world)['id']}")
    assert resp.status_code == 200, f"GET of the entry answered {resp.status_code}: {resp.text}"
    return json_body(resp)


# -- entries ----------------------------------------------------------------------------------
@given("a signed model entry from the allowed registry")
def signed_entry(world: World) -> None:
    world.extra["entry"] = model_entry(registry(world), signer=authority(world).issue())


@given("an unsigned model entry from the allowed registry")
def unsigned_entry(world: World) -> None:
    world.extra["entry"] = model_entry(registry(world), signer=None)


@given("a signed model entry without an SBOM")
def entry_without_sbom(world: World) -> None:
    world.extra["entry"] = model_entry(registry(world), signer=authority(world).issue(), sbom=False)


@given("a model entry signed by a signer that no trusted CA issued")
def stranger_entry(world: World) -> None:
    world.extra["entry"] = model_entry(registry(world), signer=Authority.stranger())


@given("a signed model entry whose digest was changed after signing")
def tampered_entry(world: World) -> None:
    entry = model_entry(registry(world), signer=authority(world).issue())
    entry["digest"] = "sha256:" + hashlib.sha256(os.urandom(64)).hexdigest()
    world.extra["entry"] = entry


@given("a signed model entry from a registry the trust policy does not allow")
def foreign_entry(world: World) -> None:
    world.extra["entry"] = model_entry(UNTRUSTED_REGISTRY, signer=authority(world).issue())


@given(P("a signed model entry whose signer certificate expires in {seconds:d} seconds"))
def expiring_entry(world: World, seconds: int) -> None:
    signer = authority(world).issue(valid_for_s=seconds)
    world.extra["entry"] = model_entry(registry(world), signer=signer)
    world.extra["expires_at"] = signer.cert.not_valid_after_utc


@given(P("a registered {state:W} model entry"))
def registered_entry(world: World, request: pytest.FixtureRequest, state: str) -> None:
    signed_entry(world)
    resp = register(world, request, entry_of(world))
    precondition(resp.status_code == 201, f"registration answered {resp.status_code}: {resp.text}")
    if state != "Draft":
        resp = move(world, state)
        precondition(resp.status_code == 202, f"moving to {state} answered {resp.status_code}")


# -- registration and reading -----------------------------------------------------------------
@given("it is registered")
@when("I register the model entry")
def register_it(world: World, request: pytest.FixtureRequest) -> None:
    register(world, request, entry_of(world))


@then("it was registered")
def was_registered(world: World) -> None:
    resp = world.response
    precondition(resp.status_code == 201, f"registration answered {resp.status_code}: {resp.text}")


@when("I read the model entry")
def read_it(world: World) -> None:
    world.record(world.orch.get(f"{CATALOG}/{entry_of(world)['id']}"))


@when("I verify the model entry")
def verify_it(world: World) -> None:
    world.record(world.orch.request("POST", f"{CATALOG}/{entry_of(world)['id']}/verify"))


@when("I register another signed entry that binds the same tag to another digest")
def rebind_tag(world: World, request: pytest.FixtureRequest) -> None:
    first = entry_of(world)
    other = model_entry(registry(world), signer=authority(world).issue(), tags=tuple(first["tags"]))
    other["source_url"] = first["source_url"]
    world.extra["rival"] = other
    register(world, request, other)


@then("the registration is refused with UNTRUSTED_ARTIFACT")
def refused_untrusted(world: World) -> None:
    resp = world.response
    assert resp.status_code == 400, f"expected 400, got {resp.status_code}: {resp.text[:300]}"
    code = json_body(resp).get("code")
    assert code == "UNTRUSTED_ARTIFACT", f"expected UNTRUSTED_ARTIFACT, got {code!r}"


@then("the registration is refused as a conflict")
def refused_conflict(world: World) -> None:
    resp = world.response
    assert resp.status_code == 409, f"expected 409, got {resp.status_code}: {resp.text[:300]}"


@then("the catalog has no entry with its id")
def no_entry(world: World) -> None:
    resp = world.orch.get(f"{CATALOG}/{entry_of(world)['id']}")
    assert resp.status_code == 404, f"the refused entry is readable: {resp.status_code}"


@then("the entry records its digest, source, tags and verified signatures")
def records_origin(world: World) -> None:
    sent, got = entry_of(world), json_body(world.response)
    assert got.get("id") == sent["id"], f"id {got.get('id')!r}"
    assert got.get("digest") == sent["digest"], f"digest {got.get('digest')!r}"
    assert got.get("source_url") == sent["source_url"], f"source_url {got.get('source_url')!r}"
    missing = set(sent["tags"]) - set(got.get("tags") or [])
    assert not missing, f"tags {sorted(missing)} are not recorded"
    sigs = got.get("signatures") or []
    signer = sent["signatures"][0]["signer"]
    mine = [s for s in sigs if isinstance(s, dict) and s.get("signer") == signer]
    assert mine, f"the signature of {signer} is not recorded: {sigs}"
    assert mine[0].get("verified") is True, f"the trusted signature shows {mine[0]}"


@then("the stored entry keeps its manifests and SBOM with their content")
def keeps_documents(world: World) -> None:
    sent, got = entry_of(world), read_entry(world)
    stored = {m.get("digest"): m for m in got.get("manifests") or [] if isinstance(m, dict)}
    for m in sent["manifests"]:
        kept = stored.get(m["digest"])
        assert kept is not None, f"manifest {m['digest']} is not stored with the entry"
        assert kept.get("content") == m["content"], "the stored manifest differs from the sent one"
    sbom = got.get("sbom") or {}
    assert sbom.get("digest") == sent["sbom"]["digest"], f"sbom digest {sbom.get('digest')!r}"
    assert sbom.get("content") == sent["sbom"]["content"], "the SBOM is not stored with the entry"


@then(P("the entry is in the {state:W} state"))
def in_state(world: World, state: str) -> None:
    got = read_entry(world).get("state")
    assert got == state, f"the entry is {got!r}, expected {state}"


@then("the entry's trust policy lists the allowed registry and a CA root")
def lists_registries(world: World) -> None:
    policy = read_entry(world).get("trust_policy") or {}
    allowed = policy.get("allowed_registries") or []
    assert registry(world) in allowed, f"allowed_registries {allowed} lacks {registry(world)}"
    roots = policy.get("ca_roots") or []
    assert roots, f"the trust policy lists no CA root: {policy}"


@then("the entry's trust policy is strict and requires a signature and an SBOM")
def strict_default(world: World) -> None:
    policy = read_entry(world).get("trust_policy") or {}
    got = {k: policy.get(k) for k in ("mode", "require_signature", "require_sbom")}
    want = {"mode": "strict", "require_signature": True, "require_sbom": True}
    assert got == want, f"trust policy {got}, expected {want}"


# -- rollouts ---------------------------------------------------------------------------------
def roll_out(world: World, ref: str) -> None:
    pool_id = world.pool_id
    assert pool_id is not None, "no pool chosen in this scenario"
    if not any(r.pool_id == pool_id for r in world.restore):
        world.restore.append(PoolRestore(pool_id, world.current_group().model_ref))
    path = f"/v1/pools/{pool_id}/reload"
    world.record(world.orch.request("POST", path, json_body={"new_model_ref": ref}))


@given("the pool serves the entry")
@when("I roll the pool out to the entry's tag")
def roll_out_tag(world: World) -> None:
    entry = entry_of(world)
    roll_out(world, tag_reference(entry, entry["tags"][0]))
    if world.response.status_code == 202 and "expires_at" not in world.extra:
        serves_digest(world, 10)


@when("I roll the pool out to the entry's id")
def roll_out_id(world: World) -> None:
    roll_out(world, entry_of(world)["id"])


def _pool_set(world: World) -> dict[str, Any] | None:
    for rs in world.replica_sets():
        if any(r.get("pool_id") == world.pool_id for r in rs.get("replicas") or []):
            return rs
    return None


@then(P("the pool serves the entry's digest within {seconds:d} seconds"))
def serves_digest(world: World, seconds: int) -> None:
    digest = entry_of(world)["digest"]
    seen: dict[str, Any] = {}

    def serving() -> bool:
        rs = _pool_set(world)
        seen["rs"] = rs
        return rs is not None and world.target.fact(rs, "model_digest") == digest

    ok = poll(serving, float(seconds), 0.1)
    got = world.target.fact(seen["rs"], "model_digest") if seen.get("rs") else None
    if not ok:
        # A pool that cannot load the run's made-up model bytes (a real engine whose model
        # file is pinned) refuses the rollout: nothing was judged then.
        health = world.orch.get(f"/v1/pools/{world.pool_id}/health")
        error = (health.json() if health.status_code == 200 else {}).get("last_error")
        precondition(not error, f"the pool did not take the test model: {error}")
    assert ok, f"the pool's replica set records model_digest {got!r}, not the entry's {digest}"


@when("I wait until the signer certificate has expired")
def wait_expiry(world: World) -> None:
    expires = world.extra["expires_at"]
    left = (expires - dt.datetime.now(dt.UTC)).total_seconds()
    precondition(left > 0, "the certificate expired before the entry was registered")
    time.sleep(left + 1.0)


@then(P("the pool keeps its model and names UNTRUSTED_ARTIFACT in last_error within {s:d} s"))
def load_refused(world: World, s: int) -> None:
    seen: dict[str, Any] = {}

    def reported() -> bool:
        resp = world.orch.get(f"/v1/pools/{world.pool_id}/health")
        seen["h"] = resp.json() if resp.status_code == 200 else {}
        return "UNTRUSTED_ARTIFACT" in str(seen["h"].get("last_error") or "")

    assert poll(reported, float(s), 0.1), (
        f"last_error stays {seen.get('h', {}).get('last_error')!r}"
    )
    assert seen["h"].get("ready") is True, f"the pool lost readiness: {seen['h']}"
    rs = _pool_set(world)
    digest = world.target.fact(rs, "model_digest") if rs else None
    assert digest != entry_of(world)["digest"], "the pool loaded the refused model"
