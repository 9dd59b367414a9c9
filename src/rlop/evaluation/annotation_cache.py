"""On-disk cache of API annotations, so that a rerun or a resumed run never pays twice.

One SQLite file (default ``$RLOP_ANNOTATION_CACHE``, else ``$RLOP_CACHE/annotations.sqlite``, i.e. under ``~/.cache/rlop``), shared by
every run and safe for several processes. A reply is stored under the SHA-256 of the endpoint
and the whole request body (model, prompt, decoding parameters); the API key is not part of
the request body and is never written."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path


def default_path() -> Path:
    import os

    from rlop.models.loading import cache_dir

    return Path(os.environ.get("RLOP_ANNOTATION_CACHE") or cache_dir() / "annotations.sqlite")


class AnnotationCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit: each put is durable at once; one connection shared by the annotator's request threads, behind a lock
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self.lock = threading.Lock()
        with self.lock:
            self.db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")

    @staticmethod
    def key(endpoint: str, body: dict) -> str:
        return hashlib.sha256(json.dumps([endpoint, body], sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, reply: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)", (key, reply))
