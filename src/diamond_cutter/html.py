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
