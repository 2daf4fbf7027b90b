"""The conda environment and the pip package ask for the same things."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!\[ ;]", requirement.strip(), maxsplit=1)[0].lower()
    return {"dask": "dask", "distributed": "dask"}.get(name, name)


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in ("cpu", "notebooks", "book", "test"):
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            listed |= {_name(r) for r in dep["pip"] if not r.startswith("-e")}
        elif not dep.startswith(("python=", "pip")):
            listed.add(_name(dep))
    listed.discard("python")
    assert wanted - listed == set(), f"missing from environment.yml: {sorted(wanted - listed)}"
    assert listed - wanted == set(), f"in environment.yml but not pyproject.toml: {sorted(listed - wanted)}"
