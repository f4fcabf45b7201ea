"""API-key authentication and the two roles it grants.

Keys come from the environment or a key file named in the config, never from the repository
(specs/20-orchestratord.md, 6). Operator keys (`auth.api_keys_env` / `api_keys_file`) may use
both planes; tenant keys (`auth.tenants[]`) only the data plane and only their own tasks.
Keys are compared by SHA-256 digest with a constant-time comparison and never logged.
Unauthenticated by design: `GET /livez` (liveness for supervisors) and `GET /metrics` (scraped
by Prometheus, which holds no API key; it exposes no secret or per-request data).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from llama_orch.reference_impl.api.errors import ApiError
from llama_orch.reference_impl.constants import DEFAULT_TENANT
from llama_orch.reference_impl.service.startup import OrchestratorConfig

PUBLIC_PATHS = frozenset({"/livez", "/metrics"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant id and whether the key is an operator key."""

    tenant: str
    operator: bool


class AuthError(RuntimeError):
    """The server cannot start because no API key is configured (and auth is not disabled)."""


class Authenticator:
    """Maps presented keys to principals."""

    def __init__(self, keys: dict[str, Principal], *, enabled: bool = True) -> None:
        self._by_digest = {_digest(k): p for k, p in keys.items()}
        self.enabled = enabled
        self.secrets = frozenset(keys)

    @classmethod
    def from_config(
        cls, config: OrchestratorConfig, *, insecure_no_auth: bool = False, env=os.environ
    ) -> Authenticator:
        keys: dict[str, Principal] = {}
        auth = config.auth
        operator_keys: list[str] = []
        if auth.api_keys_env:
            operator_keys = [k.strip() for k in env.get(auth.api_keys_env, "").split(",")]
        elif auth.api_keys_file:
            path = Path(os.path.expandvars(os.path.expanduser(auth.api_keys_file)))
            if config.source_path is not None and not path.is_absolute():
                path = config.source_path.parent / path
            operator_keys = [k.strip() for k in path.read_text(encoding="utf-8").splitlines()]
        for key in operator_keys:
            if key:
                keys[key] = Principal(DEFAULT_TENANT, operator=True)
        for tenant in auth.tenants:
            key = env.get(tenant.api_key_env, "").strip()
            if key:
                keys[key] = Principal(tenant.id, operator=False)
        if not keys and not insecure_no_auth:
            source = auth.api_keys_env or auth.api_keys_file or "auth.api_keys_env"
            raise AuthError(
                f"no API key configured (set {source}); refusing to start. "
                "Use --insecure-no-auth only for local experiments."
            )
        return cls(keys, enabled=not insecure_no_auth)

    def authenticate(self, headers: dict[str, str]) -> Principal:
        """Principal for the request's key; raises 401 when missing or unknown."""
        if not self.enabled:
            return Principal(DEFAULT_TENANT, operator=True)
        key = headers.get("x-api-key")
        if key is None:
            scheme, _, token = (headers.get("authorization") or "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not key:
            raise ApiError(401, None, "missing API key (Authorization: Bearer <key>)")
        digest = _digest(key)
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise ApiError(401, None, "unknown API key")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
