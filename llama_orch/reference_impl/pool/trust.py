"""Trust checks of a catalog artifact (ORCH-3061, ORCH-3063): registry, digests, signature, SBOM.

A signature entry carries the signer's X.509 certificate (PEM) and the signature (base64) over
the UTF-8 bytes of the entry's `digest` string (`sha256:<hex>`). It is valid when its
certificate was issued by one of the configured CA roots and is within its validity period,
the certificate names the signer (subject common name or an e-mail SAN), and the certificate's
key verifies the signature with the named algorithm (`ed25519`, or `ecdsa-p256-sha256`). All
of it is done by `cryptography`; nothing here is home-made crypto.

`evaluate` returns one verdict with the first failed rule's reason (the `reason` label of
`catalog_verifications_total`, specs/71 section 4): `registry_not_allowed`, `digest_mismatch`,
`signature_missing`, `signature_invalid`, `sbom_missing`; `verified` when all rules hold.
Which rules apply is the trust policy's choice (`require_signature`, `require_sbom`); whether a
failure refuses the artifact is the caller's (`strict`), so a permissive catalog still counts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

log = logging.getLogger("llama_orch.reference_impl.pool")

VERIFIED = "verified"
REGISTRY_NOT_ALLOWED = "registry_not_allowed"
DIGEST_MISMATCH = "digest_mismatch"
SIGNATURE_MISSING = "signature_missing"
SIGNATURE_INVALID = "signature_invalid"
SBOM_MISSING = "sbom_missing"
ALGORITHMS = ("ed25519", "ecdsa-p256-sha256")
LOCAL_SCHEMES = ("file",)


class TrustSetupError(ValueError):
    """A configured CA root cannot be used; the message names the config field."""


@dataclass(frozen=True)
class TrustRoot:
    """A CA certificate signer certificates must be issued by; `name` is its subject."""

    name: str
    cert: x509.Certificate


@dataclass(frozen=True)
class Policy:
    """The trust policy in force (catalog.trust_policy), with its CA roots loaded."""

    strict: bool
    allowed_registries: tuple[str, ...]
    require_signature: bool
    require_sbom: bool
    roots: tuple[TrustRoot, ...]


@dataclass(frozen=True)
class Signature:
    signer: str
    algo: str
    value: str | None  # base64 signature over the entry digest
    certificate: str | None  # PEM of the signer's certificate


@dataclass(frozen=True)
class Document:
    """A stored file of the entry (a manifest or the SBOM): its digest and, when sent, text."""

    digest: str
    content: str | None


@dataclass(frozen=True)
class Artifact:
    digest: str
    source_url: str | None
    manifests: tuple[Document, ...]
    sbom: Document | None
    signatures: tuple[Signature, ...]


@dataclass(frozen=True)
class Verdict:
    reason: str
    detail: str
    signatures_ok: tuple[bool, ...]

    @property
    def passed(self) -> bool:
        return self.reason == VERIFIED


def sha256_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def registry_of(source_url: str | None) -> str | None:
    """The registry (host or host:port) a source names; None for a local or absent source."""
    if not source_url:
        return None
    parts = urlsplit(source_url if "://" in source_url else f"//{source_url}")
    if parts.scheme in LOCAL_SCHEMES:
        return None
    return parts.netloc.lower() or None


def registry_allowed(registry: str, allowed: Iterable[str]) -> bool:
    """An entry allows its exact host:port, and a bare host allows that host on any port."""
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    return any(a.lower() in (registry, host) for a in allowed)


def evaluate(artifact: Artifact, policy: Policy, now: datetime) -> Verdict:
    """Every rule of the policy against the artifact; the first failure names the reason."""
    checks = [_signature(s, artifact.digest, policy.roots, now) for s in artifact.signatures]
    ok = tuple(c is None for c in checks)
    registry = registry_of(artifact.source_url)
    if registry is not None and not registry_allowed(registry, policy.allowed_registries):
        allowed = ", ".join(policy.allowed_registries) or "none"
        return Verdict(
            REGISTRY_NOT_ALLOWED, f"registry {registry} is not allowed (allowed: {allowed})", ok
        )
    for kind, doc in [*(("manifest", m) for m in artifact.manifests), ("sbom", artifact.sbom)]:
        if doc is not None and doc.content is not None and sha256_text(doc.content) != doc.digest:
            return Verdict(DIGEST_MISMATCH, f"{kind} content does not hash to {doc.digest}", ok)
    if policy.require_signature and not any(ok):
        if not any(s.value and s.certificate for s in artifact.signatures):
            return Verdict(SIGNATURE_MISSING, "no signature with a value and a certificate", ok)
        first = next(c for c in checks if c is not None)
        return Verdict(SIGNATURE_INVALID, f"no signature verifies: {first}", ok)
    if policy.require_sbom and (artifact.sbom is None or artifact.sbom.content is None):
        return Verdict(SBOM_MISSING, "an SBOM with its content is required", ok)
    return Verdict(VERIFIED, "all trust rules hold", ok)


def _signature(
    sig: Signature, digest: str, roots: Sequence[TrustRoot], now: datetime
) -> str | None:
    """Why the signature does not verify, or None when it does."""
    if not sig.value or not sig.certificate:
        return "the signature has no value or no certificate"
    if sig.algo not in ALGORITHMS:
        return f"algorithm {sig.algo!r} is not one of {', '.join(ALGORITHMS)}"
    try:
        cert = x509.load_pem_x509_certificate(sig.certificate.encode("ascii"))
        raw = base64.b64decode(sig.value, validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        return f"unreadable certificate or signature ({exc})"
    if not any(_issued_by(cert, root.cert) for root in roots):
        return "the certificate is not issued by a configured CA root"
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "the certificate is outside its validity period"
    if sig.signer not in names_of(cert):
        return f"the certificate does not name signer {sig.signer!r}"
    key = cert.public_key()
    try:
        if sig.algo == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(raw, digest.encode("utf-8"))
        elif sig.algo == "ecdsa-p256-sha256" and isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1):
                return "the certificate key is not on P-256"
            key.verify(raw, digest.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
        else:
            return f"the certificate key does not fit algorithm {sig.algo!r}"
    except InvalidSignature:
        return "the signature does not match the digest"
    return None


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def names_of(cert: x509.Certificate) -> set[str]:
    """The identities a certificate names: subject common names and e-mail SANs."""
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names |= set(san.value.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    return names


def load_roots(paths: Sequence[str], base: Path | None) -> tuple[TrustRoot, ...]:
    """The CA certificates of `catalog.trust_policy.ca_roots`.

    `~` and `$VARS` are expanded and relative paths resolve against `base` (the config file's
    folder). An entry naming an unset variable is skipped with a warning, so one config serves
    deployments with and without test CAs; a file that cannot be read as a PEM certificate is
    a TrustSetupError naming the entry.
    """
    roots: list[TrustRoot] = []
    for i, raw in enumerate(paths):
        field = f"catalog.trust_policy.ca_roots[{i}]"
        expanded = os.path.expandvars(os.path.expanduser(raw))
        if "$" in expanded:
            log.warning("CA root skipped: its variable is unset", extra={"field": field})
            continue
        path = Path(expanded)
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            msg = f"{field}: {path} is not a readable PEM certificate ({exc})"
            raise TrustSetupError(msg) from None
        roots.append(TrustRoot(cert.subject.rfc4514_string(), cert))
    return tuple(roots)
