"""HTML on the ground floor: the Jinja2 environment (autoescaping on, so every user
string — file names, class names — is escaped), images as data URIs (which is what
makes one page self-contained) and :class:`HtmlPage`, the base of every result that is
a page.

Analysis results (channel attributions, atlases, heatmaps...) draw their own
``_repr_html_`` from here, and the report and the visual log build on the same
pieces, so nothing below the report has to reach up into it. A leaf: it imports
nothing of Diamond Cutter.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from PIL import Image


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("diamond_cutter", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["uri"] = image_uri
    env.filters["signed"] = lambda v: f"{v:+.3g}"
    return env


def image_uri(image: Image.Image, quality: int | None = None) -> str:
    """A ``data:`` URI of ``image``: PNG, or JPEG at ``quality`` (smaller, for photographs)."""
    buffer = io.BytesIO()
    if quality is None:
        image.save(buffer, format="PNG", optimize=True)
        mime = "image/png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def image_tag(image: Image.Image, alt: str) -> str:
    """An ``<img>`` with the picture inline and ``alt`` escaped (for ``_repr_html_``)."""
    return str(Markup('<img src="{}" alt="{}">').format(image_uri(image), escape(alt)))


def from_template(template: str, **context: Any) -> str:
    """The HTML of a template of ``diamond_cutter/templates`` (whole pages and notebook fragments alike)."""
    return environment().get_template(template).render(**context)


#: Notebook tables show at most this many rows (then a line says how many more there are).
TABLE_ROWS = 40
#: A short repr shows text fields cut to this many characters.
REPR_TEXT = 60


def table_html(columns: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None,
               limit: int = TABLE_ROWS) -> str:
    """A small HTML table for a notebook: every cell escaped, at most ``limit`` rows (the rest counted)."""
    rows = list(rows)
    head = Markup("").join(Markup("<th>{}</th>").format(c) for c in columns)
    body = Markup("").join(
        Markup("<tr>{}</tr>").format(Markup("").join(Markup("<td>{}</td>").format(_cell(v)) for v in row))
        for row in rows[:limit]
    )
    more = (
        Markup('<tr><td colspan="{}">… {} more rows</td></tr>').format(len(columns), len(rows) - limit)
        if len(rows) > limit
        else ""
    )
    title = Markup("<caption>{}</caption>").format(caption) if caption else ""
    return str(Markup('<table class="diamond-cutter">{}<tr>{}</tr>{}{}</table>').format(title, head, body, more))


def details_html(summary: str, inner_html: str) -> str:
    """``inner_html`` (already safe HTML) folded behind a ``<details>`` with an escaped ``summary``."""
    return str(Markup("<details><summary>{}</summary>{}</details>").format(summary, Markup(inner_html)))


def images_html(images: Sequence[Image.Image], captions: Sequence[str], title: str = "", width: int = 160) -> str:
    """Pictures side by side with escaped captions, each shown ``width`` pixels wide."""
    figures = Markup("").join(
        Markup(
            '<figure style="display:inline-block;margin:4px"><img src="{}" width="{}" alt="{}">'
            "<figcaption>{}</figcaption></figure>"
        ).format(image_uri(im), width, caption, caption)
        for im, caption in zip(images, captions)
    )
    heading = Markup("<b>{}</b><br>").format(title) if title else ""
    return str(Markup("<div>{}{}</div>").format(heading, figures))


def short_repr(obj: Any, skip: Sequence[str] = ()) -> str:
    """``Name(field=..., ...)`` of a dataclass with arrays shown by shape, sequences and mappings by
    length and long text cut, so a notebook never prints a tensor or a network in full."""
    parts = [f"{f.name}={_short(getattr(obj, f.name))}" for f in fields(obj) if f.name not in skip and f.repr]
    return f"{type(obj).__name__}({', '.join(parts)})"


def _short(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"<{'×'.join(map(str, value.shape)) or 'scalar'} {str(value.dtype).replace('torch.', '')}>"
    if isinstance(value, str):
        return repr(value if len(value) <= REPR_TEXT else value[: REPR_TEXT - 1] + "…")
    if isinstance(value, (int, float, bool, type(None))):
        return repr(value)
    if (
        isinstance(value, (list, tuple))
        and all(isinstance(v, (int, float, str)) for v in value)
        and len(repr(value)) <= REPR_TEXT
    ):
        return repr(value)
    if isinstance(value, (list, tuple, dict, set)):
        return f"<{len(value)} {type(value).__name__} items>"
    return f"<{type(value).__name__}>"


def _cell(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value


class HtmlPage:
    """A result that is one HTML page: saved as a file, shown inline in a notebook."""

    def html(self) -> str:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Write the HTML file (parent folders are created) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        return self.html()
