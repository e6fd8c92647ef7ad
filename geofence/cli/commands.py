"""Import every command module so that each registers its commands on the group."""

from geofence.cli import events, filter, layers, policies, scan  # noqa: F401
