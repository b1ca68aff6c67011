#!/usr/bin/env bash
# run-example.sh — the first nnpipe demo: make a small nnU-Net raw dataset,
# list its cases, look at one, copy every case through a frame pipe
# (nnp read | nnp write) in parallel, and check that the copies are exact.
#
#   make example                       (sets NNP_BIN and NNP_TOOLS)
#   examples/run-example.sh            (defaults: bin/ and build/tools/ of this repo)
#   STRICT=0 examples/run-example.sh   accept copies whose values match but stored bytes differ
#
# Output goes to examples/out/ (ignored by git).  Exit status: 0 when every
# copy matches, 1 on a mismatch, 2 when the programs are missing, else the
# status of the step that failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

# Relative NNP_BIN/NNP_TOOLS are taken from the caller's directory.
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
NNP_BIN=$(abspath "${NNP_BIN:-$root/bin}")
NNP_TOOLS=$(abspath "${NNP_TOOLS:-$root/build/tools}")
STRICT=${STRICT:-1}
cd "$root"

nnp=$NNP_BIN/nnp
make_example=$NNP_TOOLS/nnp-make-example
ds=examples/out/Dataset990_ExampleSpheres
copy=examples/out/copy

die() { printf 'run-example.sh: error: %s\n' "$1" >&2; exit "${2:-1}"; }
step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; }

for p in "$nnp" "$make_example"; do
	[ -x "$p" ] || die "'$p' is missing; run 'make' first" 2
done

# ---- 1. the dataset ----
step "1. make a synthetic nnU-Net raw dataset"
rm -rf -- "$ds" "$copy"
show "nnp-make-example -o $ds"
"$make_example" -o "$ds"
for d in imagesTr labelsTr imagesTs labelsTs; do
	printf '%s: %s files  ' "$d" "$(find "$ds/$d" -name '*.nii.gz' | wc -l)"
done
printf '+ dataset.json\n'

# ---- 2. its cases ----
step "2. list the cases"
show "nnp cases $ds"
tr_cases=$("$nnp" cases "$ds")
ts_cases=$("$nnp" cases --split Ts "$ds")
[ -n "$tr_cases" ] || die "no training cases listed"
echo "$tr_cases" | paste -sd" "
echo "(test cases, --split Ts: $(echo "$ts_cases" | paste -sd" "))"

# ---- 3. one case ----
first=${tr_cases%%$'\n'*}
step "3. read one case into a frame stream and summarise it"
show "nnp read --dataset $ds --case $first | nnp info"
"$nnp" read --dataset "$ds" --case "$first" | "$nnp" info

# ---- 4. copy every case ----
step "4. copy every case: one 'nnp read | nnp write' pipe per case"
mkdir -p "$copy"
cases_of() { if [ "$1" = Tr ]; then echo "$tr_cases"; else echo "$ts_cases"; fi; }
have_parallel=0
command -v parallel >/dev/null 2>&1 && have_parallel=1
[ $have_parallel = 1 ] || echo "note: GNU parallel is not installed; copying one case at a time"
for split in Tr Ts; do
	cases=$(cases_of $split)
	[ -n "$cases" ] || continue
	if [ $have_parallel = 1 ]; then
		show "parallel --halt now,fail=1 \"nnp read --dataset $ds --split $split --case {} |" \
			"nnp write -o $copy/\" ::: \$(nnp cases --split $split $ds)"
		cmd=$(printf 'set -o pipefail; %q read --dataset %q --split %s --case {} | %q write -o %q/' \
			"$nnp" "$ds" "$split" "$nnp" "$copy")
		# shellcheck disable=SC2086 # the ids are words
		PARALLEL_SHELL=bash parallel --halt now,fail=1 "$cmd" ::: $cases
	else
		for c in $cases; do
			show "nnp read --dataset $ds --split $split --case $c | nnp write -o $copy/"
			"$nnp" read --dataset "$ds" --split "$split" --case "$c" | "$nnp" write -o "$copy/"
		done
	fi
done
echo "($(find "$copy" -type f | wc -l) files in $copy)"

# ---- 5. verify ----
step "5. verify each copy: gzip -dc COPY | cmp - <(gzip -dc ORIGINAL) (header + voxel bytes)"
# Shape, spacing, affine and per-channel min/max/mean of a file (not its dtype).
values() {
	"$nnp" read "$1" | "$nnp" info --json | sed -e 's/"dtype":"[^"]*",//' -e 's/"nbytes":[0-9]*,//'
	"$nnp" read "$1" | "$nnp" info --header-only | grep -E '^ +(affine)? +\['
}
header_field() {  # FILE KEY -> a scalar or array field of nnp info --json --header-only
	"$nnp" read "$1" | "$nnp" info --json --header-only |
		sed -n "s/.*\"$2\":\(\"[^\"]*\"\|\[[^]]*\]\).*/\1/p" | tr -d '"[]'
}
notes=()
# check ORIG COPY: sets r to ok, ok* (same values and geometry, other bytes) or FAIL
check() {
	local name=${2#"$copy/"}
	if [ ! -f "$2" ]; then
		r=FAIL
		notes+=("$name: missing")
	elif cmp -s <(gzip -dc -- "$1") <(gzip -dc -- "$2"); then
		r=ok
	elif [ "$(values "$1")" = "$(values "$2")" ]; then
		r='ok*'
		notes+=("$name: same voxels and geometry, other bytes (dtype $(header_field "$1" dtype) -> $(header_field "$2" dtype))")
	else
		r=FAIL
		notes+=("$name: voxel values or geometry differ from the original")
	fi
}
# Fold r into s: FAIL beats ok*, which beats ok.
fold() { case "$s,$r" in FAIL,* | *,FAIL) s=FAIL ;; 'ok*',* | *,'ok*') s='ok*' ;; *) s=ok ;; esac; }

fails=0 soft=0 n=0
printf '%-8s %-5s %-12s %-6s %s\n' case split 'shape z,y,x' image label
for split in Tr Ts; do
	for c in $(cases_of $split); do
		s=ok
		for f in "$ds/images$split/$c"_[0-9][0-9][0-9][0-9].nii.gz; do
			check "$f" "$copy/${f##*/}"
			fold
		done
		img=$s
		s=ok
		check "$ds/labels$split/$c.nii.gz" "$copy/$c.nii.gz"
		fold
		lab=$s
		shape=$(header_field "$ds/images$split/${c}_0000.nii.gz" shape | cut -d, -f2- | tr , x)
		printf '%-8s %-5s %-12s %-6s %s\n' "$c" "$split" "$shape" "$img" "$lab"
		n=$((n + 1))
		case "$img $lab" in *FAIL*) fails=$((fails + 1)) ;; *'ok*'*) soft=$((soft + 1)) ;; esac
	done
done
for m in "${notes[@]+"${notes[@]}"}"; do
	echo "  note: $m"
done

echo
if [ $fails -gt 0 ] || { [ "$STRICT" = 1 ] && [ $soft -gt 0 ]; }; then
	echo "example FAILED: $((fails + soft)) of $n cases differ ($soft only in the stored bytes)"
	exit 1
elif [ $soft -gt 0 ]; then
	echo "example ok: $n cases copied; $soft have identical voxels and geometry but other" \
		"stored bytes (ok*, see the notes; STRICT=1 fails on these)"
else
	echo "example ok: $n cases copied, every file identical to its original after decompression"
fi
