"""A sweep's finished jobs kept in one file the repository can hold, and put back into a sweep folder.

A study takes hours; outputs/ is not committed, so a study that spans machines, or sessions whose outputs/
do not survive, would start again from nothing. `keep` adds each completed job's record (its overrides and
metrics.json) to a JSON-lines file; `restore` writes them back as job folders, which a rerun of the same
sweep into that folder skips as finished, and which `emnist-report` reads as it reads the sweep's own. So
the figures docs/results.md gives can be recomputed from the committed records (docs/study/):

    .venv/bin/python scripts/study_records.py keep outputs/study/cnn docs/study/cnn.jsonl
    .venv/bin/python scripts/study_records.py restore docs/study/cnn.jsonl outputs/study/cnn
    .venv/bin/emnist-report outputs/study/cnn

Each line is {"job": "12", "overrides": [...], "metrics": {...}}. Neither command replaces what it finds:
`keep` refuses a job whose overrides differ from the same job's in the file, `restore` leaves a job folder
that exists as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from emnist_lightning.atomic import replaced_atomically
from emnist_lightning.errors import ConfigError
from emnist_lightning.runs.record import OVERRIDES_FILE, RunRecord, recorded_overrides


class RecordsError(Exception):
    """A records file or sweep folder that cannot be used as asked; the message says why and what to do."""


def is_job_number(name: object) -> bool:
    """A basic sweep's job folder name: 0, 1, 2, ..."""
    return isinstance(name, str) and name.isascii() and name.isdigit()


def completed_jobs(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """{job: line} for each job of the sweep folder whose run completed."""
    jobs = {}
    for overrides_file in sorted(sweep_dir.glob(f"*/{OVERRIDES_FILE}")):
        job_dir = overrides_file.parents[1]
        record = RunRecord.read(job_dir)
        if is_job_number(job_dir.name) and record is not None and record.completed:
            overrides = recorded_overrides(job_dir)
            jobs[job_dir.name] = {"job": job_dir.name, "overrides": overrides, "metrics": record.values()}
    return jobs


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """{job: line} from a records file; an absent file holds none."""
    if not path.exists():
        return {}
    jobs = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        try:
            line = json.loads(text)
            valid = (
                isinstance(line, dict)
                and is_job_number(line.get("job"))
                and isinstance(line.get("overrides"), list)
                and all(isinstance(override, str) for override in line["overrides"])
                and isinstance(line.get("metrics"), dict)
                and line["metrics"].get("status") == "completed"
            )
        except ValueError:
            valid = False
        if not valid:
            raise RecordsError(
                f"{path}, line {number}: not a completed job's record (job digits, overrides, metrics); "
                "take the file from the repository again"
            )
        jobs[line["job"]] = line
    return jobs


def keep(sweep_dir: Path, records: Path) -> int:
    """Add the sweep folder's completed jobs to the records file; the number added."""
    if not sweep_dir.is_dir():
        raise RecordsError(f"{sweep_dir}: no such sweep folder; pass the hydra.sweep.dir the sweep ran in")
    kept = read_records(records)
    found = completed_jobs(sweep_dir)
    for job, line in found.items():
        if job in kept and kept[job]["overrides"] != line["overrides"]:
            raise RecordsError(
                f"{sweep_dir}/{job} ran {' '.join(line['overrides'])}, but {records} holds job {job} of another "
                "sweep; keep this sweep's records in another file"
            )
    added = {job: line for job, line in found.items() if job not in kept}
    lines = sorted({**kept, **added}.values(), key=lambda line: int(line["job"]))
    records.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(records) as file:
        file.write("".join(json.dumps(line, default=str) + "\n" for line in lines).encode())
    return len(added)


def restore(records: Path, sweep_dir: Path) -> int:
    """Write each kept job whose folder does not exist yet; the number written."""
    if not records.is_file():
        raise RecordsError(f"{records}: no such records file; pass one that `keep` wrote")
    written = 0
    for job, line in read_records(records).items():
        job_dir = sweep_dir / job
        if job_dir.exists():
            continue
        (job_dir / OVERRIDES_FILE).parent.mkdir(parents=True)
        (job_dir / OVERRIDES_FILE).write_text(yaml.safe_dump(line["overrides"]))
        RunRecord.from_values(line["metrics"]).write(job_dir)
        written += 1
    return written


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keep_command = commands.add_parser("keep", help="add a sweep folder's completed jobs to a records file")
    keep_command.add_argument("sweep_dir", type=Path)
    keep_command.add_argument("records", type=Path)
    restore_command = commands.add_parser("restore", help="write a records file's jobs into a sweep folder")
    restore_command.add_argument("records", type=Path)
    restore_command.add_argument("sweep_dir", type=Path)
    args = parser.parse_args(arguments)
    try:
        if args.command == "keep":
            print(f"{args.records}: {keep(args.sweep_dir, args.records)} jobs added from {args.sweep_dir}")
        else:
            print(f"{args.sweep_dir}: {restore(args.records, args.sweep_dir)} jobs restored from {args.records}")
    except (RecordsError, ConfigError) as err:  # ConfigError: a job's .hydra/overrides.yaml is damaged
        print(f"study_records.py: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
