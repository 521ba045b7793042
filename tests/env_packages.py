"""The example environment package (examples/codebreaker) installed as a user would install theirs: built from a
copy of its source (so no build files land in the repository) into a directory of its own, put on the path of this
process and of every subprocess the tests start."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "codebreaker"


def install_example(dst: Path) -> Path:
    """pip-install examples/codebreaker into ``dst/site``; that directory (add it to PYTHONPATH)."""
    src, site = dst / "src", dst / "site"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", site, src],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


@contextlib.contextmanager
def on_path(site: Path):
    """``site`` importable here and in subprocesses while the block runs (entry points are read from sys.path)."""
    from pipeline import codedeps, envs

    old = os.environ.get("PYTHONPATH")
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), old]))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
        for cached in (envs.find, codedeps.stage_modules, codedeps._package_root):
            cached.cache_clear()
