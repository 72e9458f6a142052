"""The one store every artifact goes through: a local folder by default, any fsspec URL otherwise.

Writes are atomic (write to a temporary name, then rename), so a bulk job
killed at any moment leaves either the old artifact or the new one, never a
torn file, and a rerun can trust whatever it finds.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from .errors import DiamondCutterError


def default_cache_dir() -> Path:
    """``$DIAMOND_CUTTER_CACHE``, else ``~/.cache/diamond_cutter``."""
    env = os.environ.get("DIAMOND_CUTTER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "diamond_cutter"


class Store:
    """Key/value files under a root: a local path or an fsspec URL (``s3://bucket/prefix``, ``memory://x``).

    Keys are ``/``-separated relative paths.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        root = str(root) if root is not None else str(default_cache_dir())
        self.root = root
        self.local = "://" not in root or root.startswith("file://")
        if self.local:
            self._path = Path(root.removeprefix("file://")).expanduser()
            self._fs = None
        else:
            try:  # only remote stores need fsspec, and its import is not free
                import fsspec
            except ImportError:
                raise DiamondCutterError(f"store {root!r} is a URL: install fsspec to use remote stores") from None
            self._fs, self._path_str = fsspec.core.url_to_fs(root)

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    def _key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise DiamondCutterError(f"invalid store key {key!r}")
        return key

    def path(self, key: str) -> str:
        """Full path (local) or URL path (remote) of a key."""
        key = self._key(key)
        return str(self._path / key) if self.local else f"{self._path_str.rstrip('/')}/{key}"

    def exists(self, key: str) -> bool:
        return Path(self.path(key)).exists() if self.local else self._fs.exists(self.path(key))

    def read_bytes(self, key: str) -> bytes:
        try:
            if self.local:
                return Path(self.path(key)).read_bytes()
            with self._fs.open(self.path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise DiamondCutterError(f"{self.root}: no {key}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write atomically: a reader sees the old content or the new, never a part."""
        target = self.path(key)
        if self.local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=Path(target).parent, prefix=".tmp-", suffix=Path(target).suffix)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return
        tmp = f"{target}.tmp-{uuid.uuid4().hex}"
        self._fs.makedirs(self._fs._parent(target), exist_ok=True)
        with self._fs.open(tmp, "wb") as f:
            f.write(data)
        self._fs.mv(tmp, target)

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(self.read_bytes(key))
        except json.JSONDecodeError as err:
            raise DiamondCutterError(f"{self.path(key)} is not valid JSON: {err}") from None

    def write_json(self, key: str, value: Any) -> None:
        self.write_bytes(key, json.dumps(value, indent=2, sort_keys=True).encode())

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (recursively), sorted, without temporary files."""
        base = self.path(prefix) if prefix else (str(self._path) if self.local else self._path_str)
        if self.local:
            root = Path(base)
            if not root.exists():
                return []
            keys = [str(p.relative_to(self._path)) for p in root.rglob("*") if p.is_file()]
        else:
            if not self._fs.exists(base):
                return []
            strip = self._path_str.rstrip("/") + "/"
            keys = [p.removeprefix(strip) for p in self._fs.find(base)]
        return sorted(k for k in keys if not Path(k).name.startswith(".tmp-") and ".tmp-" not in Path(k).name)

    def delete(self, key: str) -> None:
        if self.local:
            Path(self.path(key)).unlink(missing_ok=True)
        elif self._fs.exists(self.path(key)):
            self._fs.rm(self.path(key))
