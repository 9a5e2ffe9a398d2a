"""API settings, read from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facetrail.datadir import DATA_ENV
from facetrail.errors import ConfigError

ENV_PREFIX = "FACETRAIL_API_"
MIB = 1024 * 1024


class ApiSettings(BaseModel):
    """How the API runs. Each field but ``data_dir`` is read from ``FACETRAIL_API_<FIELD NAME IN CAPITALS>``;
    ``data_dir`` from ``FACETRAIL_DATA``."""

    model_config = ConfigDict(frozen=True)

    data_dir: Path | None = None
    """The data directory (default: ``./facetrail-data``)."""
    max_upload_bytes: int = Field(20 * MIB, gt=0)
    """Largest request body, uploads included; larger ones get 413 before they are read."""
    session_cookie: str = Field("ft_session", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Name of the cookie that carries a browser session's token."""
    cookie_secure: bool = True
    """Send cookies over HTTPS only (turn off only for local development over plain HTTP)."""
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    """Host names the API answers to (comma-separated in the environment): this machine's by default, so a server
    reached under another name (a DNS-rebinding page, a proxy that forwards any Host) answers 400 until its names
    are listed; ``*`` accepts any."""
    login_attempts_per_address: int = Field(20, gt=0, le=100_000)
    """Login attempts allowed from one client address per minute (raise it where many users share one address, e.g.
    behind a NAT)."""
    login_attempts_per_account: int = Field(10, gt=0, le=100_000)
    """Login attempts allowed for one username, from all addresses together, per minute (beside the per-account
    lockout after failures)."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto headers are believed (comma-separated in
    the environment). Empty: those headers are ignored, and the connection's own address is the client's (so no one
    can dodge the per-address login limit by sending the header)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        """The settings from ``environ`` (default: the process environment); invalid values raise ConfigError."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get(DATA_ENV):
            values["data_dir"] = env[DATA_ENV]
        for name in ("max_upload_bytes", "session_cookie", "cookie_secure", "login_attempts_per_address",
                     "login_attempts_per_account"):
            if env.get(ENV_PREFIX + name.upper()):
                values[name] = env[ENV_PREFIX + name.upper()]
        for name in ("allowed_hosts", "trusted_proxies"):
            listed = env.get(ENV_PREFIX + name.upper())
            if listed:
                values[name] = tuple(item.strip() for item in listed.split(",") if item.strip())
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"API settings: {problems}") from None
