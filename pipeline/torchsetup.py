"""How every stage process sets torch up before it computes: its thread count and deterministic kernels. The
same code, params and machine must give the same bytes whether the machine is idle or busy.

- Threads: the cores this process may use (its CPU affinity, capped by a cgroup CPU quota), shared among the
  processes a launcher started on this machine (LOCAL_WORLD_SIZE), or ERL_THREADS. More threads than cores make
  torch processes that share a machine collapse (reports/results.md, Measurements behind the code).
- Deterministic kernels on CPUs: some of torch's CPU kernels add up in an order set by thread timing. The one
  the update meets is the backward of indexing with repeated indices (a task's rollouts reading their shared
  prompt's keys and values): ``index_put_(..., accumulate=True)``, whose parallel CPU kernel adds with atomics,
  so the same update gave other bits from run to run (more often on a loaded machine). With
  ``torch.use_deterministic_algorithms`` torch takes its serial kernel there. On GPUs it is left off: it would
  refuse the kernels that have no deterministic form (docs/guide.md, Reproducibility, says what is and is not
  reproducible there).

The settings in force go into every artifact's lineage footer (:func:`settings`)."""

from __future__ import annotations

import math
import os

THREADS_ENV = "ERL_THREADS"


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota when one is set."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def configure_torch() -> int:
    """Set torch's thread count and, on a machine without a GPU, its deterministic kernels. Returns the threads."""
    import torch

    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    n = int(os.environ.get(THREADS_ENV) or 0) or max(1, usable_cores() // local)
    torch.set_num_threads(n)
    if not torch.cuda.is_available():
        torch.use_deterministic_algorithms(True)
    return n


def settings() -> dict | None:
    """The torch settings of this process, for the lineage (None when torch was never imported here)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cuda": torch.cuda.is_available(),
    }
