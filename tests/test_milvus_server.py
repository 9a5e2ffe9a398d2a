"""A real Milvus server (tests/fixtures/milvus.py) under faults: killed (kill -9) during a search and during an
enrolment, the SQL store stays the source of truth, searches are refused and audited while it is down, and after a
restart the index catches up with the store from the difference of ids, not by a rebuild."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from sqlalchemy import select

from facetrail.accountability.requests import CaseRequest
from facetrail.errors import RefusedError
from facetrail.gallery.enrol import items_from_folder
from facetrail.gallery.milvus_index import IndexServiceError, MilvusBackend, MilvusIndex
from facetrail.gallery.schema import TemplateRecord
from tests.fixtures.images import jpeg
from tests.fixtures.milvus import IN_SERVER_GROUP, SERVER
from tests.fixtures.world import SEARCH_FIELDS, actors

pytestmark = [IN_SERVER_GROUP, pytest.mark.parametrize("datadir,index_backend", [("sqlite", SERVER)], indirect=True)]

IN_FLIGHT_S = 0.05
"""When the kill comes after a search reached Milvus: a Strong search waits for the server's next time tick (50 ms
on the test server), so the request is usually under way on the server."""


def stored_ids(gallery) -> list[int]:
    with gallery.session() as session:
        return sorted(session.scalars(select(TemplateRecord.id).where(TemplateRecord.gallery_id == gallery.id)))


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
