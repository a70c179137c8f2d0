"""Fetching the EMNIST archive: `gzip.zip`, which holds `gzip/emnist-<split>-*.gz` for all six splits.

The archive is streamed to a uniquely named partial file, its md5 checked, and each member extracted to a
partial file renamed into place: a download or an extraction cut short leaves nothing that looks whole.
The address can point at a mirror (data.archive_url, or EMNIST_ARCHIVE_URL); the md5 stays the official
archive's unless data.archive_md5 says otherwise. The official address and md5 are torchvision's (its EMNIST
dataset publishes them), never retyped here. Jobs started together take a file lock, so one downloads and the
others wait for its files.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import shutil
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock, Timeout
from torchvision.datasets import EMNIST
from tqdm.auto import tqdm

from emnist_lightning.atomic import partial_beside, replaced_atomically
from emnist_lightning.data.cache import remove_orphans
from emnist_lightning.data.splits import SPLITS
from emnist_lightning.errors import DataError

log = logging.getLogger(__name__)

OFFICIAL_URL, OFFICIAL_MD5 = EMNIST.url, EMNIST.md5  # upstream's own constants
MAX_ARCHIVE_BYTES = 1 << 30  # the official archive is 562 MB: an answer past this is not it
TIMEOUT_S = 60
CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    url: str = OFFICIAL_URL
    md5: str = OFFICIAL_MD5

    @classmethod
    def of(cls, url: str | None, md5: str | None) -> Archive:
        """The archive a config names: null keys are the official address and checksum."""
        return cls(url or OFFICIAL_URL, md5 or OFFICIAL_MD5)


def archive_members() -> set[str]:
    """The file names the archive may hold for the project (anything else in it is ignored)."""
    names = {f"{name}.gz" for split in SPLITS.values() for name in split.required_files}
    return names | {split.mapping_file for split in SPLITS.values()}


def fetch_archive(archive: Archive, raw_dir: Path) -> list[Path]:
    """Download, check and extract the archive into `raw_dir`; the files written."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    remove_orphans(raw_dir)
    partial = partial_beside(raw_dir / "gzip.zip")
    try:
        log.info("Downloading the EMNIST archive (about 560 MB) from %s", archive.url)
        digest = download(archive.url, partial, "md5", MAX_ARCHIVE_BYTES)
        if digest != archive.md5:
            raise DataError(
                f"the archive from {archive.url} has md5 {digest}, not {archive.md5}: it was tampered with, cut "
                "short, or is another file; nothing was extracted. Download it again, or check data.archive_url"
            )
        return extract(partial, raw_dir)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def one_downloader(lock_path: Path, what: str) -> Iterator[None]:
    """Held by the one process that downloads `what`; the others wait here (saying so) and then find its
    files. The lock file lies beside what it guards, not inside it."""
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("Another process is downloading %s; waiting for it", what)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def download(url: str, destination: Path, algorithm: str, max_bytes: int) -> str:
    """Stream `url` into `destination` with a progress bar; the hex digest of what came (hashlib's
    `algorithm`). An answer shorter than its Content-Length, or longer than `max_bytes`, is refused."""
    digest = hashlib.new(algorithm)
    received = 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer, open(destination, "wb") as file:
        expected = answer.headers.get("Content-Length")
        total = int(expected) if expected is not None and expected.isascii() and expected.isdigit() else None
        name = PurePosixPath(urllib.parse.urlsplit(url).path).name or url
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, mininterval=1.0) as bar:
            try:
                while chunk := answer.read(CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise DataError(f"{url} sent more than {max_bytes:,} bytes: not the file asked for")
                    digest.update(chunk)
                    file.write(chunk)
                    bar.update(len(chunk))
            except http.client.IncompleteRead as err:
                received += len(err.partial)
    if total is not None and received != total:
        raise DataError(f"the download from {url} was cut short ({received:,} of {total:,} bytes); run again")
    return digest.hexdigest()


def extract(archive_path: Path, raw_dir: Path) -> list[Path]:
    """The archive's gzip/emnist-* members, each written whole or not at all (zipfile checks their CRC)."""
    wanted = archive_members()
    written = []
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for member in archive.infolist():
                name = PurePosixPath(member.filename)
                if name.parent != PurePosixPath("gzip") or name.name not in wanted:
                    continue  # other files, and any name that points outside the folder
                if member.file_size > MAX_ARCHIVE_BYTES:
                    raise DataError(f"{name} in the archive claims {member.file_size:,} bytes: not an EMNIST file")
                target = raw_dir / name.name
                with archive.open(member) as source, replaced_atomically(target) as file:
                    shutil.copyfileobj(source, file, CHUNK)
                written.append(target)
    except zipfile.BadZipFile as err:
        raise DataError(f"the downloaded archive is not a valid zip file ({err}); download it again") from err
    if not written:
        raise DataError("the downloaded archive holds no gzip/emnist-* files: it is not the EMNIST archive")
    log.info("Extracted %d EMNIST files into %s", len(written), raw_dir)
    return written
