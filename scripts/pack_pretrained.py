"""Publish the models trained by scripts/train_pretrained.sh: for each split's run folder, pack its best
checkpoint as weights only (emnist_lightning/models/pretrained_weights/<split>.ckpt), test the packed file
with evaluate.py, and write the registry (names, sha256, model cards) and docs/pretrained.md from it.

    EMNIST_DATA_DIR=... .venv/bin/python scripts/pack_pretrained.py [outputs/pretrained] [splits...]
    .venv/bin/python scripts/pack_pretrained.py --doc-only    # docs/pretrained.md again from the registry

Figures come from the runs' metrics.json and from evaluating the packed files; nothing is typed in.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from emnist_lightning.data import emnist_split
from emnist_lightning.models.pretrained import PREFIX, REGISTRY_PATH, WEIGHTS_DIR, weights_only_checkpoint

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "pretrained.md"


def pack(run_dir: Path) -> dict[str, Any]:
    """The registry entry of one training run: its packed file's name and sha256, and the card's training
    half (the recipe, the data, the run's own figures)."""
    record = json.loads((run_dir / "metrics.json").read_text())
    if record["status"] != "completed":
        raise SystemExit(f"{run_dir}: the run is {record['status']}, not completed")
    checkpoint = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=True)
    split = record["split"]
    target = WEIGHTS_DIR / f"{split}.ckpt"
    torch.save(weights_only_checkpoint(checkpoint), target)
    provenance = record["provenance"]
    card = {
        "split": split,
        "classes": len(emnist_split(split).classes),
        "recipe": " ".join(arg for arg in record["overrides"] if not arg.startswith(("hydra.", "overwrite"))),
        "params": record["params"],
        "bytes": target.stat().st_size,
        "data": f"EMNIST {split} stand-in (smaller than the official split, drawn from official test pools)",
        "data_files": provenance["data_files"],
        "epochs": record["epochs"],
        "fit_seconds": record["fit_seconds"],
        "machine": f"{provenance['cpu']}, {provenance['num_threads']} threads, {provenance['precision']}",
        "git_commit": provenance.get("git_commit"),
        "git_dirty": provenance.get("git_dirty"),
        "trained_at": record["finished_at"],
        "val_acc": record["val_acc"],
        "val_macro_acc": record["val_macro_acc"],
        "run_test_acc": record["test_acc"],
        "run_test_macro_acc": record["test_macro_acc"],
    }
    return {"file": target.name, "url": None, "sha256": hashlib.sha256(target.read_bytes()).hexdigest(), "card": card}


def evaluate_packed(split: str, out_dir: Path) -> dict[str, Any]:
    """The packed file's test figures, from evaluate.py run on `pretrained:<split>` as a user would."""
    run_dir = out_dir / f"{split}-packed-evaluation"
    subprocess.run(
        [sys.executable, "evaluate.py", f"ckpt_path={PREFIX}{split}", "callbacks=no_pictures",
         f"hydra.run.dir={run_dir}", "overwrite=true"],
        cwd=ROOT, check=True,
    )  # fmt: skip
    record = json.loads((run_dir / "metrics.json").read_text())
    keys = ("test_acc", "test_acc_ci", "test_macro_acc", "test_macro_acc_ci", "test_ece", "test_ece_calibrated")
    return {key: record[key] for key in keys} | {"temperature": record["temperature"]}


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def interval(card: dict[str, Any], key: str) -> str:
    low, high = card[f"{key}_ci"]
    return f"{percent(card[key])} [{percent(low)}, {percent(high)}]"


def card_row(name: str, card: dict[str, Any]) -> str:
    """One model's card: its recipe and run, and its packed file's test figures."""
    calibration = f"{card['test_ece']:.3f} → {card['test_ece_calibrated']:.3f} ({card['temperature']:.2f})"
    commit = (card["git_commit"] or "unknown")[:10] + ("+" if card["git_dirty"] else "")
    cells = [
        f"`{PREFIX}{name}`",
        f"`{card['recipe']}`, {card['epochs']} epochs, {card['fit_seconds'] / 60:.1f} min; `{commit}`",
        f"{percent(card['val_acc'])} ({percent(card['val_macro_acc'])})",
        interval(card, "test_acc"),
        interval(card, "test_macro_acc"),
        calibration,
        f"{card['params']:,}, {card['bytes'] / 1e6:.2f} MB",
    ]
    return "| " + " | ".join(cells) + " |"


def write_doc(registry: dict[str, dict[str, Any]]) -> None:
    machines = sorted({entry["card"]["machine"] for entry in registry.values()})
    lines = [
        "# Pretrained models",
        "",
        "Written by `scripts/pack_pretrained.py` (`--doc-only`: from the registry alone) from the runs of",
        "`scripts/train_pretrained.sh` and `python evaluate.py ckpt_path=pretrained:<name>` on each packed file.",
        "",
        "**Trained and tested on the stand-in EMNIST files** (smaller than the official splits, drawn from the",
        "official test pools): stand-in figures. Test intervals are 95% (Wilson; a bootstrap for macro",
        "accuracy). Each ships in the package as a weights-only checkpoint (float16 weights, normalisation,",
        "classes, temperature; no code), its sha256 in `emnist_lightning/models/pretrained_weights/registry.json`,",
        f"checked before every use. Machine: {'; '.join(machines)}; fit times shared its cores with other work.",
        "",
        "| model | recipe (`python train.py ...`), fit, commit | val acc (macro) | test acc | test macro acc "
        "| test ECE → after T (T) | parameters, file |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(card_row(name, entry["card"]) for name, entry in registry.items()),
        "",
    ]
    DOC.write_text("\n".join(lines))


def main() -> None:
    if sys.argv[1:] == ["--doc-only"]:
        write_doc(json.loads(REGISTRY_PATH.read_text()))
        print(f"wrote {DOC}")
        return
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "outputs" / "pretrained"
    splits = sys.argv[2:] or sorted(path.name for path in out_dir.iterdir() if (path / "metrics.json").is_file())
    registry = json.loads(REGISTRY_PATH.read_text()) if REGISTRY_PATH.is_file() else {}
    for split in splits:
        registry[split] = pack(out_dir / split)
        REGISTRY_PATH.write_text(json.dumps(registry, indent=2) + "\n")  # evaluate.py reads it
        registry[split]["card"] |= evaluate_packed(split, out_dir)
        REGISTRY_PATH.write_text(json.dumps(registry, indent=2) + "\n")
    write_doc(registry)
    print(f"wrote {REGISTRY_PATH} and {DOC}")


if __name__ == "__main__":
    main()
