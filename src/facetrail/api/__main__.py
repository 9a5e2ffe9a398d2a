"""``python -m facetrail.api [--host H] [--port P] [--workers N] [--data DIR]``: run the HTTP API."""

from __future__ import annotations

import argparse

from facetrail.api.app import serve
from facetrail.errors import FacetrailError

parser = argparse.ArgumentParser(prog="python -m facetrail.api", description="Run the facetrail HTTP API.")
parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: 127.0.0.1).")
parser.add_argument("--port", type=int, default=8000, help="Port (default: 8000).")
parser.add_argument("--workers", type=int, default=1, help="Server processes (more than 1 needs PostgreSQL).")
parser.add_argument("--data", default=None, help="Data directory (default: FACETRAIL_DATA or ./facetrail-data).")
arguments = parser.parse_args()
try:
    serve(arguments.host, arguments.port, arguments.data, arguments.workers)
except FacetrailError as exc:
    parser.exit(2, f"error: {exc}\n")
