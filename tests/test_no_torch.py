"""The model-free stages and the table logic must not import torch or transformers (they run in seconds on
any machine and DVC re-runs them often)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = [
    "stages.validate",
    "stages.feedback",
    "stages.consolidate",
    "stages.report",
    "pipeline.erl",
    "pipeline.erl.tasks",
    "pipeline.erl.feedback",
    "pipeline.erl.consolidate",
    "pipeline.metrics",
    "pipeline.report",
    "pipeline.graph",
    "tools.dvcgen",
]

# Imports the modules one by one in a fresh interpreter and reports, per module, which heavy packages were
# loaded once it was imported (so a failure names the module that pulled them in).
PROBE = """
import importlib, json, sys
heavy = ("torch", "transformers")
out = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    out[name] = sorted(h for h in heavy if h in sys.modules)
print(json.dumps(out))
"""


def test_light_modules_import_no_torch():
    proc = subprocess.run([sys.executable, "-c", PROBE, *MODULES], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(loaded) == MODULES
    culprits = {m: heavy for m, heavy in loaded.items() if heavy}
    assert not culprits, f"heavy packages loaded after importing: {culprits}"


def test_graph_render_imports_no_torch():
    """render() walks every stage's imports and reads its KEYS: that must stay torch-free too."""
    code = (
        "import sys; from pipeline import graph; from pipeline.config import Params; graph.render(Params()); "
        "print(sorted(h for h in ('torch', 'transformers') if h in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
