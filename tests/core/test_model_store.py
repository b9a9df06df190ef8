import os
import threading
from pathlib import Path

import pytest

from core.model_store import LocalModelStore, check_repo_id, folder_hash
from core.stores import ModelStore, RepoNotFound, StoreError


def make_model(folder: Path, weights: bytes = b"\x00\x01weights") -> Path:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"hidden_size": 64}')
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "sub" / "tokenizer.json").write_text("{}")
    return folder


def test_is_a_model_store(tmp_path):
    assert isinstance(LocalModelStore(tmp_path), ModelStore)


@pytest.mark.parametrize(
    "repo_id", ["noslash", "a/b/c", "/abs/name", "../up", "org/..", "org/na..me", "org/", "org/na me", "", ".org/x"]
)
def test_bad_repo_ids_are_refused(tmp_path, repo_id):
    store = LocalModelStore(tmp_path)
    with pytest.raises(StoreError, match="repo id"):
        store.exists(repo_id)
    with pytest.raises(StoreError, match="repo id"):
        store.upload(make_model(tmp_path / "m"), repo_id)


def test_good_repo_ids():
    assert check_repo_id("unsloth/Llama-3.2-1B.v2") == ("unsloth", "Llama-3.2-1B.v2")
    assert check_repo_id("a/b") == ("a", "b")


def test_upload_and_read_back(tmp_path):
    store = LocalModelStore(tmp_path / "store")
    source = make_model(tmp_path / "src")
    assert not store.exists("org/tiny")
    with pytest.raises(RepoNotFound, match="org/tiny"):
        store.local_path("org/tiny")

    content_hash = store.upload(source, "org/tiny")
    assert store.exists("org/tiny")
    path = store.local_path("org/tiny")
    assert path == tmp_path / "store" / "org" / "tiny"
    assert (path / "model.safetensors").read_bytes() == b"\x00\x01weights"
    assert (path / "sub" / "tokenizer.json").read_text() == "{}"
    assert store.content_hash("org/tiny") == content_hash == folder_hash(source)
    assert (path / ".god" / "content_hash").read_text().strip() == content_hash
    # the hash does not count the bookkeeping folder, so hashing the stored repo gives the same value
    assert folder_hash(path) == content_hash

    # uploading the same content again keeps the hash; changing a byte or a name changes it
    assert store.upload(source, "org/tiny") == content_hash
    (source / "model.safetensors").write_bytes(b"\x00\x02weights")
    changed = store.upload(source, "org/tiny")
    assert changed != content_hash
    assert (store.local_path("org/tiny") / "model.safetensors").read_bytes() == b"\x00\x02weights"
    (source / "model.safetensors").rename(source / "model2.safetensors")
    assert folder_hash(source) != changed


def test_replacing_drops_old_files_and_old_versions(tmp_path):
    store = LocalModelStore(tmp_path / "store")
    source = make_model(tmp_path / "src")
    store.upload(source, "org/tiny")
    (source / "sub" / "tokenizer.json").unlink()
    store.upload(source, "org/tiny")
    assert not (store.local_path("org/tiny") / "sub" / "tokenizer.json").exists()
    versions = list((tmp_path / "store" / ".versions" / "org" / "tiny").iterdir())
    assert len(versions) == 1


def test_hash_is_independent_of_file_order_but_not_of_path_boundaries(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "ab").write_bytes(b"c")
    two = tmp_path / "two"
    two.mkdir()
    (two / "a").write_bytes(b"bc")
    assert folder_hash(one) != folder_hash(two)
    three = tmp_path / "three"
    three.mkdir()
    (three / "z").write_bytes(b"1")
    (three / "y").write_bytes(b"2")
    four = tmp_path / "four"
    four.mkdir()
    (four / "y").write_bytes(b"2")
    (four / "z").write_bytes(b"1")
    assert folder_hash(three) == folder_hash(four)


def test_readers_never_see_a_missing_or_mixed_repo(tmp_path):
    store = LocalModelStore(tmp_path / "store")
    sources = []
    for index in range(2):
        source = tmp_path / f"src{index}"
        source.mkdir()
        for name in ("a.bin", "b.bin"):
            (source / name).write_bytes(bytes([index]) * 2048)
        sources.append(source)
    store.upload(sources[0], "org/swap")
    problems = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                path = store.local_path("org/swap").resolve()
            except Exception as error:  # a missing repo would show up here
                problems.append(error)
                continue
            try:
                contents = {(path / name).read_bytes() for name in ("a.bin", "b.bin")}
            except FileNotFoundError:
                continue  # this reader resolved a version that was replaced and removed meanwhile
            if len(contents) != 1:
                problems.append(contents)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(30):
            store.upload(sources[round_ % 2], "org/swap")
            assert store.exists("org/swap")
    finally:
        stop.set()
        reader.join()
    assert problems == []


def test_upload_of_a_missing_folder(tmp_path):
    with pytest.raises(StoreError, match="not a directory"):
        LocalModelStore(tmp_path).upload(tmp_path / "nope", "org/x")


def test_a_plain_folder_put_there_by_hand_is_replaced(tmp_path):
    store = LocalModelStore(tmp_path / "store")
    manual = make_model(tmp_path / "store" / "org" / "manual")
    assert store.exists("org/manual")
    assert store.content_hash("org/manual") == folder_hash(manual)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "only.txt").write_text("x")
    store.upload(tmp_path / "new", "org/manual")
    assert sorted(os.listdir(store.local_path("org/manual"))) == [".god", "only.txt"]
    assert store.local_path("org/manual").is_symlink()
