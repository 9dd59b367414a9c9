"""What a finished stage folder held when it was written: each file's size and digest.

``rlop run`` records the manifest in ``stage.json`` and checks it before it reuses a cached
stage, so a truncated, damaged or edited file is noticed and the stage redone instead of
loaded. Files up to :data:`FULL_DIGEST_BYTES` get a SHA-256 of their whole content; larger ones
(multi-GB weights) a SHA-256 of their first and last MiB, which for safetensors covers the
header with every tensor's offsets, plus their size (a truncation or a damaged header is caught
at once; a flipped bit deep inside such a file is not, unless ``full`` is asked for).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

FULL_DIGEST_BYTES = 64 * 2**20
EDGE = 2**20


def file_digest(path: Path, full: bool = False) -> str:
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if full or size <= FULL_DIGEST_BYTES:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
            return "sha256:" + h.hexdigest()
        h.update(f.read(EDGE))
        f.seek(size - EDGE)
        h.update(f.read(EDGE))
    return "edges-sha256:" + h.hexdigest()


def manifest(folder: Path, full: bool = False, skip: tuple[str, ...] = ("stage.json",)) -> dict[str, dict]:
    """``{relative path: {"size", "digest"}}`` of every file under ``folder`` (``skip``: names left out)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".rlop"))
        for name in sorted(files):
            if name in skip or name.startswith(".rlop"):
                continue
            p = Path(root) / name
            out[str(p.relative_to(folder))] = {"size": p.stat().st_size, "digest": file_digest(p, full)}
    return out


def mismatches(folder: Path, recorded: dict[str, dict]) -> list[str]:
    """Why ``folder`` no longer matches ``recorded`` (empty: it does), one short reason per file."""
    problems = []
    for rel, want in recorded.items():
        p = folder / rel
        if not p.is_file():
            problems.append(f"{rel} is missing")
            continue
        size = p.stat().st_size
        if size != want["size"]:
            problems.append(f"{rel} has {size} bytes, {want['size']} were written")
        elif file_digest(p, want["digest"].startswith("sha256:")) != want["digest"]:
            problems.append(f"{rel} has changed content")
    return problems


def stage_key(*parts: Any) -> str:
    """A stage's cache key: a digest of its config and the keys of what it reads."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
