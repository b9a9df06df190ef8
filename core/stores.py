"""Model store and artifact store interfaces (the embedded and production implementations live beside them).

- The model store holds model repos addressed by repo id ("org/name"): base models and trained outputs.
  Embedded: `core.model_store.LocalModelStore`, a directory of repos with content hashes, shared by the processes of
  one local network. Production: `core.model_store.HubModelStore` over `huggingface_hub`.
- The artifact store holds prepared datasets and other validator files, handed out as signed, expiring URLs.
  Embedded: `core.artifact_store.LocalArtifactStore`, a directory served by the validator. Production: S3 (boto3).

Both interfaces are synchronous (file and hub I/O); async callers wrap them in `asyncio.to_thread`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


class StoreError(Exception):
    """A store operation failed; the message names the repo id or key."""


class RepoNotFound(StoreError):
    pass


@runtime_checkable
class ModelStore(Protocol):
    def exists(self, repo_id: str) -> bool: ...

    def local_path(self, repo_id: str) -> Path:
        """A local directory holding the repo's files (downloaded first when remote). Treat it as read-only."""
        ...

    def upload(self, local_dir: Path, repo_id: str) -> str:
        """Publish the folder's files as `repo_id` (replacing its content); returns the content hash."""
        ...

    def content_hash(self, repo_id: str) -> str:
        """sha256 over the repo's files (relative path and bytes, in sorted order)."""
        ...


@runtime_checkable
class ArtifactStore(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def signed_url(self, key: str, *, expires_in_seconds: int) -> str: ...
