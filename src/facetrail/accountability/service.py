"""The accountable system: the only way to search a gallery, compare faces, review candidates and export leads.

``Facetrail`` is the composition root of one data directory: it opens the store, the key ring, the galleries and
the audit trail in one place, and offers the accountable services built over them, one per concern:

- ``auth``: logging in and out, tokens;
- ``searches``: searching a gallery, comparing two photographs, finding the faces in a photograph;
- ``reviews``: showing a search and its photographs, examiners' decisions, supervisors' resolutions, lead reports;
- ``overrides``: supervisors' approval of searches with poor-quality probes;
- ``admin``: accounts and roles, galleries and grants, enrolment, expungement, policy, keys, backups;
- ``indexes``: retraining a gallery's index for its size, on command or in the server's quiet hour;
- ``rejected_photos``: the thumbnails of the photographs an enrolment job rejected;
- ``oversight``: unit activity, transparency reports, the audit trail, the model's accuracy;
- ``cases``: everything under one case number, for its units' supervisors and oversight;
- ``retention``: purging what the policy no longer lets the system keep.

Every operation takes the acting user (an ``Actor`` established from a password or token), checks the user's
roles and grants and the policy in force, and writes what happened to the audit trail in the same transaction as
the records it describes. Refusals are recorded and audited too. The interfaces (``api``, ``web``, ``cli``) call
these services and nothing beneath them.
"""

from __future__ import annotations

from facetrail.accountability.administration import Administration, RoleChange
from facetrail.accountability.calibrations import Calibrations
from facetrail.accountability.audit import AuditTrail, AuditVerification
from facetrail.accountability.authentication import Authentication
from facetrail.accountability.cases import Cases
from facetrail.accountability.context import NOTICE, Context
from facetrail.accountability.indexes import Indexes
from facetrail.accountability.overrides import Overrides
from facetrail.accountability.oversight import Oversight
from facetrail.accountability.policy import PolicyStore
from facetrail.accountability.rejections import RejectedPhotos
from facetrail.accountability.requests import CaseRequest
from facetrail.accountability.retention import Retention
from facetrail.accountability.reviews import PageFetch, Reviews
from facetrail.accountability.searches import ComparisonResult, SearchResult, Searches
from facetrail.accountability.users import ROLE_ACTIONS, Actor, UserDirectory
from facetrail.accountability.witness import open_witnesses
from facetrail.config import Settings
from facetrail.crypto import KeyRing
from facetrail.datadir import DataDir
from facetrail.errors import FacetrailError
from facetrail.gallery.gallery import SUBJECT_ID_MAX, Galleries
from facetrail.gallery.index import SEARCH_THREADS, set_search_threads
from facetrail.storage import probe_store
from facetrail.store import Store

__all__ = ["NOTICE", "ROLE_ACTIONS", "SUBJECT_ID_MAX", "Actor", "AuditVerification", "CaseRequest", "ComparisonResult",
           "Facetrail", "PageFetch", "RoleChange", "SearchResult"]
"""The public surface the interfaces use: the system, the request they send, and what comes back."""


class Facetrail:
    """The accountable face search system over one data directory."""

    def __init__(self, datadir: DataDir, settings: Settings, keyring: KeyRing, store: Store) -> None:
        """Build the system of one data directory over its settings, key ring and database (``open`` and
        ``initialise`` make them): the galleries, the audit trail, the policies, the users and the probe store
        share them."""
        set_search_threads(SEARCH_THREADS)
        self.datadir = datadir
        self.galleries = Galleries(datadir, settings, keyring, store)
        self.audit = AuditTrail(store.engine, store.sessions, datadir, settings.audit.checkpoint_every,
                                settings.audit.checkpoint_minutes, open_witnesses(settings.audit, datadir))
        self.policies = PolicyStore(store.sessions)
        self.users = UserDirectory(store.sessions)
        self.probes = probe_store(datadir, keyring)
        self.context = Context(self.galleries, self.audit, self.policies, self.users, self.probes)
        self.auth = Authentication(self.context)
        self.searches = Searches(self.context)
        self.reviews = Reviews(self.context)
        self.overrides = Overrides(self.context, self.searches)
        self.calibrations = Calibrations(self.context)
        self.admin = Administration(self.context, self.calibrations)
        self.indexes = Indexes(self.context)
        self.rejected_photos = RejectedPhotos(self.context)
        self.oversight = Oversight(self.context)
        self.cases = Cases(self.context)
        self.retention = Retention(self.context)

    @classmethod
    def open(cls, datadir: DataDir, purge: bool = True) -> Facetrail:
        """Open an initialised data directory; past-retention probe images are purged first (the start hook)."""
        settings = datadir.settings()
        system = cls(datadir, settings, KeyRing.load(datadir), Store.open(datadir.database_url(settings)))
        if purge:
            system.retention.purge_expired(None)
        return system

    @classmethod
    def initialise(cls, datadir: DataDir, admin_username: str | None = None, admin_password: str | None = None) -> Facetrail:
        """Create or upgrade the data directory; create the first admin when there are no users yet."""
        datadir.create()
        settings = datadir.settings()
        keyring = KeyRing.create(datadir)
        system = cls(datadir, settings, keyring, Store.open(datadir.database_url(settings), upgrade=True))
        version, _ = system.policies.active()
        if system.users.count() == 0:
            if not admin_username or not admin_password:
                raise FacetrailError("the first run needs an admin account: give --admin USERNAME and a password")
            admin = system.users.create_user(admin_username, admin_password, ["admin"], display_name="Administrator")
            with system.audit.transaction() as session:
                system.audit.record(session, "system", "init", str(datadir.root), {"policy_version": version})
                system.audit.record(session, "system", "user_created", admin.username, {"roles": ["admin"], "unit": ""})
        system.calibrations.keep_calibration_files()
        return system

    def require(self, actor: Actor, action: str, target: str = "") -> None:
        """Raise PermissionDeniedError, audited, unless the actor's roles allow ``action`` (``users.ROLE_ACTIONS``):
        for an interface that checks before it reads an upload or draws a page."""
        self.context.require(actor, action, target)

    def health(self) -> tuple[bool, str]:
        """Whether the database answers, and whether the audit signing key is "present", "missing" (checkpoints were
        signed with it) or "not_created_yet" (no checkpoint yet): for a server's health check, no actor needed."""
        try:
            signed = self.audit.checkpoints_signed()
            database = True
        except Exception:  # noqa: BLE001 - any failure to answer means unavailable
            database, signed = False, True
        return database, "present" if self.audit.key_path.is_file() else "missing" if signed else "not_created_yet"

    @property
    def database_kind(self) -> str:
        """The store's database: "sqlite" or "postgresql"."""
        return self.galleries.engine.dialect.name

    def close(self) -> None:
        self.galleries.close()
