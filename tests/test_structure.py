"""Every notebook follows the house style (shared/STYLE.md) and is committed clean."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAME = re.compile(r"^\d\d_[a-z0-9]+(_[a-z0-9]+)+\.ipynb$")


def test_there_are_notebooks():
    assert any(p.name.startswith("10_") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_style(path):
    assert NAME.match(path.name), f"{path.name}: name must be NN_verb_object.ipynb"
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "opening markdown with an H1 title"
    for part in ("**What you'll build", "**What you'll learn", "**Prerequisites", "**Time", "**Teaches"):
        assert part in first.source, f"opening cell lacks {part}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    assert "profile()" in code[0].source, "the parameters cell reads the run profile"
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "outputs must be stripped"
        assert not re.search(r"^\s*[!%]pip", cell.source, re.M), "no !pip in notebooks"
        assert "getpass" not in cell.source
        assert not re.search(r"['\"](/work|/home|/root|/tmp|C:\\\\)", cell.source), "no absolute paths"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"^## 1\. ", markdown, re.M), "numbered steps"
    for heading in ("## Recap", "## The recipe in one cell", "## Exercises", "## Next"):
        assert heading in markdown, f"missing {heading}"
    saves = "\n".join(c.source for c in code)
    assert "save_results(" in saves or "save_notebook(" in saves, "headline metrics go to data/results"
    solution = ROOT / "notebooks" / "solutions" / (path.stem + ".py")
    assert solution.exists(), f"exercise solutions missing: {solution.relative_to(ROOT)}"


# ------------------------------------------------------------------------- the package's floors


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The cookbook modules ``path`` imports, at module level and inside functions alike."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cookbook"):
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("cookbook")]
        for name in names:
            while name and name not in known:  # `from cookbook import x` names a module or a function
                name = name.rpartition(".")[0]
            if name and name != "cookbook":
                out.add(name)
    return out


def _import_graph():
    import networkx as nx

    paths = {_module_name(p): p for p in sorted((ROOT / "cookbook").rglob("*.py"))}
    graph = nx.DiGraph()
    for name, path in paths.items():
        graph.add_node(name)
        for target in _imports(path, set(paths)):
            if target != name and not name.startswith(target + "."):  # a package's own __init__
                graph.add_edge(name, target)
    return graph


def test_no_import_circle_in_the_package():
    import networkx as nx

    cycles = list(nx.simple_cycles(_import_graph()))
    assert not cycles, f"import circles: {cycles[:3]}"


def test_technique_modules_never_import_the_recipes():
    graph = _import_graph()
    above = {n for n in graph if n.startswith("cookbook.recipes")} | {"cookbook.compare", "cookbook.cli",
                                                                        "cookbook.workshop"}
    for name in graph:
        if name in above or name.startswith("cookbook.bench"):
            continue
        bad = sorted(t for t in graph.successors(name) if t.startswith("cookbook.recipes"))
        assert not bad, f"{name} imports {bad}: technique modules are building blocks below the recipes"


def test_one_name_per_technique_from_recipe_to_notebook():
    from cookbook import recipes

    for name, recipe in recipes.RECIPES.items():
        assert (ROOT / "notebooks" / f"{recipe.notebook}.ipynb").exists(), recipe.notebook
        module = ROOT / "cookbook" / f"{name}.py"
        package = ROOT / "cookbook" / name
        if name in ("promptagator", "customir"):  # built from querygen and negatives (notebooks 20, 21)
            continue
        assert module.exists() or package.is_dir(), f"technique {name!r} has no module cookbook/{name}"
        title = nbformat.read(ROOT / "notebooks" / f"{recipe.notebook}.ipynb", as_version=4).cells[0].source
        assert name in title.splitlines()[0].lower(), f"{recipe.notebook}'s title does not name {name!r}"
        saves = re.findall(r"save_recipe\(\s*\"(\w+)\"", "\n".join(
            c.source for c in nbformat.read(ROOT / "notebooks" / f"{recipe.notebook}.ipynb", as_version=4).cells))
        assert saves == [name], f"{recipe.notebook} saves its model as {saves}, not {name!r}"
