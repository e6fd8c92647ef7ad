"""Build of the one C extension (``geofence/_kernels.c``, issue #5); metadata is in pyproject.toml."""

import sys

from setuptools import Extension, setup

# IEEE arithmetic as written: no fused multiply-add, no fast-math reassociation, so the
# distances are the same bits on every CPU and in every engine (issue #13).
FLAGS = (
    ["/fp:precise"] if sys.platform == "win32" else ["-O2", "-ffp-contract=off", "-fno-fast-math"]
)

setup(
    ext_modules=[Extension("geofence._ckernels", ["geofence/_kernels.c"], extra_compile_args=FLAGS)]
)
