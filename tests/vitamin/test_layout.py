"""The source layout: the standard library's `platform` stays reachable, and imports follow the layers.

The layers are the picture in docs/architecture.md (between `<!-- layers -->` markers), read here:
each line names a layer (a package, a module, or several, comma-separated), lowest last. A module
may import its own layer and the layers below it, never one above: the picture cannot drift from
the code.
"""

import ast
import platform
import re
import subprocess
import sys
from pathlib import Path

from testenv import REPO_DIR


def test_import_platform_is_the_standard_library():
    assert hasattr(platform, "python_version"), platform.__file__
    assert platform.__file__.startswith(sys.base_prefix) or "lib/python" in platform.__file__
    assert not platform.__file__.startswith(str(REPO_DIR / "platform"))


def test_platform_folder_is_not_a_package():
    assert not (REPO_DIR / "platform" / "__init__.py").exists()
    assert not (REPO_DIR / "platform" / "platform.py").exists()


def test_uuid_and_celery_import_cleanly():
    import uuid

    import celery

    assert uuid.uuid4().version == 4
    assert celery.__version__


def test_plain_libraries_never_import_django():
    for folder in ("datasets", "connectors"):
        for source in (REPO_DIR / folder).rglob("*.py"):
            text = source.read_text()
            assert "import django" not in text and "from django" not in text, source
    # and nothing they import does: the engine loads in a process without Django on its path
    probe = (
        "import sys, pkgutil, importlib, datasets, connectors\n"
        "for package in (datasets, connectors):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "assert not any(m.split('.')[0] == 'django' for m in sys.modules), sorted(sys.modules)\n"
        "assert 'datasets.query.gateway' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path[:0] = [{str(REPO_DIR)!r}]\n{probe}"], check=True)


def layers() -> list[tuple[str, ...]]:
    """The layers of the picture in docs/architecture.md, lowest first."""
    text = (REPO_DIR / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers -->\n```\n(.*?)```\n<!-- /layers -->", text, re.S)
    assert block, "docs/architecture.md has no layers picture"
    found = []
    for line in block.group(1).splitlines():
        names = re.match(r"\s*([a-z_.]+(?:, [a-z_.]+)*)(?:\s{2,}|$)", line)
        if names and not line.lstrip().startswith(("─", "-", "↑", "|")):
            found.append(tuple(names.group(1).split(", ")))
    return found[::-1]


def source_modules() -> dict[str, object]:
    """Every module of the project's code: dotted name → path (platform/ apps are top-level packages)."""
    modules = {}
    for root, prefix in ((REPO_DIR / "connectors", "connectors"), (REPO_DIR / "datasets", "datasets")):
        for path in root.rglob("*.py"):
            modules[".".join([prefix, *path.relative_to(root).with_suffix("").parts])] = path
    for path in (REPO_DIR / "platform").rglob("*.py"):
        parts = path.relative_to(REPO_DIR / "platform").with_suffix("").parts
        if "migrations" not in parts:
            modules[".".join(parts)] = path
    return {name.removesuffix(".__init__"): path for name, path in modules.items()}


def layer_of(module: str, table: list[tuple[str, ...]]) -> int | None:
    """The index of the layer that owns `module`: its longest prefix among the layers' names."""
    best, best_length = None, -1
    for index, names in enumerate(table):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_length:
                best, best_length = index, len(name)
    return best


def imported(path, *, type_checking: bool = True) -> set[str]:
    """Every module name `path` imports, at any depth (inside functions too); with `type_checking=False`,
    not those only imported for annotations (`if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    skipped = set()
    if not type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_module_has_a_layer():
    table = layers()
    assert len(table) >= 10
    missing = sorted(module for module in source_modules() if layer_of(module, table) is None)
    assert not missing, f"modules in no layer of docs/architecture.md: {missing}"


def test_imports_follow_the_layers():
    table = layers()
    modules = source_modules()
    upward = []
    for module, path in modules.items():
        own = layer_of(module, table)
        for name in imported(path):
            target = layer_of(name, table)
            if target is not None and target > own and name.split(".")[0] in {m.split(".")[0] for m in modules}:
                upward.append(f"{module} ({', '.join(table[own])}) imports {name} ({', '.join(table[target])})")
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def test_the_layer_check_catches_an_upward_import():
    table = layers()
    lowest_app, highest_app = layer_of("audit", table), layer_of("portal", table)
    assert lowest_app < highest_app
    assert (
        layer_of("datasets.query.gateway", table)
        > layer_of("datasets.spec", table)
        > layer_of("connectors.base", table)
    )
    assert layer_of("audit.service", table) > layer_of("datasets.query.gateway", table)


def test_no_module_imports_itself_back():
    """No import cycles between the project's modules, not even through an import inside a function."""
    modules = source_modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported(path, type_checking=False):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            for target in graph.get(current, ()):
                if target == goal:
                    return True
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return False

    cycles = sorted(f"{module} ↔ {target}" for module in graph for target in graph[module] if reaches(target, module))
    assert not cycles, cycles


def test_import_datasets_is_this_projects_library():
    """A PyPI package of the same name installed in this environment would shadow it (docs/architecture.md)."""
    import datasets

    assert Path(datasets.__file__).resolve().parent == REPO_DIR / "datasets"
    from datasets.spec import DatasetSpec

    assert DatasetSpec.from_document  # ours, not a namesake
