"""Expungement is audited in the same transaction as the deletion, and subject ids are checked at enrolment."""

from __future__ import annotations

import pytest

from facetrail.accountability.audit import AuditTrail
from tests.fixtures.images import jpeg
from tests.fixtures.world import V1


def _subject_rows(system, subject_id: str) -> int:
    from sqlalchemy import func, select

    from facetrail.gallery.schema import SubjectRecord

    with system.galleries.sessions() as session:
        return session.scalar(select(func.count()).select_from(SubjectRecord).where(SubjectRecord.external_id == subject_id))


def test_a_subject_id_too_long_or_odd_is_refused_at_enrolment_and_audited(world, faces):
    client, admin = world.client, world.as_user("admin")
    photo = ("front.jpg", jpeg(faces["obama2.jpg"], 400), "image/jpeg")
    for subject_id in ("B" * 200, "B-1/../2", "B-1\nforged"):
        answer = client.post(f"{V1}/galleries/county/images", headers=admin, files={"image": photo},
                             data={"subject_id": subject_id, "source": "booking"})
        assert answer.status_code in (400, 422), answer.text
        assert _subject_rows(world.system, subject_id) == 0
    refused = [e for e in world.system.audit.entries(action="enrolment_refused")]
    assert refused and all(e["actor"] == "admin" for e in refused)


def test_expungement_that_cannot_be_audited_does_not_happen(world, monkeypatch):
    client, admin, system = world.client, world.as_user("admin"), world.system
    original = AuditTrail.record

    def failing(self, session, actor, action, target="", details=None):
        if action == "subject_removed":
            raise RuntimeError("the audit trail is unavailable")
        return original(self, session, actor, action, target, details)

    monkeypatch.setattr(AuditTrail, "record", failing)
    with pytest.raises(RuntimeError, match="unavailable"):  # the test client re-raises what the server met
        client.delete(f"{V1}/galleries/county/subjects/B-1001", headers=admin)
    assert _subject_rows(system, "B-1001") == 1  # not deleted: the audit entry and the deletion go together
    candidate = client.get(f"{V1}/galleries/county", headers=admin).json()
    assert candidate["subjects"] == 2

    monkeypatch.setattr(AuditTrail, "record", original)
    assert client.delete(f"{V1}/galleries/county/subjects/B-1001", headers=admin).status_code == 200
    assert _subject_rows(system, "B-1001") == 0
    entry = system.audit.entries(action="subject_removed")[-1]
    assert entry["target"] == "county/B-1001" and entry["details"]["subject_id"] == "B-1001"
    assert entry["details"]["images"] == 1 and system.audit.verify().ok


@pytest.mark.parametrize("action", ["gallery_created", "policy_loaded"])
def test_a_gallery_or_policy_change_that_cannot_be_audited_does_not_happen(world, monkeypatch, action):
    system = world.system
    actor = system.auth.authenticate(world.tokens["admin"])
    original = AuditTrail.record

    def failing(self, session, actor, what, target="", details=None):
        if what == action:
            raise RuntimeError("the audit trail is unavailable")
        return original(self, session, actor, what, target, details)

    policy_before, _ = system.policies.active()
    text = system.admin.policy_in_force(actor)[1] + "\n# a new version\n"
    monkeypatch.setattr(AuditTrail, "record", failing)
    with pytest.raises(RuntimeError, match="unavailable"):
        if action == "gallery_created":
            system.admin.create_gallery(actor, "state", ["booking"])
        else:
            system.admin.load_policy(actor, text)
    assert "state" not in [g.name for g in system.galleries.list()]
    assert system.policies.active()[0] == policy_before

    monkeypatch.setattr(AuditTrail, "record", original)
    if action == "gallery_created":
        assert system.admin.create_gallery(actor, "state", ["booking"]).name == "state"
        assert system.audit.entries(action=action)[-1]["target"] == "state"
    else:
        assert system.admin.load_policy(actor, text) == policy_before + 1
        assert system.audit.entries(action=action)[-1]["target"] == f"policy:{policy_before + 1}"
    assert system.audit.verify().ok
