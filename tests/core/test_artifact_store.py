import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from core.artifact_store import ArtifactNotFound, LocalArtifactStore, artifact_router
from core.stores import ArtifactStore, StoreError

SECRET = b"s" * 32


@pytest.fixture
def store(tmp_path):
    return LocalArtifactStore(tmp_path / "artifacts", secret=SECRET, base_url="http://validator:9000/")


@pytest.fixture
def client(store):
    app = FastAPI()
    app.include_router(artifact_router(store))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app))


def test_put_get_exists(store):
    assert isinstance(store, ArtifactStore)
    assert not store.exists("datasets/t1_train.json")
    store.put_bytes("datasets/t1_train.json", b"[1, 2]")
    assert store.exists("datasets/t1_train.json")
    assert store.get_bytes("datasets/t1_train.json") == b"[1, 2]"
    store.put_bytes("datasets/t1_train.json", b"[3]")
    assert store.get_bytes("datasets/t1_train.json") == b"[3]"
    with pytest.raises(ArtifactNotFound, match="missing.json"):
        store.get_bytes("missing.json")


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../b", "a//b", "", "a/.hidden", "a b", "a/"])
def test_bad_keys_are_refused(store, key):
    with pytest.raises(StoreError, match="artifact key"):
        store.put_bytes(key, b"x")
    assert not store.verify(key, int(time.time()) + 60, "00")


def test_signatures(store):
    url = store.signed_url("datasets/t1.json", expires_in_seconds=60)
    parts = urlsplit(url)
    assert url.startswith("http://validator:9000/artifacts/datasets/t1.json?")
    query = parse_qs(parts.query)
    expires, signature = query["expires"][0], query["signature"][0]
    assert abs(int(expires) - (time.time() + 60)) < 5
    assert store.verify("datasets/t1.json", expires, signature)
    assert not store.verify("datasets/t2.json", expires, signature)
    assert not store.verify("datasets/t1.json", int(expires) + 1, signature)
    assert not store.verify("datasets/t1.json", expires, signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    assert not store.verify("datasets/t1.json", "soon", signature)
    other = LocalArtifactStore(store.root, secret=b"o" * 32, base_url="http://x")
    assert not other.verify("datasets/t1.json", expires, signature)
    # expired: a signature made for a time in the past does not verify
    past = int(time.time()) - 1
    assert not store.verify("datasets/t1.json", past, store._signature("datasets/t1.json", past))
    # key and expiry are separated in the signed message: "t1" + "23…" must not sign "t" + "123…"
    assert not store.verify("datasets/t", "1" + expires, store._signature("datasets/t1", int(expires)))


@pytest.mark.parametrize(
    "signature",
    ["\xff\xfe", "é" * 64, "00", "G" * 64, " " + "0" * 63, "0" * 65],
    ids=["non-ascii", "non-ascii-64", "short", "not-hex", "space", "long"],
)
def test_signatures_that_are_not_64_hex_digits_do_not_verify(store, signature):
    expires = int(time.time()) + 60
    assert not store.verify("datasets/t1.json", expires, signature)


async def test_router_refuses_a_non_ascii_signature_with_403(store, client):
    store.put_bytes("datasets/t1.json", b"{}")
    url = store.signed_url("datasets/t1.json", expires_in_seconds=60)
    response = await client.get(url.split("&signature=")[0] + "&signature=%ff%fe")
    assert response.status_code == 403
    # The same signature in upper case is not what the store hands out either.
    signature = url.split("&signature=")[1]
    assert (await client.get(url.replace(signature, signature.upper()))).status_code == 403
    assert (await client.get(url)).status_code == 200
    await client.aclose()


async def test_router_serves_signed_urls(store, client):
    store.put_bytes("datasets/t1.json", b'{"rows": 3}')
    url = store.signed_url("datasets/t1.json", expires_in_seconds=60)
    response = await client.get(url)
    assert response.status_code == 200
    assert response.content == b'{"rows": 3}'

    assert (await client.get(url.replace("t1.json", "t2.json"))).status_code == 403
    assert (await client.get(url.split("?")[0])).status_code == 403
    assert (await client.get(url[:-2] + "00")).status_code == 403
    past = int(time.time()) - 10
    expired = f"http://validator:9000/artifacts/datasets/t1.json?expires={past}&signature="
    expired += store._signature("datasets/t1.json", past)
    assert (await client.get(expired)).status_code == 403

    missing = store.signed_url("datasets/none.json", expires_in_seconds=60)
    assert (await client.get(missing)).status_code == 404
    traversal = "http://validator:9000/artifacts/..%2F..%2Fetc%2Fpasswd?expires=9999999999&signature=00"
    assert (await client.get(traversal)).status_code in (403, 404)
    await client.aclose()
