"""Predictions of samples: top-k characters per view, as a printed table, predictions.csv and .json."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from emnist_lightning.atomic import write_atomically
from emnist_lightning.inference.images import Sample
from emnist_lightning.inference.models import Predictor

BATCH_SIZE = 1024


@dataclass
class Prediction:
    sample: Sample
    top: list[list[tuple[str, float]]]  # per character: the top-k (character, probability), most likely first

    @property
    def text(self) -> str:
        return "".join(candidates[0][0] for candidates in self.top)

    @property
    def confidences(self) -> list[float]:
        return [candidates[0][1] for candidates in self.top]


def predict_samples(predictor: Predictor, samples: list[Sample], top_k: int) -> list[Prediction]:
    """Every sample's views classified in batches, each view's `top_k` characters kept."""
    if not samples:
        return []
    views = torch.cat([sample.views for sample in samples])
    probabilities = torch.cat([predictor.logits(batch) for batch in views.split(BATCH_SIZE)]).softmax(dim=1)
    values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
    ranked = [
        [(predictor.classes[index], round(value, 4)) for value, index in zip(row_values, row_indices, strict=True)]
        for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True)
    ]
    predictions, start = [], 0
    for sample in samples:
        predictions.append(Prediction(sample, ranked[start : start + len(sample.views)]))
        start += len(sample.views)
    return predictions


def table_lines(predictions: list[Prediction], words: bool) -> list[str]:
    """What the user reads in the terminal: one line per file."""
    width = max((len(prediction.sample.name) for prediction in predictions), default=4)
    lines = []
    for prediction in predictions:
        if words:
            confidences = " ".join(f"{value:.2f}" for value in prediction.confidences)
            described = f"{prediction.text!r:<12} per character: {confidences}"
        else:
            described = "  ".join(f"{char} {value:6.1%}" for char, value in prediction.top[0])
        lines.append(f"{prediction.sample.name:<{width}}  {described}")
    return lines


def write_predictions(predictions: list[Prediction], failures: dict[str, str], output_dir: Path) -> list[Path]:
    """predictions.json (everything, failures too) and predictions.csv (one row per character)."""
    records = [
        {
            "file": prediction.sample.name,
            "text": prediction.text,
            "characters": [
                [{"character": char, "probability": value} for char, value in candidates]
                for candidates in prediction.top
            ],
        }
        for prediction in predictions
    ]
    records += [{"file": name, "error": error} for name, error in failures.items()]
    json_path, csv_path = output_dir / "predictions.json", output_dir / "predictions.csv"
    write_atomically(json_path, json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    top_k = max((len(prediction.top[0]) for prediction in predictions), default=0)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["file", "position", *(f"{kind}{rank}" for rank in range(1, top_k + 1) for kind in ("top", "p"))])
    for prediction in predictions:
        for position, candidates in enumerate(prediction.top):
            writer.writerow([prediction.sample.name, position, *(field for pair in candidates for field in pair)])
    write_atomically(csv_path, table.getvalue())
    return [json_path, csv_path]


def write_sheet(predictions: list[Prediction], path: Path) -> Path:
    """predictions.png: each input, the 28x28 image the model saw, and its top 3 (or the word read)."""
    from emnist_lightning.pictures import plots  # matplotlib only when there is something to draw

    readings = [
        "  ".join(f"{char} {value:.0%}" for char, value in p.top[0][:3]) if len(p.top) == 1 else p.text
        for p in predictions
    ]
    figure = plots.predictions_sheet_figure(
        [p.sample.picture for p in predictions],
        [p.sample.views[:, 0].numpy() for p in predictions],
        [p.sample.name for p in predictions],
        readings,
    )
    plots.save_figure(figure, path)
    return path
