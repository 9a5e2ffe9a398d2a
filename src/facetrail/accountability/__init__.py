"""Accountability: users and roles, policy, case-bound searches, audit trail, two-person review, reports."""
