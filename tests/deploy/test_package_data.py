"""The image installs the project without `-e`: every data file a service loads must be package
data in pyproject.toml, or the installed service starts without it."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_json_file_under_the_packages_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    missing = []
    for path in sorted([*ROOT.glob("services/**/*.json"), *ROOT.glob("shared/**/*.json")]):
        package = ".".join(path.parent.relative_to(ROOT).parts)
        patterns = package_data.get(package, [])
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
