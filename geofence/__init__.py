"""geofence: audit ALPR read logs against sensitive-location fences, exactly on the ellipsoid.

The public API is re-exported here and loaded lazily, so ``import geofence`` stays cheap.
"""

from __future__ import annotations

from geofence._version import __version__
from geofence.errors import GeofenceError

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
    "scan": ("geofence.scan", None),  # the module, callable as geofence.scan.scan
    "load_layers": ("geofence.layers", "load_layers"),
    "load_policy": ("geofence.policy", "load_policy"),
    "open_reads": ("geofence.reads", "open_reads"),
    "SharingFilter": ("geofence.hook", "SharingFilter"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'geofence' has no attribute {name!r}")
