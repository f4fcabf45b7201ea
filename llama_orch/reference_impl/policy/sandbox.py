"""One plugin module in wasmtime: checked at load, run per call in a fresh, bounded instance.

Every call gets a new `Store` and instance, so no state survives between calls (purity by
construction, OC-POLICY-4001), and its own bounds (OC-POLICY-4011): fuel for CPU (about one unit
per instruction, deterministic), an epoch deadline for wall-clock time (host tool calls
included), and store limits for memory (growing past the bound fails inside the plugin). A
call that traps, runs out of either bound or answers garbage ends with an outcome, never with
an exception escaping to the caller.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import wasmtime

from llama_orch.reference_impl.policy.abi import (
    HOOK_EXPORT,
    HOST_MODULE,
    REQUIRED_EXPORTS,
    WASI,
    AbiError,
    abi_text,
    check_abi,
    check_imports,
    validate_info,
)

PAGE = 65536
TICK_S = 0.002  # epoch tick: the wall-clock bound is kept to about this precision
MAX_OUTPUT = 64 * 1024  # a decision larger than this is invalid
MAX_TOOL_REQUEST = 16 * 1024


class Outcome(StrEnum):
    """How a call ended (the `outcome` label of policy_calls_total)."""

    DECIDED = "decided"
    ABSTAINED = "abstained"
    INVALID = "invalid"
    ERROR = "error"
    TRAPPED = "trapped"
    CPU_EXCEEDED = "cpu_exceeded"
    MEMORY_EXCEEDED = "memory_exceeded"

    @property
    def aborted(self) -> bool:
        return self in (Outcome.CPU_EXCEEDED, Outcome.MEMORY_EXCEEDED)


@dataclass(frozen=True)
class Limits:
    fuel: int
    memory_bytes: int
    wall_ms: int


@dataclass(frozen=True)
class RawResult:
    """What one call produced: the parsed JSON answer, or the outcome and why not."""

    value: Any = None
    outcome: Outcome | None = None  # None: `value` holds the answer, still to be validated
    reason: str = ""
    fuel_used: int = 0
    memory_bytes: int = 0


class EpochTicker:
    """Advances the engine's epoch while calls run; idle (blocked) otherwise."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._active = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="policy-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._active == 0:
                    self._cond.wait()
            time.sleep(TICK_S)
            self._engine.increment_epoch()

    def __enter__(self) -> EpochTicker:
        with self._cond:
            self._active += 1
            self._cond.notify()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1


def new_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.parallel_compilation = False  # rayon threads do not survive a fork (gunicorn)
    # Traps by explicit checks, not by signal handlers: anything else in the process that
    # installs its own SIGILL/SIGSEGV handlers later (faulthandler does, e.g. in a nested
    # pytest session) would otherwise turn a plugin's trap into a crash of the orchestrator.
    config.signals_based_traps = False
    return wasmtime.Engine(config)


ToolHandler = Callable[[bytes], bytes]


class SandboxedModule:
    """A loaded plugin: module checked against the ABI and its grants, ready to call."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        ticker: EpochTicker,
        wasm: bytes,
        *,
        name: str,
        grants: set[str],
        limits: Limits,
        filesystem_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.limits = limits
        self._engine = engine
        self._ticker = ticker
        self._fs_dir = filesystem_dir
        self._lock = threading.Lock()
        self._tool: ToolHandler | None = None
        self._pending: bytes = b""
        try:
            module = wasmtime.Module(engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise AbiError(f"not a valid WebAssembly module: {_first_line(exc)}") from None
        imports = [(i.module, i.name or "") for i in module.imports]
        check_imports(imports, grants)
        exports = {e.name for e in module.exports}
        missing = [e for e in REQUIRED_EXPORTS if e not in exports]
        if missing:
            raise AbiError(f"missing ABI exports: {', '.join(missing)}")
        self.exports = exports
        self.imports = imports
        self._wasi = any(m == WASI for m, _ in imports)
        linker = wasmtime.Linker(engine)
        if self._wasi:
            linker.define_wasi()
        if any(m == HOST_MODULE for m, _ in imports):
            self._define_tools(linker)
        try:
            self._pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise AbiError(f"cannot link the module: {_first_line(exc)}") from None
        self.abi = check_abi(self._scalar("llorch_abi"))
        info = self.call("llorch_info", None)
        if info.outcome is not None:
            raise AbiError(f"llorch_info failed ({info.outcome.value}): {info.reason}")
        self.info = validate_info(info.value)

    @property
    def abi_version(self) -> str:
        return abi_text((self.abi[0] << 16) | self.abi[1])

    def serves(self, hook: str) -> bool:
        return HOOK_EXPORT[hook] in self.exports

    # -- host functions ------------------------------------------------------------------------

    def _define_tools(self, linker: wasmtime.Linker) -> None:
        i32 = wasmtime.ValType.i32()
        linker.define_func(
            HOST_MODULE, "tool_call", wasmtime.FuncType([i32, i32], [i32]), self._tool_call, True
        )
        linker.define_func(
            HOST_MODULE, "tool_read", wasmtime.FuncType([i32], []), self._tool_read, True
        )

    def _tool_call(self, caller: wasmtime.Caller, ptr: int, length: int) -> int:
        memory = caller.get("memory")
        if self._tool is None or not isinstance(memory, wasmtime.Memory):
            self._pending = b""
            return 0
        length = min(length, MAX_TOOL_REQUEST)
        request = bytes(memory.read(caller, ptr, ptr + length))
        self._pending = self._tool(request)
        return len(self._pending)

    def _tool_read(self, caller: wasmtime.Caller, ptr: int) -> None:
        memory = caller.get("memory")
        if isinstance(memory, wasmtime.Memory) and self._pending:
            memory.write(caller, self._pending, ptr)
        self._pending = b""

    # -- calls ---------------------------------------------------------------------------------

    def _store(self, fuel: int) -> wasmtime.Store:
        store = wasmtime.Store(self._engine)
        store.set_limits(
            memory_size=self.limits.memory_bytes,
            table_elements=100_000,
            instances=1,
            tables=4,
            memories=1,
        )
        store.set_fuel(fuel)
        store.set_epoch_deadline(max(1, math.ceil(self.limits.wall_ms / 1000 / TICK_S)))
        if self._wasi:
            wasi = wasmtime.WasiConfig()
            if self._fs_dir is not None:
                wasi.preopen_dir(str(self._fs_dir), "/data", False)
            store.set_wasi(wasi)
        return store

    def _scalar(self, export: str) -> int:
        with self._ticker:
            store = self._store(self.limits.fuel)
            try:
                instance = self._pre.instantiate(store)
                return int(instance.exports(store)[export](store))
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                why = _first_line(exc)
                if _memory_words(why):
                    bound = self.limits.memory_bytes
                    raise AbiError(
                        f"does not fit the memory bound of {bound} bytes: {why}"
                    ) from None
                raise AbiError(f"{export} failed: {why}") from None

    def call(
        self, export: str, payload: bytes | None, tool: ToolHandler | None = None
    ) -> RawResult:
        """Run one export in a fresh instance: `export()` or `export(ptr, len)` of `payload`."""
        with self._lock, self._ticker:
            self._tool = tool
            try:
                return self._call(export, payload)
            finally:
                self._tool = None
                self._pending = b""

    def _call(self, export: str, payload: bytes | None) -> RawResult:
        store = self._store(self.limits.fuel)
        memory: wasmtime.Memory | None = None
        try:
            instance = self._pre.instantiate(store)
            exports = instance.exports(store)
            mem = exports["memory"]
            assert isinstance(mem, wasmtime.Memory)
            memory = mem
            fn = exports[export]
            if payload is None:
                packed = fn(store)
            else:
                ptr = exports["llorch_alloc"](store, len(payload))
                if not ptr:
                    return self._failed(store, memory, Outcome.ERROR, "llorch_alloc returned 0")
                memory.write(store, payload, ptr)
                packed = fn(store, ptr, len(payload))
        except wasmtime.Trap as exc:
            return self._trap(store, memory, exc)
        except wasmtime.WasmtimeError as exc:
            return self._failed(store, memory, Outcome.TRAPPED, _first_line(exc))
        return self._read(store, memory, int(packed))

    def _read(self, store: wasmtime.Store, memory: wasmtime.Memory, packed: int) -> RawResult:
        packed &= (1 << 64) - 1
        ptr, length = packed >> 32, packed & 0xFFFFFFFF
        size = memory.data_len(store)
        if packed == 0 or length > MAX_OUTPUT or ptr + length > size:
            why = f"answer pointer out of range (ptr={ptr}, len={length}, memory={size})"
            return self._failed(store, memory, Outcome.INVALID, why)
        raw = bytes(memory.read(store, ptr, ptr + length))
        try:
            value = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._failed(store, memory, Outcome.INVALID, f"answer is not JSON: {exc}")
        return RawResult(value, None, "", self._fuel(store), size)

    def _fuel(self, store: wasmtime.Store) -> int:
        try:
            return self.limits.fuel - store.get_fuel()
        except wasmtime.WasmtimeError:  # pragma: no cover - fuel is always on
            return 0

    def _trap(
        self, store: wasmtime.Store, memory: wasmtime.Memory | None, exc: wasmtime.Trap
    ) -> RawResult:
        code = exc.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            why = f"fuel bound of {self.limits.fuel} exhausted"
            return self._failed(store, memory, Outcome.CPU_EXCEEDED, why)
        if code == wasmtime.TrapCode.INTERRUPT:
            why = f"wall-clock bound of {self.limits.wall_ms} ms exceeded"
            return self._failed(store, memory, Outcome.CPU_EXCEEDED, why)
        return self._failed(store, memory, Outcome.TRAPPED, _first_line(exc))

    def _failed(
        self, store: wasmtime.Store, memory: wasmtime.Memory | None, outcome: Outcome, why: str
    ) -> RawResult:
        """A failed call; one that ran into its memory bound is reported as such."""
        size = memory.data_len(store) if memory is not None else 0
        at_bound = memory is not None and near_bound(size, self.limits.memory_bytes)
        if outcome in (Outcome.TRAPPED, Outcome.ERROR) and (at_bound or _memory_words(why)):
            why = f"memory bound of {self.limits.memory_bytes} bytes reached ({why})"
            outcome = Outcome.MEMORY_EXCEEDED
        return RawResult(None, outcome, why, self._fuel(store), size)


def near_bound(size: int, bound: int) -> bool:
    """A failed call whose memory is within an eighth of its bound (at least a page) ran
    into the bound: growing failed, and the allocator gave up in the last large request."""
    return size + max(PAGE, bound // 8) > bound


def _memory_words(message: str) -> bool:
    text = message.lower()
    return "memory minimum size" in text or "outofmemory" in text or "resource limit" in text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else exc.__class__.__name__
