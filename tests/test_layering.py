"""The floors of the house: data flows one way, and no module imports one of a higher layer.

Every module of the package is imported in a fresh interpreter that records each
import statement as it runs (cached or not), so the test sees the imports that
really happen; the source is also read, so that imports deferred into functions
are held to the same table without having to call them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.util import resolve_name
from pathlib import Path

import pytest

import diamond_cutter

#: The layers, lowest first: a module may import its own layer and those below, never above.
LAYERS = {
    "ground": {"errors", "devices", "small", "download", "progress", "heap", "version", "html", "executors",
               "store", "capture", "images", "targets", "render", "layers", "model", "zoo"},
    "analysis": {"attribution", "blocks", "featureviz", "atlas", "transfer", "lens", "callbacks"},
    "presentation": {"report", "visuallog"},
    "top": {"commands", "cli", "__init__", "__main__"},
}
RANK = {name: rank for rank, names in enumerate(LAYERS.values()) for name in names}
LAYER_NAMES = list(LAYERS)

#: Imports every module of the package, recording (importer, imported) for each import statement run.
RECORDER = r"""
import builtins, importlib, importlib.util, json, pkgutil, sys, types

edges = set()
plain_import = builtins.__import__

def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    module = plain_import(name, globals, locals, fromlist, level)
    importer = (globals or {}).get("__name__", "")
    if importer.split(".")[0] == "diamond_cutter":
        target = importlib.util.resolve_name("." * level + name, globals["__package__"]) if level else name
        # "from package import module" imports that module; any other name lives in the target itself
        found = [getattr(module, n).__name__ if isinstance(getattr(module, n, None), types.ModuleType) else target
                 for n in fromlist or ()] or [target]
        edges.update((importer, t) for t in found if t.split(".")[0] == "diamond_cutter")
    return module

builtins.__import__ = recording_import
spec = importlib.util.find_spec("diamond_cutter")
found = pkgutil.walk_packages(spec.submodule_search_locations, "diamond_cutter.")
modules = ["diamond_cutter"] + [m.name for m in found]
for name in modules:
    importlib.import_module(name)
builtins.__import__ = plain_import
print(json.dumps({"modules": modules, "edges": sorted(edges)}))
"""


def layer_of(module: str) -> str:
    """The layer of ``diamond_cutter.<part>...`` from its first part (the package root is the top)."""
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else "__init__"
    assert part in RANK, f"{module} is in no layer: add {part!r} to LAYERS in {Path(__file__).name}"
    return LAYER_NAMES[RANK[part]]


def upward(importer: str, imported: str) -> bool:
    return LAYER_NAMES.index(layer_of(imported)) > LAYER_NAMES.index(layer_of(importer))


@pytest.fixture(scope="module")
def recorded() -> dict[str, list]:
    done = subprocess.run([sys.executable, "-c", RECORDER], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_module_imports_in_a_fresh_interpreter_and_has_a_layer(recorded):
    assert len(recorded["modules"]) > 40
    for module in recorded["modules"]:
        layer_of(module)


def test_no_import_runs_up_a_layer(recorded):
    up = [f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})" for a, b in recorded["edges"] if upward(a, b)]
    assert not up, "\n".join(up)


def test_the_html_and_version_modules_are_leaves(recorded):
    for leaf in ("diamond_cutter.html", "diamond_cutter.version"):
        assert not [b for a, b in recorded["edges"] if a == leaf and b != leaf], f"{leaf} imports Diamond Cutter"


def package_sources() -> list[Path]:
    return sorted(Path(diamond_cutter.__file__).parent.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = ["diamond_cutter", *path.relative_to(Path(diamond_cutter.__file__).parent).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, tree: ast.Module) -> Iterator[str]:
    """Every module an import statement of ``path`` names, wherever the statement stands."""
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module or ""
            yield from ([f"{base}.{alias.name}" for alias in node.names] if node.module is None else [base])


def deferred_imports(
    tree: ast.Module,
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, ast.Import | ast.ImportFrom]]:
    """(function, import) for every import statement inside a function body."""
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from ((fn, node) for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom)))


def test_imports_in_the_source_respect_the_layers_too():
    """Imports that run only when a function is called are held to the same table."""
    up = []
    for path in package_sources():
        importer = module_name(path)
        names = imported_names(path, ast.parse(path.read_text(encoding="utf-8")))
        up += [f"{importer} imports {n}" for n in names if n.split(".")[0] == "diamond_cutter" and upward(importer, n)]
    assert not up, "\n".join(up)


def test_only_slow_or_optional_third_party_imports_are_deferred_and_say_why():
    """A function-level import of Diamond Cutter would hide an arrow between floors; one of a
    third-party library is allowed when it is slow or optional, and a comment says so."""
    faults = []
    for path in package_sources():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for fn, node in deferred_imports(ast.parse(source)):
            where = f"{path.name}:{node.lineno} in {fn.name}()"
            if any(n.split(".")[0] == "diamond_cutter" for n in imported_names(path, ast.Module([node], []))):
                faults.append(f"{where} imports Diamond Cutter: import it at the top of the file")
            elif not any("#" in line for line in lines[fn.lineno : node.lineno]):
                faults.append(f"{where} defers an import without a comment saying why")
    assert not faults, "\n".join(faults)
