"""The conda environment and pyproject must describe the same runtime dependencies."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> str:
    return requirement.replace(" ", "").lower()


def test_environment_yml_pip_section_matches_pyproject_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip section"
    pip_reqs = pip_sections[0]
    assert "-e ." in pip_reqs, "environment.yml's pip section must install this package"
    declared = sorted(_normalise(r) for r in pyproject["project"]["dependencies"])
    in_env = sorted(_normalise(r) for r in pip_reqs if r != "-e .")
    assert in_env == declared


def test_environment_python_is_3_11():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]


def test_console_script_points_at_main():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["tal-kit"] == "tal_kit.__main__:main"
    from tal_kit.__main__ import main

    assert callable(main)


def test_setuptools_reads_pyproject_without_deprecation_warnings():
    """The bootstrap (pip install -e .) must not print setuptools' deprecation wall (e.g. project.license as a
    table, deprecated since setuptools 77)."""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), str(ROOT / "pyproject.toml"))
    assert [str(w.message).splitlines()[0] for w in caught if "deprecat" in str(w.message).lower()] == []
    assert dist.metadata.license_expression == "MIT"
