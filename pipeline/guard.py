"""What keeps a stage from doing damage when things go wrong around it. Started by `dvc repro`, it dies with the
dvc process (a killed `dvc repro` must not leave its stage writing beside the next one); it holds the artifact
directory's lock for as long as it runs (a second writer stops at once with a message naming the holder); and,
holding it, it removes what a killed writer of this project left half-done (its temporary files and directories,
by their names, nothing else). Linux; elsewhere the lock still works and the parent watch is skipped. No torch
here."""

from __future__ import annotations

import fcntl
import os
import re
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


def _is_dvc(pid: int) -> bool:
    return " dvc " in f" {_cmdline(pid)} ".replace("/dvc ", " dvc ")


def _watched() -> list[int]:
    """The processes from this one's parent up to the `dvc` process that started it (DVC may run a stage's
    command through a shell, and `accelerate launch` adds a launcher in between); [] when no dvc process is
    among the ancestors: a stage run by hand, detached (nohup, setsid) or under a container's init keeps running
    whatever its parent does. dvc itself may be PID 1 (a container's command). Not above dvc: a `dvc repro` left
    running after its terminal closed keeps its stages."""
    chain, pid = [], os.getppid()
    while pid and len(chain) < 8:
        chain.append(pid)
        if _is_dvc(pid):
            return chain
        if pid == 1:
            break
        pid = _parent_of(pid) or 0
    return []


def die_with_parent(interval: float = 0.5) -> None:
    """For a stage started by `dvc repro`: exit at once when dvc, or a process between it and this one, dies: the
    kernel's parent-death signal for the direct parent, and a watch over the chain of ancestors up to dvc (a
    shell or a launcher in between would otherwise keep the stage alive and writing). Called from a stage's
    main, never at import. A parent that is PID 1 is a parent like any other, not a sign of orphanhood: a
    container's shell or init may start a stage."""
    global _WATCHING
    if _WATCHING or not sys.platform.startswith("linux"):
        return
    chain = _watched()
    if not chain:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if not _alive(chain[0]) or os.getppid() != chain[0]:  # the parent died while the signal was being arranged
        os.kill(os.getpid(), signal.SIGKILL)

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


# What this project's writers leave while they work, and only that: the temporary name of an atomic write or
# checkpoint (``.<target>.<random>.tmp``: artifacts._atomic, checkpoint.temp_dir, search.build_index,
# hashcache), and a checkpoint directory set aside for its replacement (``.<target>.old-<pid>``), where <target>
# is a file or folder the pipeline writes. They lie in the artifact root or one folder below it.
_LEFT = re.compile(r"^\.(?P<target>.+?)\.(?:[^./]+\.tmp|old-\d+)$")


def _ours(target: str) -> bool:
    from pipeline.artifacts import SCHEMAS  # the table names, known without torch

    return (
        target.removesuffix(".parquet") in SCHEMAS
        if target.endswith(".parquet")
        else target
        in {
            "policy",
            "train_state",
            "checkpoint.json",
            "metrics.json",
            "init.json",
            "validated.txt",
            "qa_index.sqlite",
            ".erl-hashes.json",
        }
    )


def sweep(root: Path) -> list[Path]:
    """Remove what killed writers of this project left under ``root`` (in it and in the folders right below it):
    temporary files and directories of atomic writes and checkpoints set aside for replacement, by the names
    those writers give them; nothing else, whatever it is called. Only under the lock."""
    gone = []
    root = Path(root)
    if not root.is_dir():
        return gone
    found = list(root.glob(".*")) + [p for d in root.iterdir() if d.is_dir() for p in d.glob(".*")]
    for path in sorted(found, key=lambda p: len(p.parts), reverse=True):
        m = _LEFT.match(path.name)
        if m is None or not _ours(m.group("target")):
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
