"""Shared fixtures: real face photographs, the labelled sets in ../shared/faces, and a fresh data directory."""

from __future__ import annotations

import functools
import os
import threading
from contextlib import nullcontext
from pathlib import Path

import pytest

from tests.fixtures.database import TEST_DATABASE_ENV, fresh_database_url
from tests.fixtures.face_images import face_images
from tests.fixtures.milvus import milvus_collection

SHARED_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


@pytest.fixture(autouse=True)
def quick_setup(request, monkeypatch):
    """Make the many short-lived systems the tests build cheap to set up: password hashes with argon2id at its
    smallest cost (tests marked ``real_password_hashing`` keep the production parameters), and the face model's
    weights loaded once per test session (per backend) instead of once per system. Neither changes what is
    computed."""
    from argon2 import PasswordHasher

    from facetrail.engine import pipeline

    if request.node.get_closest_marker("real_password_hashing") is None:
        monkeypatch.setattr("facetrail.accountability.users.PasswordHasher",
                            functools.partial(PasswordHasher, time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(pipeline, "load_model", _shared_model)


@functools.cache
def _shared_model(name: str = "dlib-resnet-v1", backend: str = "onnx", threads: int = 0):
    from facetrail.engine.models import load_model

    return _OneCallAtATime(load_model(name, backend, threads))


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


@pytest.fixture(params=["sqlite", "postgresql"])
def datadir(request, tmp_path, monkeypatch):
    """A fresh, initialised data directory, once with SQLite and once with a new PostgreSQL database on the
    server named by FACETRAIL_TEST_DATABASE_URL (skipped when it is not set)."""
    from facetrail.datadir import DATA_ENV, DATABASE_URL_ENV, DataDir
    from facetrail.gallery.gallery import Galleries

    if request.param == "postgresql" and not os.environ.get(TEST_DATABASE_ENV):
        pytest.skip(f"{TEST_DATABASE_ENV} is not set")
    with fresh_database_url() if request.param == "postgresql" else nullcontext() as url:
        if url:
            monkeypatch.setenv(DATABASE_URL_ENV, url)
        else:
            monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
        root = DataDir(tmp_path / "data")
        monkeypatch.setenv(DATA_ENV, str(root.root))
        Galleries.initialise(root).close()
        yield root


ADMIN_PASSWORD = "test keeper password 1"


@pytest.fixture
def admin_token(datadir, monkeypatch) -> str:
    """Create the first admin in ``datadir`` and act as that admin in CLI commands (FACETRAIL_TOKEN)."""
    from facetrail.accountability.service import Facetrail

    system = Facetrail.initialise(datadir, "admin", ADMIN_PASSWORD)
    _, token = system.auth.login("admin", ADMIN_PASSWORD)
    system.close()
    monkeypatch.setenv("FACETRAIL_TOKEN", token)
    return token


@pytest.fixture
def milvus_lite_uri(tmp_path) -> str:
    """A milvus-lite database of the test's own. milvus-lite serves each file from a server in this process, and a
    server left idle for a minute or so stops answering (its gRPC connection is dropped for "too many pings", and
    milvus-lite issue 334), which made a session-wide file fail tests that came minutes after the last use."""
    return str(tmp_path / "milvus.db")


@pytest.fixture
def index_backend(request, datadir) -> str:
    """The index backend of ``datadir``: "faiss", unless a test parametrises this fixture indirectly with "milvus",
    which points the data directory's configuration at a collection of its own in the test's milvus-lite file."""
    backend = getattr(request, "param", "faiss")
    if backend == "milvus":
        uri = request.getfixturevalue("milvus_lite_uri")
        config = datadir.config_path.read_text()
        for default, value in (('backend = "faiss"', 'backend = "milvus"'), ('milvus_uri = ""', f'milvus_uri = "{uri}"'),
                               ('milvus_collection = "facetrail_templates"', f'milvus_collection = "{milvus_collection()}"')):
            assert default in config, f"{default} is no longer in the default config.toml"
            config = config.replace(default, value)
        datadir.config_path.write_text(config)
    return backend
