"""The ``geofence`` command line: parse options, call one library function, map errors.

Each command group lives in its own module; this module only assembles them and
translates :class:`geofence.errors.GeofenceError` into one line and an exit code.
"""

from __future__ import annotations

import logging
import sys

import click

from geofence._version import __version__
from geofence.errors import GeofenceError


class GeofenceGroup(click.Group):
    """A click group that turns library errors into one line and a stable exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GeofenceError as exc:
            # -v belongs to each command, which parses after this point: read it from argv
            if _verbose_in_argv():
                raise
            click.echo(f"geofence: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("geofence: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # `geofence scan ... -o - | head`: the reader went away; end quietly (csvkit).
            _silence_stdout()
            ctx.exit(0)


def _verbose_in_argv() -> bool:
    return any(
        a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"})
        for a in sys.argv[1:]
    )


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def setup_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr: WARNING by default, INFO with -v, DEBUG with -vv; plates only at DEBUG."""
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(
        level=level, format="geofence: %(levelname)s: %(message)s", stream=sys.stderr, force=True
    )


@click.group(cls=GeofenceGroup)
@click.version_option(__version__, prog_name="geofence")
@click.pass_context
def cli(ctx):
    """Audit ALPR read logs against sensitive-location fences, exactly, and filter them before sharing."""
    ctx.ensure_object(dict)


def _register() -> None:
    from geofence.cli import commands  # noqa: F401  (each module adds its commands to `cli`)


_register()
