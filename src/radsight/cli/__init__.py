"""The ``radsight`` command line: one module a command family, registered here."""
from __future__ import annotations

import typer

from radsight.cli import analyze, data, evaluate, models, serve, train
from radsight.cli.common import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="radsight: chest X-ray findings, triage, heatmaps and boxes. Not for diagnostic use.")


def _print_version(value: bool) -> None:
    if value:
        from radsight.version import __version__
        typer.echo(f"radsight {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """radsight: chest X-ray findings, triage, heatmaps and boxes. Not for diagnostic use."""
    configure_logging()


app.command()(train.train)
app.command()(analyze.analyze)
app.command()(train.export)
app.command()(evaluate.calibrate)
app.command("fit-ood")(evaluate.fit_ood)
app.command()(evaluate.evaluate)
app.command()(serve.serve)
app.add_typer(models.app, name="models")
app.add_typer(data.app, name="data")
