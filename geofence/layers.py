"""Site layers: load sensitive-site data into one validated table (issue #2).

:func:`load_layers` reads GeoJSON, GeoPackage, Shapefile, FlatGeobuf, GeoParquet and
CSV/TSV files with latitude/longitude columns (as HIFLD, the California schools
directory and the Seattle preschool list ship them), or a layer definition ``.toml``
that describes such a file (schema in ``layers/README.md``). Every site gets a
``site_id``, ``name``, ``category`` (an id of policy.md section A), ``source`` and a
geometry in EPSG:4326. Points stay points: the scan engine grows them by the
category's ``footprint_m`` exactly on the ellipsoid, so growing them here would be wrong.

What loading did to each file (features read, repaired, rejected with reasons, CRS,
SHA-256) is kept in :class:`~geofence.model.LayerSource` records for
``geofence layers check`` and scan manifests.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from geofence._arrays import full_object
from geofence._memory import gc_paused
from geofence._resources import layers_dir
from geofence.atomic import sha256_file
from geofence.errors import CRSError, LayerError, ResourceLimitError
from geofence.model import CATEGORIES, LayerSource

__all__ = [
    "DEFAULT_MAX_FEATURES",
    "DEFAULT_MAX_VERTICES_PER_SITE",
    "PASS_THROUGH_COLUMNS",
    "SiteLayer",
    "load_category_maps",
    "load_layers",
    "load_osm_tag_rules",
    "match_osm_tags",
]

DEFAULT_MAX_FEATURES = 1_000_000
"""Guard on the features of all files of one :func:`load_layers` call (the national HIFLD
worship layer has a few hundred thousand; more suggests a wrong file)."""

DEFAULT_MAX_VERTICES_PER_SITE = 50_000
"""Guard on the vertices of one site; a campus outline has hundreds, a whole city's
boundary given by mistake has hundreds of thousands."""

PASS_THROUGH_COLUMNS = ("start", "end", "timezone", "hours", "buffer_m")
"""Columns kept as strings when present: the windows of time-bound (event) fences and a
site's own extent ``buffer_m`` (a march route's half-width; issue #7)."""

WGS84 = pyproj.CRS.from_epsg(4326)

# Column names are compared case-insensitively, with a BOM and surrounding spaces removed.
_LAT_NAMES = ("latitude", "lat", "y", "point_y", "lat_dd", "latitude_dd")
_LON_NAMES = ("longitude", "lon", "lng", "long", "x", "point_x", "lon_dd", "longitude_dd")
_NAME_NAMES = (
    "name",
    "site name",
    "site_name",
    "school",
    "facility name",
    "facility_name",
    "facility",
    "title",
    "label",
)
# `site_id` is used as it is; the others are prefixed with the file stem, because
# OBJECTID-style ids repeat across files (HIFLD hospitals and worship both start at 1).
_ID_NAMES = ("site_id", "cdscode", "osm_id", "@id", "id", "objectid", "fid", "gid", "globalid")
_MISSING_TEXT = {"", "na", "n/a", "nan", "null", "none"}

# File extension -> (format label, reader kind). Formats are named as `layers check` prints them.
_FORMATS = {
    ".geojson": ("GeoJSON", "vector"),
    ".json": ("GeoJSON", "vector"),
    ".gpkg": ("GeoPackage", "vector"),
    ".shp": ("Shapefile", "vector"),
    ".fgb": ("FlatGeobuf", "vector"),
    ".parquet": ("GeoParquet", "parquet"),
    ".geoparquet": ("GeoParquet", "parquet"),
    ".csv": ("CSV", "csv"),
    ".tsv": ("TSV", "csv"),
    ".tab": ("TSV", "csv"),
    ".txt": ("CSV", "csv"),
}
_FORMAT_NAMES = {
    "geojson": ".geojson",
    "gpkg": ".gpkg",
    "geopackage": ".gpkg",
    "shapefile": ".shp",
    "shp": ".shp",
    "flatgeobuf": ".fgb",
    "fgb": ".fgb",
    "geoparquet": ".parquet",
    "parquet": ".parquet",
    "csv": ".csv",
    "tsv": ".tsv",
}
# Formats whose specification fixes the CRS when the file names none: RFC 7946 GeoJSON
# is WGS84 lon/lat, and CSV latitude/longitude columns are degrees (issue #2).
_DEFAULT_CRS_FORMATS = {"GeoJSON", "CSV", "TSV"}

_DEF_KEYS = {
    "title",
    "description",
    "source",
    "license",
    "path",
    "format",
    "layer",
    "crs",
    "category",
    "category_map",
    "columns",
}
_COLUMN_KEYS = {"lat", "lon", "name", "site_id", "category"}
_MAP_KEYS = {"title", "source", "detect", "column", "values", "default"}


@dataclass
class SiteLayer:
    """Sensitive sites from one or more layer files.

    Attributes
    ----------
    sites : geopandas.GeoDataFrame
        One row per site, columns ``site_id`` (str, unique), ``name`` (str),
        ``category`` (str, an id of :data:`geofence.model.CATEGORIES`), ``source``
        (file name), optional string columns ``start``, ``end``, ``timezone``,
        ``hours`` (only when a file has them) and ``geometry`` in EPSG:4326:
        Polygon / MultiPolygon (holes kept), Point (not grown) or LineString /
        MultiLineString.
    sources : list of LayerSource
        What loading did to each file, in the order given.
    """

    sites: gpd.GeoDataFrame
    sources: list[LayerSource] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sites)

    def category_counts(self) -> dict[str, int]:
        """Return the number of sites of each category, in policy.md section A order."""
        counts = self.sites["category"].value_counts()
        return {c: int(counts[c]) for c in CATEGORIES if c in counts.index}

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """``(min_lon, min_lat, max_lon, max_lat)`` of all sites, or ``None`` if empty."""
        if self.sites.empty:
            return None
        return tuple(float(v) for v in self.sites.total_bounds)


# --------------------------------------------------------------------------------------
# Tables shipped in layers/: OSM tags and column-value maps


@dataclass(frozen=True)
class _TagRule:
    category: str
    match: tuple[tuple[str, tuple[str, ...] | None], ...]  # None = any non-empty value


@dataclass(frozen=True)
class _CategoryMap:
    name: str
    column: str
    values: dict[str, str]  # casefolded value -> category
    default: str | None = None
    detect: tuple[str, ...] = ()


def _read_table_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LayerError(f"{path.name}: cannot be read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LayerError(f"{path.name}: not valid TOML: {exc}") from exc


def load_osm_tag_rules(path: str | Path | None = None) -> list[_TagRule]:
    """Load the OpenStreetMap tag -> category table (``layers/osm_tags.toml``).

    Parameters
    ----------
    path : str or pathlib.Path, optional
        Another table with the same schema.

    Returns
    -------
    list
        Rules in file order; the first that matches a feature decides its category.

    Raises
    ------
    LayerError
        If the table has an unknown category, an empty ``match`` or a bad value.
    """
    path = Path(path) if path is not None else layers_dir() / "osm_tags.toml"
    data = _read_table_toml(path)
    unknown = set(data) - {"rules"}
    if unknown:
        raise LayerError(
            f"{path.name}: {sorted(unknown)[0]}: unknown key; the table holds [[rules]] only"
        )
    rules = []
    for i, rule in enumerate(data.get("rules", [])):
        where = f"{path.name}: rules[{i}]"
        extra = set(rule) - {"category", "match", "wiki", "note"}
        if extra:
            raise LayerError(
                f"{where}.{sorted(extra)[0]}: unknown key; use category, match, wiki, note"
            )
        if rule.get("category") not in CATEGORIES:
            raise LayerError(
                f"{where}.category: {rule.get('category')!r} is not a category id; use one of {', '.join(CATEGORIES)}"
            )
        match = rule.get("match")
        if not isinstance(match, dict) or not match:
            raise LayerError(f"{where}.match: must be a non-empty table of tag = value(s)")
        items = []
        for key, value in match.items():
            if value == "*":
                items.append((key, None))
            elif isinstance(value, str):
                items.append((key, (value,)))
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                items.append((key, tuple(value)))
            else:
                raise LayerError(
                    f'{where}.match.{key}: {value!r} must be a string, a list of strings or "*"'
                )
        rules.append(_TagRule(rule["category"], tuple(items)))
    if not rules:
        raise LayerError(f"{path.name}: no [[rules]]; the table maps nothing")
    return rules


def match_osm_tags(tags: pd.DataFrame, rules: Sequence[_TagRule] | None = None) -> np.ndarray:
    """Give each row of OSM tags a category by the first matching rule.

    Parameters
    ----------
    tags : pandas.DataFrame
        One row per feature, one column per OSM key (``amenity``, ``leisure``, ...);
        missing keys may be absent columns or NA.
    rules : sequence, optional
        From :func:`load_osm_tag_rules`; the shipped table by default.

    Returns
    -------
    numpy.ndarray
        Object array of category ids, ``None`` where no rule matches.

    Examples
    --------
    >>> frame = pd.DataFrame({"amenity": ["place_of_worship", "cafe", None], "leisure": [None, None, "playground"]})
    >>> match_osm_tags(frame).tolist()
    ['worship', None, 'children_gather']
    """
    rules = load_osm_tag_rules() if rules is None else rules
    n = len(tags)
    out = np.full(n, None, dtype=object)
    open_rows = np.ones(n, dtype=bool)
    # One vectorised mask per rule: the table has a few dozen rules, files many rows.
    for rule in rules:
        mask = open_rows.copy()
        for key, values in rule.match:
            if key not in tags.columns:
                mask[:] = False
                break
            col = tags[key].astype("string").str.strip()
            if values is None:
                mask &= (col.notna() & (col != "") & (col.str.lower() != "no")).to_numpy(bool)
            else:
                mask &= col.isin(values).fillna(False).to_numpy(bool)
        out[mask] = rule.category
        open_rows &= ~mask
    return out


def load_category_maps(path: str | Path | None = None) -> dict[str, _CategoryMap]:
    """Load the column-value -> category tables (``layers/category_maps.toml``).

    Parameters
    ----------
    path : str or pathlib.Path, optional
        Another file with the same schema.

    Returns
    -------
    dict
        Table name -> table.

    Raises
    ------
    LayerError
        If a table maps to an unknown category or lacks ``column``/``values``.
    """
    path = Path(path) if path is not None else layers_dir() / "category_maps.toml"
    data = _read_table_toml(path)
    if set(data) - {"tables"}:
        raise LayerError(
            f"{path.name}: {sorted(set(data) - {'tables'})[0]}: unknown key; the file holds [tables.<name>] only"
        )
    return {
        name: _category_map(path.name, f"tables.{name}", name, t)
        for name, t in data.get("tables", {}).items()
    }


def _category_map(file: str, where: str, name: str, table: object) -> _CategoryMap:
    if not isinstance(table, dict):
        raise LayerError(f"{file}: {where}: must be a table with column and values")
    extra = set(table) - _MAP_KEYS
    if extra:
        raise LayerError(
            f"{file}: {where}.{sorted(extra)[0]}: unknown key; use {', '.join(sorted(_MAP_KEYS))}"
        )
    column = table.get("column")
    values = table.get("values")
    if not isinstance(column, str) or not column:
        raise LayerError(
            f"{file}: {where}.column: missing; name the column whose values are mapped"
        )
    if not isinstance(values, dict) or not values:
        raise LayerError(f'{file}: {where}.values: missing; add a table of value = "category"')
    for value, cat in values.items():
        if cat not in CATEGORIES:
            raise LayerError(
                f"{file}: {where}.values.{value!r}: {cat!r} is not a category id; use one of {', '.join(CATEGORIES)}"
            )
    default = table.get("default")
    if default is not None and default not in CATEGORIES:
        raise LayerError(f"{file}: {where}.default: {default!r} is not a category id")
    return _CategoryMap(
        name=name,
        column=column,
        values={str(k).strip().casefold(): v for k, v in values.items()},
        default=default,
        detect=tuple(table.get("detect", ())),
    )


# --------------------------------------------------------------------------------------
# Layer definitions (.toml)


@dataclass
class _Spec:
    """How to read one data file: from a layer definition, the call, or both."""

    path: Path
    format_ext: str | None = None
    layer: str | None = None
    crs: str | None = None
    crs_origin: str = "given"
    category: str | None = None
    category_fixed: bool = False  # the definition itself names the category
    category_map: _CategoryMap | str | None = None
    columns: dict[str, str] = field(default_factory=dict)


def _read_definition(path: Path, crs, category, columns) -> _Spec:
    data = _read_table_toml(path)
    extra = set(data) - _DEF_KEYS
    if extra:
        raise LayerError(
            f"layer definition {path.name}: {sorted(extra)[0]}: unknown key; allowed: {', '.join(sorted(_DEF_KEYS))}"
        )
    if not isinstance(data.get("path"), str):
        raise LayerError(
            f"layer definition {path.name}: path: missing; give the data file, relative to the definition"
        )
    data_path = (
        (path.parent / data["path"]).resolve()
        if not Path(data["path"]).is_absolute()
        else Path(data["path"])
    )
    fmt = data.get("format")
    if fmt is not None and str(fmt).lower() not in _FORMAT_NAMES:
        raise LayerError(
            f"layer definition {path.name}: format: {fmt!r} unknown; use one of {', '.join(sorted(_FORMAT_NAMES))}"
        )
    def_columns = data.get("columns", {})
    if not isinstance(def_columns, dict) or set(def_columns) - _COLUMN_KEYS:
        bad = (
            sorted(set(def_columns) - _COLUMN_KEYS)
            if isinstance(def_columns, dict)
            else ["columns"]
        )
        raise LayerError(
            f"layer definition {path.name}: columns.{bad[0]}: unknown; name only {', '.join(sorted(_COLUMN_KEYS))}"
        )
    def_category = data.get("category")
    if def_category is not None and def_category not in CATEGORIES:
        raise LayerError(
            f"layer definition {path.name}: category: {def_category!r} is not a category id; use one of {', '.join(CATEGORIES)}"
        )
    cmap = data.get("category_map")
    if isinstance(cmap, dict):
        cmap = _category_map(path.name, "category_map", f"{path.stem}.category_map", cmap)
    elif cmap is not None and not isinstance(cmap, str):
        raise LayerError(
            f"layer definition {path.name}: category_map: give a table name or an inline table"
        )
    if def_category is not None and cmap is not None:
        raise LayerError(
            f"layer definition {path.name}: category and category_map both given; keep one"
        )
    # The definition knows its file; call-level options only fill what it leaves out, so
    # `--category` meant for a bare CSV cannot relabel a definition's sites.
    return _Spec(
        path=data_path,
        format_ext=_FORMAT_NAMES[str(fmt).lower()] if fmt else None,
        layer=data.get("layer"),
        crs=data.get("crs") or crs,
        crs_origin=f"from {path.name}" if data.get("crs") else "given",
        category=def_category if def_category else (None if cmap else category),
        category_fixed=def_category is not None,
        category_map=cmap,
        columns={**(columns or {}), **def_columns},
    )


# --------------------------------------------------------------------------------------
# Reading files


def _file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bz2", ".xz", ".zip"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return Path(name).stem


def _format_of(path: Path, format_ext: str | None) -> tuple[str, str, bool]:
    """Return (format label, reader kind, gzipped) for a data file."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = format_ext or (
        suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    )
    if ext not in _FORMATS:
        known = ", ".join(sorted(_FORMATS))
        raise LayerError(
            f"{path.name}: cannot tell the format from the name; use one of {known} (or format = ... in a layer definition)"
        )
    label, kind = _FORMATS[ext]
    if gz and kind == "vector" and label != "GeoJSON":
        raise LayerError(f"{path.name}: compressed {label} is not supported; decompress it first")
    return label, kind, gz


def _norm(name: object) -> str:
    return str(name).replace("\ufeff", "").strip().casefold()


def _find_column(frame_columns: Iterable[str], wanted: str, *, file: str, field_name: str) -> str:
    lookup = {_norm(c): c for c in frame_columns}
    if wanted in frame_columns:
        return wanted
    if _norm(wanted) in lookup:
        return lookup[_norm(wanted)]
    raise LayerError(
        f"{file}: column {wanted!r} given for {field_name} is not in the file; columns are {', '.join(map(str, frame_columns))}"
    )


def _detect(
    frame_columns: Sequence[str], names: Sequence[str], suffix: str | None = None
) -> list[str]:
    """Columns matching ``names`` (in preference order), then those ending in ``suffix``."""
    lookup: dict[str, str] = {}
    for c in frame_columns:
        lookup.setdefault(_norm(c), c)
    for n in names:
        if n in lookup:
            return [lookup[n]]
    if suffix is None:
        return []
    return [c for c in frame_columns if _norm(c).endswith(suffix)]


def _sniff_delimiter(path: Path, gz: bool, label: str) -> str:
    if label == "TSV":
        return "\t"
    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = fh.readline()
    counts = {d: header.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_csv(path: Path, label: str, gz: bool, limit: int) -> pd.DataFrame:
    sep = _sniff_delimiter(path, gz, label)
    try:
        # Everything as text: ids such as CDSCode keep their leading zeros, and
        # coordinates are parsed below so that bad cells can be reported, not guessed.
        return pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            compression="gzip" if gz else None,
            nrows=limit + 1,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise LayerError(f"{path.name}: cannot be read as {label}: {exc}") from exc


def _csv_points(
    frame: pd.DataFrame, file: str, columns: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Build point geometries from lat/lon columns; return (geometries, reject reasons)."""
    cols = list(frame.columns)
    picked = {}
    for key, names, suffix in (("lat", _LAT_NAMES, "latitude"), ("lon", _LON_NAMES, "longitude")):
        if key in columns:
            picked[key] = _find_column(cols, columns[key], file=file, field_name=key)
            continue
        found = _detect(cols, names, suffix)
        if len(found) != 1:
            what = "no" if not found else f"several ({', '.join(found)})"
            raise LayerError(
                f"{file}: {what} {'latitude' if key == 'lat' else 'longitude'} column found; name it with --columns {key}=COLUMN"
            )
        picked[key] = found[0]
    n = len(frame)
    reasons = np.full(n, None, dtype=object)
    values = {}
    for key in ("lat", "lon"):
        text = frame[picked[key]].astype(str).str.strip()
        number = pd.to_numeric(text, errors="coerce").to_numpy(float)
        missing = text.str.casefold().isin(_MISSING_TEXT).to_numpy(bool)
        bad = np.isnan(number) & ~missing
        word = "latitude" if key == "lat" else "longitude"
        reasons[missing & pd.isna(reasons)] = f"no {word} ({picked[key]!r} is empty)"
        if bad.any():
            idx = np.flatnonzero(bad & pd.isna(reasons))
            reasons[idx] = [f"{word} {t!r} is not a number" for t in text.to_numpy()[idx]]
        values[key] = number
    ok = pd.isna(reasons)
    geoms = np.full(n, None, dtype=object)
    geoms[ok] = shapely.points(values["lon"][ok], values["lat"][ok])
    return geoms, reasons


def _read_file(spec: _Spec, limit: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, object, str]:
    """Read one data file. Return (attributes, geometries, reject reasons, crs, format label)."""
    path = spec.path
    label, kind, gz = _format_of(path, spec.format_ext)
    reasons = None
    if kind == "csv":
        frame = _read_csv(path, label, gz, limit)
        _check_feature_count(path, len(frame), limit)
        geoms, reasons = _csv_points(frame, path.name, spec.columns)
        crs = None
    elif kind == "parquet":
        import pyarrow.parquet as pq

        try:
            n = pq.ParquetFile(path).metadata.num_rows
        except Exception as exc:
            raise LayerError(f"{path.name}: cannot be read as GeoParquet: {exc}") from exc
        _check_feature_count(path, n, limit)
        try:
            read = _read_geoparquet_wkb(path)
            if read is None:
                gdf = gpd.read_parquet(path)
                read = (
                    pd.DataFrame(gdf.drop(columns=gdf.geometry.name)),
                    gdf.geometry.to_numpy(),
                    gdf.crs,
                )
        except Exception as exc:  # pyarrow / geopandas raise many kinds for bad files
            raise LayerError(f"{path.name}: cannot be read as GeoParquet: {exc}") from exc
        frame, geoms, crs = read
    else:
        import pyogrio

        source: object = path
        if gz:
            source = io.BytesIO(gzip.decompress(path.read_bytes()))
        try:
            if not gz:
                n = pyogrio.read_info(path, layer=spec.layer)["features"]
                if n is not None and n >= 0:
                    _check_feature_count(path, n, limit)
            # datetime_as_string: event windows are read by geofence.events, which knows
            # their time zones; GDAL would read a naive "14:00" as UTC (issue #7).
            gdf = pyogrio.read_dataframe(
                source, layer=spec.layer, max_features=limit + 1, datetime_as_string=True
            )
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
            raise LayerError(f"{path.name}: cannot be read as {label}: {exc}") from exc
        _check_feature_count(path, len(gdf), limit)
        frame, geoms, crs = (
            pd.DataFrame(gdf.drop(columns=gdf.geometry.name)),
            gdf.geometry.to_numpy(),
            gdf.crs,
        )
    geoms = np.array(geoms, dtype=object)  # a copy: repairs are written into it
    if reasons is None:
        reasons = np.full(len(frame), None, dtype=object)
    return frame.reset_index(drop=True), geoms, reasons, crs, label


def _read_geoparquet_wkb(path: Path) -> tuple[pd.DataFrame, np.ndarray, object] | None:
    """(attributes, geometries, CRS) of a GeoParquet file whose one geometry column is WKB.

    What ``geopandas.read_parquet`` gives, without its GeoDataFrame and its string arrays
    (0.05 s of 0.25 s for the 100k-site benchmark layer, issue #10). ``None`` for any other
    file (GeoArrow encodings, several geometry columns, no ``geo`` metadata): geopandas
    reads those, and words their errors.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = (table.schema.metadata or {}).get(b"geo")
    if meta is None:
        return None
    geo = json.loads(meta)
    name = geo.get("primary_column")
    columns = geo.get("columns") or {}
    if (
        len(columns) != 1
        or name not in columns
        or name not in table.column_names
        or str(columns[name].get("encoding", "")).upper() != "WKB"
    ):
        return None
    # GeoParquet 1.x: no "crs" key means OGC:CRS84; an explicit null, an unknown CRS.
    crs = columns[name].get("crs", "OGC:CRS84")
    crs_id = crs.get("id") if isinstance(crs, dict) else None
    if crs_id == {"authority": "EPSG", "code": 4326}:
        crs = WGS84  # PROJ takes 20 ms to read the PROJJSON of the CRS made at import
    elif crs is not None:
        crs = pyproj.CRS.from_user_input(crs)
    geoms = shapely.from_wkb(table.column(name).to_numpy(zero_copy_only=False))
    return table.drop_columns([name]).to_pandas(), geoms, crs


def _check_feature_count(path: Path, n: int, limit: int) -> None:
    if n > limit:
        raise ResourceLimitError(
            f"{path.name}: more than {limit:,} features in the layers given (limit max_features); "
            "split the layer, filter it, or raise the limit (--max-features)"
        )


# --------------------------------------------------------------------------------------
# Columns: site_id, name, category, pass-through


def _id_strings(series: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(float)
        if np.all(np.isnan(values) | (values == np.round(values))):
            return series.astype("Int64").astype("string")
    return series.astype("string").str.strip()


def _site_ids(frame: pd.DataFrame, spec: _Spec, stem: str) -> pd.Series:
    n = len(frame)
    file = spec.path.name
    if "site_id" in spec.columns:
        col = _find_column(
            list(frame.columns), spec.columns["site_id"], file=file, field_name="site_id"
        )
        ids = _id_strings(frame[col])
        empty = ids.isna() | (ids == "")
        if empty.any():
            first = int(np.flatnonzero(empty.to_numpy(bool))[0]) + 1
            raise LayerError(
                f"{file}: feature {first}: site_id column {col!r} is empty; fill it or drop --columns site_id"
            )
        return ids if _norm(col) == "site_id" else f"{stem}:" + ids
    for name in _ID_NAMES:
        found = _detect(list(frame.columns), (name,))
        if not found:
            continue
        ids = _id_strings(frame[found[0]])
        if ids.isna().any() or (ids == "").any():
            continue  # an id column with gaps is not an id column; try the next one
        return ids if name == "site_id" else f"{stem}:" + ids
    return pd.Series([f"{stem}:{i}" for i in range(1, n + 1)], dtype="string")


def _names(frame: pd.DataFrame, spec: _Spec) -> pd.Series:
    if "name" in spec.columns:
        col = _find_column(
            list(frame.columns), spec.columns["name"], file=spec.path.name, field_name="name"
        )
    else:
        found = _detect(list(frame.columns), _NAME_NAMES)
        if not found:
            return pd.Series([""] * len(frame), dtype=object)
        col = found[0]
    return frame[col].astype("string").str.strip().fillna("").astype(object)


def _categories(
    frame: pd.DataFrame, spec: _Spec, maps: dict[str, _CategoryMap] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (category or None, reason when None) per row; see :func:`load_layers`."""
    file = spec.path.name
    n = len(frame)
    none_reasons = np.full(n, None, dtype=object)
    cols = list(frame.columns)

    def by_map(cmap: _CategoryMap):
        col = _find_column(cols, cmap.column, file=file, field_name=f"category_map {cmap.name}")
        text = frame[col].astype("string").str.strip()
        cats = text.str.casefold().map(cmap.values).astype(object).to_numpy()
        cats = np.where(pd.isna(cats), cmap.default, cats).astype(object)
        reasons = np.full(n, None, dtype=object)
        miss = pd.isna(cats)
        if miss.any():
            shown = text.fillna("").to_numpy()[miss]
            reasons[miss] = [f"{col} value {v!r} is not in category map {cmap.name}" for v in shown]
            cats[miss] = None
        return cats, reasons

    # 1. the layer definition's own category or map
    if isinstance(spec.category_map, _CategoryMap | str):
        cmap = spec.category_map
        if isinstance(cmap, str):
            maps = load_category_maps() if maps is None else maps
            if cmap in ("osm", "osm-tags", "osm_tags"):
                cats = match_osm_tags(frame)
                return cats, np.where(
                    pd.isna(cats), "no OSM tag of layers/osm_tags.toml matches", None
                )
            if cmap not in maps:
                raise LayerError(
                    f"{file}: category_map {cmap!r} is not a table of layers/category_maps.toml; use one of {', '.join(sorted(maps))} or osm-tags"
                )
            cmap = maps[cmap]
        return by_map(cmap)
    if spec.category_fixed:
        return full_object(n, spec.category), none_reasons

    # 2. a category column holding category ids
    col = None
    explicit = "category" in spec.columns
    if explicit:
        col = _find_column(cols, spec.columns["category"], file=file, field_name="category")
    else:
        found = _detect(cols, ("category",))
        col = found[0] if found else None
    if col is not None:
        # Each distinct value once: a layer has a few categories (12 -> 3 ms per 100k sites)
        codes, distinct = pd.factorize(frame[col])
        u_text = [str(v).strip() for v in distinct] + [""]  # code -1 (missing): the last
        u_cat = np.array([t if t in CATEGORIES else None for t in u_text], dtype=object)
        u_empty = np.array([t == "" for t in u_text])
        valid, empty = ~pd.isna(u_cat)[codes], u_empty[codes]
        bad = ~valid & ~empty
        if not bad.any():
            return u_cat[codes], np.where(empty, f"{col} is empty", None)
        if explicit or spec.category is None:
            text = np.array(u_text, dtype=object)[codes]
            shown = ", ".join(repr(v) for v in pd.unique(text[bad])[:5])
            first = int(np.flatnonzero(bad)[0]) + 1
            raise LayerError(
                f"{file}: feature {first}: column {col!r} holds {shown}, not category ids; "
                f"use one of {', '.join(CATEGORIES)}, or pass --category for the whole file"
            )

    # 3. a category for the whole file
    if spec.category is not None:
        return full_object(n, spec.category), none_reasons

    # 4. a shipped map whose columns the file has (HIFLD, ...), then OSM tags
    maps = load_category_maps() if maps is None else maps
    normed = {_norm(c) for c in cols}
    for cmap in maps.values():
        if cmap.detect and all(_norm(c) in normed for c in cmap.detect):
            return by_map(cmap)
    if normed & {"amenity", "leisure", "healthcare", "social_facility"}:
        cats = match_osm_tags(frame.rename(columns={c: _norm(c) for c in cols}))
        return cats, np.where(pd.isna(cats), "no OSM tag of layers/osm_tags.toml matches", None)
    raise LayerError(
        f"{file}: cannot tell the sites' category: no 'category' column, no known type column "
        f"(HIFLD TYPE/SUBTYPE, OSM tags); pass --category ID (one of {', '.join(CATEGORIES)}) "
        "or describe the file in a layer definition with category_map"
    )


def _pass_through(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {}
    for name in PASS_THROUGH_COLUMNS:
        found = _detect(list(frame.columns), (name,))
        if not found:
            continue
        s = frame[found[0]]
        if pd.api.types.is_datetime64_any_dtype(s):
            text = s.map(lambda v: None if pd.isna(v) else v.isoformat())
        else:
            text = s.astype("string").str.strip().replace("", pd.NA)
        values = text.to_numpy(object)
        values[pd.isna(values)] = None  # missing is None, not NaN or pd.NA: these are strings
        out[name] = values
    return out


# --------------------------------------------------------------------------------------
# Geometry


_POINT, _LINESTRING, _LINEARRING, _POLYGON, _MULTIPOINT, _MULTILINESTRING, _MULTIPOLYGON = range(7)
_KEPT_TYPES = (_POINT, _LINESTRING, _POLYGON, _MULTILINESTRING, _MULTIPOLYGON)


def _to_wgs84(geoms: np.ndarray, crs: object) -> np.ndarray:
    if _is_wgs84(crs):
        # force_2d copies every geometry; only pay for it when some have a Z (issue #5:
        # a copy of 100k sites is ~50 MB of peak memory)
        return shapely.force_2d(geoms) if shapely.has_z(geoms).any() else geoms
    # always_xy: coordinates go in as (x, y) / (lon, lat) whatever the CRS's axis order
    # says (style.md "CRS discipline"; pyproj warns that EPSG:4326 is lat, lon).
    transformer = pyproj.Transformer.from_crs(crs, WGS84, always_xy=True)

    def forward(xy: np.ndarray) -> np.ndarray:
        lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    return shapely.transform(geoms, forward)


def _is_wgs84(crs: object) -> bool:
    return crs is WGS84 or pyproj.CRS.from_user_input(crs).equals(WGS84, ignore_axis_order=True)


def _check_coordinates(
    file: str,
    labels: np.ndarray,
    index: np.ndarray,
    geoms: np.ndarray,
    *,
    by_bounds: np.ndarray | None = None,
    finite_only: bool = False,
    crs: str | None = None,
) -> None:
    """Raise a LayerError naming the first feature with a bad coordinate.

    Bad is NaN or infinite, or (unless ``finite_only``) outside lon -180..180 / lat -90..90.
    ``geoms[k]`` is feature ``index[k]``; where ``by_bounds`` holds, its bounds are enough
    (NaN and inf fail the comparison too), elsewhere every coordinate is looked at.
    """
    if not len(geoms):
        return
    limit = np.array([np.inf if finite_only else 180.0, np.inf if finite_only else 90.0])

    def wrong(xy: np.ndarray) -> np.ndarray:  # rows of (x, y) or (minx, miny, maxx, maxy)
        limits = np.resize(limit, xy.shape[1])
        return ~(np.isfinite(xy) & (np.abs(xy) <= limits)).all(axis=1)

    bad = np.zeros(len(geoms), dtype=bool)
    quick = np.zeros(len(geoms), dtype=bool) if by_bounds is None else by_bounds
    if quick.any():
        bad[quick] = wrong(shapely.bounds(geoms[quick]))
    rest = np.flatnonzero(~quick)
    if len(rest):
        coords, owner = shapely.get_coordinates(geoms[rest], return_index=True)
        bad[rest[np.unique(owner[wrong(coords)])]] = True
    if not bad.any():
        return
    k = int(np.flatnonzero(bad)[0])
    coords = shapely.get_coordinates(geoms[k])
    lon, lat = coords[np.flatnonzero(wrong(coords))[0]]
    where = f"{file}: feature {labels[index[k]]}: coordinate ({lon:g}, {lat:g})"
    if not (np.isfinite(lon) and np.isfinite(lat)):
        raise LayerError(f"{where} is not a finite number; fix or remove the feature")
    raise LayerError(
        f"{where} is outside lon -180..180 / lat -90..90 in EPSG:4326 (source CRS {crs}); "
        "check the CRS (--crs) and the lat/lon columns"
    )


def _polygonal_part(geom: shapely.Geometry) -> shapely.Geometry | None:
    """Keep the polygons of a ``make_valid`` result (it may add lines or points)."""
    type_id = shapely.get_type_id(geom)
    if type_id in (_POLYGON, _MULTIPOLYGON):
        return geom
    parts = shapely.get_parts(shapely.get_parts(geom))  # flatten collections of multis
    polys = parts[np.isin(shapely.get_type_id(parts), (_POLYGON,))]
    if len(polys) == 0:
        return None
    return polys[0] if len(polys) == 1 else shapely.multipolygons(polys)


# --------------------------------------------------------------------------------------
# The public loader


def load_layers(
    paths: str | Path | Iterable[str | Path],
    *,
    crs: str | None = None,
    category: str | None = None,
    columns: Mapping[str, str] | None = None,
    max_features: int = DEFAULT_MAX_FEATURES,
    max_vertices_per_site: int = DEFAULT_MAX_VERTICES_PER_SITE,
) -> SiteLayer:
    """Load site layer files into one validated table of sites.

    Parameters
    ----------
    paths : str, pathlib.Path or iterable of them
        Data files (``.geojson``/``.json``, ``.gpkg``, ``.shp``, ``.fgb``,
        ``.parquet``, ``.csv``/``.tsv``, optionally ``.gz`` for CSV and GeoJSON) or layer
        definitions (``.toml``, schema in ``layers/README.md``).
    crs : str, optional
        CRS of files that carry none (``"EPSG:2926"``). A CRS stored in a file wins.
        GeoJSON and CSV without one are taken as EPSG:4326 lon/lat.
    category : str, optional
        Category id for every site of files that do not say (see Notes).
    columns : mapping of str to str, optional
        Names of the file's columns for ``lat``, ``lon``, ``name``, ``site_id`` and
        ``category``; found by common names when not given.
    max_features : int
        Most features read from all files together.
    max_vertices_per_site : int
        Most coordinates in one site's geometry.

    Returns
    -------
    SiteLayer
        ``sites`` (GeoDataFrame in EPSG:4326) and one ``LayerSource`` per file.

    Raises
    ------
    LayerError
        If a file is missing or unreadable, a coordinate is out of range after the
        transformation, coordinate or id columns are ambiguous, ``site_id``s repeat, or
        the category of a file cannot be told.
    CRSError
        If a file that is not GeoJSON or CSV has no CRS and ``crs`` is not given.
    ResourceLimitError
        If ``max_features`` or ``max_vertices_per_site`` is exceeded.

    Notes
    -----
    The category of a file's sites comes from, in this order: the layer definition's
    ``category`` or ``category_map``; the column named by ``columns["category"]``; a
    column named ``category`` holding category ids; the ``category`` argument; a table
    of ``layers/category_maps.toml`` whose ``detect`` columns the file has (HIFLD
    hospitals ``TYPE``, places of worship ``SUBTYPE``); the OSM tag table
    ``layers/osm_tags.toml`` when the file has OSM tag columns (``amenity``, ...).
    Settings in a layer definition win over the call's ``crs``/``category``/``columns``,
    which only fill what the definition leaves out.

    ``site_id`` is taken from a ``site_id`` column as it is, or from an id column
    (``CDSCode``, ``osm_id``, ``ID``, ``OBJECTID``, ...) prefixed with the file stem
    (``Hospitals:5798055``), or generated as ``<file stem>:<n>`` with ``n`` the 1-based
    position of the feature in the file; all are stable across runs.

    Polygons that are not valid are repaired with :func:`shapely.make_valid` and only
    their polygonal parts kept (``LayerSource.repaired``). Null or empty geometries,
    unsupported types and rows without a category are rejected with a reason
    (``LayerSource.rejected``), which is not an error.

    Examples
    --------
    >>> import geopandas as gpd, shapely, tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp()) / "parks.geojson"
    >>> gpd.GeoDataFrame({"name": ["Park"]}, geometry=[shapely.box(-122.3, 37.8, -122.29, 37.81)], crs=4326).to_file(tmp)
    >>> layer = load_layers(tmp, category="children_gather")
    >>> layer.sites[["site_id", "category"]].to_dict("records")
    [{'site_id': 'parks:1', 'category': 'children_gather'}]
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    if category is not None and category not in CATEGORIES:
        raise LayerError(
            f"category {category!r} is not a category id; use one of {', '.join(CATEGORIES)}"
        )
    columns = dict(columns or {})
    unknown = set(columns) - _COLUMN_KEYS
    if unknown:
        raise LayerError(
            f"columns: {sorted(unknown)[0]!r} unknown; name only {', '.join(sorted(_COLUMN_KEYS))}"
        )

    frames: list[gpd.GeoDataFrame] = []
    sources: list[LayerSource] = []
    budget = max_features
    maps: dict[str, _CategoryMap] | None = None
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise LayerError(f"{path}: no such file")
        if path.suffix.lower() == ".toml":
            spec = _read_definition(path, crs, category, columns)
            if not spec.path.exists():
                raise LayerError(
                    f"layer definition {path.name}: path: {spec.path.name} not found next to the definition"
                )
        else:
            spec = _Spec(path=path, crs=crs, category=category, columns=dict(columns))
        if maps is None:
            maps = load_category_maps()
        with gc_paused():  # collections over 100k new geometries: ~0.02 s (issue #10)
            frame, source = _load_one(spec, budget, max_vertices_per_site, maps)
        budget -= source.features_in
        frames.append(frame)
        sources.append(source)

    with gc_paused():
        sites = _combine(frames)
    # is_unique hashes once (2 ms per 100k ids); which ids repeat only when some do
    dup = None if pd.Index(sites["site_id"], dtype=object).is_unique else sites["site_id"]
    if dup is not None:
        dup = dup.duplicated(keep=False)
        shown = sites.loc[dup, ["site_id", "source"]].drop_duplicates().head(5)
        listed = ", ".join(f"{r.site_id} ({r.source})" for r in shown.itertuples())
        raise LayerError(
            f"duplicate site_id in the layers: {listed}"
            f"{' ...' if dup.sum() > len(shown) else ''}; give unique ids or another id column with --columns site_id=COLUMN"
        )
    return SiteLayer(sites=sites, sources=sources)


def _combine(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    base = ["site_id", "name", "category", "source"]
    extra = [c for c in PASS_THROUGH_COLUMNS if any(c in f.columns for f in frames)]
    if not frames:
        empty = {c: pd.Series(dtype=object) for c in base + extra}
        return gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs=WGS84), crs=WGS84)
    parts = []
    for f in frames:
        for c in extra:
            if c not in f.columns:
                f[c] = None
        parts.append(f[[*base, *extra, "geometry"]])
    out = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    # Object columns, missing is None (not NaN or pd.NA). _load_one builds the base
    # columns so (ids and categories are never missing in a kept site, names are "");
    # the pass-through columns are as the file gave them.
    for c in [*base, *extra]:
        if c in base and out[c].dtype == object:
            continue
        values = out[c].to_numpy(object)
        missing = pd.isna(values)
        if missing.any() or out[c].dtype != object:
            values = values.copy()
            values[missing] = None
            out[c] = pd.Series(values, dtype=object)
    return gpd.GeoDataFrame(out, geometry="geometry", crs=WGS84)


class _Validity:
    """``shapely.is_valid`` of the Polygon/MultiPolygon features (True elsewhere), computed
    in halves on two threads of its own; :meth:`result` waits for it."""

    def __init__(self, geoms: np.ndarray, type_ids: np.ndarray):
        self._poly = np.flatnonzero(np.isin(type_ids, (_POLYGON, _MULTIPOLYGON)))
        self._n = len(geoms)
        half = len(self._poly) // 2
        pool = ThreadPoolExecutor(2, thread_name_prefix="geofence-layers")
        self._parts = [
            pool.submit(shapely.is_valid, geoms[idx])
            for idx in (self._poly[:half], self._poly[half:])
        ]
        pool.shutdown(wait=False)  # the two tasks still run; the threads end after them

    def result(self) -> np.ndarray:
        valid = np.ones(self._n, dtype=bool)
        valid[self._poly] = np.concatenate([p.result() for p in self._parts])
        return valid


def _load_one(
    spec: _Spec, budget: int, max_vertices: int, maps
) -> tuple[gpd.GeoDataFrame, LayerSource]:
    # The file's SHA-256 on a thread of its own: hashlib lets go of the GIL for each MiB,
    # and the camera audit reads its cameras beside this load (issue #10 benchmark).
    hashing = ThreadPoolExecutor(1, thread_name_prefix="geofence-sha256")
    sha256 = hashing.submit(sha256_file, spec.path)
    hashing.shutdown(wait=False)
    frame, geoms, reasons, file_crs, label = _read_file(spec, budget)
    if len(frame) == 0:
        raise LayerError(
            f"{spec.path.name}: the layer has no features (0 sites); check the file, or its layer name with `layer =` in a layer definition"
        )
    # GEOS's validity test is the largest step of a load (0.1 s per 80k polygons) and
    # releases the GIL: run it beside the column work below (issue #10 benchmark).
    type_ids = shapely.get_type_id(geoms)
    validity = _Validity(geoms, type_ids)
    path = spec.path
    file = path.name
    stem = _file_stem(path)
    source = LayerSource(
        path=path, sha256=sha256.result(), format=label, crs=None, features_in=len(frame)
    )
    # Licence and attribution columns (OSM imports, issue #8) travel with the layer to
    # `layers check`, scan summaries and sharing manifests.
    for attr in ("license", "attribution"):
        found = _detect(list(frame.columns), (attr,))
        if found:
            values = frame[found[0]].dropna().astype(str).str.strip()
            values = sorted(v for v in values.unique() if v)
            setattr(source, attr, "; ".join(values) or None)

    # CRS: the file's own, else the caller's, else the format's default (GeoJSON, CSV).
    if file_crs is not None:
        src_crs = file_crs
        source.crs = pyproj.CRS.from_user_input(file_crs).to_string()
    elif spec.crs is not None:
        try:
            src_crs = pyproj.CRS.from_user_input(spec.crs)
        except pyproj.exceptions.CRSError as exc:
            raise CRSError(
                f"{file}: CRS {spec.crs!r} is not understood ({exc}); give e.g. EPSG:2926"
            ) from exc
        source.crs = f"{src_crs.to_string()} ({spec.crs_origin})"
    elif label in _DEFAULT_CRS_FORMATS:
        src_crs = WGS84
        source.crs = "EPSG:4326 (none in file; assumed for GeoJSON/CSV)"
    else:
        raise CRSError(
            f"{file}: the {label} file has no CRS; give it with --crs (e.g. --crs EPSG:2926) or crs = ... in a layer definition"
        )

    site_ids = _site_ids(frame, spec, stem).to_numpy(object)
    names = _names(frame, spec).to_numpy(object)
    cats, cat_reasons = _categories(frame, spec, maps)
    labels = site_ids  # features are named by site_id in messages: stable and unique

    # Geometry checks, vectorised over the file.
    is_null = shapely.is_missing(geoms) & pd.isna(reasons)
    reasons[is_null] = "no geometry (null)"
    live = pd.isna(reasons)
    empty = live & shapely.is_empty(geoms)
    reasons[empty] = "empty geometry"
    live &= ~empty
    unsupported = live & ~np.isin(type_ids, _KEPT_TYPES)
    if unsupported.any():
        type_names = shapely.get_type_id(geoms[unsupported])
        reasons[unsupported] = [
            f"{_TYPE_NAMES.get(t, 'unknown')} geometry is not supported; use Point, LineString or Polygon types"
            for t in type_names
        ]
    live &= ~unsupported

    n_coords = shapely.get_num_coordinates(geoms)
    too_big = live & (n_coords > max_vertices)
    if too_big.any():
        i = int(np.flatnonzero(too_big)[0])
        raise ResourceLimitError(
            f"{file}: feature {labels[i]} has {int(n_coords[i]):,} vertices, more than the limit of "
            f"{max_vertices:,} per site; simplify the layer or raise the limit (--max-vertices)"
        )

    polygonal = live & np.isin(type_ids, (_POLYGON, _MULTIPOLYGON))
    invalid_idx = np.flatnonzero(polygonal & ~validity.result())
    if len(invalid_idx):
        # GEOS calls a polygon with a NaN or infinite coordinate invalid, and then fails
        # to say why or to repair it: that is the file's error, not a repair.
        _check_coordinates(file, labels, invalid_idx, geoms[invalid_idx], finite_only=True)
        why = shapely.is_valid_reason(geoms[invalid_idx])
        fixed = shapely.make_valid(geoms[invalid_idx])
        for i, reason, geom in zip(invalid_idx, why, fixed, strict=True):  # only the invalid few
            kept = _polygonal_part(geom)
            if kept is None or shapely.is_empty(kept):
                reasons[i] = f"invalid polygon ({reason}) has no area after make_valid"
                live[i] = False
            else:
                geoms[i] = kept
                source.repaired.append((str(labels[i]), f"make_valid: {reason}"))

    no_cat = live & pd.isna(cats)
    reasons[no_cat] = cat_reasons[no_cat]
    live &= ~no_cat

    keep = np.flatnonzero(live)
    for i in np.flatnonzero(~live):
        source.rejected.append((str(labels[i]), str(reasons[i])))

    kept_geoms = _to_wgs84(geoms[keep], src_crs) if len(keep) else geoms[keep]
    # Untransformed polygons and points show a bad coordinate in their bounds: GEOS's
    # validity test (or the check above) has found every polygon coordinate finite, and a
    # point's bounds are its NaN. Other types, and everything a CRS transformation made,
    # are checked coordinate by coordinate (30 -> 12 ms per 100k sites, issue #10 benchmark).
    by_bounds = np.isin(type_ids[keep], (_POINT, _POLYGON, _MULTIPOLYGON)) & _is_wgs84(src_crs)
    _check_coordinates(file, labels, keep, kept_geoms, by_bounds=by_bounds, crs=source.crs)

    kept_columns = {
        "site_id": site_ids[keep],
        "name": names[keep],
        "category": cats[keep],
        "source": full_object(len(keep), file),
        **{k: v[keep] for k, v in _pass_through(frame).items()},
    }
    out = gpd.GeoDataFrame(
        # object, as _combine gives them: pandas 3 would infer Arrow strings from the
        # arrays (0.05 s per 100k sites) only for _combine to turn them back.
        {k: pd.Series(v, dtype=object, copy=False) for k, v in kept_columns.items()},
        geometry=gpd.GeoSeries(kept_geoms, crs=WGS84),
        crs=WGS84,
    )
    source.sites_loaded = len(out)
    return out, source


_TYPE_NAMES = {
    -1: "null",
    _POINT: "Point",
    _LINESTRING: "LineString",
    _LINEARRING: "LinearRing",
    _POLYGON: "Polygon",
    _MULTIPOINT: "MultiPoint",
    _MULTILINESTRING: "MultiLineString",
    _MULTIPOLYGON: "MultiPolygon",
    7: "GeometryCollection",
}
