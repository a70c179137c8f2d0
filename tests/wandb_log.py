"""Reading an offline W&B run's transaction log (run-<id>.wandb), which wandb writes but no longer reads
back in Python: LevelDB's log format (32 KiB blocks of records, each with a 7-byte header: CRC, length,
type) after a 7-byte file header, each record one protobuf `Record`."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32 * 1024, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    data, found, position, pending = path.read_bytes(), [], HEADER, b""
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    while position + HEADER <= len(data):
        if BLOCK - position % BLOCK < HEADER:  # a block's tail too short for a header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        payload = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind == FULL:
            found.append(payload)
        elif kind == FIRST:
            pending = payload
        elif kind in (MIDDLE, LAST):
            pending += payload
            if kind == LAST:
                found.append(pending)
    return found


def logged(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last value of every logged metric, and the run's config, from its transaction log."""
    metrics: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for payload in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind in ("history", "summary"):
            items = record.history.item if kind == "history" else record.summary.update
            metrics |= {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}
        elif kind == "config":
            config |= {item.key: json.loads(item.value_json) for item in record.config.update}
    return metrics, config
