"""What keeps a stage from doing damage when things go wrong around it. It dies with the process that started it
(a killed `dvc repro` must not leave its stage writing beside the next one), it holds the artifact directory's
lock for as long as it runs (a second writer stops at once with a message naming the holder), and, holding it,
it removes what a killed writer left half-done (temporary files and directories). Linux; elsewhere the lock
still works and the parent watch is skipped. No torch here."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

LOCK_FILE = ".erl.lock"
_HELD: dict[str, int] = {}  # artifact root -> open lock file descriptor (a process locks a root once)
_WATCHING = False


class LockHeld(RuntimeError):
    """Another process is writing the same artifact directory."""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _parent_of(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _watched() -> list[int]:
    """The processes from this one's parent up to the `dvc` process that started it (DVC may run a stage's
    command through a shell, and `accelerate launch` adds a launcher in between); only the parent when no dvc
    process is among the ancestors (a stage run by hand). Not above dvc: a `dvc repro` left running after its
    terminal closed keeps its stages."""
    chain, pid = [], os.getppid()
    while pid and pid > 1 and len(chain) < 8:
        chain.append(pid)
        if " dvc " in f" {_cmdline(pid)} ".replace("/dvc ", " dvc "):
            return chain
        pid = _parent_of(pid) or 0
    return chain[:1]


def die_with_parent(interval: float = 0.5) -> None:
    """Exit at once when the process that started this stage dies: the kernel's parent-death signal for the
    direct parent, and a watch over the chain of ancestors up to the `dvc` process (a shell or a launcher in
    between would otherwise keep the stage alive and writing)."""
    global _WATCHING
    if _WATCHING or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before the signal was arranged: this process is already orphaned
        os.kill(os.getpid(), signal.SIGKILL)
    chain = _watched()
    if not chain:
        return

    def watch() -> None:
        while True:
            time.sleep(interval)
            if not all(_alive(pid) for pid in chain):
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="erl-parent-watch", daemon=True).start()
    _WATCHING = True


def hold_lock(root: Path, stage: str) -> None:
    """Take the artifact directory's lock for the life of this process (re-entrant within it). In a run of several
    processes (`accelerate launch`) the first one holds it for all."""
    root = Path(root)
    key = str(root.resolve())
    if key in _HELD or int(os.environ.get("RANK", "0") or 0) > 0:
        return
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise LockHeld(f"{root}: in use by {holder}; wait for it to finish or stop it") from None
    info = f"stage {stage} (pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})"
    os.ftruncate(fd, 0)
    os.pwrite(fd, info.encode() + b"\n", 0)
    _HELD[key] = fd


def sweep(root: Path) -> list[Path]:
    """Remove what killed writers left under ``root``: temporary files and directories of atomic writes
    (``.name.*.tmp``) and checkpoints set aside for replacement (``.name.old-PID``). Only under the lock."""
    gone = []
    for path in sorted(Path(root).rglob(".*"), key=lambda p: len(p.parts), reverse=True):
        name = path.name
        if name == LOCK_FILE or not (name.endswith(".tmp") or ".old-" in name):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        gone.append(path)
    return gone


def release_all() -> None:
    """Release every lock this process holds (tests that run stages in-process)."""
    for fd in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()
