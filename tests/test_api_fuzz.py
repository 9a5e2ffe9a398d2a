"""A bounded property-based run of every documented operation (schemathesis): whatever an admin and an investigator
send, the API never fails with a 5xx, and every response matches its documented status, media type and schema."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 3


def test_generated_requests_never_break_the_api(people):
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", people.client.app)
    failures = []
    for result in schema.exclude(path="/api/v1/auth/logout").get_all_operations():
        operation = result.ok()
        for username in ("admin", "ivan"):
            headers = people.as_user(username)

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def call(case) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                call()
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them together
                failures.append(f"{operation.label} as {username}: {exc}")
    assert not failures, "\n\n".join(failures)
