"""What a target's `/v1/capabilities` claims, and which requirements prove each claim.

The harness compares claims with verdicts: a claimed feature whose requirements did not all
pass is reported as "claimed but not shown" (OC-HARNESS-8109). What a target claims is
`Target.claimed()`: engine `features` flags set true by any engine, then the description.
"""

from __future__ import annotations

# feature flag (as advertised under engines[].features) -> requirement IDs that prove it
FEATURE_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "sse_resume": ("OC-CTRL-2024",),
    "policy_host": ("ORCH-3048", "OC-POLICY-4001", "OC-POLICY-4011", "OC-POLICY-4020"),
    "sessions": ("ORCH-2004", "ORCH-2005", "ORCH-3021"),
    "deadlines": ("ORCH-3079", "ORCH-3081", "ORCH-3083", "ORCH-3084"),
    "preemption_soft": ("ORCH-3080", "ORCH-3082", "ORCH-3085", "ORCH-3088", "ORCH-3090"),
    "preemption_hard": ("ORCH-3086", "ORCH-3087"),
    "wfq": ("ORCH-3075", "ORCH-3076", "ORCH-3078"),
    "quotas": ("ORCH-3077",),
    "rate_limits": ("ORCH-3006",),
    "session_affinity": ("ORCH-3009", "OC-CORE-1013"),
    "slo_breaker": ("ORCH-3040",),
    "artifacts": ("ORCH-3097", "ORCH-3098", "OC-CTRL-2065", "OC-CTRL-2066"),
    "budgets": ("ORCH-3099", "OC-CORE-1023", "OC-CORE-1024", "OC-CTRL-2068", "OC-METRICS-7111"),
    "catalog": (
        "ORCH-3060",
        "ORCH-3061",
        "ORCH-3062",
        "ORCH-3063",
        "ORCH-3064",
        "ORCH-3065",
        "ORCH-3066",
        "ORCH-3067",
        "ORCH-3068",
    ),
    "lifecycle": ("ORCH-3069", "ORCH-3070", "ORCH-3072", "ORCH-3073", "ORCH-3074"),
}

CPU_CARVE_OUT_FLAGS = ("cpu_inference", "allow_cpu_inference")
CPU_CARVE_OUT_WAIVER = (
    "CPU-only carve-out: the target advertises CPU inference (allow_cpu_inference) for "
    "machines without NVIDIA GPUs; the NVIDIA-only rule is waived for this run"
)


def claims(claimed: set[str], known: set[str]) -> dict[str, list[str]]:
    """Claimed features mapped to the (known) requirement IDs that prove them."""
    return {
        feature: [r for r in FEATURE_REQUIREMENTS[feature] if r in known]
        for feature in sorted(claimed & set(FEATURE_REQUIREMENTS))
    }


def waivers(claimed: set[str]) -> dict[str, str]:
    """Waivers that follow from what the target declares (the CPU carve-out)."""
    if claimed & set(CPU_CARVE_OUT_FLAGS):
        return {"ORCH-1101": CPU_CARVE_OUT_WAIVER}
    return {}
