#!/usr/bin/env bash
# The speedrun's steps (docs/results.md, "Time to accuracy"): experiment=cnn_fast cut to 3 epochs and
# tested on shifted views (c0), then one change at a time, each kept if it validated better or as well in
# less time, 3 seeds a step; then one report over all of them. About 40 min on a 2-core CPU; run it alone:
#   EMNIST_DATA_DIR=... nohup scripts/speedrun_steps.sh > outputs/study/speedrun.log 2>&1 &
set -euo pipefail
out=${STUDY_DIR:-outputs/study}/speedrun
py=${PYTHON:-.venv/bin/python}
run() {
    local name=$1
    shift
    $py train.py -m experiment=cnn_fast trainer.max_epochs=3 test_time_shift=1 seed=1,2,3 callbacks=no_pictures \
        "$@" "hydra.sweep.dir=$out/$name"
}
run c0_ref
run c1_no_dropout model.conv_dropout=0.0 model.dropout=0.0
run c2_no_shift model.conv_dropout=0.0 model.dropout=0.0 augment=none
run c3_batch128 model.conv_dropout=0.0 model.dropout=0.0 augment=none data.batch_size=128
run c4_2_epochs model.conv_dropout=0.0 model.dropout=0.0 augment=none trainer.max_epochs=2
run c5_one_first_conv model.conv_dropout=0.0 model.dropout=0.0 augment=none "model.convs_per_block=[1,2,2]"
run c6_4_epochs model.conv_dropout=0.0 model.dropout=0.0 augment=none "model.convs_per_block=[1,2,2]" trainer.max_epochs=4
run c7_16_first_channels model.conv_dropout=0.0 model.dropout=0.0 augment=none "model.convs_per_block=[1,2,2]" \
    trainer.max_epochs=4 "model.channels=[16,64,128]"
$py -m emnist_lightning.cli.report "sweep_dir=$out" quiet=true
