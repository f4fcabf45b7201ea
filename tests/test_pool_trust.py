"""Trust rules of catalog artifacts (pool/trust.py): registry, digests, signatures, SBOM.

Key pairs, certificates and artifacts are made here at test time (harness.signing and the
`cryptography` library); nothing is fetched or read from the repository.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from llama_orch.harness.signing import Authority, model_entry
from llama_orch.reference_impl.pool import trust

REGISTRY = "models.example.org"
CA = Authority.generate()


def policy(**over) -> trust.Policy:
    base = dict(
        strict=True,
        allowed_registries=(REGISTRY,),
        require_signature=True,
        require_sbom=True,
        roots=(trust.TrustRoot("CA", CA.cert),),
    )
    return trust.Policy(**{**base, **over})


def artifact(entry: dict) -> trust.Artifact:
    def doc(d):
        return trust.Document(d["digest"], d.get("content"))

    return trust.Artifact(
        entry["digest"],
        entry.get("source_url"),
        tuple(doc(m) for m in entry["manifests"]),
        doc(entry["sbom"]) if "sbom" in entry else None,
        tuple(
            trust.Signature(s["signer"], s["algo"], s.get("value"), s.get("certificate"))
            for s in entry["signatures"]
        ),
    )


def reason(entry: dict, when: dt.datetime | None = None, **over) -> str:
    when = when or dt.datetime.now(dt.UTC)
    return trust.evaluate(artifact(entry), policy(**over), when).reason


@pytest.mark.req("ORCH-3061", "ORCH-3067")
def test_a_signed_artifact_passes_and_an_unsigned_one_is_refused() -> None:
    assert reason(model_entry(REGISTRY, signer=CA.issue())) == trust.VERIFIED
    assert reason(model_entry(REGISTRY, signer=None)) == trust.SIGNATURE_MISSING
    # Without require_signature an unsigned artifact passes the signature rule.
    assert reason(model_entry(REGISTRY, signer=None), require_signature=False) == trust.VERIFIED


@pytest.mark.req("ORCH-3061")
def test_signatures_that_do_not_verify_are_refused() -> None:
    stranger = model_entry(REGISTRY, signer=Authority.stranger())
    assert reason(stranger) == trust.SIGNATURE_INVALID
    tampered = model_entry(REGISTRY, signer=CA.issue())
    tampered["digest"] = "sha256:" + "0" * 64
    assert reason(tampered) == trust.SIGNATURE_INVALID
    renamed = model_entry(REGISTRY, signer=CA.issue("alice@llorch.test"))
    renamed["signatures"][0]["signer"] = "mallory@llorch.test"
    assert reason(renamed) == trust.SIGNATURE_INVALID
    expired = model_entry(REGISTRY, signer=CA.issue(valid_for_s=1))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    assert reason(expired, later) == trust.SIGNATURE_INVALID
    wrong_algo = model_entry(REGISTRY, signer=CA.issue())
    wrong_algo["signatures"][0]["algo"] = "ecdsa-p256-sha256"
    assert reason(wrong_algo) == trust.SIGNATURE_INVALID
    garbage = model_entry(REGISTRY, signer=CA.issue())
    garbage["signatures"][0]["value"] = "not base64!"
    assert reason(garbage) == trust.SIGNATURE_INVALID


@pytest.mark.req("ORCH-3061")
def test_an_ecdsa_p256_signature_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ec@llorch.test")]))
        .issuer_name(CA.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        .sign(CA.key, None)
    )
    entry = model_entry(REGISTRY, signer=None)
    signature = key.sign(entry["digest"].encode(), ec.ECDSA(hashes.SHA256()))
    entry["signatures"] = [
        {
            "signer": "ec@llorch.test",
            "algo": "ecdsa-p256-sha256",
            "value": base64.b64encode(signature).decode(),
            "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        }
    ]
    assert reason(entry) == trust.VERIFIED


@pytest.mark.req("ORCH-3063")
def test_only_allowed_registries_pass() -> None:
    assert reason(model_entry("elsewhere.example", signer=CA.issue())) == (
        trust.REGISTRY_NOT_ALLOWED
    )
    on_port = model_entry(f"{REGISTRY}:5000", signer=CA.issue())
    assert reason(on_port) == trust.VERIFIED  # a bare host allows it on any port
    assert reason(on_port, allowed_registries=(f"{REGISTRY}:443",)) == trust.REGISTRY_NOT_ALLOWED
    local = model_entry(REGISTRY, signer=CA.issue())
    local["source_url"] = "file:///models/tiny.gguf"
    assert reason(local, allowed_registries=()) == trust.VERIFIED


@pytest.mark.req("ORCH-3065", "ORCH-3066")
def test_documents_must_hash_to_their_digests_and_the_sbom_is_required() -> None:
    entry = model_entry(REGISTRY, signer=CA.issue())
    entry["manifests"][0]["content"] += " "
    assert reason(entry) == trust.DIGEST_MISMATCH
    no_sbom = model_entry(REGISTRY, signer=CA.issue(), sbom=False)
    assert reason(no_sbom) == trust.SBOM_MISSING
    assert reason(no_sbom, require_sbom=False) == trust.VERIFIED


def test_ca_roots_expand_variables_skip_unset_ones_and_name_a_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "ca.pem"
    good.write_text(CA.cert_pem())
    (tmp_path / "bad.pem").write_text("not a certificate")
    roots = trust.load_roots(["ca.pem", "$LLORCH_TEST_UNSET_CA"], tmp_path)
    assert [r.cert for r in roots] == [CA.cert]
    with pytest.raises(trust.TrustSetupError, match=r"ca_roots\[1\]"):
        trust.load_roots(["ca.pem", "bad.pem"], tmp_path)


def test_digest_helper_matches_hashlib() -> None:
    assert trust.sha256_text("x") == "sha256:" + hashlib.sha256(b"x").hexdigest()
