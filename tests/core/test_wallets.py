import pytest
from bittensor.sp_core import verify

from core.wallets import WalletError, create_wallet, load_wallet


def test_create_is_idempotent_and_keys_are_real(tmp_path):
    wallet = create_wallet("owner", "validator", tmp_path)
    again = create_wallet("owner", "validator", tmp_path)
    assert again.hotkey.ss58_address == wallet.hotkey.ss58_address
    assert again.coldkeypub.ss58_address == wallet.coldkeypub.ss58_address
    assert wallet.hotkey.ss58_address != wallet.coldkeypub.ss58_address
    # a second hotkey under the same coldkey
    miner = create_wallet("owner", "miner", tmp_path)
    assert miner.coldkeypub.ss58_address == wallet.coldkeypub.ss58_address
    assert miner.hotkey.ss58_address != wallet.hotkey.ss58_address

    loaded = load_wallet("owner", "validator", tmp_path)
    signature = loaded.hotkey.sign(b"hello")
    assert verify(b"hello", signature, wallet.hotkey.ss58_address)
    assert not verify(b"hello", signature, miner.hotkey.ss58_address)


def test_missing_keys_name_the_path(tmp_path):
    with pytest.raises(WalletError, match=str(tmp_path / "nobody" / "hotkeys" / "hk")):
        load_wallet("nobody", "hk", tmp_path)
    create_wallet("owner", "validator", tmp_path)
    with pytest.raises(WalletError, match="hotkeys/other does not exist"):
        load_wallet("owner", "other", tmp_path)
    with pytest.raises(WalletError, match="plain name"):
        create_wallet("../escape", "x", tmp_path)
