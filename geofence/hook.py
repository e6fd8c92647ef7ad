"""The pre-sharing filter: withhold reads near sensitive sites before data leaves an agency.

Order of checks (policy.md section C, "Filter logic"): the recipient rules first (a
refused recipient gets nothing), then every read through the same engine as ``scan``;
a read is shared only when it was evaluated and is clean. Everything else is withheld
with its reason (fail-closed):

``near_sensitive_site``
    the policy flags it (same rules and exactness as ``scan``);
``unevaluable:<reason>``
    it could not be evaluated (bad position, unparseable time, malformed row, ...);
``older_than_max_age`` / ``no_time_for_max_age``
    with ``max_age_days``, too old or of unknown age.

:class:`SharingFilter` is the in-process hook; :func:`run_filter` streams files and
writes the shared rows byte for byte, the withheld rows, the manifest and the audit log.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from geofence._arrays import full_object
from geofence._version import __version__
from geofence.atomic import atomic_output
from geofence.errors import SharingRefused, UsageError
from geofence.jurisdictions import Decision, Recipient, check_recipient
from geofence.model import NO_TIME, REJECT_REASONS, ReadBatch
from geofence.report import DISTANCE_DECIMALS, dumps_summary
from geofence.rows import append_fields
from geofence.scan import _resolve_profile, build_engine, iter_reads, scan_batches

WITHHELD_COLUMNS = ("withheld_reason", "category", "site_id", "distance_m")


@dataclass
class BatchDecision:
    """Which reads of a batch are shared, and why the others are withheld."""

    shared: np.ndarray  # bool per read
    reason: np.ndarray  # object: withheld reason ('' when shared)
    category: np.ndarray  # object: nearest site's category for flagged reads
    site_id: np.ndarray  # object
    distance_m: np.ndarray  # float, NaN when not flagged


class SharingFilter:
    """Decide, batch by batch, which reads may be shared with a recipient.

    Parameters
    ----------
    layers : sequence of paths, optional
        Site layers (or ``sites``: a GeoDataFrame as ``load_layers`` returns).
    policy, tier, distances : optional
        As for :func:`geofence.scan.scan`.
    recipient : Recipient, optional
        Who receives the data; checked against the sender state's rules first.
    sender_state : str, optional
        Two-letter state of the sending agency (selects ``layers/jurisdictions/xx.toml``).
    max_age_days : float, optional
        Withhold reads older than this, relative to ``now``.
    now : datetime, optional
        Reference time for ``max_age_days`` (default: the current UTC time).

    Examples
    --------
    >>> from geofence.hook import SharingFilter
    >>> from geofence.jurisdictions import Recipient
    >>> f = SharingFilter(["schools.geojson"], sender_state="WA",
    ...                   recipient=Recipient("King County SO", "state-public", "WA", "burglary"))  # doctest: +SKIP
    >>> shared, withheld = f.filter(df)  # doctest: +SKIP
    """

    def __init__(
        self,
        layers: Sequence[str | os.PathLike] | None = None,
        *,
        sites=None,
        policy=None,
        tier: str = "near",
        distances: Mapping[str, float] | None = None,
        recipient: Recipient | None = None,
        sender_state: str | None = None,
        max_age_days: float | None = None,
        now: _dt.datetime | None = None,
        crs: str | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.recipient = recipient
        self.sender_state = sender_state
        self.decision: Decision = (
            check_recipient(recipient, sender_state)
            if recipient is not None
            else Decision(True, None, "no recipient given")
        )
        self.engine, self.layer_sources = build_engine(
            layers,
            sites=sites,
            policy=policy,
            tier=tier,
            distances=distances,
            crs=crs,
            limits=limits,
        )
        self.max_age_days = max_age_days
        now = now or _dt.datetime.now(_dt.UTC)
        if now.tzinfo is None:
            raise UsageError("now must be timezone-aware (UTC)")
        self.now = now
        self._cutoff_us = None
        if max_age_days is not None:
            if max_age_days < 0:
                raise UsageError("--max-age-days must be zero or more")
            cutoff = now - _dt.timedelta(days=max_age_days)
            self._cutoff_us = int(cutoff.timestamp() * 1_000_000)

    def _require_allowed(self) -> None:
        if not self.decision.allowed:
            raise SharingRefused(f"share refused: {self.decision.reason}")

    def decide_batches(
        self, batches: Iterable[ReadBatch]
    ) -> Iterator[tuple[ReadBatch, BatchDecision]]:
        """Decide every read of every batch (the engine loop shared with ``scan``)."""
        self._require_allowed()
        f = self.engine.fences
        for res in scan_batches(batches, self.engine):
            n = len(res.batch)
            reason = full_object(n, "")
            rej = res.reason != 0
            reason[rej] = np.array(["unevaluable:" + r for r in REJECT_REASONS], dtype=object)[
                res.reason[rej]
            ]
            flagged = res.matches.flagged & ~rej
            reason[flagged] = "near_sensitive_site"
            if self._cutoff_us is not None:
                t = res.batch.time_us
                free = reason == ""
                reason[free & (t == NO_TIME)] = "no_time_for_max_age"
                reason[free & (t != NO_TIME) & (t < self._cutoff_us)] = "older_than_max_age"
            category = full_object(n, "")
            site_id = full_object(n, "")
            dist = np.full(n, np.nan)
            idx = np.flatnonzero(flagged)
            near_site, near_d = res.matches.take(idx).nearest()
            category[idx] = f.site_category[near_site]
            site_id[idx] = f.site_id[near_site]
            dist[idx] = np.round(near_d, DISTANCE_DECIMALS)
            yield res.batch, BatchDecision(reason == "", reason, category, site_id, dist)

    def filter(self, data, *, columns: Mapping[str, str] | None = None, timezone: str = "UTC"):
        """Split a DataFrame or Arrow table/batch into ``(shared, withheld)`` of the same type.

        ``withheld`` carries the extra columns ``withheld_reason``, ``category``,
        ``site_id``, ``distance_m``. Row order is kept in both.
        """
        import pandas as pd
        import pyarrow as pa

        from geofence.reads import batches_from_table

        is_pandas = isinstance(data, pd.DataFrame)
        table = data if not is_pandas else None
        if isinstance(data, pa.RecordBatch):
            table = pa.Table.from_batches([data])
        keep_parts, decisions = [], []
        for batch, dec in self.decide_batches(
            batches_from_table(data, columns=columns, timezone=timezone)
        ):
            keep_parts.append(batch.row - 1)
            decisions.append(dec)
        rows = np.concatenate(keep_parts) if keep_parts else np.empty(0, np.int64)
        shared_mask = (
            np.concatenate([d.shared for d in decisions]) if decisions else np.empty(0, bool)
        )
        extra = {
            c: np.concatenate([getattr(d, a) for d in decisions]) if decisions else np.empty(0)
            for c, a in zip(
                WITHHELD_COLUMNS, ("reason", "category", "site_id", "distance_m"), strict=True
            )
        }
        sh, wh = rows[shared_mask], rows[~shared_mask]
        if is_pandas:
            shared = data.iloc[sh]
            withheld = data.iloc[wh].copy()
            for c in WITHHELD_COLUMNS:
                withheld[c] = extra[c][~shared_mask]
            return shared, withheld
        shared = table.take(pa.array(sh))
        withheld = table.take(pa.array(wh))
        for c in WITHHELD_COLUMNS:
            vals = extra[c][~shared_mask]
            withheld = withheld.append_column(c, pa.array(vals.tolist()))
        return shared, withheld

    def filter_iter(self, batches: Iterable, **kw) -> Iterator[tuple]:
        """Apply :meth:`filter` to each DataFrame/Arrow batch of an iterable."""
        for b in batches:
            yield self.filter(b, **kw)


def _value_counts(values: np.ndarray) -> dict:
    u, c = np.unique(values.astype(str), return_counts=True)
    return dict(zip(u.tolist(), c.tolist(), strict=True))


def _runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs ``[start, stop)`` of a sorted index array (fewer byte slices)."""
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    stops = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def append_audit(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line to the audit log, flushed to disk before returning."""
    line = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def run_filter(
    source,
    layers: Sequence[str | os.PathLike],
    *,
    recipient: Recipient,
    user: str,
    out: str | os.PathLike,
    withheld: str | os.PathLike,
    manifest: str | os.PathLike,
    sender: str | None = None,
    sender_state: str | None = None,
    policy=None,
    tier: str = "near",
    distances: Mapping[str, float] | None = None,
    crs: str | None = None,
    audit_log: str | os.PathLike | None = None,
    max_age_days: float | None = None,
    now: _dt.datetime | None = None,
    columns: Mapping[str, str] | None = None,
    timezone: str | None = None,
    batch_size: int | None = None,
    deterministic: bool = False,
    limits: Mapping[str, int] | None = None,
    profile=None,
) -> dict:
    """Filter a read log for sharing; write shared rows, withheld rows, manifest, audit line.

    Shared rows are the input's own bytes (quoting, delimiter and line endings kept),
    under the input's header. All files are written atomically, so a failure part-way
    leaves no shared file: nothing is shared unless everything was evaluated.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    SharingRefused
        When the recipient rules forbid the share (after writing the manifest, the
        audit line and an OUT file with the header only).
    """
    profile, timezone = _resolve_profile(
        profile, timezone
    )  # a format profile (issue #8): checked before any work
    filt = SharingFilter(
        layers,
        policy=policy,
        tier=tier,
        distances=distances,
        recipient=recipient,
        sender_state=sender_state,
        max_age_days=max_age_days,
        now=now,
        crs=crs,
        limits=limits,
    )
    by_reason: Counter = Counter()
    by_category: Counter = Counter()
    n_in = n_shared = 0
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(
            iter_reads(
                source,
                columns=columns,
                timezone=timezone,
                batch_size=batch_size,
                keep_raw=True,
                limits=limits,
                profile=profile,
            )
        )
        out_fh = stack.enter_context(atomic_output(out))
        wh_fh = stack.enter_context(atomic_output(withheld))
        header = (b"\xef\xbb\xbf" if getattr(stream, "bom", False) else b"") + stream.header
        if filt.decision.allowed or str(out) != "-":
            out_fh.write(header)
        delim = stream.delimiter
        term = stream.line_terminator
        wh_fh.write(
            stream.header.rstrip(b"\r\n")
            + delim.encode()
            + delim.join(WITHHELD_COLUMNS).encode()
            + term
        )
        if filt.decision.allowed:
            for batch, dec in filt.decide_batches(stream):
                raw, off = batch.raw, batch.offsets
                n_in += len(batch)
                sh = np.flatnonzero(dec.shared)
                n_shared += len(sh)
                out_fh.write(b"".join(raw[off[a] : off[b]] for a, b in _runs(sh)))
                wi = np.flatnonzero(~dec.shared)
                if len(wi):
                    reason = np.asarray(dec.reason, dtype=object)[wi]
                    category = np.asarray(dec.category, dtype=object)[wi]
                    d = np.asarray(dec.distance_m, dtype=np.float64)[wi]
                    dist = pc.if_else(pc.is_nan(pa.array(d)), "", pc.cast(pa.array(d), pa.string()))
                    site = np.asarray(dec.site_id, dtype=object)[wi]
                    wh_fh.write(
                        append_fields(raw, off, wi, [reason, category, site, dist], delim, term)
                    )
                    by_reason.update(_value_counts(reason))
                    by_category.update(
                        _value_counts(category[pd.notna(category) & (category != "")])
                    )
        doc = _manifest(
            filt,
            stream,
            source,
            out,
            n_in,
            n_shared,
            by_reason,
            by_category,
            recipient,
            sender,
            sender_state,
            user,
            deterministic,
            layers,
        )
        # the writers' hashes are final once every row is written
        doc["output"] = {
            "file": "<stdout>" if str(out) == "-" else Path(str(out)).name,
            "sha256": out_fh.sha256,
            "bytes": out_fh.size,
            "rows": n_shared,
        }
        doc["withheld_file"] = {
            "file": Path(str(withheld)).name,
            "sha256": wh_fh.sha256,
            "rows": n_in - n_shared,
        }
    # the manifest describes the shared and withheld files: renamed into place after them
    with atomic_output(manifest) as fh:
        fh.write(dumps_summary(doc))
    if audit_log is not None:
        append_audit(audit_log, _audit_record(doc))
    if not filt.decision.allowed:
        raise SharingRefused(f"share refused, nothing shared: {filt.decision.reason}")
    return doc


def _manifest(
    filt,
    stream,
    source,
    out,
    n_in,
    n_shared,
    by_reason,
    by_category,
    recipient,
    sender,
    sender_state,
    user,
    deterministic,
    layers,
) -> dict:
    eng = filt.engine
    return {
        "tool": {"name": "geofence", "version": __version__},
        "created_at": "1970-01-01T00:00:00Z"
        if deterministic
        else _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "decision": filt.decision.describe(),
        "sender": {"name": sender, "state": sender_state},
        "recipient": {
            "name": recipient.name,
            "type": recipient.type,
            "state": recipient.state,
            "declaration": recipient.declaration,
        },
        "purpose": recipient.purpose,
        "user": user,
        "input": {
            "file": "<stdin>" if str(source) == "-" else Path(str(source)).name,
            "sha256": getattr(stream, "sha256", None) if filt.decision.allowed else None,
            "rows": n_in,
            **({"profile": stream.profile} if getattr(stream, "profile", None) else {}),
        },
        "counts": {
            "reads_in": n_in,
            "reads_shared": n_shared,
            "reads_withheld": n_in - n_shared,
            "withheld_by_reason": dict(sorted(by_reason.items())),
            "withheld_by_category": dict(sorted(by_category.items())),
        },
        "max_age_days": filt.max_age_days,
        "as_of": filt.now.strftime("%Y-%m-%dT%H:%M:%SZ") if filt.max_age_days is not None else None,
        "layers": [
            {"file": Path(s.path).name, "sha256": s.sha256, "sites": s.sites_loaded, **s.credits()}
            for s in filt.layer_sources
        ],
        "policy": eng.policy.describe(),
        "sites_fenced": eng.n_sites,
    }


def _audit_record(doc: dict) -> dict:
    """One audit line with at least Cal. Civ. Code §1798.90.52(a)'s fields [Q]."""
    return {
        "accessed_at": doc["created_at"],  # (1) date and time
        "query_elements": {
            "input_sha256": doc["input"]["sha256"],
            "fields": ["position", "timestamp"],
        },  # (2)
        "username": doc["user"],  # (3) username ...
        "user_org": doc["sender"]["name"],  # ... and organisation
        "purpose": doc["purpose"],  # (4)
        "recipient": doc["recipient"],
        "decision": doc["decision"]["decision"],
        "rule": doc["decision"].get("rule", {}).get("id"),
        "counts": doc["counts"],
        "output_sha256": doc["output"]["sha256"],
    }


def verify(
    shared,
    manifest: str | os.PathLike,
    *,
    layers: Sequence[str | os.PathLike] | None = None,
    policy=None,
    tier: str | None = None,
    columns: Mapping[str, str] | None = None,
    timezone: str | None = None,
    profile=None,
) -> list[str]:
    """Check a shared file against its manifest; return the findings (empty when all holds).

    Checks the SHA-256 and row count recorded in the manifest and, when ``layers`` are
    given, re-scans every shared read: none may lie within a fence or be unevaluable.
    The policy defaults to the manifest's tier and packs. ``profile`` reads the shared
    file in a vendor format (issue #8).
    """
    import hashlib

    from geofence.atomic import sha256_file

    try:
        doc = json.loads(Path(manifest).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(
            f"{manifest}: cannot read the manifest ({exc.strerror.lower()}); pass the file geofence filter wrote with --manifest"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"{manifest}: not a geofence manifest (invalid JSON: {exc}); pass the file geofence filter wrote"
        ) from None
    if not isinstance(doc, dict):
        raise UsageError(f"{manifest}: not a geofence manifest (expected a JSON object)")
    findings: list[str] = []
    profile, timezone = _resolve_profile(profile, timezone)
    out = doc.get("output", {})
    if doc.get("decision", {}).get("decision") != "allow":
        findings.append(
            f"manifest records a refused share ({doc.get('decision', {}).get('reason')}); nothing should have been shared"
        )
    sha = sha256_file(shared) if str(shared) != "-" else hashlib.sha256(b"").hexdigest()
    if out.get("sha256") != sha:
        findings.append(
            f"{Path(str(shared)).name}: SHA-256 {sha[:12]}... differs from the manifest's {str(out.get('sha256'))[:12]}...: the file was changed after filtering"
        )
    if layers:
        pol = policy or [p["name"] for p in doc.get("policy", {}).get("packs", [])] or None
        engine, sources = build_engine(
            layers, policy=pol, tier=tier or doc.get("policy", {}).get("tier", "near")
        )
        known = {(p["file"], p["sha256"]) for p in doc.get("layers", [])}
        for s in sources:
            if (Path(s.path).name, s.sha256) not in known:
                findings.append(
                    f"layer {Path(s.path).name} (sha256 {s.sha256[:12]}...) is not the one the manifest records"
                )
        rows = 0
        with iter_reads(shared, columns=columns, timezone=timezone, profile=profile) as stream:
            for res in scan_batches(stream, engine):
                rows += len(res.batch)
                for i in np.flatnonzero(res.reason != 0)[:20].tolist():
                    findings.append(
                        f"row {int(res.batch.row[i])}: shared read cannot be evaluated ({REJECT_REASONS[res.reason[i]]})"
                    )
                bad = np.flatnonzero(res.matches.flagged & (res.reason == 0))
                near_site, near_d = res.matches.take(bad).nearest()
                for i, s, d in zip(
                    bad[:20].tolist(), near_site[:20].tolist(), near_d[:20].tolist(), strict=False
                ):
                    findings.append(
                        f"row {int(res.batch.row[i])}: shared read lies {d:.3f} m from site {engine.fences.site_id[s]} ({engine.fences.site_category[s]})"
                    )
    else:
        with iter_reads(shared, columns=columns, timezone=timezone, profile=profile) as stream:
            rows = sum(len(b) for b in stream)
    if rows != out.get("rows"):
        findings.append(
            f"{Path(str(shared)).name}: {rows} rows, the manifest records {out.get('rows')}"
        )
    return findings
