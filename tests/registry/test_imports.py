"""Importing registry has no side effects and keeps the package boundaries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import registry

PACKAGE = Path(registry.__file__).parent


def test_importing_every_module_loads_neither_mlflow_nor_torch():
    code = (
        "import sys, pkgutil, importlib, registry\n"
        "for m in pkgutil.iter_modules(registry.__path__): importlib.import_module('registry.' + m.name)\n"
        "print(sorted(k for k in ('mlflow', 'torch', 'transformers', 'matplotlib') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_never_imports_retrain_or_daemon():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("retrain", "daemon")]
    assert len(list(PACKAGE.rglob("*.py"))) >= 9  # the walk really saw the modules
    assert offenders == []
