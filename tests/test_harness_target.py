"""The target description and discovery: what the harness knows about a target before checks.

A third-party target differs from the reference in every way the contract allows; these tests
pin the rules that let the harness judge it anyway (OC-HARNESS-8005..8008): flags over file,
keys from the environment only, both auth schemes, facts only where the description says,
capability data from either source, typed errors that name the field or endpoint at fault.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llama_orch.harness.client import task_body
from llama_orch.harness.description import (
    AuthScheme,
    TargetDescriptionError,
    load_description,
    validate,
)
from llama_orch.harness.discovery import Target, TargetError, discover
from llama_orch.harness.target import reference_description
from llama_orch.harness.timeouts import DEFAULT, TimeoutsError

SETS = [
    {
        "id": "rs-1",
        "engine": "vllm",
        "load": 0.1,
        "slots_total": 2,
        "slots_free": 2,
        "replicas": [{"id": "r0", "pool_id": "pool-a", "ready": True}],
        "slo": {"served": {"model": "hf:org/m"}, "engine_version": "0.9"},
    }
]
CAPS = {"api_version": "1.0.0", "engines": [{"engine": "vllm", "ctx_max": 8192}]}


def _transport(routes: dict[str, httpx.Response], seen: list[httpx.Request] | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return routes.get(request.url.path, httpx.Response(404, json={"message": "no"}))

    return httpx.MockTransport(handler)


def _target(**desc) -> Target:
    return Target("http://orch.test", validate(desc, "test"), "k3y")


@pytest.mark.req("OC-HARNESS-8006")
def test_flags_win_over_the_file_and_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_text(
        "url: http://a:1\nauth: {scheme: x-api-key, key_env: ORCH_KEY}\n"
        "facts: {model_ref: slo.served.model}\ntimeouts: {request_s: 30}\n"
    )
    desc = load_description(path)
    merged = desc.merged({"url": "http://b:2", "facts": {"engine_version": "slo.v"}})
    assert merged.url == "http://b:2"
    assert merged.auth.scheme is AuthScheme.X_API_KEY and merged.auth.key_env == "ORCH_KEY"
    assert (merged.facts.model_ref, merged.facts.engine_version) == ("slo.served.model", "slo.v")
    assert merged.bounds().request_s == 30 and merged.bounds().stream_s == DEFAULT.stream_s
    path.write_text("auth: {scheme: basic}\n")
    with pytest.raises(TargetDescriptionError, match=r"target.yaml: auth.scheme"):
        load_description(path)
    path.write_text("api_key: secret\n")  # keys never come from the file
    with pytest.raises(TargetDescriptionError, match="api_key"):
        load_description(path)
    with pytest.raises(TargetDescriptionError, match="header"):
        validate({"auth": {"scheme": "header"}}, "flags")
    with pytest.raises(TargetDescriptionError, match="request_x"):
        validate({"timeouts": {"request_x": 3}}, "flags")
    with pytest.raises(TimeoutsError, match="positive"):
        DEFAULT.with_overrides({"stream_s": 0})


@pytest.mark.req("OC-HARNESS-8006")
@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ({"scheme": "bearer"}, "Authorization", "Bearer k3y"),
        ({"scheme": "x-api-key"}, "X-API-Key", "k3y"),
        ({"scheme": "header", "header": "X-Orch-Token"}, "X-Orch-Token", "k3y"),
    ],
)
def test_every_auth_scheme_reaches_discovery(auth: dict, header: str, value: str) -> None:
    seen: list[httpx.Request] = []
    routes = {"/v1/capabilities": httpx.Response(200, json=CAPS)}
    routes["/v1/replicasets"] = httpx.Response(200, json=SETS)
    discover(_target(auth=auth), "1.0.0", _transport(routes, seen))
    assert all(r.headers.get(header) == value for r in seen)
    assert all("authorization" not in r.headers for r in seen if header != "Authorization")


@pytest.mark.req("OC-HARNESS-8005", "OC-HARNESS-8007")
def test_capability_data_from_enriched_replica_sets_when_the_endpoint_is_absent() -> None:
    enriched = [{**SETS[0], "api_version": "1.2.0", "ctx_max": 4096, "features": {"x": True}}]
    routes = {"/v1/replicasets": httpx.Response(200, json=enriched)}
    t = discover(_target(), "1.0.0", _transport(routes))
    assert t.capabilities_source == "replicasets"
    assert t.capabilities["api_version"] == "1.2.0"
    assert t.capabilities["engines"] == [
        {"engine": "vllm", "ctx_max": 4096, "features": {"x": True}}
    ]
    assert t.claimed() == {"x"}


@pytest.mark.req("OC-HARNESS-8007")
def test_neither_source_is_a_harness_error_naming_both() -> None:
    routes = {"/v1/replicasets": httpx.Response(200, json=SETS)}
    with pytest.raises(TargetError, match=r"/v1/capabilities answered 404.*/v1/replicasets"):
        discover(_target(), "1.0.0", _transport(routes))


@pytest.mark.req("OC-HARNESS-8005")
@pytest.mark.parametrize("version", ["2.0.0", "", "0.9"])
def test_another_major_api_version_stops_the_run(version: str) -> None:
    seen: list[httpx.Request] = []
    caps = {"api_version": version, "engines": []}
    routes = {"/v1/capabilities": httpx.Response(200, json=caps)}
    with pytest.raises(TargetError, match=r"api_version|OrchQueue v1"):
        discover(_target(), "1.0.0", _transport(routes, seen))
    assert seen[0].url.path == "/v1/capabilities"


def test_a_refused_key_names_the_scheme_and_the_variable() -> None:
    routes = {"/v1/capabilities": httpx.Response(401, json={"code": "X", "message": "no"})}
    with pytest.raises(TargetError, match=r"\$ORCH_KEY sent as X-API-Key"):
        discover(
            _target(auth={"scheme": "x-api-key", "key_env": "ORCH_KEY"}),
            "1.0.0",
            _transport(routes),
        )


@pytest.mark.req("OC-HARNESS-8007")
def test_facts_are_read_only_where_the_description_says() -> None:
    routes = {"/v1/capabilities": httpx.Response(200, json=CAPS)}
    routes["/v1/replicasets"] = httpx.Response(200, json=SETS)
    bare = discover(_target(), "1.0.0", _transport(routes))
    assert bare.groups() == [] and "--model-ref" in bare.why_no_groups()
    told = discover(
        _target(facts={"model_ref": "slo.served.model", "engine_version": "slo.engine_version"}),
        "1.0.0",
        _transport(routes),
    )
    [group] = told.groups()
    assert (group.engine, group.model_ref, group.pools) == ("vllm", "hf:org/m", ("pool-a",))
    assert told.fact(SETS[0], "engine_version") == "0.9"
    assert told.fact(SETS[0], "model_digest") is None
    override = discover(_target(model_ref="other"), "1.0.0", _transport(routes))
    assert override.groups()[0].model_ref == "other"


@pytest.mark.req("OC-HARNESS-8008")
def test_harness_tasks_carry_a_generous_deadline_never_zero() -> None:
    body = task_body(engine="vllm", model_ref="m")
    assert body["deadline_ms"] == DEFAULT.deadline_ms >= 60_000


def test_the_reference_describes_itself_in_a_shipped_file() -> None:
    desc = reference_description()
    assert desc.facts.model_ref == "slo.model_ref" and desc.url is None
    assert desc.auth.scheme is AuthScheme.BEARER
