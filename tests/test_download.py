"""course_utils.data.download against a local HTTP server: set-aside, retries, resume, mirrors."""

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from course_utils import data

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Server:
    """What the test server serves and how it misbehaves; it records each request's Range."""

    url: str
    payload: bytes = PAYLOAD
    honour_range: bool = True
    drops: list[int] = field(default_factory=list)  # per request: bytes sent before dropping
    status: int = 200  # e.g. 404 for a dead mirror
    ranges: list[str | None] = field(default_factory=list)
    bytes_sent: int = 0


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the backoff delays instead of sleeping."""
    delays: list[float] = []
    monkeypatch.setattr(data.time, "sleep", delays.append)
    return delays


def _serve() -> Iterator[Server]:
    server_state = Server(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            state = server_state
            state.ranges.append(self.headers.get("Range"))
            if state.status != 200:
                self.send_error(state.status)
                return
            start = 0
            if state.honour_range and self.headers.get("Range"):
                start = int(self.headers["Range"].removeprefix("bytes=").removesuffix("-"))
                if start >= len(state.payload):
                    self.send_error(416)
                    return
            body = state.payload[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(state.payload) - 1}/*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.drops:  # send part of the body, then drop the connection
                body = body[: state.drops.pop(0)]
                self.close_connection = True
            state.bytes_sent += len(body)  # before writing: the client may finish first
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


server = pytest.fixture(_serve)
mirror = pytest.fixture(_serve)


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused, like being offline)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.bin"


def test_plain_download(server: Server, cache: Path, sleeps) -> None:
    path = data.download(server.url, "file.bin", SHA)
    assert path == cache / "file.bin" and path.read_bytes() == PAYLOAD
    assert server.ranges == [None] and sleeps == [] and not list(cache.glob("*.part"))


def test_user_placed_file_with_a_wrong_checksum_is_set_aside_not_deleted(server, cache, sleeps):
    cache.mkdir(parents=True)
    mine = b"my own notes, not the data set"
    (cache / "file.bin").write_bytes(mine)
    got = hashlib.sha256(mine).hexdigest()
    with pytest.warns(UserWarning) as record:
        path = data.download(server.url, "file.bin", SHA)
    assert path.read_bytes() == PAYLOAD
    aside = cache / f"file.bin.bad-{got[:8]}"
    assert aside.read_bytes() == mine  # kept, byte for byte
    message = str(record[0].message)
    assert got in message and SHA in message and str(aside) in message


def test_dropped_connection_is_retried_and_resumed_with_a_range_request(server, cache, sleeps):
    server.drops = [30_000, 50_000]  # two drops mid-body, then the rest
    path = data.download(server.url, "file.bin", SHA, retries=3)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=30000-", "bytes=80000-"]
    assert server.bytes_sent == len(PAYLOAD)  # nothing was downloaded twice
    assert sleeps == [1, 2]  # exponential backoff between attempts


def test_server_that_ignores_range_gets_a_fresh_download(server, cache, sleeps) -> None:
    server.honour_range = False
    server.drops = [30_000]
    assert data.download(server.url, "file.bin", SHA).read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=30000-"]
    assert server.bytes_sent == 30_000 + len(PAYLOAD)  # the whole file the second time


def test_partial_file_from_an_interrupted_session_is_continued(server, cache, sleeps) -> None:
    cache.mkdir(parents=True)
    (cache / "file.bin.part").write_bytes(PAYLOAD[:70_000])
    assert data.download(server.url, "file.bin", SHA).read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=70000-"] and server.bytes_sent == len(PAYLOAD) - 70_000


def test_stale_partial_file_is_discarded_after_a_failed_checksum(server, cache, sleeps) -> None:
    cache.mkdir(parents=True)
    (cache / "file.bin.part").write_bytes(b"x" * 1000)  # not a prefix of the payload
    assert data.download(server.url, "file.bin", SHA, retries=1).read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=1000-", None]


def test_complete_partial_file_refused_by_the_server_starts_over(server, cache, sleeps) -> None:
    cache.mkdir(parents=True)
    (cache / "file.bin.part").write_bytes(PAYLOAD + b"extra")  # 416 Range Not Satisfiable
    assert data.download(server.url, "file.bin", SHA).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD) + 5}-", None]


def test_mirrors_are_tried_in_order(server: Server, mirror: Server, cache, sleeps) -> None:
    server.status = 404
    path = data.download([server.url, mirror.url], "file.bin", SHA, retries=2)
    assert path.read_bytes() == PAYLOAD
    assert len(server.ranges) == 2 and mirror.ranges == [None]


def test_known_mirrors_of_a_url_are_tried_after_it(server, mirror, monkeypatch, sleeps) -> None:
    monkeypatch.setitem(data.MIRRORS, server.url, (mirror.url,))
    server.status = 503
    assert data.download(server.url, "file.bin", SHA, retries=1).read_bytes() == PAYLOAD
    assert server.ranges == [None] and mirror.ranges == [None]


def test_cifar10_has_a_second_source_for_the_same_file() -> None:
    (other,) = data.MIRRORS[data.CIFAR10_URL]
    assert other.startswith("https://") and other != data.CIFAR10_URL
    assert other.rsplit("/", 1)[1] == data.CIFAR10_URL.rsplit("/", 1)[1]


def test_mirror_serving_another_file_is_skipped(server: Server, mirror: Server, sleeps) -> None:
    server.payload = b"a different file"
    assert data.download([server.url, mirror.url], "file.bin", SHA).read_bytes() == PAYLOAD
    assert server.ranges == [None] and mirror.ranges == [None]


def test_offline_error_lists_every_source_and_what_to_do(cache: Path, sleeps) -> None:
    urls = [_closed_port_url(), _closed_port_url()]
    with pytest.raises(data.DatasetUnavailableError) as info:
        data.download(urls, "file.bin", SHA, retries=2, offline_alternative="use the twin")
    message = str(info.value)
    assert all(message.count(u) == 2 for u in urls)  # each mirror, each attempt, with its error
    assert str(cache / "file.bin") in message and SHA in message and "use the twin" in message
    assert sleeps == [1, 1]  # backoff within each mirror


def test_progress_bar_shows_the_file_and_its_size(server: Server, capsys, sleeps) -> None:
    data.download(server.url, "file.bin", SHA)
    err = capsys.readouterr().err
    assert "file.bin" in err and "100%" in err and "102k" in err


def test_standin_is_used_without_download_or_checksum(server, cache, monkeypatch, tmp_path) -> None:
    standins = tmp_path / "standins"
    standins.mkdir()
    (standins / "file.bin").write_bytes(b"a stand-in in the real format")
    monkeypatch.setenv("COURSE_STANDINS", str(standins))
    assert data.download(server.url, "file.bin", SHA) == standins / "file.bin"
    assert server.ranges == [] and not cache.exists()  # no request, nothing cached
    assert data.download(server.url, "other.bin", SHA).read_bytes() == PAYLOAD  # no stand-in


@pytest.mark.parametrize("url", [[], "", ["ok", 3]])
def test_bad_url_argument(url) -> None:
    with pytest.raises(ValueError, match="url must be"):
        data.download(url, "file.bin", SHA)
