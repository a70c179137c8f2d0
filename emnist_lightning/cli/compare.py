"""`emnist-compare <run A> <run B>` (or `python -m emnist_lightning.cli.compare first=A second=B`): two runs
compared image by image on their test predictions (conf/compare.yaml, analysis/two_runs.py)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from emnist_lightning.analysis.two_runs import compare_runs
from emnist_lightning.errors import ConfigError
from emnist_lightning.runs.context import RunContext
from emnist_lightning.runs.task import run_entry_point


def compare(cfg: DictConfig, context: RunContext) -> None:
    if not cfg.get("first") or not cfg.get("second"):
        raise ConfigError("pass two run folders: emnist-compare <run A> <run B>")
    print("\n".join(compare_runs(Path(cfg.first), Path(cfg.second), context.output_dir)))


def run_arguments(arguments: list[str]) -> list[str]:
    """Two bare first arguments are the runs."""
    bare = [argument for argument in arguments[:2] if "=" not in argument and not argument.startswith("-")]
    named = [f"{key}={value}" for key, value in zip(("first", "second"), bare, strict=False)]
    return [*named, *arguments[len(bare) :]]


def main() -> None:
    run_entry_point("compare", compare, prepare_arguments=run_arguments)


if __name__ == "__main__":
    main()
