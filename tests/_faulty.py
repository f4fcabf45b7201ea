"""One reference orchestrator behind one switchable proxy, and the harness run against it.

The fault, benign and hostile-target suites share this bench: a reference started once per
module (`bench()`), a `FaultyProxy` in front of it whose mode changes between runs, and
`Bench.run(mode, ...)`, which runs the compliance checks against the proxy's URL in a child
pytest, exactly as another project's CI would, then puts the reference back as it was.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from llama_orch.harness.embedded import DEFAULT_CONFIG, embedded_reference
from tests._harness import REFERENCE_TARGET_FILE, ChildRun, run_checks
from tests.fixtures.faulty.proxy import FaultyProxy, serving

KEY_ENV = "LLORCH_FAULTY_TARGET_KEY"
TENANT_ENV = "LLORCH_TENANT_KEY"  # what examples/reference.target.yaml names
# Child runs may cache bytecode (this machine's environment turns that off: 3 s per run).
CHILD_ENV = {"PYTHONDONTWRITEBYTECODE": ""}


@dataclass
class Timed:
    """A child run and how long it took."""

    run: ChildRun
    seconds: float


@dataclass
class Bench:
    url: str  # the proxy
    upstream: str  # the reference
    key: str
    tenant: str
    log: Path
    proxy: FaultyProxy
    reports: Path

    def run(
        self,
        mode: str,
        *args: str,
        target_file: Path | None = REFERENCE_TARGET_FILE,
        log: bool = True,
        timeout_s: float = 600,
    ) -> Timed:
        """The checks against the proxy in `mode`; afterwards the reference is reset."""
        self.proxy.use(mode)
        out = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=self.reports))
        extra = ["--target-log", str(self.log)] if log else []
        started = time.monotonic()
        try:
            run = run_checks(
                self.url,
                self.key,
                out,
                *extra,
                *args,
                key_env=KEY_ENV,
                target_file=target_file,
                timeout_s=timeout_s,
                env={**CHILD_ENV, TENANT_ENV: self.tenant},
            )
        finally:
            seconds = time.monotonic() - started
            self.proxy.use("passthrough")
            self.proxy.reset()
        assert self.key not in run.output, f"{mode}: the API key reached the console output"
        if run.report is not None:
            text = (out / "compliance.json").read_text(encoding="utf-8")
            assert self.key not in text, f"{mode}: the API key reached compliance.json"
        return Timed(run, seconds)


def bench_config(directory: Path) -> Path:
    """The embedded reference's config (examples/mock.yaml) with a shorter `reject` queue
    (16 tasks instead of 64): every fill of it is four times shorter. Nothing else differs."""
    yaml = YAML(typ="safe", pure=True)
    config = yaml.load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for pool in config["pools"]:
        if pool.get("queue", {}).get("full_policy") == "reject":
            pool["queue"]["capacity"] = 16
    for plugin in (config.get("policy") or {}).get("plugins") or []:  # relative to mock.yaml
        plugin["path"] = str((DEFAULT_CONFIG.parent / plugin["path"]).resolve())
    path = directory / "bench.yaml"
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(config, out)
    return path


@contextlib.contextmanager
def bench(reports: Path) -> Iterator[Bench]:
    """A reference (with its JSON log) and a passthrough proxy in front of it."""
    with tempfile.TemporaryDirectory(prefix="llorch-bench-") as tmp:
        log = Path(tmp) / "reference.log"
        config = bench_config(Path(tmp))
        with (
            embedded_reference(config, log_path=log) as (upstream, key, tenant),
            serving(upstream, "passthrough", key) as (url, proxy),
        ):
            yield Bench(url, upstream, key, tenant, log, proxy, reports)


def failed(run: ChildRun, *, profiles: tuple[str, ...] = ("core",)) -> set[str]:
    """Every requirement some check failed, selected in this run or not.

    A check entry is listed under every requirement it proves, with its outcome as it bears
    on that requirement (a check that failed only some of its requirements is an `error`
    under the others), so this is what a full run of the same checks would fail.
    """
    assert run.report is not None, run.output[-3000:]
    return {
        r["id"]
        for r in run.report["requirements"]
        if r["profile"] in profiles and any(c["outcome"] == "failed" for c in r["checks"])
    }


def verdicts_of(run: ChildRun, verdict: str) -> set[str]:
    return {i for i, v in run.verdicts().items() if v == verdict}
