"""The hashed lock files (requirements/*.lock, written by scripts/lock) stay in step with
pyproject.toml, and the installers use them: scripts/bootstrap (CI, developers) and
deploy/Dockerfile (the image). No network: pins are checked against pyproject's ranges."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {"runtime": [], "embedded": ["embedded"], "dev": ["embedded", "dev"]}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def pins(lock: str) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes)."""
    text = (ROOT / "requirements" / f"{lock}.lock").read_text()
    found: dict[str, tuple[Version, int]] = {}
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    for block in blocks:
        match = PIN.match(block)
        if match:
            found[canonicalize_name(match[1])] = (Version(match[2]), block.count("--hash=sha256:"))
    return found


def requirements(extras: list[str]) -> list[Requirement]:
    wanted = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        wanted += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    own = canonicalize_name(PROJECT["name"])
    return [r for r in wanted if canonicalize_name(r.name) != own]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_dependency_is_pinned_within_its_range_with_hashes(lock: str) -> None:
    """(Broken on purpose once by raising pytimeparse's floor in pyproject.toml above the
    pinned release: this test failed until scripts/lock ran.)"""
    pinned = pins(lock)
    assert pinned, f"requirements/{lock}.lock has no pins"
    for requirement in requirements(LOCKS[lock]):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is missing from {lock}.lock: run scripts/lock"
        version, hashes = pinned[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock}.lock pins {name}=={version}, outside {requirement}: run scripts/lock"
        )
        assert hashes, f"{name} has no hash in {lock}.lock"
    assert all(hashes for _, hashes in pinned.values()), f"a pin without hashes in {lock}.lock"


def test_runtime_lock_has_no_dev_tools() -> None:
    runtime = pins("runtime")
    for tool in ("pytest", "mypy", "ruff", "uv"):
        assert tool not in runtime


def test_bootstrap_and_dockerfile_install_from_the_locks_with_hashes() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    assert "--require-hashes" in bootstrap and "requirements/$EXTRA.lock" in bootstrap
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/runtime.lock" in dockerfile
    assert "!requirements/runtime.lock" in (ROOT / ".dockerignore").read_text()
