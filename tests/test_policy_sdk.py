"""The policy SDK (specs/51): no I/O of its own, typed tool wrappers, redaction with hooks,
the `llorch policy` workflow, and example plugins that are what their sources say.

Plugins here are built with the SDK's own toolchain (Zig from PyPI), as an author would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from llama_orch.cli.main import main as llorch
from llama_orch.policy_sdk import ZIG_SDK, abi_schema
from llama_orch.policy_sdk.build import build
from llama_orch.policy_sdk.scaffold import HOOKS, example_snapshot
from llama_orch.reference_impl.config.policy import PolicyConfig
from llama_orch.reference_impl.policy import PolicyHost
from tests._policy import EXAMPLES, admission_snapshot
from tests._server import serve_asgi

FIXTURE = Path(__file__).parent / "fixtures" / "policy" / "sdk_tools.zig"


@pytest.fixture(scope="module")
def tools_plugin(tmp_path_factory) -> Path:
    return build(FIXTURE, tmp_path_factory.mktemp("sdk") / "sdk_tools.wasm").output


class Site:
    """A loopback page and search backend."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/search":
            body = json.dumps(
                {"results": [{"title": "t", "url": "http://127.0.0.1/x", "snippet": "s"}]}
            )
            ctype = b"application/json"
        else:
            body, ctype = "y" * 500, b"text/plain"
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]}
        )
        await send({"type": "http.response.body", "body": body.encode()})


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_asgi(Site(), what="sdk loopback site") as url:
        yield url


def tool_host(plugin: Path, site: str, config: dict) -> tuple[PolicyHost, list[dict]]:
    policy = PolicyConfig.model_validate(
        {
            "plugins": [
                {
                    "path": str(plugin),
                    "hooks": ["admission"],
                    "grants": ["fetch", "search"],
                    "config": config,
                }
            ],
            "tools": {
                "enabled": True,
                "domains": {"allow": ["127.0.0.1"]},
                "search_endpoint": f"{site}/search",
            },
        }
    )
    host = PolicyHost.from_config(policy)
    seen: list[dict] = []
    invoke = host.tools.invoke

    def recording(request, **kw):
        seen.append(json.loads(json.dumps(request)))
        return invoke(request, **kw)

    host.tools.invoke = recording
    return host, seen


def imports_of(path: Path) -> list[tuple[str, str]]:
    module = wasmtime.Module.from_file(wasmtime.Engine(), str(path))
    return [(i.module, i.name or "") for i in module.imports]


@pytest.mark.req("OC-POLICY-SDK-4110")
def test_the_sdk_source_uses_no_io_api() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in sorted(ZIG_SDK.parent.glob("*.zig")))
    assert "redactText" in source  # both files of the SDK are read
    forbidden = ("std.fs", "std.net", "std.http", "std.posix", "std.os", "std.process", "std.io")
    assert [f for f in forbidden if f in source] == []
    externs = re.findall(r'extern "(\w+)" fn (\w+)', source)
    assert externs == [("llorch", "tool_call"), ("llorch", "tool_read")]  # the host's tools only


@pytest.mark.req("OC-POLICY-SDK-4110")
def test_plugins_built_with_the_sdk_import_nothing_unless_they_use_a_tool(tools_plugin) -> None:
    for example in sorted(EXAMPLES.glob("*/plugin.wasm")):
        assert imports_of(example) == [], example
    assert imports_of(tools_plugin) == [("llorch", "tool_call"), ("llorch", "tool_read")]


@pytest.mark.req("OC-POLICY-SDK-4111")
def test_the_typed_wrappers_pass_hints_and_the_correlation_id(tools_plugin, site) -> None:
    config = {"url": f"{site}/page", "query": "weather"}
    host, seen = tool_host(tools_plugin, site, config)
    record = host.decide(host.plugins[0], "admission", admission_snapshot(), "corr-sdk-1")
    fetch, search = seen
    assert fetch == {
        "tool_abi": "1.0",
        "tool": "fetch",
        "args": {"url": f"{site}/page"},
        "hints": {"allowed_domains": ["127.0.0.1"], "max_bytes": 64},
        "correlation_id": "corr-sdk-1",
    }
    assert search["args"] == {"query": "weather", "max_results": 3}
    assert search["correlation_id"] == "corr-sdk-1" and search["hints"] == {}
    # The typed result came back into the plugin: 64 bytes (its hint), cut, one search hit.
    assert "fetch allow/ok bytes=64 truncated=true" in record.decision.message
    assert "search ok hits=1" in record.decision.message


@pytest.mark.req("OC-POLICY-SDK-4112")
def test_redaction_runs_before_data_leaves_the_plugin_with_the_authors_hook(
    tools_plugin, site
) -> None:
    config = {
        "url": site.replace("http://", "http://admin:pw-123@") + "/page?token=abc&q=visible",
        "query": "mail alice@example.com key sk-abcdefghijklmnop123 about project-nightjar",
    }
    host, seen = tool_host(tools_plugin, site, config)
    record = host.decide(host.plugins[0], "admission", admission_snapshot())
    fetch, search = seen
    assert fetch["args"]["url"] == site.replace("http://", "http://[REDACTED]@") + (
        "/page?token=[REDACTED]&q=visible"
    )
    assert search["args"]["query"] == "mail [EMAIL] key [REDACTED] about [PROJECT]"
    message = record.decision.message
    assert "ops@example.com" not in message and "[EMAIL]" in message
    assert "project-nightjar" not in message and "[PROJECT]" in message


@pytest.mark.req("OC-POLICY-SDK-4112")
def test_redaction_follows_its_configuration(tools_plugin, site) -> None:
    config = {
        "url": f"{site}/page?q=private-term",
        "query": "find nightjar-internal",
        "redaction": {"query_params": ["q"], "literals": ["nightjar-internal"], "emails": False},
    }
    host, seen = tool_host(tools_plugin, site, config)
    record = host.decide(host.plugins[0], "admission", admission_snapshot())
    assert seen[0]["args"]["url"].endswith("/page?q=[REDACTED]")
    assert seen[1]["args"]["query"] == "find [REDACTED]"
    assert "ops@example.com" in record.decision.message  # e-mail redaction switched off


@pytest.mark.req("OC-POLICY-SDK-4112", "OC-POLICY-4010")
def test_a_plugin_without_a_tool_grant_cannot_load_the_tools(tools_plugin) -> None:
    from llama_orch.reference_impl.policy import PolicyLoadError

    config = PolicyConfig.model_validate(
        {"plugins": [{"path": str(tools_plugin), "hooks": ["admission"]}]}
    )
    with pytest.raises(PolicyLoadError, match="needs a tool grant"):
        PolicyHost.from_config(config)


def test_the_example_snapshots_follow_the_abi_schema() -> None:
    names = {"admission": "AdmissionSnapshot", "placement": "PlacementSnapshot"}
    names["session"] = "SessionSnapshot"
    for hook in HOOKS:
        schema = {"$defs": abi_schema()["$defs"], "$ref": f"#/$defs/{names[hook]}"}
        assert Draft202012Validator(schema).is_valid(example_snapshot(hook)), hook


def test_new_build_and_test_work_end_to_end(tmp_path) -> None:
    runner = CliRunner()
    plugin = tmp_path / "my_plugin"
    made = runner.invoke(
        llorch, ["policy", "new", str(plugin), "--hook", "admission", "--hook", "session"]
    )
    assert made.exit_code == 0, made.output
    built = runner.invoke(llorch, ["policy", "build", str(plugin / "plugin.zig")])
    assert built.exit_code == 0, built.output
    tested = runner.invoke(
        llorch,
        ["policy", "test", str(plugin / "plugin.wasm"), "--snapshots", str(plugin / "snapshots")],
    )
    assert tested.exit_code == 0, tested.output
    assert "my-plugin 0.1.0 (ABI 1.0)" in tested.output
    assert re.search(r"admission\.json\s+admission\s+abstained\s+abstain\s+yes", tested.output)
    assert re.search(r"session\.json\s+session\s+decided\s+continue\s+yes", tested.output)
    assert "2 ok, 0 failed" in tested.output


def test_policy_test_fails_on_bad_snapshots_aborts_and_unmet_expectations(tmp_path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    snap = admission_snapshot(max_tokens=333)
    (calls / "a-spin.json").write_text(json.dumps({"hook": "admission", "snapshot": snap}))
    rejected = admission_snapshot(max_tokens=337)
    expect = {"decision": "admit"}
    (calls / "b-expect.json").write_text(
        json.dumps({"hook": "admission", "snapshot": rejected, "expect": expect})
    )
    (calls / "c-bad.json").write_text(json.dumps({"hook": "admission", "snapshot": {"task": {}}}))
    (calls / "d-ok.json").write_text(
        json.dumps(
            {
                "hook": "admission",
                "snapshot": rejected,
                "expect": {"decision": "reject", "reason": "probe_rejected"},
            }
        )
    )
    probe = EXAMPLES / "llorch_probe" / "plugin.wasm"
    result = CliRunner().invoke(
        llorch, ["policy", "test", str(probe), "--snapshots", str(calls), "--fuel", "1000000"]
    )
    assert result.exit_code == 1, result.output
    assert re.search(r"a-spin\.json\s+admission\s+cpu_exceeded\s+-\s+yes", result.output)
    assert "b-expect.json: decision='reject' (expected 'admit')" in result.output
    assert "c-bad.json: not a valid admission snapshot" in result.output
    assert re.search(
        r"d-ok\.json\s+admission\s+decided\s+reject:probe_rejected\s+yes", result.output
    )
    assert "1 ok, 3 failed" in result.output


@pytest.mark.slow
def test_committed_example_plugins_are_built_from_their_sources(tmp_path) -> None:
    """The .wasm files in examples/policies are exactly what their sources build to (the
    builds are reproducible), so what the reference and the harness load is what is reviewed."""
    for source in sorted(EXAMPLES.glob("*/plugin.zig")):
        fresh = build(source, tmp_path / f"{source.parent.name}.wasm")
        committed = source.with_suffix(".wasm").read_bytes()
        assert fresh.output.read_bytes() == committed, f"{source}: run `make plugins`"


def test_the_version_numbers_agree_across_zig_python_and_the_schema() -> None:
    """One ABI, one tool ABI and one SDK version, wherever they are written (the release rule
    in CHANGELOG.md raises them together)."""
    from llama_orch.policy_sdk import ABI_VERSION, SDK_VERSION, TOOL_ABI_VERSION

    zig = ZIG_SDK.read_text(encoding="utf-8")
    major = re.search(r"pub const abi_major: u32 = (\d+);", zig)
    minor = re.search(r"pub const abi_minor: u32 = (\d+);", zig)
    assert major and minor and (int(major[1]), int(minor[1])) == ABI_VERSION
    assert f'pub const sdk_version = "{SDK_VERSION}";' in zig
    assert f'pub const tool_abi = "{TOOL_ABI_VERSION[0]}.{TOOL_ABI_VERSION[1]}";' in zig
    schema = abi_schema()
    assert schema["x-abi-version"] == f"{ABI_VERSION[0]}.{ABI_VERSION[1]}"
    assert schema["x-tool-abi-version"] == f"{TOOL_ABI_VERSION[0]}.{TOOL_ABI_VERSION[1]}"
    changelog = (ZIG_SDK.parent.parent / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {SDK_VERSION}" in changelog
