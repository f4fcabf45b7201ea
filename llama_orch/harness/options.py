"""The harness's command-line options, one set for `llorch check` and the pytest route.

`pytest -p llorch --target URL ...` and `llorch check --target URL ...`
take the same options: `llorch check` passes its flags on as these pytest options. Options
that describe the target stack on top of `--target-file` (flags win).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llama_orch.harness.description import (
    FACTS,
    AuthScheme,
    TargetDescription,
    TargetDescriptionError,
    load_description,
    validate,
)


@dataclass(frozen=True)
class Opt:
    """One harness option: its flag, help, and how it parses (for pytest and for click)."""

    flag: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    multiple: bool = False
    type: type = str
    default: Any = None
    group: str = "target"  # target (what is checked) or run (how the run goes)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Opt, ...] = (
    Opt("--target", "OrchQueue v1 base URL (default: start the reference).", "URL"),
    Opt("--target-file", "A target.yaml describing the target; flags win over it.", "FILE"),
    Opt(
        "--auth-scheme",
        "How the key is sent: bearer, x-api-key, or header (--auth-header).",
        choices=tuple(s.value for s in AuthScheme),
    ),
    Opt("--auth-header", "Header carrying the key, for --auth-scheme header.", "NAME"),
    Opt("--api-key-env", "Env var holding the target's API key (default LLORCH_API_KEY).", "VAR"),
    Opt("--tenant-key-env", "Env var holding a second tenant's key (quota checks).", "VAR"),
    Opt("--data-plane-key-env", "Env var holding a data-plane-only key (the 403 check).", "VAR"),
    Opt("--target-log", "The target's JSON-lines log (log-contract checks).", "FILE"),
    Opt("--model-ref", "model_ref for tasks (else where facts.model_ref says).", "REF"),
    Opt("--engine", "Use only replica sets of this engine.", "ENGINE"),
    Opt("--pool", "Use only the replica set holding this pool.", "POOL"),
    Opt(
        "--claim",
        "Claim or deny an optional feature the capability data does not state.",
        "NAME=on|off",
        multiple=True,
    ),
    Opt(
        "--fact",
        f"Where a replica set holds a fact ({', '.join(FACTS)}), e.g. model_ref=slo.model.",
        "NAME=PATH",
        multiple=True,
    ),
    Opt("--api-version", "API version, when the capability data states none.", "VERSION"),
    Opt(
        "--timeout",
        "Override one bound of harness.timeouts, e.g. request_s=30.",
        "NAME=SECONDS",
        multiple=True,
    ),
    Opt("--timeout-scale", "Multiply every bound (a slow target).", "FACTOR", type=float),
    Opt(
        "--reference-config",
        "Config the embedded reference starts from (default examples/mock.yaml).",
        "FILE",
    ),
    Opt(
        "--profile",
        "Compliance profile.",
        choices=("core", "extended"),
        default="core",
        group="run",
    ),
    Opt("--only", "Only these requirement IDs.", "ID", multiple=True, group="run"),
    Opt(
        "--family",
        "Only requirements of these families, e.g. OC-CTRL.",
        "FAMILY",
        multiple=True,
        group="run",
    ),
    Opt("--report-dir", "Write the four compliance reports here.", "DIR", group="run"),
    Opt(
        "--partial-exit-code",
        "Exit code for a partial result.",
        choices=("0", "1"),
        default="1",
        group="run",
    ),
    Opt("--impl-name", "Implementation name for the report.", "NAME", group="run"),
    Opt("--impl-version", "Implementation version for the report.", "VERSION", group="run"),
    Opt("--impl-url", "Implementation URL for the report.", "URL", group="run"),
    Opt(
        "--whitebox-results",
        "The reference's white-box results (embedded runs; default reports/whitebox/results.json).",
        "FILE",
        group="run",
    ),
    Opt(
        "--shuffle",
        "Run the checks in a random order drawn from SEED.",
        "SEED",
        type=int,
        group="run",
    ),
    Opt(
        "--progress",
        "Progress on stderr: a bar on a terminal, else lines.",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        group="run",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    g = parser.getgroup("llorch", "llama-orch compliance checks")
    for o in OPTIONS:
        kwargs: dict[str, Any] = {"help": o.help, "dest": o.dest}
        if o.multiple:
            kwargs.update(action="append", default=[])
        else:
            kwargs.update(default=o.default)
        if o.metavar:
            kwargs["metavar"] = o.metavar
        if o.choices:
            kwargs["choices"] = o.choices
        if o.type is not str:
            kwargs["type"] = o.type
        g.addoption(o.flag, **kwargs)


def as_args(values: dict[str, Any]) -> list[str]:
    """Harness options (by dest) back into command-line arguments (for `llorch check`)."""
    args: list[str] = []
    for o in OPTIONS:
        value = values.get(o.dest)
        if value is None or value == () or value == []:
            continue
        for v in value if o.multiple else [value]:
            args += [o.flag, str(v)]
    return args


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise TargetDescriptionError(f"{flag} {item!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _switch(value: str, flag: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise TargetDescriptionError(f"{flag}: {value!r} is not on or off")


def description(config: pytest.Config) -> TargetDescription:
    """The target description: defaults (the reference's own description when no URL is
    given: the embedded reference), then `--target-file`, then the flags on top."""
    from llama_orch.harness.target import reference_description

    opt = config.getoption
    path = opt("target_file")
    from_file = load_description(Path(path)) if path else None
    embedded = not opt("target") and not (from_file is not None and from_file.url)
    desc = reference_description() if embedded else validate({}, "defaults")
    if from_file is not None:
        desc = desc.merged(from_file.model_dump(exclude_unset=True), str(path))
    auth: dict[str, Any] = {}
    if opt("auth_scheme"):
        auth["scheme"] = opt("auth_scheme")
        if opt("auth_scheme") != "header" and not opt("auth_header"):
            auth["header"] = None
    if opt("auth_header"):
        auth["header"] = opt("auth_header")
    if opt("api_key_env"):
        auth["key_env"] = opt("api_key_env")
    flags: dict[str, Any] = {
        "url": opt("target"),
        "auth": auth,
        "tenant_key_env": opt("tenant_key_env"),
        "data_plane_key_env": opt("data_plane_key_env"),
        "log": opt("target_log"),
        "model_ref": opt("model_ref"),
        "engine": opt("engine"),
        "pool": opt("pool"),
        "features": {k: _switch(v, "--claim") for k, v in _pairs(opt("claim"), "--claim").items()},
        "facts": _pairs(opt("fact"), "--fact"),
        "api_version": opt("api_version"),
        "timeouts": _pairs(opt("timeout"), "--timeout"),
        "timeout_scale": opt("timeout_scale"),
    }
    return desc.merged(flags)
