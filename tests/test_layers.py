"""The package's plan, enforced: import-linter's contracts in pyproject.toml (floors, the pruning
package's split, the result tables without torch), and the same facts checked at run time."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept(monkeypatch):
    monkeypatch.chdir(REPO)
    assert lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True) == 0


def test_a_broken_floor_is_caught(tmp_path, monkeypatch):
    """The contract can fail: a module that imports one from a floor above breaks it."""
    pkg = tmp_path / "house"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("from house import high\n")
    (pkg / "high.py").write_text("from house import low\n")
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text('[tool.importlinter]\nroot_package = "house"\n\n[[tool.importlinter.contracts]]\n'
                   'name = "floors"\ntype = "layers"\ncontainers = ["house"]\nlayers = ["high", "low"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert lint_imports(config_filename=str(cfg), no_cache=True) == 1


def test_reading_and_validating_the_tables_loads_no_torch():
    code = ("import sys; from bridgeout import results; results.load_joined(); "
            "results.validate('pruning', results.load('pruning')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'torch_pruning')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_module_imports_the_pruning_package_privately():
    """Modules outside bridgeout.prune use its public names (the package's __init__ or a
    submodule's public function), never a private helper of one of its files."""
    offenders = []
    for path in (REPO / "bridgeout").rglob("*.py"):
        if "prune" in path.relative_to(REPO / "bridgeout").parts[:1]:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "from .prune" in line and " import _" in line:
                offenders.append(f"{path.name}:{i}: {line.strip()}")
    assert not offenders, offenders


def test_every_function_local_import_of_the_package_says_why():
    """A package module imported inside a function is deferred only to keep torch out of a
    module that does not need it at import time, and says so; anything else goes at the top."""
    import ast
    bare = []
    for path in sorted((REPO / "bridgeout").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ImportFrom) and node.col_offset > 0 and node.level >= 1:
                if "# deferred: loads torch" not in lines[node.end_lineno - 1]:
                    bare.append(f"{path.relative_to(REPO)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bare, bare
