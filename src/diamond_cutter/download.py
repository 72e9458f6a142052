"""Bounded HTTP downloads: a slow, endless or non-image response fails with an error naming the URL.

A per-read timeout alone lets a server that sends one byte every few seconds
hold a download forever, and a response of any length fills memory before it
is found not to be an image. Here every download has an overall deadline (a
watchdog shuts the connection's sockets down when it passes, which also ends
a read blocked in the middle of the headers), a size cap checked against
``Content-Length`` and against the bytes actually read, and a look at the
first bytes, so a web page or a binary blob is refused before the rest arrives.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from PIL import Image

from .errors import ImageError

#: Bytes read per call; also how much of the body is seen before the header check.
CHUNK = 64 * 1024


@dataclass(frozen=True)
class DownloadLimits:
    """How long and how much one URL may take.

    ``timeout``: seconds any single connect or read may wait; ``deadline``: seconds
    the whole download may take; ``max_bytes``: the largest response accepted.
    """

    timeout: float = 15.0
    deadline: float = 60.0
    max_bytes: int = 100 * 2**20

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and self.deadline > 0 and self.max_bytes > 0):
            raise ImageError(f"download limits must be positive, got {self}")


#: The limits a download gets when the caller gives none.
DEFAULT_LIMITS = DownloadLimits()


def download(url: str, limits: DownloadLimits | None = None) -> bytes:
    """The body of ``url``, or an :class:`ImageError` naming it (HTTP error, deadline, size, not an image)."""
    limits = limits or DEFAULT_LIMITS
    watchdog = _Watchdog(limits.deadline)
    try:
        with _opener(watchdog).open(url, timeout=limits.timeout) as response:
            return _read(response, url, limits, watchdog)
    except urllib.error.HTTPError as err:
        raise ImageError(f"cannot download {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        if watchdog.late():
            raise _late(url, limits) from None
        raise ImageError(f"cannot download {url}: {getattr(err, 'reason', err)}") from None
    finally:
        watchdog.cancel()


def _read(response: http.client.HTTPResponse, url: str, limits: DownloadLimits, watchdog: _Watchdog) -> bytes:
    length = response.headers.get("Content-Length", "")
    if length.strip().isdigit() and int(length) > limits.max_bytes:
        raise _too_big(url, limits, f"announces {int(length)} bytes")
    chunks: list[bytes] = []
    total = 0
    checked = False
    while True:
        chunk = response.read1(CHUNK)
        if watchdog.late():  # a read the watchdog woke ends in an error or an early end: either way, late
            raise _late(url, limits)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limits.max_bytes:
            raise _too_big(url, limits, f"sent more than {limits.max_bytes} bytes")
        if not checked and total >= 16:
            _check_header(b"".join(chunks)[:16], url)
            checked = True
    data = b"".join(chunks)
    if length.strip().isdigit() and len(data) < int(length):
        raise ImageError(f"cannot download {url}: the connection closed after {len(data)} of {int(length)} bytes")
    if data and not checked:
        _check_header(data, url)
    return data


def looks_like_image(prefix: bytes) -> bool:
    """Whether the first bytes match the signature of any image format Pillow can open."""
    Image.init()
    return any(accept is not None and accept(prefix) for _factory, accept in Image.OPEN.values())


def _check_header(prefix: bytes, url: str) -> None:
    if not looks_like_image(prefix):
        raise ImageError(f"{url} is not an image: it starts with {prefix[:16]!r}")


def _too_big(url: str, limits: DownloadLimits, what: str) -> ImageError:
    return ImageError(f"cannot download {url}: the response {what}, over the limit of {limits.max_bytes} bytes")


def _late(url: str, limits: DownloadLimits) -> ImageError:
    return ImageError(f"cannot download {url}: not finished within the {limits.deadline:g} s deadline")


class _Watchdog:
    """Shuts down every socket it watches once ``deadline`` seconds have passed, waking blocked reads."""

    def __init__(self, deadline: float):
        self.start, self.deadline = time.monotonic(), deadline
        self.sockets: list[socket.socket] = []
        self.expired = threading.Event()
        self.lock = threading.Lock()
        self.timer = threading.Timer(deadline, self.expire)
        self.timer.daemon = True
        self.timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)
        if self.expired.is_set():  # the deadline passed while connecting
            self.expire()

    def expire(self) -> None:
        self.expired.set()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def late(self) -> bool:
        """Whether the deadline has passed: the watchdog fired, or the clock says so.

        Why both: a read woken by the shutdown returns at once, possibly a hair before the clock
        (started elsewhere) would call it late; the flag never misses that case."""
        return self.expired.is_set() or time.monotonic() - self.start >= self.deadline

    def cancel(self) -> None:
        self.timer.cancel()


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """An opener whose connections (redirects included) are watched by ``watchdog``."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(SecureConnection, req, context=self._context)  # type: ignore[attr-defined]

    return urllib.request.build_opener(Handler, SecureHandler)
