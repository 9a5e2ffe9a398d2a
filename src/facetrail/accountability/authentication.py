"""Authentication: logging in and out, and who a token belongs to. Every login and failure is audited."""

from __future__ import annotations

import datetime as dt

from facetrail.accountability.context import Context
from facetrail.accountability.users import LOCAL_ADDRESS, Actor
from facetrail.errors import AuthenticationError

ANONYMOUS = "anonymous"
"""The actor of audit entries about attempts by no known user (failed logins)."""


class Authentication:
    """Logins, tokens and the per-user request rate the policy allows."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def login(self, username: str, password: str, label: str = "cli", address: str = LOCAL_ADDRESS) -> tuple[Actor, str]:
        """Log in (audited, failures too) and return the actor and a new API token. ``address`` is the client's
        (failed logins are counted per username and address). A failure is recorded as done by no one
        (ANONYMOUS), with the name tried kept as data: it is not an actor the system knows."""
        audit = self.context.audit
        try:
            actor, token = self.context.users.login(username, password, label, address)
        except AuthenticationError as exc:
            audit.append(ANONYMOUS, "login_failed", "", {
                "username_tried": username[:100], "reason": str(exc), "via": label, "address": address[:100]})
            raise
        audit.append(actor.username, "login", actor.username, {"via": label, "address": address[:100]})
        return actor, token

    def authenticate(self, token: str | None) -> Actor:
        """The actor a token belongs to."""
        if not token:
            raise AuthenticationError("not logged in: run 'facetrail login' or set FACETRAIL_TOKEN")
        return self.context.users.authenticate(token)

    def logout(self, token: str) -> None:
        """Revoke a token (audited)."""
        actor = self.context.users.authenticate(token)
        self.context.users.revoke(token)
        self.context.audit.append(actor.username, "logout", actor.username)

    @property
    def token_lifetime(self) -> dt.timedelta:
        """How long a new token stays valid."""
        return self.context.users.token_lifetime

    def requests_per_minute(self) -> int:
        """How many requests a minute one user may make over HTTP, under the policy in force."""
        return self.context.policy()[1].api.requests_per_minute_per_user
