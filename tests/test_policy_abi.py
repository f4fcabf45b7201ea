"""The plugin ABI at load time: versions, exports, imports and grants (specs/50 sections 2-3)."""

from __future__ import annotations

import pytest

from llama_orch.reference_impl.policy import PolicyLoadError
from tests._policy import ADMIT, BUDGET, host, wat_plugin

CLOCK = '(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))'
RANDOM = '(import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))'
PATH_OPEN = (
    '(import "wasi_snapshot_preview1" "path_open" '
    "(func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"
)
SOCK_SEND = (
    '(import "wasi_snapshot_preview1" "sock_send" (func (param i32 i32 i32 i32 i32) (result i32)))'
)
FD_WRITE = (
    '(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
)


def load(path, **entry):
    return host([{"path": str(path), "hooks": ["admission"], **entry}])


@pytest.mark.req("OC-POLICY-4001", "ORCH-3048")
def test_the_example_plugin_loads_as_a_pure_wasm_module_with_no_imports() -> None:
    h = load(BUDGET)
    plugin = h.plugins[0]
    assert (plugin.id, plugin.version) == ("admission-budget", "1.0.0")
    assert plugin.module.abi == (1, 0)
    assert plugin.module.imports == []  # nothing outside the snapshot can reach it
    assert h.describe()["plugins"][0] == {
        "id": "admission-budget",
        "version": "1.0.0",
        "hooks": ["admission"],
        "abi": "1.0",
    }


@pytest.mark.req("OC-POLICY-4001", "ORCH-3048")
def test_another_abi_major_is_refused_naming_the_accepted_versions(tmp_path) -> None:
    plugin = wat_plugin(tmp_path / "v2.wasm", abi=(2 << 16) | 3)
    with pytest.raises(PolicyLoadError) as err:
        load(plugin)
    message = str(err.value)
    assert "policy.plugins[0]" in message and "v2.wasm" in message
    assert "plugin ABI 2.3 is not supported" in message
    assert "accepts ABI 1.x" in message


@pytest.mark.req("OC-POLICY-4001")
def test_a_newer_minor_of_the_same_major_loads(tmp_path) -> None:
    h = load(wat_plugin(tmp_path / "v1_7.wasm", abi=(1 << 16) | 7))
    assert h.plugins[0].module.abi_version == "1.7"


@pytest.mark.req("OC-POLICY-4001", "OC-POLICY-4010")
@pytest.mark.parametrize(
    ("imports", "grant"),
    [(CLOCK, "clock"), (RANDOM, "random"), (PATH_OPEN, "filesystem")],
    ids=["clock", "random", "filesystem"],
)
def test_clock_random_and_files_are_refused_unless_granted(tmp_path, imports, grant) -> None:
    plugin = wat_plugin(tmp_path / f"{grant}.wasm", imports=imports)
    with pytest.raises(PolicyLoadError, match=f"needs the '{grant}' grant in config"):
        load(plugin)
    extra = {"filesystem_dir": str(tmp_path)} if grant == "filesystem" else {}
    h = load(plugin, grants=[grant], **extra)
    assert h.plugins[0].grants == {grant}


@pytest.mark.req("OC-POLICY-4010")
def test_raw_sockets_are_never_offered(tmp_path) -> None:
    plugin = wat_plugin(tmp_path / "sock.wasm", imports=SOCK_SEND)
    for grants in ([], ["fetch", "search", "filesystem"]):
        extra = {"filesystem_dir": str(tmp_path)} if grants else {}
        with pytest.raises(PolicyLoadError, match="raw sockets are never offered"):
            load(plugin, grants=grants, **extra)


@pytest.mark.req("OC-POLICY-4010")
def test_the_mediated_tools_need_a_tool_grant(tmp_path) -> None:
    imports = '(import "llorch" "tool_call" (func (param i32 i32) (result i32)))'
    plugin = wat_plugin(tmp_path / "tools.wasm", imports=imports)
    with pytest.raises(PolicyLoadError, match="needs a tool grant"):
        load(plugin)
    assert load(plugin, grants=["fetch"]).plugins[0].grants == {"fetch"}


@pytest.mark.req("OC-POLICY-4010")
def test_inert_wasi_output_needs_no_grant_and_goes_nowhere(tmp_path) -> None:
    # fd_write is what toolchains use for panics; the host discards it: no grant needed.
    plugin = wat_plugin(tmp_path / "stdout.wasm", imports=FD_WRITE)
    h = load(plugin)
    record = h.decide(h.plugins[0], "admission", {"task": {}})
    assert record.decision is not None and record.decision.kind == "admit"


@pytest.mark.req("ORCH-3048")
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(b"\0asm not really"), "not a valid WebAssembly module"),
        (
            lambda p: wat_plugin(p, imports='(import "env" "now" (func (result i64)))'),
            "import env::now is not part of the policy ABI",
        ),
        (lambda p: wat_plugin(p, info='{"id": "Bad Id"}'), "invalid PluginInfo"),
        (lambda p: wat_plugin(p, hooks={"placement": ADMIT}), "does not export llorch_admission"),
    ],
    ids=["garbage", "unknown-import", "bad-info", "missing-hook"],
)
def test_broken_modules_are_refused_at_load_with_the_cause(tmp_path, make, expected) -> None:
    path = tmp_path / "broken.wasm"
    make(path)
    with pytest.raises(PolicyLoadError, match=r"policy\.plugins\[0\]") as err:
        load(path)
    assert expected in str(err.value)


@pytest.mark.req("OC-POLICY-4011")
def test_a_module_whose_initial_memory_exceeds_the_bound_is_refused(tmp_path) -> None:
    plugin = wat_plugin(tmp_path / "big.wasm", memory_pages=512)  # 32 MiB
    with pytest.raises(PolicyLoadError, match="does not fit the memory bound of 16777216 bytes"):
        load(plugin, limits={"fuel": 1_000_000, "memory_bytes": 16 << 20, "wall_ms": 100})


def test_a_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(PolicyLoadError, match=r"cannot read .*nope\.wasm"):
        load(tmp_path / "nope.wasm")


def test_two_plugins_with_one_id_are_refused() -> None:
    entry = {"path": str(BUDGET), "hooks": ["admission"]}
    with pytest.raises(PolicyLoadError, match="loaded twice"):
        host([entry, entry])
