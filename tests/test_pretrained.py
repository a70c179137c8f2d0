"""Published models by name (ckpt_path=pretrained:<name>): the shipped files as a fresh install meets them,
and the download path of a registry entry, served from 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

from emnist_lightning.data import SPLITS
from emnist_lightning.errors import CheckpointError, ConfigError
from emnist_lightning.inference.models import load_pixel_classifier
from emnist_lightning.models.pretrained import REGISTRY_PATH, read_registry, resolve_models
from tests.conftest import REPO_ROOT, run_entry_point, script_module

PUBLISHED = read_registry()
CARD_KEYS = {"split", "recipe", "data", "test_acc", "test_acc_ci", "test_macro_acc", "test_macro_acc_ci", "params"}


def test_balanced_ships_with_the_package_and_every_model_is_small() -> None:
    assert "balanced" in PUBLISHED
    shipped = [REGISTRY_PATH.parent / model.file for model in PUBLISHED.values() if model.file]
    assert all(path.is_file() for path in shipped)
    assert sum(path.stat().st_size for path in shipped) < 10e6  # a few MB in all


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_each_published_model_loads_as_weights_and_matches_its_card(name: str, tmp_path: Path) -> None:
    (path,) = resolve_models(f"pretrained:{name}", tmp_path)
    card = PUBLISHED[name].card
    assert card.keys() >= CARD_KEYS and "stand-in" in card["data"]
    torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and numbers: no code
    model = load_pixel_classifier(path)
    assert model.split == card["split"] == name
    assert model.classes == SPLITS[name].classes
    assert sum(p.numel() for p in model.network.parameters()) == card["params"]
    assert float(model.temperature) == pytest.approx(card["temperature"])
    low, high = card["test_macro_acc_ci"]
    assert low <= card["test_macro_acc"] <= high
    assert list(tmp_path.iterdir()) == []  # a shipped model needs no download folder


def test_an_unknown_name_lists_the_published_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no pretrained model 'klingon'; published: pretrained:balanced"):
        resolve_models("pretrained:klingon", tmp_path)


def test_a_shipped_file_that_changed_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    shutil.copytree(REGISTRY_PATH.parent, folder)
    shipped = folder / PUBLISHED["balanced"].file
    data = bytearray(shipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="changed or damaged") as caught:
        resolve_models("pretrained:balanced", tmp_path / "cache", folder / REGISTRY_PATH.name)
    assert "\n" not in str(caught.value)


# The download path: an entry with a URL, as a model not shipped inside the package would have.
WEIGHTS = b"weights of a published model " * 1000


@pytest.fixture(scope="module")
def requests_by_path() -> Counter[str]:
    return Counter()


@pytest.fixture(scope="module")
def server(requests_by_path: Counter[str]) -> Iterator[str]:
    """/model.ckpt the published bytes after a short pause; /tampered.ckpt other bytes."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests_by_path[self.path] += 1
            time.sleep(0.3)  # long enough for a second job to find the first one downloading
            body = WEIGHTS if self.path == "/model.ckpt" else WEIGHTS[::-1]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def registry_with(tmp_path: Path, server: str, name: str, path: str) -> Path:
    registry = tmp_path / "registry" / "registry.json"
    registry.parent.mkdir()
    entry = {"url": f"{server}{path}", "sha256": hashlib.sha256(WEIGHTS).hexdigest(), "card": {"split": "balanced"}}
    registry.write_text(json.dumps({name: entry}))
    return registry


def test_a_download_is_checked_cached_and_fetched_once_by_parallel_jobs(
    server: str, requests_by_path: Counter[str], tmp_path: Path
) -> None:
    registry, cache = registry_with(tmp_path, server, "hosted", "/model.ckpt"), tmp_path / "cache"
    found: list[Path] = []
    jobs = [
        threading.Thread(target=lambda: found.extend(resolve_models("pretrained:hosted", cache, registry)))
        for _ in range(2)
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=60)
    assert len(found) == 2 and found[0] == found[1] and found[0].read_bytes() == WEIGHTS
    assert requests_by_path["/model.ckpt"] == 1
    assert resolve_models("pretrained:hosted", cache, registry) == found[:1]  # from the cache
    assert requests_by_path["/model.ckpt"] == 1
    assert not [path for path in cache.iterdir() if path.name.endswith(".partial")]


def test_a_download_with_another_checksum_is_refused_and_not_kept(server: str, tmp_path: Path) -> None:
    registry, cache = registry_with(tmp_path, server, "hosted", "/tampered.ckpt"), tmp_path / "cache"
    with pytest.raises(CheckpointError, match="sha256") as caught:
        resolve_models("pretrained:hosted", cache, registry)
    assert "\n" not in str(caught.value)
    assert not list(cache.glob("*.ckpt")) and not list(cache.glob("*.partial"))


# A fresh install, as a user meets it: no checkpoint of their own.


@pytest.mark.slow
def test_predict_reads_images_with_no_checkpoint_given(tmp_path: Path) -> None:
    inputs = tmp_path / "letters"
    inputs.mkdir()
    for name, box in {"bar.png": (45, 10, 55, 90), "block.png": (20, 20, 80, 80)}.items():
        image = Image.new("L", (100, 100), 255)
        image.paste(0, box)
        image.save(inputs / name)
    result = run_entry_point("predict.py", f"inputs={inputs}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bar.png" in result.stdout and "block.png" in result.stdout
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert sorted(record["file"] for record in predictions) == ["bar.png", "block.png"]
    assert all(record["text"] for record in predictions)


@pytest.mark.slow
def test_evaluate_tests_a_published_model(synthetic_dir: Path, tmp_path: Path) -> None:
    result = run_entry_point(
        "evaluate.py",
        "ckpt_path=pretrained:balanced",
        "callbacks=no_pictures",
        f"data.data_dir={synthetic_dir}",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "completed" and record["split"] == "balanced" and 0 <= record["test_acc"] <= 1


@pytest.mark.slow
def test_the_drawing_page_serves_the_published_model(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "emnist_lightning.cli.demo", "demo.port=0", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Drawing page: http://"), process.stderr.read() if process.poll() is not None else line
        address = line.split()[2]
        with urllib.request.urlopen(f"{address}model", timeout=30) as answer:
            description = json.loads(answer.read())
        assert description["classes"] == list(SPLITS["balanced"].classes)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_model_cards_are_written_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/pretrained.md says what the registry holds, so the published figures cannot drift from the files."""
    pack = script_module("pack_pretrained")
    monkeypatch.setattr(pack, "DOC", tmp_path / "pretrained.md")
    pack.write_doc(json.loads(REGISTRY_PATH.read_text()))
    assert (tmp_path / "pretrained.md").read_text() == (REPO_ROOT / "docs" / "pretrained.md").read_text()
