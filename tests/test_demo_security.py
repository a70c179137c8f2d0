"""The drawing page's server as any web page in the user's browser, or any local program, can reach it:
foreign hosts and origins, formats other than PNG, decompression bombs, malformed requests, slow clients
and a flood of requests from several threads."""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from emnist_lightning.inference import server as server_module
from emnist_lightning.inference.models import open_predictor
from emnist_lightning.inference.server import QUEUED, WORKERS, make_server


@pytest.fixture(scope="module")
def address(synthetic_checkpoint: Path) -> Iterator[tuple[str, int]]:
    server = make_server(open_predictor(synthetic_checkpoint), "127.0.0.1", 0, top_k=3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "127.0.0.1", server.server_port
    server.shutdown()
    server.server_close()


def drawing() -> bytes:
    stroke = Image.new("L", (280, 280), 255)
    stroke.paste(0, (120, 40, 150, 240))
    buffer = io.BytesIO()
    stroke.save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's header, without its data)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def request(
    address: tuple[str, int], method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*address, timeout=30)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in ({"Host": f"{address[0]}:{address[1]}"} | headers).items():
        connection.putheader(name.replace("_", "-"), value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    reply = connection.getresponse()
    status, content = reply.status, reply.read()
    connection.close()
    return status, content


def predict(address: tuple[str, int], body: bytes, **headers: str) -> int:
    return request(address, "POST", "/predict", body, **({"Content_Type": "image/png"} | headers))[0]


def test_a_drawing_is_read(address: tuple[str, int]) -> None:
    status, content = request(address, "POST", "/predict", drawing(), Content_Type="image/png")
    assert status == 200 and b'"top"' in content


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", {}, 415),  # Pillow would hand EPS to Ghostscript
        (png_claiming(13_377, 13_377), {}, 413),  # a decompression bomb
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, {}, 415),  # JPEG
        (drawing()[:60], {}, 400),  # a PNG cut short
        (drawing(), {"Origin": "http://evil.example"}, 403),
        (drawing(), {"Host": "evil.example"}, 400),  # DNS rebinding
        (drawing(), {"Content_Type": "text/plain"}, 415),
    ],
    ids=["eps", "png-bomb", "jpeg", "truncated", "cross-origin", "foreign-host", "content-type"],
)
def test_hostile_requests_are_refused(address: tuple[str, int], body: bytes, headers: dict, status: int) -> None:
    assert predict(address, body, **headers) == status
    assert predict(address, drawing()) == 200  # and the next drawing is still read


def test_malformed_requests_get_http_errors(address: tuple[str, int]) -> None:
    connection = socket.create_connection(address, timeout=30)
    host = f"{address[0]}:{address[1]}"
    connection.sendall(
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\nContent-Length: abc\r\n\r\n".encode()
    )
    assert connection.recv(100).startswith(b"HTTP/1.0 400")
    connection.close()
    for path in (
        "/static/" + "x" * 300,
        "/static/..\\..\\models.py",
        "/static/%2e%2e/models.py",
        "/static/../models.py",
    ):
        assert request(address, "GET", path)[0] == 404, path
    assert request(address, "GET", "/", Host="attacker.example:80")[0] == 400
    assert request(address, "GET", "/")[0] == 200


def test_slow_clients_and_a_flood_leave_every_good_request_answered(address: tuple[str, int]) -> None:
    """Two clients that open a request and stop sending, then 200 requests from 8 threads, a quarter of
    them bombs: every good drawing is answered 200 and every bomb 413."""
    stalled = [socket.create_connection(address, timeout=30) for _ in range(2)]
    for connection in stalled:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n")
    bodies = [png_claiming(20_000, 20_000) if i % 4 == 0 else drawing() for i in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda body: predict(address, body), bodies))
    assert statuses == [413 if i % 4 == 0 else 200 for i in range(200)]
    for connection in stalled:
        connection.close()


def test_clients_that_trickle_their_headers_cannot_hold_every_worker(address: tuple[str, int]) -> None:
    """More slow clients than workers, each sending a header line every second (a per-read timeout never
    fires): the deadline for the whole request frees the workers, and a good request is answered while they
    go on trickling. Without the deadline it never is: the request's own 30 s timeout ends it. No wall-clock
    bound of ours, so a slow machine cannot fail it."""
    slow = [socket.create_connection(address, timeout=30) for _ in range(WORKERS + 2)]
    for connection in slow:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for connection in slow:
                with contextlib.suppress(OSError):
                    connection.sendall(b"X-Slow: 1\r\n")

    threading.Thread(target=trickle, daemon=True).start()
    try:
        time.sleep(0.5)  # every worker now holds a slow client
        status, _ = request(address, "GET", "/model")
    finally:
        stop.set()
        for connection in slow:
            connection.close()
    assert status == 200


def test_connections_past_the_queue_are_told_to_come_back(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "REQUEST_DEADLINE_S", 60.0)  # no held connection times out meanwhile
    held = [socket.create_connection(address, timeout=30) for _ in range(WORKERS + QUEUED + 5)]
    try:
        refused = 0
        for connection in held[WORKERS + QUEUED :]:
            connection.settimeout(2)
            with contextlib.suppress(TimeoutError):
                refused += connection.recv(100).startswith(b"HTTP/1.0 503")
        assert refused == 5
    finally:
        for connection in held:
            connection.close()  # the workers read an empty request and free their slots
    time.sleep(0.5)
    assert request(address, "GET", "/model")[0] == 200


def test_a_content_length_of_unicode_digits_gets_an_http_answer(address: tuple[str, int]) -> None:
    """'²' passes str.isdigit() and then int() raises: the connection used to close with no answer."""
    connection = socket.create_connection(address, timeout=30)
    host = f"{address[0]}:{address[1]}"
    head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\nContent-Length: \u00b2\r\n\r\n"
    connection.sendall(head.encode("latin-1"))
    assert connection.recv(100).startswith(b"HTTP/1.0 400")
    connection.close()
