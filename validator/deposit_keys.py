"""Deposit keypairs of accounts: a real sr25519 keypair per account, its mnemonic encrypted at rest.

The secret is sealed with AES-256-GCM (pycryptodome, which the bittensor SDK already installs) under the validator's
deposit key (`resolve_deposit_key`): a version byte, a 12-byte nonce, the 16-byte tag, then the ciphertext. The
account id is the associated data, so a sealed secret copied onto another account's row does not open.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from uuid import UUID

from bittensor.sp_core import Keypair
from Crypto.Cipher import AES

_VERSION = b"\x01"
_NONCE_BYTES = 12
_TAG_BYTES = 16


class SealedSecretError(Exception):
    """A sealed secret does not open: another key, another account, or a damaged value."""


@dataclass(frozen=True)
class DepositKeypair:
    ss58: str
    mnemonic: str


def new_deposit_keypair() -> DepositKeypair:
    mnemonic = Keypair.generate_mnemonic(12)
    return DepositKeypair(ss58=Keypair.create_from_mnemonic(mnemonic).ss58_address, mnemonic=mnemonic)


def seal(key: bytes, account_id: UUID, secret: str) -> bytes:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(account_id.bytes)
    ciphertext, tag = cipher.encrypt_and_digest(secret.encode("utf-8"))
    return _VERSION + nonce + tag + ciphertext


def open_sealed(key: bytes, account_id: UUID, sealed: bytes) -> str:
    if len(sealed) < 1 + _NONCE_BYTES + _TAG_BYTES or sealed[:1] != _VERSION:
        raise SealedSecretError("not a sealed secret of a known version")
    nonce = sealed[1 : 1 + _NONCE_BYTES]
    tag = sealed[1 + _NONCE_BYTES : 1 + _NONCE_BYTES + _TAG_BYTES]
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(account_id.bytes)
    try:
        return cipher.decrypt_and_verify(sealed[1 + _NONCE_BYTES + _TAG_BYTES :], tag).decode("utf-8")
    except ValueError:
        raise SealedSecretError("the sealed secret does not open with this key for this account") from None
