"""Ed25519 signatures of models (the `signing` extra): required when a public key is configured."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.rollout.signature import SignatureError, verify_signature


def fleet_keys(folder):
    """A fleet signing key: (private key, public key as PEM file, public key as raw 32-byte file)."""
    private = Ed25519PrivateKey.generate()
    pem = folder / "fleet.pub"
    pem.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = folder / "fleet.raw"
    raw.write_bytes(private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    return private, pem, raw


@pytest.fixture
def keys(tmp_path):
    return fleet_keys(tmp_path)


def test_a_signed_model_verifies_with_a_pem_or_raw_key(tmp_path, keys):
    private, pem, raw = keys
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model bytes" * 100)
    signature = private.sign(model.read_bytes()).hex()
    verify_signature(model, signature, pem)
    verify_signature(model, signature, raw)
    verify_signature(model, None, None)  # no key configured: signatures are not required


def test_unsigned_altered_or_foreign_models_are_refused(tmp_path, keys):
    private, pem, _ = keys
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model bytes" * 100)
    with pytest.raises(SignatureError, match="has no signature"):
        verify_signature(model, None, pem)
    signature = private.sign(model.read_bytes()).hex()
    model.write_bytes(b"model bytes" * 99 + b"altered!!!!")
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature(model, signature, pem)
    other = Ed25519PrivateKey.generate().sign(model.read_bytes()).hex()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature(model, other, pem)
    bad_key = tmp_path / "bad.pub"
    bad_key.write_text("not a key")
    with pytest.raises(SignatureError, match="not a PEM public key"):
        verify_signature(model, other, bad_key)
