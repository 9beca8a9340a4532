"""The layer rule of CONTRIBUTING.md, checked on the source: imports only run downward, never in a
cycle, and no module imports another module's private names.

Every ``import`` / ``from ... import`` counts, at module level or inside a function: a lazy import
is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "latentspeech"

#: The layers, lowest first: each part (module or sub-package) of the package may import the parts of
#: lower layers only. The core's modules are ordered among themselves (errors → config → checkpoint).
ORDER: list[list[str]] = [
    ["version", "errors"], ["config"], ["checkpoint"],  # core
    ["text", "audio"],  # front ends
    ["data"],
    ["models"],
    ["train", "inference", "api"],
    ["eval", "server"],
    ["cli"],
    ["__main__", ""],  # the package itself (its lazy ``TTS``) and ``python -m latentspeech``
]
LAYERS: dict[str, int] = {name: i for i, names in enumerate(ORDER) for name in names}
#: Parts of one layer that may import each other (``api`` re-exports ``inference``); any other two parts of
#: one layer may not (train and inference never import each other).
TOGETHER = [{"inference", "api"}]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, source: str | None = None) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import of the latentspeech package in ``path``."""
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            subs = [n for n in names if is_module(f"{target}.{n}")]
            if subs:  # ``from . import api``, ``from latentspeech.models import codec``: sub-modules
                out.extend((f"{target}.{n}", [], node.lineno) for n in subs)
                names = [n for n in names if n not in subs]
                if not names:
                    continue
            out.append((target, names, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
    return [(t, n, line) for t, n, line in out if t == "latentspeech" or t.startswith("latentspeech.")]


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def part(module: str) -> str:
    """``latentspeech.models.codec.model`` → ``models``; the package itself → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def layer_violations(path: Path, source: str | None = None) -> list[str]:
    src_part = part(module_name(path))
    bad = []
    for target, names, line in imports(path, source):
        dst_part = part(target)
        if dst_part == src_part and is_module(target):
            continue
        where = f"{path.relative_to(ROOT)}:{line}"
        if not is_module(target):
            bad.append(f"{where}: imports {target}, which does not exist")
        elif dst_part not in LAYERS:
            bad.append(f"{where}: imports {target}, a part of no layer (add it to LAYERS)")
        elif LAYERS[dst_part] > LAYERS[src_part]:
            bad.append(f"{where}: {src_part or 'latentspeech'} (layer {LAYERS[src_part]}) imports {target} "
                       f"(layer {LAYERS[dst_part]})")
        elif any(src_part in group and dst_part in group for group in TOGETHER):
            pass  # the same group (inference and api)
        elif LAYERS[dst_part] == LAYERS[src_part]:
            bad.append(f"{where}: {src_part} imports {target}, beside it in layer {LAYERS[src_part]}")
    return bad


def private_violations(path: Path, source: str | None = None) -> list[str]:
    here = module_name(path)
    bad = []
    for target, names, line in imports(path, source):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        private += [p for p in target.split(".") if p.startswith("_") and not p.startswith("__")]
        if private and target != here:
            bad.append(f"{path.relative_to(ROOT)}:{line}: imports private {', '.join(private)} from {target}")
    return bad


def module_cycles() -> list[list[str]]:
    """Cycles among the package's modules (each module → the modules it imports)."""
    graph: dict[str, set[str]] = {}
    known = {module_name(p) for p in sources()}
    for p in sources():
        deps = set()
        for target, names, _ in imports(p):
            for name in names or [""]:
                sub = f"{target}.{name}" if name else target
                deps.add(sub if sub in known else target)
        graph[module_name(p)] = {d for d in deps if d in known and d != module_name(p)}
    # a package's __init__ re-exporting its own sub-modules is not a cycle with them
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not m.startswith(d + ".")}
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return cycles


def test_imports_only_run_downward():
    bad = [v for p in sources() for v in layer_violations(p)]
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = module_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_modules():
    shells = sorted((ROOT / "bench").glob("*.py")) + sorted((ROOT / "recipes").rglob("*.py")) + \
        sorted((ROOT / "tools").glob("*.py"))
    bad = [v for p in sources() + shells for v in private_violations(p)]
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_every_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file()))}
    parts = {"" if x == "__init__" else x for x in parts}
    assert parts <= set(LAYERS), f"parts of latentspeech with no layer: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize("where, code, needle", [
    ("models/valle/model.py", "from ...api import SpeechBackend\n", "imports latentspeech.api"),
    ("models/aligner.py", "from ..train.common import fit_steps\n", "imports latentspeech.train.common"),
    ("data/collate.py", "from ..models.latentlm import LatentLM\n", "imports latentspeech.models.latentlm"),
    ("inference/tts.py", "from ..train.latentlm import train_latentlm\n", "imports latentspeech.train.latentlm, beside it"),
    ("train/latentlm.py", "def f():\n    from ..inference import TTS\n", "imports latentspeech.inference, beside it"),
    ("checkpoint.py", "from . import api\n", "imports latentspeech.api"),
    ("text/frontend.py", "import latentspeech.eval.wer\n", "imports latentspeech.eval.wer"),
])
def test_the_check_catches_an_upward_import(where, code, needle):
    """The check fails on the kinds of imports it exists to stop (lazy ones included)."""
    path = PACKAGE / where
    bad = layer_violations(path, path.read_text(encoding="utf-8") + "\n" + code)
    assert any(needle in b for b in bad), bad


def test_the_check_catches_a_private_import():
    path = PACKAGE / "cli" / "align.py"
    bad = private_violations(path, path.read_text(encoding="utf-8") + "\nfrom .train import _pairs\n")
    assert any("private _pairs from latentspeech.cli.train" in b for b in bad), bad


def test_the_check_catches_a_cycle(tmp_path, monkeypatch):
    """Two modules of one layer importing each other form a cycle the check reports."""
    pkg = tmp_path / "latentspeech" / "data"
    pkg.mkdir(parents=True)
    (tmp_path / "latentspeech" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from .a import y\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "latentspeech")
    cycles = module_cycles()
    assert any(c[0] == "latentspeech.data.a" and "latentspeech.data.b" in c for c in cycles), cycles
