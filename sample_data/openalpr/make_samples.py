"""Write the synthetic OpenALPR agent samples of this directory (issue #8).

Every value here is invented: plates, uuids, agents, times and positions (two fixed
cameras and one patrol car in Seattle, near schools of ``sample_data/seattle``). Only the
shape follows the vendor's documentation: openalpr/doc, ``source/app_integration.include``
("JSON Group Results", "JSON Plate Results", "JSON Heartbeat"), commit
944f02d53687fb2bb71692dc07f909fdfa69c4ce. The vendor's own sample documents (in
``../shared/data/openalpr-json-schema/``) carry no licence and are not copied here.

Run from the repository root::

    python sample_data/openalpr/make_samples.py

Files (deterministic: same bytes on every run):

``alpr_group_synthetic.jsonl``
    40 ``alpr_group`` documents, one per line, plus one heartbeat line (skipped by the
    ``openalpr-group`` profile). Three groups have no GPS fix (0/0), two are previews
    (``is_preview``) of a later final group, one has a broken ``epoch_start`` and one line
    is cut short (``malformed_row``). Fake base64 crops stand where images would be.
``alpr_results_synthetic.json``
    One ``alpr_results`` frame with two plates; no position (``openalpr-results``).
``heartbeat_synthetic.json``
    A JSON array of three heartbeats from two agents: camera 101 fixed, camera 102 with
    no GPS fix (0/0), camera 201 (a patrol car) at two positions.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
T0_MS = 1_727_769_600_000  # 2024-10-01T08:00:00Z
AGENTS = {"north": "A" * 8 + "-agent-north", "car": "B" * 8 + "-agent-car7"}
# (camera_id, agent, lon, lat): near Queen Anne Gym, Beacon Hill Int'l and Louisa Boren STEM
CAMERAS = [
    (101, "north", -122.35290, 47.63220),
    (102, "north", -122.31525, 47.58570),
    (201, "car", -122.36230, 47.54840),
]


def _crop(rng: random.Random) -> str:
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(48))).decode()


def _plate(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    return "".join(rng.choice(letters) for _ in range(3)) + f"{rng.randrange(1000, 9999)}"


def group(rng: random.Random, i: int, *, preview: bool = False, no_fix: bool = False) -> dict:
    cam, agent, lon, lat = CAMERAS[i % len(CAMERAS)]
    start = T0_MS + i * 47_000 + rng.randrange(0, 999)
    plate = _plate(rng)
    uuid = f"{AGENTS[agent]}-{cam}-{start + 1200}"
    doc = {
        "version": 2,
        "data_type": "alpr_group",
        "epoch_start": start,
        "epoch_end": start + 2400,
        "frame_start": i * 60,
        "frame_end": i * 60 + 48,
        "company_id": "00000000-0000-0000-0000-000000000000",
        "agent_uid": AGENTS[agent],
        "agent_version": "2.7.101",
        "agent_type": "alprd",
        "camera_id": cam,
        "country": "us",
        "uuids": [uuid],
        "plate_indexes": [0],
        "candidates": [{"plate": plate, "confidence": 91.5, "matches_template": 0}],
        "vehicle_crop_jpeg": _crop(rng),
        "best_plate": {
            "plate": plate,
            "confidence": 91.5,
            "region": "us-wa",
            "region_confidence": 88,
            "plate_crop_jpeg": _crop(rng),
            "coordinates": [
                {"x": 10, "y": 20},
                {"x": 90, "y": 20},
                {"x": 90, "y": 50},
                {"x": 10, "y": 50},
            ],
        },
        "best_confidence": round(80 + rng.random() * 19, 3),
        "best_plate_number": plate,
        "best_region": "us-wa",
        "best_region_confidence": 88.0,
        "matches_template": False,
        "best_uuid": uuid,
        "travel_direction": round(rng.random() * 360, 2),
        "is_parked": False,
        "is_preview": preview,
        "gps_latitude": 0 if no_fix else round(lat + (rng.random() - 0.5) * 0.0004, 7),
        "gps_longitude": 0 if no_fix else round(lon + (rng.random() - 0.5) * 0.0004, 7),
        "vehicle": {"color": [{"name": "silver-gray", "confidence": 40.0}]},
    }
    return doc


def heartbeat(ts_ms: int, agent: str, streams: list[tuple[int, str, float, float]]) -> dict:
    return {
        "data_type": "heartbeat",
        "agent_uid": AGENTS[agent],
        "agent_hostname": f"{agent}-host",
        "agent_version": "2.7.101",
        "agent_type": "alprd",
        "company_id": "00000000-0000-0000-0000-000000000000",
        "timestamp": ts_ms,
        "license_valid": True,
        "video_streams": [
            {
                "camera_id": cam,
                "camera_name": name,
                "url": "rtsp://192.0.2.1/stream",
                "fps": 10,
                "is_streaming": True,
                "last_update": ts_ms - 5,
                "gps_latitude": lat,
                "gps_longitude": lon,
            }
            for cam, name, lon, lat in streams
        ],
    }


def main() -> None:
    rng = random.Random(8)
    lines = []
    for i in range(40):
        doc = group(rng, i, preview=i in (5, 21), no_fix=i in (7, 8, 30))
        if i == 12:
            doc["epoch_start"] = "yesterday"
        lines.append(json.dumps(doc, separators=(",", ":")))
        if i == 19:
            lines.append(json.dumps(heartbeat(T0_MS + 900_000, "north", []), separators=(",", ":")))
    lines[33] = lines[33][: len(lines[33]) // 2]  # a line cut short: malformed_row
    (HERE / "alpr_group_synthetic.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    results = {
        "version": 2,
        "data_type": "alpr_results",
        "epoch_time": T0_MS + 61_000,
        "img_width": 1920,
        "img_height": 1080,
        "processing_time_ms": 80.5,
        "uuid": f"{AGENTS['north']}-101-{T0_MS + 61_000}",
        "camera_id": 101,
        "agent_uid": AGENTS["north"],
        "agent_version": "2.7.101",
        "agent_type": "alprd",
        "company_id": "00000000-0000-0000-0000-000000000000",
        "error": False,
        "regions_of_interest": [{"x": 0, "y": 0, "width": 1920, "height": 1080}],
        "results": [
            {
                "plate": _plate(rng),
                "confidence": 93.1,
                "matches_template": 0,
                "plate_index": k,
                "region": "us-wa",
                "region_confidence": 90,
                "processing_time_ms": 40.2,
                "requested_topn": 10,
                "plate_crop_jpeg": _crop(rng),
                "coordinates": [{"x": 100 * k, "y": 5}, {"x": 100 * k + 80, "y": 5}],
                "candidates": [],
            }
            for k in range(2)
        ],
    }
    (HERE / "alpr_results_synthetic.json").write_text(
        json.dumps(results, indent=2) + "\n", encoding="utf-8"
    )

    (c1, _, lon1, lat1), (c2, _, _, _), (c3, _, lon3, lat3) = CAMERAS
    beats = [
        heartbeat(T0_MS, "north", [(c1, "Queen Anne N", lon1, lat1), (c2, "Beacon Hill", 0, 0)]),
        heartbeat(T0_MS + 60_000, "car", [(c3, "Car 7", lon3, lat3)]),
        heartbeat(T0_MS + 120_000, "car", [(c3, "Car 7", lon3 + 0.001, lat3 + 0.001)]),
    ]
    (HERE / "heartbeat_synthetic.json").write_text(
        json.dumps(beats, indent=2) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
