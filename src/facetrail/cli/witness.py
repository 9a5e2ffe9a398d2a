"""``facetrail witness``: run a witness of other offices' audit trails (docs/audit.md, "Running a witness in another
office"). These commands use the witness's own directory (``--dir`` or ``FACETRAIL_WITNESS_DIR``), never a facetrail
data directory, and act as whoever can read that directory: there is no facetrail user here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facetrail.cli.common import JsonOption, console, emit_json, fail, out, run
from facetrail.witness.office import DIR_ENV, WitnessOffice, WitnessSettings

witness_app = typer.Typer(no_args_is_help=True, help="Run a witness that keeps other offices' signed audit heads.")
DirOption = Annotated[Optional[Path], typer.Option(
    "--dir", envvar=DIR_ENV, help="The witness's directory [default: ./facetrail-witness]")]


@witness_app.command("serve")
def witness_serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8100,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", envvar="FACETRAIL_WITNESS_MAX_BODY_BYTES",
                                                help="Largest request body.")] = WitnessSettings.max_body_bytes,
    rate_limit: Annotated[int, typer.Option("--rate-limit", envvar="FACETRAIL_WITNESS_RATE_LIMIT",
                                            help="Requests a minute from one address.")] = WitnessSettings.rate_limit,
    tls_cert: Annotated[Optional[Path], typer.Option("--tls-cert", help="Serve HTTPS with this certificate (PEM).")] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key", help="...and this private key (PEM).")] = None,
    directory: DirOption = None,
) -> None:
    """Serve the witness (HTTP under /witness/v1) until interrupted; creates its directory and key on first start."""
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together")
    from facetrail.witness.app import serve  # the web stack, only for this command

    office = run(lambda: WitnessOffice.locate(directory))
    settings = run(lambda: WitnessSettings(max_body_bytes, rate_limit))
    run(lambda: serve(office, settings, host, port, tls_cert, tls_key))


@witness_app.command("add-log")
def witness_add_log(
    public_key: Annotated[Path, typer.Option("--public-key", help="The log's audit-public-key.pem, obtained from its "
                                                                  "agency through a channel you trust.")],
    name: Annotated[str, typer.Option("--name", help="What to call the log, e.g. \"County face search\".")] = "",
    directory: DirOption = None,
) -> None:
    """Register a log by its audit public key: the witness accepts heads signed with it and with no other."""
    try:
        pem = public_key.read_bytes()
    except OSError as exc:
        fail(f"cannot read {public_key}: {exc.strerror or exc}")
    log = run(lambda: WitnessOffice.locate(directory).add_log(pem, name, str(public_key)))
    console.print(f"registered the log {log.name or '(unnamed)'} with key id {log.key_id}")


@witness_app.command("logs")
def witness_logs(directory: DirOption = None, as_json: JsonOption = False) -> None:
    """List the registered logs and how many heads the witness holds for each."""
    office = run(lambda: WitnessOffice.locate(directory))
    rows = run(lambda: [{**log.describe(), "heads": len(office.heads(log.key_id))} for log in office.logs()])
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        out.print(f"{row['key_id']}  {row['heads']:>6} heads  {row['name']}  (registered {row['added_at']})")


@witness_app.command("key")
def witness_key(directory: DirOption = None) -> None:
    """Print the witness's public key (PEM) and key id, creating them on first use, for the logs' operators."""
    office = run(lambda: WitnessOffice.locate(directory))
    run(office.prepare)
    out.print(office.public_key_pem(), end="", highlight=False)
    console.print(f"witness key id {office.key_id()}")


def register(app: typer.Typer) -> None:
    app.add_typer(witness_app, name="witness")
