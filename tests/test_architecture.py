"""The package's shape, checked on every `make test`: imports run one way and files stay small.

Layers, top to bottom (README, "Repository map"; docs/architecture.md):
    cli                      the command line; imported by nobody
    retrain                  the Prefect flow and what wraps `dvc repro`
    stages, ops              DVC stages; operations DVC does not run (ingest, promote)
    domain modules           catalogue, diffusion, synthetic, tracking, registry, serving, ...
    config and file helpers  config, artifacts, fsutil, locking, rawtable, logs, ...
A module may import from its own layer or below, never above; nothing imports cli; no stage imports
another stage; ops never import a stage and no stage imports ops; no module imports another module's
_private name; and there are no import cycles. Every import counts, including the lazy ones inside
functions. The files stages hand on are named in artifacts.py alone (Layout and its typed readers).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "landmark_lora"

BOTTOM = {"config", "artifacts", "fsutil", "locking", "rawtable", "logs", "env", "exitcodes", "labels", "events", "parallel"}
DOMAIN = {"catalogue", "caption_fit", "classifier", "metrics", "imaging", "tracking", "registry", "serving",
          "serving_model", "diffusion", "synthetic", "toyworld", "scoring", "validation", "plates",
          "composite", "readers"}
LAYERS = {**{m: 0 for m in BOTTOM}, **{m: 1 for m in DOMAIN}, "stages": 2, "ops": 2, "retrain": 3, "cli": 4}

# Files allowed over the size limits, and why (the README's repository map repeats these).
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
LONG_MODULES: dict[str, str] = {
    "landmark_lora.config": "the one typed tree of params.yaml: every key and its check in one place",
}
LONG_FUNCTIONS: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every landmark_lora import in the file, lazy ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("landmark_lora")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("landmark_lora"):
                found.append((target, [a.name for a in node.names]))
    return found


def _resolve(target: str, names: list[str], modules: dict[str, Path]) -> set[str]:
    """`from landmark_lora import fsutil` depends on landmark_lora.fsutil, not on the package."""
    subs = {f"{target}.{n}" for n in names if f"{target}.{n}" in modules}
    return subs or {target}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target, names in _imports(name, path):
            for dep in _resolve(target, names, modules):
                if dep != name and dep != "landmark_lora":
                    graph[name].add(dep)
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer():
    unplaced = sorted({_top(m) for m in _modules() if _top(m) and _top(m) not in LAYERS})
    assert not unplaced, (f"{unplaced}: give each a layer in tests/test_architecture.py (and the README's "
                          "repository map); see the layer list in that file's docstring")


def test_imports_run_one_way():
    wrong = [f"{m} (layer {LAYERS[_top(m)]}) imports {d} (layer {LAYERS[_top(d)]})"
             for m, deps in _graph().items() for d in deps
             if _top(m) in LAYERS and _top(d) in LAYERS and LAYERS[_top(d)] > LAYERS[_top(m)]]
    assert not wrong, "imports must run top-down:\n" + "\n".join(sorted(wrong))


def test_nothing_imports_cli_and_no_stage_imports_a_stage():
    wrong = []
    for m, deps in _graph().items():
        if _top(m) != "cli":  # the cli package's own modules (stages, registry, flows) are imported by its main
            wrong += [f"{m} imports {d}" for d in deps if _top(d) == "cli"]
        if _top(m) == "stages" and m != "landmark_lora.stages":
            wrong += [f"{m} imports stage {d}" for d in deps
                      if _top(d) == "stages" and d != "landmark_lora.stages" and d != m]
    assert not wrong, "\n".join(sorted(wrong))


def test_ops_and_stages_do_not_import_each_other():
    """Both sit in one layer and share only what lies below (scoring, registry, artifacts, ...)."""
    wrong = [f"{m} imports {d}" for m, deps in _graph().items() for d in deps
             if {_top(m), _top(d)} == {"ops", "stages"}]
    assert not wrong, "move what both need into a domain module:\n" + "\n".join(sorted(wrong))


# The files one stage hands on to another: spelled in artifacts.py only (Layout, typed readers).
HANDED_ON = ("metadata.jsonl", "train.json", "eval.json", "promotion.json", "rejections.csv", "retrain.md",
             "retrain.json", "retrain.html", "dvc-repro.log", "pytorch_lora_weights.safetensors",
             "token_embeddings.safetensors")
# A literal that is such a file name, or a path ending in one ("reports/eval.json", f"{dir}/eval.json").
_HANDED_ON_PATH = re.compile(r"(?:^|[/\\])(?:" + "|".join(map(re.escape, HANDED_ON)) + r")$")
# Where a name may be spelled besides artifacts.py, and why.
HANDED_ON_ELSEWHERE = {
    ("diffusion/lora_export.py", "pytorch_lora_weights.safetensors"): "diffusers' own LORA_WEIGHT_NAME_SAFE",
    ("stages/evaluate.py", "eval.json"): "the MLflow artifact path of the metrics (eval/eval.json), not a file here",
}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            ids.add(id(body[0].value))
    return ids


def handed_on_literals(source: str) -> list[tuple[int, str]]:
    """(line, literal) for each string literal in code, f-string pieces included, that names a handed-on
    file as a path; docstrings and prose that merely mention one ("see eval.json") do not count."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
            and _HANDED_ON_PATH.search(node.value.strip())]


def test_handed_on_files_are_named_only_in_artifacts():
    wrong = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel == "artifacts.py":
            continue
        for line, literal in handed_on_literals(path.read_text(encoding="utf-8")):
            name = _HANDED_ON_PATH.search(literal.strip()).group(0).lstrip("/\\")
            if (rel, name) not in HANDED_ON_ELSEWHERE:
                wrong.append(f"src/landmark_lora/{rel}:{line}: {literal!r}")
    assert not wrong, ("ask artifacts.Layout for these paths (layout.eval_json, layout.metadata(split), ...) and read "
                       "them with its typed readers:\n" + "\n".join(wrong))


def test_the_handed_on_check_bites():
    """A stage that builds the path itself is caught; a message that mentions the file is not."""
    caught = handed_on_literals('from pathlib import Path\nx = Path(reports) / "eval.json"\n'
                                'y = f"{reports}/promotion.json"\nz = Path("data/processed/train/metadata.jsonl")\n')
    assert [line for line, _ in caught] == [2, 3, 4]
    assert not handed_on_literals('"""Reads reports/eval.json."""\nmsg = "latest in rejections.csv"\n'
                                  'log.info("wrote %s", path)  # eval.json\n')


def test_no_private_names_cross_modules():
    modules = _modules()
    wrong = [f"{name} imports {n} from {target}"
             for name, path in modules.items() for target, names in _imports(name, path)
             for n in names if n.startswith("_") and target != name]
    assert not wrong, "use a public name (or move the helper where both can reach it):\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_modules_and_functions_stay_small():
    wrong = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES and name not in LONG_MODULES:
            wrong.append(f"{path.relative_to(PKG.parent)}: {lines} lines (limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                key = f"{name}.{node.name}"
                if length > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS:
                    wrong.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name}(): {length} lines "
                                 f"(limit {MAX_FUNCTION_LINES})")
    assert not wrong, "split these (or list them with a reason in LONG_MODULES/LONG_FUNCTIONS):\n" + "\n".join(wrong)


DUPLICATE_WINDOW = 6


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the lines that carry code: no blanks, comments,
    imports, signatures or docstrings."""
    text = path.read_text(encoding="utf-8")
    doc_lines: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            doc_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):  # signatures are boilerplate
            doc_lines.update(range(node.lineno, node.body[0].lineno))
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            doc_lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith(("#", "import ", "from ", "@")) or n in doc_lines or s in (")", "]", "}", "),", "],"):
            continue
        out.append((n, s))
    return out


def test_no_block_of_six_code_lines_is_repeated():
    seen: dict[tuple[str, ...], str] = {}
    repeats = []
    for _name, path in _modules().items():
        lines = _code_lines(path)
        last_hit = -DUPLICATE_WINDOW
        for i in range(len(lines) - DUPLICATE_WINDOW + 1):
            window = tuple(s for _, s in lines[i: i + DUPLICATE_WINDOW])
            where = f"{path.relative_to(PKG.parent)}:{lines[i][0]}"
            if window in seen and i - last_hit >= DUPLICATE_WINDOW:
                repeats.append(f"{where} repeats {seen[window]}")
                last_hit = i
            seen.setdefault(window, where)
    assert not repeats, "factor these into one function:\n" + "\n".join(repeats)
