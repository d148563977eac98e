#!/usr/bin/env bash
# Re-runs every row of README.md's results tables and prints them as markdown: the exact
# command, the final validation accuracy (the val_acc= line) and the wall time. Runs one at a
# time (each uses both cores). Usage: scripts/results.sh [fmnist|ants|scenes|all] [OUTDIR]
# (scenes: the segmentation demo's rows, their val_miou= line)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
out=${2:-$(mktemp -d /tmp/vitlab-results-XXXXXX)}
cli=build/app/vitlab-cli
shared=${SHARED:-../shared}
mkdir -p "$out"

row () {   # row LABEL ARGS...
  local label=$1; shift
  local dir="$out/$(echo "$label" | tr -c 'a-z0-9\n' '-')"
  rm -rf "$dir"
  local t0=$(date +%s.%N)
  local acc
  acc=$("$cli" train "$@" --out "$dir" 2>/dev/null | sed -n "s/^${METRIC:-val_acc}=//p")
  local t1=$(date +%s.%N)
  printf '| %s | `vitlab-cli train %s` | %s | %.0f s |\n' "$label" "$*" "${acc:-failed}" \
    "$(echo "$t1 - $t0" | bc)"
}

if [ "$which" = fmnist ] || [ "$which" = all ]; then
  echo "| recipe | command | val acc | wall time |"
  echo "|---|---|---|---|"
  row "progressive (demo)" --preset demo
  row "from scratch, same epochs" --preset demo --init random
  row "from scratch, 3x epochs" --preset demo --init random --epochs 36
  row "linear probe" --preset demo --unlock 1
  row "unlock 3" --preset demo --unlock 3
  row "full fine-tune" --preset demo --unlock-schedule 0:all
fi
if [ "$which" = ants ] || [ "$which" = all ]; then
  bb=$shared/weights/vit-tiny-augreg-in1k
  data=$shared/datasets/hymenoptera
  echo
  echo "| recipe | command | val acc | wall time |"
  echo "|---|---|---|---|"
  row "linear probe (cached)" --backbone "$bb" --data "$data" --unlock 1 --cache-features --epochs 20 --lr 1e-3 --label-smoothing 0.1
  row "unlock 3 (last block)" --backbone "$bb" --data "$data" --unlock 3 --augment light --epochs 10 --lr 3e-4 --label-smoothing 0.1 --cache-features
  row "full fine-tune" --backbone "$bb" --data "$data" --unlock-schedule 0:all --augment light --epochs 10 --lr 1e-4 --label-smoothing 0.1
  row "progressive" --backbone "$bb" --data "$data" --unlock-schedule 0:1,3:3,6:all --augment light --epochs 10 --lr 3e-4 --label-smoothing 0.1 --cache-features
  row "from scratch, same epochs" --backbone "$bb" --data "$data" --init random --unlock-schedule 0:all --augment light --epochs 10 --lr 1e-3 --label-smoothing 0.1
fi
if [ "$which" = scenes ] || [ "$which" = all ]; then
  echo
  echo "| recipe | command | val mIoU | wall time |"
  echo "|---|---|---|---|"
  METRIC=val_miou row "progressive (the preset)" --preset scenes
  METRIC=val_miou row "linear probe" --preset scenes --unlock 1
  METRIC=val_miou row "full fine-tune" --preset scenes --unlock-schedule 0:all
  METRIC=val_miou row "from scratch, same recipe" --preset scenes --init random --unlock-schedule 0:all
fi
