"""geofence: audit ALPR read logs against sensitive-location fences, exactly on the ellipsoid.

The public API is re-exported here and loaded lazily, so ``import geofence`` stays cheap.
"""

from __future__ import annotations

from geofence._version import __version__
from geofence.errors import GeofenceError

# The module geofence.scan and the function geofence.scan share a name: import the
# function eagerly so that the package attribute is the function, whatever imports later.
from geofence.scan import scan  # noqa: E402

__all__ = [
    "GeofenceError",
    "SharingFilter",
    "__version__",
    "load_layers",
    "load_policy",
    "open_reads",
    "scan",
]

_LAZY = {
    "load_layers": ("geofence.layers", "load_layers"),
    "load_policy": ("geofence.policy", "load_policy"),
    "open_reads": ("geofence.reads", "open_reads"),
    "SharingFilter": ("geofence.hook", "SharingFilter"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'geofence' has no attribute {name!r}")
