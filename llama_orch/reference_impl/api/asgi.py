"""The served app: built from `$LLORCH_CONFIG` (and flags passed through the environment)."""

from __future__ import annotations

import os

from llama_orch.reference_impl.api.bootstrap import build_app

app = build_app(
    os.environ["LLORCH_CONFIG"],
    insecure_no_auth=os.environ.get("LLORCH_INSECURE_NO_AUTH") == "1",
    shutdown_deadline_s=float(os.environ.get("LLORCH_SHUTDOWN_DEADLINE_S", "10")),
)
