"""`erl compare`: the paper's Table 1 at small scale. Runs ERL, RLVR, ERL without memory and ERL without
reflection, each for k seeds at the same budget (same params.yaml otherwise), every run a real `dvc repro`
in its own throwaway copy of this project, one at a time (two torch processes on a small machine slow each
other down several times over). Writes reports/compare.md (final held-out success, mean and spread over seeds), reports/compare.html
(learning curves against epochs and against wall-clock seconds) and reports/compare.csv (every epoch of
every run), so the comparison is committed with the code that produced it.

  erl compare --seeds 3                      # 4 arms x 3 seeds x params.yaml's epochs
  erl compare --arms erl rlvr --seeds 1 --epochs 2
  erl compare --arms erl --seeds 2 --first-seed 1   # seeds 1 and 2 (seed 0 = the main job's run)
  erl compare --merge a/compare.csv b/compare.csv --out reports   # one table from runs made separately
  erl compare --merge a.csv b.csv --note "b's runs were made on a slower machine"   # a paragraph for compare.md
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import layout
from pipeline.config import ParamsError, expand, load_params
from pipeline.report import outside_legend
from tools.bench import make_copy, repro_one, sandbox_env

ARMS: dict[str, dict] = {
    "rlvr": {"algorithm": "rlvr"},
    "erl": {"algorithm": "erl"},
    "erl-no-memory": {"algorithm": "erl", "ablation": {"no_memory": True}},
    "erl-no-reflection": {"algorithm": "erl", "ablation": {"no_reflection": True}},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def run_arm(params: dict, epochs: int, log, cache_dir: Path | None = None, keep: Path | None = None) -> list[dict]:
    """One full run in a temporary project; returns per-epoch metrics with the wall-clock seconds of training
    (from the end of the epoch-0 evaluation). With ``cache_dir`` the runs share one DVC cache, so DVC's run
    cache restores `init` and `evaluate_e0` (identical for every arm of a seed) instead of rerunning them.
    With ``keep`` the finished project is moved there (its artifacts/ for `erl audit`, the probes, `erl diff`)."""
    tmp = Path(tempfile.mkdtemp(prefix="erl-compare-"))
    env = sandbox_env(tmp)
    try:
        make_copy(tmp, params)
        if cache_dir is not None:
            subprocess.run(
                [sys.executable, "-m", "dvc", "config", "--local", "cache.dir", str(cache_dir)],
                cwd=tmp,
                env=env,
                check=True,
                capture_output=True,
            )
        per_stage = int((params.get("train") or {}).get("epochs_per_stage", 0))
        for name in ("validate", "init", layout.stage_name("evaluate", 0)):
            res, _ = repro_one(name, tmp, env)
            if res.returncode != 0:
                raise RuntimeError(f"stage {name} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
        t_start, clock, last = time.perf_counter(), {0: 0.0}, 0.0
        for name, done in layout.training_stages(epochs, per_stage) + [("report", [])]:
            res, _ = repro_one(name, tmp, env)
            if res.returncode != 0:
                raise RuntimeError(f"stage {name} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
            now = time.perf_counter() - t_start
            for i, e in enumerate(done):  # epochs of one multi-epoch stage: spread its time evenly
                clock[e] = last + (now - last) * (i + 1) / len(done)
                success = json.loads((tmp / layout.metrics_path(e)).read_text())["eval_success"]
                shown = "-" if success is None else f"{success:.3f}"
                log(f"    epoch {e}: held-out success {shown} at {clock[e]:.0f} s")
            last = now if done else last
        rows = []
        for e in range(0, epochs + 1):
            m = json.loads((tmp / layout.metrics_path(e)).read_text())
            rows.append({**m, "epoch": e, "seconds": round(clock[e], 1)})
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(keep, ignore_errors=True)
            shutil.move(str(tmp), keep)
            log(f"    kept in {keep}")
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mean_sd(xs: list[float]) -> tuple[float, float | None] | None:
    """Mean and sample std; no spread from a single seed; None when no run has the value."""
    if not xs:
        return None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _epoch_mean(runs: list[list[dict]], key: str) -> float | None:
    """Mean of ``key`` over the trained epochs of every run (None when no epoch has it)."""
    xs = [r[key] for rows in runs for r in rows if r.get("epoch", 0) > 0 and r.get(key) is not None]
    return statistics.fmean(xs) if xs else None


def _second_half(runs: list[list[dict]], key: str) -> float | None:
    """Mean of ``key`` over the second half of the trained epochs of every run (the channel once learned)."""
    xs = [r[key] for rows in runs for r in rows if r.get("epoch", 0) > (len(rows) - 1) / 2 and r.get(key) is not None]
    return statistics.fmean(xs) if xs else None


def _by_epoch(runs: list[list[dict]], key: str) -> dict[int, list[float]]:
    """The values of ``key`` of every run, by epoch, in epoch order; epochs where no run has it are left out."""
    out: dict[int, list[float]] = {}
    for rows in runs:
        for r in rows:
            if r.get(key) is not None:
                out.setdefault(r["epoch"], []).append(r[key])
    return dict(sorted(out.items()))


def _last(rows: list[dict], key: str):
    """The value of ``key`` at the last epoch that has it (evaluation may skip epochs)."""
    return next((r[key] for r in reversed(rows) if r.get(key) is not None), None)


def summarize(results: dict[tuple[str, int], list[dict]]) -> dict[str, dict]:
    out = {}
    for arm in dict.fromkeys(a for a, _ in results):
        runs = [rows for (a, _), rows in results.items() if a == arm]
        final = [_last(r, "eval_success") for r in runs]
        initial = [r[0]["eval_success"] for r in runs]
        post = [r[-1].get("train_post_success") for r in runs if r[-1].get("train_post_success") is not None]
        pre = [r[-1].get("train_pre_success") for r in runs if r[-1].get("train_pre_success") is not None]
        out[arm] = {
            "final": _mean_sd(final),
            "initial": _mean_sd(initial),
            "seeds": len(runs),
            "final_by_seed": final,
            "pre": _mean_sd(pre),
            "post": _mean_sd(post),
            "retry": _epoch_mean(runs, "retry_success"),
            "control": _epoch_mean(runs, "retry_control_success"),
            "retry_2nd": _second_half(runs, "retry_success"),
            "control_2nd": _second_half(runs, "retry_control_success"),
            "channel_by_seed": [
                (g, c)
                for r in runs
                if (g := _second_half([r], "retry_success")) is not None
                and (c := _second_half([r], "retry_control_success")) is not None
            ],
            "reflect_final": _mean_sd([x for r in runs if (x := _last(r, "eval_reflect_success")) is not None]),
            "two_final": _mean_sd([x for r in runs if (x := _last(r, "eval_two_tries_success")) is not None]),
            "seconds": statistics.fmean(r[-1]["seconds"] for r in runs),
            "memory": statistics.fmean(sum(x.get("memory_adopted") or 0 for x in r) for r in runs),
        }
    return out


def paired(results: dict[tuple[str, int], list[dict]], base: str = "rlvr") -> dict[str, dict]:
    """Each other arm against ``base`` on the seeds both have (a seed gives every arm the same warm start and
    tasks, so the difference of a seed is the arm's effect on it): the differences of the final held-out success
    and of its mean over the trained epochs, by seed, with their mean and sample std. Empty without ``base``."""
    out = {}
    for arm in dict.fromkeys(a for a, _ in results):
        seeds = sorted(s for a, s in results if a == arm and (base, s) in results)
        if arm == base or not seeds:
            continue
        final = [results[(arm, s)][-1]["eval_success"] - results[(base, s)][-1]["eval_success"] for s in seeds]
        over = [
            _epoch_mean([results[(arm, s)]], "eval_success") - _epoch_mean([results[(base, s)]], "eval_success")
            for s in seeds
        ]
        out[arm] = {
            "seeds": seeds,
            "final": _mean_sd(final),
            "final_by_seed": final,
            "above": sum(d > 0 for d in final),
            "over_epochs": _mean_sd(over),
        }
    return out


def _seed_list(seeds: list[int]) -> str:
    """0-4 for a run of seeds, else the list."""
    return (
        f"{seeds[0]}-{seeds[-1]}"
        if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1))
        else ", ".join(map(str, seeds))
    )


def write_markdown(summary: dict, meta: dict, path: Path, pairs: dict | None = None) -> None:
    arms = list(summary)

    def cell(ms):
        if not ms:
            return "-"
        return f"{ms[0]:.3f}" if ms[1] is None else f"{ms[0]:.3f} ± {ms[1]:.3f}"

    num = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [
        "# ERL vs RLVR on the embedded default (the paper's Table 1 layout)",
        "",
        f"Environment: {meta['env']}; policy: {meta['model']}; {meta['epochs']} epochs; seeds {meta['seeds']}"
        + (
            ""
            if len({s["seeds"] for s in summary.values()}) <= 1
            else " (" + ", ".join(f"{a}: {summary[a]['seeds']}" for a in arms) + " seeds)"
        )
        + "; "
        "numbers are held-out first-attempt success after the last epoch, mean ± sample std over seeds "
        "(no spread from one seed).",
        "",
        "| model | task | " + " | ".join(arms) + " |",
        "|---|---|" + "---|" * len(arms),
        f"| {meta['model']} | {meta['env']} | " + " | ".join(cell(summary[a]["final"]) for a in arms) + " |",
        "",
        "| arm | untrained | final | final by seed | train pre-reflection | train post-reflection "
        "| retry of failed tasks | plain retry under s0 | the same, second half | memory adopted | training wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in arms:
        s = summary[a]
        lines.append(
            f"| {a} | {cell(s['initial'])} | {cell(s['final'])} | {', '.join(f'{x:.3f}' for x in s['final_by_seed'])} "
            f"| {cell(s['pre'])} | {cell(s['post'])} | {num(s['retry'])} | {num(s['control'])} "
            f"| {num(s['retry_2nd'])} / {num(s['control_2nd'])} | {s['memory']:.0f} | {s['seconds']:.0f} |"
        )
    if any(summary[a].get("two_final") for a in arms):
        lines += [
            "",
            "Held-out success with one more attempt (evaluate.reflect_every, beyond the paper), at the last epoch that"
            " ran it: after the policy's own reflection on each failure, and after a plain second try under s0 "
            "(the best of two attempts).",
            "",
            "| arm | first attempt | after reflection | best of two plain attempts |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {a} | {cell(summary[a]['final'])} | {cell(summary[a]['reflect_final'])} "
            f"| {cell(summary[a]['two_final'])} |"
            for a in arms
        ]
    channel = [a for a in arms if summary[a]["channel_by_seed"]]
    if channel:
        lines += [
            "",
            "The retry channel over the second half of training: second attempts on failed training tasks guided by "
            "the reflection (or by the raw summary without reflection) against the plain retry under s0 on the "
            "same tasks; ratio and difference of the means, then each seed's pair.",
            "",
            "| arm | guided | plain | ratio | difference | by seed, guided / plain |",
            "|---|---|---|---|---|---|",
        ]
        for a in channel:
            g, c = summary[a]["retry_2nd"], summary[a]["control_2nd"]
            ratio = f"{g / c:.2f}x" if c else "-"
            by_seed = ", ".join(f"{x:.3f} / {y:.3f}" for x, y in summary[a]["channel_by_seed"])
            lines.append(f"| {a} | {g:.3f} | {c:.3f} | {ratio} | {g - c:+.3f} | {by_seed} |")
    lines += [
        "",
        "Train pre/post: the last epoch. Retry columns: success of second attempts on failed training tasks, "
        "mean over epochs and seeds: guided by the reflection (ERL) or by the raw attempt summary "
        "(no-reflection ablation), against a plain second try under s0 alone on the same tasks (retry.control, "
        "never trained).",
        "",
        "Curves against epochs and wall-clock seconds: compare.html. Every epoch of every run: compare.csv.",
        "",
    ]
    if pairs:
        signed = lambda ms: "-" if not ms else f"{ms[0]:+.3f}" + ("" if ms[1] is None else f" ± {ms[1]:.3f}")  # noqa: E731
        lines += [
            "Paired by seed (a seed gives every arm the same warm start and tasks): each arm's final held-out "
            "success minus that of the arm it is set against on the same seed, and the same for the mean "
            "held-out success over the trained epochs (how fast it learns); mean ± sample std of the "
            "differences. The ablations are set against ERL too.",
            "",
            "| arm | against | seeds | final, difference | by seed | seeds above | mean over epochs, difference |",
            "|---|---|---|---|---|---|---|",
        ]
        for base, rows in pairs.items():
            for a, d in rows.items():
                lines.append(
                    f"| {a} | {base} | {_seed_list(d['seeds'])} | {signed(d['final'])} "
                    f"| {', '.join(f'{x:+.3f}' for x in d['final_by_seed'])} | {d['above']} of {len(d['seeds'])} "
                    f"| {signed(d['over_epochs'])} |"
                )
        lines.append("")
    if meta.get("sources"):
        lines += [
            "Merged (`erl compare --merge`) from: " + ", ".join(meta["sources"]) + ". Wall-clock seconds compare "
            "only runs made on the same machine under the same load.",
            "",
        ]
    if meta.get("note"):
        lines += [meta["note"], ""]
    if meta.get("partial"):
        lines += [
            f"**Partial:** the comparison was still running (or was interrupted) after {len(meta['runs'])} runs: "
            + ", ".join(meta["runs"])
            + ".",
            "",
        ]
    path.write_text("\n".join(lines))


def write_html(results, summary, meta, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def png(fig, ax, xlabel: str, ylabel: str = "held-out success") -> str:
        """The axes every curve shares (a success rate, 0..1), then the figure as base64 PNG."""
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        outside_legend(ax)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode()

    fig, ax = plt.subplots(figsize=(7, 4.2))  # one line per arm: the mean over its seeds, the band their range
    for i, arm in enumerate(summary):
        runs = [rows for (a, _), rows in results.items() if a == arm]
        by_epoch = _by_epoch(runs, "eval_success")  # the epochs that evaluated (evaluate.every may skip some)
        epochs, ys = list(by_epoch), list(by_epoch.values())
        ax.plot(epochs, [statistics.fmean(y) for y in ys], color=f"C{i}", lw=2, label=f"{arm} ({len(runs)} seeds)")
        if len(runs) > 1:
            ax.fill_between(epochs, [min(y) for y in ys], [max(y) for y in ys], color=f"C{i}", alpha=0.15)
    imgs = [png(fig, ax, "epoch")]
    for xkey, xlabel in (("epoch", "epoch"), ("seconds", "wall-clock seconds")):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for i, arm in enumerate(summary):
            for (a, seed), rows in results.items():
                if a == arm:
                    rows = [r for r in rows if r.get("eval_success") is not None]
                    ax.plot(
                        [r[xkey] for r in rows],
                        [r["eval_success"] for r in rows],
                        color=f"C{i}",
                        alpha=0.8,
                        marker="o",
                        ms=3,
                        label=arm if seed == min(s for b, s in results if b == arm) else None,
                    )
        imgs.append(png(fig, ax, xlabel))
    # the reflection channel: guided retries against the plain retry under s0 on the same failed tasks, per epoch
    fig, ax = plt.subplots(figsize=(7, 4.2))
    channel = ""
    for i, arm in enumerate(summary):
        runs = [rows for (a, _), rows in results.items() if a == arm]
        for key, style, what in (("retry_success", "-", "guided"), ("retry_control_success", "--", "plain")):
            by_epoch = _by_epoch(runs, key)
            if by_epoch:
                ys = [statistics.fmean(y) for y in by_epoch.values()]
                ax.plot(list(by_epoch), ys, style, color=f"C{i}", lw=1.5, label=f"{arm}, {what}")
    if ax.lines:
        channel = f"""<h2>Second attempts on failed training tasks, per epoch, mean over seeds</h2><p>Solid: the retry
guided by the reflection (ERL) or by the raw attempt (no-reflection ablation); dashed: a plain second try under s0
on the same tasks (retry.control, never trained).</p><img src="data:image/png;base64,{png(fig, ax, "epoch", "retry success")}">
"""
    else:
        plt.close(fig)
    md = html.escape(path.with_suffix(".md").read_text())
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>ERL comparison</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}img{{max-width:100%}}</style></head><body>
<h1>ERL vs RLVR: learning curves</h1>
<h2>Held-out success against epochs, mean over seeds</h2><p>One line per arm; the band spans its seeds' lowest
and highest.</p><img src="data:image/png;base64,{imgs[0]}">
<h2>Held-out success against epochs, every run</h2><p>One line per run (seed); colour = arm.</p>
<img src="data:image/png;base64,{imgs[1]}">
<h2>Held-out success against wall-clock seconds</h2><p>Comparable only between runs made on the same machine
under the same load.</p><img src="data:image/png;base64,{imgs[2]}">
{channel}<h2>Table</h2><pre>{md}</pre></body></html>""")


def write_outputs(results: dict[tuple[str, int], list[dict]], meta: dict, out: Path, partial: bool = False) -> None:
    """compare.csv (every epoch of every run), compare.md (the table) and compare.html (the curves)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "compare.csv", "w", newline="") as f:
        keys = [
            "arm",
            "seed",
            "epoch",
            "seconds",
            "eval_success",
            "train_pre_success",
            "train_post_success",
            "retry_success",
            "retry_control_success",
            "eval_reflect_success",
            "eval_two_tries_success",
            "reflections",
            "reflections_with_note",
            "memory_adopted",
            "update_kl",
            "update_loss",
        ]
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for (arm, seed), rows in results.items():
            for r in rows:
                w.writerow({"arm": arm, "seed": seed, **r})
    summary = summarize(results)
    meta = {**meta, "partial": partial, "runs": [f"{arm} seed {seed}" for arm, seed in results]}
    pairs = {
        "rlvr": paired(results, "rlvr"),
        "erl": {a: d for a, d in paired(results, "erl").items() if a in ("erl-no-memory", "erl-no-reflection")},
    }
    write_markdown(summary, meta, out / "compare.md", {b: rows for b, rows in pairs.items() if rows})
    write_html(results, summary, meta, out / "compare.html")


def _num(v: str):
    if v == "":
        return None
    f = float(v)
    return int(f) if f.is_integer() and "." not in v else f


def read_results(paths: list[Path]) -> dict[tuple[str, int], list[dict]]:
    """Runs from compare.csv files (of this command, at the same settings), keyed (arm, seed). A run found in
    two files, or runs of different lengths, are errors that name the files."""
    results: dict[tuple[str, int], list[dict]] = {}
    where: dict[tuple[str, int], Path] = {}
    for path in paths:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"arm", "seed", "epoch", "eval_success"} <= set(rows[0]):
            raise ValueError(f"{path}: not a compare.csv (needs arm, seed, epoch, eval_success)")
        mine: dict[tuple[str, int], list[dict]] = {}
        for r in rows:
            key = (r["arm"], int(r["seed"]))
            mine.setdefault(key, []).append({k: _num(v) for k, v in r.items() if k not in ("arm", "seed")})
        for key, runs in mine.items():
            if key in results:
                raise ValueError(f"{key[0]} seed {key[1]} is in both {where[key]} and {path}")
            results[key], where[key] = sorted(runs, key=lambda r: r["epoch"]), path
    lengths = {len(rows) - 1 for rows in results.values()}
    if len(lengths) > 1:
        raise ValueError(
            "runs of different lengths (epochs "
            + ", ".join(map(str, sorted(lengths)))
            + ") in "
            + ", ".join(map(str, paths))
        )
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="erl compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", type=int, default=3, help="k seeds per arm: first-seed .. first-seed+k-1")
    ap.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--out", default="reports", help="where compare.{md,html,csv} go")
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="CSV",
        help="run nothing: combine the runs of these compare.csv files into one table and one set of "
        "curves (runs at the same settings, e.g. seeds or arms run on different days or machines; "
        "only their epoch counts are checked)",
    )
    ap.add_argument("--note", default="", help="a paragraph for compare.md, e.g. where and when the runs were made")
    ap.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep each finished run's project as DIR/<arm>-seed<k> (artifacts, dvc.lock) instead of deleting it",
    )
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.first_seed < 0:
        ap.error("--seeds must be >= 1 and --first-seed >= 0")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    try:
        p = load_params(args.params)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.merge:
        try:
            results = read_results(args.merge)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        meta = {
            "env": p.env.name,
            "model": p.policy.model,
            "epochs": len(next(iter(results.values()))) - 1,
            "seeds": sorted({s for _, s in results}),
            "sources": [str(x) for x in args.merge],
            "note": args.note,
        }
        order = {a: i for i, a in enumerate(ARMS)}
        results = dict(sorted(results.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], len(order)))))
        write_outputs(results, meta, Path(args.out))
        print((Path(args.out) / "compare.md").read_text())
        return 0
    from pipeline.envs import with_defaults

    base = with_defaults(expand(args.params))  # a preset's values over the defaults, every key written out
    if args.epochs is not None:
        base = _merge(base, {"train": {"epochs": args.epochs}})
    epochs = int((base.get("train") or {}).get("epochs", p.train.epochs))
    results: dict[tuple[str, int], list[dict]] = {}
    out = Path(args.out)
    meta = {"env": p.env.name, "model": p.policy.model, "epochs": epochs, "seeds": seeds, "note": args.note}
    cache = Path(tempfile.mkdtemp(prefix="erl-compare-cache-"))
    try:
        for seed in seeds:
            for arm in args.arms:
                print(f"[compare] {arm} seed {seed} ({epochs} epochs)", file=sys.stderr, flush=True)
                params = _merge(base, {**ARMS[arm], "seed": seed})
                keep = args.keep / f"{arm}-seed{seed}" if args.keep else None
                log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
                results[(arm, seed)] = run_arm(params, epochs, log, cache, keep)
                # after every run, so an interrupted comparison still leaves what it finished
                write_outputs(results, meta, out, partial=len(results) < args.seeds * len(args.arms))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print((out / "compare.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
