"""Build a Zig policy plugin into a `.wasm` module, offline, with the Zig toolchain from PyPI.

Why Zig (measured on this project's machines; numbers in bench/RESULTS.md): it installs with
pip (`ziglang`, no system package, no network at build time), compiles to
`wasm32-freestanding` with no imports at all, and its standard library parses JSON straight
into typed structs, so a plugin deals with `AdmissionSnapshot`, not raw bytes. A warm build
takes about 2 s and the example plugins are about 85-95 KiB.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from llama_orch.policy_sdk import ZIG_SDK

OPTIMIZE = "ReleaseSmall"


class BuildError(RuntimeError):
    """The plugin did not build; the message holds the compiler's own diagnostics."""


@dataclass(frozen=True)
class BuildResult:
    source: Path
    output: Path
    seconds: float
    size: int


def zig_command() -> list[str]:
    """How to run the pinned Zig compiler (`python -m ziglang`)."""
    if importlib.util.find_spec("ziglang") is None:
        raise BuildError(
            "the Zig toolchain is not installed: pip install 'llama-orch[sdk]' "
            "(the `ziglang` package from PyPI)"
        )
    return [sys.executable, "-m", "ziglang"]


def build_command(source: Path, output: Path, optimize: str = OPTIMIZE) -> list[str]:
    return [
        *zig_command(),
        "build-exe",
        "-target",
        "wasm32-freestanding",
        "-fno-entry",
        "-rdynamic",
        "-fstrip",
        "-O",
        optimize,
        "--dep",
        "llorch",
        f"-Mroot={source}",
        f"-Mllorch={ZIG_SDK}",
        f"-femit-bin={output}",
    ]


def build(source: Path, output: Path | None = None, *, optimize: str = OPTIMIZE) -> BuildResult:
    """Compile `source` (a plugin's .zig file) to `output` (default: next to it, .wasm)."""
    source = source.resolve()
    if not source.is_file():
        raise BuildError(f"{source}: no such plugin source")
    output = (output or source.with_suffix(".wasm")).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llorch-policy-build-") as tmp:
        # Zig leaves an object file next to its output: build in a scratch folder, copy out.
        scratch = Path(tmp) / "plugin.wasm"
        proc = subprocess.run(
            build_command(source, scratch, optimize),
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BuildError(f"{source.name}: build failed\n{proc.stderr.strip()}")
        shutil.copyfile(scratch, output)
    seconds = time.perf_counter() - started
    return BuildResult(source, output, round(seconds, 3), output.stat().st_size)
