"""The download path end to end: an archive in the official layout (gzip.zip holding gzip/emnist-*.gz) served
from 127.0.0.1, its md5 checked, and downloads or extractions cut short recovered by fetching again."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from torchvision.datasets import EMNIST

from emnist_lightning.data import files
from emnist_lightning.data.download import Archive
from emnist_lightning.errors import DataError
from emnist_lightning.runs.config import compose
from tests.conftest import BALANCED, synthetic_datamodule, write_synthetic_emnist


def official_layout_archive(source: Path) -> bytes:
    """A gzip.zip as NIST lays it out, plus members the extraction must leave alone."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(source.iterdir()):
            archive.write(file, f"gzip/{file.name}")
        archive.writestr("gzip/../../escaped.gz", b"outside the folder")
        archive.writestr("readme.txt", b"not an EMNIST file")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archive_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return official_layout_archive(write_synthetic_emnist(tmp_path_factory.mktemp("archive_source")))


@pytest.fixture(scope="module")
def requests_by_path() -> Counter[str]:
    return Counter()


@pytest.fixture(scope="module")
def server(archive_bytes: bytes, requests_by_path: Counter[str]) -> Iterator[str]:
    """/gzip.zip whole; /slow.zip the same after a pause; /cut.zip promises the whole archive and sends half;
    /tampered.zip has one byte changed. Requests are counted by path."""
    tampered = bytearray(archive_bytes)
    tampered[len(tampered) // 2] ^= 0xFF
    bodies = {"/gzip.zip": archive_bytes, "/slow.zip": archive_bytes, "/tampered.zip": bytes(tampered)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests_by_path[self.path] += 1
            if self.path == "/slow.zip":
                time.sleep(0.5)  # long enough for a second job to find the first one downloading
            body = bodies.get(self.path, archive_bytes[: len(archive_bytes) // 2])
            self.send_response(200 if self.path in bodies or self.path == "/cut.zip" else 404)
            self.send_header("Content-Length", str(len(archive_bytes) if self.path == "/cut.zip" else len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def archive_at(server: str, name: str, archive_bytes: bytes) -> Archive:
    return Archive(f"{server}/{name}", hashlib.md5(archive_bytes).hexdigest())


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if path.name.endswith(".partial") or "gzip.zip" in path.name)


def test_the_official_archive_is_the_one_torchvision_publishes() -> None:
    """The address and md5 a fresh machine downloads against are upstream's (a retyped md5 once refused the
    real archive as tampered)."""
    assert (Archive().url, Archive().md5) == (EMNIST.url, EMNIST.md5)
    assert Archive.of(None, None) == Archive(EMNIST.url, EMNIST.md5)


def test_download_fills_the_raw_folder_and_the_split_loads(
    server: str, archive_bytes: bytes, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    archive = archive_at(server, "gzip.zip", archive_bytes)
    datamodule = synthetic_datamodule(data_dir, download=True, archive_url=archive.url, archive_md5=archive.md5)
    datamodule.prepare_data()
    progress = capfd.readouterr().err
    assert "gzip.zip" in progress and "100%" in progress  # the progress bar, through to the end
    datamodule.setup("fit")
    raw = data_dir / "EMNIST" / "raw"
    assert sorted(path.name for path in raw.iterdir()) == sorted(
        [f"{name}.gz" for name in BALANCED.required_files] + [BALANCED.mapping_file]
    )
    assert datamodule.train_set is not None and len(datamodule.train_set) > 0
    assert leftovers(data_dir) == []
    assert not (tmp_path / "escaped.gz").exists() and not (data_dir / "escaped.gz").exists()


def test_a_tampered_archive_is_refused_and_nothing_extracted(server: str, archive_bytes: bytes, tmp_path: Path) -> None:
    archive = Archive(f"{server}/tampered.zip", hashlib.md5(archive_bytes).hexdigest())
    with pytest.raises(DataError) as caught:
        files.ensure_files(tmp_path, BALANCED, download=True, archive=archive)
    message = str(caught.value)
    assert "\n" not in message and "md5" in message and "tampered" in message
    assert list((tmp_path / "EMNIST" / "raw").iterdir()) == []


def test_a_download_cut_short_leaves_nothing_and_the_next_one_works(
    server: str, archive_bytes: bytes, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="cut short") as caught:
        files.ensure_files(tmp_path, BALANCED, download=True, archive=archive_at(server, "cut.zip", archive_bytes))
    assert "\n" not in str(caught.value)
    assert list((tmp_path / "EMNIST" / "raw").iterdir()) == []
    files.ensure_files(tmp_path, BALANCED, download=True, archive=archive_at(server, "gzip.zip", archive_bytes))
    assert files.missing_files(tmp_path, BALANCED) == [] and files.incomplete_files(tmp_path, BALANCED) == {}


def cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_an_extraction_cut_short_is_noticed_then_fetched_again(
    server: str, archive_bytes: bytes, tmp_path: Path
) -> None:
    archive = archive_at(server, "gzip.zip", archive_bytes)
    files.ensure_files(tmp_path, BALANCED, download=True, archive=archive)
    images = files.find_file(tmp_path, BALANCED.file_names("train")[0])
    assert images is not None
    cut_in_half(images)
    with pytest.raises(DataError) as caught:
        files.ensure_files(tmp_path, BALANCED, download=False)
    message = str(caught.value)
    assert "\n" not in message and str(images) in message
    assert "incomplete" in message and "data.download=true" in message
    files.ensure_files(tmp_path, BALANCED, download=True, archive=archive)
    assert files.load_split(tmp_path, BALANCED, "train").images.shape[1:] == (1, 28, 28)


def test_a_cut_short_file_the_user_placed_is_named_not_replaced(synthetic_dir: Path, tmp_path: Path) -> None:
    for file in synthetic_dir.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    labels = tmp_path / f"{BALANCED.file_names('test')[1]}.gz"
    cut_in_half(labels)
    before = labels.read_bytes()
    with pytest.raises(DataError, match="outside EMNIST/raw/") as caught:
        files.ensure_files(tmp_path, BALANCED, download=True, archive=Archive("http://127.0.0.1:9/never"))
    assert str(labels) in str(caught.value)
    assert labels.read_bytes() == before


def test_the_archive_address_comes_from_the_config_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMNIST_ARCHIVE_URL", raising=False)
    assert OmegaConf.to_container(compose("train", [], tmp_path).data, resolve=True)["archive_url"] is None
    monkeypatch.setenv("EMNIST_ARCHIVE_URL", "https://mirror.example/emnist/gzip.zip")
    data = compose("train", [], tmp_path).data
    assert data.archive_url == "https://mirror.example/emnist/gzip.zip"
    assert Archive.of(data.archive_url, data.archive_md5).md5 == Archive().md5


def test_jobs_started_together_download_once(
    server: str, archive_bytes: bytes, requests_by_path: Counter[str], tmp_path: Path
) -> None:
    """Two jobs of a sweep on a fresh machine: one downloads while the other waits on the lock, then finds
    the files."""
    archive = archive_at(server, "slow.zip", archive_bytes)
    errors: list[BaseException] = []

    def job() -> None:
        try:
            files.ensure_files(tmp_path, BALANCED, True, archive)
        except BaseException as err:  # handed to the test's thread
            errors.append(err)

    jobs = [threading.Thread(target=job) for _ in range(2)]
    for each in jobs:
        each.start()
    for each in jobs:
        each.join(timeout=60)
    assert errors == []
    assert requests_by_path["/slow.zip"] == 1
    assert files.missing_files(tmp_path, BALANCED) == [] and files.incomplete_files(tmp_path, BALANCED) == {}
