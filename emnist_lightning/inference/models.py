"""A trained model as a function of raw pixels: from a checkpoint, or from an exported ONNX/TorchScript file.

Every model here takes upright 28x28 images in [0, 1], float32 (N, 1, 28, 28), with the training run's
normalisation inside, so that an exported file needs nothing but the pixels and its class list. The
classes are the model's own (its EMNIST split's), from the checkpoint or from model.json beside an export.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from emnist_lightning.atomic import write_atomically
from emnist_lightning.errors import CheckpointError, ConfigError
from emnist_lightning.models.calibration import mean_of_probabilities, positive_number
from emnist_lightning.models.checkpoints import classifier_of_checkpoint, read_checkpoint

DATAMODULE_KEY = "EMNISTDataModule"  # where Lightning saves the data module's state in a checkpoint
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
EXPORT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


class PixelClassifier(nn.Module):
    """Pixels in [0, 1] -> calibrated logits: the training split's standardisation, the trained network, whose
    outputs stand for `classes` of the EMNIST split `split`, and its temperature (inside an exported graph too)."""

    def __init__(
        self,
        network: nn.Module,
        mean: float,
        std: float,
        split: str,
        classes: tuple[str, ...],
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.network = network
        self.split, self.classes = split, classes
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float32))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network((pixels - self.mean) / self.std) / self.temperature


def load_pixel_classifier(ckpt_path: str | Path) -> PixelClassifier:
    """The checkpoint's network with the normalisation it was trained with, in eval mode on the CPU."""
    checkpoint = read_checkpoint(ckpt_path)
    classifier = classifier_of_checkpoint(checkpoint, ckpt_path)  # first: is the file a checkpoint of ours?
    stats = checkpoint.get(DATAMODULE_KEY) or {}
    if stats.get("mean") is None or stats.get("std") is None:
        raise CheckpointError(
            f"checkpoint '{ckpt_path}' has no normalisation stats; use a checkpoint written by train.py"
        )
    try:
        mean, std = float(stats["mean"]), positive_number(stats["std"], "its pixel std")
        if not math.isfinite(mean):
            raise ValueError(f"its pixel mean is {mean}")
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint '{ckpt_path}' holds unusable normalisation stats: {err}") from err
    network, split, classes = classifier.network, classifier.split, classifier.classes
    return PixelClassifier(network, mean, std, split, classes, classifier.temperature).eval()


class PixelEnsemble(nn.Module):
    """Several pixel classifiers of one split -> the log of their mean calibrated probabilities: logits whose
    softmax is the ensemble's probabilities (an exported ensemble is one graph)."""

    def __init__(self, members: Sequence[PixelClassifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.split, self.classes = members[0].split, members[0].classes
        self.temperature = [float(member.temperature) for member in members]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return mean_of_probabilities([member(pixels) for member in self.members])


def model_paths(spec: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """One model path, or several (an ensemble: ckpt_path=[a.ckpt,b.ckpt,c.ckpt])."""
    if not spec:
        raise ConfigError("no model given: pass ckpt_path= a checkpoint of train.py or a model from export")
    return [Path(spec)] if isinstance(spec, str | Path) else [Path(str(each)) for each in spec]


def same_classes(models: Sequence[Any], paths: Sequence[Path]) -> tuple[str, ...]:
    """The classes every member names; one line when two members are of different splits."""
    first = tuple(models[0].classes)
    for model, path in zip(models, paths, strict=True):
        if tuple(model.classes) != first:
            raise ConfigError(
                f"the ensemble's models name different classes ({paths[0].name}: {len(first)}, {path.name}: "
                f"{len(model.classes)}); an ensemble averages models of one EMNIST split"
            )
    return first


def load_pixel_model(spec: str | Path | Sequence[str | Path]) -> PixelClassifier | PixelEnsemble:
    """A checkpoint's pixel classifier, or the ensemble of several checkpoints'."""
    paths = model_paths(spec)
    members = [load_pixel_classifier(path) for path in paths]
    same_classes(members, paths)
    return members[0] if len(members) == 1 else PixelEnsemble(members)


class Predictor(Protocol):
    """Class logits of (N, 1, 28, 28) pixel batches, and the class each logit stands for."""

    classes: tuple[str, ...]

    def logits(self, pixels: torch.Tensor) -> torch.Tensor: ...


@dataclass
class TorchPredictor:
    model: nn.Module
    classes: tuple[str, ...]

    @torch.inference_mode()
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels.float()).float()


@dataclass
class OnnxPredictor:
    session: object  # an onnxruntime.InferenceSession
    classes: tuple[str, ...]

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: pixels.float().numpy()})
        return torch.from_numpy(logits)


def classes_path(model_path: Path) -> Path:
    """The JSON beside an exported model that names its classes: model.onnx -> model.json."""
    return model_path.with_suffix(".json")


def write_classes(model_path: Path, classes: tuple[str, ...], **details: object) -> Path:
    path = classes_path(model_path)
    return write_atomically(path, json.dumps({"classes": list(classes), **details}, indent=2) + "\n")


def read_classes(model_path: Path) -> tuple[str, ...]:
    path = classes_path(model_path)
    try:
        classes = json.loads(path.read_text())["classes"]
        if not classes or not all(isinstance(name, str) and name for name in classes):
            raise ValueError("'classes' must be a list of character names")
        return tuple(classes)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"'{path}' (the class list of {model_path.name}) is missing or unreadable; export the model again"
        ) from err


@dataclass
class EnsemblePredictor:
    """Several predictors of one split; its logits' softmax is the mean of theirs."""

    members: list[Predictor]
    classes: tuple[str, ...]

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        return mean_of_probabilities([member.logits(pixels) for member in self.members])


def open_predictor(spec: str | Path | Sequence[str | Path] | None, trust_program: bool = False) -> Predictor:
    """A predictor for a train.py checkpoint (.ckpt) or a file exported by emnist-export (inference/export.py),
    or for several at once: their ensemble. A TorchScript file is a program that runs as it is opened, so it
    is refused unless `trust_program` (checkpoints are read as data, ONNX files by onnxruntime)."""
    paths = model_paths(spec)
    if len(paths) == 1:
        return open_one_predictor(paths[0], trust_program)
    members = [open_one_predictor(path, trust_program) for path in paths]
    return EnsemblePredictor(members, same_classes(members, paths))


def open_one_predictor(path: Path, trust_program: bool) -> Predictor:
    if not path.is_file():
        raise CheckpointError(f"model '{path}' does not exist; pass ckpt_path= a .ckpt, .onnx or .pt file")
    if path.suffix == EXPORT_SUFFIXES["onnx"]:
        classes = read_classes(path)  # first: a model without its class list is of no use
        return with_matching_classes(OnnxPredictor(onnx_session(path), classes), path)
    if path.suffix == EXPORT_SUFFIXES["torchscript"]:
        if not trust_program:
            raise CheckpointError(
                f"'{path}' is a TorchScript program, which runs code from the file as it is opened; add "
                "trust_program=true if you trust whoever made it, or use its ONNX export or checkpoint"
            )
        classes = read_classes(path)
        try:
            with quiet_torchscript_deprecation():
                model = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            raise CheckpointError(f"'{path}' is not a readable TorchScript model; export it again") from err
        return with_matching_classes(TorchPredictor(model.eval(), classes), path)
    model = load_pixel_classifier(path)
    return TorchPredictor(model, model.classes)


def with_matching_classes(predictor: Predictor, path: Path) -> Predictor:
    """An exported model whose model.json names as many classes as it has outputs; one clear error otherwise
    (it would fail every prediction later)."""
    try:
        outputs = predictor.logits(torch.zeros(1, 1, 28, 28)).shape[-1]
    except Exception as err:  # onnxruntime and TorchScript raise their own types for a model that will not run
        raise CheckpointError(
            f"'{path}' does not run on a 28x28 image ({type(err).__name__}); export it again"
        ) from err
    if outputs != len(predictor.classes):
        raise CheckpointError(
            f"'{classes_path(path)}' names {len(predictor.classes)} classes but {path.name} has {outputs} outputs; "
            "they are not from one export: export the model again"
        )
    return predictor


@contextlib.contextmanager
def quiet_torchscript_deprecation() -> Iterator[None]:
    """PyTorch warns on every TorchScript call that it is deprecated; README says so once, with the
    alternative (ONNX), so the warning would only repeat it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def onnx_session(path: Path) -> object:
    try:
        import onnxruntime
    except ImportError as err:
        raise CheckpointError(
            "running an .onnx model needs onnxruntime: pip install 'emnist-lightning[export]'"
        ) from err
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for a file it cannot load
        raise CheckpointError(f"'{path}' is not a loadable ONNX model ({type(err).__name__}); export it again") from err
