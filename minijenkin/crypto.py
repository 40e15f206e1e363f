"""Encryption of stored secrets with AES-256-GCM.

Keys come from MINIJENKIN_SECRET_KEY: one or more base64-encoded 32-byte
keys separated by commas. The first key encrypts; every listed key can
decrypt, which is how a key is rotated (put the new key first, re-encrypt,
then drop the old one). Without the variable, a key is generated once in
`<data_dir>/secret.key` (mode 0600); that suits one host, while several hosts
must share MINIJENKIN_SECRET_KEY.

A ciphertext is the text `mj1:<key id>:<base64 of nonce + sealed data>`. The
key id is the first 8 hex digits of the key's SHA-256, so a value names the
key that sealed it. Each value is bound to its purpose through the GCM
associated data (for example `repo:12:webhook_secret`), so a sealed value
copied to another row or field does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from minijenkin.errors import ConfigurationError, MiniJenkinError

logger = logging.getLogger(__name__)

PREFIX = "mj1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE_NAME = "secret.key"


class DecryptionError(MiniJenkinError):
    """A stored secret cannot be decrypted with the configured keys."""


def _decode_key(text: str) -> bytes:
    cleaned = text.strip()
    for decoder in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            key = decoder(cleaned + "=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_BYTES:
            return key
    raise ConfigurationError(
        "invalid MINIJENKIN_SECRET_KEY: each key must be 32 random bytes in base64; create one "
        "with: python3 -c 'import base64,secrets; "
        "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())'"
    )


def generate_key() -> str:
    """A new random key in the form MINIJENKIN_SECRET_KEY expects."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


@dataclass(frozen=True)
class Keyring:
    """The active key first, then older keys still accepted for decryption."""

    keys: tuple[bytes, ...]

    @classmethod
    def from_text(cls, text: str) -> Keyring:
        keys = tuple(_decode_key(part) for part in text.split(",") if part.strip())
        if not keys:
            raise ConfigurationError("MINIJENKIN_SECRET_KEY is set but empty")
        return cls(keys)

    @property
    def active_id(self) -> str:
        return key_id(self.keys[0])

    def encrypt(self, plaintext: str, *, purpose: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[0]).encrypt(nonce, plaintext.encode("utf-8"), purpose.encode())
        payload = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{PREFIX}:{self.active_id}:{payload}"

    def decrypt(self, ciphertext: str, *, purpose: str) -> str:
        try:
            prefix, wanted_id, payload = ciphertext.split(":", 2)
        except ValueError:
            raise DecryptionError("the stored value is not an encrypted secret") from None
        if prefix != PREFIX:
            raise DecryptionError(f"unknown secret format {prefix!r}")
        raw = base64.urlsafe_b64decode(payload.encode("ascii"))
        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        for key in self.keys:
            if key_id(key) != wanted_id:
                continue
            try:
                return AESGCM(key).decrypt(nonce, sealed, purpose.encode()).decode("utf-8")
            except InvalidTag:
                break
        raise DecryptionError(
            f"cannot decrypt a secret sealed with key {wanted_id}: add that key to "
            "MINIJENKIN_SECRET_KEY (or the value was tampered with)"
        )

    def needs_rotation(self, ciphertext: str) -> bool:
        """True when `ciphertext` was not sealed with the active key."""
        return not ciphertext.startswith(f"{PREFIX}:{self.active_id}:")


def load_keyring(secret_key: str | None, data_dir: Path) -> Keyring:
    """The keyring from MINIJENKIN_SECRET_KEY, else from (or into) `<data_dir>/secret.key`."""
    if secret_key:
        return Keyring.from_text(secret_key)
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(generate_key() + "\n")
            logger.warning(
                "generated a secret key; processes on other hosts need the same "
                "MINIJENKIN_SECRET_KEY", extra={"action": "secret_key_generated", "path": str(path)})
    return Keyring.from_text(path.read_text())
