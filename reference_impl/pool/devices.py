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
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger("reference_impl.pool")

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


def estimate_footprint(model_bytes: int, ctx: int) -> int:
    """Expected memory of a loaded model: the file plus a KV cache for `ctx` tokens."""
    return model_bytes + ctx * KV_BYTES_PER_TOKEN


@dataclass(frozen=True)
class Placement:
    """Where a pool's engine runs: a GPU mask with per-device shares, or the CPU carve-out."""

    cpu: bool
    devices: tuple[int, ...]
    shares: tuple[float, ...]
    explicit_split: bool

    @property
    def cuda_visible_devices(self) -> str:
        """Exactly the mask (empty for a CPU pool, which then sees no GPU at all)."""
        return "" if self.cpu else ",".join(str(d) for d in self.devices)


class PlacementRefused(Exception):
    """The pool may not start now; `permanent` ones are not retried (only a reload retries)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


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


def place_pool(
    devices: Sequence[int],
    *,
    inventory: Inventory,
    allow_cpu_inference: bool = False,
    tensor_split: Sequence[float] | None = None,
    homogeneous: bool = False,
    footprint_bytes: int | None = None,
    host_free: int | None = None,
) -> Placement:
    """Decide where a pool may run, or raise PlacementRefused with a one-line cause."""
    cpu = Placement(cpu=True, devices=(), shares=(), explicit_split=False)
    if not inventory.gpus or not devices:
        if devices and not allow_cpu_inference:
            raise PlacementRefused(NO_GPU, permanent=True)
        if footprint_bytes is not None and host_free is not None and footprint_bytes > host_free:
            raise PlacementRefused(
                f"insufficient host RAM: need {_gib(footprint_bytes)}, free {_gib(host_free)}"
            )
        return cpu
    seen = ", ".join(str(i) for i in sorted(inventory.gpus))
    for d in devices:
        if d not in inventory.gpus:
            raise PlacementRefused(f"device {d} not found: NVML sees GPUs {seen}")
    shares = _shares(devices, tensor_split, homogeneous, inventory.gpus)
    if footprint_bytes is not None:
        for d, share in zip(devices, shares, strict=True):
            need, free = share * footprint_bytes, inventory.gpus[d].memory_free
            if need > free:
                raise PlacementRefused(
                    f"insufficient VRAM on device {d}: need {_gib(need)}, free {_gib(free)}"
                )
    return Placement(
        cpu=False, devices=tuple(devices), shares=shares, explicit_split=tensor_split is not None
    )
