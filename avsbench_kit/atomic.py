"""Atomic writes: a failed or killed run never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator


def shared_mode(directory: bool = False) -> int:
    """The mode a plain create would get under the current umask (mkstemp/mkdtemp give 0600/0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def owner_tag() -> str:
    """``host~pid`` of this process, put in every temp name so that a cleaner can tell a live
    writer's temp (keep it) from one a killed process left (remove it)."""
    return f"{socket.gethostname().replace('.', '_').replace('~', '_')}~{os.getpid()}"


def temp_is_stale(temp: Path, older_than_s: float = 3600.0) -> bool:
    """True when no live process can still be writing ``temp``: its writer (same host) is gone,
    or (another host, or an untagged temp of an older version) it is older than ``older_than_s``."""
    parts = temp.name[1:].rsplit(".", 3)
    if len(parts) == 4 and "~" in parts[1]:
        host, _, pid = parts[1].rpartition("~")
        if host == owner_tag().rpartition("~")[0] and pid.isdigit():
            return int(pid) != os.getpid() and not pid_alive(int(pid))
    try:
        return time.time() - temp.stat().st_mtime > older_than_s
    except FileNotFoundError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is still "alive" to kill(0)
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_temps(directory: Path, recursive: bool = False, older_than_s: float = 3600.0) -> int:
    """Delete the temp files killed writers left in ``directory`` (see :func:`temp_is_stale`);
    returns how many. A live writer's temp is kept: deleting it would fail that writer's rename."""
    removed = 0
    for p in (directory.rglob if recursive else directory.glob)(".*.tmp"):
        try:
            if p.is_file() and temp_is_stale(p, older_than_s):
                p.unlink()
                removed += 1
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{owner_tag()}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, shared_mode())  # final files get the modes a plain write would give
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except OSError as exc:
        if exc.filename is None:  # a failed write() names no file; the one-line error should
            exc.filename = str(final)
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(final: str | Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_text(final: str | Path, text: str) -> None:
    write_bytes(final, text.encode("utf-8"))


def write_json(final: str | Path, obj: Any) -> None:
    write_text(final, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
