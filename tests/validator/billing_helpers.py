"""Helpers of the account and billing tests: models of a known size in a model store."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from core.model_store import LocalModelStore


def write_safetensors_header(path: Path, shapes: dict[str, list[int]]) -> None:
    """A safetensors file whose header declares `shapes` (the pricing reads only the header)."""
    header = {name: {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]} for name, shape in shapes.items()}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def publish_model(
    store_root: Path,
    repo: str,
    *,
    shapes: dict[str, list[int]] | None = None,
    config: dict | None = None,
    scratch: Path,
) -> None:
    folder = scratch / repo.replace("/", "__")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {}))
    if shapes is not None:
        write_safetensors_header(folder / "model.safetensors", shapes)
    LocalModelStore(store_root).upload(folder, repo)
