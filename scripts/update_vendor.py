"""Fetch, pin and check the third-party JavaScript the HTML report uses (issue #9).

The report page (``geofence report html``) inlines Leaflet; the browser tests inline axe-core.
Both come from the npm registry at the versions pinned below, through ``npm pack`` (the
ordinary client, so registry settings and caches apply), and are written beside a
``MANIFEST.json`` with name, version, licence, the tarball's integrity and every file's SHA-256.
``geofence.html`` refuses to build a page from vendored files that differ from the manifest.

Usage (from the repository root)::

    python scripts/update_vendor.py            # re-fetch the pinned versions, rewrite manifests
    python scripts/update_vendor.py --check    # offline: verify files against the manifests

To move to a new version, change ``version`` below, run the script, read the upstream
changelog, run ``python -m pytest -q tests/test_html_report.py`` and commit files + manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each target directory gets the listed files of its packages: (path in tarball, file name).
VENDOR = {
    # shipped in the wheel: the page's map
    "geofence/html/vendor": [
        {
            "name": "leaflet",
            "version": "1.9.4",
            "licence": "BSD-2-Clause",
            "files": [
                ("package/dist/leaflet.js", "leaflet.js"),
                ("package/dist/leaflet.css", "leaflet.css"),
                ("package/LICENSE", "LICENSE-leaflet.txt"),
            ],
        }
    ],
    # tests only (never in the package): accessibility checks in the browser tests
    "tests/vendor": [
        {
            "name": "axe-core",
            "version": "4.14.1",
            "licence": "MPL-2.0",
            "files": [
                ("package/axe.min.js", "axe.min.js"),
                ("package/LICENSE", "LICENSE-axe-core.txt"),
            ],
        }
    ],
}


def sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(target: str, tmp: Path) -> None:
    """``npm pack`` each package of ``target`` and write its files and the manifest."""
    out_dir = ROOT / target
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = []
    for pkg in VENDOR[target]:
        spec = f"{pkg['name']}@{pkg['version']}"
        res = subprocess.run(
            ["npm", "pack", spec, "--json", "--pack-destination", str(tmp)],
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(res.stdout)[0]
        if info["version"] != pkg["version"]:
            sys.exit(f"npm returned {info['id']} for {spec}")
        files = []
        with tarfile.open(tmp / info["filename"]) as tar:
            for member, name in pkg["files"]:
                src = tar.extractfile(member)
                if src is None:
                    sys.exit(f"{spec}: {member} is not a file in the tarball")
                with open(out_dir / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                files.append({"file": name, "from": member, "sha256": sha256(out_dir / name)})
        manifest.append(
            {
                "name": pkg["name"],
                "version": pkg["version"],
                "licence": pkg["licence"],
                "source": f"npm registry, `npm pack {spec}`",
                "integrity": info["integrity"],
                "files": files,
            }
        )
        print(f"{target}: {spec} ({info['integrity'][:20]}…)")
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (out_dir / "MANIFEST.json").write_text(text, encoding="utf-8")


def check(target: str) -> list[str]:
    """Differences between the files of ``target`` and its manifest (empty when all match)."""
    out_dir = ROOT / target
    problems = []
    try:
        manifest = json.loads((out_dir / "MANIFEST.json").read_text(encoding="utf-8"))
    except OSError:
        return [f"{target}/MANIFEST.json is missing"]
    pinned = {(p["name"], p["version"]) for p in VENDOR[target]}
    listed = {(p["name"], p["version"]) for p in manifest}
    if pinned != listed:
        problems.append(
            f"{target}: manifest lists {sorted(listed)}, the script pins {sorted(pinned)}"
        )
    for pkg in manifest:
        for f in pkg["files"]:
            path = out_dir / f["file"]
            if not path.exists():
                problems.append(f"{target}/{f['file']} is missing")
            elif sha256(path) != f["sha256"]:
                problems.append(f"{target}/{f['file']} differs from its manifest SHA-256")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--check", action="store_true", help="verify files against the manifests (offline)"
    )
    args = ap.parse_args(argv)
    if args.check:
        problems = [p for t in VENDOR for p in check(t)]
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    with tempfile.TemporaryDirectory() as tmp:
        for target in VENDOR:
            fetch(target, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
