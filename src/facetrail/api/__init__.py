"""The HTTP API: the accountable system over HTTP, under ``/api/v1``.

Every route authenticates its caller and goes through ``facetrail.accountability.service.Facetrail``, which checks
roles, grants and the policy and writes the audit trail. ``create_app`` builds the application; ``serve`` runs it.
"""
