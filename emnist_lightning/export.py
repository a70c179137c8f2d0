"""`python -m emnist_lightning.export ckpt_path=... format=onnx|torchscript`: a model other programs can run.

The exported model takes raw upright 28x28 pixels in [0, 1], float32 (N, 1, 28, 28) with any N, and
returns logits over the 47 classes; the training run's normalisation is inside the graph. Beside it,
model.json names the classes in output order. The run dir gets both, and the largest difference between
the exported model's logits and PyTorch's on a check batch is logged and saved in model.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from emnist_lightning.data import BALANCED_CLASSES
from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.models import (
    EXPORT_SUFFIXES,
    INPUT_NAME,
    OUTPUT_NAME,
    PixelClassifier,
    load_pixel_classifier,
    open_predictor,
    quiet_torchscript_deprecation,
    write_classes,
)
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import run_entry_point

log = logging.getLogger(__name__)
MODEL_STEM = "model"
ONNX_OPSET = 18


def export_onnx(model: PixelClassifier, path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as err:
        raise ConfigError("format=onnx needs the export extra: pip install 'emnist-lightning[export]'") from err
    for chatty in ("onnx_ir", "onnxscript"):  # their graph passes log every step at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        model,
        (torch.rand(2, 1, 28, 28),),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"pixels": {0: batch}},
        opset_version=ONNX_OPSET,
        dynamo=True,
        verbose=False,
    )
    program.save(str(path))


def export_torchscript(model: PixelClassifier, path: Path) -> None:
    with quiet_torchscript_deprecation():
        torch.jit.trace(model, torch.rand(2, 1, 28, 28)).save(str(path))


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript}


def export(cfg: DictConfig, context: RunContext) -> float:
    if not cfg.get("ckpt_path"):
        raise ConfigError("no checkpoint given: pass ckpt_path= a checkpoint written by train.py")
    if cfg.format not in EXPORTERS:
        raise ConfigError(f"format={cfg.format} is not one of {', '.join(EXPORTERS)}")
    model = load_pixel_classifier(cfg.ckpt_path)
    path = context.output_dir / f"{MODEL_STEM}{EXPORT_SUFFIXES[cfg.format]}"
    details = {"input": INPUT_NAME, "output": OUTPUT_NAME, "checkpoint": str(cfg.ckpt_path)}
    write_classes(path, BALANCED_CLASSES, **details)  # before the check: loading the exported model reads it
    EXPORTERS[cfg.format](model, path)
    difference = largest_logit_difference(model, path, torch.Generator().manual_seed(cfg.seed))
    write_classes(path, BALANCED_CLASSES, **details, max_abs_logit_difference=difference)
    log.info("wrote %s (largest logit difference from PyTorch on a random batch: %.2e)", path, difference)
    return difference


def largest_logit_difference(model: PixelClassifier, path: Path, generator: torch.Generator) -> float:
    """Max |exported - PyTorch| over the logits of a batch of random pixels (a batch size the export never
    saw, so a fixed batch dimension would fail here)."""
    pixels = torch.rand(5, 1, 28, 28, generator=generator)
    with torch.inference_mode():
        expected = model(pixels)
    exported = open_predictor(path).logits(pixels)
    return float((expected - exported).abs().max())


def main() -> None:
    run_entry_point("export", export)


if __name__ == "__main__":
    main()
