"""Import every command module so that each registers its commands on the group.

One import per line, so that each command group is added or removed by one line.
"""

# ruff: noqa: F401, I001
from geofence.cli import cameras
from geofence.cli import events
from geofence.cli import filter
from geofence.cli import layers
from geofence.cli import policies
from geofence.cli import reads
from geofence.cli import report
from geofence.cli import scan
from geofence.cli import serve
from geofence.cli import sharing
