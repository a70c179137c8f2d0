#!/usr/bin/env bash
# A family's study (docs/results.md): every technique against the family's baseline, 5 seeds each; for the
# MLP also the techniques whose verdict depends on the budget, at four budgets; then the ladder from the
# default to the best preset; each sweep followed by its report. The MLP's takes about 1.5 h on a 2-core
# CPU (bf16), the CNN's, in float32, about 8 h then its ladder about 8 more (2-core AVX2 CPU). Run it in
# the background and again after an interruption: each sweep skips its finished jobs and continues a
# stopped one.
#   EMNIST_DATA_DIR=... nohup scripts/study.sh cnn > outputs/study/study_cnn.log 2>&1 &
# STUDY_RECORDS=docs/study: each sweep first restores the jobs kept there (<sweep folder>.jsonl) and, once
# done, keeps its own (scripts/study_records.py), so a study continues on a machine that lacks its outputs/.
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:-}
if [[ ! -f conf/sweep/study_$family.yaml ]]; then
    echo "scripts/study.sh: no study for family '$family'; pass mlp or cnn (conf/sweep/study_<family>.yaml)" >&2
    exit 2
fi
out=${STUDY_DIR:-outputs/study}
py=${PYTHON:-.venv/bin/python}
records=${STUDY_RECORDS:-}

sweep_and_report() {  # sweep config, folder under $out, extra report options
    if [[ -n $records && -f $records/$2.jsonl ]]; then
        $py scripts/study_records.py restore "$records/$2.jsonl" "$out/$2"
    fi
    local status=0
    $py train.py -m "sweep=$1" "hydra.sweep.dir=$out/$2" || status=$?
    if [[ -n $records ]]; then  # what finished is kept, also when the sweep was stopped
        $py scripts/study_records.py keep "$out/$2" "$records/$2.jsonl"
    fi
    if ((status != 0)); then exit "$status"; fi
    $py -m emnist_lightning.cli.report "sweep_dir=$out/$2" quiet=true "${@:3}"
}

sweep_and_report "study_$family" "$family"
if [[ -f conf/sweep/study_${family}_budgets.yaml ]]; then
    sweep_and_report "study_${family}_budgets" "${family}_budgets" budget_key=trainer.max_epochs
fi
sweep_and_report "ladder_$family" "ladder_$family"
