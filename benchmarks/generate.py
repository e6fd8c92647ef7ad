"""Seeded synthetic workloads for the geofence peer benchmark (issue #5).

Writes sensitive sites over the San Francisco Bay Area (GeoParquet, EPSG:4326) and ALPR read
logs (CSV) whose reads come from fixed cameras and patrol cars. Everything is vectorised numpy,
so ten million reads take seconds rather than minutes.

The data are SYNTHETIC: places, plates, cameras and agencies are made up. Sites and reads are
drawn from the same mixture of town centres so that, at 10,000 sites, about a third of the reads
fall within 150 m of a site, and at 100,000 sites almost all do (several sites each).

Examples
--------
::

    python benchmarks/generate.py --sites 10000 --reads 1000000 --seed 42 --out benchmarks/data
    python benchmarks/generate.py --preset tiny --out /some/dir

Files are named after their size and seed (``sites-10k-s42.parquet``, ``reads-1M-s42.csv``),
so one read log serves every site count. Sites and reads use independent random streams of the
same seed: a read log is the same whatever sites file is generated beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

# Bounding box of the metro area (WGS84 degrees): SF, Oakland, Berkeley, Richmond, Hayward.
LON_MIN, LON_MAX = -122.55, -122.0
LAT_MIN, LAT_MAX = 37.6, 37.95

# Town centres: (lon, lat, sigma in km, weight, agency). Sites, cameras and patrol shifts are all
# drawn from this mixture, plus a uniform background, so reads and sites share their hot spots.
CENTRES = [
    (-122.405, 37.785, 2.2, 0.14, "SFPD"),  # SF downtown / SoMa
    (-122.418, 37.757, 1.8, 0.07, "SFPD"),  # Mission
    (-122.478, 37.765, 2.5, 0.08, "SFPD"),  # Sunset / Richmond district
    (-122.392, 37.730, 1.8, 0.05, "SFPD"),  # Bayview
    (-122.465, 37.690, 1.8, 0.04, "DCPD"),  # Daly City
    (-122.272, 37.805, 2.0, 0.12, "OPD"),  # Oakland downtown
    (-122.215, 37.775, 2.8, 0.10, "OPD"),  # Fruitvale / East Oakland
    (-122.272, 37.868, 1.8, 0.08, "BPD"),  # Berkeley
    (-122.258, 37.765, 1.3, 0.04, "APD"),  # Alameda
    (-122.155, 37.723, 2.2, 0.06, "SLPD"),  # San Leandro
    (-122.335, 37.932, 2.2, 0.05, "RPD"),  # Richmond / El Cerrito
    (-122.080, 37.668, 2.5, 0.05, "HPD"),  # Hayward
]
BACKGROUND_WEIGHT = 0.12  # uniform over the bounding box; agency "CHP"
BACKGROUND_AGENCY = "CHP"
# (spread, background) per population. Sites gather round the town centres; cameras are spread
# wider (arterials, city limits) and patrols lie in between. The spreads are wide because every
# fence covers at least 0.08 km2 (a 150 m disc plus the site): 10,000 fences tightly clustered
# would flag almost every read in a centre and none elsewhere.
SITE_MIX = (2.0, 0.2)
CAMERA_MIX = (3.0, 0.6)
PATROL_MIX = (2.5, 0.4)

# Categories of the federal packs with rough real-world proportions (places of worship and
# childcare are the most numerous sensitive places in a US metro, then schools).
CATEGORIES = {
    "worship": 0.26,
    "childcare": 0.18,
    "school": 0.17,
    "medical": 0.13,
    "social_services": 0.11,
    "children_gather": 0.09,
    "community_center": 0.06,
}
POINT_FRACTION = 0.20

# Metres per degree near 37.8 N; good enough to lay out synthetic shapes of 20-200 m.
M_PER_DEG_LAT = 110_990.0
YEAR_START = 1_735_689_600  # 2025-01-01T00:00:00Z
YEAR_SECONDS = 365 * 86_400

# Relative traffic by hour of day (UTC; the Bay Area is UTC-8/-7, so the afternoon rush is
# around 00:00-02:00 UTC and the quiet night around 10:00-13:00 UTC).
HOURLY = np.array(
    [9, 9, 8, 7, 6, 5, 5, 4, 3, 2, 1.5, 1.2, 1.2, 1.5, 3, 5, 7, 8, 7, 7, 7, 8, 8, 9], dtype=float
)


def parse_count(text: str) -> int:
    """Parse a count such as ``10000``, ``10k`` or ``1M``.

    Parameters
    ----------
    text : str
        A non-negative integer, optionally with a ``k`` (thousand) or ``M`` (million) suffix.

    Returns
    -------
    int
    """
    text = text.strip()
    scale = {"k": 1_000, "K": 1_000, "m": 1_000_000, "M": 1_000_000}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    return int(float(number) * scale)


def count_label(n: int) -> str:
    """Short label for a count: 10000 -> ``10k``, 1000000 -> ``1M``, 5000 -> ``5k``."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def sites_path(out: Path, n_sites: int, seed: int) -> Path:
    """Path of the sites file for ``n_sites`` and ``seed`` under ``out``."""
    return out / f"sites-{count_label(n_sites)}-s{seed}.parquet"


def reads_path(out: Path, n_reads: int, seed: int) -> Path:
    """Path of the read log for ``n_reads`` and ``seed`` under ``out``."""
    return out / f"reads-{count_label(n_reads)}-s{seed}.csv"


def _m_per_deg_lon(lat: np.ndarray) -> np.ndarray:
    return 111_320.0 * np.cos(np.radians(lat))


def _mixture_points(
    rng: np.random.Generator, n: int, spread: float = 1.0, background: float = BACKGROUND_WEIGHT
):
    """Draw ``n`` positions from the town-centre mixture.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
    spread : float
        Factor on every centre's sigma.
    background : float
        Weight of the uniform background against the centres' weights (which sum to 0.88).

    Returns
    -------
    lon, lat : ndarray of float64
    agency : ndarray of int
        Index into :func:`agencies` of the centre that produced each point.
    """
    weights = np.array([c[3] for c in CENTRES] + [background])
    comp = rng.choice(len(weights), size=n, p=weights / weights.sum())
    centre = np.array([(c[0], c[1], c[2]) for c in CENTRES] + [(0.0, 0.0, 0.0)])
    lon0, lat0, sigma_km = centre[comp, 0], centre[comp, 1], centre[comp, 2] * spread
    dx = rng.standard_normal(n) * sigma_km * 1000.0
    dy = rng.standard_normal(n) * sigma_km * 1000.0
    lat = lat0 + dy / M_PER_DEG_LAT
    lon = lon0 + dx / _m_per_deg_lon(lat0)
    bg = comp == len(CENTRES)
    lon[bg] = rng.uniform(LON_MIN, LON_MAX, bg.sum())
    lat[bg] = rng.uniform(LAT_MIN, LAT_MAX, bg.sum())
    # Gaussian tails would leave the metro; fold them back in rather than pile them on the edge.
    lon = _fold(lon, LON_MIN, LON_MAX)
    lat = _fold(lat, LAT_MIN, LAT_MAX)
    return lon, lat, comp


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def agencies() -> list[str]:
    """Agency of each mixture component (the last one is the uniform background)."""
    return [c[4] for c in CENTRES] + [BACKGROUND_AGENCY]


# --------------------------------------------------------------------------------------------
# Sites
# --------------------------------------------------------------------------------------------


def _radial_rings(rng, n, k, size):
    """``n`` star-shaped ("convex-ish") rings of ``k`` vertices in local metres, shape (n, k, 2)."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, (n, k)), axis=1)
    # Pull the angles towards a regular polygon so every gap is under pi (0.35 * 2pi +
    # 0.65 * 2pi/5 < pi): the centre is then inside the ring and no ring is a sliver.
    ang = 0.35 * ang + 0.65 * (np.arange(k) * 2 * np.pi / k + rng.uniform(0, 2 * np.pi, (n, 1)))
    rad = (size[:, None] / 2) * rng.uniform(0.7, 1.0, (n, k))
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=-1)


def _rect_rings(rng, n, size):
    """``n`` rotated rectangles in local metres, shape (n, 4, 2), longest side about ``size``."""
    w = size * rng.uniform(0.6, 1.0, n) / np.sqrt(2) * 1.35
    h = w * rng.uniform(0.3, 1.0, n)
    base = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    xy = base[None] * np.stack([w, h], axis=-1)[:, None, :]
    th = rng.uniform(0, np.pi, n)
    c, s = np.cos(th)[:, None], np.sin(th)[:, None]
    return np.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], axis=-1)


def _shells(rng, n, size):
    """Rings for ``n`` shapes, half rectangles and half radial polygons of 5-12 vertices.

    Returns a list of ``(index, rings)`` batches: rings of one batch share a vertex count.
    """
    import shapely

    is_rect = rng.random(n) < 0.5
    out = []
    idx = np.flatnonzero(is_rect)
    if idx.size:
        out.append((idx, shapely.linearrings(_rect_rings(rng, idx.size, size[idx]))))
    idx = np.flatnonzero(~is_rect)
    ks = rng.integers(5, 13, idx.size)
    for k in np.unique(ks):
        sub = idx[ks == k]
        out.append((sub, shapely.linearrings(_radial_rings(rng, sub.size, int(k), size[sub]))))
    return out


def _to_degrees(geoms, lon, lat):
    """Move shapes laid out in local metres around (0, 0) to lon/lat around each centre."""
    import shapely

    sx = 1.0 / _m_per_deg_lon(lat)
    sy = 1.0 / M_PER_DEG_LAT
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    coords[:, 0] = lon[index] + coords[:, 0] * sx[index]
    coords[:, 1] = lat[index] + coords[:, 1] * sy
    return shapely.set_coordinates(geoms.copy(), coords)


def make_sites(n_sites: int, seed: int):
    """Generate ``n_sites`` sites as a GeoDataFrame in EPSG:4326.

    About 20 % are points; the polygons are 20-200 m across: rectangles and star-shaped
    polygons, 15 % of them with a courtyard hole, 15 % MultiPolygons of 2-3 parts.

    Parameters
    ----------
    n_sites : int
    seed : int

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``site_id``, ``name``, ``category``, ``geometry``.
    """
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng([seed, 1])
    lon, lat, _ = _mixture_points(rng, n_sites, *SITE_MIX)
    cats = np.array(list(CATEGORIES))
    p = np.array(list(CATEGORIES.values()))
    category = cats[rng.choice(len(cats), n_sites, p=p / p.sum())]
    # Log-uniform diameter: many small buildings, fewer campuses.
    size = np.exp(rng.uniform(np.log(20.0), np.log(200.0), n_sites))

    geoms = np.empty(n_sites, dtype=object)
    kind = rng.random(n_sites)
    is_point = kind < POINT_FRACTION
    poly = ~is_point
    # Among polygons: 15 % holed, 15 % multi, the rest simple.
    sub = rng.random(n_sites)
    holed = poly & (sub < 0.15)
    multi = poly & (sub >= 0.15) & (sub < 0.30)
    simple = poly & ~holed & ~multi

    geoms[is_point] = shapely.points(np.zeros((is_point.sum(), 2)))

    idx = np.flatnonzero(simple)
    for sel, rings in _shells(rng, idx.size, size[idx]):
        geoms[idx[sel]] = shapely.polygons(rings)

    idx = np.flatnonzero(holed)
    for sel, rings in _shells(rng, idx.size, size[idx]):
        # The courtyard: a rotated square inside the largest disc about the centre that fits in
        # the shell (a scaled copy of a concave shell could cross it).
        inner = shapely.distance(shapely.points(np.zeros((sel.size, 2))), rings)
        # A rectangle scaled into the square of half-side h lies in the disc of radius h*sqrt2.
        half = inner * rng.uniform(0.4, 0.68, sel.size)
        square = _rect_rings(rng, sel.size, np.ones(sel.size))
        square /= np.abs(square).max(axis=1, keepdims=True).max(axis=2, keepdims=True)
        holes = shapely.linearrings(square * half[:, None, None])
        geoms[idx[sel]] = shapely.polygons(rings, holes=holes[:, None])

    idx = np.flatnonzero(multi)
    nparts = rng.integers(2, 4, idx.size)
    owner = np.repeat(np.arange(idx.size), nparts)
    part_size = size[idx][owner] * rng.uniform(0.35, 0.6, owner.size)
    parts = np.empty(owner.size, dtype=object)
    for sel, rings in _shells(rng, owner.size, part_size):
        parts[sel] = rings
    # Parts sit in a row with gaps of 3-30 m (a campus of buildings): each is moved along the
    # row by the reach of the previous parts, so parts never overlap.
    coords, o = shapely.get_coordinates(parts, return_index=True)
    reach = np.zeros(owner.size)
    np.maximum.at(reach, o, np.hypot(coords[:, 0], coords[:, 1]))
    first = np.cumsum(nparts) - nparts
    step = reach + rng.uniform(3.0, 30.0, owner.size)
    step[1:] += reach[:-1]
    step[first] = 0.0
    along = _segmented_cumsum(step, first, owner)
    th = rng.uniform(0, 2 * np.pi, idx.size)[owner]
    coords[:, 0] += (along * np.cos(th))[o]
    coords[:, 1] += (along * np.sin(th))[o]
    parts = shapely.polygons(shapely.set_coordinates(parts, coords))
    geoms[idx] = shapely.multipolygons(parts, indices=owner)

    geoms = _to_degrees(geoms, lon, lat)
    site_id = np.char.add("S", np.char.zfill(np.arange(1, n_sites + 1).astype(str), 7))
    name = np.char.add(np.char.add("Synthetic ", np.char.replace(category, "_", " ")), " ")
    name = np.char.add(name, np.arange(1, n_sites + 1).astype(str))
    return gpd.GeoDataFrame(
        {"site_id": site_id, "name": name, "category": category},
        geometry=geoms,
        crs="EPSG:4326",
    )


# --------------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------------


def _fixed_width_strings(codes: np.ndarray) -> pa.StringArray:
    """Turn an (n, w) uint8 matrix of ASCII codes into an Arrow string array without a loop."""
    n, w = codes.shape
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32 if n * w < 2**31 else np.int64)
    data = np.ascontiguousarray(codes, dtype=np.uint8)
    typ = pa.string() if offsets.dtype == np.int32 else pa.large_string()
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """ASCII digits of non-negative integers, zero padded, as an (n, width) uint8 matrix."""
    pw = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // pw % 10 + ord("0")).astype(np.uint8)


def iso_utc(seconds: np.ndarray) -> pa.StringArray:
    """Format Unix seconds as ``YYYY-MM-DDTHH:MM:SSZ`` (vectorised; ``strftime`` is 10x slower)."""
    t = seconds.astype("datetime64[s]")
    year = t.astype("datetime64[Y]")
    month = t.astype("datetime64[M]")
    day = t.astype("datetime64[D]")
    sod = (t - day).astype(np.int64)
    cols = [
        _digits(year.astype(np.int64) + 1970, 4),
        np.full((len(t), 1), ord("-"), np.uint8),
        _digits((month - year).astype(np.int64) + 1, 2),
        np.full((len(t), 1), ord("-"), np.uint8),
        _digits((day - month).astype(np.int64) + 1, 2),
        np.full((len(t), 1), ord("T"), np.uint8),
        _digits(sod // 3600, 2),
        np.full((len(t), 1), ord(":"), np.uint8),
        _digits(sod // 60 % 60, 2),
        np.full((len(t), 1), ord(":"), np.uint8),
        _digits(sod % 60, 2),
        np.full((len(t), 1), ord("Z"), np.uint8),
    ]
    return _fixed_width_strings(np.hstack(cols))


def _plate_pool(rng: np.random.Generator, n: int) -> pa.StringArray:
    """``n`` California-style plates: a digit, three letters, three digits (e.g. ``7ABC123``)."""
    codes = np.empty((n, 7), np.uint8)
    codes[:, 0] = rng.integers(ord("1"), ord("9") + 1, n)
    codes[:, 1:4] = rng.integers(ord("A"), ord("Z") + 1, (n, 3))
    codes[:, 4:7] = rng.integers(ord("0"), ord("9") + 1, (n, 3))
    return _fixed_width_strings(codes)


def _time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    p = HOURLY / HOURLY.sum()
    return rng.choice(24, n, p=p) * 3600 + rng.integers(0, 3600, n)


def make_reads(n_reads: int, seed: int) -> pa.Table:
    """Generate an ALPR read log of ``n_reads`` rows over 2025, sorted by time.

    About 70 % of reads come from a few thousand fixed cameras (every read of a camera has the
    camera's exact coordinates; a few cameras are very busy), 30 % from patrol cars driving
    shifts of correlated random walks with a read every ~30 s.

    Parameters
    ----------
    n_reads : int
    seed : int

    Returns
    -------
    pyarrow.Table
        Columns ``read_id`` (equal to the 1-based row number), ``plate``, ``timestamp``
        (ISO-8601 UTC), ``lat``, ``lon`` (6 decimals, ~0.1 m), ``camera_id``, ``agency``.
    """
    rng = np.random.default_rng([seed, 2])
    ag_names = np.array(agencies())
    n_fixed = round(n_reads * 0.7)
    n_patrol = n_reads - n_fixed

    # Fixed cameras: 3,000 at 1M reads, at most 5,000; read volume is log-normal per camera.
    n_cam = int(min(5000, max(10, 3 * np.sqrt(n_reads))))
    cam_lon, cam_lat, cam_comp = _mixture_points(rng, n_cam, *CAMERA_MIX)
    cam_w = rng.lognormal(0.0, 1.0, n_cam)
    cam = rng.choice(n_cam, n_fixed, p=cam_w / cam_w.sum())
    f_lon, f_lat = cam_lon[cam], cam_lat[cam]
    f_t = YEAR_START + rng.integers(0, 365, n_fixed) * 86_400 + _time_of_day(rng, n_fixed)

    # Patrol cars: shifts of ~150 reads starting anywhere in the mixture; each step is a read
    # taken dt seconds after the previous one, moving at a speed that is sometimes zero.
    n_car = int(min(400, max(3, n_reads // 5000)))
    shift_len = np.maximum(1, rng.geometric(1 / 150, size=max(1, n_patrol // 100)))
    shift_len = shift_len[np.cumsum(shift_len) <= n_patrol]
    short = n_patrol - shift_len.sum()
    if short:
        shift_len = np.append(shift_len, short)
    n_shift = shift_len.size
    shift_car = rng.integers(0, n_car, n_shift)
    s_lon, s_lat, _ = _mixture_points(rng, n_shift, *PATROL_MIX)
    s_t = YEAR_START + rng.integers(0, YEAR_SECONDS - 86_400, n_shift)
    owner = np.repeat(np.arange(n_shift), shift_len)
    first = np.cumsum(shift_len) - shift_len
    dt = rng.exponential(30.0, n_patrol).astype(np.int64) + 1
    speed = np.where(rng.random(n_patrol) < 0.2, 0.0, rng.uniform(3.0, 15.0, n_patrol))
    # Heading drifts slowly and snaps round street corners now and then.
    turn = rng.normal(0.0, 0.15, n_patrol) + np.where(
        rng.random(n_patrol) < 0.08, rng.choice([-np.pi / 2, np.pi / 2], n_patrol), 0.0
    )
    turn[first] = rng.uniform(0, 2 * np.pi, n_shift)
    heading = _segmented_cumsum(turn, first, owner)
    step = speed * dt
    dx = _segmented_cumsum(step * np.cos(heading), first, owner)
    dy = _segmented_cumsum(step * np.sin(heading), first, owner)
    p_lat = _fold(s_lat[owner] + dy / M_PER_DEG_LAT, LAT_MIN, LAT_MAX)
    p_lon = _fold(s_lon[owner] + dx / _m_per_deg_lon(s_lat[owner]), LON_MIN, LON_MAX)
    p_t = s_t[owner] + _segmented_cumsum(dt, first, owner)

    lon = np.round(np.concatenate([f_lon, p_lon]), 6)
    lat = np.round(np.concatenate([f_lat, p_lat]), 6)
    t = np.concatenate([f_t, p_t])
    # Device: cameras 0..n_cam-1, then cars; agency from the mixture component they started in.
    car_comp = rng.integers(0, len(CENTRES), n_car)
    device = np.concatenate([cam, n_cam + shift_car[owner]])
    dev_agency = np.concatenate([cam_comp, car_comp])
    del f_lon, f_lat, p_lon, p_lat, f_t, p_t, owner, dx, dy, heading, step, turn, speed, dt

    order = np.argsort(t, kind="stable")
    lon, lat, t, device = lon[order], lat[order], t[order], device[order]
    del order

    pool = _plate_pool(rng, max(500, n_reads // 4))
    # Squaring a uniform skews towards the start of the pool: some plates are seen very often.
    plate_idx = (len(pool) * rng.random(n_reads) ** 2).astype(np.int64)
    dev_names = pa.array(
        [f"CAM-{i:05d}" for i in range(1, n_cam + 1)]
        + [f"CAR-{i:04d}" for i in range(1, n_car + 1)]
    )
    return pa.table(
        {
            "read_id": pa.array(np.arange(1, n_reads + 1, dtype=np.int64)),
            "plate": pool.take(pa.array(plate_idx)),
            "timestamp": iso_utc(t),
            "lat": pa.array(lat),
            "lon": pa.array(lon),
            "camera_id": dev_names.take(pa.array(device)),
            "agency": pa.array(ag_names[dev_agency]).take(pa.array(device)),
        }
    )


def _segmented_cumsum(x: np.ndarray, first: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``x`` restarting at each segment start ``first`` (``owner`` maps rows)."""
    c = np.cumsum(x)
    base = c[first] - x[first]
    return c - base[owner]


def write_reads(table: pa.Table, path: Path) -> None:
    """Write a read log as CSV (pyarrow's writer, in row batches to bound memory)."""
    tmp = path.with_suffix(path.suffix + ".part")
    with pacsv.CSVWriter(
        tmp,
        table.schema,
        write_options=pacsv.WriteOptions(
            quoting_style="none", quoting_header="none", batch_size=65536
        ),
    ) as w:
        for batch in table.to_batches(max_chunksize=1_000_000):
            w.write_batch(batch)
    tmp.replace(path)


def write_sites(gdf, path: Path) -> None:
    """Write sites as GeoParquet (geometry encoded as WKB, CRS EPSG:4326)."""
    tmp = path.with_suffix(path.suffix + ".part")
    gdf.to_parquet(tmp, index=False)
    tmp.replace(path)


def generate(out: Path, n_sites: int, n_reads: int, seed: int, force: bool = False) -> dict:
    """Write the sites and reads files that do not exist yet; return their paths and timings."""
    out.mkdir(parents=True, exist_ok=True)
    info: dict = {}
    if n_sites:
        sp = sites_path(out, n_sites, seed)
        if force or not sp.exists():
            t0 = time.perf_counter()
            write_sites(make_sites(n_sites, seed), sp)
            info["sites_seconds"] = round(time.perf_counter() - t0, 2)
        info["sites"] = str(sp)
    if n_reads:
        rp = reads_path(out, n_reads, seed)
        if force or not rp.exists():
            t0 = time.perf_counter()
            write_reads(make_reads(n_reads, seed), rp)
            info["reads_seconds"] = round(time.perf_counter() - t0, 2)
        info["reads"] = str(rp)
    return info


PRESETS = {"tiny": (2_000, 5_000), "small": (10_000, 1_000_000), "dense": (100_000, 1_000_000)}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", type=parse_count, default=None, help="number of sites (10k, 100k)")
    ap.add_argument("--reads", type=parse_count, default=None, help="number of reads (1M, 10M)")
    ap.add_argument("--preset", choices=sorted(PRESETS), help="sites x reads preset")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    args = ap.parse_args(argv)
    n_sites, n_reads = PRESETS.get(args.preset, (10_000, 1_000_000))
    n_sites = n_sites if args.sites is None else args.sites
    n_reads = n_reads if args.reads is None else args.reads
    info = generate(args.out, n_sites, n_reads, args.seed, force=args.force)
    for key, value in info.items():
        print(f"{key}: {value}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
