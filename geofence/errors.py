"""Errors and warnings raised by geofence.

Every error the library raises on purpose derives from :class:`GeofenceError`; the
command line turns them into one line on stderr and a stable exit code
(``exit_code`` below), and shows a traceback only with ``-v``.
"""

from __future__ import annotations


class GeofenceError(Exception):
    """Root of every error geofence raises on purpose.

    The message is one line that says what is wrong, where (file, row, feature, key)
    and how to fix it.
    """

    exit_code = 1


class UsageError(GeofenceError, ValueError):
    """Raised when options or arguments do not fit together."""


class LayerError(GeofenceError, ValueError):
    """Raised when a site layer or layer definition cannot be loaded."""


class CRSError(LayerError):
    """Raised when a layer has no usable coordinate reference system."""


class PolicyError(GeofenceError, ValueError):
    """Raised when a policy pack is malformed or names something unknown."""


class RuleError(GeofenceError, ValueError):
    """Raised when a recipient (jurisdiction) rule file is malformed."""


class ReadFormatError(GeofenceError, ValueError):
    """Raised when a read log cannot be read at all (as opposed to a rejected row)."""


class ResourceLimitError(GeofenceError):
    """Raised when an input exceeds a configured guard (line length, vertices, layer size)."""


class VerificationError(GeofenceError):
    """Raised when ``verify`` finds a shared file that does not match its manifest."""

    exit_code = 5


class SharingRefused(GeofenceError):
    """Raised when the recipient rules forbid a share; nothing is shared."""

    exit_code = 4


class GeofenceWarning(UserWarning):
    """Root of the warnings geofence emits."""
