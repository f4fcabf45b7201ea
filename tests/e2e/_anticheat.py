"""Proof that an end-to-end run used the real engine and model, not a stand-in.

`REQUIRE_REAL_LLAMA=1` (set by `make e2e` and `make test` unless LLORCH_SKIP_ENGINE=1) makes a
missing engine a failure instead of a skip and refuses any stand-in: a pool on the in-process
mock adapter, or a pool on an `endpoint` (an engine someone else started, which may be a
simulator speaking llama.cpp's protocol). What is left must be shown at run time: a llama-server
process started by the reference, whose executable is the real binary and whose model file hashes
to the digest the API reports; a completion that repeats a fresh nonce; and no file in the
repository that holds the nonce, so no fixture or recorded completion could have supplied it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from tests.ops._reference import ROOT, running

FAKE_VERSION_PREFIXES = ("mock", "sim")  # the mock adapter's and the simulators' defaults
SCAN_LIMIT_BYTES = 64 * 1024 * 1024  # model weights and the like are not fixtures


class NotReal(AssertionError):
    """The run could have been served by something other than the real engine and model."""


def require_real() -> bool:
    return os.environ.get("REQUIRE_REAL_LLAMA") == "1"


def refuse_stand_ins(config: Path) -> None:
    """NotReal naming every pool of `config` that is not a llama-server the reference launches."""
    doc = YAML(typ="safe").load(config.read_text(encoding="utf-8"))
    reasons = []
    for pool in doc.get("pools") or []:
        pid = pool.get("id", "?")
        if pool.get("adapter") == "mock":
            reasons.append(f"pool {pid}: adapter mock (in-process stand-in)")
        if pool.get("endpoint"):
            reasons.append(f"pool {pid}: endpoint {pool['endpoint']} (may be a simulator)")
        if pool.get("engine") != "llamacpp" or not pool.get("launch"):
            reasons.append(f"pool {pid}: not a llama-server launched by the reference")
    if not doc.get("pools"):
        reasons.append("no pools")
    if reasons:
        raise NotReal(f"REQUIRE_REAL_LLAMA=1 refuses {config.name}: " + "; ".join(reasons))


@dataclass(frozen=True)
class EngineProcess:
    pid: int
    exe: Path
    model: Path


def _model_arg(argv: list[str]) -> Path | None:
    for flag in ("--model", "-m"):
        if flag in argv[:-1]:
            return Path(argv[argv.index(flag) + 1])
    return None


def engine_processes(root_pid: int, binary: Path) -> list[EngineProcess]:
    """Processes under `root_pid` running the real `binary`, with the model they serve."""
    found = []
    for pid in running(root_pid, binary):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            model = _model_arg(argv)
            if model is not None:
                exe = Path(os.readlink(f"/proc/{pid}/exe"))
                found.append(EngineProcess(pid, exe, model))
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_identity(engine: str, engine_version: str, model_digest: str, file_digest: str) -> None:
    """NotReal unless the API names llama.cpp, a real build and the served file's digest."""
    if engine != "llamacpp":
        raise NotReal(f"engine {engine!r}, expected llamacpp")
    if not engine_version or engine_version == "unknown":
        raise NotReal(f"engine_version {engine_version!r} does not name a build")
    if engine_version.lower().startswith(FAKE_VERSION_PREFIXES):
        raise NotReal(f"engine_version {engine_version!r} is a stand-in's")
    if model_digest != f"sha256:{file_digest}":
        raise NotReal(
            f"model_digest {model_digest!r} is not the served file's sha256:{file_digest}"
        )


def repo_files(root: Path = ROOT) -> list[Path]:
    """Tracked files and untracked files git does not ignore: every fixture a run could read."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    return [root / name for name in out.decode().split("\0") if name]


def scan(needles: list[str], files: list[Path]) -> list[str]:
    """`file: needle` for each file holding one of `needles` (bytes, case-sensitive)."""
    wanted = [n.encode() for n in needles if n]
    hits = []
    for path in files:
        try:
            if not path.is_file() or path.stat().st_size > SCAN_LIMIT_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        hits += [f"{where}: {n.decode()!r}" for n in wanted if n in data]
    return hits
