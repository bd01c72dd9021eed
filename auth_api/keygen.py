"""``python -m auth_api.keygen``: write a development RS256 key pair and a data master key
if none exists.

The write side signs tokens with the private key; the read side holds only the public one.
The master key wraps every user's data key (``event_contract.crypto``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def generate_key_pair(private_path: Path, public_path: Path) -> bool:
    """Write a new RSA key pair unless the private key exists; True if written."""
    if private_path.exists():
        return False
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    return True


def ensure_master_keys(path: Path) -> bool:
    """Write a file with one new master key unless it exists; True if written."""
    if path.exists():
        return False
    from event_contract.crypto import MasterKeys

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(MasterKeys.generate_line("m1") + "\n")
    return True


def main() -> int:
    from settings import load_settings

    settings = load_settings()
    written = generate_key_pair(Path(settings.jwt_private_key_file), Path(settings.jwt_public_key_file))
    print(("wrote" if written else "kept") + f" JWT key pair {settings.jwt_private_key_file}")
    if not settings.data_master_keys:
        written = ensure_master_keys(Path(settings.data_master_keys_file))
        print(("wrote" if written else "kept") + f" data master key {settings.data_master_keys_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
