#!/bin/bash
# t0510-import.t — nnp-import-dataset: loose folders (one channel, channel
# files, 4D files, .nii inputs, test images, hard links) and an MSD task
# folder with 4D two-modality images become nnU-Net raw datasets that
# `nnp cases` lists and `nnp read` reads back with the sources' voxels and
# geometry; unpaired files, shape mismatches, bad headers, existing outputs
# and bad options fail with one message and leave nothing behind.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-import-dataset nnp-cases nnp-read nnp-info

unset nnUNet_raw nnUNet_preprocessed nnUNet_results
SRC=$(t_tmpdir)
OUT=$(t_tmpdir)

# ---- inputs (same geometry seed within a case: images and labels agree)
mkdir -p "$SRC/one/img" "$SRC/one/lab" "$SRC/one/ts"
for c in ca cb cc; do
	mknii --dtype i16 --seed 1 --geom-seed 3 "$SRC/one/img/$c.nii.gz"
	mknii --dtype u8 --values labels:3 --seed 2 --geom-seed 3 "$SRC/one/lab/$c.nii.gz"
done
mknii --dtype i16 --seed 4 --geom-seed 3 "$SRC/one/ts/t1.nii.gz"

mkdir -p "$SRC/two/img" "$SRC/two/lab"
for c in x y; do
	mknii --dtype f32 --no-specials --seed 5 --geom-seed 6 "$SRC/two/img/${c}_0000.nii.gz"
	mknii --dtype f32 --no-specials --seed 7 --geom-seed 6 "$SRC/two/img/${c}_0001.nii.gz"
	mknii --dtype u8 --values labels:2 --geom-seed 6 "$SRC/two/lab/$c.nii.gz"
done

T="$SRC/Task07_Pancreas"
mkdir -p "$T/imagesTr" "$T/labelsTr" "$T/imagesTs"
for c in p1 p2; do
	mknii --dtype f32 --no-specials --shape 7,6,5,2 --seed 8 --geom-seed 9 "$T/imagesTr/$c.nii.gz"
	mknii --dtype u8 --values labels:3 --geom-seed 9 "$T/labelsTr/$c.nii.gz"
done
mknii --dtype i16 --shape 7,6,5,2 --seed 10 --geom-seed 9 "$T/imagesTs/q1.nii.gz"
: >"$T/imagesTr/._p1.nii.gz"   # macOS resource forks, as in the real MSD archives
: >"$T/labelsTr/._p1.nii.gz"
cat >"$T/dataset.json" <<'EOF'
{"name": "Pancreas", "description": "Pancreas and cancer segmentation", "reference": "MSKCC",
 "licence": "CC-BY-SA 4.0", "release": "1.0 04/05/2018", "tensorImageSize": "4D",
 "modality": {"0": "CT", "1": "T2"}, "labels": {"0": "background", "1": "pancreas", "2": "cancer"},
 "numTraining": 2, "numTest": 1,
 "training": [{"image": "./imagesTr/p1.nii.gz", "label": "./labelsTr/p1.nii.gz"},
              {"image": "./imagesTr/p2.nii.gz", "label": "./labelsTr/p2.nii.gz"}],
 "test": ["./imagesTs/q1.nii.gz"]}
EOF

IMP="nnp-import-dataset"
ONE=(--images "$SRC/one/img" --labels "$SRC/one/lab" --channels CT
     --labels-map background=0,liver=1,tumour=2 -d 42 -n Liver)

# no_leftovers DIR: no temporary folders or files in DIR.
no_leftovers() {
	local left
	left=$(find "$1" -maxdepth 1 -name '.*' ! -name . -print)
	[ -z "$left" ] || { echo "left in $1: $left"; return 1; }
	check_no_tmp "$1"
}

# same_voxels A B [VOLUME]: nibabel sees the same stored data and affine
# (VOLUME: B equals that volume of the 4D file A).
same_voxels() {
	"$PYTHON" - "$@" <<'EOF'
import sys
import nibabel as nib
import numpy as np
a, b = nib.load(sys.argv[1]), nib.load(sys.argv[2])
x = np.asanyarray(a.dataobj)
if len(sys.argv) > 3:
    x = x[..., int(sys.argv[3])]
y = np.asanyarray(b.dataobj)
assert y.ndim == 3, y.shape
assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, y.shape, x.dtype, y.dtype)
assert np.array_equal(x, y), "voxels differ"
assert np.allclose(a.affine, b.affine, atol=1e-5), (a.affine, b.affine)
assert np.allclose(a.header.get_zooms()[:3], b.header.get_zooms()[:3])
EOF
}

test_plan 29

test_expect_success 'one channel: CASE.nii.gz -> imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz' '
	t_code 0 $IMP "${ONE[@]}" -o "$OUT" &&
	D="$OUT/Dataset042_Liver" &&
	t_files_are "$OUT" Dataset042_Liver &&
	t_files_are "$D" dataset.json imagesTr labelsTr &&
	t_files_are "$D/imagesTr" ca_0000.nii.gz cb_0000.nii.gz cc_0000.nii.gz &&
	t_files_are "$D/labelsTr" ca.nii.gz cb.nii.gz cc.nii.gz &&
	for c in ca cb cc; do
		t_same_file "$SRC/one/img/$c.nii.gz" "$D/imagesTr/${c}_0000.nii.gz" &&
		t_same_file "$SRC/one/lab/$c.nii.gz" "$D/labelsTr/$c.nii.gz" || exit 1
	done &&
	t_stderr_empty
'

test_expect_success 'dataset.json: nnU-Net keys in order, indent 4' '
	cat >want <<-\EOF &&
	{
	    "channel_names": {
	        "0": "CT"
	    },
	    "labels": {
	        "background": 0,
	        "liver": 1,
	        "tumour": 2
	    },
	    "numTraining": 3,
	    "file_ending": ".nii.gz",
	    "name": "Dataset042_Liver",
	    "description": "imported by nnp import-dataset"
	}
	EOF
	printf "%s" "$(cat want)" >want1 &&
	t_same_file want1 "$OUT/Dataset042_Liver/dataset.json"
'

test_expect_success 'the result passes nnp cases and round-trips through nnp read | nnp info' '
	t_code 0 nnp-cases "$OUT/Dataset042_Liver" && printf "ca\ncb\ncc\n" >want &&
	t_same_file want stdout && t_stderr_empty &&
	nnp-read --dataset "$OUT/Dataset042_Liver" --case cb | nnp-info --json >info &&
	"$PYTHON" -c "
import json
f = [json.loads(l) for l in open(\"info\")]
assert [(x[\"role\"], x[\"shape\"], x[\"dtype\"]) for x in f] == \
    [(\"image\", [1, 5, 6, 7], \"int16\"), (\"label\", [1, 5, 6, 7], \"uint8\")], f
"
'

test_expect_success 'nnp read of an imported case equals reading the source files' '
	nnp-read --dataset "$OUT/Dataset042_Liver" --case ca | nnp-info | grep -v "^  props" >ia &&
	nnp-read "$SRC/one/img/ca.nii.gz" --label "$SRC/one/lab/ca.nii.gz" | nnp-info |
		grep -v "^  props" >ib &&
	t_same_file ia ib && test "$(grep -c "^frame" ia)" = 2
'

test_expect_success 'existing output: exit 2, untouched; --force replaces it' '
	D="$OUT/Dataset042_Liver" && echo stale >"$D/stale" &&
	t_code 2 $IMP "${ONE[@]}" -o "$OUT" &&
	t_err_line nnp-import-dataset "$D" "--force" && test -f "$D/stale" &&
	t_code 0 $IMP "${ONE[@]}" -o "$OUT" --force &&
	t_no_file "$D/stale" && test -f "$D/imagesTr/ca_0000.nii.gz" && no_leftovers "$OUT"
'

test_expect_success '$nnUNet_raw is the default output; nnp cases finds the id' '
	R=$(t_tmpdir) &&
	nnUNet_raw="$R" t_code 0 $IMP "${ONE[@]}" &&
	nnUNet_raw="$R" t_code 0 nnp-cases 42 && test "$(wc -l <stdout)" = 3
'

test_expect_success '--test-images -> imagesTs/CASE_0000.nii.gz' '
	R=$(t_tmpdir) &&
	t_code 0 $IMP "${ONE[@]}" --test-images "$SRC/one/ts" -o "$R" &&
	t_files_are "$R/Dataset042_Liver/imagesTs" t1_0000.nii.gz &&
	t_code 0 nnp-cases --split Ts "$R/Dataset042_Liver" && test "$(cat stdout)" = t1
'

test_expect_success '--link: hard links (same inode)' '
	R=$(t_tmpdir) &&
	t_code 0 $IMP "${ONE[@]}" --link -o "$R" &&
	test "$(stat -c %i "$SRC/one/img/ca.nii.gz")" = "$(stat -c %i "$R/Dataset042_Liver/imagesTr/ca_0000.nii.gz")" &&
	test "$(stat -c %i "$SRC/one/lab/cc.nii.gz")" = "$(stat -c %i "$R/Dataset042_Liver/labelsTr/cc.nii.gz")"
'

test_expect_success 'one channel, files already named CASE_0000: the suffix is not doubled' '
	R=$(t_tmpdir) && mkdir -p "$R/in/img" &&
	for c in ca cb cc; do cp "$SRC/one/img/$c.nii.gz" "$R/in/img/${c}_0000.nii.gz"; done &&
	t_code 0 $IMP --images "$R/in/img" --labels "$SRC/one/lab" --channels CT \
		--labels-map background=0,liver=1,tumour=2 -d 43 -n Pre -o "$R" &&
	t_files_are "$R/Dataset043_Pre/imagesTr" ca_0000.nii.gz cb_0000.nii.gz cc_0000.nii.gz
'

test_expect_success 'one channel, case ids ending in _0000 with labels named alike: kept whole' '
	R=$(t_tmpdir) && mkdir -p "$R/in/img" "$R/in/lab" &&
	cp "$SRC/one/img/ca.nii.gz" "$R/in/img/pt_0000.nii.gz" &&
	cp "$SRC/one/lab/ca.nii.gz" "$R/in/lab/pt_0000.nii.gz" &&
	t_code 0 $IMP --images "$R/in/img" --labels "$R/in/lab" --channels CT \
		--labels-map background=0,a=1,b=2 -d 44 -n Num -o "$R" &&
	t_files_are "$R/Dataset044_Num/imagesTr" pt_0000_0000.nii.gz &&
	t_files_are "$R/Dataset044_Num/labelsTr" pt_0000.nii.gz
'

test_expect_success 'two channels from CASE_0000/CASE_0001 files' '
	t_code 0 $IMP --images "$SRC/two/img" --labels "$SRC/two/lab" --channels T1,T2 \
		--labels-map background=0,lesion=1 -d 50 -n Two -o "$OUT" &&
	D="$OUT/Dataset050_Two" &&
	t_files_are "$D/imagesTr" x_0000.nii.gz x_0001.nii.gz y_0000.nii.gz y_0001.nii.gz &&
	t_same_file "$SRC/two/img/y_0001.nii.gz" "$D/imagesTr/y_0001.nii.gz" &&
	"$PYTHON" -c "
import json
d = json.load(open(\"$D/dataset.json\"))
assert d[\"channel_names\"] == {\"0\": \"T1\", \"1\": \"T2\"} and d[\"numTraining\"] == 2, d
" &&
	nnp-read --dataset "$D" --case x | nnp-info --json >info &&
	grep -q "\"shape\":\[2,5,6,7\]" info
'

test_expect_success 'two channels from 4D files in a loose folder: split' '
	R=$(t_tmpdir) && mkdir -p "$R/in/img" "$R/in/lab" &&
	cp "$T/imagesTr/p1.nii.gz" "$R/in/img/" && cp "$T/labelsTr/p1.nii.gz" "$R/in/lab/" &&
	t_code 0 $IMP --images "$R/in/img" --labels "$R/in/lab" --channels CT,T2 \
		--labels-map background=0,a=1,b=2 -d 51 -n Four -o "$R" &&
	t_files_are "$R/Dataset051_Four/imagesTr" p1_0000.nii.gz p1_0001.nii.gz &&
	same_voxels "$T/imagesTr/p1.nii.gz" "$R/Dataset051_Four/imagesTr/p1_0001.nii.gz" 1
'

test_expect_success '.nii inputs of a .nii.gz dataset are converted (same header and voxels)' '
	R=$(t_tmpdir) && mkdir -p "$R/in/img" "$R/in/lab" &&
	mknii --dtype u16 --seed 11 --geom-seed 12 "$R/in/img/n1.nii" &&
	mknii --dtype u8 --values labels:2 --geom-seed 12 "$R/in/lab/n1.nii" &&
	t_code 0 $IMP --images "$R/in/img" --labels "$R/in/lab" --channels MR \
		--labels-map background=0,a=1 -d 52 -n Nii -o "$R" &&
	niicmp "$R/in/img/n1.nii" "$R/Dataset052_Nii/imagesTr/n1_0000.nii.gz" &&
	niicmp "$R/in/lab/n1.nii" "$R/Dataset052_Nii/labelsTr/n1.nii.gz"
'

test_expect_success '--file-ending .nii writes .nii files and says so in dataset.json' '
	R=$(t_tmpdir) &&
	t_code 0 $IMP "${ONE[@]}" --file-ending .nii -o "$R" &&
	t_files_are "$R/Dataset042_Liver/labelsTr" ca.nii cb.nii cc.nii &&
	niicmp "$SRC/one/img/cb.nii.gz" "$R/Dataset042_Liver/imagesTr/cb_0000.nii" &&
	grep -q "\"file_ending\": \".nii\"" "$R/Dataset042_Liver/dataset.json" &&
	t_code 0 nnp-cases "$R/Dataset042_Liver"
'

test_expect_success 'MSD task: 4D 2-modality images split into CASE_0000/0001, like nnU-Net' '
	t_code 0 $IMP --msd "$T" -o "$OUT" &&
	D="$OUT/Dataset007_Pancreas" &&
	t_files_are "$D" dataset.json imagesTr labelsTr imagesTs &&
	t_files_are "$D/imagesTr" p1_0000.nii.gz p1_0001.nii.gz p2_0000.nii.gz p2_0001.nii.gz &&
	t_files_are "$D/labelsTr" p1.nii.gz p2.nii.gz &&
	t_files_are "$D/imagesTs" q1_0000.nii.gz q1_0001.nii.gz &&
	for c in p1 p2; do
		same_voxels "$T/imagesTr/$c.nii.gz" "$D/imagesTr/${c}_0000.nii.gz" 0 &&
		same_voxels "$T/imagesTr/$c.nii.gz" "$D/imagesTr/${c}_0001.nii.gz" 1 &&
		t_same_file "$T/labelsTr/$c.nii.gz" "$D/labelsTr/$c.nii.gz" || exit 1
	done &&
	same_voxels "$T/imagesTs/q1.nii.gz" "$D/imagesTs/q1_0001.nii.gz" 1
'

test_expect_success 'MSD dataset.json: convert_msd_dataset keys and order' '
	"$PYTHON" -c "
import json
d = json.load(open(\"$OUT/Dataset007_Pancreas/dataset.json\"))
assert list(d) == [\"name\", \"description\", \"reference\", \"licence\", \"release\",
    \"tensorImageSize\", \"labels\", \"numTraining\", \"numTest\", \"file_ending\",
    \"channel_names\"], list(d)
assert d[\"labels\"] == {\"background\": 0, \"pancreas\": 1, \"cancer\": 2}, d
assert list(d[\"labels\"]) == [\"background\", \"pancreas\", \"cancer\"]
assert d[\"channel_names\"] == {\"0\": \"CT\", \"1\": \"T2\"} and d[\"numTraining\"] == 2, d
assert d[\"file_ending\"] == \".nii.gz\", d
"
'

test_expect_success 'MSD result: nnp cases and nnp read | nnp info (2 channels + label)' '
	t_code 0 nnp-cases -i "$OUT/Dataset007_Pancreas" &&
	test "$(cut -f1 stdout | tr "\n" " ")" = "p1 p2 " &&
	nnp-read --dataset "$OUT/Dataset007_Pancreas" --case p2 | nnp-info --json >info &&
	"$PYTHON" -c "
import json
f = [json.loads(l) for l in open(\"info\")]
assert [(x[\"role\"], x[\"shape\"]) for x in f] == [(\"image\", [2, 5, 6, 7]), (\"label\", [1, 5, 6, 7])], f
"
'

test_expect_success 'MSD: -d and -n override TaskNN_Name' '
	R=$(t_tmpdir) &&
	t_code 0 $IMP --msd "$T/" -d 107 -n Panc -o "$R" && t_files_are "$R" Dataset107_Panc
'

test_expect_success 'unpaired label: exit 1 naming it; no output, nothing left' '
	R=$(t_tmpdir) && mkdir -p "$R/lab" && cp "$SRC/one/lab/"*.nii.gz "$R/lab/" &&
	cp "$SRC/one/lab/ca.nii.gz" "$R/lab/zz_orphan.nii.gz" && mkdir -p "$R/out" &&
	t_code 1 $IMP --images "$SRC/one/img" --labels "$R/lab" --channels CT \
		--labels-map background=0,a=1,b=2 -d 60 -n Orphan -o "$R/out" &&
	t_err_line nnp-import-dataset "zz_orphan.nii.gz" "no image" &&
	t_files_are "$R/out"
'

test_expect_success 'image without a label: exit 1 naming the case and the label expected' '
	R=$(t_tmpdir) && mkdir -p "$R/lab" && cp "$SRC/one/lab/ca.nii.gz" "$SRC/one/lab/cc.nii.gz" "$R/lab/" &&
	t_code 1 $IMP --images "$SRC/one/img" --labels "$R/lab" --channels CT \
		--labels-map background=0,a=1,b=2 -d 61 -n NoLab -o "$R/out" &&
	t_err_line nnp-import-dataset "cb.nii.gz" "no label" &&
	t_no_file "$R/out"
'

test_expect_success 'label of another shape than its image: exit 1 naming it; nothing left' '
	R=$(t_tmpdir) && mkdir -p "$R/lab" "$R/out" && cp "$SRC/one/lab/"*.nii.gz "$R/lab/" &&
	mknii --dtype u8 --shape 7,6,4 --values labels:2 --geom-seed 3 "$R/lab/cb.nii.gz" &&
	t_code 1 $IMP --images "$SRC/one/img" --labels "$R/lab" --channels CT \
		--labels-map background=0,a=1,b=2 -d 62 -n Shape -o "$R/out" &&
	t_err_line nnp-import-dataset "$R/lab/cb.nii.gz" "7x6x4" "7x6x5" &&
	t_files_are "$R/out"
'

test_expect_success 'channel files of different shapes, wrong channel counts: exit 1' '
	R=$(t_tmpdir) && mkdir -p "$R/img" && cp "$SRC/two/img/"*.nii.gz "$R/img/" &&
	mknii --dtype f32 --shape 8,6,5 --geom-seed 6 "$R/img/y_0001.nii.gz" &&
	t_code 1 $IMP --images "$R/img" --labels "$SRC/two/lab" --channels T1,T2 \
		--labels-map background=0,a=1 -d 63 -n Bad -o "$R/out" &&
	t_err_line nnp-import-dataset "$R/img/y_0001.nii.gz" "8x6x5" &&
	t_code 1 $IMP --images "$SRC/one/img" --labels "$SRC/one/lab" --channels T1,T2 \
		--labels-map background=0,a=1,b=2 -d 63 -n Bad -o "$R/out" &&
	t_err_line nnp-import-dataset "1 volume" "2 channels" "--channels" &&
	t_no_file "$R/out"
'

test_expect_success 'a corrupt image: exit 1 naming it; the output folder stays empty' '
	R=$(t_tmpdir) && mkdir -p "$R/img" "$R/out" && cp "$SRC/one/img/"*.nii.gz "$R/img/" &&
	echo "not an image" | gzip >"$R/img/cc.nii.gz" &&
	t_code 1 $IMP --images "$R/img" --labels "$SRC/one/lab" --channels CT \
		--labels-map background=0,a=1,b=2 -d 65 -n Corrupt -o "$R/out" &&
	t_err_line nnp-import-dataset "$R/img/cc.nii.gz" &&
	t_files_are "$R/out"
'

test_expect_success 'a truncated .nii label: exit 1 naming it' '
	R=$(t_tmpdir) && mkdir -p "$R/lab" && cp "$SRC/one/lab/"*.nii.gz "$R/lab/" &&
	mknii --dtype u8 --values labels:2 --geom-seed 3 "$R/full.nii" &&
	head -c 400 "$R/full.nii" >"$R/lab/cb.nii" && rm "$R/lab/cb.nii.gz" &&
	t_code 1 $IMP --images "$SRC/one/img" --labels "$R/lab" --channels CT \
		--labels-map background=0,a=1,b=2 -d 65 -n Corrupt -o "$R/out" &&
	t_err_line nnp-import-dataset "$R/lab/cb.nii" truncated && t_no_file "$R/out"
'

test_expect_success 'other files are ignored with a warning; hidden files quietly' '
	R=$(t_tmpdir) && mkdir -p "$R/img" && cp "$SRC/one/img/"*.nii.gz "$R/img/" &&
	echo "notes" >"$R/img/readme.txt" && : >"$R/img/.DS_Store" &&
	t_code 0 $IMP --images "$R/img" --labels "$SRC/one/lab" --channels CT \
		--labels-map background=0,a=1,b=2 -d 67 -n Warn -o "$R/out" &&
	test "$(wc -l <stderr)" = 1 && grep -q "warning: ignoring .*readme.txt.*not a NIfTI" stderr &&
	t_files_are "$R/out/Dataset067_Warn/imagesTr" ca_0000.nii.gz cb_0000.nii.gz cc_0000.nii.gz
'

test_expect_success 'a dataset id used by another name: exit 2 naming it' '
	t_code 2 $IMP "${ONE[@]/Liver/Other}" -o "$OUT" &&
	t_err_line nnp-import-dataset "Dataset042_Liver" "-d" &&
	t_no_file "$OUT/Dataset042_Other" &&
	t_code 2 $IMP --msd "$T" -n Other -o "$OUT" &&
	t_err_line nnp-import-dataset "Dataset007_Pancreas" "-d" &&
	t_no_file "$OUT/Dataset007_Other"
'

test_expect_success 'SIGTERM during an import removes the temporary folder' '
	R=$(t_tmpdir) && mkdir -p "$R/img" "$R/lab" "$R/out" &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
a = np.zeros((256, 256, 256), np.float32)
nib.save(nib.Nifti1Image(a, np.eye(4)), \"$R/img/big.nii\")
nib.save(nib.Nifti1Image(a.astype(np.uint8), np.eye(4)), \"$R/lab/big.nii\")
" &&
	for i in 1 2 3 4 5 6 7 8; do ln "$R/img/big.nii" "$R/img/big$i.nii"; ln "$R/lab/big.nii" "$R/lab/big$i.nii"; done &&
	{ $IMP --images "$R/img" --labels "$R/lab" --channels CT --labels-map background=0,a=1 \
		-d 66 -n Sig -o "$R/out" 2>err & } && pid=$! &&
	for i in $(seq 50); do [ -n "$(ls -A "$R/out")" ] && break; sleep 0.05; done &&
	kill -TERM $pid; rc=0; wait $pid || rc=$? &&
	echo "exit $rc" && test $rc = 143 -o $rc = 0 &&
	if [ $rc = 143 ]; then t_files_are "$R/out"; else t_files_are "$R/out" Dataset066_Sig; fi
'

test_expect_success 'bad labels maps are usage errors' '
	for m in liver=1 background=1,liver=0 background=0,liver=2 background=0,a=1,a=2 \
		background=0,liver background=0,liver=x; do
		t_code 2 $IMP --images "$SRC/one/img" --labels "$SRC/one/lab" --channels CT \
			--labels-map "$m" -d 70 -n Bad -o "$OUT" && t_err_line nnp-import-dataset labels || exit 1
	done &&
	t_no_file "$OUT/Dataset070_Bad"
'

test_expect_success 'bad options are usage errors' '
	t_code 2 $IMP && t_err_line nnp-import-dataset "--msd" &&
	t_code 2 $IMP --images a --labels b --labels-map background=0 -d 1 -n X -o o &&
	t_err_line nnp-import-dataset "--channels" &&
	t_code 2 $IMP "${ONE[@]}" && t_err_line nnp-import-dataset nnUNet_raw --out &&
	t_code 2 $IMP --msd "$T" --channels CT -o "$OUT" && t_err_line nnp-import-dataset "--msd" &&
	t_code 2 $IMP "${ONE[@]}" -o "$OUT" --file-ending .mha && t_err_line nnp-import-dataset ".mha" &&
	t_code 2 $IMP "${ONE[@]/Liver/a\/b}" -o "$OUT" && t_err_line nnp-import-dataset "a/b" &&
	t_code 2 $IMP "${ONE[@]/42/1000}" -o "$OUT" && t_err_line nnp-import-dataset "--id" &&
	t_code 2 $IMP --msd "$SRC/one" -o "$OUT" && t_err_line nnp-import-dataset "TaskNN_Name" &&
	t_code 2 $IMP --bogus && t_err_line nnp-import-dataset "--bogus" &&
	t_code 0 $IMP --help && grep -q "nnp import-dataset" stdout &&
	t_code 0 $IMP --version && grep -q "nnp-import-dataset" stdout &&
	no_leftovers "$OUT"
'

done_testing
