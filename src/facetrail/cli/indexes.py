"""The galleries' vector indexes: retraining one for its gallery's size."""

from __future__ import annotations

from typing import Annotated

import typer

from facetrail.cli.common import DataOption, JsonOption, acting, console, emit_json, progress

index_app = typer.Typer(no_args_is_help=True, help="Look after the galleries' vector indexes.")


@index_app.command("retrain")
def index_retrain(
    name: str,
    force: Annotated[bool, typer.Option("--force", help="Retrain even though the gallery has not outgrown its inverted lists.")] = False,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Retrain a gallery's index for its size now, at the same gallery version (admin; audited): minutes at millions of
    templates, while searches go on. Refused while the index is searched exactly or its inverted lists still suit the
    gallery, unless --force. index.retrain in config.toml says when this happens without a command."""

    def body(system, actor):
        with progress() as bar:
            bar.add_task(f"retraining the index of {name}", total=None)
            return system.indexes.retrain(actor, name, force)

    summary = acting(data, body)
    if as_json:
        emit_json(summary)
        return
    console.print(f"index of gallery {name!r} retrained at version {summary['version']}: {summary['lists_before']:,} -> "
                  f"{summary['lists_after']:,} inverted lists for {summary['templates']:,} templates "
                  f"({summary['seconds']} s)", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
