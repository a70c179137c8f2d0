"""The drawing page's local web server: the page and its assets, and predictions of drawn images.

Python's own `http.server` serves it: the page needs two routes on 127.0.0.1 for one user, so a web
framework would add a dependency and nothing else. Every asset comes from `static/` in this package,
so the page works offline.
"""

from __future__ import annotations

import io
import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from emnist_lightning.inference.images import InputError, picture_sample, read_picture
from emnist_lightning.inference.models import Predictor
from emnist_lightning.inference.results import predict_samples

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
MAX_UPLOAD_BYTES = 5_000_000  # a canvas PNG is tens of kilobytes


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
        sample = picture_sample(read_picture(io.BytesIO(png), name), name)  # as predict.py converts a file
    except InputError as err:
        return {"message": str(err).removeprefix(f"{name}: ")}
    (prediction,) = predict_samples(predictor, [sample], len(predictor.classes))
    ranked = prediction.top[0]
    return {
        "top": [{"character": char, "probability": value} for char, value in ranked[:top_k]],
        "probabilities": {char: value for char, value in ranked},
        "view": [[round(value, 3) for value in row] for row in sample.views[0, 0].tolist()],
    }


class DemoHandler(BaseHTTPRequestHandler):
    predictor: Predictor
    top_k: int

    def do_GET(self) -> None:
        if self.path == "/model":
            self.reply(HTTPStatus.OK, json.dumps(model_description(self.predictor)).encode(), "application/json")
            return
        name = "index.html" if self.path in ("/", "/index.html") else self.path.removeprefix("/static/")
        path = STATIC_DIR / name
        # Only files directly in static/: no '..' or sub-folders can reach anything else.
        if "/" in name or not path.is_file() or path.suffix not in CONTENT_TYPES:
            self.send_error(HTTPStatus.NOT_FOUND, "no such page")
            return
        self.reply(HTTPStatus.OK, path.read_bytes(), CONTENT_TYPES[path.suffix])

    def do_POST(self) -> None:
        if self.path != "/predict":
            self.send_error(HTTPStatus.NOT_FOUND, "POST a PNG to /predict")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_UPLOAD_BYTES:
            self.send_error(HTTPStatus.BAD_REQUEST, "send the drawing as a PNG body of at most 5 MB")
            return
        try:
            result = prediction_of_png(self.predictor, self.rfile.read(length), self.top_k)
        except Exception as err:  # one bad request must not stop the page for the next
            log.exception("prediction failed")
            result = {"message": f"the model could not read this drawing ({type(err).__name__}); clear and try again"}
        self.reply(HTTPStatus.OK, json.dumps(result).encode(), "application/json")

    def reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


def make_server(predictor: Predictor, host: str, port: int, top_k: int) -> ThreadingHTTPServer:
    """A server for the page on host:port (port 0: any free port; server.server_port says which)."""
    handler = type("BoundDemoHandler", (DemoHandler,), {"predictor": predictor, "top_k": top_k})
    return ThreadingHTTPServer((host, port), handler)
