/* Compiled inner loops of the engine and the CSV writer (issue #5).
 *
 * Two loops dominated a dense scan after everything else was vectorised (100k sites,
 * per 1M reads): the exact test of candidate (read, piece) pairs, ~14M point-to-edge
 * terms through ~20 numpy temporaries each, and the text of ~8M `site@distance`
 * matches. Here each is one pass without temporaries, as is ordering each read's few
 * matches by distance (a global sort of all pairs before). Called through ctypes from
 * geofence/_kernels.py, which owns every array and checks every type and shape; ctypes
 * releases the GIL for the call, so the writer thread runs beside the matching.
 *
 * Same arithmetic as the numpy code it replaced, in the same order: only + - * / and
 * sqrt, each correctly rounded by IEEE 754, built with -ffp-contract=off (no fused
 * multiply-add) and without -ffast-math: the same bits on every CPU and in every
 * engine (issue #13). sqrt(e*e + n*n) stands for numpy's hypot; they differ by at most
 * an ulp (1e-14 m at 100 m), and libm's hypot made the whole loop 1.4x slower.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <Python.h>

/* Columns of a piece's row: everything one candidate needs in 128 bytes (two cache
 * lines) instead of gathers from 16 arrays; at 100k sites those arrays are ~15 MB and
 * every gather missed the cache. Keep in step with PIECE_COLUMNS in _kernels.py. */
enum { X0, Y0, Z0, SLON, CLON, SLAT, CLAT, REACH, FOOT, LIMIT, LO, HI, BX0, BY0, BX1, BY1, NCOL };

/* Planar distance from (east, north) to edges lo..hi (rows x0, y0, dx, dy), 0 inside an
 * area: the nearest edge by projection clamped to the segment (GEOS' arithmetic); inside
 * by an even-odd ray test towards +east, tried only within the piece's planar box (the
 * NaN boxes of lines never hold). */
static double edge_distance(int64_t lo, int64_t hi, double east, double north, const double *edge,
                            double bx0, double by0, double bx1, double by1) {
    double best = INFINITY;
    for (int64_t s = lo; s < hi; s++) {
        const double *e = edge + 4 * s;
        double px = east - e[0], py = north - e[1], sx = e[2], sy = e[3];
        double len2 = sx * sx + sy * sy;
        double t = len2 > 0.0 ? (px * sx + py * sy) * (1.0 / len2) : 0.0;
        t = t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);
        double ex = px - t * sx, ey = py - t * sy;
        double e2 = ex * ex + ey * ey;
        best = e2 < best ? e2 : best;
    }
    if (east >= bx0 && north >= by0 && east <= bx1 && north <= by1) {
        int odd = 0;
        for (int64_t s = lo; s < hi; s++) {
            const double *e = edge + 4 * s;
            double y0 = e[1], sy = e[3];
            if ((y0 > north) != (y0 + sy > north) && east < e[0] + (north - y0) * e[2] / sy)
                odd ^= 1;
        }
        if (odd) return 0.0;
    }
    return sqrt(best);
}

/* Candidate pairs within their fence. Pair i puts read[i] (ECEF x, y, z) in the plane of
 * piece[i]; a piece without edges is a point (distance to the origin), else
 * edge_distance; less the footprint, floored at 0, kept when <= the limit. A read
 * farther than `reach` from the origin cannot be kept and is skipped first. Writes the
 * kept pair indices and distances; returns how many. */
int64_t gf_exact_pairs(int64_t n, const int64_t *read, const int64_t *piece, const double *x,
                       const double *y, const double *z, const double *table, const double *edge,
                       int64_t *keep, double *dist) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = read[i];
        const double *row = table + NCOL * piece[i];
        double dx = x[r] - row[X0], dy = y[r] - row[Y0], dz = z[r] - row[Z0];
        double clon = row[CLON], slon = row[SLON];
        double east = clon * dy - slon * dx;
        double north = row[CLAT] * dz - row[SLAT] * (clon * dx + slon * dy);
        double rho = sqrt(east * east + north * north);
        if (!(rho <= row[REACH])) continue;
        int64_t lo = (int64_t)row[LO], hi = (int64_t)row[HI];
        double d = lo == hi ? rho - row[FOOT]
                            : edge_distance(lo, hi, east, north, edge, row[BX0], row[BY0],
                                            row[BX1], row[BY1]) - row[FOOT];
        if (d < 0.0) d = 0.0;
        if (d <= row[LIMIT]) {
            keep[k] = i;
            dist[k] = d;
            k++;
        }
    }
    return k;
}

/* edge_distance of each (piece[i], east[i], north[i]); box is (pieces, 4). */
void gf_edge_distances(int64_t n, const int64_t *piece, const double *east, const double *north,
                       const int64_t *ptr, const double *edge, const double *box, double *out) {
    for (int64_t i = 0; i < n; i++) {
        int64_t p = piece[i];
        const double *b = box + 4 * p;
        out[i] = edge_distance(ptr[p], ptr[p + 1], east[i], north[i], edge, b[0], b[1], b[2], b[3]);
    }
}

/* Sort each run of equal read[] (runs are contiguous) by dist, stable, carrying site
 * along, and keep only the first (nearest) pair of a site that appears twice in a run
 * (a site cut into pieces): insertion sort and a scan of the run, as a read's run is
 * a handful of sites (4.5 at 100k dense sites). The pairs are compacted in place;
 * returns how many are left, or -1 (nothing changed) if a run is longer than max_run. */
int64_t gf_sort_runs(int64_t n, int64_t *read, double *dist, int64_t *site, int64_t max_run) {
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && read[j] == read[i]) j++;
        if (j - i > max_run) return -1;
        i = j;
    }
    int64_t out = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && read[j] == read[i]) j++;
        for (int64_t k = i + 1; k < j; k++) {
            double d = dist[k];
            int64_t s = site[k], m = k - 1;
            while (m >= i && dist[m] > d) {
                dist[m + 1] = dist[m];
                site[m + 1] = site[m];
                m--;
            }
            dist[m + 1] = d;
            site[m + 1] = s;
        }
        int64_t first = out;
        for (int64_t k = i; k < j; k++) {
            int seen = 0;
            for (int64_t m = first; m < out; m++) {
                if (site[m] == site[k]) {
                    seen = 1;
                    break;
                }
            }
            if (seen) continue;
            read[out] = read[k];
            dist[out] = dist[k];
            site[out] = site[k];
            out++;
        }
        i = j;
    }
    return out;
}

/* Text of v >= 0 millimetres as metres, trailing zeros dropped: 112263 -> "112.263",
 * 119700 -> "119.7", 150000 -> "150" (Arrow's shortest round trip of v / 1000). */
static int mm_len(int64_t v) {
    int64_t whole = v / 1000, frac = v % 1000;
    int w = 1;
    while (whole >= 10) {
        w++;
        whole /= 10;
    }
    if (frac == 0) return w;
    if (frac % 100 == 0) return w + 2;
    if (frac % 10 == 0) return w + 3;
    return w + 4;
}

static char *mm_text(int64_t v, char *out) {
    int64_t whole = v / 1000, frac = v % 1000;
    char tmp[24];
    int w = 0;
    do {
        tmp[w++] = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole > 0);
    while (w > 0) *out++ = tmp[--w];
    if (frac == 0) return out;
    *out++ = '.';
    *out++ = (char)('0' + frac / 100);
    if (frac % 100 == 0) return out;
    *out++ = (char)('0' + frac / 10 % 10);
    if (frac % 10 == 0) return out;
    *out++ = (char)('0' + frac % 10);
    return out;
}

/* Sizes of the `matches` text of each read (prefix[site[j]] + text(mm[j]) for j in
 * ptr[i]..ptr[i+1], joined by ';') and of the text of its first distance: fills both
 * Arrow large_string offset arrays (n + 1). prefix_off are Arrow string offsets. */
void gf_matches_size(int64_t n, const int64_t *ptr, const int64_t *site, const int64_t *mm,
                     const int32_t *prefix_off, int64_t *m_off, int64_t *d_off) {
    int64_t m_len = 0, d_len = 0;
    m_off[0] = d_off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = ptr[i], b = ptr[i + 1];
        for (int64_t j = a; j < b; j++) {
            int64_t s = site[j];
            m_len += prefix_off[s + 1] - prefix_off[s] + mm_len(mm[j]);
        }
        if (b > a) {
            m_len += b - a - 1;
            d_len += mm_len(mm[a]);
        }
        m_off[i + 1] = m_len;
        d_off[i + 1] = d_len;
    }
}

/* The bytes sized by gf_matches_size. */
void gf_matches_fill(int64_t n, const int64_t *ptr, const int64_t *site, const int64_t *mm,
                     const int32_t *prefix_off, const char *prefix, const int64_t *m_off,
                     char *m_data, const int64_t *d_off, char *d_data) {
    for (int64_t i = 0; i < n; i++) {
        int64_t a = ptr[i], b = ptr[i + 1];
        char *out = m_data + m_off[i];
        for (int64_t j = a; j < b; j++) {
            if (j > a) *out++ = ';';
            int64_t s = site[j];
            int32_t lo = prefix_off[s], w = prefix_off[s + 1] - lo;
            memcpy(out, prefix + lo, (size_t)w);
            out = mm_text(mm[j], out + w);
        }
        if (b > a) mm_text(mm[a], d_data + d_off[i]);
    }
}

/* An importable module, so that the build and the import system find the library;
 * the functions above are called through ctypes. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ckernels", NULL, -1, NULL};

/* Distinct positions by the bits of their coordinates (issue #5). Fixed cameras read the
 * same (lon, lat) again and again, and the engine matches each distinct position once:
 * pandas' factorize of lon + 1j*lat cost ~0.5 s per 10M reads (a complex array built,
 * then a general hash table), and its lookup in the cache of repeated positions another
 * 0.2 s. Here one open-addressing table (linear probing, slots hold code + 1, 0 empty)
 * of at least twice as many slots as keys, sized by the caller to a power of two.
 * Positions are equal when both doubles have the same bits (-0.0 and 0.0 are then two
 * positions, each matched exactly: the same answer). */
static inline uint64_t bits_of(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static inline uint64_t pos_hash(uint64_t a, uint64_t b) {
    /* multiply-xorshift mix of both words: nearby coordinates differ in low mantissa bits */
    uint64_t h = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL) * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 31;
    h *= 0xD6E8FEB86659FD93ULL;
    h ^= h >> 32;
    return h;
}

/* inv[i] = code of (x[i], y[i]), codes in order of first appearance; first[code] = the
 * first i with that position. slots: cap zeros. Returns the number of codes. */
int64_t gf_factorize(int64_t n, const double *x, const double *y, int64_t cap, int64_t *slots,
                     int64_t *inv, int64_t *first) {
    const uint64_t mask = (uint64_t)cap - 1;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t a = bits_of(x[i]), b = bits_of(y[i]);
        uint64_t h = pos_hash(a, b) & mask;
        for (;;) {
            const int64_t s = slots[h];
            if (s == 0) {
                slots[h] = k + 1;
                first[k] = i;
                inv[i] = k++;
                break;
            }
            const int64_t j = first[s - 1];
            if (bits_of(x[j]) == a && bits_of(y[j]) == b) {
                inv[i] = s - 1;
                break;
            }
            h = (h + 1) & mask;
        }
    }
    return k;
}

/* out[i] = the code of (x[i], y[i]) in a table that gf_factorize built over kx, ky (its
 * codes index the first occurrences: kx[first[code]]), or -1. Reads only. */
void gf_lookup(int64_t n, const double *x, const double *y, int64_t cap, const int64_t *slots,
               const double *kx, const double *ky, const int64_t *first, int64_t *out) {
    const uint64_t mask = (uint64_t)cap - 1;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t a = bits_of(x[i]), b = bits_of(y[i]);
        uint64_t h = pos_hash(a, b) & mask;
        int64_t code = -1;
        for (;;) {
            const int64_t s = slots[h];
            if (s == 0) break;
            const int64_t j = first[s - 1];
            if (bits_of(kx[j]) == a && bits_of(ky[j]) == b) {
                code = s - 1;
                break;
            }
            h = (h + 1) & mask;
        }
        out[i] = code;
    }
}

/* Fields of plain CSV records (issue #5): Arrow's CSV parser took ~40 % of the matching
 * thread at 10k sites, most of it tokenising and copying seven text columns. When a
 * chunk holds no quote and no CR (the caller checks), a record's fields are the runs
 * between delimiters, and this one pass finds them: pos[j*n + i] is where field j of
 * record i starts, pos[nf*n + i] one past its last field's end plus one (as if a
 * delimiter followed). Record i is buf[starts[i]:ends[i]], its final \n not a field's.
 * Returns -1 when every record has nf fields and every byte is ASCII (Arrow's UTF-8
 * check then has nothing to find); else the first record with another count, or n for
 * a non-ASCII byte: the caller then leaves the chunk to Arrow. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define GF_SWAR 1
#endif

static const uint64_t LOW7 = 0x7F7F7F7F7F7F7F7FULL;
static const uint64_t ONES = 0x0101010101010101ULL;

int64_t gf_csv_fields(int64_t n, const uint8_t *buf, const int64_t *starts, const int64_t *ends,
                      int64_t nf, int64_t delim, int64_t *pos) {
    uint64_t any = 0;
    const uint8_t d = (uint8_t)delim;
    for (int64_t i = 0; i < n; i++) {
        const int64_t s = starts[i];
        int64_t e = ends[i];
        if (e > s && buf[e - 1] == '\n') e--;
        int64_t j = 0, k = s;
        pos[i] = s;
#ifdef GF_SWAR
        /* eight bytes at a time: the high bit of each byte equal to the delimiter, exactly
         * (no false positives), then one step per delimiter found */
        const uint64_t pat = ONES * d;
        for (; k + 8 <= e; k += 8) {
            uint64_t w;
            memcpy(&w, buf + k, 8);
            any |= w;
            const uint64_t t = w ^ pat;
            uint64_t m = ~(((t & LOW7) + LOW7) | t | LOW7);
            while (m) {
                if (++j >= nf) return i;
                pos[j * n + i] = k + (__builtin_ctzll(m) >> 3) + 1;
                m &= m - 1;
            }
        }
#endif
        for (; k < e; k++) {
            const uint8_t c = buf[k];
            any |= c;
            if (c == d) {
                if (++j >= nf) return i;
                pos[j * n + i] = k + 1;
            }
        }
        if (j != nf - 1) return i;
        pos[nf * n + i] = e + 1;
    }
    return (any & (ONES * 0x80)) ? n : -1;
}

/* One column of text: field i is buf[begin[i]:next[i] - 1], laid end to end in out with
 * Arrow's int32 offsets. Short fields are copied eight bytes at a time, over-reading
 * within buf (limit: its length) and over-writing into the 8 bytes of slack that out
 * has beyond the column's size. */
void gf_csv_column(int64_t n, const uint8_t *buf, int64_t limit, const int64_t *begin,
                   const int64_t *next, int32_t *offsets, uint8_t *out) {
    int64_t at = 0;
    offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t b = begin[i], len = next[i] - 1 - b;
        if (len <= 8 && b + 8 <= limit) {
            memcpy(out + at, buf + b, 8);
        } else {
            memcpy(out + at, buf + b, (size_t)len);
        }
        at += len;
        offsets[i + 1] = (int32_t)at;
    }
}

/* The row width this build expects; _kernels.py checks it when it loads the library. */
int64_t gf_piece_columns(void) { return NCOL; }

PyMODINIT_FUNC PyInit__ckernels(void) { return PyModule_Create(&module); }
