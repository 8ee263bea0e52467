"""`ironrt demo`: the offline tour (the scenario itself lives in `ironrt.cli.demo_run`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ironrt.cli.app import app


@app.command("demo")
def demo(
    seconds: Annotated[
        float,
        typer.Option(
            "--seconds", min=1, max=60, metavar="S", help="How long to show the live table at most."
        ),
    ] = 8.0,
) -> None:
    """Run three example agents offline in a temporary home (no key, no network), one of
    which runs out of budget; everything is cleaned up afterwards."""
    from ironrt.cli.demo_run import run

    raise typer.Exit(run(seconds=seconds))
