"""The web application: server-rendered pages for investigators, examiners, supervisors, auditors and admins.

Every page goes through the same accountable system as the CLI and the HTTP API
(``facetrail.accountability.service.Facetrail``): the browser holds the same
session cookie as an API cookie session, and every form carries the session's
CSRF token. Pages are Jinja2 templates with a little plain JavaScript served
from ``static/``; nothing is loaded from another site.
"""

from facetrail.web.site import install_web

__all__ = ["install_web"]
