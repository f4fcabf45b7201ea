"""Select the target of a run: the URL of the description, or the embedded reference.

Keys come from the environment variables the description names (never from a flag or file);
an unset or empty key variable stops the run before the first request (OC-HARNESS-8003).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from llama_orch.harness.description import TargetDescription, load_description
from llama_orch.harness.discovery import Group, Target, TargetError, discover
from llama_orch.harness.embedded import DEFAULT_CONFIG, embedded_reference
from llama_orch.harness.openapi import load_doc
from llama_orch.harness.signing import Authority
from llama_orch.resources import data_path

REFERENCE_DESCRIPTION = data_path("examples", "reference.target.yaml")
# The environment variable examples/mock.yaml reads its catalog CA root from.
CATALOG_CA_ENV = "LLORCH_CATALOG_CA"

__all__ = ["Group", "Target", "TargetError", "open_target", "reference_description"]


def contract_version() -> str:
    return str(load_doc("data.yaml")["info"]["version"])


def reference_description() -> TargetDescription:
    """How the harness sees the reference orchestrator (examples/reference.target.yaml)."""
    return load_description(REFERENCE_DESCRIPTION)


def _key(env: str | None, what: str, required: bool) -> str | None:
    if not env:
        return None
    value = os.environ.get(env)
    if not value and required:
        raise TargetError(f"{what}: environment variable {env} is unset or empty")
    return value or None


@contextlib.contextmanager
def open_target(desc: TargetDescription, config: Path = DEFAULT_CONFIG) -> Iterator[Target]:
    """The described target, discovered; without a URL the reference, started and stopped."""
    if desc.url:
        target = Target(
            desc.url.rstrip("/"),
            desc,
            _key(desc.auth.key_env, "the target's API key", True),
            tenant_key=_key(desc.tenant_key_env, "tenant_key_env", False),
            data_plane_key=_key(desc.data_plane_key_env, "data_plane_key_env", False),
            authority=_authority(desc),
        )
        yield discover(target, contract_version())
        return
    env = desc.auth.key_env
    with tempfile.TemporaryDirectory(prefix="llorch-target-") as tmp:
        log = Path(tmp) / "reference.log"
        # A CA made for this run; the reference's trust policy reads it from CATALOG_CA_ENV.
        authority = Authority.generate()
        ca_file = Path(tmp) / "catalog-ca.pem"
        ca_file.write_text(authority.cert_pem(), encoding="utf-8")
        extra = {CATALOG_CA_ENV: str(ca_file)}
        with embedded_reference(config, env, log, extra_env=extra) as (url, key, tenant):
            ref = desc.merged({"log": log, "reference_config": config}, "embedded reference")
            target = Target(
                url,
                ref,
                key,
                embedded=True,
                tenant_key=tenant,
                data_plane_key=tenant,
                authority=authority,
            )
            yield discover(target, contract_version())


def _authority(desc: TargetDescription) -> Authority | None:
    """The test CA the description names (certificate and key PEM from the environment)."""
    cat = desc.catalog
    cert = _key(cat.ca_cert_env, "catalog.ca_cert_env", False)
    key = _key(cat.ca_key_env, "catalog.ca_key_env", False)
    if not cert or not key:
        return None
    try:
        return Authority.from_pem(key, cert)
    except ValueError as exc:
        msg = f"catalog.ca_key_env / ca_cert_env: not a usable test CA ({exc})"
        raise TargetError(msg) from None
