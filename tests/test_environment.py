"""requirements.txt (pip, local runs and CI) and environment.yml (conda, Binder) describe one environment."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)$")


def pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        assert m, f"not an exact pin: {line!r}"
        out[m.group(1).lower()] = m.group(2)
    return out


def requirements() -> dict[str, str]:
    return pins((ROOT / "requirements.txt").read_text().splitlines())


def environment_yml() -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml should have one pip: section"
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    return pins(pip_lists[0]), conda


def test_every_requirement_is_an_exact_pin_and_torch_is_the_registry_build():
    req = requirements()
    assert req["torch"] == "2.14.1" and req["torchvision"] == "0.29.1"
    assert not any("+cpu" in v for v in req.values()), "the CPU-only torch wheel cannot load torchvision's ops"


def test_environment_yml_has_the_same_packages_and_versions():
    yml, _ = environment_yml()
    req = requirements()
    assert yml == req, {
        "only in requirements.txt": sorted(set(req) - set(yml)),
        "only in environment.yml": sorted(set(yml) - set(req)),
        "different versions": {k: (req[k], yml[k]) for k in set(req) & set(yml) if req[k] != yml[k]},
    }


def test_environment_yml_python_is_the_one_we_test_on():
    _, conda = environment_yml()
    assert "python=3.11" in conda


def test_installed_versions_match_the_pins():
    """The environment running the tests is the pinned one (catches a stale .venv)."""
    from importlib.metadata import version

    for name, pinned in requirements().items():
        assert version(name).split("+")[0] == pinned, f"{name}: installed {version(name)}, pinned {pinned}"


def test_colab_setup_installs_only_what_is_missing_and_never_torch(monkeypatch):
    """On Colab the Setup cell pip-installs missing packages, but torch/torchvision never (Colab's own)."""
    from helpers import setup_env

    calls = []
    monkeypatch.setattr(setup_env.subprocess, "run", lambda cmd, check: calls.append(cmd))
    wanted = {"torch": "99", "torchvision": "99", "numpy": "1.0", "no_such_module_here": "1.0"}
    assert setup_env.install_missing(wanted) == ["no_such_module_here"]
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "no_such_module_here"]]
    monkeypatch.setattr(setup_env.importlib.util, "find_spec", lambda name: None)  # nothing importable
    calls.clear()
    assert "torch" not in setup_env.install_missing(wanted) and "torchvision" not in calls[0]


def test_colab_requirements_are_the_minimum_versions_we_claim():
    """tests/colab/requirements-colab.txt (what `make colab-check` runs) holds MIN_VERSIONS' releases."""
    from helpers.setup_env import MIN_VERSIONS, PIP_NAMES

    colab = pins((ROOT / "tests" / "colab" / "requirements-colab.txt").read_text().splitlines())
    for module, minimum in MIN_VERSIONS.items():
        pinned = colab[PIP_NAMES.get(module, module).lower()]
        assert pinned.startswith(minimum + "."), f"{module}: MIN_VERSIONS says {minimum}, colab-check runs {pinned}"
