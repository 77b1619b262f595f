"""The house rules of docs/architecture.md, checked on the source: the rooms import only
downwards, and no module imports (even lazily, inside a function) one that imports it back."""

import ast
import subprocess
import sys
from pathlib import Path

import twofold

PACKAGE = Path(twofold.__file__).parent

# The layers of docs/architecture.md, lowest first. A module may import its own room and the
# rooms of lower layers; rooms that share a layer never import each other.
LAYERS = [
    {"_version", "errors"},
    {"files", "quiet", "local_datasets"},
    {"results"},
    {"model", "data"},
    {"hf"},
    {"train"},
    {"models"},
    {"merge", "finetune"},
    {"eval"},  # the floor the two evaluation rooms share: metrics, text, progress, the held-out functions
    {"eval.tasks", "eval.suites"},
    {"report"},
    {"demo"},
    {"commands"},
    {"cli"},
    {"__main__", "__init__"},
]
LAYER_OF = {room: depth for depth, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


SUBROOMS = {"eval": {"tasks", "suites"}}  # rooms inside a room, each with a layer of its own


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"  # the package itself: the public API
    if len(parts) > 2 and parts[2] in SUBROOMS.get(parts[1], ()):
        return f"{parts[1]}.{parts[2]}"
    return parts[1]


def imports_of(module: str) -> set[str]:
    """Every twofold module `module` imports, at the top or inside functions."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from twofold.eval import stdlib` imports the module twofold.eval.stdlib
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {name for name in names if name in MODULES and name != module}
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_room_has_a_layer():
    assert {room(m) for m in MODULES} <= set(LAYER_OF)


def test_rooms_import_only_downwards():
    upward = []
    for module, targets in GRAPH.items():
        for target in targets:
            mine, theirs = room(module), room(target)
            if mine != theirs and LAYER_OF[theirs] >= LAYER_OF[mine]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports against the layer order of docs/architecture.md:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    cycles, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_model_and_the_data_load_alone():
    probe = ("import sys, {m}; print(sorted({{n.split('.')[1] for n in sys.modules "
             "if n.startswith('twofold.')}}))")
    for module, forbidden in (("twofold.model", {"hf", "train", "data"}), ("twofold.data", {"model", "train"})):
        out = subprocess.run([sys.executable, "-c", probe.format(m=module)], capture_output=True, text=True,
                             check=True).stdout
        assert not forbidden & set(eval(out)), f"importing {module} loads {forbidden & set(eval(out))}"
