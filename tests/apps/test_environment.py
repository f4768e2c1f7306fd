"""Are the dependencies pinned exactly, and do pyproject.toml and environment.yml agree?"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)$")


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        m = PIN.match(req.strip())
        assert m, f"{req!r} is not an exact pin (name==version)"
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def pyproject_pins(root: Path) -> dict[str, str]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values()
                                      for r in extra]
    return _pins(reqs)


def environment_pins(root: Path) -> dict[str, str]:
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return _pins([r for r in pip_section if not r.startswith("-e")])


def test_every_dependency_is_an_exact_pin(repo):
    """Is every runtime and dev dependency pinned to one version?"""
    assert pyproject_pins(repo)  # _pins asserts each one is name==version


def test_torch_is_pinned_to_the_local_cpu_build(repo):
    """Is torch pinned to exactly 2.13.0 (other specs download several GB)?"""
    assert pyproject_pins(repo)["torch"] == "2.13.0"


def test_environment_yml_matches_pyproject(repo):
    """Does environment.yml describe the same packages at the same versions as pyproject.toml?"""
    ours, conda = pyproject_pins(repo), environment_pins(repo)
    missing = sorted(set(ours) - set(conda))
    extra = sorted(set(conda) - set(ours))
    differ = sorted(f"{k}: {ours[k]} vs {conda[k]}" for k in set(ours) & set(conda)
                    if ours[k] != conda[k])
    assert not (missing or extra or differ), (
        f"missing from environment.yml: {missing}; only in environment.yml: {extra}; "
        f"different versions: {differ}")


def test_environment_yml_python_is_supported(repo):
    """Does environment.yml ask for Python 3.11 and install the course itself?"""
    env = yaml.safe_load((repo / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11"
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section
