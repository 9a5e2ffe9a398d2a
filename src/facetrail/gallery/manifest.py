"""The enrolment manifest: a CSV naming each photograph's subject and provenance, one definition of its columns
(``MANIFEST_COLUMNS``, which the command line's help, the API's description and the web's enrolment form show) and
one parser for every interface.

Columns: ``subject_id`` and ``path`` (required; ``path`` may be called ``file``), ``source`` and ``capture_date``
(ISO date, YYYY-MM-DD; optional); other columns are kept as the image's metadata. On the command line ``path`` is a
file's path, relative to a base folder; with uploads (web, API) it is the uploaded file's name.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

from facetrail.errors import FacetrailError
from facetrail.gallery.enrol import EnrolItem
from facetrail.gallery.gallery import SUBJECT_ID_MAX, check_subject_id

@dataclass(frozen=True)
class ManifestColumn:
    """A column of the manifest: its name, another name it may go by, whether every row needs it, what it holds."""

    name: str
    required: bool
    meaning: str
    alias: str = ""


MANIFEST_COLUMNS = (
    ManifestColumn("subject_id", True, f"the person's id in the gallery, e.g. a booking number: 1 to {SUBJECT_ID_MAX} "
                                       "letters, digits, '.', '_' or '-'"),
    ManifestColumn("path", True, "the photograph: the uploaded file's name; on the command line, its path relative to "
                                 "the folder given (by default the manifest's)", alias="file"),
    ManifestColumn("source", False, "its provenance, one of the gallery's allowed sources; rows without one take the "
                                    "source given for all"),
    ManifestColumn("capture_date", False, "when it was taken, YYYY-MM-DD"),
)
"""The manifest's columns, in order; any other column is kept as the photograph's metadata."""
PATH_COLUMNS = ("path", MANIFEST_COLUMNS[1].alias)
"""The column naming each photograph, and its alias (the first present is used)."""
KNOWN_COLUMNS = tuple(name for column in MANIFEST_COLUMNS for name in (column.name, column.alias) if name)


def manifest_summary() -> str:
    """The columns in one line, for help texts: 'subject_id, path (or file), optionally source, capture_date; …'."""
    def named(column: ManifestColumn) -> str:
        return column.name + (f" (or {column.alias})" if column.alias else "")

    required = [named(column) for column in MANIFEST_COLUMNS if column.required]
    optional = [named(column) for column in MANIFEST_COLUMNS if not column.required]
    return f"{', '.join(required)}, optionally {', '.join(optional)}; other columns are kept as metadata"


@dataclass(frozen=True)
class ManifestRow:
    """One photograph named by a manifest, with its line number."""

    line: int
    path: str
    subject_id: str
    source: str
    capture_date: dt.date | None
    extra: dict[str, str]

    def item(self, path: Path, data: bytes | None = None) -> EnrolItem:
        """The enrolment item of this row's photograph, at ``path`` (or, with ``data``, uploaded under that name)."""
        return EnrolItem(path, self.subject_id, self.source, self.capture_date, self.extra, data)


def read_manifest(text: str, default_source: str | None, name: str = "manifest") -> list[ManifestRow]:
    """The rows of a manifest's CSV text; ``default_source`` serves rows without a source. FacetrailError naming the
    manifest (``name``) and the line of the first problem."""
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    path_column = next((column for column in PATH_COLUMNS if column in columns), PATH_COLUMNS[0])
    missing = [column for column in ("subject_id", path_column) if column not in columns]
    if missing:
        raise FacetrailError(f"{name}: missing column(s) {', '.join(missing)}")
    rows = []
    try:
        for line, row in enumerate(reader, start=2):
            rows.append(_row(row, line, path_column, default_source, name))
    except csv.Error as exc:
        raise FacetrailError(f"{name}: not valid CSV: {exc}") from None
    if not rows:
        raise FacetrailError(f"{name}: no rows")
    return rows


def items_from_manifest(manifest: Path, default_source: str | None, base: Path | None = None) -> list[EnrolItem]:
    """Items from a manifest file whose paths are relative to ``base`` (default: the manifest's folder)."""
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FacetrailError(f"{manifest}: cannot read manifest: {exc}") from exc
    base = base or manifest.parent
    return [row.item(base / row.path) for row in read_manifest(text, default_source, str(manifest))]


def items_from_uploads(manifest: str, uploads: list[tuple[str, bytes]], default_source: str | None) -> list[EnrolItem]:
    """Uploaded photographs, ``(file name, bytes)``, as items held in memory, each by the manifest row naming it;
    refused unless the manifest names exactly the uploaded files, each once."""
    names = [file_name for file_name, _ in uploads]
    if len(set(names)) != len(names):
        raise FacetrailError("two uploaded files have the same name; the manifest names each file once")
    rows: dict[str, ManifestRow] = {}
    for row in read_manifest(manifest, default_source):
        if row.path in rows:
            raise FacetrailError(f"manifest:{row.line}: {row.path!r} is named twice")
        rows[row.path] = row
    problems = []
    if missing := sorted(set(names) - set(rows)):
        problems.append(f"no manifest row for {', '.join(missing)}")
    if unknown := sorted(set(rows) - set(names)):
        problems.append(f"no file uploaded for {', '.join(unknown)}")
    if problems:
        raise FacetrailError("the manifest and the files differ: " + "; ".join(problems))
    return [rows[file_name].item(Path(file_name), data) for file_name, data in uploads]


def _row(row: dict[str | None, str], line: int, path_column: str, default_source: str | None, name: str) -> ManifestRow:
    """One CSV row checked: a source, a subject id enrolment accepts, a path, an ISO capture date if any."""
    where = f"{name}:{line}"
    source = (row.get("source") or default_source or "").strip()
    if not source:
        raise FacetrailError(f"{where}: no source (give a 'source' column, or a source for the rows without one)")
    subject, path = (row.get("subject_id") or "").strip(), (row.get(path_column) or "").strip()
    if not subject or not path:
        raise FacetrailError(f"{where}: subject_id and {path_column} are required")
    try:
        check_subject_id(subject)
    except FacetrailError as exc:
        raise FacetrailError(f"{where}: {exc}") from None
    written_date = (row.get("capture_date") or "").strip()
    try:
        captured = dt.date.fromisoformat(written_date) if written_date else None
    except ValueError:
        raise FacetrailError(f"{where}: capture_date {written_date!r} is not an ISO date (YYYY-MM-DD)") from None
    extra = {column: value for column, value in row.items() if column not in KNOWN_COLUMNS and column is not None}
    return ManifestRow(line, path, subject, source, captured, extra)
