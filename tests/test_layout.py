"""The package's layout as a specification (issue 19): one subpackage per stage, each importing only
the stages below it, no import cycles, imports at the top of modules (optional extras aside),
modules of at most 300 lines and functions of at most 60."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vscale"
STAGES = {
    "errors": 0,
    "cli_values": 0,
    "lazy": 0,
    "runs": 1,
    "hub": 1,
    "console": 1,
    "model": 2,
    "data": 2,
    "diagnostics": 3,
    "train": 4,
    "eval": 5,
    "launch": 5,
    "prepare": 6,
    "dashboard": 6,
}
"""Each top-level module or subpackage of vscale, by layer: a module may import its own stage and lower layers only."""
OPTIONAL = ("lm_eval",)
"""Optional extras, imported inside the functions that use them."""


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        out[name] = path
    return out


def imports(path: Path) -> list[ast.stmt]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]


def vscale_targets(node: ast.stmt, known: dict) -> set[str]:
    names = (
        [a.name for a in node.names]
        if isinstance(node, ast.Import)
        else [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    )
    return {n for n in names if n in known}


def stage(module: str) -> str:
    return module.split(".")[1] if "." in module else "vscale"


def test_every_stage_is_known():
    assert {stage(m) for m in modules()} - {"vscale"} == set(STAGES)


def test_no_module_imports_a_higher_or_sideways_stage():
    known = modules()
    wrong = [
        (m, t)
        for m, path in known.items()
        if m != "vscale"
        for node in imports(path)
        for t in vscale_targets(node, known)
        if stage(t) != stage(m) and (stage(t) == "vscale" or STAGES[stage(t)] >= STAGES[stage(m)])
    ]
    assert wrong == []


def test_the_import_graph_has_no_cycle():
    known = modules()
    edges = {
        m: {t for node in imports(p) for t in vscale_targets(node, known) if not m.startswith(t + ".")}
        for m, p in known.items()
    }
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for t in edges[m]:
            if state.get(t) == "open":
                cycles.append(path[path.index(t) :] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in edges:
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_imports_are_at_the_top_of_modules_except_optional_extras():
    inner = [
        f"{path.relative_to(PACKAGE.parent)}:{n.lineno}"
        for path in modules().values()
        for n in imports(path)
        if n.col_offset > 0 and not (isinstance(n, ast.ImportFrom) and n.module.split(".")[0] in OPTIONAL)
    ]
    assert inner == []


@pytest.mark.parametrize("path", sorted(modules().values()), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_short(path):
    assert path.read_text().count("\n") <= 300
    long = [
        f"{n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60
    ]
    assert long == []


def test_the_launcher_and_prepare_start_without_lightning():
    """The package namespaces import on first use (vscale.lazy): the commands that only write files (sbatch
    scripts, token files) do not pay for Lightning's imports (~12 s of CPU here) before their first line."""
    heavy = "{m.split('.')[0] for m in sys.modules} & {'lightning', 'torchmetrics', 'wandb'}"
    done = subprocess.run(
        [sys.executable, "-c", f"import sys, vscale.launch.sweep, vscale.data.prepare; print(*sorted({heavy}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == []


def test_eval_and_launch_do_not_import_train():
    """Issue 32: evaluation and the launcher read runs through vscale.runs and checkpoints through vscale.model."""
    known = modules()
    wrong = [
        (m, t)
        for m, path in known.items()
        if stage(m) in ("eval", "launch")
        for node in imports(path)
        for t in vscale_targets(node, known)
        if stage(t) == "train"
    ]
    assert wrong == []


def test_the_run_name_is_written_and_parsed_in_vscale_runs_identity_only():
    """`-seed` followed by a number's placeholder or pattern (an f-string part, a regex) only where the name is
    defined."""
    found = [
        f"{path.relative_to(PACKAGE)}:{n.lineno}"
        for m, path in modules().items()
        if m != "vscale.runs.identity"
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and re.search(r"-seed(\(|\\d|$)", n.value)
    ]
    assert found == []


def test_attention_arms_implement_the_arm_interface_not_each_other():
    """Issue 32: every arm, the plain softmax included, names `Arm` as its only base."""
    from vscale.model.interventions import ARMS, Arm

    assert {name: cls.__bases__ for name, cls in ARMS.items()} == {name: (Arm,) for name in ARMS}


MAX_PARAMETERS = 12
CLI_ENTRY_POINTS = {
    "vscale.data.module:PackedTextData.__init__": "LightningCLI makes its parameters train.py's data.* flags",
    "vscale.train.module:VScaleLM.__init__": "LightningCLI makes its parameters train.py's model.* flags",
}
"""Functions allowed more than MAX_PARAMETERS parameters, each with why."""


def functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of each function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield from functions(node, f"{prefix}{node.name}.")
        elif not isinstance(node, ast.Lambda):
            yield from functions(node, prefix)


def parameters(node: ast.FunctionDef) -> list[str]:
    """Positional, keyword-only, *args and **kwargs parameters, `self` and `cls` aside."""
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg) if p is not None]
    return [n for n in names if n not in ("self", "cls")]


def test_no_function_has_more_than_twelve_parameters_but_the_cli_entry_points():
    """Issue 32: related arguments travel together (a dataclass, an options object); only the signatures LightningCLI
    turns into flags list every flag."""
    many = {
        f"{m}:{name}": len(parameters(node))
        for m, path in modules().items()
        for name, node in functions(ast.parse(path.read_text()))
        if len(parameters(node)) > MAX_PARAMETERS
    }
    assert set(many) - set(CLI_ENTRY_POINTS) == set(), many
    assert set(CLI_ENTRY_POINTS) <= set(many), "an allowed entry point no longer needs its exception"


def source_name_tests(tree: ast.AST, names: tuple[str, ...]) -> list[ast.AST]:
    """Comparisons (`==`, `in`, ...) and match cases with a source name among their operands, tuples of them
    included."""

    def named(node: ast.AST) -> bool:
        elements = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return any(isinstance(e, ast.Constant) and e.value in names for e in elements)

    return [
        n
        for n in ast.walk(tree)
        if (isinstance(n, ast.Compare) and any(named(o) for o in (n.left, *n.comparators)))
        or (isinstance(n, ast.MatchValue) and named(n.value))
    ]


def test_the_source_of_the_data_is_picked_in_one_place():
    """Issue 32: which of the five sources a data config names (synthetic, prepared, files, hub, streaming) is
    decided by vscale.data.rows.pick_source alone, from the data fields; everything after asks the RowSource it
    returned, so no module compares a source's name."""
    from vscale.data import SOURCES

    assert sorted(SOURCES) == ["files", "hub", "prepared", "streaming", "synthetic"]
    found = [
        f"{path.relative_to(PACKAGE)}:{n.lineno}"
        for path in modules().values()
        for n in source_name_tests(ast.parse(path.read_text()), SOURCES)
    ]
    assert found == []
