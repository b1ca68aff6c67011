#!/bin/bash
# nnp plan-and-preprocess — nnUNetv2_plan_and_preprocess as a pipeline of nnp filters:
# verify -> fingerprint -> plan -> preprocess every configuration, cases fanned out
# with GNU parallel (memory-aware job count, --joblog resume).
set -euo pipefail
shopt -s nullglob
PROG=nnp-plan-and-preprocess
VERSION=0.1.0
BIN=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
export PATH="$BIN:$PATH"

usage() {
	cat <<USAGE
$PROG — nnU-Net's plan and preprocess, as composable nnp filters

Usage:
  nnp plan-and-preprocess -d DATASET [options]

Options:
  -d, --dataset D        raw dataset: folder, DatasetXXX_Name or id (\$nnUNet_raw)
  -c, --configurations C...  configurations to preprocess (default: 2d 3d_fullres 3d_lowres,
                         those that exist in the plans)
      --verify           run 'nnp verify' first and stop on errors
      --planner P        default | resenc | resenc-m | resenc-l | resenc-xl (see nnp plan --help)
      --gpu-memory GB    the planner's GPU memory target
      --base-features N, --max-features N, --max-features-2d N, --max-features-3d N
                         the planner's UNet_base_num_features / UNet_max_features_{2d,3d}
                         (see nnp plan --help); the plans are then named
                         <plans>_f<base>x<max> unless --plans-name is given
      --plans-name NAME  plans identifier (default: the planner's, as nnp plan)
  -j, --jobs N           cases in parallel (default: cores; lowered to fit free memory)
  -f, --force            recompute fingerprint and plans, preprocess every case again
  -h, --help             this help;  -V, --version

Writes \$nnUNet_preprocessed/DatasetXXX_Name/: dataset.json, dataset_fingerprint.json,
<plans>.json, gt_segmentations/, and <data_identifier>/CASE.nnp for every case (image,
label and class_locations frames: 'nnp read | nnp preprocess', the same bytes as
'nnp read | crop | normalize | resample | class-locations'). Each case file appears atomically; an interrupted run
resumes where it stopped: cases whose file exists are skipped (the GNU parallel joblog of
the last run is <data_identifier>/.joblog). <data_identifier> is the configuration's
data_identifier in the plans (<plans>_<config>; nnUNetPlans_<config> for 2d and
3d_fullres of the ResEnc planners).

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

DATASET='' CONFIGS=() VERIFY=0 PLANNER='' GPU='' JOBS='' FORCE=0 PNAME=''
BASEF='' MAXF='' MAXF2='' MAXF3=''
# feature_opt NAME VALUE: a positive integer (nnp plan checks the range)
feature_opt() { [[ $2 =~ ^[1-9][0-9]{0,5}$ ]] || usage_die "$1 needs a positive integer, not '$2'"; }
while [ $# -gt 0 ]; do
	case $1 in
	-h|--help) usage; exit 0 ;;
	-V|--version) echo "$PROG (nnpipe) $VERSION"; exit 0 ;;
	-q|--quiet) export NNP_QUIET=1 ;;
	-d|--dataset) [ $# -ge 2 ] || usage_die "$1 needs a value"; DATASET=$2; shift ;;
	-c|--configurations)
		shift
		while [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; do CONFIGS+=("$1"); shift; done
		continue ;;
	--verify) VERIFY=1 ;;
	--planner) [ $# -ge 2 ] || usage_die "$1 needs a value"; PLANNER=$2; shift ;;
	--gpu-memory) [ $# -ge 2 ] || usage_die "$1 needs a value"; GPU=$2; shift ;;
	--base-features) [ $# -ge 2 ] || usage_die "$1 needs a value"; feature_opt "$1" "$2"; BASEF=$2; shift ;;
	--max-features) [ $# -ge 2 ] || usage_die "$1 needs a value"; feature_opt "$1" "$2"; MAXF=$2; shift ;;
	--max-features-2d) [ $# -ge 2 ] || usage_die "$1 needs a value"; feature_opt "$1" "$2"; MAXF2=$2; shift ;;
	--max-features-3d) [ $# -ge 2 ] || usage_die "$1 needs a value"; feature_opt "$1" "$2"; MAXF3=$2; shift ;;
	--plans-name) [ $# -ge 2 ] || usage_die "$1 needs a value"; PNAME=$2; shift ;;
	-j|--jobs) [ $# -ge 2 ] || usage_die "$1 needs a value"; JOBS=$2; shift
		[[ $JOBS =~ ^[1-9][0-9]*$ ]] || usage_die "--jobs needs a positive integer, not '$JOBS'" ;;
	-f|--force) FORCE=1 ;;
	*) usage_die "unknown option or argument '$1'" ;;
	esac
	shift
done
[ -n "$DATASET" ] || usage_die "missing -d DATASET"
[ -n "${nnUNet_preprocessed:-}" ] || die "nnUNet_preprocessed is not set: export nnUNet_preprocessed=/path" 2
command -v parallel >/dev/null || die "GNU parallel not found: sudo apt-get install parallel" 2

# ---- resolve the raw dataset ----
if [ -d "$DATASET" ]; then
	RAW=$(cd "$DATASET" && pwd)
else
	[ -n "${nnUNet_raw:-}" ] || die "nnUNet_raw is not set: export nnUNet_raw=/path (or give the folder)" 2
	case $DATASET in
	Dataset*) RAW=$nnUNet_raw/$DATASET ;;
	*) [[ $DATASET =~ ^[0-9]+$ ]] || usage_die "'$DATASET' is neither a folder, DatasetXXX_Name nor an id"
	   m=("$nnUNet_raw"/Dataset"$(printf %03d "$((10#$DATASET))")"_*)
	   [ ${#m[@]} -eq 1 ] || die "dataset id $DATASET: ${#m[@]} matches in $nnUNet_raw"
	   RAW=${m[0]} ;;
	esac
fi
[ -f "$RAW/dataset.json" ] || die "'$RAW/dataset.json': no such file"
NAME=$(basename "$RAW")
PRE=$nnUNet_preprocessed/$NAME
mkdir -p "$PRE"

# ---- verify, fingerprint, plan ----
if [ $VERIFY = 1 ]; then
	info "verifying $NAME"
	nnp verify -q "$RAW" >&2 || die "verification failed: fix the dataset (see above)"
fi
fp_args=(-q "$RAW")
[ $FORCE = 1 ] && fp_args+=(-f)
info "fingerprint"
nnp fingerprint "${fp_args[@]}"
plan_args=(-q "$PRE")
[ -n "$PLANNER" ] && plan_args+=(--planner "$PLANNER")
[ -n "$GPU" ] && plan_args+=(--gpu-memory "$GPU")
[ -n "$BASEF" ] && plan_args+=(--base-features "$BASEF")
[ -n "$MAXF" ] && plan_args+=(--max-features "$MAXF")
[ -n "$MAXF2" ] && plan_args+=(--max-features-2d "$MAXF2")
[ -n "$MAXF3" ] && plan_args+=(--max-features-3d "$MAXF3")
# the plans name nnp plan would choose (nnp_planner_plans_name), passed to it explicitly
PLANS_NAME=nnUNetPlans
case $PLANNER in
resenc) PLANS_NAME=nnUNetResEncUNetPlans ;;
resenc-m) PLANS_NAME=nnUNetResEncUNetMPlans ;;
resenc-l) PLANS_NAME=nnUNetResEncUNetLPlans ;;
resenc-xl) PLANS_NAME=nnUNetResEncUNetXLPlans ;;
esac
fb=${BASEF:-32} f2=${MAXF2:-${MAXF:-512}} f3=${MAXF3:-${MAXF:-320}}
if [ "$fb $f2 $f3" != "32 512 320" ]; then
	if [ "$f2" = "$f3" ]; then PLANS_NAME+=_f${fb}x$f3; else PLANS_NAME+=_f${fb}x${f2}x$f3; fi
fi
[ -n "$PNAME" ] && PLANS_NAME=$PNAME
plan_args+=(--plans-name "$PLANS_NAME")
PLANS=$PRE/$PLANS_NAME.json
if [ $FORCE = 1 ] || [ ! -f "$PLANS" ]; then
	info "planning ($PLANS_NAME)"
	[ $FORCE = 1 ] && plan_args+=(--force)
	nnp plan "${plan_args[@]}"
else
	info "using existing $PLANS"
fi
[ -f "$PLANS" ] || die "the planner did not write '$PLANS' (check --planner)"

if [ ${#CONFIGS[@]} -eq 0 ]; then
	for c in 2d 3d_fullres 3d_lowres; do
		grep -q "\"$c\"" "$PLANS" && CONFIGS+=("$c")
	done
fi

# ---- gt_segmentations (nnU-Net keeps a copy of the training labels) ----
FE=$(sed -n 's/.*"file_ending": *"\([^"]*\)".*/\1/p' "$RAW/dataset.json" | head -1)
mkdir -p "$PRE/gt_segmentations"
for f in "$RAW"/labelsTr/*"$FE"; do
	t=$PRE/gt_segmentations/$(basename "$f")
	if [ $FORCE = 1 ] || [ ! -f "$t" ]; then
		cp "$f" "$t.tmp.$$" && mv "$t.tmp.$$" "$t"
	fi
done

# ---- memory-aware job count from the largest case ----
mapfile -t CASES < <(nnp cases "$RAW")
[ ${#CASES[@]} -gt 0 ] || die "'$RAW': no training cases"
jobs=${JOBS:-$(nproc)}
biggest=0
for c in "${CASES[@]}"; do
	n=$(nnp read --dataset "$RAW" --case "$c" --no-label 2>/dev/null | nnp info -H --json 2>/dev/null |
		head -1 | sed -n 's/.*"nbytes":\([0-9]*\).*/\1/p' || true)
	[ -n "$n" ] && [ "$n" -gt "$biggest" ] && biggest=$n
done
avail=$(( $(sed -n 's/^MemAvailable: *\([0-9]*\) kB/\1/p' /proc/meminfo) * 1024 ))
per_job=$(( biggest * 5 + 64 * 1024 * 1024 ))   # nnp preprocess: ~4x the input bytes (CT 512x512x200: 400 MB)
fit=$(( avail / per_job ))
[ "$fit" -ge 1 ] || die "one case needs about $((per_job >> 20)) MiB, only $((avail >> 20)) MiB are free" 4
[ "$fit" -lt "$jobs" ] && { info "lowering --jobs to $fit to fit $((avail >> 20)) MiB"; jobs=$fit; }

# data_identifier CONFIG: the configuration's data_identifier in the plans (nnU-Net's
# indent-4 layout: a configuration key at 8 spaces, its fields at 12), else <plans>_CONFIG
data_identifier() {
	local id
	id=$(awk -v c="$1" '
		/^    "configurations": \{/ { in_c = 1; next }
		in_c && /^    [^ ]/ { in_c = 0 }
		in_c && /^        "/ { cur = $1; gsub(/[":]/, "", cur) }
		in_c && cur == c && /^            "data_identifier": "/ {
			v = $0; sub(/^[^:]*: *"/, "", v); sub(/".*/, "", v); print v; exit
		}' "$PLANS")
	[[ $id =~ ^[A-Za-z0-9._-]+$ ]] || id=${PLANS_NAME}_$1
	printf '%s\n' "$id"
}

# ---- preprocess ----
for cfg in "${CONFIGS[@]}"; do
	OUT=$PRE/$(data_identifier "$cfg")
	mkdir -p "$OUT"
	[ $FORCE = 1 ] && rm -f "$OUT"/*.nnp "$OUT/.joblog"
	info "preprocessing $cfg: ${#CASES[@]} cases, $jobs at a time -> $OUT"
	export RAW PLANS cfg OUT
	printf '%s\n' "${CASES[@]}" | PARALLEL_SHELL=bash parallel --will-cite --halt now,fail=1 -j "$jobs" \
		--joblog "$OUT/.joblog" \
		'set -o pipefail; [ -f "$OUT/{}.nnp" ] && exit 0;
		 nnp read --dataset "$RAW" --case {} | nnp preprocess -p "$PLANS" -c "$cfg" >"$OUT/.{}.nnp.tmp" &&
		 mv "$OUT/.{}.nnp.tmp" "$OUT/{}.nnp" || { rm -f "$OUT/.{}.nnp.tmp"; exit 1; }' ||
		die "preprocessing $cfg failed (see above); rerun to resume"
done
info "done: $PRE"
