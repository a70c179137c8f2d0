"""Exporting a checkpoint as a model other programs can run: ONNX or TorchScript (`EXPORTERS`).

The exported model takes raw upright 28x28 pixels in [0, 1], float32 (N, 1, 28, 28) with any N, and
returns calibrated logits over the model's classes; the training run's normalisation and its temperature
are inside the graph (an ensemble of checkpoints is one graph whose logits' softmax is their mean). Beside it,
model.json names the EMNIST split and its classes in output order. The run dir gets both, and the largest
difference between the exported model's logits and PyTorch's on a check batch is logged and saved in model.json.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from emnist_lightning.atomic import replaced_atomically
from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.models import (
    EXPORT_SUFFIXES,
    INPUT_NAME,
    OUTPUT_NAME,
    PixelClassifier,
    PixelEnsemble,
    load_pixel_model,
    model_paths,
    open_predictor,
    quiet_torchscript_deprecation,
    write_classes,
)

log = logging.getLogger(__name__)
MODEL_STEM = "model"
ONNX_OPSET = 18


def export_onnx(model: PixelClassifier | PixelEnsemble, path: Path) -> None:
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
    with replaced_atomically(path) as file:
        file.write(program.model_proto.SerializeToString())


def export_torchscript(model: PixelClassifier | PixelEnsemble, path: Path) -> None:
    with quiet_torchscript_deprecation(), replaced_atomically(path) as file:
        torch.jit.save(torch.jit.trace(model, torch.rand(2, 1, 28, 28)), file)


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript}


def export(
    ckpt_path: str | Path | Sequence[str | Path], format: str, output_dir: Path, seed: int
) -> tuple[Path, float]:
    """Write the checkpoint's model (or several checkpoints' ensemble, as one graph) as `format` and model.json
    into `output_dir`; returns the model's file and the largest logit difference from PyTorch on a check
    batch drawn with `seed`."""
    if format not in EXPORTERS:
        raise ConfigError(f"format={format} is not one of {', '.join(EXPORTERS)}")
    model = load_pixel_model(ckpt_path)
    path = output_dir / f"{MODEL_STEM}{EXPORT_SUFFIXES[format]}"
    sources = [str(path) for path in model_paths(ckpt_path)]
    details = {"split": model.split, "input": INPUT_NAME, "output": OUTPUT_NAME, "checkpoint": ", ".join(sources)}
    # inside the graph: its logits are calibrated (an ensemble's: the log of its members' mean probabilities)
    details["temperature"] = model.temperature if isinstance(model, PixelEnsemble) else float(model.temperature)
    write_classes(path, model.classes, **details)  # before the check: loading the exported model reads it
    EXPORTERS[format](model, path)
    difference = largest_logit_difference(model, path, torch.Generator().manual_seed(seed))
    write_classes(path, model.classes, **details, max_abs_logit_difference=difference)
    return path, difference


def largest_logit_difference(model: PixelClassifier | PixelEnsemble, path: Path, generator: torch.Generator) -> float:
    """Max |exported - PyTorch| over the logits of a batch of random pixels (a batch size the export never
    saw, so a fixed batch dimension would fail here)."""
    pixels = torch.rand(5, 1, 28, 28, generator=generator)
    with torch.inference_mode():
        expected = model(pixels)
    exported = open_predictor(path, trust_program=True).logits(pixels)  # the file this process just wrote
    return float((expected - exported).abs().max())
