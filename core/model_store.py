"""Model stores: `LocalModelStore` (a directory shared by one local network) and `HubModelStore` (Hugging Face).

Content hash: sha256 over the repo's files in sorted order of their relative POSIX paths; for each file it takes
the path (UTF-8), a NUL byte, the size as 8 big-endian bytes, then the bytes. Bookkeeping files are left out:
`.god/` (where the local store keeps the hash), `.git/`, `.gitattributes` (the hub adds one) and `.cache/`.

Local layout: `{root}/{org}/{name}` is a symlink to an immutable version folder `{root}/.versions/{org}/{name}/{id}`.
An upload copies into a new version folder and swaps the symlink with `os.replace`, so readers see the old repo or
the new one, never a mix or nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.stores import RepoNotFound, StoreError

logger = logging.getLogger(__name__)

_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?"
_REPO_ID = re.compile(rf"^{_NAME_PART}/{_NAME_PART}$")
_EXCLUDED_TOP = {".god", ".git", ".gitattributes", ".cache"}
HASH_FILE = Path(".god") / "content_hash"
_CHUNK = 1 << 20


def check_repo_id(repo_id: str) -> tuple[str, str]:
    """Split "org/name" after checking it; StoreError naming the id when it is not a plain two-part id."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise StoreError(
            f"repo id {repo_id!r} must look like 'org/name' (letters, digits, '.', '_', '-'; no '..', no leading '/')"
        )
    org, name = repo_id.split("/")
    return org, name


def _hashed_files(folder: Path) -> list[tuple[str, Path]]:
    files = []
    for current, dirnames, filenames in os.walk(folder, followlinks=True):
        relative_dir = Path(current).relative_to(folder)
        if relative_dir == Path("."):
            dirnames[:] = [name for name in dirnames if name not in _EXCLUDED_TOP]
            filenames = [name for name in filenames if name not in _EXCLUDED_TOP]
        for filename in filenames:
            files.append(((relative_dir / filename).as_posix(), Path(current) / filename))
    return sorted(files)


def folder_hash(folder: Path) -> str:
    """The content hash of a folder's files (see the module docstring)."""
    digest = hashlib.sha256()
    for relative, path in _hashed_files(Path(folder)):
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


class LocalModelStore:
    """Model repos in a local directory (the embedded store of the local network)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _repo_path(self, repo_id: str) -> Path:
        org, name = check_repo_id(repo_id)
        return self.root / org / name

    def exists(self, repo_id: str) -> bool:
        return self._repo_path(repo_id).is_dir()

    def local_path(self, repo_id: str) -> Path:
        path = self._repo_path(repo_id)
        if not path.is_dir():
            raise RepoNotFound(f"model repo {repo_id!r} is not in the local model store {self.root}")
        return path

    def upload(self, local_dir: Path, repo_id: str) -> str:
        org, name = check_repo_id(repo_id)
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise StoreError(f"cannot upload {local_dir} as {repo_id!r}: it is not a directory")
        versions = self.root / ".versions" / org / name
        versions.mkdir(parents=True, exist_ok=True)
        version = versions / uuid.uuid4().hex
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=versions))
        try:
            shutil.copytree(local_dir, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".god"))
            content_hash = folder_hash(staging)
            (staging / HASH_FILE).parent.mkdir(exist_ok=True)
            (staging / HASH_FILE).write_text(content_hash + "\n", encoding="ascii")
            staging.chmod(0o755)  # mkdtemp makes it owner-only; sandboxed readers may run as another user
            os.rename(staging, version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._publish(org, name, version)
        logger.info("uploaded model repo %s (content hash %s)", repo_id, content_hash[:12])
        return content_hash

    def _publish(self, org: str, name: str, version: Path) -> None:
        link = self.root / org / name
        link.parent.mkdir(parents=True, exist_ok=True)
        with self._repo_lock(org, name):
            previous = link.resolve() if link.is_symlink() else None
            if link.exists() and not link.is_symlink():
                # A plain folder put there by hand: replaced non-atomically, once, by the first upload.
                shutil.rmtree(link)
            tmp_link = link.with_name(f".{name}.{uuid.uuid4().hex}.link")
            os.symlink(os.path.relpath(version, link.parent), tmp_link)
            os.replace(tmp_link, link)
            if previous is not None and previous != version.resolve():
                shutil.rmtree(previous, ignore_errors=True)

    @contextmanager
    def _repo_lock(self, org: str, name: str) -> Iterator[None]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{org}--{name}.lock", "a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def content_hash(self, repo_id: str) -> str:
        path = self.local_path(repo_id)
        stored = path / HASH_FILE
        if stored.is_file():
            return stored.read_text(encoding="ascii").strip()
        return folder_hash(path)


class HubModelStore:
    """Model repos on the Hugging Face Hub (production); downloads land in `cache_dir`."""

    def __init__(self, token: str | None, cache_dir: Path) -> None:
        self.token = token
        self.cache_dir = Path(cache_dir)

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(token=self.token)

    def exists(self, repo_id: str) -> bool:
        check_repo_id(repo_id)
        return self._api().repo_exists(repo_id)

    def local_path(self, repo_id: str) -> Path:
        check_repo_id(repo_id)
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            return Path(snapshot_download(repo_id, cache_dir=self.cache_dir, token=self.token))
        except RepositoryNotFoundError as error:
            raise RepoNotFound(f"model repo {repo_id!r} is not on the hub (or the token cannot read it)") from error
        except Exception as error:
            raise StoreError(f"cannot download model repo {repo_id!r}: {type(error).__name__}: {error}") from error

    def upload(self, local_dir: Path, repo_id: str) -> str:
        check_repo_id(repo_id)
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise StoreError(f"cannot upload {local_dir} as {repo_id!r}: it is not a directory")
        content_hash = folder_hash(local_dir)
        api = self._api()
        try:
            api.create_repo(repo_id, private=True, exist_ok=True)
            # delete_patterns="*" makes the commit replace the repo's files (the hub keeps .gitattributes).
            api.upload_folder(
                repo_id=repo_id,
                folder_path=local_dir,
                ignore_patterns=[".god/*", ".git/*", ".cache/*"],
                delete_patterns="*",
                commit_message=f"upload (content hash {content_hash[:12]})",
            )
        except Exception as error:
            raise StoreError(f"cannot upload model repo {repo_id!r}: {type(error).__name__}: {error}") from error
        logger.info("uploaded model repo %s to the hub (content hash %s)", repo_id, content_hash[:12])
        return content_hash

    def content_hash(self, repo_id: str) -> str:
        return folder_hash(self.local_path(repo_id))
