"""The ``facetrail`` command line.

Every command names its data directory with ``--data`` (or ``FACETRAIL_DATA``)
and, except ``init`` and ``login``, acts as the logged-in user
(``FACETRAIL_TOKEN`` or the token saved by ``facetrail login``). User errors
print one line naming the problem and exit with status 2; nothing is
half-written.
"""

from __future__ import annotations

import typer

from facetrail.cli import admin, evaluate, galleries, indexes, models, oversight, searching, witness

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Accountable face search: ranked investigative leads from authorized galleries, every search audited.",
)
for module in (admin, galleries, searching, oversight, evaluate, models, witness, indexes):
    module.register(app)
