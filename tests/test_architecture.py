"""The architecture holds: the import contracts of pyproject.toml (layers, no circles, interfaces only through the
accountable service) and no module past its size without a stated reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINES_WITHOUT_REASON = 500
"""A module longer than this says at its top why it is one module (a line beginning "Why one module:")."""


def test_the_import_contracts_hold():
    """import-linter checks every contract in pyproject.toml against the source tree (not an installed copy)."""
    linter = Path(sys.executable).with_name("lint-imports")
    checked = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                             env={"PYTHONPATH": str(ROOT / "src"), "PATH": str(linter.parent)})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 broken" in checked.stdout


def test_long_modules_say_why_they_are_one_module():
    too_long = [
        path.relative_to(ROOT) for path in (ROOT / "src" / "facetrail").rglob("*.py")
        if len(path.read_text(encoding="utf-8").splitlines()) > LINES_WITHOUT_REASON
        and "Why one module:" not in path.read_text(encoding="utf-8")[:4000]
    ]
    assert not too_long, f"over {LINES_WITHOUT_REASON} lines with no stated reason: {too_long}"


@pytest.mark.xdist_group("one-worker")
def test_xdist_groups_keep_their_tests_in_one_worker(request):
    """`make test` runs the modules that share an expensive session fixture (the browser site, the Milvus server, the
    Ray cluster) in one worker by their xdist_group; pytest-xdist marks such a test by its group in its node id. A
    pytest release whose node ids it cannot extend (9.2 with xdist 3.8) would silently start them in every worker."""
    if not getattr(request.config.option, "loadgroup", False):  # set by pytest-xdist in its workers
        pytest.skip("checks make test's --dist loadgroup")
    assert request.node.nodeid.endswith("@one-worker"), request.node.nodeid
