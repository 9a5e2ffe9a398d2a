"""Index upkeep: retraining a gallery's index for its size, on an admin's command or in the server's quiet hour.

A gallery's index is trained at ``index.compress_at`` templates and outgrows its quantizers three times as the
gallery grows to millions (``facetrail.gallery.gallery.Gallery.retrain_index``); each retraining takes minutes and
holds up no search. ``index.retrain`` chooses when it happens: in the quiet hour (the server's ``QuietHourTimer``),
after the enrolment that outgrew it, or only on command. Every retraining is audited when it starts and when it ends,
with its gallery, inverted lists before and after, and time.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from facetrail.accountability.context import Context
from facetrail.accountability.users import Actor
from facetrail.errors import GalleryError, IndexFileError
from facetrail.gallery.gallery import Gallery, IndexState

logger = logging.getLogger("facetrail.indexes")

TIMER_SECONDS = 60.0
"""How often the server's timer looks at the clock for the quiet hour."""


class Indexes:
    """Retraining galleries' indexes (admins; the system itself in the quiet hour)."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._quiet_day: dt.date | None = None
        """The day this process last retrained in the quiet hour."""

    def retrain(self, by: Actor, name: str, force: bool = False) -> dict[str, Any]:
        """Retrain gallery ``name``'s index for its size now (admins; audited as it starts and ends): refused, saying
        why, while the index is searched exactly or its inverted lists still suit the gallery's size (unless
        ``force``). Searches go on meanwhile. Returns the version, templates, lists before and after, and seconds."""
        self.context.require(by, "manage_galleries")
        return self._retrain(by.username, self.context.galleries.get(name), force, "command")

    def quiet_hour(self, now: dt.datetime) -> list[dict[str, Any]]:
        """Once a day, in the hour ``index.quiet_hour`` of ``now`` (local time) and when ``index.retrain`` is
        "quiet_hour": retrain, as "system", the index of every gallery that has outgrown it. Returns what was
        retrained; a gallery that could not be is logged and left for the next day."""
        config = self.context.settings.index
        if config.retrain != "quiet_hour" or now.hour != config.quiet_hour or self._quiet_day == now.date():
            return []
        self._quiet_day = now.date()
        done = []
        for info in self.context.galleries.list():
            gallery = self.context.galleries.get(info.name)
            try:
                state = gallery.index_state()
                if state is not None and state.outgrown:
                    done.append(self._retrain("system", gallery, False, "quiet_hour"))
            except IndexFileError:
                logger.exception("gallery %r: its index could not be retrained in the quiet hour", info.name)
            except GalleryError as exc:  # e.g. another server process retrained it first
                logger.info("gallery %r: not retrained in the quiet hour: %s", info.name, exc)
        return done

    def start_timer(self, interval: float = TIMER_SECONDS) -> QuietHourTimer:
        """Start the server's background thread that retrains in the quiet hour; ``stop()`` it at shutdown."""
        timer = QuietHourTimer(self, interval)
        timer.start()
        return timer

    def _retrain(self, actor: str, gallery: Gallery, force: bool, trigger: str) -> dict[str, Any]:
        audit = self.context.audit

        def started(state: IndexState) -> None:
            audit.append(actor, "index_retraining_started", gallery.name, {**state.to_dict(), "force": force, "trigger": trigger})

        retraining = gallery.retrain_index(force, started)
        summary = {**retraining.to_dict(), "force": force, "trigger": trigger}
        audit.append(actor, "index_retrained", gallery.name, summary)
        return summary


class QuietHourTimer(threading.Thread):
    """A server's background thread: every ``interval`` seconds, ``Indexes.quiet_hour`` at the local time. A
    retraining it runs holds the gallery's write lock for minutes; stopping the server meanwhile leaves the index as
    it was or retrained (its manifest is the commit point)."""

    def __init__(self, indexes: Indexes, interval: float) -> None:
        super().__init__(name="facetrail-index-quiet-hour", daemon=True)
        self.indexes = indexes
        self.interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.indexes.quiet_hour(dt.datetime.now())
            except Exception:  # noqa: BLE001 - a database hiccup must not end the timer; tomorrow retries
                logger.exception("the quiet hour's index retraining failed")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and wait (at most ``timeout`` seconds) for it to finish what it is doing."""
        self._stopped.set()
        if self.is_alive():
            self.join(timeout)
