"""The drawing page's local web server: the page and its assets, and predictions of drawn images.

Python's own `http.server` serves it: the page needs two routes on 127.0.0.1 for one user, so a web
framework would add a dependency and nothing else. Every asset comes from `static/` in this package,
so the page works offline.

Any web page open in the user's browser can send requests to 127.0.0.1, so every request is untrusted:
the Host must be the server's own name (no DNS rebinding), a POST's Origin the page's own, the body a PNG
within a byte budget and a size budget checked before it is decoded; a few worker threads answer, each
request within a deadline for the whole of it (a client that sends a byte now and then is cut off, not
waited for), connections beyond the workers wait in a bounded queue and past it are answered 503 at once,
and every bad request gets an HTTP error, never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from emnist_lightning.inference.images import InputError, grey_on_white, large_enough, picture_sample
from emnist_lightning.inference.models import Predictor
from emnist_lightning.inference.results import predict_samples

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
MAX_UPLOAD_BYTES = 2_000_000  # a canvas PNG is tens of kilobytes
# The page's canvas is 280 x 280. The conversion frames the ink in a square of the longer side, so that
# side, not width x height, bounds what a drawing costs (a 256 x 16,384 strip would need 268 M pixels).
MAX_DRAWING_SIDE = 2048
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WORKERS = 4
QUEUED = 32  # connections waiting for a worker; more are answered 503 at once
# The page's requests are a few kilobytes on this machine: reading one whole takes milliseconds, so a
# client still sending after this long is stalling a worker on purpose or by fault.
REQUEST_DEADLINE_S = 3.0
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"


class RefusedDrawing(Exception):
    """A request body the page would never send, answered with `status`."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def drawing_pixels(png: bytes, name: str) -> np.ndarray:
    """A PNG drawing as grey levels in [0, 1] (transparency as white paper), its size read from the header
    before anything is decoded. Another format, a larger image or a damaged PNG is refused; a drawing too
    small to read is an InputError, which the page shows."""
    from PIL import Image

    if len(png) < 24 or not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise RefusedDrawing(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "not a PNG image: the page sends PNG only")
    width, height = struct.unpack(">II", png[16:24])
    if max(width, height) > MAX_DRAWING_SIDE:
        message = f"{width}x{height} pixels: a drawing is at most {MAX_DRAWING_SIDE:,} pixels on its longer side"
        raise RefusedDrawing(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message)
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            grey = grey_on_white(image)
    except (OSError, ValueError, SyntaxError) as err:  # Pillow's errors for a damaged PNG
        raise RefusedDrawing(HTTPStatus.BAD_REQUEST, f"a damaged PNG ({type(err).__name__})") from err
    return large_enough(grey, name)


def what_to_draw(classes: tuple[str, ...]) -> str:
    """The page's invitation, from the classes the model knows (a Digits model reads no letters)."""
    digits, letters = any(name.isdigit() for name in classes), any(name.isalpha() or "/" in name for name in classes)
    if digits and letters:
        return "A digit, a capital or a lower-case letter"
    return "A digit, 0 to 9" if digits else "A letter, capital or lower-case"


def model_description(predictor: Predictor) -> dict[str, Any]:
    return {"classes": list(predictor.classes), "what_to_draw": what_to_draw(predictor.classes)}


def prediction_of_png(predictor: Predictor, png: bytes, top_k: int) -> dict[str, Any]:
    """What the page shows for a drawing: the top-k characters, every class's probability and the 28x28
    view the model saw (rows of 0..1), or a message when nothing is drawn yet."""
    name = "the drawing"
    try:
        sample = picture_sample(drawing_pixels(png, name), name)  # as predict.py converts a file
    except InputError as err:
        return {"message": str(err).removeprefix(f"{name}: ")}
    (prediction,) = predict_samples(predictor, [sample], len(predictor.classes))
    ranked = prediction.top[0]
    return {
        "top": [{"character": char, "probability": value} for char, value in ranked[:top_k]],
        "probabilities": {char: value for char, value in ranked},
        "view": [[round(value, 3) for value in row] for row in sample.views[0, 0].tolist()],
    }


class DeadlineReader(io.RawIOBase):
    """A connection's incoming bytes, readable until `deadline` (time.monotonic()) and not after: each read
    waits only for the time the request has left."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        super().__init__()
        self.connection, self.deadline = connection, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took longer than its deadline")
        self.connection.settimeout(left)
        return self.connection.recv_into(buffer)


class DemoHandler(BaseHTTPRequestHandler):
    predictor: Predictor
    top_k: int
    allowed_hosts: frozenset[str]  # host:port names the page may be reached by
    static_files: dict[str, Path]  # the request path of every asset

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, deadline))

    def send_response(self, code: int, message: str | None = None) -> None:
        self.connection.settimeout(REQUEST_DEADLINE_S)  # writing the answer has a time of its own
        super().send_response(code, message)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except TimeoutError:  # a request line or headers not sent in time: nothing to answer
            self.close_connection = True

    def do_GET(self) -> None:
        if not self.host_allowed():
            return
        if self.path == "/model":
            self.reply(HTTPStatus.OK, json.dumps(model_description(self.predictor)).encode(), "application/json")
            return
        path = self.static_files.get("/static/index.html" if self.path in ("/", "/index.html") else self.path)
        if path is None:  # an allow-list: no name outside static/ can be reached, however it is spelt
            self.send_error(HTTPStatus.NOT_FOUND, "no such page")
            return
        self.reply(HTTPStatus.OK, path.read_bytes(), CONTENT_TYPES[path.suffix])

    def do_POST(self) -> None:
        if not self.host_allowed():
            return
        if self.path != "/predict":
            self.send_error(HTTPStatus.NOT_FOUND, "POST a PNG to /predict")
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.allowed_hosts:
            self.send_error(HTTPStatus.FORBIDDEN, "predictions are for the drawing page's own requests")
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "image/png":
            self.send_error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the drawing as image/png")
            return
        length = self.headers.get("Content-Length", "")
        if not (length.isascii() and length.isdigit()) or not 0 < int(length) <= MAX_UPLOAD_BYTES:
            self.send_error(
                HTTPStatus.BAD_REQUEST, f"send the drawing as a PNG body of at most {MAX_UPLOAD_BYTES:,} bytes"
            )
            return
        try:
            body = self.rfile.read(int(length))
            answer = json.dumps(prediction_of_png(self.predictor, body, self.top_k), allow_nan=False)
        except TimeoutError:  # the client stopped sending: nothing to answer
            self.close_connection = True
            return
        except RefusedDrawing as err:
            self.send_error(err.status, str(err))
            return
        except Exception as err:  # one bad request must not stop the page for the next; NaN is no JSON
            log.exception("prediction failed")
            message = f"the model could not read this drawing ({type(err).__name__}); clear and try again"
            answer = json.dumps({"message": message})
        self.reply(HTTPStatus.OK, answer.encode(), "application/json")

    def host_allowed(self) -> bool:
        """Requests must name this server (a DNS-rebinding page names its own domain)."""
        if self.headers.get("Host", "") in self.allowed_hosts:
            return True
        self.send_error(HTTPStatus.BAD_REQUEST, "unexpected Host header: open the page at the address demo printed")
        return False

    def reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class BoundedThreadingServer(HTTPServer):
    """Answers requests on a fixed pool of threads, with a bounded queue in front: a flood of requests
    waits its turn instead of starting a thread each, and past the queue is told to come back (503)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="demo")
        self.slots = threading.BoundedSemaphore(WORKERS + QUEUED)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):  # a client that is gone already needs no answer
                request.settimeout(1)
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        self.pool.submit(self.process_request_thread, request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a connection dropped mid-reply: only that client is affected
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("request from %s ended early", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def page_names(host: str, port: int) -> frozenset[str]:
    """The Host headers the page accepts: the loopback names, and the host it was asked to serve on (for
    0.0.0.0, this machine's name too)."""
    names = set(LOOPBACK_NAMES)
    if host in ("0.0.0.0", "::"):
        names |= {socket.gethostname(), socket.getfqdn()}
    else:
        names.add(f"[{host}]" if ":" in host else host)
    return frozenset(f"{name}:{port}" for name in names)


def make_server(predictor: Predictor, host: str, port: int, top_k: int) -> BoundedThreadingServer:
    """A server for the page on host:port (port 0: any free port; server.server_port says which)."""
    assets = {f"/static/{path.name}": path for path in STATIC_DIR.iterdir() if path.suffix in CONTENT_TYPES}
    handler = type("BoundDemoHandler", (DemoHandler,), {"predictor": predictor, "top_k": top_k, "static_files": assets})
    server = BoundedThreadingServer((host, port), handler)
    handler.allowed_hosts = page_names(host, server.server_port)
    return server
