"""Fetch a customer's dataset as a list of row dicts.

Sources: a local JSON/JSON-lines/CSV file, an http(s) URL (a presigned S3 link or any download), a key in the
artifact store written as `artifact://<key>`, or a hub dataset (`file_format="hf"`). Every failure becomes a
`DataPreparationError` whose message the customer reads, so it names the source (URLs without their query string,
which may hold a signature) and, where known, the line or row.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import logging
import os
import re
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from core.stores import ArtifactStore, StoreError
from core.tasks import DATASET_FILE_EXTENSIONS, DATASET_URL_SCHEMES, FileFormat, hub_format_problem, url_scheme
from validator.data.errors import DataPreparationError

logger = logging.getLogger(__name__)

ARTIFACT_PREFIX = "artifact://"
MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 512 * MIB
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=300.0)
# The csv module refuses cells over 128 KiB by default; long answers in instruct data exceed that.
CSV_FIELD_LIMIT = 64 * MIB
MAX_REDIRECTS = 5
JSON_HINT = "send a JSON list of objects or one JSON object per line"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 prefixes that carry an IPv4 address in their low 32 bits (NAT64), checked as that IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


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
        allow_local_paths: whether `source` may name a file on this machine, or a URL of a loopback, private,
            link-local or otherwise non-public address (or redirect to one). A public validator must say False: a
            customer's path or URL would otherwise read the validator's own disk or the services of its network.

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

    scheme = url_scheme(source)
    if scheme is not None and scheme not in DATASET_URL_SCHEMES:
        raise DataPreparationError(f"ds_repo: unsupported URL scheme {scheme!r}; use http(s)")
    if file_format is FileFormat.HF:
        problem = hub_format_problem(source)
        if problem:
            raise DataPreparationError(f"file_format {problem}")
        if not allow_local_paths and _names_local_path(source):
            raise _local_path_refused(source)
        rows = _load_hub_dataset(source, cache_dir=hf_cache_dir)
    elif scheme == "artifact":
        key = source[len(ARTIFACT_PREFIX) :]
        data = _read_artifact(key, artifact_store=artifact_store, max_bytes=max_bytes)
        rows = parse_rows(data, _text_format(file_format, key), source=source)
    elif scheme is not None:
        data = _download(source, http_client=http_client, max_bytes=max_bytes, public_only=not allow_local_paths)
        rows = parse_rows(data, _text_format(file_format, _url_path(source)), source=display_source(source))
    elif not allow_local_paths:
        raise _local_path_refused(source)
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
    """The training contract's data file format: a JSON list of row objects (UTF-8).

    Prepared rows hold no lone surrogates (such cells make a row unusable); any that slip through become "?"
    rather than failing the task.
    """
    return json.dumps(rows, ensure_ascii=False).encode("utf-8", "replace")


def display_source(source: str) -> str:
    """The source as it may be shown and logged: URLs lose their query string, fragment and credentials.

    Total: it parses by hand, so a malformed URL (an unclosed "[" of an IPv6 host) is shown rather than raising.
    """
    scheme = url_scheme(source)
    if scheme is None:
        return source
    rest = re.split(r"[?#]", source.partition("://")[2], maxsplit=1)[0]
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def _url_path(url: str) -> str:
    return display_source(url).partition("://")[2].partition("/")[2]


def _local_path_refused(source: str) -> DataPreparationError:
    return DataPreparationError(
        f"ds_repo {source[:200]!r} is a local path, which this validator does not accept; "
        "give an http(s) URL or a hub dataset id"
    )


def _names_local_path(name: str) -> bool:
    """Whether the hub client would read `name` from this machine rather than download it from the hub."""
    if name.startswith(("/", ".", "~", "\\")) or ".." in re.split(r"[/\\]", name):
        return True
    try:
        return os.path.exists(name)
    except (OSError, ValueError):
        return True


def _text_format(file_format: FileFormat, name: str) -> FileFormat:
    if file_format in (FileFormat.JSON, FileFormat.CSV):
        return file_format
    return FileFormat.CSV if name.lower().endswith(".csv") else FileFormat.JSON


def _too_large(source: str, max_bytes: int) -> DataPreparationError:
    limit = f"{max_bytes // MIB} MiB" if max_bytes >= MIB else f"{max_bytes} bytes"
    return DataPreparationError(f"{source} is larger than the {limit} limit; send a smaller dataset")


def _read_local_file(path: Path, *, max_bytes: int) -> bytes:
    shown = repr(str(path)[:300])
    try:
        if path.is_dir():
            raise DataPreparationError(f"ds_repo {shown} is a directory, not a file; name the JSON or CSV file")
        if not path.exists():
            raise DataPreparationError(f"file {shown} not found; check the path")
        if not path.is_file():
            raise DataPreparationError(f"ds_repo {shown} is not a regular file; name a JSON or CSV file")
        # Read at most one byte past the limit: a file's size can change, and some (in /proc) report none.
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise DataPreparationError(f"file {shown} could not be read: {exc.strerror or type(exc).__name__}") from None
    except ValueError:  # a NUL character in the path
        raise DataPreparationError(f"file {shown} not found; check the path") from None
    if len(data) > max_bytes:
        raise _too_large(str(path), max_bytes)
    return data


def _read_artifact(key: str, *, artifact_store: ArtifactStore | None, max_bytes: int) -> bytes:
    if artifact_store is None:
        raise DataPreparationError(f"artifact {key!r} cannot be read: this validator has no artifact store")
    try:
        data = artifact_store.get_bytes(key)
    except (StoreError, OSError, KeyError, ValueError) as exc:
        # The store's own message may name its directory or bucket, which is not the customer's business.
        logger.debug("artifact %s could not be read: %s", key, exc)
        raise DataPreparationError(f"artifact {key!r} could not be read; upload the dataset again") from None
    if len(data) > max_bytes:
        raise _too_large(f"artifact {key!r}", max_bytes)
    return data


def _download(url: str, *, http_client: httpx.Client | None, max_bytes: int, public_only: bool) -> bytes:
    """GET `url`, following up to MAX_REDIRECTS redirects by hand so that each hop's host is checked.

    With `public_only`, every hop must resolve only to public addresses.
    TODO(#4): the client resolves the host again when it connects; pin the checked address to close DNS rebinding.
    """
    shown = display_source(url)
    # Redirects are followed here, never by the client, whatever client the caller passed.
    client = http_client or httpx.Client(timeout=DOWNLOAD_TIMEOUT)
    target = url
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            if public_only:
                _check_public_host(target, shown=shown, redirected=target != url)
            with client.stream("GET", target, follow_redirects=False) as response:
                if response.is_redirect:
                    target = str(response.url.join(response.headers["location"]))
                    if url_scheme(target) not in ("http", "https"):
                        raise DataPreparationError(
                            f"downloading {shown} failed: it redirects to a URL that is not http(s); give the final URL"
                        )
                    continue
                if response.status_code != httpx.codes.OK:
                    raise DataPreparationError(
                        f"downloading {shown} failed with HTTP {response.status_code}; "
                        "check that the URL is public and has not expired"
                    )
                return _read_body(response, shown=shown, max_bytes=max_bytes)
        raise DataPreparationError(
            f"downloading {shown} failed: more than {MAX_REDIRECTS} redirects; give the final URL"
        )
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:  # UnicodeError: a host IDNA cannot encode
        reason = str(exc).replace(url, shown).replace(target, display_source(target)) or type(exc).__name__
        raise DataPreparationError(f"downloading {shown} failed ({reason[:300]}); check the URL") from None
    finally:
        if http_client is None:
            client.close()


def _read_body(response: httpx.Response, *, shown: str, max_bytes: int) -> bytes:
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
    return b"".join(chunks)


def _check_public_host(url: str, *, shown: str, redirected: bool) -> None:
    """DataPreparationError unless every address the URL's host resolves to is a public one."""
    parsed = httpx.URL(url)  # the client's own parser: the host checked is the host it connects to
    host = parsed.raw_host.decode("ascii", "replace")
    if not host:
        raise DataPreparationError(f"downloading {shown} failed: the URL names no host; check the URL")
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise DataPreparationError(
                f"downloading {shown} failed: host {host[:100]!r} could not be resolved; check the URL"
            ) from None
        addresses = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if any(not _is_public(address) for address in addresses):
        what = f"{shown} redirects to {display_source(url)}; that" if redirected else shown
        raise DataPreparationError(
            f"ds_repo: {what} points to a private or local address, which this validator does not fetch"
        )


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_public(embedded)
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _load_hub_dataset(name: str, *, cache_dir: Path | None) -> list[dict[str, Any]]:
    # TODO(#3): hub datasets are not size-capped, and a dataset with several configs needs its config named.
    try:
        import datasets

        # Never trust_remote_code: a dataset script would run the customer's code on the validator.
        loaded = datasets.load_dataset(name, cache_dir=str(cache_dir) if cache_dir else None)
        rows: list[dict[str, Any]] = []
        for split_name in loaded:
            rows.extend(loaded[split_name].to_list())
    except Exception as exc:  # the hub client raises many unrelated types; all mean "cannot use this dataset"
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        hint = "check that the name is right and the dataset is public"
        if name.lower().endswith(DATASET_FILE_EXTENSIONS):
            hint = "if ds_repo is a file rather than a hub dataset, set file_format to json or csv"
        raise DataPreparationError(f"dataset {name!r} could not be loaded ({reason}); {hint}") from exc
    return rows


def _parse_json(text: str, *, source: str) -> list[dict[str, Any]]:
    hint = JSON_HINT
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("["):
            raise DataPreparationError(
                f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); {hint}"
            ) from None
        return _parse_json_lines(text, source=source, hint=hint)
    except (RecursionError, ValueError) as exc:
        if text.lstrip().startswith("["):
            raise DataPreparationError(f"{source} {_unreadable_json(exc)}") from None
        # One object per line: reading line by line names the line at fault.
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
            if not rows:
                hint += " (for a CSV file, set file_format to csv)"
            raise DataPreparationError(f"{source} line {line_number} is not valid JSON ({exc.msg}); {hint}") from None
        except (RecursionError, ValueError) as exc:
            raise DataPreparationError(f"{source} line {line_number} {_unreadable_json(exc)}") from None
        if not isinstance(row, dict):
            raise DataPreparationError(
                f"{source} line {line_number} is a JSON {_json_kind(row)}, not an object; {hint}"
            )
        rows.append(row)
    return rows


def _unreadable_json(error: Exception) -> str:
    """Why valid-looking JSON could not be read: the parser's limits, not a syntax error."""
    if isinstance(error, RecursionError):
        return "nests JSON lists or objects too deeply to read; send flat rows of text cells"
    if "integer string conversion" in str(error):
        return (
            f"holds an integer with more than {sys.get_int_max_str_digits()} digits, which cannot be read; "
            "write such numbers as strings"
        )
    return f"could not be read as JSON ({str(error)[:200]}); {JSON_HINT}"


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


def _parse_csv(text: str, *, source: str) -> list[dict[str, Any]]:
    if text.lstrip().startswith(("{", "[")):
        raise DataPreparationError(f"{source} looks like JSON, not CSV; set file_format to json")
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
        if not header:
            raise DataPreparationError(f"{source} has no header row; the first CSV line must name the columns")
        duplicates = sorted(name for name, count in Counter(header).items() if count > 1)
        if duplicates:
            names = ", ".join(repr(name[:100]) for name in duplicates[:20])
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
    if not rows:
        raise DataPreparationError(
            f"{source} has a header line but no data rows as CSV; if it is JSON, set file_format to json"
        )
    return rows
