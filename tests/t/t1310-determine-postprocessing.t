#!/bin/bash
# t1310-determine-postprocessing.t — nnp determine-postprocessing (nnU-Net's
# determine_postprocessing) against an independent numpy/scipy port
# (tests/tools/ppdecide_reference.py) on constructed cross-validation results
# (tests/tools/mkppcases.py): the decided rule list, postprocessing.json byte
# for byte, summary.json, postprocessed/ voxel for voxel; a region model, an
# ignore label, one label, NaN means; the same on a tiny model's predictions.
# Then the rule file: nnp postprocess --rules == nnp apply-postprocessing ==
# postprocessed/, headers kept; nnp predict --postprocess; the error paths
# leave nothing behind.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-determine-postprocessing nnp-apply-postprocessing nnp-postprocess nnp-read nnp-write \
	nnp-evaluate nnp-predict
"$PYTHON" -c 'import scipy.ndimage' 2>/dev/null || bail_out "$PYTHON lacks scipy"

D=$(t_tmpdir)
RES901="$T_FIXTURES/results/Dataset901_Spheres/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
RAW901="$T_FIXTURES/raw/Dataset901_Spheres"
ppref() { "$PYTHON" "$T_PYTOOLS/ppdecide_reference.py" "$@"; }
niicmp() { "$PYTHON" "$T_PYTOOLS/niicmp.py" "$@"; }

# decided FILE: the postprocessing_kwargs' labels_or_regions as one JSON line
decided() {
	"$PYTHON" -c 'import json, sys
print(json.dumps([k["labels_or_regions"] for k in json.load(open(sys.argv[1]))["postprocessing_kwargs"]]))' "$1"
}

# same_pp A B: A (nnp) and B (the port, run on a copy) agree: postprocessing.json
# byte for byte, summary.json byte for byte up to the folder name, postprocessed/
# holds the cases (+ summary.json) with the port's voxels and the input's header,
# its summary.json has the port's numbers; nothing else is left in A.
same_pp() {
	"$PYTHON" - "$1" "$2" <<-\PY
	import json, os, sys
	import nibabel as nib, numpy as np
	a, b = sys.argv[1], sys.argv[2]
	rd = lambda p: open(p, "rb").read()
	assert rd(a + "/postprocessing.json") == rd(b + "/postprocessing.json"), "postprocessing.json differs"
	assert rd(a + "/summary.json").decode() == rd(b + "/summary.json").decode().replace(b, a), "summary.json differs"
	cases = sorted(f for f in os.listdir(a) if f.endswith(".nii.gz"))
	left = sorted(set(os.listdir(a)) - set(cases) - {"dataset.json", "plans.json"})
	assert left == ["postprocessed", "postprocessing.json", "summary.json"], left
	assert sorted(os.listdir(a + "/postprocessed")) == cases + ["summary.json"], os.listdir(a + "/postprocessed")
	changed = 0
	for f in cases:
	    x, y, z = (nib.load(p + "/" + f) for p in (a + "/postprocessed", b + "/postprocessed", a))
	    X, Y, Z = (np.asanyarray(i.dataobj) for i in (x, y, z))
	    assert X.dtype == Y.dtype == Z.dtype and X.shape == Y.shape, f
	    assert (X == Y).all(), "%s: %d voxels differ" % (f, (X != Y).sum())
	    assert x.header.binaryblock == z.header.binaryblock, f + ": header changed"
	    changed += int((X != Z).sum())
	def norm(p):
	    j = json.load(open(p))
	    for c in j["metric_per_case"]:
	        del c["prediction_file"], c["reference_file"]
	    return json.dumps(j, sort_keys=True)
	assert norm(a + "/postprocessed/summary.json") == norm(b + "/postprocessed/summary.json")
	pp = json.load(open(a + "/postprocessing.json"))
	if pp["postprocessing_kwargs"]:
	    j = json.load(open(a + "/postprocessed/summary.json"))
	    assert [c["prediction_file"] for c in j["metric_per_case"]] == [a + "/postprocessed/" + f for f in cases]
	print("%d cases, %d voxels removed" % (len(cases), changed))
	PY
}

# nothing_left DIR NAME...: DIR holds exactly NAME... (no outputs, no staging folder)
nothing_left() { t_files_are "$@"; }

test_expect_success 'generate the constructed cross-validation results' '
	"$PYTHON" "$T_PYTOOLS/mkppcases.py" "$D" &&
	for s in cv accept regions ignore single nan; do cp -r "$D/$s/pred" "$D/$s/orig"; done &&
	ls "$D"/cv/pred/cv4.nii.gz "$D"/accept/ref/ac2.nii.gz
'

while read set want; do
test_expect_success "$set: decision $want, as the numpy port of nnU-Net decides" '
	s='"$D/$set"' &&
	cp -r "$s/orig" "$s/pred_ref" &&
	NNP_QUIET= nnp determine-postprocessing -i "$s/pred" -r "$s/ref" -j 2 2>log &&
	t_comment <log && ppref "$s/pred_ref" "$s/ref" >ref.log 2>/dev/null && t_comment <ref.log &&
	test "$(decided "$s/pred/postprocessing.json")" = '"'$want'"' &&
	same_pp "$s/pred" "$s/pred_ref" >m.txt && t_comment <m.txt
'
done <<-EOF
cv [1]
accept [[1, 2, 3], 1]
regions [[1, 2, 3], [2, 3]]
ignore []
single [[1]]
nan [1]
EOF

test_expect_success 'cv: step 1 is rejected because label 2 gets worse although the foreground mean improves' '
	cp -r "$D/cv/orig" cvq && NNP_QUIET= nnp determine-postprocessing -i cvq -r "$D/cv/ref" 2>log &&
	grep "as one object" log >l1 && grep -q "rejected, class 2 mean Dice" l1 &&
	"$PYTHON" -c "
import re, sys
t = open(\"l1\").read()
a, b = map(float, re.search(r\"foreground mean Dice ([0-9.]+) -> ([0-9.]+)\", t).groups())
assert b > a, (a, b)
c, d = map(float, re.search(r\"class 2 mean Dice ([0-9.]+) -> ([0-9.]+)\", t).groups())
assert d < c, (c, d)" &&
	grep -q "label 1: its mean Dice .* accepted" log && grep -q "label 2: its mean Dice .* rejected" log &&
	grep -q "label 3: its mean Dice \([0-9.]*\) -> \1: rejected" log
'

test_expect_success 'nan: a NaN foreground mean rejects step 1; NaN is written as the bare token' '
	grep -q "\"Dice\": NaN" "$D/nan/pred/postprocessing.json" &&
	"$PYTHON" -c "
import json, math
j = json.load(open(\"$D/nan/pred/postprocessing.json\"))
assert math.isnan(j[\"input_folder\"][\"foreground_mean\"][\"Dice\"]) and math.isnan(j[\"input_folder\"][\"mean\"][\"3\"][\"Dice\"])
assert j[\"postprocessing_fns\"] == [\"remove_all_but_largest_component_from_segmentation\"]"
'

test_expect_success 'the result does not depend on -j; an existing summary.json is the baseline, kept as it is' '
	cp -r "$D/cv/orig" j1 && nnp determine-postprocessing -i j1 -r "$D/cv/ref" -j 1 &&
	t_same_file j1/postprocessing.json "$D/cv/pred/postprocessing.json" &&
	cp -r "$D/cv/orig" ex && nnp evaluate ex "$D/cv/ref" -d ex/dataset.json -o ex/summary.json &&
	cp ex/summary.json before.json && touch -d 2001-01-01 ex/summary.json &&
	nnp determine-postprocessing -i ex -r "$D/cv/ref" &&
	t_same_file ex/summary.json before.json && test "$(stat -c %Y ex/summary.json)" -lt 1000000000 &&
	t_same_file ex/postprocessing.json "$D/cv/pred/postprocessing.json"
'

test_expect_success 'outputs exist: refused (exit 2) without --force, replaced with it; --remove-postprocessed' '
	t_code 2 nnp determine-postprocessing -i j1 -r "$D/cv/ref" && t_err_line nnp-determine-postprocessing exists --force &&
	echo junk >j1/postprocessed/junk.txt &&
	nnp determine-postprocessing -i j1 -r "$D/cv/ref" --force &&
	t_same_file j1/postprocessing.json "$D/cv/pred/postprocessing.json" && t_no_file j1/postprocessed/junk.txt &&
	nnp determine-postprocessing -i j1 -r "$D/cv/ref" --force --remove-postprocessed &&
	t_no_file j1/postprocessed && t_same_file j1/postprocessing.json "$D/cv/pred/postprocessing.json" &&
	cp -r "$D/cv/orig" rm1 && nnp determine-postprocessing -i rm1 -r "$D/cv/ref" --remove-postprocessed &&
	nothing_left rm1 cv0.nii.gz cv1.nii.gz cv2.nii.gz cv3.nii.gz cv4.nii.gz dataset.json plans.json \
		postprocessing.json summary.json
'

# ---- the rule file ----

for set in cv accept regions ignore nan; do
test_expect_success "$set: nnp apply-postprocessing == postprocessed/ == nnp postprocess --rules (headers kept)" '
	s='"$D/$set"' && rm -rf out && mkdir -p stream &&
	nnp apply-postprocessing -i "$s/orig" -o out --rules "$s/pred/postprocessing.json" -j 2 &&
	t_same_file out/dataset.json "$s/orig/dataset.json" && t_same_file out/plans.json "$s/orig/plans.json" &&
	for f in "$s"/orig/*.nii.gz; do
		b=$(basename "$f") &&
		niicmp --strict out/$b "$s/pred/postprocessed/$b" &&
		nnp read --role seg "$f" | nnp postprocess --rules "$s/pred/postprocessing.json" |
			nnp write -q -f -o stream/$b &&
		niicmp --data-only stream/$b out/$b || exit 1
	done &&
	"$PYTHON" -c "
import sys, glob, os, nibabel as nib
for f in glob.glob(\"out/*.nii.gz\"):
    a, b = nib.load(f), nib.load(\"$s/orig/\" + os.path.basename(f))
    assert a.header.binaryblock == b.header.binaryblock, f" &&
	check_no_tmp out && test -z "$(ls -A out | grep nnp-)"
'
done

test_expect_success 'apply: unchanged cases are byte copies; existing outputs need --force; in == out refused' '
	rm -rf out && nnp apply-postprocessing -i "$D/ignore/orig" -o out --rules "$D/ignore/pred/postprocessing.json" &&
	for f in "$D"/ignore/orig/*.nii.gz; do t_same_file "$f" out/$(basename "$f") || exit 1; done &&
	t_code 2 nnp apply-postprocessing -i "$D/cv/orig" -o out --rules "$D/cv/pred/postprocessing.json" &&
	t_err_line nnp-apply-postprocessing exists --force && t_same_file out/ig0.nii.gz "$D/ignore/orig/ig0.nii.gz" &&
	nnp apply-postprocessing -i "$D/ignore/orig" -o out --rules "$D/cv/pred/postprocessing.json" --force &&
	! cmp -s out/ig0.nii.gz "$D/ignore/orig/ig0.nii.gz" &&
	t_code 2 nnp apply-postprocessing -i out -o out/ --rules "$D/cv/pred/postprocessing.json" &&
	t_err_line nnp-apply-postprocessing "is the input folder"
'

# ---- a tiny trained model ----

test_expect_success 'a tiny model (901) on 3 training images against labelsTr: the port decides the same' '
	mkdir -p in901 && for c in sph_000 sph_004 sph_005; do cp "$RAW901/imagesTr/${c}_0000.nii.gz" in901/ || exit 1; done &&
	nnp predict -q -i in901 -o "$D/m901" -m "$RES901" -f 0 --disable-tta &&
	rm "$D/m901/predict_args.json" && cp -r "$D/m901" "$D/m901_ref" &&
	NNP_QUIET= nnp determine-postprocessing -i "$D/m901" -r "$RAW901/labelsTr" 2>log && t_comment <log &&
	grep -q "warning: 1 reference file(s) have no prediction (first: .sph_007.nii.gz.)" log &&
	ppref "$D/m901_ref" "$RAW901/labelsTr" >/dev/null 2>&1 &&
	same_pp "$D/m901" "$D/m901_ref" >m.txt && t_comment <m.txt
'

test_expect_success 'nnp predict --postprocess: segmentations == apply-postprocessing, probabilities unchanged' '
	R="$D/m901/postprocessing.json" && test "$(decided "$R")" != "[]" &&
	nnp predict -q -i "$RAW901/imagesTs" -o plain -m "$RES901" -f 0 --disable-tta --save-probabilities &&
	nnp predict -q -i "$RAW901/imagesTs" -o pp -m "$RES901" -f 0 --disable-tta --save-probabilities --postprocess "$R" &&
	nnp apply-postprocessing -i plain -o plain_pp --rules "$R" && t_no_file plain_pp/sph_100_probabilities.nii.gz &&
	for c in sph_100 sph_101 sph_102; do
		niicmp --strict pp/$c.nii.gz plain_pp/$c.nii.gz && ! cmp -s pp/$c.nii.gz plain/$c.nii.gz &&
		niicmp --strict pp/${c}_probabilities.nii.gz plain/${c}_probabilities.nii.gz || exit 1
	done &&
	t_code 1 nnp predict -q -i "$RAW901/imagesTs" -o pp2 -m "$RES901" -f 0 --postprocess "$D/nan/pred/dataset.json" &&
	grep -q "postprocessing_fns: missing" stderr && t_no_file pp2/sph_100.nii.gz
'

# ---- errors: clear messages, the documented codes, nothing left behind ----

ORIG="cv0.nii.gz cv1.nii.gz cv2.nii.gz cv3.nii.gz cv4.nii.gz dataset.json plans.json"

test_expect_success 'errors: usage, missing folders, dataset.json missing or without labels' '
	t_code 2 nnp determine-postprocessing -i "$D/cv/orig" && t_err_line nnp-determine-postprocessing "-r REF_DIR" &&
	t_code 1 nnp determine-postprocessing -i nope -r "$D/cv/ref" && t_err_line nnp-determine-postprocessing "nope" "does not exist" &&
	cp -r "$D/cv/orig" e1 &&
	t_code 1 nnp determine-postprocessing -i e1 -r nope && t_err_line nnp-determine-postprocessing "reference folder" nope &&
	rm e1/dataset.json &&
	t_code 1 nnp determine-postprocessing -i e1 -r "$D/cv/ref" && t_err_line nnp-determine-postprocessing "e1/dataset.json" "does not exist" &&
	echo "{\"file_ending\": \".nii.gz\", \"channel_names\": {\"0\": \"CT\"}}" >ds.json &&
	t_code 1 nnp determine-postprocessing -i e1 -r "$D/cv/ref" -d ds.json && t_err_line nnp-determine-postprocessing ds.json labels &&
	nothing_left e1 cv0.nii.gz cv1.nii.gz cv2.nii.gz cv3.nii.gz cv4.nii.gz plans.json
'

test_expect_success 'errors: a prediction without reference, a float prediction (nothing written)' '
	cp -r "$D/cv/orig" e2 && cp e2/cv0.nii.gz e2/extra.nii.gz &&
	t_code 1 nnp determine-postprocessing -i e2 -r "$D/cv/ref" &&
	t_err_line nnp-determine-postprocessing "e2/extra.nii.gz" "no reference" &&
	nothing_left e2 $ORIG extra.nii.gz &&
	rm e2/extra.nii.gz && "$PYTHON" -c "
import nibabel as nib, numpy as np
i = nib.load(\"e2/cv2.nii.gz\")
nib.save(nib.Nifti1Image(np.asanyarray(i.dataobj).astype(np.float32), i.affine), \"e2/cv2.nii.gz\")" &&
	nnp evaluate e2 "$D/cv/ref" -d e2/dataset.json &&
	t_code 1 nnp determine-postprocessing -i e2 -r "$D/cv/ref" &&
	t_err_line nnp-determine-postprocessing "e2/cv2.nii.gz" "want uint8 or int16" &&
	nothing_left e2 $ORIG summary.json
'

test_expect_success 'errors: geometry mismatch in the middle of the steps, a stale summary.json (nothing left)' '
	cp -r "$D/cv/ref" badref && "$PYTHON" -c "
import nibabel as nib, numpy as np
i = nib.load(\"badref/cv3.nii.gz\")
nib.save(nib.Nifti1Image(np.asanyarray(i.dataobj)[:, :, :-1], i.affine), \"badref/cv3.nii.gz\")" &&
	cp -r "$D/cv/orig" e3 && cp "$D/cv/pred/summary.json" e3/ && cp e3/summary.json before.json &&
	t_code 1 nnp determine-postprocessing -i e3 -r badref &&
	t_err_line nnp-determine-postprocessing "e3/cv3.nii.gz" "badref/cv3.nii.gz" "differ in shape" &&
	nothing_left e3 $ORIG summary.json && t_same_file e3/summary.json before.json &&
	"$PYTHON" -c "
import json
j = json.load(open(\"e3/summary.json\")); del j[\"mean\"][\"2\"]
json.dump(j, open(\"e3/summary.json\", \"w\"))" &&
	t_code 1 nnp determine-postprocessing -i e3 -r "$D/cv/ref" &&
	t_err_line nnp-determine-postprocessing "e3/summary.json" "mean[\"2\"].Dice" &&
	nothing_left e3 $ORIG summary.json
'

test_expect_success 'errors: malformed rule files name the file and the field (postprocess and apply)' '
	printf "{\"postprocessing_fns\": [\"f\"],\n \"postprocessing_kwargs\": [{\"labels_or_regions\": 1}}" >r1.json &&
	printf "{\"postprocessing_kwargs\": []}" >r2.json &&
	printf "{\"postprocessing_fns\": [\"remove_all_but_largest_component\"], \"postprocessing_kwargs\": [{\"labels_or_regions\": 1}]}" >r3.json &&
	printf "{\"postprocessing_fns\": [\"%s\", \"%s\"], \"postprocessing_kwargs\": [{\"labels_or_regions\": 1}, {\"labels_or_regions\": [1, \"x\"]}]}" \
		remove_all_but_largest_component_from_segmentation remove_all_but_largest_component_from_segmentation >r4.json &&
	printf "{\"postprocessing_fns\": [], \"postprocessing_kwargs\": [{\"labels_or_regions\": 1}]}" >r5.json &&
	printf "{\"postprocessing_fns\": [\"%s\"], \"postprocessing_kwargs\": [{\"labels\": 1}]}" \
		remove_all_but_largest_component_from_segmentation >r6.json &&
	nnp read --role seg "$D/cv/orig/cv0.nii.gz" >s.nnp &&
	while read f words; do
		t_code 1 nnp postprocess --rules $f s.nnp && t_err_line nnp-postprocess $f $words &&
		t_code 1 nnp apply-postprocessing -i "$D/cv/orig" -o eo --rules $f &&
		t_err_line nnp-apply-postprocessing $f $words && t_no_file eo || exit 1
	done <<-EOF2
	r1.json line
	r2.json postprocessing_fns missing
	r3.json postprocessing_fns[0] unknown
	r4.json postprocessing_kwargs[1].labels_or_regions integer
	r5.json postprocessing_fns postprocessing_kwargs
	r6.json postprocessing_kwargs[0] unknown labels
	EOF2
	t_code 2 nnp postprocess --rules r4.json --per-class s.nnp
'

test_expect_success 'errors: apply stops at a corrupt case and leaves no output' '
	cp -r "$D/cv/orig" e4 && head -c 300 e4/cv2.nii.gz >e4/cv2.x && mv e4/cv2.x e4/cv2.nii.gz &&
	t_code 1 nnp apply-postprocessing -i e4 -o eo4 --rules "$D/cv/pred/postprocessing.json" -j 2 &&
	t_err_line nnp-apply-postprocessing "e4/cv2.nii.gz" && t_no_file eo4 &&
	mkdir eo5 && t_code 1 nnp apply-postprocessing -i e4 -o eo5 --rules "$D/cv/pred/postprocessing.json" &&
	nothing_left eo5 &&
	t_code 1 nnp determine-postprocessing -i e4 -r "$D/cv/ref" && nothing_left e4 $ORIG
'

done_testing
