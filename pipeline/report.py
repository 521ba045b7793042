"""The run report: per-epoch history (CSV for `dvc plots`), final metrics, PNG plots, and a Markdown and
an HTML page (plots embedded). Reads only metrics JSON and Parquet artifacts; no torch."""

from __future__ import annotations

import base64
import csv
import html
import json
from collections import defaultdict
from pathlib import Path

COLUMNS = [
    "epoch",
    "eval_success",
    "eval_reflect_success",
    "eval_two_tries_success",
    "eval_reward",
    "eval_turns",
    "eval_tool_calls",
    "eval_kl",
    "train_pre_success",
    "train_post_success",
    "reflections",
    "reflections_tagged",
    "reflections_with_note",
    "retry_success",
    "retry_control_success",
    "memory_adopted",
    "samples_first",
    "samples_reflection",
    "samples_second",
    "samples_distilled",
    "update_loss",
    "update_kl",
    "update_kl_first",
    "grad_norm",
]


def load_history(metrics_files: list[Path]) -> list[dict]:
    rows = []
    for f in metrics_files:
        if not Path(f).exists():
            raise FileNotFoundError(f"{f}: missing metrics (is dvc.yaml in step with params.yaml? run `erl dvc-yaml`)")
        m = json.loads(Path(f).read_text())
        rows.append({c: m.get(c) for c in COLUMNS})
    return sorted(rows, key=lambda r: r["epoch"])


def top_reflections(reflections: list[list[dict]], samples: list[list[dict]], k: int = 10) -> list[dict]:
    """Reflections ranked by the total advantage of the samples they produced (reflection, second, distilled);
    ``reflections`` and ``samples``: the rows of each epoch's tables."""
    total: dict[str, float] = defaultdict(float)
    text: dict[str, str] = {}
    for refl, smp in zip(reflections, samples):
        for r in refl:
            text[r["reflection_id"]] = r["reflection"]
        for s in smp:
            if s["reflection_id"]:
                total[s["reflection_id"]] += s["advantage"]
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [{"reflection_id": rid, "total_advantage": adv, "reflection": text.get(rid, "")} for rid, adv in ranked]


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def _series(rows, key):
    pts = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on these machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def outside_legend(ax, ncol: int = 2) -> None:
    """The legend under the axes, where it cannot cover a curve."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, fontsize=8, frameon=False)


def plot_success(rows, path: Path, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for key, label, style in [
        ("eval_success", "held-out (first attempt)", "-"),
        ("train_pre_success", "training, before reflection", "-"),
        ("train_post_success", "training, after reflection", "-"),
        ("retry_success", "failed tasks: retry with reflection", "--"),
        ("retry_control_success", "failed tasks: plain retry under s0", ":"),
        ("eval_reflect_success", "held-out, one more attempt after reflection", "-."),
        ("eval_two_tries_success", "held-out, best of two plain attempts", "-."),
    ]:
        x, y = _series(rows, key)
        if x:
            ax.plot(x, y, style, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    outside_legend(ax)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_training(rows, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, keys, ylabel in [
        (
            axes[0],
            [
                ("reflections", "generated"),
                ("reflections_with_note", "carrying the feedback's note"),
                ("memory_adopted", "adopted into memory"),
            ],
            "reflections",
        ),
        (
            axes[1],
            [("eval_kl", "KL(policy || epoch 0), held-out replies"), ("update_kl", "k3 KL at last update step")],
            "KL per token",
        ),
        (axes[2], [("update_loss", "loss per step")], "loss"),
    ]:
        for key, label in keys:
            x, y = _series(rows, key)
            if x:
                ax.plot(x, y, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        outside_legend(ax, ncol=1)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown_table(rows, keys) -> str:
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(out)


TABLE_KEYS = [
    "epoch",
    "eval_success",
    "train_pre_success",
    "train_post_success",
    "retry_success",
    "retry_control_success",
    "reflections",
    "reflections_with_note",
    "memory_adopted",
    "update_loss",
    "eval_kl",
]


def write_report(rows: list[dict], out_dir: Path, run: dict, top_reflections: list[dict]) -> dict:
    """Writes history.csv, metrics.json, success.png, training.png, report.md, report.html under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "history.csv")
    final = rows[-1]
    summary = {k: v for k, v in final.items() if v is not None}
    summary["initial_eval_success"] = rows[0]["eval_success"]
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    title = f"{run['algorithm']} on {run['env']} (seed {run['seed']})"
    keys = TABLE_KEYS + (["eval_turns", "eval_tool_calls"] if any(r.get("eval_tool_calls") for r in rows) else [])
    plot_success(rows, out_dir / "success.png", title)
    plot_training(rows, out_dir / "training.png")
    refl_md = (
        "\n".join(
            f"- `{r['reflection_id']}` (total advantage {r['total_advantage']:.2f}): {r['reflection'][:200]}"
            for r in top_reflections
        )
        or "- none"
    )
    md = (
        f"# ERL run report: {title}\n\n"
        f"Held-out first-attempt success: {_fmt(rows[0]['eval_success'])} before training, "
        f"{_fmt(final['eval_success'])} after epoch {final['epoch']}.\n\n"
        f"{markdown_table(rows, keys)}\n\n![success](success.png)\n\n![training](training.png)\n\n"
        f"## Reflections whose samples carried the largest total advantage\n\n{refl_md}\n"
    )
    (out_dir / "report.md").write_text(md)
    imgs = {n: base64.b64encode((out_dir / f"{n}.png").read_bytes()).decode() for n in ("success", "training")}
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    refl_html = (
        "".join(
            f"<li><code>{html.escape(r['reflection_id'])}</code> ({r['total_advantage']:.2f}): {html.escape(r['reflection'][:300])}</li>"
            for r in top_reflections
        )
        or "<li>none</li>"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>ERL report: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>ERL run report: {html.escape(title)}</h1>
<p>Held-out first-attempt success: {_fmt(rows[0]["eval_success"])} before training, {_fmt(final["eval_success"])} after epoch {final["epoch"]}.</p>
<table><tr>{head}</tr>{body}</table>
<h2>Success</h2><img src="data:image/png;base64,{imgs["success"]}">
<h2>Reflections, KL and loss</h2><img src="data:image/png;base64,{imgs["training"]}">
<h2>Reflections whose samples carried the largest total advantage</h2><ol>{refl_html}</ol>
</body></html>"""
    (out_dir / "report.html").write_text(page)
    return summary
