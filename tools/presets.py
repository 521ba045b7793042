"""`erl preset NAME`: write params.yaml for a preset of presets/ (or any params file), then dvc.yaml.

A preset names only what it changes from the defaults (`extends: other` builds on another preset); DVC tracks
the values of params.yaml itself, so the preset is expanded there: every key is written, with the values of the
defaults, the presets it extends and the preset itself, in params.yaml's own layout and comments (a key the preset
sets takes the preset's comment when it has one). `erl preset default` writes the defaults back.

  erl preset --list           # the presets and what each is for
  erl preset hidden           # params.yaml <- defaults + presets/hidden.yaml, and dvc.yaml for it
  erl preset paper-sokoban    # <- defaults + presets/paper.yaml + presets/paper-sokoban.yaml
  erl preset default          # the defaults
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from pipeline import graph
from pipeline.config import Params, ParamsError, expand, load_params, preset_layers

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ROOT / "presets"
HEADER = (
    "# Every hyperparameter of a run, grouped by stage. Validated on load (pipeline/config.py documents each key);\n"
    "# unknown keys, wrong types and out-of-range values stop a stage before it writes anything.\n"
    "# After changing train.epochs run `erl dvc-yaml` (dvc.yaml is generated from this file).\n"
)


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()
    y.width, y.preserve_quotes = 4096, True
    y.indent(mapping=2, sequence=4, offset=2)

    def null(rep, _):
        return rep.represent_scalar("tag:yaml.org,2002:null", "null")

    def real(rep, value: float):  # 1e-06 is a string to a YAML 1.1 reader (PyYAML, DVC): write 1.0e-06
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            text = text.replace("e", ".0e", 1)
        return rep.represent_scalar("tag:yaml.org,2002:float", text)

    y.representer.add_representer(type(None), null)
    y.representer.add_representer(float, real)
    return y


def _same(a, b) -> bool:
    """Equal as parameter values (True is not 1; a list equals a sequence of the same values)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, z) for x, z in zip(a, b))
    return isinstance(a, bool) == isinstance(b, bool) and (a is None) == (b is None) and a == b


def _fill(node, values: dict) -> None:
    """Set every value of ``node`` (a mapping of the template) to ``values``, keeping its layout and comments."""
    for k in [k for k in node if k not in values]:
        del node[k]
    for k, v in values.items():
        if isinstance(v, dict) and isinstance(node.get(k), dict):
            _fill(node[k], v)
        elif k not in node or not _same(node[k], v):
            node[k] = v


COMMENT_COLUMN = 26  # where params.yaml's end-of-line comments start (further right after a longer value)


def align(text: str) -> str:
    """Every end-of-line comment at COMMENT_COLUMN, or one space after a value that reaches past it, so that
    writing a longer value and then the shorter one again gives back the same text."""
    out = []
    for line in text.split("\n"):
        quote, cut = None, None
        for i, ch in enumerate(line):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "#" and i and line[i - 1] == " " and line[:i].strip():
                cut = i
                break
        if cut is not None:
            content = line[:cut].rstrip()
            line = content.ljust(COMMENT_COLUMN - 1) + " " + line[cut:]
        out.append(line)
    return "\n".join(out)


def render(preset: Path | None, template: str) -> str:
    """params.yaml's text for ``preset`` (None: the defaults), in the layout and comments of ``template``."""
    y = _yaml()
    doc = y.load(template)
    from pipeline.envs import with_defaults

    _fill(doc, with_defaults(expand(preset) if preset is not None else Params().model_dump(mode="json")))
    doc.ca.comment = None
    out = io.StringIO()
    y.dump(doc, out)
    head = HEADER
    if preset is not None:
        chain = " + ".join(
            p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(p) for p, _ in preset_layers(preset)
        )
        head += f"# Preset: {chain}, over the defaults (written by `erl preset`; `erl preset default` restores them).\n"
    return head + "\n" + align(out.getvalue().lstrip("\n"))


def find(name: str) -> Path:
    """presets/<name>.yaml, or ``name`` as a path."""
    for path in (PRESETS / f"{name}.yaml", PRESETS / name, Path(name)):
        if path.is_file():
            return path
    known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
    raise ParamsError(f"no preset {name!r} (presets/: {known}; or give a file)")


def describe() -> str:
    lines = ["default        the defaults (params.yaml as committed)"]
    for p in sorted(PRESETS.glob("*.yaml")):
        first = next((ln[2:].strip() for ln in p.read_text().splitlines() if ln.startswith("# ")), "")
        lines.append(f"{p.stem:<14} {first}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="erl preset",
        description=(__doc__ or "").split("\n\n")[0],
        epilog=describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("name", nargs="?", help="a preset of presets/ (without .yaml), 'default', or a params file")
    ap.add_argument("--list", action="store_true", help="list the presets")
    ap.add_argument("--out", default="params.yaml", help="the file to write (default: params.yaml)")
    ap.add_argument("--no-dvc-yaml", action="store_true", help="leave dvc.yaml as it is")
    args = ap.parse_args(argv)
    if args.list or not args.name:
        print(describe())
        return 0 if args.list else 2
    out = Path(args.out)
    try:
        preset = None if args.name == "default" else find(args.name)
        params = load_params(preset) if preset is not None else None
        template = out.read_text() if out.is_file() else (ROOT / "params.yaml").read_text()
        text = render(preset, template)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.write_text(text)
    params = load_params(out)
    print(f"wrote {out} for {'the defaults' if preset is None else preset}")
    if not args.no_dvc_yaml:
        Path("dvc.yaml").write_text(graph.render(params))
        print(f"wrote dvc.yaml for {graph.shape(params)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
