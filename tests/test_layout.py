"""The packages' shape: no import circle (lazy imports included), private Keras access in one module each, small files.

grasp_tf/ (the library) and train/ (the command-line tools) each have one ``_keras_internals``
module; every other module uses public APIs only. Every module there and in bench/ (the
benchmarks) stays under ~300 lines and opens with a docstring line stating its purpose. No
import circle joins any modules of grasp_tf/, train/, models/ and bench/.
"""
import ast
import importlib
import inspect
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("grasp_tf", "train")
CHECKED = (*PACKAGES, "bench")  # the line-count and docstring rules hold here too
GRAPHED = (*CHECKED, "models")  # no import circle among these


def modules(package: str = "grasp_tf") -> dict[str, str]:
    """Every module of ``package`` (a top-level folder of the repository) by dotted name -> file path."""
    out = {}
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ``GRAPHED`` it imports anywhere in its body (function-level and
    ``TYPE_CHECKING`` imports included: a circle of type-only imports is still a circle).

    ``from a import b`` points at ``a.b`` when that is a module, else at ``a``; a submodule's
    implicit import of its parent package is not an edge (as in import-linter / grimp).
    """
    mods = {name: path for package in GRAPHED for name, path in modules(package).items()}
    graph = {}
    for name, path in mods.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges.add(target if target in mods else base)
        graph[name] = {e for e in edges if e in mods and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_package_import_graph_has_no_circle():
    graph = import_graph()
    assert graph["grasp_tf.tfmot_compat"] >= {"grasp_tf.cloning", "grasp_tf.keys"}  # the graph sees imports
    assert "grasp_tf.tfmot_compat" in graph["grasp_tf.api"]  # ... including lazy ones inside functions
    assert "train.data.base" in graph["train.data.pipeline"] and "bench.study_report" in graph["bench.study_cells"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


PRIVATE = re.compile(r"keras\.src|\._[a-z]|[\"']_[a-z]\w*[\"']")


ALL_MODULES = {name: path for package in CHECKED for name, path in modules(package).items()}
LIBRARY_MODULES = {name: path for name, path in ALL_MODULES.items() if name.split(".")[0] in PACKAGES}


@pytest.mark.parametrize("name", sorted(LIBRARY_MODULES))
def test_private_keras_access_is_only_in_keras_internals(name):
    if name.endswith("._keras_internals"):
        return
    path = ALL_MODULES[name]
    hits = []
    for number, line in enumerate(open(path, encoding="utf-8"), 1):
        code = line.split("#")[0]
        for match in PRIVATE.finditer(code):
            before = code[:match.start()]
            if re.search(r"\b(self|cls)$", before) or match.group() == "._grasp_tf_wrapper":
                continue  # our own objects' attributes
            if "\"_grasp_tf_wrapper\"" in match.group() or re.search(r"criteria\._REGISTRY", code):
                continue
            hits.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)


INTERNALS_TESTS = {"grasp_tf": "test_keras_internals.py", "train": "test_train_keras_internals.py"}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_keras_internals_function_is_called_by_its_test(package):
    module = importlib.import_module(f"{package}._keras_internals")
    public = {n for n, f in inspect.getmembers(module, inspect.isfunction) if f.__module__ == module.__name__}
    source = open(os.path.join(ROOT, "tests", INTERNALS_TESTS[package]), encoding="utf-8").read()
    assert {n for n in public if f"ki.{n}(" not in source} == set()


@pytest.mark.parametrize("name", sorted(ALL_MODULES))
def test_every_module_is_small_and_opens_with_its_purpose(name):
    path = ALL_MODULES[name]
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) <= 300, f"{path} has {len(lines)} lines"
    assert lines[0].startswith('"""') and len(lines[0]) > 20, f"{path} does not open with a docstring line"


def test_train_imports_private_keras_only_in_its_internals_module():
    graph_hits = [name for name, path in modules("train").items() if not name.endswith("._keras_internals")
                  and re.search(r"^\s*(from|import) keras\.src", open(path, encoding="utf-8").read(), re.M)]
    assert graph_hits == []
    assert "keras.src" in open(modules("train")["train._keras_internals"], encoding="utf-8").read()


@pytest.mark.parametrize("name", [
    "compute_scores", "compute_masks", "prune_model", "apply_masks", "get_masks", "strip_pruning",
    "sparsity_report", "FixedMaskWrapper", "export_saved_model", "export_tflite"])
def test_every_public_name_has_a_keras_style_docstring(name):
    import grasp_tf

    assert name in grasp_tf.__all__
    doc = getattr(grasp_tf, name).__doc__
    assert all(section in doc for section in ("Args:", "Example:")), name
    assert "Returns:" in doc or isinstance(getattr(grasp_tf, name), type), name


def test_help_on_compute_masks_lists_every_option_of_every_built_in_method():
    import grasp_tf
    from grasp_tf import criteria

    doc = grasp_tf.compute_masks.__doc__
    for method in criteria.names():
        criterion = criteria.get(method)
        assert f"``{method}``" in doc
        for option in {*criterion.options, *criterion.mask_options, "prunable", "samples_per_class", "num_draws"}:
            assert f"``{option}" in doc, (method, option)
