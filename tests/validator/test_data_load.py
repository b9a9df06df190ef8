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

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.requested_paths.append(self.path)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[Path, str, list[str]]]:
    """A real HTTP server on loopback serving a temporary folder; yields (folder, base URL, paths requested)."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    server.requested_paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", server.requested_paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def http_root(http_server: tuple[Path, str, list[str]]) -> tuple[Path, str]:
    """(folder, base URL) of `http_server`."""
    return http_server[0], http_server[1]


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


def test_deeply_nested_json_is_a_data_error_naming_the_source(tmp_path: Path) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    nested_lines = tmp_path / "nested.jsonl"
    nested_lines.write_text('{"q": "x", "a": "y"}\n{"q": ' + "[" * 100_000 + "]" * 100_000 + "}\n")

    with pytest.raises(DataPreparationError, match=r"nested\.json nests JSON lists or objects too deeply"):
        load_rows(str(nested), FileFormat.JSON)
    with pytest.raises(DataPreparationError, match=r"nested\.jsonl line 2 nests JSON lists or objects too deeply"):
        load_rows(str(nested_lines), FileFormat.JSON)


def test_an_integer_too_long_to_read_is_a_data_error_naming_the_source(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    huge.write_text('[{"q": "x", "a": ' + "9" * 5000 + "}]")
    huge_lines = tmp_path / "huge.jsonl"
    huge_lines.write_text('{"q": "x", "a": ' + "9" * 5000 + "}\n")

    with pytest.raises(DataPreparationError, match=r"huge\.json holds an integer with more than \d+ digits") as error:
        load_rows(str(huge), FileFormat.JSON)
    assert "write such numbers as strings" in str(error.value)
    with pytest.raises(DataPreparationError, match=r"huge\.jsonl line 1 holds an integer with more than"):
        load_rows(str(huge_lines), FileFormat.JSON)


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataPreparationError, match=r"is a directory, not a file"):
        load_rows(str(tmp_path), FileFormat.JSON)


@pytest.mark.parametrize("source", ["ftp://files.example/rows.json", "file:///etc/passwd", "S3://bucket/rows.csv"])
def test_urls_other_than_http_name_their_scheme(source: str) -> None:
    scheme = source.partition("://")[0].lower()

    with pytest.raises(DataPreparationError) as error:
        load_rows(source, FileFormat.JSON)

    assert str(error.value) == f"ds_repo: unsupported URL scheme {scheme!r}; use http(s)"


@pytest.mark.parametrize("source", ["https://files.example/rows.json", "/srv/data/rows.csv"])
def test_hub_format_with_a_file_or_url_hints_at_the_file_format(source: str) -> None:
    with pytest.raises(DataPreparationError, match=r"set file_format to json or csv"):
        load_rows(source, FileFormat.HF)


def test_json_read_as_csv_and_csv_read_as_json_mention_the_format(tmp_path: Path) -> None:
    one_line_json = tmp_path / "rows.json"
    one_line_json.write_text(json.dumps(ROWS))
    one_object = tmp_path / "row.json"
    one_object.write_text(json.dumps(ROWS[0]))
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("q,a\nx,y\n")
    header_only = tmp_path / "header.csv"
    header_only.write_text("q,a\n")

    for path in (one_line_json, one_object):
        with pytest.raises(DataPreparationError, match=r"looks like JSON, not CSV; set file_format to json"):
            load_rows(str(path), FileFormat.CSV)
    with pytest.raises(DataPreparationError, match=r"line 1 is not valid JSON .*set file_format to csv"):
        load_rows(str(csv_file), FileFormat.JSON)
    with pytest.raises(DataPreparationError, match=r"header\.csv has a header line but no data rows"):
        load_rows(str(header_only), FileFormat.CSV)


def test_display_source_is_total_on_malformed_urls() -> None:
    assert display_source("http://user:pw@[::1/x.json?sig=secret") == "http://[::1/x.json"
    assert display_source("HTTPS://host.example/a.csv#frag") == "https://host.example/a.csv"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "2130706433", "[64:ff9b::7f00:1]"],
)
def test_loopback_urls_are_refused_when_local_sources_are_not_allowed(
    http_server: tuple[Path, str, list[str]], host: str
) -> None:
    root, base_url, requested = http_server
    (root / "openapi.json").write_bytes(rows_to_json_bytes(ROWS))
    port = base_url.rpartition(":")[2]

    with pytest.raises(DataPreparationError) as error:
        load_rows(f"http://{host}:{port}/openapi.json?sig=secret", FileFormat.S3, allow_local_paths=False)

    assert str(error.value) == (
        f"ds_repo: http://{host}:{port}/openapi.json points to a private or local address, "
        "which this validator does not fetch"
    )
    assert requested == []
    assert load_rows(f"{base_url}/openapi.json", FileFormat.S3, allow_local_paths=True) == ROWS


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "224.0.0.1", "240.0.0.1"]
)
def test_private_link_local_shared_multicast_and_reserved_addresses_are_refused(address: str) -> None:
    # Refused before any connection: a test that let one through would hang on the connect timeout, not pass.
    with pytest.raises(DataPreparationError, match=r"points to a private or local address"):
        load_rows(f"http://{address}/rows.json", FileFormat.S3, allow_local_paths=False)


PUBLIC = "http://93.184.216.34"  # an address literal: no DNS needed, and the fake transport below answers it


def redirecting_client(routes: dict[str, tuple[int, dict[str, str], bytes]]) -> httpx.Client:
    """A client whose transport plays a public server: path → (status, headers, body)."""

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers, body = routes.get(request.url.path, (404, {}, b""))
        return httpx.Response(status, headers=headers, content=body)

    # follow_redirects=True on purpose: load_rows must follow them itself, checking every hop.
    return httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True)


def test_redirects_are_followed_by_hand_and_each_hop_is_checked(http_server: tuple[Path, str, list[str]]) -> None:
    root, base_url, requested = http_server
    (root / "secret.json").write_bytes(rows_to_json_bytes(ROWS))
    routes = {
        "/start.json": (302, {"Location": "/next.json?sig=1"}, b""),
        "/next.json": (301, {"Location": f"{PUBLIC}/rows.json"}, b""),
        "/rows.json": (200, {}, rows_to_json_bytes(ROWS)),
        "/private.json": (307, {"Location": f"{base_url}/secret.json"}, b""),
        "/elsewhere.json": (302, {"Location": "file:///etc/passwd"}, b""),
        **{f"/loop{hop}.json": (302, {"Location": f"/loop{hop + 1}.json"}, b"") for hop in range(10)},
        "/loop10.json": (200, {}, rows_to_json_bytes(ROWS)),
    }

    with redirecting_client(routes) as client:
        assert load_rows(f"{PUBLIC}/start.json", FileFormat.S3, http_client=client, allow_local_paths=False) == ROWS
        with pytest.raises(DataPreparationError) as private:
            load_rows(f"{PUBLIC}/private.json", FileFormat.S3, http_client=client, allow_local_paths=False)
        with pytest.raises(DataPreparationError, match=r"redirects to a URL that is not http\(s\)"):
            load_rows(f"{PUBLIC}/elsewhere.json", FileFormat.S3, http_client=client, allow_local_paths=False)
        with pytest.raises(DataPreparationError, match=r"more than 5 redirects"):
            load_rows(f"{PUBLIC}/loop0.json", FileFormat.S3, http_client=client, allow_local_paths=False)
        assert load_rows(f"{PUBLIC}/loop5.json", FileFormat.S3, http_client=client, allow_local_paths=False) == ROWS

    assert str(private.value) == (
        f"ds_repo: {PUBLIC}/private.json redirects to {base_url}/secret.json; that points to a private or local "
        "address, which this validator does not fetch"
    )
    assert requested == []


def test_hub_format_refuses_local_folders_when_local_sources_are_not_allowed(tmp_path: Path) -> None:
    folder = tmp_path / "hub_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"q": "a", "a": "b"}\n')

    for source in (str(folder), "../etc", "~/datasets"):
        with pytest.raises(DataPreparationError, match=r"is a local path, which this validator does not accept"):
            load_rows(source, FileFormat.HF, hf_cache_dir=tmp_path / "cache", allow_local_paths=False)


@pytest.mark.parametrize("allow_local_paths", [True, False])
@pytest.mark.parametrize("url", ["http://a..b/x.json", f"http://{'a' * 64}.example/x.json", "http://xn--/x.json"])
def test_hosts_that_cannot_be_encoded_are_data_errors(url: str, allow_local_paths: bool) -> None:
    with pytest.raises(DataPreparationError, match=r"^downloading http://.* failed"):
        load_rows(url, FileFormat.S3, allow_local_paths=allow_local_paths)
