"""Reproduce sample_data/cameras/ from the shared data (issue #10).

Run from the repository root with the shared data beside it::

    python sample_data/cameras/extract.py

* ``osm_alpr_nodes_global.geojson.gz``: copied unchanged from
  ``../shared/data/osm-alpr-cameras/``.
* ``ca_public_schools_active_2018.csv.gz``: the rows of the CDE public schools directory
  (January 2018) that are active schools: ``StatusType = Active`` and a ``School`` name
  (rows without one are district and county offices); the columns below, cells as read.
  Written with a fixed gzip time stamp so that reruns give the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
HERE = Path(__file__).resolve().parent
COLUMNS = ["CDSCode", "StatusType", "County", "District", "School", "City", "SOCType", "Latitude", "Longitude"]


def main() -> None:
    shutil.copyfile(SHARED / "osm-alpr-cameras" / "osm_alpr_nodes_global.geojson.gz", HERE / "osm_alpr_nodes_global.geojson.gz")
    src = SHARED / "ca-cde-public-schools-2018" / "ca_public_schools_cde_2018.csv.gz"
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    n = 0
    with gzip.open(src, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["StatusType"] == "Active" and row["School"].strip():
                w.writerow([row[c] for c in COLUMNS])
                n += 1
    with open(HERE / "ca_public_schools_active_2018.csv.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(out.getvalue().encode())
    print(f"{n} active schools")


if __name__ == "__main__":
    main()
