"""A real Milvus server (tests/fixtures/milvus.py) under faults: killed (kill -9) during a search and during an
enrolment, the SQL store stays the source of truth, searches are refused and audited while it is down, and after a
restart the index catches up with the store from the difference of ids, not by a rebuild. And facetrail as a Milvus
user of its own, with only the privileges docs/scaling.md lists, over TLS."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pymilvus import MilvusClient
from sqlalchemy import select

from facetrail.accountability.requests import CaseRequest
from facetrail.config import IndexConfig
from facetrail.errors import RefusedError
from facetrail.gallery.enrol import items_from_folder
from facetrail.gallery.milvus_index import IndexServiceError, MilvusBackend, MilvusIndex
from facetrail.gallery.schema import TemplateRecord
from tests.fixtures.images import jpeg
from tests.fixtures.milvus import IN_SERVER_GROUP, SERVER, MilvusServerProcess, milvus_collection
from tests.fixtures.world import SEARCH_FIELDS, actors

pytestmark = IN_SERVER_GROUP

IN_FLIGHT_S = 0.05
"""When the kill comes after a search reached Milvus: a Strong search waits for the server's next time tick (50 ms
on the test server), so the request is usually under way on the server."""


def stored_ids(gallery) -> list[int]:
    with gallery.session() as session:
        return sorted(session.scalars(select(TemplateRecord.id).where(TemplateRecord.gallery_id == gallery.id)))


@pytest.mark.parametrize("datadir,index_backend", [("sqlite", SERVER)], indirect=True)
def test_killed_milvus_refuses_searches_and_the_index_catches_up_with_the_store(index_backend, world, milvus_server,
                                                                                faces, tmp_path, monkeypatch):
    system = world.system
    ivan, admin = actors(world, "ivan", "admin")
    county = system.galleries.get("county")
    probe = jpeg(faces["obama3.jpg"], 700)
    request = CaseRequest(**SEARCH_FIELDS)
    assert system.searches.search(ivan, probe, request).candidates[0].subject_id == "B-1001"

    def refused_while_down(during: str) -> str:
        with pytest.raises(RefusedError, match="search refused: Milvus: .*the server is unreachable") as refused:
            system.searches.search(ivan, probe, request)
        entry = system.audit.entries()[-1]
        assert entry["action"] == "search_refused" and "the server is unreachable" in entry["details"]["reason"], during
        return str(refused.value)

    # killed while a search is under way on the server
    search = MilvusIndex.search

    def killed_meanwhile(index, *args, **kwargs):
        threading.Timer(IN_FLIGHT_S, milvus_server.kill).start()
        return search(index, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(MilvusIndex, "search", killed_meanwhile)
        refused_while_down("the search the kill cut off")
    refused_while_down("a search while the server is down")
    milvus_server.restart()
    assert system.searches.search(ivan, probe, request).candidates[0].subject_id == "B-1001"  # the same client

    # killed during an enrolment: after the store committed its first photograph, before Milvus had it
    folder = tmp_path / "more"
    for subject, name, height in (("B-3003", "obama2.jpg", 420), ("B-4004", "biden.jpg", 500), ("B-5005", "obama.jpg", 380)):
        (folder / subject).mkdir(parents=True)
        (folder / subject / "front.jpg").write_bytes(jpeg(faces[name], height))
    rules = dataclasses.replace(system.galleries.settings.enrolment, workers=1, commit_every=1)
    held = stored_ids(county)
    apply = MilvusIndex.apply

    def killed_first(index, *args, **kwargs):
        milvus_server.kill()
        return apply(index, *args, **kwargs)

    with monkeypatch.context() as patched, pytest.raises(IndexServiceError, match="the server is unreachable"):
        patched.setattr(MilvusIndex, "apply", killed_first)
        system.admin.enrol(admin, "county", items_from_folder(folder, "booking"), rules)
    committed = stored_ids(county)
    assert len(committed) == len(held) + 1  # the store kept its commit: the source of truth
    refused_while_down("a search after the enrolment was cut off")

    # restarted on its data: the next search brings the index to the store with the one template it missed
    applied, rebuilt = [], []
    monkeypatch.setattr(MilvusIndex, "apply", lambda index, version, add=None, remove=None: (
        applied.append((add[0].tolist() if add else [], [] if remove is None else remove.tolist())),
        apply(index, version, add, remove))[1])
    monkeypatch.setattr(MilvusBackend, "create", lambda *args: rebuilt.append(args))
    milvus_server.restart()
    hits = system.searches.search(ivan, probe, request)
    assert applied == [(sorted(set(committed) - set(held)), [])] and not rebuilt
    assert [c.subject_id for c in hits.candidates][:2] == ["B-1001", "B-3003"]
    index = county.index()
    assert index.ids().tolist() == committed and len(index) == len(committed)

    # the enrolment run again: what was committed is a duplicate, the rest is enrolled; nothing twice, nothing lost
    summary = system.admin.enrol(admin, "county", items_from_folder(folder, "booking"), rules)
    assert (summary.count("duplicate"), summary.count("enrolled")) == (1, 2)
    final = stored_ids(county)
    assert len(final) == len(held) + 3 and county.index().ids().tolist() == final
    assert np.unique(county.index().ids()).size == len(county.index())


PRIVILEGES = {"Global": ["CreateCollection", "DescribeCollection", "ShowCollections"],
              "Collection": ["CreateIndex", "Load", "GetLoadState", "GetLoadingProgress", "Insert", "Delete", "Upsert",
                             "Query", "Search", "Compaction"]}
"""What facetrail's Milvus role is granted, on every collection: the list in docs/scaling.md."""
PASSWORD_ENV = "FACETRAIL_TEST_MILVUS_PASSWORD"


@pytest.fixture
def secured_server(tmp_path):
    """A Milvus server of the test's own with authentication on and TLS (a self-signed certificate for 127.0.0.1):
    (the server, its certificate's file)."""
    certificate, key = self_signed(tmp_path)
    (tmp_path / "secured").mkdir()
    server = MilvusServerProcess(tmp_path / "secured", authorization_enabled=True, tls_mode=1,
                                 server_pem_path=str(certificate), server_key_path=str(key))
    try:
        yield server.start(), certificate
    finally:
        server.stop()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, valid for a day, and its key: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                   .sign(key, hashes.SHA256()))
    paths = folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return paths


def test_facetrail_as_its_own_milvus_user_over_tls(secured_server, monkeypatch):
    server, certificate = secured_server
    uri = server.uri.replace("http://", "https://")
    root = MilvusClient(uri=uri, token="root:Milvus", server_pem_path=str(certificate), secure=True)
    root.create_user("facetrail", "facetrail's own password")
    root.create_role("facetrail")
    for kind, privileges in PRIVILEGES.items():
        for privilege in privileges:
            root.grant_privilege("facetrail", kind, privilege, "*")
    root.grant_role("facetrail", "facetrail")
    monkeypatch.setenv(PASSWORD_ENV, "facetrail's own password")
    config = IndexConfig(backend="milvus", milvus_uri=uri, milvus_collection=milvus_collection(), milvus_user="facetrail",
                         milvus_password_env=PASSWORD_ENV, milvus_ca_file=str(certificate))
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((6, 128)).astype(np.float32)
    backend = MilvusBackend(config)
    index = backend.create(1, 128, 0)  # creates the collections, loads them
    index.apply(1, add=(np.arange(1, 7), vectors))
    assert index.apply(2, remove=np.array([1])) == 1
    assert index.search(vectors[1:3], 1)[1][:, 0].tolist() == [2, 3]  # each template finds itself
    assert 1 not in index.search(vectors[:1], 6)[1]  # an expunged one is not found, even by itself
    again = MilvusBackend(config).open(1)  # another process
    assert again.version == 2 and again.ids().tolist() == [2, 3, 4, 5, 6]

    monkeypatch.setenv(PASSWORD_ENV, "a wrong password")
    with pytest.raises(IndexServiceError, match="the server refused the credentials"):
        MilvusBackend(config).open(1)
    root.revoke_privilege("facetrail", "Collection", "Search", "*")
    with pytest.raises(IndexServiceError, match="searching gallery 1: facetrail's Milvus user lacks a privilege .*"
                                                "PrivilegeSearch"):
        _search_until_refused(index, vectors[:1])
    backend.close()
    root.close()


def _search_until_refused(index: MilvusIndex, probe: np.ndarray, within_s: float = 15.0) -> None:
    """Search until the server refuses: a revoked privilege reaches the server's proxy through its privilege cache,
    asynchronously (under load, a search a moment after the revocation was still allowed)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        index.search(probe, 3)
        time.sleep(0.2)
    raise AssertionError(f"searches were still allowed {within_s:.0f} s after the privilege was revoked")
