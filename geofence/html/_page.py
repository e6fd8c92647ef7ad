"""Assemble the single-file page: template, vendored Leaflet, our script and style, the data.

Everything is inline, and a Content-Security-Policy meta allows nothing to be loaded from
anywhere (``default-src 'none'``); scripts and styles run only when their SHA-256 is listed,
so the page's own code runs and injected code would not. The embedded JSON escapes ``<``,
``>``, ``&``, U+2028 and U+2029, so no text in it can close its ``<script>`` element.

Vendored files are checked against ``vendor/MANIFEST.json`` before use. Two edits are made
to Leaflet at build time, both to keep the page from asking for anything: the
``sourceMappingURL`` comment is dropped, and the CSS ``url(images/…)`` of the layer switcher
and marker icons, which the page does not use, become ``none``; line ends become LF, as
the HTML parser would make them, so that the CSP hashes match.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from functools import lru_cache
from pathlib import Path

from geofence.html._report import ReportError

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
VENDOR = HERE / "vendor"


@lru_cache(maxsize=1)
def vendor_manifest() -> list[dict]:
    """The vendored packages (name, version, licence, files with SHA-256)."""
    return json.loads((VENDOR / "MANIFEST.json").read_text(encoding="utf-8"))


def _vendored(name: str) -> str:
    for pkg in vendor_manifest():
        for f in pkg["files"]:
            if f["file"] == name:
                data = (VENDOR / name).read_bytes()
                if hashlib.sha256(data).hexdigest() != f["sha256"]:
                    raise ReportError(
                        f"geofence/html/vendor/{name} differs from vendor/MANIFEST.json; restore it with `python scripts/update_vendor.py`"
                    )
                return data.decode("utf-8")
    raise ReportError(
        f"geofence/html/vendor/{name} is not in vendor/MANIFEST.json; run `python scripts/update_vendor.py`"
    )  # pragma: no cover


def notices() -> list[dict]:
    """Licence notices of the vendored code, reproduced on the page."""
    out = []
    for pkg in vendor_manifest():
        lic = [f["file"] for f in pkg["files"] if f["file"].startswith("LICENSE")]
        text = _vendored(lic[0]) if lic else ""
        out.append(
            {
                "name": pkg["name"],
                "version": pkg["version"],
                "licence": pkg["licence"],
                "text": text,
            }
        )
    return out


def _inline_safe(text: str, tag: str) -> str:
    # HTML parsing turns CR LF into LF before the browser hashes an inline element for the
    # CSP, so the text is normalised first (leaflet.css ships with CR LF line ends)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if f"</{tag}" in text.lower():
        raise ReportError(
            f"an inline {tag} contains </{tag}; the page cannot embed it"
        )  # pragma: no cover
    return text


def _csp_hash(text: str) -> str:
    return (
        "'sha256-"
        + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
        + "'"
    )


def embed_json(data: object) -> str:
    """JSON for a ``<script type="application/json">`` element: no ``<``, ``>`` or ``&`` left."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render(data: dict, title: str, generator: str) -> bytes:
    """The page's bytes (UTF-8): the same data give the same bytes."""
    leaflet_js = _vendored("leaflet.js")
    leaflet_js = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", leaflet_js)
    leaflet_css = re.sub(r"url\((?!data:)[^)]*\)", "none", _vendored("leaflet.css"))
    report_js = (ASSETS / "report.js").read_text(encoding="utf-8")
    report_css = (ASSETS / "report.css").read_text(encoding="utf-8")
    scripts = [_inline_safe(leaflet_js, "script"), _inline_safe(report_js, "script")]
    styles = [_inline_safe(leaflet_css, "style"), _inline_safe(report_css, "style")]
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(_csp_hash(s) for s in scripts),
            "style-src " + " ".join(_csp_hash(s) for s in styles),
            "img-src data: blob:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    page = (ASSETS / "page.html").read_text(encoding="utf-8")
    parts = {
        "{{CSP}}": html.escape(csp, quote=True),
        "{{GENERATOR}}": html.escape(generator, quote=True),
        "{{TITLE}}": html.escape(title, quote=False),
        "{{LEAFLET_CSS}}": styles[0],
        "{{REPORT_CSS}}": styles[1],
        "{{DATA}}": embed_json(data),
        "{{LEAFLET_JS}}": scripts[0],
        "{{REPORT_JS}}": scripts[1],
    }
    # one pass, so that text inserted for one placeholder is never read as another
    out = re.sub(r"\{\{[A-Z_]+\}\}", lambda m: parts[m.group(0)], page)
    return out.encode("utf-8")
