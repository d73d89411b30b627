#!/usr/bin/env bash
# Train every method on digits for three seeds (the numbers in docs/methods.md), then
# print the table. About 20 minutes on 2 cores. Re-running resumes finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
ROOT=${ROOT:-results}  # the results root; runs go to $ROOT/methods/METHOD-seedSEED
for seed in 0 1 2; do
  for method in erm adversarial sgt asgt; do
    $BIN/limelight train --method "$method" --dataset digits --seed "$seed" \
      --storage "$ROOT" --out "methods/$method-seed$seed" > /dev/null
  done
  # LGR refines the ERM model of the same seed: 2 rounds of 10 epochs, LIME with 500
  # samples on the whole training set, the 20% least relevant superpixels flagged.
  $BIN/limelight train --method lgr --dataset digits --seed "$seed" --epochs 10 --rounds 2 \
    --lime-samples 500 --start-checkpoint "$ROOT/methods/erm-seed$seed/checkpoint.pt" \
    --storage "$ROOT" --out "methods/lgr-seed$seed" > /dev/null
done
$BIN/python scripts/method_table.py "$ROOT/methods"
