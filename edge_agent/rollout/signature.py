"""Optional Ed25519 signature of a model's bytes, so that a broker account alone cannot push a model.

With `rollout.public_key_file` set, every request must carry `signature` (hex of the 64-byte
Ed25519 signature of the model file) and it must verify; without it, signatures are ignored. The
`cryptography` package (the `signing` extra) is imported only when a key is configured: it is the
well-kept, audited binding to OpenSSL, and Ed25519 is not in Python's standard library.
"""

from pathlib import Path
from typing import Optional

from edge_agent.errors import EdgeAgentError


class SignatureError(EdgeAgentError):
    """The model is not signed by the configured key (or cannot be checked)."""


def verify_signature(model: Path, signature: Optional[str], public_key_file: Optional[Path]) -> None:
    if public_key_file is None:
        return
    if not signature:
        raise SignatureError("the request has no signature but this board requires one (rollout.public_key_file "
                             "is set): sign the model with the fleet's Ed25519 key")
    key = load_public_key(public_key_file)
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(bytes.fromhex(signature), model.read_bytes())
    except InvalidSignature:
        raise SignatureError("the model's signature does not verify with {}: refused (the model was altered or "
                             "signed with another key)".format(public_key_file)) from None


def load_public_key(path: Path):  # -> Ed25519PublicKey
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise SignatureError("rollout.public_key_file is set but the cryptography package is missing: "
                             "pip install 'edge-agent[signing]'") from None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SignatureError("rollout.public_key_file {}: cannot read it: {}".format(path, exc.strerror)) from None
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SignatureError("rollout.public_key_file {}: not a PEM public key or 32 raw bytes: {}".format(
            path, exc)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("rollout.public_key_file {}: the key is {}, not Ed25519".format(
            path, type(key).__name__))
    return key
