"""`LocalArtifactStore`: validator files (prepared datasets, ...) in a directory, handed out as signed, expiring URLs.

A URL is `{base_url}/artifacts/{key}?expires={unix seconds}&signature={hex}` where the signature is
HMAC-SHA256(secret, key + "\\n" + expires). The newline keeps (key, expires) pairs unambiguous: without it a URL for
"data1" expiring at 23… would also sign "data" expiring at 123…. `artifact_router(store)` serves the URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from core.stores import StoreError

logger = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
# What `_signature` produces: compare_digest raises TypeError on a str with non-ASCII characters, so anything else is
# refused before the comparison.
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class ArtifactNotFound(StoreError):
    pass


def check_key(key: str) -> str:
    """A key is a relative path of plain segments (letters, digits, '.', '_', '-'), without '..'."""
    if not isinstance(key, str) or not key or len(key) > 512 or key.startswith("/") or ".." in key:
        raise StoreError(f"artifact key {key!r} must be a relative path like 'datasets/task_train.json', without '..'")
    if not all(_SEGMENT.match(segment) for segment in key.split("/")):
        raise StoreError(f"artifact key {key!r} may only hold letters, digits, '.', '_', '-' between '/' separators")
    return key


class LocalArtifactStore:
    def __init__(self, root: Path, *, secret: bytes, base_url: str) -> None:
        if len(secret) < 16:
            raise StoreError("the artifact store secret must be at least 16 bytes")
        self.root = Path(root)
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    def path(self, key: str) -> Path:
        """Where the artifact `key` is (or would be) stored."""
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        logger.debug("stored artifact %s (%d bytes)", key, len(data))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ArtifactNotFound(f"artifact {key!r} is not in the artifact store {self.root}") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def _signature(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def signed_url(self, key: str, *, expires_in_seconds: int) -> str:
        check_key(key)
        if expires_in_seconds <= 0:
            raise StoreError(f"expires_in_seconds must be positive, got {expires_in_seconds}")
        expires = int(time.time()) + int(expires_in_seconds)
        signature = self._signature(key, expires)
        return f"{self.base_url}/artifacts/{quote(key, safe='/')}?expires={expires}&signature={signature}"

    def verify(self, key: str, expires: int | str, signature: str) -> bool:
        """Whether the URL parameters are a valid, unexpired signature for `key`."""
        try:
            check_key(key)
            expires_at = int(expires)
        except (StoreError, ValueError, TypeError):
            return False
        if expires_at < time.time():
            return False
        if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
            return False
        return hmac.compare_digest(self._signature(key, expires_at), signature)


def artifact_router(store: LocalArtifactStore) -> APIRouter:
    """GET /artifacts/{key}?expires=…&signature=… → the file; 403 for a bad or expired signature, 404 if missing."""
    router = APIRouter()

    @router.get("/artifacts/{key:path}")
    async def get_artifact(key: str, expires: str | None = None, signature: str | None = None) -> FileResponse:
        if expires is None or signature is None or not store.verify(key, expires, signature):
            raise HTTPException(status_code=403, detail="the artifact URL is invalid or has expired; ask for a new one")
        path = store.path(key)
        if not path.is_file():
            raise HTTPException(status_code=404, detail=f"artifact {key} does not exist")
        return FileResponse(path, filename=path.name)

    return router
