"""Where the shipped data of ``layers/`` lives, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def layers_dir() -> Path:
    """Return the directory holding the policy packs, tag tables and recipient rules.

    A wheel carries ``layers/`` as ``geofence/layers_data``; a source checkout (or an
    editable install) reads ``layers/`` beside the package.
    """
    installed = _HERE / "layers_data"
    if (installed / "policies").is_dir():
        return installed
    return _HERE.parent / "layers"
