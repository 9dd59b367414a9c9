"""Small helpers shared by every stage: atomic output, JSONL metrics, seeding."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (no Python hash randomisation)."""
    h = 1469598103934665603
    for p in parts:
        h ^= int(p) & 0xFFFFFFFFFFFFFFFF
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


@contextlib.contextmanager
def atomic_dir(final: str | Path, main: bool = True) -> Iterator[Path]:
    """Write a directory under a temporary name and rename it into place only on success.

    Only for folders that rlop owns (its model cache, PPO checkpoints and the policy inside a
    claimed PPO output); a user's ``--out`` goes through :mod:`rlop.outputs`. Every process of a distributed job gets the same temporary path; only ``main`` renames.
    An interrupted run leaves no ``final`` directory, only a ``.NAME.partial`` that the next
    run replaces.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial"
    if main and tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not main:
        return
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from the user's group
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl_plain(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file that rlop itself wrote (no validation)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLogger:
    """Appends one JSON object per line to ``metrics.jsonl`` (only on the main process)."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if isinstance(v, (np.floating, torch.Tensor)) else v) for k, v in row.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")


def reset_peak_rss() -> bool:
    """Start a new peak-memory window for this process (Linux: ``clear_refs`` 5 resets VmHWM).

    Returns False where the peak cannot be reset; :func:`peak_rss_mb` then reports the peak
    since the process started."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    # Some kernels and sandboxes accept the write and keep VmHWM: after a real reset the
    # peak equals what the process holds now, so a peak well above VmRSS means it was ignored.
    status = _proc_status_kb()
    hwm, rss = status.get("VmHWM"), status.get("VmRSS")
    return hwm is not None and rss is not None and hwm - rss < 8 * 1024


def _proc_status_kb() -> dict[str, int]:
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def _cuda_in_use():
    """torch, where this process has initialised CUDA (else None: no CUDA memory to report)."""
    import torch

    return torch if torch.cuda.is_available() and torch.cuda.is_initialized() else None


def reset_peak_cuda() -> None:
    """Start a new CUDA peak-memory window (a no-op where CUDA is not in use)."""
    if (torch := _cuda_in_use()) is not None:
        torch.cuda.reset_peak_memory_stats()


def peak_cuda_mb() -> float | None:
    """Peak CUDA memory allocated by this process's tensors since :func:`reset_peak_cuda`, in MB (None without CUDA)."""
    torch = _cuda_in_use()
    return None if torch is None else torch.cuda.max_memory_allocated() / 2**20


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MB since the last :func:`reset_peak_rss` (Linux),
    or since it started (elsewhere)."""
    status = _proc_status_kb()
    hwm = status.get("VmHWM")
    if hwm is not None:  # some sandboxes update VmHWM lazily: never report a peak below what is held now
        return max(hwm, status.get("VmRSS", 0)) / 1024
    try:
        import resource
        import sys

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)  # macOS: bytes
        return kb / 1024
    except (ImportError, OSError):
        return None
