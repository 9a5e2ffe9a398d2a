"""Bytes a face costs in the store, and bytes a search adds to the audit trail, on PostgreSQL.

Initialises a data directory on a fresh PostgreSQL database (created on the server named by
``FACETRAIL_TEST_DATABASE_URL``, dropped afterwards), enrols the first ``--count`` photographs of ``--images``
through the audited service (as ``facetrail enroll`` does), then makes ``--searches`` real searches with the next
photographs as probes (their largest face). After each phase it reads every table's ``pg_total_relation_size``
(rows, TOAST and indexes) and row count, and the bytes of the data directory's folders, and prints the growth per
enrolled photograph and per search. Small runs round tables up to 8 KiB pages: read the figures to the tens of bytes. It asserts nothing.

    FACETRAIL_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres \\
        python benchmarks/bench_store_size.py --images ../shared/faces/lfw-dev --count 400 --searches 40
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

from facetrail.accountability.requests import CaseRequest
from facetrail.accountability.service import Facetrail
from facetrail.datadir import DATABASE_URL_ENV, DataDir
from facetrail.gallery.enrol import EnrolItem

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_enrol import sample_images  # noqa: E402
from benchmarks.bench_service_search import PASSWORD, SEARCHES_PER_INVESTIGATOR, searching_investigators  # noqa: E402
from tests.fixtures.database import fresh_database_url, finish_drops  # noqa: E402

FOLDERS = ("images", "probes", "indexes")


def tables(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """``pg_total_relation_size`` (rows, TOAST and indexes) and the row count of every table in the public schema."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            sizes = dict(connection.execute(text(
                "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
                "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")).all())
            rows = {name: connection.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one() for name in sizes}
    finally:
        engine.dispose()
    return sizes, rows


def folder_bytes(datadir: DataDir) -> dict[str, int]:
    """Bytes of the files under each of the data directory's growing folders."""
    return {name: sum(p.stat().st_size for p in (datadir.root / name).rglob("*") if p.is_file()) for name in FOLDERS}


def growth(before: dict[str, int], after: dict[str, int], per: int) -> dict[str, float]:
    """What grew between two snapshots, divided by ``per``, largest first."""
    grown = {name: (after[name] - before.get(name, 0)) / per for name in after if after[name] != before.get(name, 0)}
    return dict(sorted(grown.items(), key=lambda item: -item[1]))


def show(title: str, figures: dict[str, float]) -> None:
    print(title)
    for name, value in figures.items():
        print(f"  {name:<22} {value:>10,.0f}")
    print(f"  {'total':<22} {sum(figures.values()):>10,.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/faces/lfw-dev"))
    parser.add_argument("--count", type=int, default=400, help="photographs enrolled")
    parser.add_argument("--searches", type=int, default=40, help="searches made, each with a photograph not enrolled")
    parser.add_argument("--workers", type=int, default=2, help="enrolment processes")
    args = parser.parse_args()
    photographs = sample_images(args.images, args.count + args.searches)
    enrolled, probes = photographs[: args.count], photographs[args.count :]
    with fresh_database_url() as url, tempfile.TemporaryDirectory() as scratch:
        os.environ[DATABASE_URL_ENV] = url
        datadir = DataDir(Path(scratch) / "data")
        system = Facetrail.initialise(datadir, "admin", PASSWORD)
        admin = system.auth.authenticate(system.auth.login("admin", PASSWORD)[1])
        system.admin.create_gallery(admin, "county", ["booking"])
        investigators = searching_investigators(system, admin, "county", args.searches)
        (sizes, rows), folders = tables(url), folder_bytes(datadir)
        rules = dataclasses.replace(system.galleries.settings.enrolment, workers=args.workers)
        summary = system.admin.enrol(admin, "county", [EnrolItem(path, f"B-{who}", "booking") for who, path in enrolled], rules)
        faces = summary.count("enrolled")
        (sizes_enrolled, rows_enrolled), folders_enrolled = tables(url), folder_bytes(datadir)
        for number, (_, path) in enumerate(probes):
            system.searches.search(investigators[number // SEARCHES_PER_INVESTIGATOR], path.read_bytes(), CaseRequest(
                gallery="county", case_number=f"26-{number:06d}", purpose="criminal_investigation", offence="robbery",
                note="capacity benchmark search", face_number=1))
        (sizes_searched, rows_searched), folders_searched = tables(url), folder_bytes(datadir)
        system.close()
        os.environ.pop(DATABASE_URL_ENV)
    finish_drops()
    figures = {
        "photographs": len(enrolled),
        "enrolled": faces,
        "photograph_file_bytes_per_enrolled": round(sum(p.stat().st_size for _, p in enrolled) / len(enrolled)),
        "searches": len(probes),
        "probe_file_bytes_per_search": round(sum(p.stat().st_size for _, p in probes) / len(probes)),
        "per_face_tables": growth(sizes, sizes_enrolled, faces),
        "per_face_rows": growth(rows, rows_enrolled, faces),
        "per_face_folders": growth(folders, folders_enrolled, faces),
        "per_search_tables": growth(sizes_enrolled, sizes_searched, len(probes)),
        "per_search_rows": growth(rows_enrolled, rows_searched, len(probes)),
        "per_search_folders": growth(folders_enrolled, folders_searched, len(probes)),
    }
    print(f"{faces} of {len(enrolled)} photographs enrolled (JPEG files {figures['photograph_file_bytes_per_enrolled']:,} B "
          f"each on average); {len(probes)} searches (probe files {figures['probe_file_bytes_per_search']:,} B)")
    show("bytes per enrolled face, PostgreSQL tables (pg_total_relation_size):", figures["per_face_tables"])
    print("rows per enrolled face:", {name: round(value, 3) for name, value in figures["per_face_rows"].items()})
    show("bytes per enrolled face, data directory:", figures["per_face_folders"])
    show("bytes per search, PostgreSQL tables:", figures["per_search_tables"])
    print("rows per search:", {name: round(value, 3) for name, value in figures["per_search_rows"].items()})
    show("bytes per search, data directory:", figures["per_search_folders"])
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
