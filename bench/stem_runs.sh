#!/bin/sh
# The README's "CNN stems" experiment (re-runnable): vitlab and bench/stem_ref.py (PyTorch) on one
# backbone and dataset, four recipes each: a new conv / mbconv stem trained with the head (the
# transformer frozen), the pretrained patch embedding with the head only, full fine-tuning.
#   [MODES="conv head"] bench/stem_runs.sh BACKBONE VITLAB_DATA TORCH_DATA EPOCHS BATCH LR [OUTDIR]
# e.g. bench/stem_runs.sh data/backbones/vitlab-fmnist-tiny \
#        fashion-mnist:classes=5-9,per-class=100,val-per-class=200 fmnist:5-9:100:200 10 32 1e-3
set -e
bb=$1; vdata=$2; tdata=$3; epochs=$4; batch=$5; lr=$6; out=${7:-/tmp/stem-runs}
cli=${VITLAB_CLI:-build/app/vitlab-cli}
mkdir -p "$out"
for mode in ${MODES:-conv mbconv head full}; do
  case $mode in
    conv|mbconv) args="--stem $mode --train-groups stem,head" ;;
    head) args="--unlock 1" ;;
    full) args="--unlock-schedule 0:all" ;;
  esac
  rm -rf "$out/run-$mode"
  start=$(date +%s.%N)
  acc=$(nice "$cli" train --backbone "$bb" --data "$vdata" --epochs "$epochs" --batch "$batch" \
          --lr "$lr" --seed 0 $args --out "$out/run-$mode" 2>/dev/null | sed -n 's/^val_acc=//p')
  end=$(date +%s.%N)
  echo "vitlab  mode=$mode val_acc=$acc wall_s=$(echo "$end - $start" | bc)"
  nice /usr/bin/python3 bench/stem_ref.py --backbone "$bb" --data "$tdata" --mode "$mode" \
    --epochs "$epochs" --batch "$batch" --lr "$lr" | sed 's/^/pytorch /'
done
