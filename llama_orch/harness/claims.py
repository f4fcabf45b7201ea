"""What a target's `/v1/capabilities` claims, and which requirements prove each claim.

The harness compares claims with verdicts: a claimed feature whose requirements did not all
pass is reported as "claimed but not shown" (OC-HARNESS-8109). Engine `features` flags are
read across all engines; a flag is claimed when any engine sets it true.
"""

from __future__ import annotations

from typing import Any

# feature flag (as advertised under engines[].features) -> requirement IDs that prove it
FEATURE_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "sse_resume": ("ORCH-2002", "OC-CTRL-2022"),
    "sessions": ("ORCH-2004", "ORCH-2005", "ORCH-3021"),
    "deadlines": ("ORCH-3079", "ORCH-3081"),
    "preemption_soft": ("ORCH-3085",),
    "artifacts": ("ORCH-3097", "ORCH-3098"),
    "budgets": ("ORCH-3099", "OC-CORE-1023"),
    "catalog": ("ORCH-3060", "ORCH-3061"),
}

CPU_CARVE_OUT_FLAGS = ("cpu_inference", "allow_cpu_inference")
CPU_CARVE_OUT_WAIVER = (
    "CPU-only carve-out: the target advertises CPU inference (allow_cpu_inference) for "
    "machines without NVIDIA GPUs; the NVIDIA-only rule is waived for this run"
)


def advertised(capabilities: dict[str, Any]) -> set[str]:
    """Feature flags set true by any engine."""
    flags: set[str] = set()
    for engine in capabilities.get("engines") or []:
        for name, value in (engine.get("features") or {}).items():
            if value is True:
                flags.add(name)
    return flags


def claims(capabilities: dict[str, Any], known: set[str]) -> dict[str, list[str]]:
    """Claimed features mapped to the (known) requirement IDs that prove them."""
    return {
        feature: [r for r in FEATURE_REQUIREMENTS[feature] if r in known]
        for feature in sorted(advertised(capabilities) & set(FEATURE_REQUIREMENTS))
    }


def waivers(capabilities: dict[str, Any]) -> dict[str, str]:
    """Waivers that follow from what the target declares (the CPU carve-out)."""
    if advertised(capabilities) & set(CPU_CARVE_OUT_FLAGS):
        return {"ORCH-1101": CPU_CARVE_OUT_WAIVER}
    return {}
