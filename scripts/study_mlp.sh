#!/usr/bin/env bash
# The MLP study (docs/results.md): every technique against the default MLP, the techniques whose verdict
# depends on the budget at four budgets, and the ladder from the default to experiment=mlp_best; 5 seeds
# each, then their reports. About 1.5 h on a 2-core CPU; run it in the background and again after an
# interruption (each sweep skips its finished jobs):
#   EMNIST_DATA_DIR=... nohup scripts/study_mlp.sh > outputs/study/study_mlp.log 2>&1 &
set -euo pipefail
out=${STUDY_DIR:-outputs/study}
py=${PYTHON:-.venv/bin/python}
$py train.py -m sweep=study_mlp "hydra.sweep.dir=$out/mlp"
$py -m emnist_lightning.cli.report "sweep_dir=$out/mlp" quiet=true
$py train.py -m sweep=study_mlp_budgets "hydra.sweep.dir=$out/mlp_budgets"
$py -m emnist_lightning.cli.report "sweep_dir=$out/mlp_budgets" budget_key=trainer.max_epochs quiet=true
$py train.py -m sweep=ladder_mlp "hydra.sweep.dir=$out/ladder_mlp"
$py -m emnist_lightning.cli.report "sweep_dir=$out/ladder_mlp" quiet=true
