#!/bin/bash
# t1100-evaluate.t — nnp evaluate (nnU-Net's compute_metrics_on_folder):
# summary.json byte for byte equal to an independent numpy port of
# nnU-Net's code (tests/tools/evaluate_reference.py) on synthetic folders
# (labels with NaN and absent classes, ignore label, regions, anisotropic
# spacing, 2D, 20 cases) and on nnU-Net's exported 901/903 segmentations
# (fold 0 scored against fold 0+1); HD95/NSD against scipy; file matching,
# --chill, -j, atomic output and the error paths.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-evaluate
"$PYTHON" -c 'import scipy.ndimage' 2>/dev/null || bail_out "$PYTHON lacks scipy"

D=$(t_tmpdir)
INF=$T_FIXTURES/inference
evref() { "$PYTHON" "$T_PYTOOLS/evaluate_reference.py" "$@"; }
jsoncmp() { "$PYTHON" "$T_PYTOOLS/jsoncmp.py" "$@"; }

# same A.json B.json: numerically equal (1e-6) and byte-identical.
same() {
	jsoncmp "$1" "$2" && t_same_file "$1" "$2"
}

# py CODE: run Python with the summary helpers (load(path) -> dict).
py() {
	"$PYTHON" -c 'import json, math, sys
def load(p):
    return json.load(open(p))
'"$1"
}

test_expect_success 'generate the synthetic prediction and reference folders' '
	"$PYTHON" "$T_PYTOOLS/mkevalcases.py" "$D" &&
	ls "$D"/labels/pred/c04.nii.gz "$D"/many/ref/m19.nii.gz
'

for s in labels ignore regions; do
	test_expect_success "$s: summary.json is byte-identical to the numpy port of nnU-Net" '
		nnp-evaluate "'"$D/$s"'/pred" "'"$D/$s"'/ref" -d "'"$D/$s"'/dataset.json" -o '"$s"'.json &&
		evref "'"$D/$s"'/pred" "'"$D/$s"'/ref" --dataset-json "'"$D/$s"'/dataset.json" -o '"$s"'.ref.json &&
		same '"$s"'.json '"$s"'.ref.json
	'
done

test_expect_success 'labels: NaN when absent in both, 0 when absent in the prediction, unknown values ignored' '
	py "
j = load(\"labels.json\")
c01 = j[\"metric_per_case\"][1][\"metrics\"]
assert math.isnan(c01[\"3\"][\"Dice\"]) and math.isnan(c01[\"3\"][\"IoU\"]), c01[\"3\"]
assert c01[\"3\"][\"TP\"] == c01[\"3\"][\"FP\"] == c01[\"3\"][\"FN\"] == 0
assert c01[\"2\"][\"Dice\"] == 0.0 and c01[\"2\"][\"n_pred\"] == 0 and c01[\"2\"][\"n_ref\"] > 0
c02 = j[\"metric_per_case\"][2][\"metrics\"]
assert c02[\"1\"][\"Dice\"] == 0.0 and c02[\"1\"][\"n_ref\"] == 0 and c02[\"1\"][\"n_pred\"] > 0
for c in j[\"metric_per_case\"]:
    for m in c[\"metrics\"].values():
        assert isinstance(m[\"TP\"], int) and m[\"TP\"] + m[\"FP\"] + m[\"FN\"] + m[\"TN\"] == m[\"n_pred\"] + m[\"FN\"] + m[\"TN\"]
assert sorted(j) == [\"foreground_mean\", \"mean\", \"metric_per_case\"]
assert j[\"metric_per_case\"][0][\"prediction_file\"].endswith(\"labels/pred/c00.nii.gz\")
assert j[\"metric_per_case\"][0][\"reference_file\"].endswith(\"labels/ref/c00.nii.gz\")
assert isinstance(j[\"mean\"][\"1\"][\"TP\"], float)
"
'

test_expect_success 'ignore: voxels under the ignore label count for nothing (TN excludes them)' '
	py "
import nibabel as nib, numpy as np
j = load(\"ignore.json\")
r = np.asanyarray(nib.load(\"'"$D"'/ignore/ref/ig0.nii.gz\").dataobj)
m = j[\"metric_per_case\"][0][\"metrics\"][\"1\"]
assert m[\"TP\"] + m[\"FP\"] + m[\"FN\"] + m[\"TN\"] == int((r != 3).sum()) < r.size
"
'

test_expect_success 'regions: keys are str(tuple) and a scalar region stays an int key' '
	py "
j = load(\"regions.json\")
assert sorted(j[\"mean\"]) == [\"(1, 2, 3)\", \"(2, 3)\", \"(3,)\", \"3\"], sorted(j[\"mean\"])
assert j[\"mean\"][\"3\"] == j[\"mean\"][\"(3,)\"]
"
'

test_expect_success 'simple form -l over 20 cases equals the numpy port byte for byte' '
	nnp-evaluate "$D/many/pred" "$D/many/ref" -l 1 2 -o many.json &&
	evref "$D/many/pred" "$D/many/ref" -l 1 2 -o many.ref.json &&
	same many.json many.ref.json &&
	grep -q NaN many.json
'

test_expect_success 'simple form with --ignore-label equals the dataset.json form' '
	nnp-evaluate "$D/ignore/pred" "$D/ignore/ref" -l 1,2 --ignore-label 3 --file-ending .nii.gz -o ign-l.json &&
	t_same_file ign-l.json ignore.json
'

test_expect_success 'label 0 is scored but left out of the foreground mean (-l 0 1 2 3)' '
	nnp-evaluate "$D/labels/pred" "$D/labels/ref" -l 0 1 2 3 -o l0.json &&
	evref "$D/labels/pred" "$D/labels/ref" -l 0 1 2 3 -o l0.ref.json &&
	same l0.json l0.ref.json &&
	py "
j = load(\"l0.json\")
assert \"0\" in j[\"mean\"]
fg = sum(j[\"mean\"][k][\"TP\"] for k in \"123\") / 3
assert abs(j[\"foreground_mean\"][\"TP\"] - fg) < 1e-9
"
'

test_expect_success '-j 1, -j 2 and -j 5 write identical files' '
	for j in 1 2 5; do
		nnp-evaluate -j $j "$D/labels/pred" "$D/labels/ref" -d "$D/labels/dataset.json" --hd95 --nsd 1 -o j$j.json
	done &&
	t_same_file j1.json j2.json && t_same_file j1.json j5.json
'

for s in labels ignore regions; do
	test_expect_success "$s: HD95 and NSD agree with scipy (1e-6)" '
		nnp-evaluate "'"$D/$s"'/pred" "'"$D/$s"'/ref" -d "'"$D/$s"'/dataset.json" --hd95 --nsd 1.5 -o '"$s"'-d.json &&
		evref "'"$D/$s"'/pred" "'"$D/$s"'/ref" --dataset-json "'"$D/$s"'/dataset.json" --hd95 --nsd 1.5 \
			-o '"$s"'-d.ref.json &&
		jsoncmp '"$s"'-d.json '"$s"'-d.ref.json
	'
done

test_expect_success 'HD95/NSD: NaN when absent in both, Infinity and 0 when absent on one side' '
	py "
j = load(\"labels-d.json\")
c01 = j[\"metric_per_case\"][1][\"metrics\"]
assert math.isnan(c01[\"3\"][\"HD95\"]) and math.isnan(c01[\"3\"][\"NSD\"])
assert c01[\"2\"][\"HD95\"] == float(\"inf\") and c01[\"2\"][\"NSD\"] == 0.0
assert 0 < j[\"metric_per_case\"][0][\"metrics\"][\"1\"][\"HD95\"] < 50
" &&
	grep -q "\"HD95\": Infinity" labels-d.json &&
	! grep -q "HD95" labels.json
'

test_expect_success '2D file (z = 1): 8-neighbourhood surfaces agree with scipy' '
	mkdir -p 2d/pred 2d/ref &&
	cp "$D/labels/pred/c03.nii.gz" 2d/pred/ && cp "$D/labels/ref/c03.nii.gz" 2d/ref/ &&
	nnp-evaluate 2d/pred 2d/ref -l 1 2 3 --hd95 --nsd 0.7 -o 2d.json &&
	evref 2d/pred 2d/ref -l 1 2 3 --hd95 --nsd 0.7 -o 2d.ref.json &&
	jsoncmp 2d.json 2d.ref.json
'

for ds in Dataset901_Spheres Dataset903_MultiChannel; do
	test_expect_success "$ds: nnU-Net fold-0 segmentations scored against fold 0+1 match the port" '
		F="$(t_tmpdir)" && mkdir "$F/pred" "$F/ref" &&
		for c in "'"$INF/$ds"'"/*/seg_f0_nomirror.nii.gz; do
			n=$(basename "$(dirname "$c")") &&
			cp "$c" "$F/pred/$n.nii.gz" && cp "$(dirname "$c")/seg_f01_nomirror.nii.gz" "$F/ref/$n.nii.gz"
		done &&
		nnp evaluate "$F/pred" "$F/ref" -d "'"$T_FIXTURES/raw/$ds"'/dataset.json" -j 2 &&
		evref "$F/pred" "$F/ref" --dataset-json "'"$T_FIXTURES/raw/$ds"'/dataset.json" -o "$F/ref.json" &&
		same "$F/pred/summary.json" "$F/ref.json" &&
		py "
j = load(\"$F/pred/summary.json\")
assert len(j[\"metric_per_case\"]) >= 2 and j[\"metric_per_case\"][0][\"prediction_file\"].startswith(\"/\")
assert 0.3 < j[\"foreground_mean\"][\"Dice\"] < 1
" &&
		nnp evaluate "$F/pred" "$F/ref" -d "'"$T_FIXTURES/raw/$ds"'/dataset.json" --hd95 --nsd 2 -o '"$ds"'.json &&
		evref "$F/pred" "$F/ref" --dataset-json "'"$T_FIXTURES/raw/$ds"'/dataset.json" --hd95 --nsd 2 \
			-o '"$ds"'.ref.json &&
		jsoncmp '"$ds"'.json '"$ds"'.ref.json
	'
done

test_expect_success 'scl_slope is applied before the labels are compared (as nibabel and SimpleITK do)' '
	mkdir -p sc/p sc/r &&
	mknii --dtype i16 --values labels:3 --slope 2 --inter 0 --form none sc/p/a.nii.gz &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
i = nib.load(\"sc/p/a.nii.gz\")
nib.save(nib.Nifti1Image(np.asanyarray(i.dataobj).astype(np.uint8), i.affine), \"sc/r/a.nii.gz\")" &&
	nnp-evaluate sc/p sc/r -l 2 4 -o sc.json &&
	evref sc/p sc/r -l 2 4 -o sc.ref.json &&
	same sc.json sc.ref.json &&
	py "assert load(\"sc.json\")[\"foreground_mean\"][\"Dice\"] == 1.0"
'

test_expect_success 'simple form: the ending of the first reference file (.nii) when none is given' '
	mkdir -p nii/p nii/r &&
	for c in c00 c01; do
		"$PYTHON" -c "import nibabel as nib, sys; nib.save(nib.load(sys.argv[1]), sys.argv[2])" \
			"$D/labels/pred/$c.nii.gz" nii/p/$c.nii &&
		"$PYTHON" -c "import nibabel as nib, sys; nib.save(nib.load(sys.argv[1]), sys.argv[2])" \
			"$D/labels/ref/$c.nii.gz" nii/r/$c.nii
	done &&
	cp "$D/labels/pred/c02.nii.gz" nii/p/ &&
	nnp-evaluate nii/p nii/r -l 1 2 3 -o nii.json &&
	evref nii/p nii/r -l 1 2 3 --file-ending .nii -o nii.ref.json &&
	same nii.json nii.ref.json &&
	py "assert [c[\"prediction_file\"] for c in load(\"nii.json\")[\"metric_per_case\"]] == [\"nii/p/c00.nii\", \"nii/p/c01.nii\"]"
'

# ---- output ----

test_expect_success 'default output is PRED_DIR/summary.json, not overwritten without --force' '
	P="$(t_tmpdir)" && cp -r "$D/many" "$P/m" &&
	nnp-evaluate "$P/m/pred" "$P/m/ref" -l 1 2 &&
	test -f "$P/m/pred/summary.json" && cp "$P/m/pred/summary.json" before.json &&
	t_code 2 nnp-evaluate "$P/m/pred" "$P/m/ref" -l 1 &&
	t_err_line nnp-evaluate "summary.json" "exists" "--force" &&
	t_same_file before.json "$P/m/pred/summary.json" &&
	nnp-evaluate "$P/m/pred/" "$P/m/ref" -l 1 --force &&
	! t_same_file before.json "$P/m/pred/summary.json" >/dev/null &&
	check_no_tmp "$P/m/pred"
'

test_expect_success 'paths are os.path.join of the folders as given (trailing slash kept once)' '
	nnp-evaluate "$D/many/pred/" "$D/many/ref/" -l 1 -o slash.json &&
	py "
j = load(\"slash.json\")
p = j[\"metric_per_case\"][0]
assert p[\"prediction_file\"] == \"'"$D"'/many/pred/m00.nii.gz\", p
assert p[\"reference_file\"] == \"'"$D"'/many/ref/m00.nii.gz\", p
"
'

test_expect_success 'the foreground mean Dice and the class means go to stderr unless quiet' '
	NNP_QUIET= nnp-evaluate "$D/labels/pred" "$D/labels/ref" -d "$D/labels/dataset.json" -o loud.json 2>err &&
	grep -q "5 cases, foreground mean Dice 0\.[0-9]" err &&
	grep -q "^nnp-evaluate:   1 (liver): mean Dice" err &&
	grep -q "3 (lesion)" err &&
	nnp-evaluate "$D/labels/pred" "$D/labels/ref" -d "$D/labels/dataset.json" -o quiet.json 2>err &&
	t_stderr_empty err
'

test_expect_success '--help and --version' '
	nnp evaluate --help >help && grep -q "PRED_DIR REF_DIR" help && grep -q -- "--chill" help &&
	grep -q "Exit status" help &&
	nnp-evaluate --version | grep -q "0\."
'

# ---- file matching and errors ----

# case COPY: a fresh copy of the labels folder under ./COPY
copy() {
	rm -rf "$1" && cp -r "$D/labels" "$1"
}

test_expect_success 'a prediction without a reference is an error, with --chill too' '
	copy nref && rm nref/ref/c02.nii.gz &&
	t_code 1 nnp-evaluate nref/pred nref/ref -d nref/dataset.json -o nref.json &&
	t_err_line nnp-evaluate "nref/pred/c02.nii.gz" "no reference" &&
	t_code 1 nnp-evaluate nref/pred nref/ref -d nref/dataset.json -o nref.json --chill &&
	t_no_file nref.json
'

test_expect_success 'a reference without a prediction: error, unless --chill' '
	copy npred && rm npred/pred/c01.nii.gz &&
	t_code 1 nnp-evaluate npred/pred npred/ref -d npred/dataset.json -o npred.json &&
	t_err_line nnp-evaluate "c01.nii.gz" "no prediction" "--chill" &&
	t_no_file npred.json &&
	t_code 0 nnp-evaluate npred/pred npred/ref -d npred/dataset.json -o npred.json --chill &&
	evref npred/pred npred/ref --dataset-json npred/dataset.json -o npred.ref.json --chill &&
	same npred.json npred.ref.json &&
	py "assert len(load(\"npred.json\")[\"metric_per_case\"]) == 4"
'

test_expect_success 'only files with the file ending are compared' '
	copy ends && cp ends/pred/c00.nii.gz ends/pred/c00.nii && echo junk >ends/pred/notes.txt &&
	mkdir ends/pred/sub.nii.gz &&
	nnp-evaluate ends/pred ends/ref -d ends/dataset.json -o ends.json &&
	py "assert len(load(\"ends.json\")[\"metric_per_case\"]) == 5"
'

test_expect_success 'shape mismatch: exit 1 naming both files' '
	copy shape &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
i = nib.load(\"shape/pred/c01.nii.gz\")
nib.save(nib.Nifti1Image(np.asanyarray(i.dataobj)[:, :-1], i.affine), \"shape/pred/c01.nii.gz\")" &&
	t_code 1 nnp-evaluate shape/pred shape/ref -d shape/dataset.json -o shape.json &&
	t_err_line nnp-evaluate "shape/pred/c01.nii.gz" "shape/ref/c01.nii.gz" "shape" &&
	t_no_file shape.json
'

test_expect_success 'truncated gzip: exit 1 naming the file, nothing written' '
	copy trunc &&
	f=trunc/ref/c04.nii.gz && n=$(stat -c %s $f) && head -c $((n - 6)) $f >t.gz && mv t.gz $f &&
	t_code 1 nnp-evaluate -j 3 trunc/pred trunc/ref -d trunc/dataset.json -o trunc/out.json &&
	t_err_line nnp-evaluate "trunc/ref/c04.nii.gz" &&
	t_no_file trunc/out.json && check_no_tmp trunc &&
	echo "not a nifti" | gzip >trunc/pred/c00.nii.gz &&
	t_code 1 nnp-evaluate trunc/pred trunc/ref -d trunc/dataset.json -o trunc/out.json &&
	t_err_line nnp-evaluate "trunc/pred/c00.nii.gz"
'

test_expect_success 'non-integer and NaN labels: exit 1 naming the file and voxel' '
	copy flt &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
i = nib.load(\"flt/pred/c00.nii.gz\")
a = np.asanyarray(i.dataobj).astype(np.float32); a[3, 4, 5] = 1.5
nib.save(nib.Nifti1Image(a, i.affine), \"flt/pred/c00.nii.gz\")
i = nib.load(\"flt/ref/c02.nii.gz\")
a = np.asanyarray(i.dataobj).astype(np.float64); a[0, 0, 1] = np.nan
nib.save(nib.Nifti1Image(a, i.affine), \"flt/ref/c02.nii.gz\")" &&
	t_code 1 nnp-evaluate flt/pred flt/ref -d flt/dataset.json -o x.json &&
	t_err_line nnp-evaluate "flt/pred/c00.nii.gz" "(3, 4, 5)" "1.5" "integer" &&
	rm flt/pred/c00.nii.gz flt/ref/c00.nii.gz &&
	t_code 1 nnp-evaluate flt/pred flt/ref -d flt/dataset.json -o x.json &&
	t_err_line nnp-evaluate "flt/ref/c02.nii.gz" "nan"
'

test_expect_success 'float label maps holding integers are accepted (c03 is float32)' '
	py "assert load(\"labels.json\")[\"metric_per_case\"][3][\"metrics\"][\"1\"][\"n_ref\"] > 0"
'

test_expect_success 'a 4D file is refused' '
	copy four &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
i = nib.load(\"four/pred/c00.nii.gz\")
a = np.asanyarray(i.dataobj)
nib.save(nib.Nifti1Image(np.stack([a, a], -1), i.affine), \"four/pred/c00.nii.gz\")" &&
	t_code 1 nnp-evaluate four/pred four/ref -d four/dataset.json -o x.json &&
	t_err_line nnp-evaluate "four/pred/c00.nii.gz" "4D"
'

test_expect_success 'empty or missing prediction folder: exit 1' '
	mkdir -p empty &&
	t_code 1 nnp-evaluate empty "$D/labels/ref" -d "$D/labels/dataset.json" -o x.json &&
	t_err_line nnp-evaluate "no prediction files" ".nii.gz" "empty" &&
	t_code 1 nnp-evaluate nowhere "$D/labels/ref" -l 1 -o x.json &&
	t_err_line nnp-evaluate "nowhere" &&
	t_code 1 nnp-evaluate "$D/labels/pred" nowhere -l 1 -o x.json &&
	t_err_line nnp-evaluate "nowhere"
'

# bad_ds NAME JSON WORD...: dataset.json holding JSON is refused (exit 1).
bad_ds() {
	local n=$1 j=$2
	shift 2
	printf '%s\n' "$j" >"bad-$n.json" &&
	t_code 1 nnp-evaluate "$D/labels/pred" "$D/labels/ref" -d "bad-$n.json" -o bad.json &&
	t_err_line nnp-evaluate "bad-$n.json" "$@"
}

test_expect_success 'bad dataset.json files are refused with a reason' '
	bad_ds syntax "{\"labels\": {" "invalid JSON" &&
	bad_ds nolabels "{\"file_ending\": \".nii.gz\"}" "labels" &&
	bad_ds nobg "{\"labels\": {\"a\": 1}, \"file_ending\": \".nii.gz\"}" "background" &&
	bad_ds bg1 "{\"labels\": {\"background\": 1, \"a\": 2}, \"file_ending\": \".nii.gz\"}" "background" &&
	bad_ds ign "{\"labels\": {\"background\": 0, \"a\": 1, \"ignore\": 5}, \"file_ending\": \".nii.gz\"}" "ignore" "max" &&
	bad_ds rco "{\"labels\": {\"background\": 0, \"a\": [1, 2], \"b\": 2}, \"file_ending\": \".nii.gz\"}" "regions_class_order" &&
	bad_ds value "{\"labels\": {\"background\": 0, \"a\": \"one\"}, \"file_ending\": \".nii.gz\"}" "integer" &&
	bad_ds nofg "{\"labels\": {\"background\": 0}, \"file_ending\": \".nii.gz\"}" "no foreground" &&
	bad_ds noend "{\"labels\": {\"background\": 0, \"a\": 1}}" "file_ending" &&
	printf "%s\n" "{\"labels\": {\"background\": 0, \"a\": 1}, \"file_ending\": \".png\"}" >png.json &&
	t_code 1 nnp-evaluate "$D/labels/pred" "$D/labels/ref" -d png.json -o bad.json &&
	t_err_line nnp-evaluate ".png" "NIfTI" &&
	t_no_file bad.json
'

test_expect_success 'usage errors exit 2' '
	t_code 2 nnp-evaluate && t_err_line nnp-evaluate "PRED_DIR" &&
	t_code 2 nnp-evaluate a b && t_err_line nnp-evaluate "--dataset-json" &&
	t_code 2 nnp-evaluate a b -l 1 -d x.json && t_err_line nnp-evaluate "exclude" &&
	t_code 2 nnp-evaluate a b -d x.json --ignore-label 3 && t_err_line nnp-evaluate "--ignore-label" &&
	t_code 2 nnp-evaluate a b -l 1 --nsd 0 && t_err_line nnp-evaluate "--nsd" &&
	t_code 2 nnp-evaluate a b -l x && t_err_line nnp-evaluate "-l" &&
	t_code 2 nnp-evaluate a b c -l 1 && t_err_line nnp-evaluate "unexpected" &&
	t_code 2 nnp-evaluate a b -l 1 --bogus && t_err_line nnp-evaluate "--bogus"
'

done_testing
