#!/bin/bash
# nnp predict — nnUNetv2_predict as a pipeline of nnp filters, per case:
#   nnp read CASE_0000... | nnp preprocess --no-mask | nnp infer | nnp export [| nnp postprocess --rules R] | nnp write
# cases fanned out with GNU parallel (--joblog), outputs renamed into place atomically.
set -euo pipefail
shopt -s nullglob
PROG=nnp-predict
VERSION=0.1.0
BIN=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
export PATH="$BIN:$PATH"

usage() {
	cat <<USAGE
$PROG — predict a folder of images with a trained nnU-Net model (like nnUNetv2_predict)

Usage:
  nnp predict -i INPUT_DIR -o OUTPUT_DIR -m MODEL_FOLDER [options]
  nnp predict -i INPUT_DIR -o OUTPUT_DIR -d DATASET -c CONFIGURATION [-tr T] [-p P] [options]

Options:
  -i DIR                 images CASE_0000<file_ending>, CASE_0001... (4-digit channel suffix)
  -o DIR                 output: CASE<file_ending> segmentations (+ CASE_probabilities),
                         dataset.json, plans.json, predict_args.json
  -m DIR                 an nnU-Net results folder (TRAINER__PLANS__CONFIG)
  -d D -c C              \$nnUNet_results/DatasetD.../TRAINER__PLANS__C (with -tr, -p)
  -tr T, -p P            trainer (nnUNetTrainer) and plans (nnUNetPlans) names
  -f F [F...]            folds (default 0 1 2 3 4)
  -chk, --checkpoint N   checkpoint file name (default checkpoint_final.pth)
  --step-size S          tile step (default 0.5)
  --disable-tta          no mirroring
  --save-probabilities   also write CASE_probabilities<file_ending> (float32, K channels)
  --postprocess RULES    apply a rule file (postprocessing.json of nnp determine-postprocessing)
                         to each segmentation (not to the probabilities, as in nnU-Net)
  --continue             skip cases whose output exists
  --fp16-compat          nnU-Net's float16 accumulation and export (bit-identical to nnU-Net)
  --precision P          fp32 (default) or bf16
  --device D             cpu (default), cuda, cuda:N
  -j, --jobs N           cases in parallel (default 1; each uses all cores / N threads)
  --num-parts N --part-id K   only cases K, K+N, K+2N, ... (split a run over machines)
  -h, --help             this help;  -V, --version

Exit status:
  0   success
  1   bad, missing or inconsistent input data (or a failed verification)
  2   usage error (unknown option, bad value, refused terminal I/O)
  3   I/O error writing output or a system error
  4   out of memory, or a size/memory limit would be exceeded
  70  internal error (a bug: please report it)
  141 killed by SIGPIPE (the reader of our output went away)
USAGE
}

die() { echo "$PROG: error: $*" >&2; exit "${2:-1}"; }
usage_die() { echo "$PROG: error: $*" >&2; echo "Try '$PROG --help' for more information." >&2; exit 2; }
info() { [ -n "${NNP_QUIET:-}" ] || echo "$PROG: $*" >&2; }

IN= OUT= MODEL= DATASET= CONFIG= TRAINER=nnUNetTrainer PLANS=nnUNetPlans CKPT= STEP= TTA=1
PROBS=0 CONT=0 FP16=0 PREC= DEVICE= JOBS=1 PARTS=1 PART=0 PP=
FOLDS=()
while [ $# -gt 0 ]; do
	case $1 in
	-h|--help) usage; exit 0 ;;
	-V|--version) echo "$PROG (nnpipe) $VERSION"; exit 0 ;;
	-q|--quiet) export NNP_QUIET=1 ;;
	-i) IN=${2:?}; shift ;;
	-o) OUT=${2:?}; shift ;;
	-m) MODEL=${2:?}; shift ;;
	-d) DATASET=${2:?}; shift ;;
	-c) CONFIG=${2:?}; shift ;;
	-tr|--trainer) TRAINER=${2:?}; shift ;;
	-p|--plans) PLANS=${2:?}; shift ;;
	-f) shift; while [ $# -gt 0 ] && [[ $1 =~ ^([0-9]+|all)$ ]]; do FOLDS+=("$1"); shift; done
	    [ ${#FOLDS[@]} -gt 0 ] || usage_die "-f needs fold numbers or 'all'"; continue ;;
	-chk|--checkpoint) CKPT=${2:?}; shift ;;
	--step-size|-step_size) STEP=${2:?}; shift ;;
	--disable-tta|--disable_tta) TTA=0 ;;
	--save-probabilities|--save_probabilities) PROBS=1 ;;
	--postprocess) PP=${2:?}; shift ;;
	--continue|--continue_prediction) CONT=1 ;;
	--fp16-compat) FP16=1 ;;
	--precision) PREC=${2:?}; shift ;;
	--device|-device) DEVICE=${2:?}; shift ;;
	-j|--jobs) JOBS=${2:?}; shift ;;
	--num-parts|-num_parts) PARTS=${2:?}; shift ;;
	--part-id|-part_id) PART=${2:?}; shift ;;
	*) usage_die "unknown option '$1'" ;;
	esac
	shift
done
[ -n "$IN" ] && [ -n "$OUT" ] || usage_die "give -i INPUT_DIR and -o OUTPUT_DIR"
[ -d "$IN" ] || die "input folder '$IN' does not exist"
if [ -n "$PP" ]; then # the rule file is checked before any case runs
	[ -f "$PP" ] || die "rule file '$PP' does not exist"
	nnp postprocess --rules "$PP" </dev/null >/dev/null || exit $?
fi
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || usage_die "-j needs a positive number, not '$JOBS'"
[[ $PARTS =~ ^[1-9][0-9]*$ && $PART =~ ^[0-9]+$ ]] && [ "$PART" -lt "$PARTS" ] ||
	usage_die "--part-id must be in [0, --num-parts)"
if [ -n "$MODEL" ]; then
	[ -z "$DATASET" ] || usage_die "give -m or -d/-c, not both"
elif [ -n "$DATASET" ] && [ -n "$CONFIG" ]; then
	[ -n "${nnUNet_results:-}" ] || usage_die "-d needs \$nnUNet_results (or give the folder with -m)"
	case $DATASET in
	*/*) ds=("$DATASET") ;;
	Dataset*) ds=("$nnUNet_results/$DATASET") ;;
	*[!0-9]*) usage_die "-d: want a dataset id, a Dataset<id>_<name> or a folder, not '$DATASET'" ;;
	*) ds=("$nnUNet_results"/Dataset"$(printf %03d "$((10#$DATASET))")"_*) ;;
	esac
	[ ${#ds[@]} -eq 1 ] && [ -d "${ds[0]}" ] || die "dataset '$DATASET' not found in \$nnUNet_results"
	MODEL=${ds[0]}/${TRAINER}__${PLANS}__${CONFIG}
else
	usage_die "give the model as -m FOLDER or -d DATASET -c CONFIGURATION"
fi
# private per-case folders and the joblog; one per run, so that --num-parts runs can share OUT
TMPD="$OUT/.nnp-tmp.$PART.$$"
mkdir -p "$TMPD"
trap 'rm -rf "$TMPD"' EXIT
if [ -f "$MODEL" ]; then # an nnpipe model file (nnp import-model): it carries plans and dataset.json
	MD="$TMPD/model"
	mkdir -p "$MD"
	nnp inspect-model --plans "$MODEL" >"$MD/plans.json" &&
		nnp inspect-model --dataset-json "$MODEL" >"$MD/dataset.json" || exit $?
	[ -n "$CONFIG" ] || CONFIG=$(nnp inspect-model "$MODEL" | sed -n 's/^configuration: "\(.*\)"$/\1/p')
else
	MD=$MODEL
fi
[ -f "$MD/plans.json" ] && [ -f "$MD/dataset.json" ] ||
	die "'$MODEL' is not a trained model folder (no plans.json/dataset.json)"
if [ -z "$CONFIG" ]; then
	base=$(basename "$(cd "$MODEL" && pwd)")
	if [[ $base == *__*__* ]]; then
		CONFIG=${base##*__}
	else # not named TRAINER__PLANS__CONFIG: the checkpoint knows
		ck=( "$MODEL"/fold_*/"${CKPT:-checkpoint_final.pth}" )
		[ -f "${ck[0]:-}" ] || die "'$MODEL': no fold_N/${CKPT:-checkpoint_final.pth}; give -c CONFIGURATION"
		CONFIG=$(nnp inspect-model "${ck[0]}" | sed -n 's/^configuration: "\(.*\)"$/\1/p')
		[ -n "$CONFIG" ] || die "'${ck[0]}': no configuration recorded; give -c CONFIGURATION"
	fi
fi

# cases: nnU-Net's rule (CASE_XXXX<file_ending>, grouped, byte order), each with the
# model's channels; the file ending from the first channel file's name
LIST=$(nnp cases --folder "$IN" --images "$MD/dataset.json") || exit $?
IDS=() NCH=0 ENDING=
while IFS=$'\t' read -r -a f; do
	IDS+=("${f[0]}")
	NCH=$(( ${#f[@]} - 2 ))
	[ -n "$ENDING" ] || { b=$(basename "${f[1]}"); ENDING=${b#"${f[0]}"_0000}; }
done <<<"$LIST"
SEL=()
for k in "${!IDS[@]}"; do
	[ $(( k % PARTS )) -eq "$PART" ] && SEL+=("${IDS[$k]}")
done

cp "$MD/dataset.json" "$OUT/dataset.json.tmp" && mv "$OUT/dataset.json.tmp" "$OUT/dataset.json"
cp "$MD/plans.json" "$OUT/plans.json.tmp" && mv "$OUT/plans.json.tmp" "$OUT/plans.json"
printf '{"model": "%s", "configuration": "%s", "folds": "%s", "tta": %s, "step_size": "%s", "fp16_compat": %s, "precision": "%s", "device": "%s"}\n' \
	"$MODEL" "$CONFIG" "${FOLDS[*]:-0 1 2 3 4}" "$TTA" "${STEP:-0.5}" "$FP16" "${PREC:-fp32}" "${DEVICE:-cpu}" \
	>"$OUT/predict_args.json"

INFER=(-m "$MODEL")
[ ${#FOLDS[@]} -gt 0 ] && INFER+=(-f "${FOLDS[@]}")
[ -n "$CKPT" ] && INFER+=(--checkpoint "$CKPT")
[ -n "$STEP" ] && INFER+=(--step-size "$STEP")
[ "$TTA" = 0 ] && INFER+=(--disable-tta)
[ "$FP16" = 1 ] && INFER+=(--fp16-compat)
[ -n "$PREC" ] && INFER+=(--precision "$PREC")
[ -n "$DEVICE" ] && INFER+=(--device "$DEVICE")
EXPORT=(-p "$MD/plans.json" -c "$CONFIG" --dataset-json "$MD/dataset.json")
[ "$PROBS" = 1 ] && EXPORT+=(--save-probabilities)
[ "$FP16" = 1 ] && EXPORT+=(--fp16-compat)
THREADS=$(( $(nproc) / JOBS )); [ "$THREADS" -ge 1 ] || THREADS=1

# the segmentation frames through the rule file (when given), then written
postprocess_write() {
	if [ -n "$PP" ]; then nnp postprocess --rules "$PP" | nnp write -o "$1"; else nnp write -o "$1"; fi
}

# one case: everything into a private folder, then renamed into place
predict_case() {
	local id=$1 tmp="$TMPD/$1" files=()
	if [ "$CONT" = 1 ] && [ -f "$OUT/$id$ENDING" ] && { [ "$PROBS" = 0 ] || [ -f "$OUT/${id}_probabilities$ENDING" ]; }; then
		info "$id: exists, skipped"
		return 0
	fi
	rm -rf "$tmp" && mkdir -p "$tmp"
	for ((c = 0; c < NCH; c++)); do files+=("$IN/${id}_$(printf %04d "$c")$ENDING"); done
	NNP_THREADS=$THREADS nnp read "${files[@]}" --case "$id" |
		NNP_THREADS=$THREADS nnp preprocess -p "$MD/plans.json" -c "$CONFIG" --no-mask |
		NNP_THREADS=$THREADS nnp infer "${INFER[@]}" |
		NNP_THREADS=$THREADS nnp export "${EXPORT[@]}" |
		postprocess_write "$tmp/" || { local rc=$?; rm -rf "$tmp"; return $rc; }
	[ "$PROBS" = 0 ] || mv "$tmp/${id}_probabilities$ENDING" "$OUT/${id}_probabilities$ENDING"
	mv "$tmp/${id}_seg$ENDING" "$OUT/$id$ENDING"
	rm -rf "$tmp"
	info "$id: done"
}
export -f predict_case postprocess_write info
export IN OUT MODEL MD CONFIG ENDING NCH PROBS CONT THREADS PROG TMPD PP
export INFER_S EXPORT_S
INFER_S=$(printf '%q ' "${INFER[@]}")
EXPORT_S=$(printf '%q ' "${EXPORT[@]}")

info "${#SEL[@]} case(s), model $MODEL ($CONFIG), $JOBS job(s) x $THREADS thread(s)"
if [ "$JOBS" = 1 ] || ! command -v parallel >/dev/null; then
	for id in "${SEL[@]}"; do predict_case "$id" || exit $?; done
else
	# GNU parallel: one job per case, stop at the first failure, joblog for the record
	printf '%s\n' "${SEL[@]}" | parallel --halt now,fail=1 -j "$JOBS" --joblog "$TMPD/joblog" \
		"eval INFER=(\$INFER_S); eval EXPORT=(\$EXPORT_S); predict_case {}"
fi
rm -rf "$TMPD"
