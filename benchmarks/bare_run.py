"""The bare-PyTorch reference for a whole train.py run: an independent script with no Lightning, Hydra
or emnist_lightning. It reads the same gzipped IDX files, holds out the same share of the training split
for validation, trains the default MLP (512-256-128, ReLU) with the same optimizer and per-step cosine
schedule for N epochs with a validation pass after each, and tests it.

    python benchmarks/bare_run.py --data-dir ../shared/emnist --epochs 5 [--optimizer sgd] [--l2 5e-5] [--fused]

The optimizer is PyTorch's default implementation, as a plain script gets it; --fused asks for the fused
one that train.py's optimizer configs choose.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FILES = {
    "train": ("emnist-balanced-train-images-idx3-ubyte", "emnist-balanced-train-labels-idx1-ubyte"),
    "test": ("emnist-balanced-test-images-idx3-ubyte", "emnist-balanced-test-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
    dims = data[3]
    shape = np.frombuffer(data, ">u4", count=dims, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = (read_idx(data_dir / name) for name in FILES[split])
    return torch.from_numpy(images.transpose(0, 2, 1).copy()), torch.from_numpy(labels.astype(np.int64))


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float) -> float:
    model.eval()
    with torch.inference_mode():
        correct = sum(
            (model((batch.float() / 255 - mean) / std).argmax(1) == target).sum().item()
            for batch, target in zip(images.split(256), labels.split(256), strict=True)
        )
    model.train()
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--l2", type=float, default=0.0)
    parser.add_argument("--fused", action="store_true", help="the fused optimizer kernel")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(42)
    images, labels = load(args.data_dir, "train")
    order = torch.randperm(len(labels))
    val_count = round(0.1 * len(labels))
    val, train = order[:val_count], order[val_count:]
    mean = images[train].float().div(255).mean().item()
    std = images[train].float().div(255).std().item()
    model = nn.Sequential(
        nn.Flatten(),
        *(layer for a, b in ((784, 512), (512, 256), (256, 128)) for layer in (nn.Linear(a, b), nn.ReLU())),
        nn.Linear(128, 47),
    )
    fused = {"fused": True} if args.fused else {}
    optimizer = (
        torch.optim.Adam(model.parameters(), lr=1e-3, **fused)
        if args.optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=0.05, **fused)
    )
    steps = args.epochs * -(-len(train) // 256)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)  # per step, as train.py's
    for _ in range(args.epochs):
        for batch in train[torch.randperm(len(train))].split(256):
            logits = model((images[batch].float() / 255 - mean) / std)
            loss = F.cross_entropy(logits, labels[batch])
            if args.l2:
                loss = loss + args.l2 * sum(m.weight.square().sum() for m in model if isinstance(m, nn.Linear))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        val_accuracy = accuracy(model, images[val], labels[val], mean, std)
    test_images, test_labels = load(args.data_dir, "test")
    test_accuracy = accuracy(model, test_images, test_labels, mean, std)
    print(f"val {val_accuracy:.4f} test {test_accuracy:.4f} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
