"""Allow ``python -m facetrail``."""

from facetrail.cli import app

app(prog_name="facetrail")
