"""Trust material made at run time for the catalog checks: a CA, signers, signed entries.

A strict trust policy accepts only artifacts whose signature chains to one of the target's CA
roots, so the catalog checks need a CA the target trusts. The target description names one
(`catalog.ca_cert_env` and `catalog.ca_key_env`: a test CA configured into the target); for the
embedded reference the harness generates one before starting it. From that CA the checks issue
signer certificates as they need them (short-lived ones too), and build catalog entries whose
model bytes, manifest and SBOM are generated on the spot: nothing is fetched or kept on disk.

The signed payload is the UTF-8 text of the entry's `digest` (`sha256:<hex>`); the signature is
Ed25519, carried in the signature entry with the signer's certificate (PEM), as specified in
specs/00 section 15. All cryptography is the `cryptography` library's.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

ALGO = "ed25519"
# RFC 6761 reserves .invalid: no trust policy allows a registry there by accident.
UNTRUSTED_REGISTRY = "registry.llorch-compliance.invalid"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def sha256_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Signer:
    """A signing key and the certificate that names it."""

    name: str
    key: ed25519.Ed25519PrivateKey
    cert: x509.Certificate

    def sign(self, digest: str) -> dict[str, Any]:
        """A CatalogModel signature entry over `digest`."""
        return {
            "signer": self.name,
            "algo": ALGO,
            "verified": False,
            "timestamp_ms": int(time.time() * 1000),
            "value": base64.b64encode(self.key.sign(digest.encode("utf-8"))).decode("ascii"),
            "certificate": _pem(self.cert),
        }


@dataclass(frozen=True)
class Authority:
    """A certificate authority that issues signer certificates."""

    key: ed25519.Ed25519PrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(cls, common_name: str = "llorch compliance test CA") -> Authority:
        key = ed25519.Ed25519PrivateKey.generate()
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, None)
        )
        return cls(key, cert)

    @classmethod
    def from_pem(cls, key_pem: str, cert_pem: str) -> Authority:
        key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("the test CA key must be an Ed25519 key")
        return cls(key, x509.load_pem_x509_certificate(cert_pem.encode("ascii")))

    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def cert_pem(self) -> str:
        return _pem(self.cert)

    def issue(self, name: str | None = None, *, valid_for_s: float = 3600.0) -> Signer:
        """A new signer whose certificate this CA issued, valid from now for `valid_for_s`."""
        name = name or f"signer-{secrets.token_hex(4)}@llorch.test"
        key = ed25519.Ed25519PrivateKey.generate()
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(seconds=60))
            .not_valid_after(now + dt.timedelta(seconds=valid_for_s))
            .sign(self.key, None)
        )
        return Signer(name, key, cert)

    @staticmethod
    def stranger(name: str = "stranger@llorch.test") -> Signer:
        """A signer whose certificate no CA of the target issued (a self-issued one)."""
        return Authority.generate(f"stranger CA {secrets.token_hex(3)}").issue(name)


def model_entry(
    registry: str,
    *,
    signer: Signer | None,
    sbom: bool = True,
    tags: tuple[str, ...] = ("v1",),
    size: int = 4096,
) -> dict[str, Any]:
    """A CatalogModel for fresh, random model bytes: manifest and SBOM included, signed by
    `signer` (unsigned when None). The id and the repository are unique per call."""
    unique = secrets.token_hex(6)
    digest = "sha256:" + hashlib.sha256(os.urandom(size)).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "layers": [
                {"mediaType": "application/vnd.llorch.model", "digest": digest, "size": size}
            ],
        },
        sort_keys=True,
    )
    sbom_text = json.dumps(
        {
            "spdxVersion": "SPDX-2.3",
            "name": f"llorch-compliance-{unique}",
            "packages": [{"name": "model", "checksums": [{"algorithm": "SHA256", "v": digest}]}],
        },
        sort_keys=True,
    )
    body: dict[str, Any] = {
        "id": f"llorch-compliance-{unique}",
        "digest": digest,
        "source_url": f"https://{registry}/llorch-compliance/{unique}",
        "tags": list(tags),
        "manifests": [
            {"digest": sha256_text(manifest), "size_bytes": len(manifest), "content": manifest}
        ],
        "signatures": [signer.sign(digest)] if signer is not None else [],
    }
    if sbom:
        body["sbom"] = {
            "uri": f"https://{registry}/llorch-compliance/{unique}/sbom.spdx.json",
            "digest": sha256_text(sbom_text),
            "content": sbom_text,
        }
    return body


def tag_reference(entry: dict[str, Any], tag: str) -> str:
    """`<repository>:<tag>`: the entry's source without its scheme, and the tag."""
    return f"{entry['source_url'].split('://', 1)[-1].rstrip('/')}:{tag}"
