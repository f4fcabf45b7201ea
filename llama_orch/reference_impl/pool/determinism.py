"""Per-engine determinism settings, one declarative file each, applied to pools marked
`determinism: true` (specs/70-determinism-suite.md, section 3; ORCH-3050).

The files are the determinism suite's own (`determinism_suite/settings/<engine>.yaml`, data
only), so the settings the pool manager applies and the settings the suite reports are the
same bytes. The manager resolves a pool's settings once at the start of each attempt (a
missing or broken file is a permanent fault of that pool), then applies start flags and
environment to engines it launches, per-request fields through the adapter, and
`max_in_flight_per_replica` as a cap on the slots the scheduler may fill. The settings folder
is located on first use, so the pool manager imports without the suite until a pool in
determinism mode exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

_KEYS = {"engine", "start_args", "start_env", "request", "max_in_flight_per_replica", "expect"}
# Per-request fields an adapter knows how to apply, by engine.
_REQUEST_FIELDS = {"llamacpp": {"cache_prompt"}, "vllm": set(), "tgi": set(), "triton": set()}


class DeterminismSettingsError(ValueError):
    """A settings file is missing or breaks its shape; names the file and the field."""


@dataclass(frozen=True)
class DeterminismSettings:
    """What one engine needs to give byte-identical streams across replicas."""

    engine: str
    start_args: tuple[str, ...] = ()
    start_env: dict[str, str] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    max_in_flight_per_replica: int = 1
    expect: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def as_record(self) -> dict[str, Any]:
        """The settings as reports show them (plain JSON types, file name included)."""
        return {
            "engine": self.engine,
            "start_args": list(self.start_args),
            "start_env": dict(self.start_env),
            "request": dict(self.request),
            "max_in_flight_per_replica": self.max_in_flight_per_replica,
            "expect": dict(self.expect),
            "source": self.source,
        }


def settings_dir() -> Path:
    """The suite's settings folder (`determinism_suite/settings`), located when first needed."""
    try:
        return Path(str(files("llama_orch.determinism_suite").joinpath("settings")))
    except ModuleNotFoundError as exc:
        raise DeterminismSettingsError(
            f"no determinism settings: the determinism_suite package is not installed ({exc})"
        ) from None


def _fail(path: Path, message: str) -> DeterminismSettingsError:
    return DeterminismSettingsError(f"{path.name}: {message}")


def parse_settings(doc: Any, path: Path, engine: str) -> DeterminismSettings:
    """Validate one loaded settings document."""
    if not isinstance(doc, dict):
        raise _fail(path, "must be a mapping")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise _fail(path, f"unknown field(s): {', '.join(unknown)}")
    if doc.get("engine") != engine:
        raise _fail(path, f"`engine` must be {engine!r}")
    args = doc.get("start_args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _fail(path, "`start_args` must be a list of strings")
    env = doc.get("start_env") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise _fail(path, "`start_env` must map names to strings")
    request = doc.get("request") or {}
    if not isinstance(request, dict):
        raise _fail(path, "`request` must be a mapping")
    unsupported = sorted(set(request) - _REQUEST_FIELDS.get(engine, set()))
    if unsupported:
        raise _fail(path, f"`request` field(s) the {engine} adapter cannot apply: {unsupported}")
    in_flight = doc.get("max_in_flight_per_replica", 1)
    if type(in_flight) is not int or in_flight < 1:
        raise _fail(path, "`max_in_flight_per_replica` must be a positive integer")
    expect = doc.get("expect") or {}
    if not isinstance(expect, dict):
        raise _fail(path, "`expect` must be a mapping")
    return DeterminismSettings(
        engine=engine,
        start_args=tuple(args),
        start_env={str(k): v for k, v in env.items()},
        request=dict(request),
        max_in_flight_per_replica=in_flight,
        expect=dict(expect),
        source=f"determinism_suite/settings/{path.name}",
    )


def load_settings(engine: str, directory: Path | None = None) -> DeterminismSettings:
    """The settings of `engine` (from `directory`, else the suite's folder);
    DeterminismSettingsError when absent or malformed."""
    return _load_file(engine, directory or settings_dir())


@cache
def _load_file(engine: str, directory: Path) -> DeterminismSettings:
    path = directory / f"{engine}.yaml"
    if not path.is_file():
        raise DeterminismSettingsError(f"no determinism settings for engine {engine!r} ({path})")
    try:
        doc = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(path, f"cannot be read: {exc}") from None
    except YAMLError as exc:
        raise _fail(path, f"not valid YAML: {exc}") from None
    return parse_settings(doc, path, engine)


def determinism_settings(pool: Any) -> DeterminismSettings | None:
    """The settings a pool config applies: its engine's file when `determinism` is on."""
    return load_settings(pool.engine.value) if pool.determinism else None


def slot_cap(settings: DeterminismSettings | None, reported: int) -> int:
    """Slots the scheduler may fill on a replica: what the engine reports (at least one),
    capped at `max_in_flight_per_replica` for a pool in determinism mode (`settings` set)."""
    slots = max(1, reported)
    return min(slots, settings.max_in_flight_per_replica) if settings is not None else slots
