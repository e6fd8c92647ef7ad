"""Entry point of the ``geofence`` script: Ctrl-C even during start-up is one line, 130."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line; heavy imports happen inside the interrupt guard."""
    try:
        from geofence.cli import cli

        cli()
    except KeyboardInterrupt:
        sys.stderr.write("geofence: interrupted\n")
        sys.exit(130)
