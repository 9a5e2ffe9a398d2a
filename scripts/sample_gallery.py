"""The main job of `make run`: set up a sample system on first start, then serve the web application and API.

On first start every step is a real `facetrail` command, echoed before it runs (in this process, which loads the
command line and the face model once rather than once a command):
initialise a data directory with its first admin and calibrate the estimated
false-match rate on every pair of different people in the sample's photographs
(all 400 ORL faces, or the face_recognition photographs), create a second admin and a user for each role
(the second admin asks, the first confirms the roles that see photographs),
create and authorize a gallery, enrol sample photographs, run a case-bound
search, have two examiners review it blind, export the lead, write the
transparency report and verify the audit trail. Then (and on every later
start) it serves the web application on 127.0.0.1 and prints the address and
how to log in.

The sample is the ORL face set from ../shared/faces when present (40 people,
10 photographs each), otherwise the photographs of the face_recognition 1.3.0
source distribution (see tests/fixtures/face_images.py). Sample passwords are
generated once and kept in DATA/sample-passwords.json (mode 0600).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shlex
import shutil
import sys
from contextlib import nullcontext, redirect_stderr, redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.face_images import face_images  # noqa: E402

FACETRAIL = str(Path(sys.executable).parent / "facetrail")
GALLERY = "sample"
SOURCE = "research-sample"
CASE = "24-000101"
USERS = {
    "ivan": ("investigator", "RHD"),
    "erin": ("examiner", "Forensics"),
    "ezra": ("examiner", "Forensics"),
    "sam": ("supervisor", "RHD"),
    "alma": ("auditor", "Inspector-General"),
}
SECOND_ADMIN = "root"
"""The admin who creates the sample's users; the first admin, who did not create it, confirms the roles that see
photographs (one admin alone cannot give them)."""
READY = ".sample-ready"
"""Written in the data directory once the sample is set up; later starts only serve."""


def facetrail(*args: str, token: str | None = None, capture: bool = False, env: dict | None = None) -> str:
    """Run one facetrail command as the given user, showing it first; returns its standard output when ``capture``."""
    print(f"\n$ facetrail {shlex.join(args)}", flush=True)
    return run_command(args, {**(env or {}), **({"FACETRAIL_TOKEN": token} if token else {})}, capture)


def quiet(*args: str, token: str, env: dict | None = None) -> str:
    """Run one facetrail command as the given user (none: ``token`` empty) unseen; returns its standard output."""
    return run_command(args, {**(env or {}), "FACETRAIL_TOKEN": token}, capture=True)


def run_command(args: tuple[str, ...], env: dict[str, str], capture: bool) -> str:
    """``facetrail ARGS`` as its entry point runs it, in this process with ``env`` added to the environment; returns
    its standard output when ``capture`` (its standard error then shows only if it fails). Raises SystemExit when it
    fails."""
    from facetrail.cli import app  # here: a start that only serves does without it

    saved = dict(os.environ)
    os.environ.update(env)
    output, errors = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(output) if capture else nullcontext(), redirect_stderr(errors) if capture else nullcontext():
            app([*args], prog_name="facetrail")
    except SystemExit as stopped:
        if stopped.code:
            raise SystemExit(f"{errors.getvalue()}facetrail {shlex.join(args)} failed (status {stopped.code})") from None
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return output.getvalue()


def copy_whole(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` under a temporary name, then rename it: the sample folders are shared by every
    run from this checkout (`make run`, and the browser test of `make test` in any test process), and a run that
    reads them while another copies never sees half a photograph."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def sample_sets(shared: Path, cache: Path) -> tuple[Path, Path, Path]:
    """(gallery folder, probe photograph, folder of people to calibrate the estimated false-match rate on)."""
    orl = shared / "att_faces"
    if orl.is_dir():
        print(f"sample: ORL faces from {orl} (40 people × 10 photographs)")
        gallery = cache / "orl-gallery"
        for person in sorted(p for p in orl.iterdir() if p.is_dir()):
            (gallery / person.name).mkdir(parents=True, exist_ok=True)
            for photo in sorted(person.glob("*.pgm"))[:5]:
                copy_whole(photo, gallery / person.name / photo.name)
        return gallery, orl / "s12" / "8.pgm", orl
    print("sample: the face_recognition 1.3.0 test photographs (../shared/faces is absent)")
    photos = face_images()
    gallery, people = cache / "gallery", cache / "face_recognition-photographs"
    for subject, name in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        (gallery / subject).mkdir(parents=True, exist_ok=True)
        copy_whole(photos[name], gallery / subject / name)
    for subject, names in (("obama", ("obama.jpg", "obama2.jpg", "obama3.jpg")), ("biden", ("biden.jpg",))):
        (people / subject).mkdir(parents=True, exist_ok=True)
        for name in names:
            copy_whole(photos[name], people / subject / name)
    return gallery, photos["obama2.jpg"], people


def passwords(data: Path) -> dict[str, str]:
    """Sample passwords, generated once and kept (0600) in the data directory."""
    path = data / "sample-passwords.json"
    if path.exists():
        return json.loads(path.read_text())
    chosen = {name: secrets.token_urlsafe(12) for name in ["admin", SECOND_ADMIN, *USERS]}
    data.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chosen, indent=2))
    os.chmod(path, 0o600)
    return chosen


def set_up(data_dir: Path, shared_faces: Path) -> None:
    """The accountable walk-through that fills a new data directory with a sample gallery, users and one lead."""
    gallery_folder, probe, people = sample_sets(shared_faces, ROOT / ".cache" / "sample")
    secret = passwords(data_dir)
    data = ["--data", str(data_dir)]

    facetrail("init", *data, "--admin", "admin", "--calibrate-from", str(people), env={"FACETRAIL_ADMIN_PASSWORD": secret["admin"]})
    tokens = {"admin": quiet("login", "admin", "--print-token", *data, token="", env={"FACETRAIL_PASSWORD": secret["admin"]}).strip()}
    existing = {u["username"] for u in json.loads(quiet("user", "list", "--json", *data, token=tokens["admin"]))}
    if SECOND_ADMIN not in existing:
        facetrail("user", "create", SECOND_ADMIN, "--role", "admin", *data, token=tokens["admin"],
                  env={"FACETRAIL_NEW_PASSWORD": secret[SECOND_ADMIN]})
    tokens[SECOND_ADMIN] = quiet("login", SECOND_ADMIN, "--print-token", *data, token="",
                                 env={"FACETRAIL_PASSWORD": secret[SECOND_ADMIN]}).strip()
    for username, (role, unit) in USERS.items():
        if username not in existing:
            facetrail("user", "create", username, "--role", role, "--unit", unit, *data, token=tokens[SECOND_ADMIN],
                      env={"FACETRAIL_NEW_PASSWORD": secret[username]})
    for request in json.loads(quiet("user", "requests", "--json", *data, token=tokens["admin"])):
        facetrail("user", "confirm", request["username"], *data, token=tokens["admin"])
    for username in USERS:
        tokens[username] = quiet("login", username, "--print-token", *data, token="", env={"FACETRAIL_PASSWORD": secret[username]}).strip()
    if GALLERY not in [g["name"] for g in json.loads(quiet("gallery", "list", "--json", *data, token=tokens["admin"]))]:
        facetrail("gallery", "create", GALLERY, "--allowed-source", SOURCE, "--description", "Demonstration gallery of research photographs", *data, token=tokens["admin"])
        facetrail("gallery", "grant", GALLERY, "--unit", "RHD", *data, token=tokens["admin"])
    report = data_dir / "sample-enrolment-report.csv"
    facetrail("enroll", str(gallery_folder), "--gallery", GALLERY, "--source", SOURCE, "--report", str(report), *data, token=tokens["admin"])

    result = json.loads(facetrail("search", str(probe), "--gallery", GALLERY, "--case", CASE, "--purpose", "criminal_investigation",
                                  "--offence", "robbery", "--note", "still from the bank camera", "--json", *data,
                                  token=tokens["ivan"], capture=True))
    top = result["candidates"][0]
    print(f"search {result['search_id']}: {len(result['candidates'])} candidates; rank 1 is subject {top['subject_id']} "
          f"at distance {top['distance']:.3f}\n{result['notice']}")
    for examiner in ("erin", "ezra"):
        facetrail("review", "queue", *data, token=tokens[examiner])
        facetrail("review", "decide", str(result["search_id"]), "--rank", "1", "--decision", "possible_lead",
                  "--notes", f"{examiner}: features consistent", *data, token=tokens[examiner])
    lead = data_dir / f"lead-search-{result['search_id']}.html"
    facetrail("lead", "export", str(result["search_id"]), "--out", str(lead), *data, token=tokens["ivan"])
    transparency = data_dir / "transparency-report.html"
    facetrail("report", "--since", "2009-01-01", "--format", "html", "--out", str(transparency), *data, token=tokens["alma"])
    facetrail("audit", "verify", *data, token=tokens["alma"])
    for token in tokens.values():
        quiet("logout", *data, token=token)
    (data_dir / READY).write_text(f"sample probe: {probe}\n")
    print(f"\nlead report: {lead}\ntransparency report: {transparency}")


def serve(data_dir: Path, port: int) -> None:
    """Replace this process with the server on 127.0.0.1 after printing where it is and how to log in."""
    secret = passwords(data_dir)
    roles = {"admin": "admin", SECOND_ADMIN: "admin", **{name: role for name, (role, _) in USERS.items()}}
    print(f"\nfacetrail is serving {data_dir} at http://127.0.0.1:{port}/  (Ctrl-C stops it)\n"
          f"Log in there with one of the sample accounts (passwords are kept in {data_dir / 'sample-passwords.json'}):")
    for name, role in roles.items():
        print(f"  {name:6} {role:13} {secret[name]}")
    print(f"The sample probe: {(data_dir / READY).read_text().split(': ', 1)[1].strip()}\n"
          f"HTTP API: http://127.0.0.1:{port}/api/v1/openapi.json (docs/api.md)", flush=True)
    # plain HTTP on the loopback address only: session cookies cannot be marked Secure there
    os.execve(FACETRAIL, [FACETRAIL, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data_dir)],
              {**os.environ, "FACETRAIL_API_COOKIE_SECURE": "false"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="facetrail-data")
    parser.add_argument("--shared-faces", default="../shared/faces")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--no-serve", action="store_true", help="set up the sample and stop")
    args = parser.parse_args()
    data_dir = Path(args.data)
    if (data_dir / READY).exists():
        print(f"{data_dir} is already set up (delete it to start again)")
    else:
        set_up(data_dir, Path(args.shared_faces))
    if not args.no_serve:
        serve(data_dir, args.port)


if __name__ == "__main__":
    main()
