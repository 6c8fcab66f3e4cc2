"""The declared dependency sets agree, and the pinned lock file keeps torch and
torchvision a matching pair."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra, items in meta["optional-dependencies"].items():
        reqs += [r for r in items if not r.startswith("bridgeout[")]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(r): r.replace(" ", "") for r in pip_section if not r.startswith("-e")}


def test_environment_yml_lists_the_same_requirements_as_pyproject():
    py, env = _pyproject_requirements(), _environment_requirements()
    assert set(py) == set(env), f"only in pyproject: {set(py) - set(env)}; only in environment.yml: {set(env) - set(py)}"
    for name in py:
        assert py[name] == env[name], f"{name}: pyproject says {py[name]!r}, environment.yml says {env[name]!r}"


def test_torch_is_a_range_not_a_pin_in_the_package_requirements():
    py = _pyproject_requirements()
    for name in ("torch", "torchvision"):
        assert "==" not in py[name], f"{name} must be a range in pyproject.toml (GPU nodes bring their own)"
    assert "<2" in py["jupyter-book"] and ">=1.0.4" in py["jupyter-book"]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_every_declared_requirement():
    lock = _lock()
    missing = [n for n in _pyproject_requirements() if n not in lock]
    assert not missing, f"requirements.lock does not pin {missing}"


def test_lock_pins_a_matching_torch_torchvision_pair():
    lock = _lock()
    torch_minor = tuple(int(x) for x in lock["torch"].split(".")[:2])
    vision_minor = tuple(int(x) for x in lock["torchvision"].split(".")[:2])
    # torchvision 0.(N+15) pairs with torch 2.N (e.g. 0.29 <-> 2.14, 0.26 <-> 2.11)
    assert torch_minor[0] == 2 and vision_minor == (0, torch_minor[1] + 15), (lock["torch"], lock["torchvision"])


def test_installed_torch_and_torchvision_import_together():
    import torch
    import torchvision  # fails with "operator torchvision::nms does not exist" on a mismatched pair

    assert torchvision.ops.nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([1.0]), 0.5).tolist() == [0]
