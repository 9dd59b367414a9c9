"""Output folders that never cost a user a file.

Every command that writes ``--out DIR`` goes through :func:`claim` (check, lock, mark) and
:func:`staged` (write aside, then publish). The rules:

* rlop writes into ``DIR`` only when it is absent, empty, or an rlop output of the same kind
  (the marker file ``.rlop-output.json`` says which kind and which entries rlop wrote).
  Anything else is refused with :class:`OutputError` (exit 2) before any work, unless
  ``overwrite`` is given; even then rlop replaces or removes only entries its marker lists,
  never a file it did not write, and never anything outside ``DIR``.
* One process at a time: ``DIR/.rlop.lock`` is held with ``flock`` while rlop writes. A
  second process stops at once with a message naming the holder's PID. The kernel drops the
  lock of a killed process, so a stale lock is taken over without any clean-up.
* A stage is written into ``DIR/.rlop-staging`` and its entries are moved into place only
  when it finished; the marker lists them before the move, so an interruption at any point
  leaves either the previous output or entries that rlop knows to be its own. A failed
  command that created ``DIR`` removes it again: nothing half-written remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from rlop.errors import UserError

MARKER = ".rlop-output.json"
LOCK = ".rlop.lock"
STAGING = ".rlop-staging"
TRASH = ".rlop-trash"
CONTROL = frozenset({MARKER, LOCK, STAGING, TRASH})

_held: dict[Path, tuple[int, int]] = {}  # locked folder -> (fd, depth), so nested claims in one process share it


class OutputError(UserError, ValueError):
    """A problem with an output folder that the user can fix (exit code 2)."""


def read_marker(out: Path) -> dict | None:
    try:
        data = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return {"kind": "?", "files": []}
    return data if isinstance(data, dict) else {"kind": "?", "files": []}


def _write_marker(out: Path, kind: str, files: list[str], complete: bool) -> None:
    tmp = out / f"{MARKER}.tmp"
    tmp.write_text(json.dumps({"kind": kind, "files": sorted(set(files)), "complete": complete}, indent=1), encoding="utf-8")
    os.replace(tmp, out / MARKER)


def _user_entries(out: Path) -> list[str]:
    return sorted(n for n in os.listdir(out) if n not in CONTROL and not n.startswith(MARKER))


def check(out: str | Path, kind: str, overwrite: bool = False) -> Path:
    """Raise :class:`OutputError` unless rlop may write a ``kind`` output into ``out``."""
    out = Path(out).absolute()
    if out.is_symlink() and not out.exists():
        raise OutputError(f"--out {out}: a broken symbolic link")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a directory; give a folder path (rlop writes several files)")
    if not out.exists():
        parent = next((p for p in out.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise OutputError(f"--out {out}: {parent} is not a directory")
        if parent is not None and not os.access(parent, os.W_OK):
            raise OutputError(f"--out {out}: cannot create it, {parent} is not writable")
        return out
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: folder is not writable")
    marker = read_marker(out)
    entries = _user_entries(out)
    if marker is None and entries and not overwrite:
        shown = ", ".join(repr(e) for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise OutputError(f"--out {out}: folder is not empty and was not written by rlop (it holds {shown}). Choose a new or empty "
                          "folder, or pass --overwrite to write into it (rlop never deletes or replaces files it did not write)")
    if marker is not None and marker.get("kind") != kind and entries and not overwrite:
        raise OutputError(f"--out {out}: holds an rlop '{marker.get('kind')}' output, not '{kind}'. Choose another folder, or pass "
                          "--overwrite to replace what rlop wrote there")
    return out


@contextlib.contextmanager
def lock(out: Path, main: bool = True) -> Iterator[None]:
    """Hold ``out/.rlop.lock`` exclusively (re-entrant within one process)."""
    out = Path(out).absolute()
    if not main:
        yield
        return
    if out in _held:
        fd, depth = _held[out]
        _held[out] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[out]
            _held[out] = (fd, depth - 1)
        return
    fd = _acquire(out / LOCK)
    _held[out] = (fd, 1)
    try:
        yield
    finally:
        del _held[out]
        with contextlib.suppress(OSError):  # still held: nobody can be between its lock and this unlink
            os.unlink(out / LOCK)
        os.close(fd)


def _acquire(path: Path) -> int:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; single-writer is then the user's job
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    for _ in range(10):  # the holder unlinks the file when it lets go: a lock on an unlinked file is worth nothing
        fd = _acquire_once(path, fcntl)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OutputError(f"--out {path.parent}: could not take the folder's lock (it kept being replaced)")


def _acquire_once(path: Path, fcntl) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise OutputError(f"--out {path.parent}: another rlop process (PID {holder}) is writing to this folder; "
                          "wait for it to finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


@contextlib.contextmanager
def claim(out: str | Path, kind: str, overwrite: bool = False, main: bool = True) -> Iterator[Path]:
    """Check, create and lock ``out`` for a ``kind`` output; a failure removes a folder it created.

    Only ``main`` (the main process of a distributed job) checks, creates and locks; the other
    processes get the path and leave the folder to it."""
    if not main:
        yield Path(out).absolute()
        return
    out = check(out, kind, overwrite)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with lock(out):
            marker = read_marker(out)
            if marker is None or marker.get("kind") != kind:
                _write_marker(out, kind, list((marker or {}).get("files", [])), complete=False)
            yield out
    except BaseException:
        if created:
            _remove_if_only_control(out)
        raise


def _remove_if_only_control(out: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if _user_entries(out):
            return
        for n in os.listdir(out):
            p = out / n
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        out.rmdir()


def own(out: Path, *names: str) -> None:
    """Declare entries that a stage writes in place (resumable PPO). Refuses foreign entries."""
    marker = read_marker(out) or {"kind": "?", "files": []}
    owned = set(marker.get("files", []))
    foreign = [n for n in names if n not in owned and (out / n).exists()]
    if foreign:
        raise OutputError(f"--out {out}: would write over {', '.join(map(repr, foreign))}, which rlop did not write; "
                          "move them or choose another folder")
    _write_marker(out, marker.get("kind", "?"), sorted(owned | set(names)), complete=False)


def complete(out: Path) -> None:
    marker = read_marker(out) or {"kind": "?", "files": []}
    _write_marker(out, marker.get("kind", "?"), marker.get("files", []), complete=True)


def remove_owned(out: Path, keep: tuple[str, ...] = ()) -> None:
    """Delete the entries rlop's marker lists (never anything else); the marker stays."""
    marker = read_marker(out)
    if marker is None:
        return
    files = [n for n in marker.get("files", []) if n not in keep]
    for n in files:
        _delete(out / n)
    _write_marker(out, marker.get("kind", "?"), [n for n in marker.get("files", []) if n in keep], complete=False)


def _delete(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


@contextlib.contextmanager
def staged(out: str | Path, kind: str, overwrite: bool = False, main: bool = True) -> Iterator[Path]:
    """Claim ``out``, yield a staging folder inside it, and publish it there on success.

    Only ``main`` (the main process of a distributed job) creates, publishes and cleans up;
    the other processes get a scratch folder of their own, removed afterwards, so that code which
    writes its results on every process leaves nothing behind but the main process's output.
    """
    if not main:
        with tempfile.TemporaryDirectory(prefix="rlop-rank-") as scratch:
            yield Path(scratch)
        return
    with claim(out, kind, overwrite) as out:
        stage = out / STAGING
        _delete(stage)
        stage.mkdir()
        try:
            yield stage
        except BaseException:
            _delete(stage)
            raise
        publish(out, stage, kind)


def publish(out: Path, stage: Path, kind: str) -> None:
    marker = read_marker(out) or {"files": []}
    owned = set(marker.get("files", []))
    new = _user_entries(stage)
    clash = [n for n in new if n not in owned and (out / n).exists()]
    if clash:
        raise OutputError(f"--out {out}: the finished output would replace {', '.join(map(repr, clash))}, which rlop did not "
                          f"write; nothing was replaced. Move them and rerun (the output is in {stage} until then)")
    _write_marker(out, kind, sorted(owned | set(new)), complete=False)
    trash = out / TRASH
    _delete(trash)
    trash.mkdir()
    for n in sorted(owned - set(new)):  # stale entries of an earlier output of rlop's
        if (out / n).exists() or (out / n).is_symlink():
            os.replace(out / n, trash / n)
    for n in new:
        if (out / n).exists() or (out / n).is_symlink():
            os.replace(out / n, trash / n)
        os.replace(stage / n, out / n)
    _write_marker(out, kind, new, complete=True)
    _delete(trash)
    _delete(stage)
