"""GPU discovery through NVML, and the placement check that binds a pool to its device mask.

Discovery is a plain function returning `GpuInfo` records (or raising `NvmlUnavailable`), so
tests pass a fake one; the pool manager never touches pynvml itself. `place_pool` is pure: it
decides from the pool's settings, the inventory and the model's footprint whether the pool
may start, on which devices (`CUDA_VISIBLE_DEVICES`), and with which split (specs/30 sections
3 and 4: no CPU fallback, masks honoured, heterogeneous splits only when explicit and capped
by what each device can hold).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger("llama_orch.reference_impl.pool")

NO_GPU = "no NVIDIA GPU"
GIB = 1 << 30
# Rough KV-cache bytes per context token (fp16 K and V of a mid-sized model with grouped-query
# attention); only used for the headroom check, never sent to an engine.
KV_BYTES_PER_TOKEN = 64 * 1024


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU as NVML reports it; `index` is NVML's (PCI bus order)."""

    index: int
    name: str
    uuid: str
    memory_total: int
    memory_used: int
    memory_free: int
    utilization_pct: float | None = None  # None where the device does not report it


class NvmlUnavailable(RuntimeError):
    """NVML could not be initialised: no driver, no library, or no GPU."""


Discover = Callable[[], list[GpuInfo]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_discover(nvml: ModuleType | Any = None) -> list[GpuInfo]:
    """Every GPU NVML sees, with memory and utilisation; `nvml` defaults to pynvml."""
    if nvml is None:
        try:
            import pynvml as nvml  # nvidia-ml-py
        except ImportError as exc:  # pragma: no cover - the package is a dependency
            raise NvmlUnavailable(f"pynvml is not installed ({exc})") from exc
    try:
        nvml.nvmlInit()
    except Exception as exc:
        raise NvmlUnavailable(str(exc) or exc.__class__.__name__) from exc
    try:
        out = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                util: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:  # NVML_ERROR_NOT_SUPPORTED on some boards
                util = None
            out.append(
                GpuInfo(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    memory_total=int(mem.total),
                    memory_used=int(mem.used),
                    memory_free=int(mem.free),
                    utilization_pct=util,
                )
            )
        return out
    except Exception as exc:
        raise NvmlUnavailable(f"NVML query failed: {exc}") from exc
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


@dataclass(frozen=True)
class Inventory:
    """The result of one discovery: GPUs by index, or why there are none."""

    gpus: dict[int, GpuInfo]
    error: str | None = None


class DeviceRegistry:
    """Runs discovery and says once, plainly, when NVML is unavailable."""

    def __init__(self, discover: Discover = nvml_discover) -> None:
        self._discover = discover
        self._said: str | None = None

    def inventory(self) -> Inventory:
        try:
            gpus = self._discover()
        except NvmlUnavailable as exc:
            error = str(exc)
            if self._said != error:
                self._said = error
                log.warning(
                    f"NVML unavailable: {error} — only CPU carve-out pools will serve",
                    extra={"event": "nvml_unavailable", "error": error},
                )
            return Inventory({}, error)
        if self._said is not None:
            log.info("NVML available again", extra={"event": "nvml_available"})
            self._said = None
        return Inventory({g.index: g for g in gpus})

    def sample(self) -> list[GpuInfo]:
        """Current GPUs for the `vram_used_bytes` / `gpu_utilization` gauges; [] without NVML."""
        return sorted(self.inventory().gpus.values(), key=lambda g: g.index)


def host_memory(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, int] | None:
    """(total, available) host RAM in bytes from /proc/meminfo; None where it cannot be read."""
    try:
        fields = dict(
            line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line
        )
        total = int(fields["MemTotal"].split()[0]) * 1024
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return total, available


def host_free_bytes() -> int | None:
    mem = host_memory()
    return None if mem is None else mem[1]


def host_memory_used_bytes() -> int | None:
    """For the `host_memory_used_bytes` gauge (specs/30 section 5)."""
    mem = host_memory()
    return None if mem is None else mem[0] - mem[1]


def estimate_footprint(model_bytes: int, ctx: int, draft_bytes: int = 0) -> int:
    """Expected memory of a loaded model: the file plus a KV cache for `ctx` tokens, and for
    speculative decoding the draft model's file and its own `ctx`-token KV cache (ORCH-3020;
    the same per-token estimate, which over-counts a smaller draft rather than under-counts)."""
    draft = draft_bytes + ctx * KV_BYTES_PER_TOKEN if draft_bytes else 0
    return model_bytes + ctx * KV_BYTES_PER_TOKEN + draft


# Split pools keep this much free on every device beyond their share of the footprint: each
# device of a split holds its own CUDA context and compute buffers, which the share ignores.
SPLIT_RESERVE_BYTES = 256 << 20
# The least context a split pool is worth starting with; below it the weights alone decide.
MIN_KV_TOKENS = 256


@dataclass(frozen=True)
class Placement:
    """Where a pool's engine runs: a GPU mask with per-device shares, or the CPU carve-out.

    `kv_cap_tokens` is set for a pool split across GPUs (with a known model size): the most
    context every device can hold its share of (ORCH-3052); `kv_cap_device` is the device
    that sets it."""

    cpu: bool
    devices: tuple[int, ...]
    shares: tuple[float, ...]
    explicit_split: bool
    kv_cap_tokens: int | None = None
    kv_cap_device: int | None = None

    @property
    def cuda_visible_devices(self) -> str:
        """Exactly the mask (empty for a CPU pool, which then sees no GPU at all)."""
        return "" if self.cpu else ",".join(str(d) for d in self.devices)

    def capped(self, ctx: int) -> int:
        """`ctx` lowered to the KV cap where there is one."""
        return ctx if self.kv_cap_tokens is None else min(ctx, self.kv_cap_tokens)


class PlacementRefused(Exception):
    """The pool may not start now; `permanent` ones are not retried (only a reload retries)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def _host_fits(need: int, host_free: int | None, cache: int) -> None:
    """Refuse (retryably: memory may free up) when `need` bytes exceed the free host RAM."""
    if host_free is None or need <= host_free:
        return
    of_which = f" (of which prompt cache {_gib(cache)})" if cache else ""
    raise PlacementRefused(
        f"insufficient host RAM: need {_gib(need)}{of_which}, free {_gib(host_free)}"
    )


def _gib(n: float) -> str:
    """Human size for last_error: GiB, or MiB below one GiB."""
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / (1 << 20):.1f} MiB"


def _shares(
    devices: Sequence[int], split: Sequence[float] | None, homogeneous: bool, gpus: dict
) -> tuple[float, ...]:
    if split is not None:
        total = sum(split)
        return tuple(r / total for r in split)
    if len(devices) == 1:
        return (1.0,)
    kinds = {(gpus[d].name, gpus[d].memory_total) for d in devices}
    if homogeneous or len(kinds) == 1:
        return tuple(1 / len(devices) for _ in devices)
    names = ", ".join(f"{d} ({gpus[d].name}, {_gib(gpus[d].memory_total)})" for d in devices)
    raise PlacementRefused(
        f"devices {names} differ: splitting across heterogeneous GPUs needs an explicit "
        "tensor_split",
        permanent=True,
    )


def split_fits(share: float, model_bytes: int, ctx: int, free: int) -> bool:
    """Whether one device holds its share of the model and a `ctx`-token KV cache, reserve kept."""
    return share * estimate_footprint(model_bytes, ctx) <= free - SPLIT_RESERVE_BYTES


def kv_cap(share: float, model_bytes: int, free: int) -> int:
    """The most context tokens one device of a split can hold its share of (-1: not even the
    weights fit). Solved in closed form, then nudged so it agrees exactly with `split_fits`
    despite float rounding."""
    room = (free - SPLIT_RESERVE_BYTES) / share - model_bytes
    cap = max(-1, int(room // KV_BYTES_PER_TOKEN))
    while cap >= 0 and not split_fits(share, model_bytes, cap, free):
        cap -= 1
    while split_fits(share, model_bytes, cap + 1, free):
        cap += 1
    return cap


def place_pool(
    devices: Sequence[int],
    *,
    inventory: Inventory,
    allow_cpu_inference: bool = False,
    tensor_split: Sequence[float] | None = None,
    homogeneous: bool = False,
    model_bytes: int | None = None,
    ctx: int = 0,
    host_free: int | None = None,
    draft_bytes: int = 0,
    host_cache_bytes: int = 0,
) -> Placement:
    """Decide where a pool may run, or raise PlacementRefused with a one-line cause.

    With `model_bytes`, the engine has to fit: on the host for a CPU pool, on its one device
    for an unsplit pool (weights plus a `ctx`-token KV cache), and on every device of a split
    for the weights plus `MIN_KV_TOKENS` of context; above that a split pool's context is
    capped (`kv_cap_tokens`) rather than refused, so the smallest share cannot run out.
    Memory that speculative decoding and prefix caching add is counted too (ORCH-3020): a
    draft model (`draft_bytes`) where the weights live, a prompt cache in host RAM
    (`host_cache_bytes`) on the host whatever the devices."""
    cpu = Placement(cpu=True, devices=(), shares=(), explicit_split=False)
    footprint = None if model_bytes is None else estimate_footprint(model_bytes, ctx, draft_bytes)
    if not inventory.gpus or not devices:
        if devices and not allow_cpu_inference:
            raise PlacementRefused(NO_GPU, permanent=True)
        if footprint is not None:
            _host_fits(footprint + host_cache_bytes, host_free, host_cache_bytes)
        return cpu
    if model_bytes is not None:
        _host_fits(host_cache_bytes, host_free, host_cache_bytes)
    seen = ", ".join(str(i) for i in sorted(inventory.gpus))
    for d in devices:
        if d not in inventory.gpus:
            raise PlacementRefused(f"device {d} not found: NVML sees GPUs {seen}")
    shares = _shares(devices, tensor_split, homogeneous, inventory.gpus)
    placed = Placement(
        cpu=False, devices=tuple(devices), shares=shares, explicit_split=tensor_split is not None
    )
    if model_bytes is None:
        return placed
    if draft_bytes and len(devices) > 1:
        raise PlacementRefused(
            "speculative decoding on a pool split across GPUs is not accounted for: "
            "give the draft model a single-device pool",
            permanent=True,
        )
    if len(devices) == 1:
        free = inventory.gpus[devices[0]].memory_free
        if footprint is not None and footprint > free:
            raise PlacementRefused(
                f"insufficient VRAM on device {devices[0]}: need {_gib(footprint)}, "
                f"free {_gib(free)}"
            )
        return placed
    least = min(ctx, MIN_KV_TOKENS)
    caps = []
    for d, share in zip(devices, shares, strict=True):
        free = inventory.gpus[d].memory_free
        if not split_fits(share, model_bytes, least, free):
            need = share * estimate_footprint(model_bytes, least) + SPLIT_RESERVE_BYTES
            raise PlacementRefused(
                f"insufficient VRAM on device {d}: need {_gib(need)} (share {share:.2f} of the "
                f"weights and {least} tokens of KV cache, plus a {_gib(SPLIT_RESERVE_BYTES)} "
                f"reserve), free {_gib(free)}"
            )
        caps.append((kv_cap(share, model_bytes, free), d))
    cap, device = min(caps)
    return replace(placed, kv_cap_tokens=cap, kv_cap_device=device)
