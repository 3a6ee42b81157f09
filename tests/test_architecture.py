"""The package's shape: imports only point down through declared layers, with no cycle, and the
agents hold no copied block. A change that breaks the shape fails here, not in a review."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "visgoal"

# Top to bottom: a module may import its own layer's modules or a lower layer's, never a higher one.
# (`visgoal/__init__.py` only picks the headless GL backend and is left out.)
LAYERS = [
    ["visgoal.__main__"],
    ["visgoal.cli"],
    ["visgoal.stages", "visgoal.bench", "visgoal.dvcfile"],
    ["visgoal.report"],
    ["visgoal.agents.workspace", "visgoal.demos"],     # the training loop; demonstrations, recorded by a teacher or a policy
    ["visgoal.agents"],                                   # the factory: AGENTS and load_policy
    ["visgoal.agents.tdm", "visgoal.agents.crl", "visgoal.agents.gcbc"],
    ["visgoal.agents.rig"],
    ["visgoal.agents.td3"],
    ["visgoal.agents.base", "visgoal.agents.actor", "visgoal.agents.encoders", "visgoal.teachers",
     "visgoal.agents.demonstrations"],   # the interface, the shared parts, the scripted teachers, learning from demonstrations
    ["visgoal.agents.policy", "visgoal.agents.views"],
    ["visgoal.agents.replay", "visgoal.agents.networks"],
    ["visgoal.evaluation"],
    ["visgoal.vae"],
    ["visgoal.data", "visgoal.envs"],
    ["visgoal.tracking", "visgoal.figures", "visgoal.paths"],
    ["visgoal.config", "visgoal.device", "visgoal.files", "visgoal.gl", "visgoal.processes"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The project module an import names (`from visgoal import paths` names visgoal.paths)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every visgoal module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.startswith("visgoal") and (target := resolve(name, known)):
                found.add(target)
    return found - {module_name(path)} if path.is_relative_to(PACKAGE) else found


def layer_of(module: str) -> int:
    """The index of the most specific layer entry that names `module` or a package holding it."""
    best, depth = None, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = i, prefix.count(".")
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) for name, path in known.items() if name != "visgoal"}


def test_every_import_points_down_or_across():
    upward = [f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
              for module, targets in import_graph().items() for target in targets
              if target != "visgoal" and layer_of(target) < layer_of(module)]
    assert not upward, "\n".join(upward)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The walk finds function-level imports too: evaluation importing an agent is caught."""
    source = tmp_path / "module.py"
    source.write_text("def f():\n    from visgoal.agents.tdm import argmax_action\n")
    targets = imports(source, modules())
    assert targets == {"visgoal.agents.tdm"} and layer_of("visgoal.agents.tdm") < layer_of("visgoal.evaluation")


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def copied_blocks(files: list[Path], size: int = 6) -> list[tuple[str, str]]:
    """Pairs of places sharing `size` consecutive identical non-blank lines (comments and
    docstring-free code alike; leading whitespace ignored). Import statements are left out: two
    modules that import the same things have copied nothing."""
    seen: dict[tuple[str, ...], str] = {}
    pairs = []
    for path in files:
        lines = [(i + 1, line.strip()) for i, line in enumerate(path.read_text().splitlines())
                 if line.strip() and not line.startswith(("import ", "from "))]
        for k in range(len(lines) - size + 1):
            block = tuple(text for _, text in lines[k:k + size])
            where = f"{path.name}:{lines[k][0]}"
            if block in seen:
                pairs.append((seen[block], where))
            else:
                seen[block] = where
    return pairs


def test_agents_hold_no_block_of_six_copied_lines():
    assert not copied_blocks(sorted((PACKAGE / "agents").glob("*.py")))


def test_the_copy_check_sees_a_copied_block(tmp_path):
    block = "\n".join(f"x{i} = {i}" for i in range(6))
    (tmp_path / "a.py").write_text(block + "\n")
    (tmp_path / "b.py").write_text("y = 0\n" + block + "\n")
    assert len(copied_blocks([tmp_path / "a.py", tmp_path / "b.py"])) == 1
    assert not copied_blocks([tmp_path / "a.py"])


def test_every_method_is_one_factory_line_with_a_params_section_and_a_file():
    from visgoal.agents import AGENTS
    from visgoal.config import load_params

    params = load_params()
    for method, cls in AGENTS.items():
        assert cls.name == method and cls.view in ("state", "latent")
        assert (PACKAGE / "agents" / f"{method}.py").is_file()
        assert method in params.as_dict(), f"params.yaml has no `{method}` section"
        assert "section" in sys.modules[cls.__module__].__doc__, f"{method}: cite the paper section it implements"
    assert set(params["methods"]) <= set(AGENTS)
