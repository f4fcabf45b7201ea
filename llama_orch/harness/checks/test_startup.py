"""Start-up checks: only where the harness starts the target itself (the embedded reference)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from llama_orch.harness.registry import Need, check


@check("ORCH-3030", needs=[Need.REFERENCE_CONFIG])
def test_an_unknown_config_key_stops_the_server_in_strict_mode(target) -> None:
    config = target.description.reference_config
    text = Path(config).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.yaml"
        bad.write_text(text + "\nunexpected_key: 1\n", encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "llama_orch.cli", "serve", "--config", str(bad), "--port", "9"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "LLORCH_API_KEY": "unused"},
        )
    assert proc.returncode != 0, "a config with an unknown key must not start in strict mode"
    assert "unexpected_key" in proc.stderr, f"the error must name the key: {proc.stderr[-500:]}"
