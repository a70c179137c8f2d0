"""`python predict.py ckpt_path=... inputs=<file, folder or glob>`: read your own handwriting (conf/predict.yaml).

Each image goes through EMNIST's conversion (inference/images.py) and is classified by a train.py
checkpoint or an exported .onnx/.pt model. Prints a table and writes predictions.json, predictions.csv and
predictions.png (each input, what the model saw, its top 3) into the run dir. Inputs that cannot be read
are reported one line each; the others are still predicted, and the exit status is 1 if any failed.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.images import find_inputs, read_all
from emnist_lightning.inference.models import open_predictor
from emnist_lightning.inference.results import predict_samples, table_lines, write_predictions, write_sheet
from emnist_lightning.models.pretrained import resolve_models
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import fail, run_entry_point

log = logging.getLogger(__name__)


def predict(cfg: DictConfig, context: RunContext) -> float:
    if not cfg.get("inputs"):
        raise ConfigError("nothing to predict: pass inputs= an image, a folder of images or a glob like 'scans/*.png'")
    settings = cfg.predict
    if int(settings.top_k) < 1:
        raise ConfigError(f"predict.top_k={settings.top_k} must be at least 1")
    predictor = open_predictor(resolve_models(cfg.get("ckpt_path"), cfg.pretrained_dir), bool(cfg.trust_program))
    samples, failures = read_all(find_inputs(str(cfg.inputs)), bool(settings.segment))
    predictions = predict_samples(predictor, samples, int(settings.top_k))
    print("\n".join(table_lines(predictions, words=bool(settings.segment))))
    written = write_predictions(predictions, failures, context.output_dir)
    if predictions:
        written.append(write_sheet(predictions[: settings.sheet_limit], context.output_dir / "predictions.png"))
    log.info("%d predicted, %d failed; wrote %s", len(predictions), len(failures), ", ".join(map(str, written)))
    if failures:
        fail(f"{len(failures)} of {len(failures) + len(samples)} inputs could not be predicted (listed above)")
    return float(len(predictions))


def main() -> None:
    run_entry_point("predict", predict)


if __name__ == "__main__":
    main()
