"""The sweep report: compare the jobs of a sweep (`emnist-report <sweep dir>`, cli/report.py).

Reads every job's metrics.json and .hydra/overrides.yaml under the sweep dir (jobs still running
are counted, not shown) and writes results.csv, results.md and PNG plots next to them. Jobs that differ
only in their seed are repeats of one configuration: configurations.csv summarises each (n, mean, sd,
interval) and compares it with the baseline (analysis/against_baseline.py), forest.png draws the comparison, and the
report warns when the runs differ in code, library versions or data (runs/provenance.py).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.override_parser.types import Override
from rich.console import Console
from rich.table import Table

from emnist_lightning.analysis.against_baseline import (
    COMPARISON_COLUMNS,
    SUMMARIZED,
    compare_with_baseline,
    summaries,
)
from emnist_lightning.analysis.statistics import holm, verdict
from emnist_lightning.atomic import write_atomically
from emnist_lightning.errors import ConfigError, UserError
from emnist_lightning.overrides import parse_overrides
from emnist_lightning.pictures import plots
from emnist_lightning.runs.provenance import differences
from emnist_lightning.runs.record import OVERRIDES_FILE, TRAINED_STATUSES, RunRecord, recorded_overrides

log = logging.getLogger(__name__)

SWEEP_DIR_HINT = "pass a sweep dir such as outputs/train/multiruns/<time>, or a folder of runs (outputs/train/runs)"
SEARCH_KEYS = ("search.storage", "search.study")
METRIC_COLUMNS = [
    "val_acc",
    "val_macro_acc",
    "val_loss",
    "test_acc",
    "test_macro_acc",
    "test_loss",
    "epochs",
    "fit_seconds",
    "params",
]


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every folder below `sweep_dir` that Hydra started a job in."""
    return sorted((p.parent.parent for p in sweep_dir.rglob(str(OVERRIDES_FILE))), key=job_sort_key)


def job_sort_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (sys.maxsize, str(path))


def read_overrides(job_dir: Path) -> dict[str, Any]:
    """{'optimizer': 'adam', 'model.dropout': 0.2, ...} from the job's command-line overrides; a search
    trial's number as 'trial' (where it reported to is the same for all trials)."""
    overrides = {
        override.key_or_group: table_value(override)
        for override in parse_overrides(recorded_overrides(job_dir))
        if not override.is_delete()
    }
    trial = overrides.pop("search.trial", None)
    for key in SEARCH_KEYS:
        overrides.pop(key, None)
    return overrides if trial is None else {"trial": trial, **overrides}


def number_or_none(value: Any, name: str) -> float | None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise TypeError(f"{name} is {value!r}, not a number")


def read_job(job_dir: Path) -> dict[str, Any] | None:
    """One row for a finished job, or None while it is still running. A job whose files are damaged is a
    row of its own (status `broken`, with what is wrong), and the report goes on."""
    try:
        record = RunRecord.read(job_dir)
        if record is None:
            return None
        row: dict[str, Any] = {"job": job_dir.name, **read_overrides(job_dir), "status": record.status}
        row.update({column: number_or_none(getattr(record, column), column) for column in METRIC_COLUMNS})
        row["error"] = record.error or ""
        row["history"] = list(record.history.get("val/acc", []))
        row["job_dir"], row["provenance"], row["split"] = job_dir, record.provenance, record.split
    except (OSError, ValueError, TypeError, AttributeError, KeyError, UserError) as err:
        log.warning("job %s is broken: %s", job_dir, err)
        reason = str(err).splitlines()[0] if str(err) else ""
        row = {
            "job": job_dir.name,
            "status": "broken",
            "error": f"unreadable job files ({type(err).__name__}: {reason})",
        }
        row |= {column: None for column in METRIC_COLUMNS} | {"history": [], "job_dir": job_dir}
        row |= {"provenance": {}, "split": None}
    return row


def varied_parameters(frame: pd.DataFrame) -> list[str]:
    """Override keys whose values differ between jobs: what the sweep compares."""
    reserved = {"job", "status", "error", "history", "job_dir", "provenance", "split", *METRIC_COLUMNS}
    candidates = [c for c in frame.columns if c not in reserved]
    # a key some jobs leave unset varies too: count "unset" as a value of its own
    varied = [c for c in candidates if frame[c].fillna("<unset>").astype(str).nunique() > 1]
    return varied or candidates


def collect(sweep_dir: Path) -> tuple[pd.DataFrame, list[str], int]:
    """The results table (best val accuracy first, failed jobs last), varied keys, running count."""
    rows, running = [], 0
    for job_dir in job_dirs(sweep_dir):
        row = read_job(job_dir)
        if row is None:
            running += 1
        else:
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame, [], running
    frame["failed"] = frame["status"] != "completed"
    frame = frame.sort_values(["failed", "val_acc"], ascending=[True, False], na_position="last")
    frame = frame.drop(columns="failed").reset_index(drop=True)
    return frame, varied_parameters(frame), running


def configuration_label(row: pd.Series, varied: list[str]) -> str:
    if "trial" in row.index:  # a search varies many values at once: its trials go by number
        return f"trial {row['trial']}"
    if not varied:  # single runs with the same overrides: their folders tell them apart
        return str(row["job"])
    # a job that leaves a varied key unset runs with the configured value: say so rather than "nan"
    set_keys = [key for key in varied if not pd.isna(row[key])]  # values are numbers or strings
    if len(varied) == 1:
        return str(row[varied[0]]) if set_keys else "unset"
    return ", ".join(f"{key.split('.')[-1]}={row[key]}" for key in set_keys) or "no overrides"


def table_columns(varied: list[str]) -> list[str]:
    return ["job", *varied, "status", *METRIC_COLUMNS, "error"]


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        if pd.isna(value):
            return ""
        if value and abs(value) < 1e-3:  # learning rates and coefficients
            return f"{value:.3g}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return "" if value is None else str(value)


def table_value(override: Override) -> Any:
    """An override's value for the table: a number as a number (searched values have many digits to
    shorten), anything else as the command line wrote it."""
    value = override.value()
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if is_number else override.get_value_element_as_str()


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(format_cell(v).replace("|", "/") for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *rows]) + "\n"


def print_table(frame: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column, overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(format_cell(v) for v in row))
    Console(width=200).print(table)


def write_plots(frame: pd.DataFrame, varied: list[str], sweep_dir: Path) -> list[Path]:
    trained = frame[frame["status"].isin(TRAINED_STATUSES)].copy()  # pruned trials: curves, no test
    if not (trained["status"] == "completed").any():
        return []
    repeats = [key for key in varied if key != "seed"]  # the seeds of a configuration are one bar, one colour
    trained["configuration"] = trained.apply(configuration_label, axis=1, varied=repeats if repeats else varied)
    done = trained[trained["status"] == "completed"]
    searched = "trial" in varied
    figures = {
        "test_accuracy.png": plots.accuracy_bars_figure(done, ["trial"] if searched else repeats or varied),
        "val_curves.png": plots.validation_curves_figure(trained),
    }
    if len(varied) == 2 and not searched and "seed" not in varied:  # seeds are repeats, not a parameter
        figures["accuracy_heatmap.png"] = plots.accuracy_heatmap_figure(done, *varied)
    paths = []
    for name, fig in figures.items():
        plots.save_figure(fig, sweep_dir / name)
        paths.append(sweep_dir / name)
    return paths


def configuration_name(row: pd.Series, keys: list[str]) -> str:
    """A configuration's name: its varied keys but the seed, as the job table labels them."""
    return configuration_label(row, keys) if keys else "all runs"


def percent(mean: float, sd: float | None = None, low: float | None = None, high: float | None = None) -> str:
    """'85.41 ± 0.16 [85.2, 85.6]' (percent), leaving out what is unknown."""
    text = f"{100 * mean:.2f}"
    if sd is not None and not pd.isna(sd):
        text += f" ± {100 * sd:.2f}"
    if low is not None and not pd.isna(low):
        text += f" [{100 * low:.2f}, {100 * high:.2f}]"
    return text


def study_table(summary: pd.DataFrame, compared: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """What a person reads: per configuration n, mean ± sd [95% interval] of each accuracy (percent), and
    the difference in test accuracy from the baseline with its interval, p-value (Holm) and verdict."""
    by_name = compared.set_index("configuration")
    rows = []
    for _, row in summary.iterrows():
        shown = {"configuration": row["configuration"], "n": int(row["n"])}
        for metric, title in zip(SUMMARIZED, ("val acc", "val macro acc", "test acc", "test macro acc"), strict=True):
            if f"{metric}_mean" in row and not pd.isna(row[f"{metric}_mean"]):
                shown[title] = percent(*(row[f"{metric}_{part}"] for part in ("mean", "sd", "low", "high")))
        if row["configuration"] == baseline:
            shown |= {"Δ test acc [95%]": "baseline", "test": "", "p (Holm)": "", "verdict": ""}
        else:
            other = by_name.loc[row["configuration"]]
            known = not pd.isna(other["difference"])
            shown |= {
                "Δ test acc [95%]": percent(other["difference"], None, other["low"], other["high"]) if known else "",
                "test": other["test"],
                "p (Holm)": f"{other['p_holm']:.3g}" if known else "",
                "verdict": other["verdict"] if known else "",
            }
        rows.append(shown)
    return pd.DataFrame(rows)


def completed_configurations(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The completed jobs in the sweep's order, each named by its configuration (`keys`' values)."""
    done = frame[frame["status"] == "completed"].copy()
    done = done.sort_values("job_dir", key=lambda paths: paths.map(job_sort_key))
    done["configuration"] = done.apply(configuration_name, axis=1, keys=keys)
    if "seed" not in done.columns:
        done["seed"] = None
    return done


def study(
    frame: pd.DataFrame, varied: list[str], sweep_dir: Path, baseline: str | None
) -> tuple[pd.DataFrame, str, list[str]]:
    """The configurations of the completed jobs compared with `baseline` (default: the sweep's first); writes
    configurations.csv and forest.png. Returns the table to show, the baseline's name and the files written."""
    done = completed_configurations(frame, [key for key in varied if key not in ("seed", "trial")])
    baseline = str(baseline) if baseline is not None else str(done["configuration"].iloc[0])
    try:
        compared = compare_with_baseline(done, baseline)
    except ValueError as err:
        raise ConfigError(f"{err}; name one with baseline=") from err
    table = study_table(summaries(done), compared, baseline)
    write_atomically(sweep_dir / "configurations.csv", table.to_csv(index=False))
    written = ["configurations.csv"]
    if compared["difference"].notna().any():
        plots.save_figure(plots.forest_figure(compared, baseline), sweep_dir / "forest.png")
        written.append("forest.png")
    return table, baseline, written


def budget_study(
    frame: pd.DataFrame, varied: list[str], sweep_dir: Path, budget_key: str, baseline: str | None
) -> tuple[pd.DataFrame, str, list[str]]:
    """Every configuration against the baseline at the same value of `budget_key` (e.g. trainer.max_epochs),
    paired over seeds, Holm-corrected over all budgets together; writes budgets.csv and budgets.png."""
    if budget_key not in varied:
        raise ConfigError(f"budget_key={budget_key} is not a key the sweep varies ({', '.join(varied)})")
    done = completed_configurations(frame, [key for key in varied if key not in ("seed", "trial", budget_key)])
    baseline = str(baseline) if baseline is not None else str(done["configuration"].iloc[0])
    parts = []
    for budget, jobs in done.groupby(budget_key, sort=True):
        try:
            parts.append(compare_with_baseline(jobs, baseline).assign(budget=budget))
        except ValueError as err:
            raise ConfigError(f"{err} at {budget_key}={budget}; name one with baseline=") from err
    compared = holm_over_all(pd.concat(parts, ignore_index=True))
    table = compared[["budget", *COMPARISON_COLUMNS]].rename(columns={"budget": budget_key})
    write_atomically(sweep_dir / "budgets.csv", table.to_csv(index=False))
    plots.save_figure(plots.budget_figure(compared, baseline, budget_key), sweep_dir / "budgets.png")
    return table, baseline, ["budgets.csv", "budgets.png"]


def holm_over_all(compared: pd.DataFrame) -> pd.DataFrame:
    """The comparisons' p-values corrected together by Holm's method, and their verdicts."""
    tested = compared["p_value"].notna()
    compared.loc[tested, "p_holm"] = holm(compared.loc[tested, "p_value"].tolist())
    compared.loc[tested, "verdict"] = [
        verdict(difference, p_value)
        for difference, p_value in zip(compared.loc[tested, "difference"], compared.loc[tested, "p_holm"], strict=True)
    ]
    return compared


def provenance_warnings(frame: pd.DataFrame) -> list[str]:
    records = {row["job"]: row["provenance"] for _, row in frame.iterrows() if row["status"] == "completed"}
    recorded = {job: values for job, values in records.items() if values}
    return differences(recorded) if len(recorded) > 1 else []


def report(
    sweep_dir: Path, quiet: bool = False, baseline: str | None = None, budget_key: str | None = None
) -> pd.DataFrame:
    """Write results.csv, results.md and plots into `sweep_dir`, and, with two or more configurations, the
    comparison of configurations (at each value of `budget_key` when given); return the table of jobs."""
    frame, varied, running = collect(sweep_dir)
    if frame.empty:
        raise ConfigError(f"no finished jobs under '{sweep_dir}' ({running} running); {SWEEP_DIR_HINT}")
    table = frame[table_columns(varied)]
    write_atomically(sweep_dir / "results.csv", table.to_csv(index=False))
    title = f"{sweep_dir}: {len(frame)} finished jobs" + (f", {running} still running" if running else "")
    text = f"# {title}\n\nSorted by validation accuracy.\n\n{markdown_table(table)}"
    warnings = provenance_warnings(frame)
    completed = frame[frame["status"] == "completed"]
    comparable = "trial" not in varied and len(completed) > 1
    configurations = study(frame, varied, sweep_dir, baseline) if comparable and not budget_key else None
    if configurations is not None:
        text += (
            f"\n## Configurations against the baseline ({configurations[1]})\n\nPercent; mean ± sd over seeds "
            "[95% interval]. Δ: paired t over seeds, or McNemar's exact test for single runs; p-values corrected "
            f"by Holm's method.\n\n{markdown_table(configurations[0])}"
        )
    if budget_key and comparable:
        configurations = budget_study(frame, varied, sweep_dir, budget_key, baseline)
        text += (
            f"\n## Against the baseline ({configurations[1]}) at each {budget_key}\n\nDifferences in test accuracy "
            "(fractions); paired t over seeds; p-values corrected together by Holm's method."
            f"\n\n{markdown_table(configurations[0])}"
        )
    if warnings:
        text += "\n" + "".join(f"**Warning:** {line}\n" for line in warnings)
    write_atomically(sweep_dir / "results.md", text)
    pictures = write_plots(frame, varied, sweep_dir)
    if not quiet:
        print_table(table.drop(columns="error") if not table["error"].astype(bool).any() else table, title)
        if configurations is not None:
            print_table(configurations[0], f"configurations against the baseline ({configurations[1]})")
        for line in warnings:
            print(f"warning: {line}")
        written = ["results.md", *(configurations[2] if configurations else []), *(p.name for p in pictures)]
        print(f"wrote {sweep_dir / 'results.csv'}, " + ", ".join(written))
    return table
