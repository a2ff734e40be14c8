"""HTML pages from typed blocks, rendered by one Jinja2 template with autoescaping.

The report's code never writes HTML: it builds a page as :class:`Section` objects holding blocks
(:class:`Para`, :class:`Table`, :class:`Figure`, ...) whose texts are plain strings, and
:func:`render_page` renders them with ``templates/page.html.j2``. Every value is escaped by the
template engine, so a landmark label, a patient name, a config value or a file name reaches the page as
text. The one thing marked safe is in :func:`render_page`: the module's own style sheet and render check,
constants written here, which the template puts inside ``<style>`` and ``<script>`` (where escaping would
break them).

The pages carry a Content-Security-Policy that lets no script run but the template's render check
(allowed by its SHA-256 hash), loads nothing from anywhere (images are data URIs) and allows no form,
frame or base URL: a script that got into a page some other way would still not run.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np
import pandas as pd

TEMPLATE = "page.html.j2"

#: the pages' style sheet (inline, allowed by its hash)
CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.4em 0}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.4em .8em}.note{color:#555;font-size:.9em}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}nav a{margin-right:1em}
"""

#: the render check: counts the decoded images and the script errors into the page's last line, with the right
#: edge of the widest table and the page's width (what the browser test reads); the one script a page may run
#: (allowed by its hash). A wide table scrolls inside itself (the style sheet), never past the page.
CHECK_JS = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e)); });
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var s = document.getElementById('render-status');
  s.textContent = 'images ' + ok + '/' + imgs.length + '; errors ' + window.__errors.length;
  s.setAttribute('data-images-ok', ok); s.setAttribute('data-images', imgs.length);
  s.setAttribute('data-errors', window.__errors.length);
  var widths = Array.prototype.map.call(document.querySelectorAll('table'), function (t) { return t.getBoundingClientRect().right; });
  s.setAttribute('data-widest-table', Math.ceil(Math.max.apply(null, widths.concat([0]))));
  s.setAttribute('data-page-width', document.documentElement.clientWidth);
});
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


#: what a page may load and run: its own style sheet and render check (by hash), data-URI images, nothing else
CSP = (f"default-src 'none'; script-src {_sha256(CHECK_JS)}; style-src {_sha256(CSS)}; img-src data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


# ----------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Link:
    """A link: ``href`` (a relative page or ``#anchor``) and its text."""

    href: str
    text: str
    kind: str = field(default="link", init=False)


@dataclass(frozen=True)
class Code:
    """Text shown as code (a file or method name) inside a paragraph."""

    text: str
    kind: str = field(default="code", init=False)


@dataclass
class Para:
    """A paragraph of ``parts`` (strings, :class:`Code`, :class:`Link`); ``style`` ``note``, ``warn`` or ``""``."""

    parts: tuple
    style: str = "note"
    kind: str = field(default="para", init=False)


def note(*parts) -> Para:
    return Para(parts, "note")


def warn(*parts) -> Para:
    return Para(parts, "warn")


@dataclass
class Heading:
    text: str
    kind: str = field(default="heading", init=False)


@dataclass
class Table:
    """A table: column names and rows of cells (strings or :class:`Link`), formatted by :func:`table`."""

    columns: list
    rows: list
    kind: str = field(default="table", init=False)


@dataclass
class Figure:
    """An image: ``src`` a ``data:image/png`` URI, ``alt`` its text, ``id`` an anchor."""

    src: str
    alt: str
    id: str | None = None
    kind: str = field(default="figure", init=False)

    def __post_init__(self):
        if not self.src.startswith("data:image/png;base64,"):
            raise ValueError("a figure is a data:image/png;base64 URI (the page loads nothing else)")


@dataclass
class Details:
    """A folded part: its ``summary`` line and its blocks."""

    summary: str
    blocks: list
    kind: str = field(default="details", init=False)


@dataclass
class Pre:
    """Preformatted text (the config)."""

    text: str
    kind: str = field(default="pre", init=False)


@dataclass
class Section:
    """A section of a page: its anchor ``id``, its title and its blocks."""

    id: str
    title: str
    blocks: list


def table(df: pd.DataFrame | None, floats: int = 2) -> Table | Para:
    """A DataFrame as a :class:`Table` (floats with ``floats`` decimals, missing values empty), or a note
    that it is empty. A cell may be a :class:`Link`; anything else is shown as text."""
    if df is None or df.empty:
        return note("(empty)")

    def cell(v):
        if isinstance(v, Link):
            return v
        if isinstance(v, (float, np.floating)):
            return "" if math.isnan(v) else f"{v:.{floats}f}"
        if v is None or v is pd.NA:
            return ""
        return str(v)

    return Table([str(c) for c in df.columns], [[cell(v) for v in row] for row in df.itertuples(index=False)])


# ----------------------------------------------------------------------------- rendering
@lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("landmarkflow.present", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_page(title: str, heading: str, subtitle: str, sections: list[Section], before: list | None = None) -> str:
    """A whole page: ``heading``, ``subtitle`` (with the build time), a navigation bar of the sections'
    titles, the sections; ``before``: blocks above the heading (a link back). Every text is escaped."""
    from markupsafe import Markup

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return _environment().get_template(TEMPLATE).render(
        title=title, heading=heading, subtitle=f"{subtitle}, built {now}.", sections=sections, before=before or [],
        # the one place where text is marked safe: this module's constants, not values from any file
        css=Markup(CSS), check_js=Markup(CHECK_JS), csp=CSP)
