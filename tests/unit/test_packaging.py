"""Packaging facts that a plain `pip install .` depends on."""

import ast
import fnmatch
import os

import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG = os.path.join(ROOT, "ksnoop")


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _sources():
    for dirpath, _dirs, files in os.walk(PKG):
        for name in files:
            yield os.path.join(dirpath, name)


def test_every_data_file_is_shipped():
    """Files the package reads at run time (the BPF C template) are package data."""
    data = _pyproject()["tool"]["setuptools"]["package-data"]
    missing = []
    for path in _sources():
        if path.endswith((".py", ".pyc")) or "__pycache__" in path:
            continue
        rel = os.path.relpath(path, ROOT)
        package = os.path.dirname(rel).replace(os.sep, ".")
        patterns = data.get(package, [])
        if not any(fnmatch.fnmatch(os.path.basename(path), p) for p in patterns):
            missing.append(rel)
    assert not missing, f"not declared as package data: {missing}"


def test_template_is_found_as_package_resource():
    from importlib import resources

    from ksnoop.trace.codegen import TEMPLATE

    assert resources.files("ksnoop.trace").joinpath(TEMPLATE).is_file()


def _needs_310(tree):
    """Constructs of Python 3.10: dataclass(slots=True), match statements, X | Y unions in
    annotations are not checked (the code base does not use them)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Match):
            return True
        if isinstance(node, ast.Call) and any(k.arg == "slots" for k in node.keywords):
            return True
    return False


def test_requires_python_covers_the_code():
    spec = _pyproject()["project"]["requires-python"]
    assert spec.startswith(">=")
    minimum = tuple(int(x) for x in spec[2:].split("."))
    needs = (3, 10) if any(_needs_310(ast.parse(open(p).read()))
                           for p in _sources() if p.endswith(".py")) else (3, 8)
    assert minimum >= needs, f"requires-python {spec}, but the code needs {needs}"
