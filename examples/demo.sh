#!/usr/bin/env bash
# demo.sh — the whole nnU-Net lifecycle on the CPU in a few minutes (make demo):
# a synthetic 2-channel dataset (nnp-make-example) -> verify -> plan (a CPU-sized
# planner variant) -> preprocess -> train fold 0 -> final validation -> find-best
# (postprocessing decision) -> predict the test set -> evaluate -> Dice table and
# PNG overlays.  It is pipelines/experiment.mk with small settings, so it resumes
# when interrupted and a second run only prints the results again.
#
#   make demo                         (sets NNP_BIN and NNP_TOOLS)
#   DEMO_EPOCHS=60 examples/demo.sh   longer training
#   DEMO_FRESH=1 examples/demo.sh     start again from nothing
#
# Output: examples/out/demo/ (ignored by git): raw/, preprocessed/, results/ (the nnU-Net
# folders), exp/ (stamps, logs, predictions, test_summary.json), overlays/*.png.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
NNP_BIN=$(abspath "${NNP_BIN:-$root/bin}")
NNP_TOOLS=$(abspath "${NNP_TOOLS:-$root/build/tools}")
DEMO=$(abspath "${DEMO_DIR:-$root/examples/out/demo}")
EPOCHS=${DEMO_EPOCHS:-40}
ITERS=${DEMO_ITERS:-25}
export PATH="$NNP_BIN:$PATH"
export nnUNet_raw=$DEMO/raw nnUNet_preprocessed=$DEMO/preprocessed nnUNet_results=$DEMO/results

die() { printf 'demo.sh: error: %s\n' "$1" >&2; exit "${2:-1}"; }
step() { printf '\n== %s\n' "$*"; }
for p in "$NNP_BIN/nnp" "$NNP_TOOLS/nnp-make-example"; do
	[ -x "$p" ] || die "'$p' is missing; run 'make' first" 2
done
command -v parallel >/dev/null || die "GNU parallel is missing (make deps installs it)" 2

start=$(date +%s)
[ "${DEMO_FRESH:-0}" = 1 ] && rm -rf -- "$DEMO"
mkdir -p "$DEMO"
ds=$nnUNet_raw/Dataset990_ExampleSpheres

step "1. a synthetic nnU-Net raw dataset: 8 training + 2 test cases, CT + T2 channels, organ + lesion labels"
if [ -f "$ds/dataset.json" ]; then
	echo "exists: $ds"
else
	"$NNP_TOOLS/nnp-make-example" -o "$ds"
fi

# A CPU-sized variant of nnU-Net's default planner: 16 base features, at most 128 (the
# planner attributes UNet_base_num_features / UNet_max_features_*; docs/planning.md).
# One fold of the 2d configuration, 40 epochs x 25 iterations instead of 1000 x 250.
exp=(make --no-print-directory -f "$root/pipelines/experiment.mk" DATASET=990 CONFIGS=2d FOLDS=0
	PLANS=nnUNetPlans_f16x128 PLAN_ARGS="--base-features 16 --max-features 128"
	TRAIN_ARGS="--epochs $EPOCHS --iters $ITERS --val-iters 5 --save-every 5"
	EXP="$DEMO/exp" NNP="$NNP_BIN/nnp")

step "2. the experiment: verify, plan, preprocess, train, validate, find-best, predict, evaluate"
echo "\$ make -f pipelines/experiment.mk DATASET=990 CONFIGS=2d FOLDS=0 PLANS=nnUNetPlans_f16x128 ..."
echo "  (training log: $DEMO/exp/logs/train_2d_fold_0.log)"
"${exp[@]}" all

step "3. Dice on the test set (labelsTs), after the postprocessing find-best chose"
"${exp[@]}" report
echo
sed -n '1,/^\*Best\*/p' "$DEMO/exp/find_best.txt" 2>/dev/null | sed 's/^/  cross-validation: /' || true

step "4. overlays: image | reference | prediction, slices with the most foreground"
mkdir -p "$DEMO/overlays"
nnp overlay --dataset-dir "$ds/imagesTs" --seg-dir "$DEMO/exp/predictions" --ref-dir "$ds/labelsTs" \
	-o "$DEMO/overlays/" --force
ls -1 "$DEMO/overlays/"*.png | sed 's/^/  /'

end=$(date +%s)
printf '\ndemo done in %d s. Look at the PNGs above; the trained model is in\n  %s\n' \
	$((end - start)) "$nnUNet_results/Dataset990_ExampleSpheres/nnUNetTrainer__nnUNetPlans_f16x128__2d"
printf 'Run it again: only the results are shown (make knows everything is done).\n'
