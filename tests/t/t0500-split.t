#!/bin/bash
# t0500-split.t — nnp-split writes splits_final.json byte-identical to
# nnU-Net's trainer (tests/fixtures/Dataset90*/splits_final.json, made by
# nnU-Net 2.8.1), keeps existing files, copies a raw dataset's splits file
# like the planner, prints single folds, and fails clearly on too few cases.
# Raw datasets are built from empty files (nnp split only lists names).
. "$(dirname "$0")/lib.sh"
[ -x "$NNP_BIN/nnp-split" ] || bail_out "$NNP_BIN/nnp-split is not built (run make)"

RAW=$(t_tmpdir)
PP=$(t_tmpdir)
unset nnUNet_raw nnUNet_preprocessed nnUNet_results
export nnUNet_raw="$RAW" nnUNet_preprocessed="$PP"
FX901="$T_FIXTURES/Dataset901_Spheres"
FX903="$T_FIXTURES/Dataset903_MultiChannel"

# mkraw NAME DATASET_JSON CASE...: a raw dataset of empty files.
mkraw() {
	local d="$RAW/$1" js=$2 nch c i
	shift 2
	mkdir -p "$d/imagesTr" "$d/labelsTr"
	cp "$js" "$d/dataset.json"
	nch=$("$PYTHON" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["channel_names"]))' "$js")
	for c in "$@"; do
		for ((i = 0; i < nch; i++)); do
			: >"$d/imagesTr/${c}_$(printf %04d "$i").nii.gz"
		done
		: >"$d/labelsTr/$c.nii.gz"
	done
}

# fixture_ids FILE: the case ids named in a splits file, sorted.
fixture_ids() {
	"$PYTHON" -c 'import json,sys
s = json.load(open(sys.argv[1]))
print(" ".join(sorted(set(s[0]["train"] + s[0]["val"]))))' "$1"
}

# mkpp NAME: a preprocessed folder holding only dataset.json.
mkpp() {
	mkdir -p "$PP/$1"
	cp "$RAW/$1/dataset.json" "$PP/$1/dataset.json"
}

# shellcheck disable=SC2046
mkraw Dataset901_Spheres "$FX901/dataset.json" $(fixture_ids "$FX901/splits_final.json")
# shellcheck disable=SC2046
mkraw Dataset903_MultiChannel "$FX903/dataset.json" $(fixture_ids "$FX903/splits_final.json")
mkpp Dataset901_Spheres
mkpp Dataset903_MultiChannel

test_plan 24

test_expect_success 'Dataset901 (12 cases): byte-identical to nnU-Net' '
	t_code 0 nnp-split "$PP/Dataset901_Spheres" &&
	t_same_file "$FX901/splits_final.json" "$PP/Dataset901_Spheres/splits_final.json" &&
	t_stderr_empty && check_no_tmp "$PP"
'

test_expect_success 'Dataset903 (10 cases) by id in $nnUNet_preprocessed: byte-identical' '
	t_code 0 nnp-split -d 903 &&
	t_same_file "$FX903/splits_final.json" "$PP/Dataset903_MultiChannel/splits_final.json"
'

test_expect_success 'informational message names the file, the folds and where the ids came from' '
	rm "$PP/Dataset903_MultiChannel/splits_final.json" &&
	NNP_QUIET= t_code 0 nnp-split -d Dataset903_MultiChannel &&
	grep -q "wrote .*splits_final.json.*5 folds over 10 cases" stderr &&
	grep -qF "$RAW/Dataset903_MultiChannel" stderr
'

test_expect_success 'an existing splits_final.json is kept: "using existing", exit 0' '
	f="$PP/Dataset901_Spheres/splits_final.json" &&
	printf "[{\"train\": [\"sph_000\"], \"val\": [\"sph_001\"]}]" >"$f" &&
	cp "$f" before &&
	NNP_QUIET= t_code 0 nnp-split "$PP/Dataset901_Spheres" &&
	grep -q "using existing" stderr && t_same_file before "$f"
'

test_expect_success '--force recreates it (byte-identical again)' '
	t_code 0 nnp-split --force "$PP/Dataset901_Spheres" &&
	t_same_file "$FX901/splits_final.json" "$PP/Dataset901_Spheres/splits_final.json" &&
	check_no_tmp "$PP"
'

test_expect_success '--print writes nothing and prints the file plus a newline' '
	rm "$PP/Dataset901_Spheres/splits_final.json" &&
	t_code 0 nnp-split --print -d 901 &&
	t_no_file "$PP/Dataset901_Spheres/splits_final.json" &&
	{ cat "$FX901/splits_final.json"; echo; } >want && t_same_file want stdout
'

test_expect_success '-o FILE writes elsewhere; -o - is standard output' '
	t_code 0 nnp-split -d 901 -o elsewhere.json &&
	t_same_file "$FX901/splits_final.json" elsewhere.json &&
	t_no_file "$PP/Dataset901_Spheres/splits_final.json" &&
	t_code 0 nnp-split -d 901 -o - && t_same_file want stdout
'

test_expect_success 'the nnp front end runs split' '
	if [ -x "$NNP_BIN/nnp" ]; then
		t_code 0 nnp split -d 901 --print && t_same_file want stdout
	fi
'

test_expect_success 'ids from preprocessed data files (CASE.b2nd, not CASE_seg.b2nd): verified example' '
	d="$PP/Dataset904_Pre" &&
	mkdir -p "$d/nnUNetPlans_3d_fullres" "$d/gt_segmentations" &&
	for i in 0 1 2 3 4 5 6 7 8 9; do
		: >"$d/nnUNetPlans_3d_fullres/case_00$i.b2nd"
		: >"$d/nnUNetPlans_3d_fullres/case_00${i}_seg.b2nd"
		: >"$d/nnUNetPlans_3d_fullres/case_00$i.pkl"
		: >"$d/gt_segmentations/case_00$i.nii.gz"
	done &&
	t_code 0 nnp-split "$d" &&
	"$PYTHON" -c "
import json
s = json.load(open(\"$d/splits_final.json\"))
want = [[0, 7], [3, 9], [4, 6], [1, 8], [2, 5]]
assert [f[\"val\"] for f in s] == [[\"case_00%d\" % i for i in w] for w in want], s
for f in s:
    assert sorted(f[\"train\"] + f[\"val\"]) == [\"case_00%d\" % i for i in range(10)], f
    assert f[\"train\"] == sorted(f[\"train\"]), f
"
'

test_expect_success 'data folders with different cases: error naming both; --data picks one' '
	d="$PP/Dataset904_Pre" && rm "$d/splits_final.json" &&
	mkdir -p "$d/nnUNetPlans_2d" && : >"$d/nnUNetPlans_2d/case_000.npz" &&
	t_code 1 nnp-split "$d" &&
	t_err_line nnp-split nnUNetPlans_2d nnUNetPlans_3d_fullres --data &&
	t_no_file "$d/splits_final.json" &&
	t_code 0 nnp-split "$d" --data nnUNetPlans_3d_fullres &&
	test "$("$PYTHON" -c "import json; print(len(json.load(open(\"$d/splits_final.json\"))))")" = 5
'

test_expect_success 'fewer cases than folds: exit 1 with the counts, nothing written' '
	mkraw Dataset905_Few "$FX901/dataset.json" a b c && mkpp Dataset905_Few &&
	t_code 1 nnp-split -d 905 &&
	t_err_line nnp-split "3 cases" "5 folds" Dataset905_Few &&
	t_no_file "$PP/Dataset905_Few/splits_final.json" && check_no_tmp "$PP"
'

test_expect_success '--folds 3 splits 3 cases into 3 folds of one' '
	t_code 0 nnp-split -d 905 --folds 3 &&
	"$PYTHON" -c "
import json
s = json.load(open(\"$PP/Dataset905_Few/splits_final.json\"))
assert len(s) == 3 and sorted(v for f in s for v in f[\"val\"]) == [\"a\", \"b\", \"c\"], s
"
'

test_expect_success 'a splits_final.json in the raw dataset is copied byte for byte' '
	mkraw Dataset906_Own "$FX901/dataset.json" a b c d e f && mkpp Dataset906_Own &&
	printf "[\n  {\"train\": [\"a\", \"b\"], \"val\": [\"c\"]},\n  {\"train\": [\"c\"], \"val\": [\"d\", \"e\", \"f\"]}\n]\n" \
		>"$RAW/Dataset906_Own/splits_final.json" &&
	NNP_QUIET= t_code 0 nnp-split -d 906 &&
	grep -q "copied" stderr &&
	t_same_file "$RAW/Dataset906_Own/splits_final.json" "$PP/Dataset906_Own/splits_final.json"
'

test_expect_success 'raw and existing splits that agree (as sets): kept, exit 0' '
	printf "[{\"val\": [\"c\"], \"train\": [\"b\", \"a\"]}, {\"train\": [\"c\"], \"val\": [\"f\", \"e\", \"d\"]}, {\"train\": [\"a\"], \"val\": [\"b\"]}]" \
		>"$PP/Dataset906_Own/splits_final.json" &&
	t_code 0 nnp-split -d 906
'

test_expect_success 'raw and existing splits that differ: exit 1 naming both and the fold' '
	printf "[{\"train\": [\"a\"], \"val\": [\"c\"]}, {\"train\": [\"c\"], \"val\": [\"d\", \"e\", \"f\"]}]" \
		>"$PP/Dataset906_Own/splits_final.json" &&
	t_code 1 nnp-split -d 906 &&
	t_err_line nnp-split "$RAW/Dataset906_Own/splits_final.json" "$PP/Dataset906_Own/splits_final.json" "fold 0"
'

test_expect_success 'a raw splits file naming an unknown case: exit 1, nothing copied' '
	rm "$PP/Dataset906_Own/splits_final.json" &&
	printf "[{\"train\": [\"a\"], \"val\": [\"nope\"]}]" >"$RAW/Dataset906_Own/splits_final.json" &&
	t_code 1 nnp-split -d 906 &&
	t_err_line nnp-split "$RAW/Dataset906_Own/splits_final.json" "nope" &&
	t_no_file "$PP/Dataset906_Own/splits_final.json"
'

test_expect_success 'a broken existing splits file: exit 1 naming it and --force' '
	printf "[{\"train\": [\"a\"]" >"$PP/Dataset905_Few/splits_final.json" &&
	t_code 1 nnp-split -d 905 --folds 3 &&
	t_err_line nnp-split "$PP/Dataset905_Few/splits_final.json" "--force" &&
	t_code 0 nnp-split -d 905 --folds 3 --force
'

test_expect_success '--fold-random F: RandomState(12345+F).choice, train in draw order (numpy vector)' '
	t_code 0 nnp-split -d 901 --fold-random 5 &&
	"$PYTHON" -c "
import json
f = json.load(open(\"stdout\"))
want = [4, 7, 0, 10, 5, 9, 8, 3, 11]   # RandomState(12350).choice(12, 9, replace=False)
assert f[\"train\"] == [\"sph_%03d\" % i for i in want], f
assert f[\"val\"] == [\"sph_%03d\" % i for i in range(12) if i not in want], f
" && t_no_file "$PP/Dataset901_Spheres/splits_final.json"
'

test_expect_success '--fold F: the file'"'"'s fold, the random split past it, or all' '
	t_code 0 nnp-split -d 901 --fold 3 &&
	"$PYTHON" -c "
import json
assert json.load(open(\"stdout\")) == json.load(open(\"$FX901/splits_final.json\"))[3]
" &&
	t_code 0 nnp-split -d 901 --fold-random 7 && mv stdout r7 &&
	t_code 0 nnp-split -d 901 --fold 7 && t_same_file r7 stdout &&
	t_code 0 nnp-split -d 901 --fold all &&
	"$PYTHON" -c "
import json
f = json.load(open(\"stdout\"))
assert f[\"train\"] == f[\"val\"] == [\"sph_%03d\" % i for i in range(12)], f
"
'

test_expect_success 'no preprocessed cases and nnUNet_raw unset: usage error naming nnUNet_raw' '
	mkdir -p "$PP/Dataset907_Lonely" &&
	t_code 2 env -u nnUNet_raw nnp-split "$PP/Dataset907_Lonely" &&
	t_err_line nnp-split nnUNet_raw --raw
'

test_expect_success '--raw names the raw dataset for a folder of another name' '
	mkdir -p pp-elsewhere &&
	t_code 0 nnp-split pp-elsewhere --raw 901 &&
	t_same_file "$FX901/splits_final.json" pp-elsewhere/splits_final.json
'

test_expect_success 'a missing preprocessed dataset is named' '
	t_code 1 nnp-split -d 999 && t_err_line nnp-split 999 nnUNet_preprocessed &&
	t_code 1 nnp-split "$PP/nope/Dataset999_X" && t_err_line nnp-split "Dataset999_X"
'

test_expect_success 'bad options are usage errors' '
	t_code 2 nnp-split && t_err_line nnp-split PREPROCESSED &&
	t_code 2 nnp-split -d 901 --folds 1 && t_err_line nnp-split "--folds" &&
	t_code 2 nnp-split -d 901 --seed -1 && t_err_line nnp-split "--seed" &&
	t_code 2 nnp-split -d 901 "$PP/Dataset901_Spheres" && t_err_line nnp-split once &&
	t_code 2 nnp-split -d 901 --fold 1 --fold-random 2 && t_err_line nnp-split exclude &&
	t_code 2 nnp-split -d 901 --fold 1 -o x.json && t_err_line nnp-split "--fold" &&
	t_code 2 nnp-split -d 901 --fold x && t_err_line nnp-split "--fold" &&
	t_code 2 nnp-split -d 901 --data a/b && t_err_line nnp-split "--data" &&
	t_code 2 nnp-split --bogus -d 901 && t_err_line nnp-split "--bogus"
'

test_expect_success '--help and --version exit 0' '
	t_code 0 nnp-split --help && grep -q "nnp split" stdout && grep -q "12345" stdout &&
	t_code 0 nnp-split --version && grep -q "nnp-split" stdout
'

done_testing
