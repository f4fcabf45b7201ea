"""The config model, its loader, the generated JSON schema, the examples and `llorch config`."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from llama_orch.cli.main import main
from llama_orch.reference_impl.config import (
    DEFAULT_SCHEMA_PATH,
    AdapterKind,
    ConfigError,
    FullPolicy,
    OrchestratorConfig,
    PreemptionMode,
    Priority,
    TrustMode,
    config_json_schema,
    load_config,
    parse_config,
    render_schema,
    schema_diff,
)

ROOT = Path(__file__).resolve().parent.parent
# Orchestrator configs; `*.target.yaml` files describe targets for the harness instead.
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if ".target." not in p.name)

POOL = """\
pools:
  - id: p0
    engine: llamacpp
    adapter: mock
    model: repo:org/name
    devices: [0]
"""


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _pool(**fields: object) -> dict[str, object]:
    pool: dict[str, object] = {
        "id": "p0",
        "engine": "llamacpp",
        "adapter": "mock",
        "model": "repo:org/name",
        "devices": [0],
    }
    pool.update(fields)
    return pool


def _errors(config: dict[str, object]) -> str:
    text = json.dumps(config)  # JSON is YAML: reuse the loader and its messages.
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="inline.yaml")
    return str(info.value)


# --- schema generation -----------------------------------------------------------------------


@pytest.mark.req("OC-CONFIG-6010")
def test_schema_generation_is_byte_identical_and_committed() -> None:
    first, second = render_schema(), render_schema()
    assert first == second
    assert first.endswith("}\n")
    assert DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8") == first
    assert schema_diff(DEFAULT_SCHEMA_PATH) == ""


@pytest.mark.req("OC-CONFIG-6010")
def test_schema_header_and_dialect() -> None:
    schema = config_json_schema()
    assert list(schema)[:3] == ["$schema", "$id", "title"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.req("OC-CONFIG-6001")
def test_schema_forbids_unknown_keys_on_every_object() -> None:
    schema = config_json_schema()
    objects = {"(root)": schema, **schema["$defs"]}
    for name, node in objects.items():
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, name
    validator = jsonschema.Draft202012Validator(schema)
    data = YAML(typ="safe").load(POOL)
    assert validator.is_valid(data)
    data["pools"][0]["queue"] = {"capacity": 4, "typo": 1}
    assert not validator.is_valid(data)


# --- examples --------------------------------------------------------------------------------


def test_the_three_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"mock.yaml", "llamacpp-cpu.yaml", "sim-multi-engine.yaml"} <= names


@pytest.mark.req("OC-CONFIG-6002")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llama_orch.reference_impl.config"):
        config = load_config(path, mode="strict")
    assert config.pools
    assert not caplog.records
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(config_json_schema()).validate(data)


def test_examples_cover_their_roles() -> None:
    mock = load_config(ROOT / "examples" / "mock.yaml")
    assert all(p.adapter == AdapterKind.MOCK for p in mock.pools)
    cpu = load_config(ROOT / "examples" / "llamacpp-cpu.yaml")
    (pool,) = cpu.pools
    assert pool.allow_cpu_inference and pool.devices == [] and pool.model_sha256
    assert cpu.model_path_for(pool) is not None and cpu.model_path_for(pool).is_absolute()
    sim = load_config(ROOT / "examples" / "sim-multi-engine.yaml")
    assert sorted(p.engine.value for p in sim.pools) == ["llamacpp", "tgi", "triton", "vllm"]
    assert all(p.endpoint and p.endpoint.startswith("http://127.0.0.1:") for p in sim.pools)


# --- unknown keys: strict vs compat ----------------------------------------------------------


@pytest.mark.req("OC-CONFIG-6001", "ORCH-3030")
def test_unknown_key_is_fatal_in_strict_mode(tmp_path: Path) -> None:
    path = _write(tmp_path, POOL + "    queue: {capacity: 4, capcity: 8}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:7: pools[0].queue.capcity: unknown key" in message
    assert [i.path for i in info.value.issues] == ["pools[0].queue.capcity"]


@pytest.mark.req("OC-CONFIG-6001", "ORCH-3030")
def test_unknown_key_is_logged_not_fatal_in_compat_mode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path, "future_key: 1\n" + POOL + "    queue: {capacity: 4, capcity: 8}\n")
    with caplog.at_level(logging.WARNING, logger="llama_orch.reference_impl.config"):
        config = load_config(path, mode="compat")
    assert config.pools[0].queue.capacity == 4
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == 2
    assert any("future_key" in m and f"{path}:1" in m for m in logged)
    assert any("pools[0].queue.capcity" in m for m in logged)


@pytest.mark.req("OC-CONFIG-6001", "ORCH-3030")
def test_mode_comes_from_argument_then_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path, "validation: compat\nextra: 1\n" + POOL)
    with caplog.at_level(logging.WARNING, logger="llama_orch.reference_impl.config"):
        assert load_config(path).validation.value == "compat"
    assert "extra" in caplog.text
    with pytest.raises(ConfigError, match="extra: unknown key"):
        load_config(path, mode="strict")


@pytest.mark.req("OC-CONFIG-6001")
def test_compat_mode_still_rejects_invalid_values(caplog: pytest.LogCaptureFixture) -> None:
    text = POOL + "    typo: 1\n    queue: {full_policy: drop_all}\n"
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError) as info:
        parse_config(text, mode="compat")
    assert [i.path for i in info.value.issues] == ["pools[0].queue.full_policy"]
    assert "pools[0].typo" in caplog.text


# --- error messages --------------------------------------------------------------------------


@pytest.mark.req("ORCH-3030")
def test_wrong_type_and_bad_enum_name_file_line_path_and_expectation(tmp_path: Path) -> None:
    path = _write(tmp_path, POOL + '    ctx: "8192"\n    queue:\n      full_policy: drop_all\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert lines == [
        f"{path}:7: pools[0].ctx: expected a valid integer, got '8192'",
        f"{path}:9: pools[0].queue.full_policy: expected 'reject', 'drop-lru' or "
        "'shed-low-priority', got 'drop_all'",
    ]


@pytest.mark.req("ORCH-3030")
def test_missing_required_keys_are_named() -> None:
    message = _errors({"pools": [{"id": "p0", "engine": "tgi"}]})
    assert "pools[0].model: required key is missing" in message
    assert "pools[0].devices: required key is missing" in message
    assert "inline.yaml:1:" in message


@pytest.mark.req("ORCH-3030")
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pools: [\n", "bad.yaml:2: invalid YAML"),
        ("", "bad.yaml:1: expected a mapping of config keys"),
        ("- a\n", "got a list"),
        ("pools: []\npools: []\n", "duplicate key"),
        ("pools: !!python/object:os.system {}\n", "bad.yaml:1: invalid YAML"),
    ],
)
def test_unreadable_yaml_is_a_config_error(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, text, "bad.yaml"))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "nope.yaml")


# --- pool rules ------------------------------------------------------------------------------


@pytest.mark.req("ORCH-3012")
def test_tensor_split_is_opt_in() -> None:
    config = OrchestratorConfig.model_validate({"pools": [_pool(devices=[0, 1])]})
    assert config.pools[0].tensor_split is None
    assert config.pools[0].homogeneous is False
    split = OrchestratorConfig.model_validate(
        {"pools": [_pool(devices=[0, 1, 2], tensor_split=[0.33, 0.33, 0.34])]}
    )
    assert split.pools[0].tensor_split == [0.33, 0.33, 0.34]


@pytest.mark.req("ORCH-3012")
@pytest.mark.parametrize(
    ("devices", "split", "expected"),
    [
        ([0, 1], [1.0], "expected one ratio per device (2), got 1"),
        ([0, 1], [0.5, 0.6], "ratios must sum to 1.0"),
        ([0, 1], [1.0, 0.0], "greater than 0"),
        ([0], [], "expected one ratio per device (1), got 0"),
    ],
)
def test_tensor_split_must_match_devices(
    devices: list[int], split: list[float], expected: str
) -> None:
    message = _errors({"pools": [_pool(devices=devices, tensor_split=split)]})
    assert "pools[0].tensor_split" in message
    assert expected in message


@pytest.mark.req("ORCH-3030")
def test_pool_without_devices_needs_the_cpu_carve_out() -> None:
    message = _errors({"pools": [_pool(devices=[])]})
    assert "pools[0].devices: a pool needs at least one GPU index" in message
    ok = OrchestratorConfig.model_validate({"pools": [_pool(devices=[], allow_cpu_inference=True)]})
    assert ok.pools[0].allow_cpu_inference
    both = OrchestratorConfig.model_validate({"pools": [_pool(allow_cpu_inference=True)]})
    assert both.pools[0].devices == [0]
    assert "device indices must be unique" in _errors({"pools": [_pool(devices=[1, 1])]})


@pytest.mark.req("ORCH-3030")
def test_duplicate_pool_ids_are_named() -> None:
    message = _errors({"pools": [_pool(), _pool(devices=[1]), _pool(id="p1")]})
    assert "pools[1].id: duplicate pool id 'p0' (first defined at pools[0])" in message
    assert "pools[2]" not in message


@pytest.mark.req("ORCH-3030")
def test_undefined_sampler_profile_is_rejected() -> None:
    message = _errors({"pools": [_pool(sampler_profile_version="v9")]})
    assert "pools[0].sampler_profile_version: names no defined sampler profile" in message
    assert "greedy, v1" in message
    custom = {"v9": {"temperature": 0.2, "top_k": 10, "top_p": 0.9, "min_p": 0.0}}
    config = OrchestratorConfig.model_validate(
        {"pools": [_pool(sampler_profile_version="v9")], "sampler_profiles": custom}
    )
    assert set(config.sampler_profiles) == {"v1", "greedy", "v9"}
    assert config.sampler_profile("greedy").top_k == 1


@pytest.mark.req("ORCH-3030")
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"endpoint": "http://127.0.0.1:1"}, "pools[0].endpoint: the mock adapter runs in process"),
        ({"adapter": None}, "pools[0].endpoint: set exactly one of endpoint"),
        ({"adapter": "vllm"}, "pools[0].adapter: adapter must be 'mock' or the engine's own"),
        (
            {"adapter": None, "engine": "vllm", "launch": {}},
            "pools[0].launch: launch starts llama-server only",
        ),
        ({"adapter": None, "launch": {}}, "pools[0].model_path: launch needs model_path"),
        (
            {"adapter": None, "endpoint": "http://h:1", "replicas": 2},
            "pools[0].replicas: an endpoint is one server",
        ),
        ({"adapter": None, "endpoint": "ftp://h"}, "pools[0].endpoint: expected an http(s) URL"),
        ({"model_path": "m.gguf"}, "pools[0].model_sha256: model_path needs model_sha256"),
        ({"model": "org/name"}, "pools[0].model: expected a model reference"),
        ({"id": "bad id"}, "pools[0].id: expected an id of letters"),
    ],
)
def test_pool_backend_rules(fields: dict[str, object], expected: str) -> None:
    assert expected in _errors({"pools": [_pool(**fields)]})


def test_launch_rejects_flags_the_pool_manager_sets() -> None:
    pool = _pool(adapter=None, model_path="m.gguf", model_sha256="a" * 64)
    pool["launch"] = {"args": ["--parallel", "1", "--port=9000"]}
    assert "pools[0].launch.args[2]: --port is set by the pool manager" in _errors(
        {"pools": [pool]}
    )


def test_auth_has_one_key_source_and_no_literal_keys() -> None:
    both = {"api_keys_env": "KEYS", "api_keys_file": "/etc/keys"}
    assert "auth.api_keys_file: set api_keys_env or api_keys_file, not both" in _errors(
        {"pools": [_pool()], "auth": both}
    )
    literal = {"tenants": [{"id": "t1", "api_key": "sk-123"}]}
    assert "auth.tenants[0].api_key: unknown key" in _errors({"pools": [_pool()], "auth": literal})


def test_fairness_tenants_must_be_known_when_auth_lists_tenants() -> None:
    pool = _pool(admission={"fairness": {"tenants": [{"id": "ghost", "weight": 2}]}})
    auth = {"api_keys_env": "KEYS", "tenants": [{"id": "t1", "api_key_env": "T1_KEY"}]}
    message = _errors({"pools": [pool], "auth": auth})
    assert "pools[0].admission.fairness.tenants[0].id: tenant is not defined" in message


def test_defaults_follow_the_spec() -> None:
    config = parse_config(POOL)
    pool = config.pools[0]
    assert config.sessions.ttl_ms == 600000 and config.sessions.max_turns == 8
    assert (config.timeouts.wall_ms, config.timeouts.idle_ms) == (60000, 5000)
    assert config.timeouts_for(pool) is config.timeouts
    assert config.catalog.trust_policy.mode == TrustMode.STRICT
    assert (
        config.catalog.trust_policy.require_signature and config.catalog.trust_policy.require_sbom
    )
    assert (pool.queue.capacity, pool.queue.full_policy) == (256, FullPolicy.REJECT)
    weights = {p.name: p.weight for p in pool.admission.priorities}
    assert weights == {Priority.INTERACTIVE: 8, Priority.BATCH: 1}
    assert pool.admission.fairness.kind.value == "wfq"
    assert pool.deadlines.edf and pool.deadlines.reject_infeasible
    assert pool.preemption.mode == PreemptionMode.SOFT
    assert pool.preload and pool.require_same_engine_version and pool.replicas == 1
    assert pool.sampler_profile_version == "v1" and not pool.allow_cpu_inference


def test_adapter_defaults_to_the_engine() -> None:
    config = parse_config(
        POOL.replace("adapter: mock", "adapter: null") + "    endpoint: http://127.0.0.1:9\n"
    )
    assert config.pools[0].adapter == AdapterKind.LLAMACPP


# --- CLI -------------------------------------------------------------------------------------


@pytest.mark.req("OC-CONFIG-6002")
def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "validate", *map(str, EXAMPLES)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.count(": ok (") == len(EXAMPLES)
    bad = _write(tmp_path, POOL + "    ctx: -1\n    queue: {full_policy: nope}\n")
    result = runner.invoke(main, ["config", "validate", str(bad)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith(str(bad))]
    assert len(errors) == 2
    assert "pools[0].ctx" in errors[0] and "pools[0].queue.full_policy" in errors[1]


@pytest.mark.req("OC-CONFIG-6001")
def test_cli_validate_compat_mode_warns(tmp_path: Path) -> None:
    path = _write(tmp_path, "later: true\n" + POOL)
    runner = CliRunner()
    strict = runner.invoke(main, ["config", "validate", str(path)])
    assert strict.exit_code == 1 and "later: unknown key" in strict.output
    compat = runner.invoke(main, ["config", "validate", "--mode", "compat", str(path)])
    assert compat.exit_code == 0, compat.output
    assert "warning:" in compat.output and "later" in compat.output


@pytest.mark.req("OC-CONFIG-6010")
def test_cli_schema_writes_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "schema" / "config.schema.json"
    runner = CliRunner()
    missing = runner.invoke(main, ["config", "schema", "--check", "--output", str(out)])
    assert missing.exit_code == 1 and "is missing" in missing.output
    wrote = runner.invoke(main, ["config", "schema", "--output", str(out)])
    assert wrote.exit_code == 0
    assert out.read_text(encoding="utf-8") == render_schema()
    current = runner.invoke(main, ["config", "schema", "--check", "--output", str(out)])
    assert current.exit_code == 0 and "up to date" in current.output
    out.write_text(render_schema().replace('"default": 256', '"default": 128'))
    stale = runner.invoke(main, ["config", "schema", "--check", "--output", str(out)])
    assert stale.exit_code == 1
    assert '-          "default": 128,' in stale.output
    assert '+          "default": 256,' in stale.output
    assert "is stale" in stale.output
