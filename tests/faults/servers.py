"""Hostile HTTP servers on 127.0.0.1 for the download probes, each bounded in time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: No server lives longer than this, whatever a test under test does.
LIFETIME = 8.0

Behaviour = Callable[[socket.socket, float], None]


def _pace(conn: socket.socket, data: bytes, every: float, stop: float) -> None:
    for byte in data:
        if time.monotonic() > stop:
            return
        conn.sendall(bytes([byte]))
        time.sleep(every)


def slow_body(conn: socket.socket, stop: float) -> None:
    """Proper headers, then a PNG one byte every 0.3 s (it would take minutes)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
    _pace(conn, PNG_SIGNATURE + b"\0" * 1000, 0.3, stop)


def slow_headers(conn: socket.socket, stop: float) -> None:
    """The status line and headers one byte every 0.3 s (the read blocks inside urlopen)."""
    _pace(conn, b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"a" * 500 + b"\r\n\r\n", 0.3, stop)


def cut_short(conn: socket.socket, stop: float) -> None:
    """A PNG announced at 100 kB whose connection closes after 1 kB."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n" + PNG_SIGNATURE)
    conn.sendall(b"\0" * 1000)


def huge_announced(conn: socket.socket, stop: float) -> None:
    """A PNG announced at 8 GB."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 8000000000\r\n\r\n" + PNG_SIGNATURE)
    _stream(conn, stop)


def huge_unannounced(conn: socket.socket, stop: float) -> None:
    """A PNG signature, then zeros as fast as the client reads, with no Content-Length."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n" + PNG_SIGNATURE)
    _stream(conn, stop)


def web_page(conn: socket.socket, stop: float) -> None:
    """An endless HTML page where an image was expected."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<!doctype html><html>")
    _stream(conn, stop)


def _stream(conn: socket.socket, stop: float) -> None:
    block = b"\0" * 65536
    while time.monotonic() < stop:
        conn.sendall(block)


def file_server(data: bytes) -> Behaviour:
    def serve(conn: socket.socket, stop: float) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(data) + data)

    return serve


@contextmanager
def serving(behaviour: Behaviour) -> Iterator[str]:
    """A URL on 127.0.0.1 whose every connection gets ``behaviour`` (the server stops after LIFETIME seconds)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = time.monotonic() + LIFETIME
    done = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request
                behaviour(conn, stop)
            except OSError:
                pass  # the client hung up: what a bounded download should do

    def loop() -> None:
        while not done.is_set() and time.monotonic() < stop:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/photo.png"
    finally:
        done.set()
        thread.join()
        listener.close()
