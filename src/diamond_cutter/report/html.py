"""HTML helpers: the Jinja2 environment (autoescaping on, so every user string — file
names, class names — is escaped) and images as data URIs, which is what makes one
report file self-contained."""

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
        loader=PackageLoader("diamond_cutter", "report/templates"),
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


def render(template: str, **context: Any) -> str:
    """Render a template of ``report/templates`` (whole reports and notebook fragments alike)."""
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
