"""A host project that owns a `swarm` package adopts swarmlog with a two-line
`swarm/event_log.py` (tests/host: the seed dashboard's shape), and its own tests pass unchanged,
with swarmlog installed editable (this checkout) and non-editable (`pip install .`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
HOST = ROOT / "tests" / "host"


def _run_host_tests(pythonpath: list[Path], expected: Path | None, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("SWARMLOG_DB", None)
    if expected is not None:
        env["EXPECTED_SWARMLOG"] = str(expected)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HOST / "host_tests"),
         "--rootdir", str(HOST), "--confcutdir", str(HOST), "-c", os.devnull],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_hosts_tests_pass_with_swarmlog_installed_editable(tmp_path: Path) -> None:
    out = _run_host_tests([HOST], ROOT / "swarmlog", cwd=tmp_path)
    assert " passed" in out and "failed" not in out


@pytest.mark.slow
def test_the_hosts_tests_pass_with_swarmlog_installed_from_a_wheel(tmp_path: Path) -> None:
    site, source = tmp_path / "site", tmp_path / "source"
    source.mkdir()
    for part in ("domain", "store", "projections", "swarmlog", "pyproject.toml", "README.md"):
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, source / part,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / part, source / part)
    built = subprocess.run(  # (built from a copy: pip leaves build/ and *.egg-info behind)
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(site), str(source)], capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr
    assert (site / "swarmlog" / "event_log.py").exists() and (site / "swarmlog" / "py.typed").exists()
    out = _run_host_tests([site, HOST], site / "swarmlog", cwd=tmp_path)
    assert " passed" in out and "failed" not in out
