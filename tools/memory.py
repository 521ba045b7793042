"""`erl memory`: will the update fit the GPUs, before they are rented? The per-GPU memory of one policy update for
the params' model and settings on N GPUs of G GiB, term by term (pipeline/gpumem.py), whether it fits (exit 0)
or not (exit 1, with settings that would), and the CPU memory an offload needs. `init` applies the same rule on
the GPUs it finds.

  erl memory --gpus 8 --gpu-gib 80                        # params.yaml on one node of 8 x H100 80 GB
  erl memory --params presets/paper.yaml --gpus 1         # the paper preset on one 80 GB GPU
  erl memory --params presets/paper-olmo.yaml --gpus 8 --json

policy.model's shape comes from its config.json (a local directory, or --config), or from a table of the models
the presets name (Qwen3-4B-Instruct-2507, Olmo-3-7B-Instruct, SmolLM2-135M): no download."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline import gpumem
from pipeline.config import ParamsError, load_params
from pipeline.errors import InputError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="erl memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--params", default="params.yaml", help="parameter file or preset (default: params.yaml)")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs the update runs on (processes; default 1)")
    ap.add_argument("--gpu-gib", type=float, default=80.0, help="memory of one GPU in GiB (default 80)")
    ap.add_argument("--config", default=None, help="the model's config.json, when policy.model is a hub id")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    if args.gpus < 1 or args.gpu_gib <= 0:
        print("error: --gpus must be >= 1 and --gpu-gib > 0", file=sys.stderr)
        return 2
    try:
        p = load_params(args.params)
        shape = gpumem.Shape.from_config(gpumem.model_config(p, args.config))
    except (ParamsError, InputError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup = gpumem.Setup.of(p, args.gpus)
    gpu = args.gpu_gib * gpumem.GiB
    est = gpumem.estimate(shape, setup)
    ok = gpumem.fits(est, gpu)
    alts = [] if ok else gpumem.suggestions(shape, setup, gpu)
    if args.json:
        out = {
            "model": p.policy.model,
            "parameters": shape.parameters(),
            "gpus": args.gpus,
            "gpu_gib": args.gpu_gib,
            "setup": setup.__dict__,
            "phases": {
                ph: {k: v / gpumem.GiB for k, v in est[ph].items()} for ph in ("forward/backward", "optimizer step")
            },
            "peak_gib": est["peak"] / gpumem.GiB,
            "host_gib": est["host"] / gpumem.GiB,
            "fits": ok,
            "would_fit": alts,
        }
        print(json.dumps(out, indent=2))
        return 0 if ok else 1
    u = p.update
    print(
        f"{p.policy.model}: {shape.parameters() / 1e9:.2f} B parameters; update.strategy {u.strategy}, offload "
        f"{u.offload}, adamw {u.adamw}, micro_batch_tokens {u.micro_batch_tokens}, logprob_chunk {u.logprob_chunk}, "
        f"gradient_checkpointing {u.gradient_checkpointing}; {args.gpus} x {args.gpu_gib:g} GiB"
    )
    print(gpumem.describe(est, gpu))
    if ok:
        print(f"fits: {est['peak'] / gpumem.GiB:.1f} GiB of {gpumem.usable(gpu) / gpumem.GiB:.1f} GiB per GPU")
        return 0
    print(f"does not fit: {est['peak'] / gpumem.GiB:.1f} GiB per GPU, {gpumem.usable(gpu) / gpumem.GiB:.1f} usable")
    print("settings that would fit:" if alts else "no single setting here fits: more or larger GPUs")
    for a in alts:
        print(f"  {a}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
