"""What every command shares: options, error handling, JSON output, and who is acting.

No command acts anonymously: each one establishes the acting user from
``FACETRAIL_TOKEN`` or the token that ``facetrail login`` saved for this data
directory, and the accountability layer checks that user's roles.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from facetrail.datadir import DATA_ENV, DataDir
from facetrail.errors import AuthenticationError, FacetrailError
from facetrail.store import readable_time  # noqa: F401 - the commands' tables show times so

TOKEN_ENV = "FACETRAIL_TOKEN"
SESSION_FILE_ENV = "FACETRAIL_SESSION_FILE"

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
DataOption = Annotated[Optional[Path], typer.Option("--data", envvar=DATA_ENV, help="Data directory [default: ./facetrail-data]")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on standard output.")]


def fail(message: str) -> None:
    """Print one error line and exit with status 2."""
    console.print(f"[bold red]error:[/] {message.replace('[', chr(92) + '[')}", highlight=False)
    raise typer.Exit(2)


def run(action: Callable[[], Any]) -> Any:
    """Run a command body, turning facetrail's user errors into a one-line message and exit status 2."""
    try:
        return action()
    except FacetrailError as exc:
        fail(str(exc))


def json_ready(value: Any) -> Any:
    """Strict JSON: non-finite numbers (an unreachable threshold is -inf) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(json_ready(data), indent=2, default=str, allow_nan=False) + "\n")


def whole(header: str) -> Column:
    """A table column whose values are never broken across lines: numbers, identifiers, times."""
    return Column(header, no_wrap=True)


def print_table(table: Table) -> None:
    """Print ``table`` on standard output, as wide as the terminal (``COLUMNS``; 80 when not a terminal) or, when its
    values need more, as wide as they need: text wraps between words, ``whole`` columns keep each value on one line,
    and no value is ever cut short."""
    unbounded = out.options.update_width(sys.maxsize)
    for column in table.columns:
        if column.no_wrap:
            column.min_width = max(Measurement.get(out, unbounded, cell).maximum for cell in (column.header, *column.cells))
    needed = Measurement.get(out, unbounded, table).minimum  # each column as wide as its longest word, or value
    if needed > out.width:
        table.width = needed  # lines run on past the terminal's edge rather than values being cut
    out.print(table)


def progress() -> Progress:
    """A progress bar on standard error that disappears when done."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True)


# --- sessions ---------------------------------------------------------------------------------------


def session_file() -> Path:
    """Where ``facetrail login`` keeps tokens, one per data directory (mode 0600)."""
    configured = os.environ.get(SESSION_FILE_ENV)
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "facetrail" / "sessions.json"


def saved_tokens() -> dict[str, str]:
    path = session_file()
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def save_token(datadir: DataDir, token: str | None) -> None:
    """Remember (or, with None, forget) the token for a data directory."""
    tokens = saved_tokens()
    if token is None:
        tokens.pop(str(datadir.root), None)
    else:
        tokens[str(datadir.root)] = token
    path = session_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(tokens), encoding="utf-8")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def current_token(datadir: DataDir) -> str | None:
    return os.environ.get(TOKEN_ENV) or saved_tokens().get(str(datadir.root))


@contextmanager
def opened(data: Path | None) -> Iterator[Any]:
    """The accountable system for the data directory, closed afterwards."""
    from facetrail.accountability.service import Facetrail

    system = Facetrail.open(DataDir.locate(data))
    try:
        yield system
    finally:
        system.close()


def acting(data: Path | None, body: Callable[[Any, Any], Any]) -> Any:
    """Run ``body(system, actor)`` as the logged-in user; errors become one line and exit status 2."""

    def authenticated() -> Any:
        with opened(data) as system:
            token = current_token(system.datadir)
            if not token:
                raise AuthenticationError("not logged in: run 'facetrail login USERNAME' or set FACETRAIL_TOKEN")
            return body(system, system.auth.authenticate(token))

    return run(authenticated)


def password_from(env: str, prompt: str, confirm: bool = False) -> str:
    """A password from an environment variable (for scripts) or a hidden prompt."""
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        fail(f"no password: set {env} or run interactively")
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
