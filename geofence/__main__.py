from geofence.cli import cli

cli()
