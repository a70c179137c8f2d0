"""A GPU measured in under 5 minutes: training images/s for the MLP and the CNN, then the time
`experiment=cnn_fast` takes to reach 88% and 90% validation accuracy on the device (bf16 where the GPU
supports it, data resident on the device, torch.compile).

    python benchmarks/gpu.py                                   # on cuda, the defaults below
    python benchmarks/gpu.py --device cpu --smoke              # the same path on a CPU, seconds long

Images/s come from benchmarks/throughput.py (our training path beside a bare loop); the time to accuracy
from one train.py run, capped by --max-minutes, read from its metrics.json: the wall time of the epochs
(training and validation passes) up to the first whose validation accuracy reaches each level.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (0.88, 0.90)


def time_to_levels(record: dict) -> dict[float, float | None]:
    """Seconds of training and validation until each level's first epoch, or None if never reached."""
    accuracies = record["history"]["val/acc"]
    seconds = record["seconds"]
    elapsed, reached = 0.0, dict.fromkeys(LEVELS)
    for epoch, accuracy in enumerate(accuracies):
        elapsed += seconds["train_epoch"][epoch] + seconds["val_epoch"][epoch]
        for level in LEVELS:
            if reached[level] is None and accuracy >= level:
                reached[level] = elapsed
    return reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--max-minutes", type=float, default=3.0, help="cap on the cnn_fast run's training")
    parser.add_argument("--data-dir", default=os.environ.get("EMNIST_DATA_DIR", "data/emnist"))
    parser.add_argument("--smoke", action="store_true", help="a few steps of everything, to check the path")
    args = parser.parse_args()
    throughput = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--device", args.device]
    throughput += ["--data-dir", args.data_dir, *(["--smoke"] if args.smoke else ["--repeats", "2"])]
    print("$", " ".join(throughput), flush=True)
    subprocess.run(throughput, check=True, cwd=ROOT)

    trainer = "trainer=gpu" if args.device == "cuda" else "trainer=cpu"
    seconds = max(1, round(args.max_minutes * 60))
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "cnn_fast"
        train = [sys.executable, str(ROOT / "train.py"), "experiment=cnn_fast", trainer, "data.device_resident=true"]
        train += [f"data.data_dir={args.data_dir}", "data.download=false", "callbacks=no_pictures"]
        limit = f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"  # Lightning's DD:HH:MM:SS
        train += [f"trainer.max_time='{limit}'", f"hydra.run.dir={run_dir}"]
        train += ["model.compile=true"] if args.device == "cuda" else []
        train += (
            ["trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2"]
            if args.smoke
            else []
        )
        print("$", " ".join(train), flush=True)
        subprocess.run(train, check=True, cwd=ROOT)
        record = json.loads((run_dir / "metrics.json").read_text())
    reached = time_to_levels(record)
    print(
        f"cnn_fast on {args.device} ({record['provenance'].get('gpu') or record['provenance']['cpu']}, "
        f"{record['provenance']['precision']}): {record['epochs']} epochs in {record['fit_seconds']:.1f} s, "
        f"best val acc {record['val_acc']:.4f} (stand-in where the data is)"
    )
    for level, seconds_to in reached.items():
        shown = "not reached" if seconds_to is None else f"{seconds_to:.1f} s"
        print(f"time to {level:.0%} validation accuracy: {shown}")


if __name__ == "__main__":
    main()
