"""Shared fixtures: real face photographs, the labelled sets in ../shared/faces and the face engine here; the data
directory, the API world and the galleries in the modules of tests/fixtures/ named in ``pytest_plugins``."""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import pytest

# the shared fixtures and steps live in tests/fixtures/ (no test module imports another); their asserts report as
# a test's own do
pytest.register_assert_rewrite("tests.fixtures", "tests.security.helpers")

from tests.fixtures.database import finish_drops  # noqa: E402
from tests.fixtures.face_images import face_images  # noqa: E402

pytest_plugins = ["tests.fixtures.datadir", "tests.fixtures.world", "tests.fixtures.gallery", "tests.fixtures.browser",
                  "tests.fixtures.milvus"]

SHARED_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def pytest_sessionfinish(session):
    finish_drops()  # the test databases still being dropped (tests/fixtures/database.py)


@pytest.fixture(scope="session", autouse=True)
def private_session_file(tmp_path_factory):
    """``facetrail login`` and ``logout`` keep tokens in ~/.config/facetrail/sessions.json. The tests, and the scripts
    and servers they start, keep theirs in a file of this test process's own (under its base temporary directory,
    which pytest-xdist makes per worker): they leave the developer's file alone, and two workers never rewrite one
    file at once (its writer uses one fixed temporary name beside it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACETRAIL_SESSION_FILE", str(tmp_path_factory.getbasetemp() / "sessions.json"))
        yield


@pytest.fixture(autouse=True)
def quick_setup(request, monkeypatch):
    """Make the many short-lived systems the tests build cheap to set up: password hashes with argon2id at its
    smallest cost (tests marked ``real_password_hashing`` keep the production parameters), and the face model's
    weights loaded once per test session (per backend) instead of once per system, running on this test process's
    share of the cores (see ``_threads``). None of this changes what is computed."""
    from argon2 import PasswordHasher

    from facetrail.engine import pipeline

    if request.node.get_closest_marker("real_password_hashing") is None:
        monkeypatch.setattr("facetrail.accountability.users.PasswordHasher",
                            functools.partial(PasswordHasher, time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(pipeline, "load_model", _shared_model)


@functools.cache
def _shared_model(name: str = "dlib-resnet-v1", backend: str = "onnx", threads: int = 0, precision: str = "float32"):
    from facetrail.engine.models import load_model

    return _OneCallAtATime(load_model(name, backend, threads or _threads(), precision))


def _threads() -> int:
    """The threads of the shared model: 0 (one per core) when the suite runs in one process; under pytest-xdist, the
    worker's share of the cores, as facetrail's own worker pools give each process its share, so the workers' ONNX
    Runtime threads do not outnumber the cores (and spin waiting for each other). Its descriptors are the same
    whatever the count (ONNX Runtime splits the work, not the sums)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return 0 if workers <= 1 else max(1, (os.cpu_count() or 1) // workers)


class _OneCallAtATime:
    """The model the tests share, used by one thread at a time: dlib's networks are not safe to share between
    threads (outside the tests every engine loads its own, so a server's searches and enrolment jobs never share)."""

    def __init__(self, model) -> None:
        self._model, self._lock = model, threading.Lock()

    def __getattr__(self, name: str):
        attribute = getattr(self._model, name)
        if not callable(attribute):
            return attribute

        def called_alone(*args, **kwargs):
            with self._lock:
                return attribute(*args, **kwargs)

        return called_alone


@pytest.fixture(scope="session")
def faces() -> dict[str, Path]:
    """The face_recognition 1.3.0 test photographs (see tests/fixtures/face_images.py for provenance)."""
    return face_images()


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    """``../shared/faces`` (LFW subset, ORL); tests using it skip when it is absent."""
    if not (SHARED_FACES / "lfw-dev").is_dir():
        pytest.skip("../shared/faces is not present")
    return SHARED_FACES


@pytest.fixture(scope="session")
def engine():
    """One face engine (models loaded once) with the default configuration."""
    from facetrail.engine.pipeline import FaceEngine

    return FaceEngine()
