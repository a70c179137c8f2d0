"""Training throughput of our path beside the bare-PyTorch limit and a naive tutorial pipeline.

    python benchmarks/throughput.py                      # MLP and CNN on the machine's device
    python benchmarks/throughput.py --models cnn --device cuda --batch-size 512
    python benchmarks/throughput.py --smoke --data-dir DIR   # a few steps, for CI

All three variants train the same network with the same optimizer on the same data, in this
one process, with train.py's thread settings (extra Hydra overrides such as `num_threads=1`
apply to all). Repeats are interleaved (limit, naive, ours, limit,
...) with a rotating order so that machine noise hits them alike. The table gives each variant's
median; a ratio is the median over repeats of the two variants' ratio within the repeat:

  limit  a bare PyTorch loop over resident, pre-normalised tensors: no Lightning, no DataLoader, in the
         precision ours resolves to (bf16 autocast where `auto` picks bf16)
  naive  the tutorial pipeline: per-sample PIL images through ToTensor/Normalize, default
         collate, DataLoader(num_workers=2), inside Lightning
  ours   train.py's path: EMNISTDataModule and our LightningModule, logging and progress bar on
  augmented  ours with training batches augmented (`--augment`, default affine): its cost per step

Page faults are this process's minor faults per timed step. Peak RSS is this process's
high-water mark while the variant ran (the naive loader's worker processes are not in it);
it includes what earlier variants left behind.
A whole run's own peak RSS comes from the next part: `train.py` runs for one epoch per
family in a subprocess, which reports the epoch's wall time split into training,
validation and test, and its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from emnist_lightning.data import EMNISTDataModule
from emnist_lightning.runs.config import compose as compose_config
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.host import configure_host, resolved_precision
from emnist_lightning.runs.record import RunRecord, peak_rss_mb
from emnist_lightning.training.build import build_datamodule, build_model, build_trainer, build_training_callbacks
from emnist_lightning.training.callbacks import Stopwatch

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("limit", "naive", "ours", "augmented")


def reset_peak_rss() -> None:
    """Restart the kernel's count of this process's peak RSS (VmHWM), where Linux allows it."""
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Measurement:
    """Wall time and page faults over `steps` training steps after `warmup`; peak RSS and device memory."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.done = 0
        self.started = self.seconds = None
        self.faults = 0
        reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def step_finished(self) -> None:
        self.done += 1
        if self.done == self.warmup:
            synchronize(self.device)
            self.faults = -resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            self.started = time.perf_counter()
        elif self.done == self.warmup + self.steps:
            synchronize(self.device)
            self.seconds = time.perf_counter() - self.started
            self.faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps

    def result(self, batch_size: int) -> dict[str, float]:
        result = {
            "images_per_s": self.steps * batch_size / self.seconds,
            "ms_per_step": 1000 * self.seconds / self.steps,
            "page_faults_per_step": self.faults / self.steps,
            "peak_rss_mb": peak_rss_mb() or float("nan"),
        }
        if self.device.type == "cuda":
            result["peak_device_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return result


class MeasureSteps(L.Callback):
    def __init__(self, measurement: Measurement) -> None:
        self.measurement = measurement

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        self.measurement.step_finished()


class PILImages(Dataset):
    """The tutorial dataset: one PIL image per item, transformed one at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float) -> None:
        self.images, self.labels = images.numpy(), labels.numpy()
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index, 0], mode="L")), int(self.labels[index])


def naive_loader(datamodule: EMNISTDataModule, batch_size: int, workers: int = 2) -> DataLoader:
    train = datamodule.train_set
    dataset = PILImages(train.images, train.labels, datamodule.mean, datamodule.std)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)


def compose(family: str, args: argparse.Namespace, output_dir: Path, *extra: str) -> DictConfig:
    overrides = [
        f"model={family}",
        f"data.data_dir={args.data_dir}",
        "data.download=false",
        f"data.batch_size={args.batch_size}",
        f"trainer={'gpu' if args.device == 'cuda' else 'cpu'}",
        *args.override,
        *extra,
    ]
    cfg = compose_config("train", overrides, output_dir)
    draw_progress_bar(cfg)
    return cfg


def draw_progress_bar(cfg: DictConfig) -> None:
    """Make a Rich progress bar draw even when stdout is not a terminal, as it does for a user in
    one; otherwise its cost would be left out of the measurement when the output is piped."""
    bar = (cfg.get("callbacks") or {}).get("progress_bar")
    if bar is not None and bar.get("_target_", "").endswith("RichProgressBar"):
        with open_dict(bar):
            bar.console_kwargs = {"force_terminal": True}


def run_limit(cfg: DictConfig, datamodule: EMNISTDataModule, measurement: Measurement) -> None:
    device = measurement.device
    network = build_model(cfg, datamodule).network.to(device).train()
    optimizer = instantiate(cfg.optimizer)(params=network.parameters())
    images = datamodule.normalize(datamodule.train_set.images).to(device)
    labels = datamodule.train_set.labels.to(device)
    batches = limit_batches(len(labels), cfg.data.batch_size, measurement.total_steps, device)
    autocast = same_precision_as_ours(cfg, device)
    for index in batches:
        with autocast:
            loss = F.cross_entropy(network(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        measurement.step_finished()  # syncs the device only where timing starts and stops


def same_precision_as_ours(cfg: DictConfig, device: torch.device) -> Any:
    """The bare loop computes in the precision `trainer.precision` resolves to for ours (bf16 autocast on a
    GPU or a CPU with native bf16, else float32), so that ours/limit compares like with like everywhere."""
    precision = resolved_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    return torch.autocast(device.type, dtype=torch.bfloat16) if "bf16" in str(precision) else nullcontext()


def limit_batches(size: int, batch_size: int, steps: int, device: torch.device) -> list[torch.Tensor]:
    """`steps` full batches of indices: one shuffle per epoch, back to back, made before timing."""
    generator = torch.Generator().manual_seed(0)
    epochs = -(-steps * batch_size // size)
    order = torch.cat([torch.randperm(size, generator=generator) for _ in range(epochs)]).to(device)
    return list(order[: steps * batch_size].split(batch_size))


def lightning_trainer(cfg: DictConfig, measurement: Measurement) -> L.Trainer:
    with open_dict(cfg.trainer):
        cfg.trainer.update(max_steps=measurement.total_steps, limit_val_batches=0, num_sanity_val_steps=0)
    return build_trainer(
        cfg,
        [
            *build_training_callbacks(cfg, RunContext(Path(cfg.paths.output_dir)), Stopwatch()).all,
            MeasureSteps(measurement),
        ],
    )


def run_naive(cfg: DictConfig, datamodule: EMNISTDataModule, measurement: Measurement) -> None:
    trainer = lightning_trainer(cfg, measurement)
    trainer.fit(build_model(cfg, datamodule), train_dataloaders=naive_loader(datamodule, cfg.data.batch_size))


def run_ours(cfg: DictConfig, datamodule: EMNISTDataModule, measurement: Measurement) -> None:
    trainer = lightning_trainer(cfg, measurement)
    ours = build_datamodule(cfg)
    trainer.fit(build_model(cfg, ours), datamodule=ours)


RUNNERS: dict[str, Callable[[DictConfig, EMNISTDataModule, Measurement], None]] = {
    "limit": run_limit,
    "naive": run_naive,
    "ours": run_ours,
    "augmented": run_ours,  # composed with augment=<--augment>
}


def measure_throughput(family: str, args: argparse.Namespace, workdir: Path) -> dict[str, list[dict[str, float]]]:
    """Every repeat's figures for each variant."""
    device = torch.device(args.device)
    cfg = compose(family, args, workdir)
    configure_host(cfg)  # threads and allocator as train.py sets them, for every variant alike
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    samples: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    for repeat in range(args.repeats):
        shift = repeat % len(VARIANTS)  # rotate the order so no variant always follows another
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            extra = [f"augment={args.augment}"] if variant == "augmented" else []
            cfg = compose(family, args, workdir / f"{family}-{variant}-{repeat}", *extra)
            L.seed_everything(repeat, verbose=False)
            measurement = Measurement(args.warmup, args.steps, device)
            RUNNERS[variant](cfg, datamodule, measurement)
            samples[variant].append(measurement.result(args.batch_size))
            print(f"  {family} {variant:5s} repeat {repeat}: {samples[variant][-1]['images_per_s']:9.0f} images/s")
    return samples


def median_of(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def paired_ratio(samples: dict[str, list[dict[str, float]]], variant: str, baseline: str) -> float:
    """Median over repeats of variant/baseline throughput within a repeat, which shares its noise."""
    return statistics.median(
        ours["images_per_s"] / base["images_per_s"]
        for ours, base in zip(samples[variant], samples[baseline], strict=True)
    )


def measure_epoch(family: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """One epoch of `train.py` as a user runs it, in a subprocess: time split and peak RSS."""
    run_dir = workdir / f"epoch-{family}"
    command = [
        sys.executable, str(REPO_ROOT / "train.py"), f"model={family}", f"data.data_dir={args.data_dir}",
        "data.download=false", f"trainer={'gpu' if args.device == 'cuda' else 'cpu'}", "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}", *args.override,
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    record = RunRecord.read(run_dir)
    seconds = record.seconds
    train, val, test = seconds["train_epoch"][0], seconds["val_epoch"][0], seconds["test"][0]
    return {
        "train_s": train,
        "val_s": val,
        "test_s": test,
        "val_share": val / (train + val),
        "test_share": test / (train + val),
        "process_wall_s": wall,
        # measured by the run itself: a forked child's ru_maxrss would include this process's pages
        "peak_rss_mb": record.peak_rss_mb,
    }


def print_report(report: dict) -> None:
    print(
        f"\n## Throughput ({report['device']}, {report['precision']} in every variant, batch "
        f"{report['batch_size']}, {report['threads']} threads)\n"
    )
    print("| model | variant | images/s | ms/step | page faults/step | peak RSS MB | peak device MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for family, variants in report["throughput"].items():
        for variant, r in variants.items():
            device_mb = f"{r['peak_device_mb']:.0f}" if "peak_device_mb" in r else "-"
            print(
                f"| {family} | {variant} | {r['images_per_s']:.0f} | {r['ms_per_step']:.2f} | "
                f"{r['page_faults_per_step']:.0f} | {r['peak_rss_mb']:.0f} | {device_mb} |"
            )
    augment = report["augment"]
    print(f"\n| model | ours / limit | ours / naive | augment={augment}: time per step |\n| --- | --- | --- | --- |")
    for family, ratio in report["ratios"].items():
        cost = 1 / ratio["augmented/ours"] - 1  # throughput ratio -> extra time per step
        print(f"| {family} | {ratio['ours/limit']:.2f} | {ratio['ours/naive']:.2f} | {cost:+.1%} |")
    if report["epochs"]:
        print("\n| model | train epoch s | val pass s | test pass s | val share | test share | peak RSS MB |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for family, e in report["epochs"].items():
            print(
                f"| {family} | {e['train_s']:.2f} | {e['val_s']:.2f} | {e['test_s']:.2f} | "
                f"{e['val_share']:.1%} | {e['test_share']:.1%} | {e['peak_rss_mb']:.0f} |"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data-dir", default=os.environ.get("EMNIST_DATA_DIR", "data/emnist"))
    parser.add_argument("--warmup", type=int, default=20, help="steps before timing starts")
    parser.add_argument("--steps", type=int, default=150, help="timed steps per repeat (one epoch is 247)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--augment", default="affine", help="the augment option of the augmented variant")
    parser.add_argument("--no-epoch", action="store_true", help="skip the one-epoch train.py runs")
    parser.add_argument("--smoke", action="store_true", help="a few steps of everything, to check it runs")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures as JSON")
    parser.add_argument("override", nargs="*", help="extra Hydra overrides for every variant")
    args = parser.parse_args(argv)
    if args.smoke:
        args.warmup, args.steps, args.repeats = 1, 3, 1
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emnist-bench-") as tmp:
        workdir = Path(tmp)
        settings = compose(args.models[0], args, workdir).trainer
        precision = str(resolved_precision(settings.precision, settings.accelerator))
        samples = {family: measure_throughput(family, args, workdir) for family in args.models}
        epochs = {} if args.no_epoch else {family: measure_epoch(family, args, workdir) for family in args.models}
    report = {
        "device": torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"cpu ({platform.processor() or 'x86_64'})",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "precision": precision,  # every variant's, the bare loop's included
        "batch_size": args.batch_size,
        "augment": args.augment,
        "warmup": args.warmup,
        "steps": args.steps,
        "repeats": args.repeats,
        "throughput": {
            family: {variant: median_of(results) for variant, results in measured.items()}
            for family, measured in samples.items()
        },
        "ratios": {
            family: {
                "ours/limit": paired_ratio(measured, "ours", "limit"),
                "ours/naive": paired_ratio(measured, "ours", "naive"),
                "augmented/ours": paired_ratio(measured, "augmented", "ours"),
            }
            for family, measured in samples.items()
        },
        "repeats_measured": samples,
        "epochs": epochs,
    }
    print_report(report)
    json_path = args.json or Path("outputs") / "benchmarks" / f"throughput-{args.device}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {json_path}")
    return report


if __name__ == "__main__":
    main()
