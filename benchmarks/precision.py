"""Training-step time in float32 and in bf16 autocast (what trainer.precision=bf16-mixed runs), side by side.

    python benchmarks/precision.py                         # the default MLP, the default CNN, cnn_best's network
    python benchmarks/precision.py --presets cnn_best --steps 5

Each preset's network trains on random 28x28 batches with AdamW, the two precisions interleaved
(float32, bf16, float32, ...) so machine noise hits both alike; the table gives the median ms per step and
the bf16/float32 ratio, with the CPU and whether it computes bf16 natively (what trainer.precision=auto
decides by). Run it alone: another torch process on the machine skews both columns.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import torch

from emnist_lightning.data import SPLITS
from emnist_lightning.runs.config import compose
from emnist_lightning.runs.host import configure_host, cpu_has_native_bf16, cpu_model, resolved_precision
from emnist_lightning.training.build import build_model

PRESETS = {"mlp": ["model=mlp"], "cnn": ["model=cnn"], "cnn_best": ["experiment=cnn_best"]}


def step_times(preset: str, steps: int, repeats: int, batch_size: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose("train", PRESETS[preset], Path(folder))
    configure_host(cfg)
    split = SPLITS["balanced"]
    model = build_model(cfg, SimpleNamespace(split=split, classes=split.classes))  # type: ignore[arg-type]
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.rand(batch_size, 1, 28, 28)
    labels = torch.randint(0, split.num_classes, (batch_size,))
    times: dict[str, list[float]] = {"float32": [], "bf16": []}

    def step(precision: str) -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for precision in times:  # warm-up: oneDNN picks its kernels on the first calls
        step(precision)
    for repeat in range(repeats):
        for precision in times if repeat % 2 == 0 else reversed(list(times)):
            start = time.perf_counter()
            for _ in range(steps):
                step(precision)
            times[precision].append((time.perf_counter() - start) / steps * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    native = cpu_has_native_bf16()
    print(
        f"CPU: {cpu_model()}; native bf16: {native}; trainer.precision=auto gives {resolved_precision('auto', 'cpu')}"
    )
    print(f"batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, median ms per training step")
    print("| preset | float32 ms | bf16 ms | bf16 / float32 |\n| --- | --- | --- | --- |")
    for preset in args.presets:
        times = step_times(preset, args.steps, args.repeats, args.batch_size)
        ratio = statistics.median(b / f for b, f in zip(times["bf16"], times["float32"], strict=True))
        median = {precision: statistics.median(values) for precision, values in times.items()}
        print(f"| {preset} | {median['float32']:.1f} | {median['bf16']:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
