"""Loading customer datasets from files, URLs (a real local HTTP server), the artifact store and hub-style folders."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from core.artifact_store import LocalArtifactStore
from core.tasks import FileFormat
from validator.data import DataPreparationError, display_source, load_rows, rows_to_json_bytes

ROWS = [{"q": "What is 2+2?", "a": "4"}, {"q": "Capital of France?", "a": "Paris", "extra": 1}]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on loopback serving a temporary folder; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_json_list_and_json_lines_files_give_the_same_rows(tmp_path: Path) -> None:
    as_list = tmp_path / "data.json"
    as_list.write_text(json.dumps(ROWS))
    as_lines = tmp_path / "data.jsonl"
    as_lines.write_text("\n".join(json.dumps(row) for row in ROWS) + "\n\n")

    assert load_rows(str(as_list), FileFormat.JSON) == ROWS
    assert load_rows(str(as_lines), FileFormat.JSON) == ROWS


def test_csv_file_keeps_quoted_commas_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('q,a\n"Hello, world?","line one\nline two"\nplain,text\n', encoding="utf-8")

    rows = load_rows(str(path), FileFormat.CSV)

    assert rows == [{"q": "Hello, world?", "a": "line one\nline two"}, {"q": "plain", "a": "text"}]


def test_s3_format_picks_csv_or_json_by_extension(tmp_path: Path) -> None:
    csv_path = tmp_path / "data.csv"
    csv_path.write_text("q,a\nx,y\n")
    json_path = tmp_path / "data.bin"
    json_path.write_bytes(rows_to_json_bytes(ROWS))

    assert load_rows(str(csv_path), FileFormat.S3) == [{"q": "x", "a": "y"}]
    assert load_rows(str(json_path), "s3") == ROWS


def test_broken_json_names_the_file_and_line(tmp_path: Path) -> None:
    lines = tmp_path / "broken.jsonl"
    lines.write_text('{"q": "a", "a": "b"}\n{"q": "c", "a": }\n')
    array = tmp_path / "broken.json"
    array.write_text('[\n{"q": "a"},\n{"q": \n')

    with pytest.raises(DataPreparationError, match=r"broken\.jsonl line 2 is not valid JSON"):
        load_rows(str(lines), FileFormat.JSON)
    with pytest.raises(DataPreparationError, match=r"broken\.json is not valid JSON .* at line \d+, column \d+"):
        load_rows(str(array), FileFormat.JSON)


def test_json_that_is_not_a_list_of_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "numbers.json"
    path.write_text("[1, 2]")

    with pytest.raises(DataPreparationError, match=r"item 1 is a JSON number, not an object"):
        load_rows(str(path), FileFormat.JSON)


def test_csv_row_with_too_many_cells_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("q,a\nx,y\nx,y,z\n")

    with pytest.raises(DataPreparationError, match=r"line 3 has more cells than the header's 2 columns"):
        load_rows(str(path), FileFormat.CSV)


def test_missing_file_empty_file_and_non_utf8_are_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("q,a\ncafé,x\n".encode("latin-1"))

    with pytest.raises(DataPreparationError, match=r"file '.*nope\.json' not found"):
        load_rows(str(tmp_path / "nope.json"), FileFormat.JSON)
    with pytest.raises(DataPreparationError, match=r"empty\.json is empty"):
        load_rows(str(empty), FileFormat.JSON)
    with pytest.raises(DataPreparationError, match=r"not UTF-8 text"):
        load_rows(str(latin1), FileFormat.CSV)


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_bytes(rows_to_json_bytes(ROWS))

    with pytest.raises(DataPreparationError, match=r"larger than the 10 bytes limit"):
        load_rows(str(path), FileFormat.JSON, max_bytes=10)


def test_url_source_is_downloaded_and_parsed(http_root: tuple[Path, str]) -> None:
    root, base_url = http_root
    (root / "train.csv").write_text("q,a\nx,y\n")
    (root / "train.json").write_bytes(rows_to_json_bytes(ROWS))

    assert load_rows(f"{base_url}/train.csv?X-Amz-Signature=secret", FileFormat.S3) == [{"q": "x", "a": "y"}]
    with httpx.Client() as client:
        assert load_rows(f"{base_url}/train.json", FileFormat.JSON, http_client=client) == ROWS


def test_url_errors_hide_the_query_string(http_root: tuple[Path, str]) -> None:
    root, base_url = http_root
    (root / "big.json").write_bytes(rows_to_json_bytes(ROWS * 100))

    with pytest.raises(DataPreparationError, match=r"failed with HTTP 404") as missing:
        load_rows(f"{base_url}/missing.json?X-Amz-Signature=secret", FileFormat.S3)
    with pytest.raises(DataPreparationError, match=r"larger than the 100 bytes limit") as too_large:
        load_rows(f"{base_url}/big.json?token=secret", FileFormat.S3, max_bytes=100)

    assert "secret" not in str(missing.value)
    assert f"{base_url}/missing.json" in str(missing.value)
    assert "secret" not in str(too_large.value)


def test_unreachable_url_is_a_data_error() -> None:
    with pytest.raises(DataPreparationError, match=r"downloading http://127\.0\.0\.1:9/x\.json failed"):
        load_rows("http://127.0.0.1:9/x.json", FileFormat.S3)


def test_display_source_drops_credentials_and_query() -> None:
    assert display_source("https://user:pw@host.example/a/b.json?sig=1#f") == "https://host.example/a/b.json"
    assert display_source("/data/local.json") == "/data/local.json"


def test_artifact_source_reads_the_artifact_store(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts", secret=b"0123456789abcdef", base_url="http://localhost")
    store.put_bytes("uploads/customer.jsonl", b'{"q": "x", "a": "y"}\n{"q": "z", "a": "w"}\n')

    rows = load_rows("artifact://uploads/customer.jsonl", FileFormat.JSON, artifact_store=store)

    assert rows == [{"q": "x", "a": "y"}, {"q": "z", "a": "w"}]
    with pytest.raises(DataPreparationError, match=r"artifact 'uploads/other\.json' could not be read") as missing:
        load_rows("artifact://uploads/other.json", FileFormat.JSON, artifact_store=store)
    assert str(tmp_path) not in str(missing.value)
    with pytest.raises(DataPreparationError, match=r"no artifact store"):
        load_rows("artifact://uploads/customer.jsonl", FileFormat.JSON)


def test_hf_format_concatenates_all_splits(tmp_path: Path) -> None:
    folder = tmp_path / "hub_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"q": "a", "a": "b"}\n{"q": "c", "a": "d"}\n')
    (folder / "test.jsonl").write_text('{"q": "e", "a": "f"}\n')

    rows = load_rows(str(folder), FileFormat.HF, hf_cache_dir=tmp_path / "cache")

    assert sorted(row["q"] for row in rows) == ["a", "c", "e"]


def test_hf_dataset_that_does_not_load_names_the_dataset(tmp_path: Path) -> None:
    empty = tmp_path / "not_a_dataset"
    empty.mkdir()

    with pytest.raises(DataPreparationError, match=r"dataset '.*not_a_dataset' could not be loaded"):
        load_rows(str(empty), FileFormat.HF, hf_cache_dir=tmp_path / "cache")


def test_unknown_file_format_is_refused() -> None:
    with pytest.raises(DataPreparationError, match=r"file_format 'xml' is not one of hf, s3, json, csv"):
        load_rows("x.xml", "xml")


def test_local_paths_are_refused_when_not_allowed(tmp_path: Path) -> None:
    secret = tmp_path / "validator_secrets.json"
    secret.write_text(json.dumps(ROWS))

    with pytest.raises(DataPreparationError, match="local path, which this validator does not accept"):
        load_rows(str(secret), FileFormat.JSON, allow_local_paths=False)
    assert load_rows(str(secret), FileFormat.JSON, allow_local_paths=True) == ROWS
