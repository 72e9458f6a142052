"""Downloads end in bounded time and memory: slow, huge and non-image responses from local servers."""

from __future__ import annotations

import time
import warnings

import pytest

import diamond_cutter as dc
from diamond_cutter import download as download_module
from diamond_cutter.cli import main
from diamond_cutter.download import DownloadLimits, download
from diamond_cutter.images import sample_path

import servers

QUICK = DownloadLimits(timeout=1.0, deadline=1.5, max_bytes=2**20)


def timed_failure(url: str, limits: DownloadLimits = QUICK) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(dc.ImageError) as err:
        download(url, limits)
    return str(err.value), time.monotonic() - start


@pytest.mark.parametrize("behaviour", [servers.slow_body, servers.slow_headers], ids=["body", "headers"])
def test_a_slow_server_meets_the_deadline_with_an_error_naming_the_url(behaviour):
    with servers.serving(behaviour) as url:
        message, seconds = timed_failure(url)
    assert url in message and "1.5 s deadline" in message
    # A per-read timeout alone never fires (each byte comes within it), and the server keeps sending for
    # servers.LIFETIME seconds: ending well before that (with room for a loaded machine) is the deadline's doing.
    assert seconds < servers.LIFETIME - 1


def test_an_announced_huge_response_is_refused_before_reading_it():
    with servers.serving(servers.huge_announced) as url:
        message, seconds = timed_failure(url)
    assert url in message and "announces 8000000000 bytes" in message and seconds < servers.LIFETIME - 1


def test_an_unannounced_huge_response_stops_at_the_byte_cap():
    with servers.serving(servers.huge_unannounced) as url:
        message, _ = timed_failure(url, DownloadLimits(timeout=1.0, deadline=5.0, max_bytes=2**20))
    assert url in message and f"more than {2**20} bytes" in message


def test_a_web_page_is_refused_at_its_first_bytes():
    with servers.serving(servers.web_page) as url:
        message, seconds = timed_failure(url, DownloadLimits(timeout=1.0, deadline=5.0, max_bytes=2**30))
    assert f"{url} is not an image" in message and "<!doctype html>" in message and seconds < servers.LIFETIME - 1


def test_a_response_cut_short_is_an_image_error_naming_the_url():
    with servers.serving(servers.cut_short) as url:
        message, _ = timed_failure(url)
    assert url in message and "closed after 1008 of 100000 bytes" in message


def test_a_real_image_still_downloads_and_loads():
    data = sample_path("chelsea").read_bytes()
    with servers.serving(servers.file_server(data)) as url:
        batch = dc.load_images(url, size=64, download=QUICK)
    assert batch.ids == [url] and batch.originals[0].size == (451, 300)


def test_a_read_the_watchdog_wakes_is_late_even_when_the_clock_lags(monkeypatch):
    """The watchdog's shutdown wakes a blocked read, which may end the body early a hair before the clock
    would call it late; the download must still say deadline, not a short body. A clock frozen at zero
    makes that race certain."""

    class Frozen:
        @staticmethod
        def monotonic() -> float:
            return 0.0

    monkeypatch.setattr(download_module, "time", Frozen)
    with servers.serving(servers.slow_body) as url:
        with pytest.raises(dc.ImageError, match="deadline") as err:
            download(url, QUICK)
    assert url in str(err.value)


def test_predict_skip_bad_moves_past_a_slow_url(monkeypatch, capsys):
    monkeypatch.setattr(download_module, "DEFAULT_LIMITS", QUICK)
    with servers.serving(servers.slow_body) as url, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["predict", "efficientnet_lite0", url, "chelsea", "-k", "1", "--skip-bad"]) == 0
    assert "chelsea" in capsys.readouterr().out
    assert any(url in str(w.message) and "deadline" in str(w.message) for w in caught)


def test_limits_must_be_positive():
    with pytest.raises(dc.ImageError, match="positive"):
        DownloadLimits(deadline=0)
