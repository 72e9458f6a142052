"""The one store every artifact goes through: a local folder by default, any fsspec URL otherwise.

Writes are atomic (write to a temporary name, then rename), so a bulk job
killed at any moment leaves either the old artifact or the new one, never a
torn file. Caches go one step further: :meth:`Store.write_checked` seals an
artifact with its key and SHA-256 in a sidecar, and :meth:`Store.read_checked`
hands back only what still matches its seal and parses; anything else (a
swapped, edited, truncated or foreign file) is reported with a warning naming
the file and treated as absent, so the caller recomputes it.

A write killed half way leaves its temporary file behind (never read: :meth:`Store.list`
skips it). Local temporary names carry the writer's host and process id, so the first
write into a folder removes what writers on this host that are no longer running left there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import DiamondCutterError, StaleCacheWarning

#: Suffix of the sidecar that seals a cached artifact (its key and content hash).
SEAL = ".seal.json"
#: A local temporary file's name: ``.tmp-HOST-PID-random``, so a dead writer's leftovers can be told apart.
_TEMPORARY = re.compile(r"\.tmp-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-")


def file_mode() -> int:
    """The permission bits a plain new file gets under the process's umask (``0o666 & ~umask``).

    Read from ``/proc`` where it exists, since the only portable way to learn the
    umask (setting it and putting it back) would change it for every thread.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


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
        self._tidied: set[Path] = set()
        if self.local:
            self._path = Path(root.removeprefix("file://")).expanduser()
            self._fs: Any = None
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
            folder = Path(target).parent
            folder.mkdir(parents=True, exist_ok=True)
            self._tidy(folder)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{_host()}-{os.getpid()}-", suffix=Path(target).suffix)
            try:
                os.chmod(tmp, file_mode())  # mkstemp makes 0600; a cache should follow the umask like any file
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

    def _tidy(self, folder: Path) -> None:
        """Remove the temporary files that killed writers on this host left in ``folder`` (once per folder)."""
        if folder in self._tidied:
            return
        self._tidied.add(folder)
        for path in folder.glob(".tmp-*"):
            match = _TEMPORARY.match(path.name)
            if match and match["host"] == _host() and not _running(int(match["pid"])):
                path.unlink(missing_ok=True)

    def read_json(self, key: str) -> Any:
        try:
            return json.loads(self.read_bytes(key))
        except json.JSONDecodeError as err:
            raise DiamondCutterError(f"{self.path(key)} is not valid JSON: {err}") from None

    def write_json(self, key: str, value: Any) -> None:
        self.write_bytes(key, json.dumps(value, indent=2, sort_keys=True).encode())

    def write_checked(self, key: str, data: bytes) -> None:
        """Write a cached artifact and then its seal (key, size, SHA-256) next to it.

        A kill between the two leaves an artifact whose seal does not match, which
        :meth:`read_checked` treats as absent: the work is redone, never trusted.
        """
        self.write_bytes(key, data)
        self.write_json(key + SEAL, {"key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    def read_checked(self, key: str, parse: Callable[[bytes], Any] = bytes) -> Any | None:
        """``parse`` of a sealed artifact; ``None`` when it is absent, unsealed, mismatched or does not parse.

        Every case but a plain absence warns with a :class:`StaleCacheWarning` naming the file.
        ``parse`` may raise anything to reject the content (it is a cache: recomputing is always safe).
        """
        if not self.exists(key):
            return None
        try:
            data = self.read_bytes(key)
            seal = json.loads(self.read_bytes(key + SEAL)) if self.exists(key + SEAL) else None
        except (DiamondCutterError, OSError, ValueError):
            seal = data = None
        problem = _seal_problem(seal, key, data)
        if problem is None:
            try:
                return parse(data)  # type: ignore[arg-type]  # _seal_problem rules out None
            except Exception as err:  # noqa: BLE001  any parse failure means: recompute
                problem = f"does not parse ({type(err).__name__}: {err})"
        warnings.warn(f"cached {self.path(key)} {problem}; recomputing it", StaleCacheWarning, stacklevel=2)
        return None

    def write_checked_json(self, key: str, value: Any) -> None:
        self.write_checked(key, json.dumps(value, indent=2, sort_keys=True).encode())

    def read_checked_json(self, key: str, check: Callable[[Any], Any] | None = None) -> Any | None:
        """A sealed JSON artifact, or ``None`` (see :meth:`read_checked`); ``check`` may reject its structure."""

        def parse(data: bytes) -> Any:
            value = json.loads(data)
            if check is not None:
                check(value)
            return value

        return self.read_checked(key, parse)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock named ``key`` across processes (local stores; a no-op on remote ones).

        Writers that read, merge and write back a shared artifact (an atlas) hold it,
        so two processes never lose each other's work.
        """
        if not self.local:
            yield
            return
        import fcntl  # deferred: POSIX only, and only a local store locks

        path = Path(self.path(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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


def _host() -> str:
    """This machine's name as it may appear in a temporary file's name."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _seal_problem(seal: Any, key: str, data: bytes | None) -> str | None:
    """Why ``data`` does not match its seal, or ``None`` when it does."""
    if data is None:
        return "cannot be read"
    if not isinstance(seal, dict):
        return f"has no valid seal ({SEAL})"
    if seal.get("key") != key:
        return f"is sealed for another key ({seal.get('key')!r}): swapped or copied"
    if seal.get("size") != len(data) or seal.get("sha256") != hashlib.sha256(data).hexdigest():
        return "does not match its seal's SHA-256: modified or corrupted"
    return None
