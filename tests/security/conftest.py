"""Fixtures of the attack tests: the API over a data directory (SQLite, and PostgreSQL when configured), with one user
per role and a gallery of two subjects (see tests/test_api.py)."""

from tests.test_api import client, people, world  # noqa: F401 - fixtures
