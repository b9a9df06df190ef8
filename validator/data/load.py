"""Fetch a customer's dataset as a list of row dicts.

Sources: a local JSON/JSON-lines/CSV file, an http(s) URL (a presigned S3 link or any download), a key in the
artifact store written as `artifact://<key>`, or a hub dataset (`file_format="hf"`). Every failure becomes a
`DataPreparationError` whose message the customer reads, so it names the source (URLs without their query string,
which may hold a signature) and, where known, the line or row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.stores import ArtifactStore, StoreError
from core.tasks import FileFormat
from validator.data.errors import DataPreparationError

logger = logging.getLogger(__name__)

ARTIFACT_PREFIX = "artifact://"
MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 512 * MIB
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=300.0)
# The csv module refuses cells over 128 KiB by default; long answers in instruct data exceed that.
CSV_FIELD_LIMIT = 64 * MIB


def load_rows(
    source: str,
    file_format: FileFormat | str,
    *,
    artifact_store: ArtifactStore | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    http_client: httpx.Client | None = None,
    hf_cache_dir: Path | None = None,
    allow_local_paths: bool = True,
) -> list[dict[str, Any]]:
    """Read every row of the dataset at `source`.

    Args:
        source: a local path, an http(s) URL, `artifact://<key>`, or a hub dataset id when `file_format` is "hf".
        file_format: "hf", "s3", "json" or "csv". For "s3" (a URL) the text format comes from the file extension
            (".csv" is CSV, anything else JSON).
        artifact_store: needed for `artifact://` sources.
        max_bytes: files and downloads larger than this are refused.
        http_client: used for URL sources (a short-lived one is made when absent).
        hf_cache_dir: where the hub client caches a downloaded dataset (its default cache when absent).
        allow_local_paths: whether `source` may name a file on this machine. A public validator must say False:
            a customer's path would otherwise read the validator's own disk.

    Returns:
        The rows, each a dict of column name to cell value. JSON rows keep their types; CSV cells are strings.

    Raises:
        DataPreparationError: the source cannot be read or parsed, or is too large.
    """
    try:
        file_format = FileFormat(file_format)
    except ValueError:
        choices = ", ".join(member.value for member in FileFormat)
        raise DataPreparationError(f"file_format {file_format!r} is not one of {choices}") from None

    if file_format is FileFormat.HF:
        rows = _load_hub_dataset(source, cache_dir=hf_cache_dir)
    elif source.startswith(ARTIFACT_PREFIX):
        key = source.removeprefix(ARTIFACT_PREFIX)
        data = _read_artifact(key, artifact_store=artifact_store, max_bytes=max_bytes)
        rows = parse_rows(data, _text_format(file_format, key), source=source)
    elif source.startswith(("http://", "https://")):
        data = _download(source, http_client=http_client, max_bytes=max_bytes)
        rows = parse_rows(data, _text_format(file_format, urlsplit(source).path), source=display_source(source))
    elif not allow_local_paths:
        raise DataPreparationError(
            f"ds_repo {source[:200]!r} is a local path, which this validator does not accept; "
            "give an http(s) URL or a hub dataset id"
        )
    else:
        data = _read_local_file(Path(source), max_bytes=max_bytes)
        rows = parse_rows(data, _text_format(file_format, source), source=source)
    logger.debug("loaded %d rows from %s", len(rows), display_source(source))
    return rows


def parse_rows(data: bytes, text_format: FileFormat, *, source: str) -> list[dict[str, Any]]:
    """Parse JSON (a list of objects, or one object per line) or CSV bytes into rows; `source` names it in errors."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        reason = f"{source} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        raise DataPreparationError(reason) from None
    if not text.strip():
        raise DataPreparationError(f"{source} is empty")
    if text_format is FileFormat.CSV:
        return _parse_csv(text, source=source)
    return _parse_json(text, source=source)


def rows_to_json_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The training contract's data file format: a JSON list of row objects (UTF-8)."""
    return json.dumps(rows, ensure_ascii=False).encode()


def display_source(source: str) -> str:
    """The source as it may be shown and logged: URLs lose their query string, fragment and credentials."""
    if not source.startswith(("http://", "https://")):
        return source
    parts = urlsplit(source)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _text_format(file_format: FileFormat, name: str) -> FileFormat:
    if file_format in (FileFormat.JSON, FileFormat.CSV):
        return file_format
    return FileFormat.CSV if name.lower().endswith(".csv") else FileFormat.JSON


def _too_large(source: str, max_bytes: int) -> DataPreparationError:
    limit = f"{max_bytes // MIB} MiB" if max_bytes >= MIB else f"{max_bytes} bytes"
    return DataPreparationError(f"{source} is larger than the {limit} limit; send a smaller dataset")


def _read_local_file(path: Path, *, max_bytes: int) -> bytes:
    if not path.is_file():
        raise DataPreparationError(f"file {str(path)!r} not found; check the path")
    if path.stat().st_size > max_bytes:
        raise _too_large(str(path), max_bytes)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataPreparationError(f"file {str(path)!r} could not be read: {exc.strerror}") from None


def _read_artifact(key: str, *, artifact_store: ArtifactStore | None, max_bytes: int) -> bytes:
    if artifact_store is None:
        raise DataPreparationError(f"artifact {key!r} cannot be read: this validator has no artifact store")
    try:
        data = artifact_store.get_bytes(key)
    except (StoreError, OSError, KeyError) as exc:
        # The store's own message may name its directory or bucket, which is not the customer's business.
        logger.debug("artifact %s could not be read: %s", key, exc)
        raise DataPreparationError(f"artifact {key!r} could not be read; upload the dataset again") from None
    if len(data) > max_bytes:
        raise _too_large(f"artifact {key!r}", max_bytes)
    return data


def _download(url: str, *, http_client: httpx.Client | None, max_bytes: int) -> bytes:
    # TODO(#4): refuse URLs that resolve to private or loopback addresses before the public API accepts them.
    shown = display_source(url)
    client = http_client or httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True)
    try:
        with client.stream("GET", url) as response:
            if response.status_code != httpx.codes.OK:
                raise DataPreparationError(
                    f"downloading {shown} failed with HTTP {response.status_code}; "
                    "check that the URL is public and has not expired"
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(shown, max_bytes)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(shown, max_bytes)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        reason = str(exc).replace(url, shown) or type(exc).__name__
        raise DataPreparationError(f"downloading {shown} failed ({reason}); check the URL") from None
    finally:
        if http_client is None:
            client.close()
    return b"".join(chunks)


def _load_hub_dataset(name: str, *, cache_dir: Path | None) -> list[dict[str, Any]]:
    # TODO(#3): hub datasets are not size-capped, and a dataset with several configs needs its config named.
    try:
        import datasets

        # Never trust_remote_code: a dataset script would run the customer's code on the validator.
        loaded = datasets.load_dataset(name, cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as exc:  # the hub client raises many unrelated types; all mean "cannot use this dataset"
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise DataPreparationError(
            f"dataset {name!r} could not be loaded ({reason}); check that the name is right and the dataset is public"
        ) from exc
    rows: list[dict[str, Any]] = []
    for split_name in loaded:
        rows.extend(loaded[split_name].to_list())
    return rows


def _parse_json(text: str, *, source: str) -> list[dict[str, Any]]:
    hint = "send a JSON list of objects or one JSON object per line"
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("["):
            raise DataPreparationError(
                f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); {hint}"
            ) from None
        return _parse_json_lines(text, source=source, hint=hint)

    if isinstance(whole, dict):
        whole = [whole]
    if not isinstance(whole, list):
        raise DataPreparationError(f"{source} holds a JSON {type(whole).__name__}, not rows; {hint}")
    for index, row in enumerate(whole):
        if not isinstance(row, dict):
            raise DataPreparationError(f"{source} item {index + 1} is a JSON {_json_kind(row)}, not an object; {hint}")
    return whole


def _parse_json_lines(text: str, *, source: str, hint: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataPreparationError(f"{source} line {line_number} is not valid JSON ({exc.msg}); {hint}") from None
        if not isinstance(row, dict):
            raise DataPreparationError(
                f"{source} line {line_number} is a JSON {_json_kind(row)}, not an object; {hint}"
            )
        rows.append(row)
    return rows


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


def _parse_csv(text: str, *, source: str) -> list[dict[str, Any]]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
        if not header:
            raise DataPreparationError(f"{source} has no header row; the first CSV line must name the columns")
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            names = ", ".join(repr(name) for name in duplicates)
            raise DataPreparationError(f"{source} header names a column twice: {names}; give each column its own name")
        rows: list[dict[str, Any]] = []
        for row in reader:
            if None in row:
                raise DataPreparationError(
                    f"{source} line {reader.line_num} has more cells than the header's {len(header)} columns; "
                    "quote cells that contain commas"
                )
            rows.append(row)
    except csv.Error as exc:
        raise DataPreparationError(f"{source} line {reader.line_num} is not valid CSV ({exc})") from None
    return rows
