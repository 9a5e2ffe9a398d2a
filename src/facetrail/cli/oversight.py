"""Oversight: transparency reports and the audit trail."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from facetrail.cli.common import (DataOption, JsonOption, acting, console, emit_json, fail, out, print_table,
                                  readable_time, whole)

audit_app = typer.Typer(no_args_is_help=True, help="Verify and export the tamper-evident audit trail.")


def report(
    since: Annotated[Optional[dt.datetime], typer.Option("--since", formats=["%Y-%m-%d"], help="First day (YYYY-MM-DD).")] = None,
    until: Annotated[Optional[dt.datetime], typer.Option("--until", formats=["%Y-%m-%d"], help="Last day (YYYY-MM-DD).")] = None,
    by: Annotated[str, typer.Option("--by", help="month, user, unit, purpose, offence, gallery or outcome.")] = "month",
    format: Annotated[str, typer.Option("--format", help="html, csv or json.")] = "html",
    unit: Annotated[Optional[str], typer.Option("--unit", help="Only requests by this unit.")] = None,
    purpose: Annotated[Optional[str], typer.Option("--purpose", help="Only requests for this purpose.")] = None,
    outcome: Annotated[Optional[str], typer.Option("--outcome", help="Only requests with this outcome, e.g. lead or refused.")] = None,
    output: Annotated[Optional[Path], typer.Option("--out", help="Write to this file instead of standard output.")] = None,
    data: DataOption = None,
) -> None:
    """Transparency report: how often, by whom, for what, with what outcome — with charts and anomaly flags."""
    text = acting(data, lambda system, actor: system.oversight.transparency_report(
        actor, since.date() if since else None, until.date() if until else None, by, format, unit, purpose, outcome))
    if output is None:
        print(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc}")
    console.print(f"wrote {output}")


@audit_app.command("verify")
def audit_verify(data: DataOption = None, as_json: JsonOption = False) -> None:
    """Recompute the hash chain, check the signed checkpoints and the heads the witnesses hold; report the first
    broken entry, then the witnesses' gaps."""
    result = acting(data, lambda system, actor: system.oversight.verify_audit(actor))
    if as_json:
        emit_json(result.__dict__)
    elif result.ok:
        checked = (f"{result.checkpoints} signed checkpoints valid" if result.checkpoints else
                   "no signed checkpoint was due yet (one is signed every audit.checkpoint_every entries or "
                   "audit.checkpoint_minutes)")
        out.print(f"audit trail intact: {result.entries} entries checked, {checked}; a checkpoint signed now vouches "
                  f"for all {result.entries}")
    else:
        out.print(f"[bold red]AUDIT TRAIL BROKEN[/] at entry {result.first_bad_seq}: {result.problem}")
    for note in [] if as_json else result.notes():
        out.print(f"note: {note}", markup=False)
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(folder: Path, data: DataOption = None) -> None:
    """Write the trail (JSON Lines), the signed checkpoints, the public key and a standalone verifier."""
    written = acting(data, lambda system, actor: system.oversight.export_audit(actor, folder))
    console.print(f"wrote {written} (verify with: python {written / 'verify_audit.py'})")


@audit_app.command("show")
def audit_show(
    since_seq: Annotated[int, typer.Option("--since-seq")] = 0,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    actor_name: Annotated[Optional[str], typer.Option("--actor")] = None,
    action: Annotated[Optional[str], typer.Option("--action")] = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Browse audit entries (auditor, supervisor): a table, oldest first, each entry's details one per line."""
    entries = acting(data, lambda system, actor: system.oversight.audit_entries(actor, since_seq, limit, actor_name, action))
    if as_json:
        emit_json(entries)
        return
    table = Table(whole("entry"), whole("time"), "who", "action", "subject", "details")
    for entry in entries:
        table.add_row(str(entry["seq"]), readable_time(entry["recorded_at"]), Text(entry["actor"]), Text(entry["action"]),
                      Text(entry["target"] or ""), Text(_details(entry["details"])))
    print_table(table)


def _details(details: dict | None) -> str:
    """An entry's details for reading: one 'name: value' line each, values that are not text as compact JSON."""
    return "\n".join(f"{name}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)}"
                     for name, value in (details or {}).items())


def register(app: typer.Typer) -> None:
    app.command()(report)
    app.add_typer(audit_app, name="audit")
