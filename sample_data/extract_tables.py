"""Select the sample site rows from the shared public tables (reproducible; issue #2).

Run from the repository root::

    python sample_data/extract_tables.py [SHARED_DATA_DIR]

SHARED_DATA_DIR defaults to ``../shared/data``. Rows are selected, never edited: every
column and every value of a selected row is written as it was read (Python's csv module
may quote differently). The HIFLD hospital extracts keep the source's UTF-8 BOM, so the
loader's BOM handling is exercised by real files.
"""

from __future__ import annotations

import csv
import gzip
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _select(src: Path, dst: Path, keep, *, encoding_out: str = "utf-8") -> int:
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt", encoding="utf-8-sig", newline="") as fin:
        reader = csv.DictReader(fin)
        rows = [row for row in reader if keep(row)]
        fields = reader.fieldnames
    with open(dst, "w", encoding=encoding_out, newline="") as fout:
        writer = csv.DictWriter(fout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main(shared: Path) -> None:
    seattle, oakland = HERE / "seattle", HERE / "oakland"
    hospitals = shared / "hifld-hospitals" / "Hospitals.csv"
    n = _select(
        hospitals,
        seattle / "king_county_hospitals.csv",
        lambda r: r["STATE"] == "WA" and r["COUNTY"] == "KING",
        encoding_out="utf-8-sig",
    )
    print(f"seattle/king_county_hospitals.csv: {n} rows")
    n = _select(
        hospitals,
        oakland / "hospitals.csv",
        lambda r: r["STATE"] == "CA" and r["COUNTY"] in ("ALAMEDA", "SAN FRANCISCO"),
        encoding_out="utf-8-sig",
    )
    print(f"oakland/hospitals.csv: {n} rows")
    n = _select(
        shared / "hifld-places-of-worship" / "All_Places_of_Worship.csv",
        oakland / "places_of_worship.csv",
        lambda r: r["STATE"] == "CA" and r["CITY"] in ("OAKLAND", "BERKELEY", "SAN FRANCISCO"),
        encoding_out="utf-8-sig",
    )
    print(f"oakland/places_of_worship.csv: {n} rows")
    n = _select(
        shared / "ca-cde-public-schools-2018" / "ca_public_schools_cde_2018.csv.gz",
        oakland / "public_schools.csv",
        lambda r: (
            r["StatusType"] == "Active"
            and r["City"] in ("Oakland", "San Francisco", "Berkeley")
            and r["School"].strip() != ""  # school rows, not district or county offices
            and r["Latitude"].strip() != ""
            and r["Longitude"].strip() != ""
        ),
    )
    print(f"oakland/public_schools.csv: {n} rows")
    # Copied unchanged.
    sites = shared / "seattle-sensitive-sites"
    shutil.copyfile(
        sites / "seattle_public_schools.geojson", seattle / "seattle_public_schools.geojson"
    )
    shutil.copyfile(
        sites / "seattle_preschool_program_sites.csv",
        seattle / "seattle_preschool_program_sites.csv",
    )
    reads = shared / "seattle-spd-alpr" / "spd_alpr_2021-10-01_04.csv.gz"
    shutil.copyfile(reads, seattle / reads.name)
    print(
        "copied seattle_public_schools.geojson, seattle_preschool_program_sites.csv, " + reads.name
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "data")
