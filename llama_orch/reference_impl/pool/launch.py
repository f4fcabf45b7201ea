"""The command line and environment of a llama-server the pool manager launches itself.

Kept apart from the lifecycle so the flags a pool implies can be read in one place: the
verified model file, host and port, the operator's `launch.args`, the context size (lowered
to a split pool's KV cap, ORCH-3052), the determinism settings' start flags and environment,
an explicit tensor split, a device mask that CUDA numbers the way NVML does (specs/30
section 4), and for a pool in preemption mode `hard` the slot-file folder and full-size SWA
cache that saving and restoring a decode needs (adapters/llamacpp_resume.py).
"""

from __future__ import annotations

import os
import tempfile

from llama_orch.reference_impl.config import PoolConfig, PreemptionMode
from llama_orch.reference_impl.pool.determinism import DeterminismSettings
from llama_orch.reference_impl.pool.preflight import Preflight
from llama_orch.reference_impl.pool.supervisor import (
    LaunchSpec,
    free_port,
    llama_server_argv,
    resolve_binary,
)


def launch_spec(
    pc: PoolConfig, pre: Preflight, determinism: DeterminismSettings | None
) -> LaunchSpec:
    """Everything needed to start one replica's engine; a fresh port unless `launch.port`."""
    launch = pc.launch
    assert launch is not None and pre.model_path is not None and pre.placement is not None
    placement = pre.placement
    port = launch.port or free_port(launch.host)
    split = pc.tensor_split if placement.explicit_split and not placement.cpu else None
    argv = llama_server_argv(
        resolve_binary(launch.binary),
        str(pre.model_path),
        launch.host,
        port,
        launch.args,
        ctx=pre.ctx_max if pre.ctx_capped else pc.ctx,
        determinism_args=(
            *(determinism.start_args if determinism is not None else ()),
            *hard_preemption_args(pc),
        ),
        tensor_split=split,
    )
    env = {
        **(determinism.start_env if determinism is not None else {}),
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # CUDA numbers devices as NVML does
        "CUDA_VISIBLE_DEVICES": placement.cuda_visible_devices,
    }
    return LaunchSpec(argv, launch.host, port, env, launch.startup_timeout_ms / 1000)


def slot_dir(pc: PoolConfig) -> str:
    """Where a hard-preemption pool's engines write slot files (one folder per pool)."""
    return os.path.join(tempfile.gettempdir(), f"llorch-slots-{os.getpid()}-{pc.id}")


def hard_preemption_args(pc: PoolConfig) -> tuple[str, ...]:
    """`--slot-save-path DIR --swa-full` for a pool in mode `hard`, else nothing: slot
    save/restore needs the folder, and a sliding-window model's cache is only reusable whole."""
    if pc.preemption.mode is not PreemptionMode.HARD:
        return ()
    path = slot_dir(pc)
    os.makedirs(path, exist_ok=True)
    return ("--slot-save-path", path, "--swa-full")
