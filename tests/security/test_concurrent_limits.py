"""The policy's daily and per-case limits hold when searches arrive at once, from two processes over one store (as
``serve --workers 2`` runs on PostgreSQL): the limit is counted in the transaction that records the search, under the
audit lock (issue 17)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from facetrail.accountability.requests import CaseRequest
from facetrail.accountability.service import Facetrail
from facetrail.errors import RefusedError
from tests.fixtures.images import jpeg
from tests.fixtures.world import SEARCH_FIELDS
from tests.security.helpers import entries

LIMIT = 3
ATTEMPTS = 8


@pytest.mark.parametrize(("setting", "reason"), [
    ("daily_search_limit_per_user = 20", "daily search limit of 3 reached"),
    ("max_searches_per_case = 30", "the most the policy allows (3)"),
])
def test_searches_at_once_from_two_processes_stop_exactly_at_the_limit(world, faces, datadir, setting, reason):
    system = world.system
    admin = system.auth.authenticate(world.tokens["admin"])
    text = system.admin.policy_in_force(admin)[1]
    assert setting in text
    system.admin.load_policy(admin, text.replace(setting, f"{setting.split(' = ')[0]} = {LIMIT}"))
    other = Facetrail.open(datadir, purge=False)  # a second server process over the same database
    try:
        probe = jpeg(faces["obama3.jpg"], 600)
        request = CaseRequest(**{name: value for name, value in SEARCH_FIELDS.items()})

        def attempt(number: int) -> str:
            service = (system, other)[number % 2]
            ivan = service.auth.authenticate(world.tokens["ivan"])
            try:
                service.searches.search(ivan, probe, request)
                return "completed"
            except RefusedError as exc:
                assert reason in str(exc), exc
                return "refused"

        with ThreadPoolExecutor(ATTEMPTS) as pool:
            results = list(pool.map(attempt, range(ATTEMPTS)))
    finally:
        other.close()
    assert results.count("completed") == LIMIT, results
    assert len(entries(world, "search")) == LIMIT
    assert len(entries(world, "search_refused")) == ATTEMPTS - LIMIT
    assert system.audit.verify().ok
