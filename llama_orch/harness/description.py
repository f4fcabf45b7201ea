"""The target description: everything the harness must know about a target that HTTP can't say.

It comes from an optional `target.yaml` and from `llorch check` / pytest flags, flags winning.
Keys are read from environment variables only, never from the file or a flag. Facts that the
OrchQueue v1 contract leaves to open objects (which model a replica set serves, its engine
version and model digest live somewhere in the open `slo` object, or elsewhere) are located by
dotted paths in `facts`; without a path the checks that need the fact are `unverified`, and say
how to provide it. The reference orchestrator's own description is
`examples/reference.target.yaml`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML, YAMLError

from llama_orch.harness.timeouts import DEFAULT, Timeouts, TimeoutsError

DEFAULT_KEY_ENV = "LLORCH_API_KEY"
# The facts the harness may need from open objects, and what each is used for.
FACTS = {
    "model_ref": "the model a replica set serves, put into every task's model_ref",
    "engine_version": "the engine version a replica set pins (ORCH-3032, ORCH-3046)",
    "model_digest": "the model digest a replica set pins (ORCH-3032, ORCH-3046)",
    "sampler_profile_version": "the sampler profile a replica set pins (determinism suite)",
}


class TargetDescriptionError(ValueError):
    """The target description (file or flags) is invalid; the message names the field."""


class AuthScheme(StrEnum):
    """How the API key travels: both OrchQueue v1 schemes, or an operator-named header."""

    BEARER = "bearer"  # Authorization: Bearer <key>
    X_API_KEY = "x-api-key"  # X-API-Key: <key>
    HEADER = "header"  # <auth.header>: <key>


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Auth(_Strict):
    scheme: AuthScheme = AuthScheme.BEARER
    header: str | None = Field(None, description="the header name for scheme `header`")
    key_env: str = Field(DEFAULT_KEY_ENV, description="environment variable holding the key")

    @model_validator(mode="after")
    def _header_named(self) -> Auth:
        if self.scheme is AuthScheme.HEADER and not self.header:
            raise ValueError("scheme `header` needs `header`: the name of the key's header")
        if self.scheme is not AuthScheme.HEADER and self.header:
            raise ValueError(f"`header` is only for scheme `header`, not {self.scheme.value!r}")
        return self

    def header_name(self) -> str:
        if self.scheme is AuthScheme.BEARER:
            return "Authorization"
        if self.scheme is AuthScheme.X_API_KEY:
            return "X-API-Key"
        return str(self.header)

    def headers(self, key: str | None) -> dict[str, str]:
        """The request header carrying `key` (none without a key)."""
        if not key:
            return {}
        value = f"Bearer {key}" if self.scheme is AuthScheme.BEARER else key
        return {self.header_name(): value}


class Facts(_Strict):
    """Dotted paths inside a ReplicaSet object, e.g. `slo.model_ref`."""

    model_ref: str | None = None
    engine_version: str | None = None
    model_digest: str | None = None
    sampler_profile_version: str | None = None


class Catalog(_Strict):
    """What the catalog checks need: a registry the target allows and a CA it trusts.

    The CA's certificate and private key (PEM text) come from environment variables; the
    checks issue their signer certificates from it. For the embedded reference the harness
    makes the CA itself.
    """

    registry: str | None = Field(None, description="a registry the trust policy allows")
    ca_cert_env: str | None = Field(None, description="env var with the test CA certificate")
    ca_key_env: str | None = Field(None, description="env var with the test CA private key")


class TargetDescription(_Strict):
    """What the harness knows about a target before it asks it anything."""

    url: str | None = Field(None, description="OrchQueue v1 base URL; none: the reference")
    auth: Auth = Auth()
    tenant_key_env: str | None = Field(
        None, description="env var with a second tenant's key (quota and isolation checks)"
    )
    data_plane_key_env: str | None = Field(
        None, description="env var with a key limited to the data plane (the 403 check)"
    )
    log: Path | None = Field(None, description="the target's JSON-lines log file")
    model_ref: str | None = Field(None, description="model_ref for tasks, overriding facts")
    engine: str | None = Field(None, description="use only replica sets of this engine")
    pool: str | None = Field(None, description="use only the replica set holding this pool")
    features: dict[str, bool] = Field(
        default_factory=dict, description="optional features claimed (true) or denied (false)"
    )
    facts: Facts = Facts()
    catalog: Catalog = Catalog()
    api_version: str | None = Field(
        None, description="the API version, when the target's capability data does not say"
    )
    timeouts: dict[str, float] = Field(default_factory=dict)
    timeout_scale: float = Field(1.0, gt=0)
    reference_config: Path | None = Field(
        None, description="the target is the reference started from this config"
    )

    @model_validator(mode="after")
    def _timeouts_known(self) -> TargetDescription:
        try:
            DEFAULT.with_overrides(self.timeouts)
        except TimeoutsError as exc:
            raise ValueError(str(exc)) from None
        return self

    def bounds(self) -> Timeouts:
        """The timeouts in force: defaults, scaled, then named overrides."""
        return DEFAULT.scaled(self.timeout_scale).with_overrides(self.timeouts)

    def merged(self, overrides: dict[str, Any], source: str = "flags") -> TargetDescription:
        """A copy with `overrides` (flags) applied on top: flags win over the file."""
        data = self.model_dump(exclude_unset=True)
        for key, value in overrides.items():
            if value is None or value == {} or value == ():
                continue
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return validate(data, source)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def validate(data: Any, source: str) -> TargetDescription:
    """A TargetDescription from plain data; errors name `source` and each bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TargetDescriptionError(f"{source}: expected a mapping of target settings")
    try:
        return TargetDescription.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise TargetDescriptionError(f"{source}: {problems}") from None


def load_description(path: Path) -> TargetDescription:
    """Read a target.yaml; a missing file, bad YAML or a bad field names the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetDescriptionError(f"{path}: cannot read the target description ({exc})") from exc
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise TargetDescriptionError(f"{path}: not valid YAML ({exc})") from exc
    desc = validate(data, str(path))
    if desc.log is not None and not desc.log.is_absolute():
        desc = desc.model_copy(update={"log": (path.parent / desc.log).resolve()})
    return desc


def fact_at(obj: Any, path: str | None) -> Any:
    """The value at a dotted path inside a JSON object, or None where the path leads nowhere."""
    if not path:
        return None
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj
