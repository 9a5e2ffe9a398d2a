"""Names that must not pass for others: a new username, unit or grant that looks like an existing one but is not
(``a1ma`` beside ``alma``, a Cyrillic Н in ``RHD``) is refused, since lists, pages and the audit trail would show it
as the other."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrail.errors import AccountabilityError
from facetrail.textfold import fold


def refuse_imitation(session: Session, what: str, value: str, *columns) -> None:
    """Refuse (AccountabilityError) a non-empty ``what`` that is not, but looks like, a value already in ``columns``:
    the same ``textfold.fold``."""
    folded = fold(value)
    for column in columns if value else ():
        for existing in session.scalars(select(column).distinct()):
            if existing != value and fold(existing) == folded:
                raise AccountabilityError(f"{what} {value!r} looks like {existing!r}, which exists: choose one that "
                                          "cannot be taken for it")
