#!/bin/bash
# t0200-cases.t — nnp-cases lists the cases of raw datasets like nnU-Net:
# sorted ids, channel files in filename order, labels, the "dataset" dict,
# dataset ids looked up in $nnUNet_raw, and one clear error per broken
# dataset.  Datasets are built here from empty files.
. "$(dirname "$0")/lib.sh"
[ -x "$NNP_BIN/nnp-cases" ] || bail_out "$NNP_BIN/nnp-cases is not built (run make)"

RAW=$(t_tmpdir)
unset nnUNet_raw nnUNet_preprocessed nnUNet_results

# mkds NAME JSON FILE...: a dataset folder in $RAW with empty FILEs.
mkds() {
	local d="$RAW/$1" f
	shift
	mkdir -p "$d"
	printf '%s\n' "$1" >"$d/dataset.json"
	shift
	for f in "$@"; do
		mkdir -p "$d/$(dirname "$f")"
		: >"$d/$f"
	done
}

J2='{"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "a": 1},
 "numTraining": 3, "file_ending": ".nii.gz"}'
mkds Dataset042_Two "$J2" \
	imagesTr/c_b_0001.nii.gz imagesTr/c_b_0000.nii.gz \
	imagesTr/c_a_0001.nii.gz imagesTr/c_a_0000.nii.gz \
	imagesTr/c_a_x_0000.nii.gz imagesTr/c_a_x_0001.nii.gz \
	imagesTr/readme.txt \
	labelsTr/c_a.nii.gz labelsTr/c_b.nii.gz \
	imagesTs/t_1_0000.nii.gz imagesTs/t_1_0001.nii.gz
D42="$RAW/Dataset042_Two"

test_plan 21

test_expect_success 'lists sorted case ids of a folder' '
	t_code 0 nnp-cases "$D42" &&
	printf "c_a\nc_a_x\nc_b\n" >want &&
	t_same_file want stdout && t_stderr_empty
'

test_expect_success 'resolves a dataset id in $nnUNet_raw' '
	nnUNet_raw="$RAW" t_code 0 nnp-cases 42 &&
	printf "c_a\nc_a_x\nc_b\n" >want && t_same_file want stdout
'

test_expect_success 'resolves a DatasetXXX_Name in $nnUNet_raw' '
	nnUNet_raw="$RAW" t_code 0 nnp-cases Dataset042_Two &&
	test "$(wc -l <stdout)" -eq 3
'

test_expect_success 'the nnp front end runs cases' '
	if [ -x "$NNP_BIN/nnp" ]; then
		nnUNet_raw="$RAW" t_code 0 nnp cases 042 && test "$(wc -l <stdout)" -eq 3
	fi
'

test_expect_success '--images: channel files in filename order, label or -' '
	t_code 0 nnp-cases --images "$D42" &&
	T=$(printf "\t") &&
	printf "%s\n" \
		"c_a$T$D42/imagesTr/c_a_0000.nii.gz$T$D42/imagesTr/c_a_0001.nii.gz$T$D42/labelsTr/c_a.nii.gz" \
		"c_a_x$T$D42/imagesTr/c_a_x_0000.nii.gz$T$D42/imagesTr/c_a_x_0001.nii.gz$T-" \
		"c_b$T$D42/imagesTr/c_b_0000.nii.gz$T$D42/imagesTr/c_b_0001.nii.gz$T$D42/labelsTr/c_b.nii.gz" >want &&
	t_same_file want stdout
'

test_expect_success '--split Ts lists imagesTs' '
	t_code 0 nnp-cases --split Ts -i "$D42" &&
	T=$(printf "\t") &&
	printf "%s\n" "t_1$T$D42/imagesTs/t_1_0000.nii.gz$T$D42/imagesTs/t_1_0001.nii.gz$T-" >want &&
	t_same_file want stdout
'

test_expect_success '--json is valid JSON with ids, images and labels' '
	t_code 0 nnp-cases --json "$D42" &&
	"$PYTHON" -c "
import json, sys
v = json.load(open(\"stdout\"))
assert [c[\"id\"] for c in v] == [\"c_a\", \"c_a_x\", \"c_b\"], v
assert v[0][\"images\"][1].endswith(\"/imagesTr/c_a_0001.nii.gz\"), v
assert v[1][\"label\"] is None and v[2][\"label\"].endswith(\"labelsTr/c_b.nii.gz\"), v
"
'

mkds Dataset043_Dict '{"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1},
 "numTraining": 2, "file_ending": ".nii.gz", "dataset": {
  "zz": {"images": ["im/zz.nii.gz"], "label": "lb/zz.nii.gz"},
  "aa": {"images": ["$NNP_T_ROOT/aa.nii.gz"], "label": "/abs/aa.nii.gz"}}}'
test_expect_success 'a "dataset" dict keeps its order and resolves paths' '
	NNP_T_ROOT=/data/x t_code 0 nnp-cases -i "$RAW/Dataset043_Dict" &&
	T=$(printf "\t") &&
	printf "%s\n" "zz$T$RAW/Dataset043_Dict/im/zz.nii.gz$T$RAW/Dataset043_Dict/lb/zz.nii.gz" \
		"aa$T/data/x/aa.nii.gz$T/abs/aa.nii.gz" >want &&
	t_same_file want stdout
'

test_expect_success 'numTraining different from the cases found warns' '
	mkds Dataset044_Count "$J2" imagesTr/only_0000.nii.gz &&
	t_code 0 nnp-cases "$RAW/Dataset044_Count" &&
	grep -q "numTraining 3" stderr && test "$(cat stdout)" = only
'

# ---- errors
test_expect_success 'unset nnUNet_raw with an id: usage error with the fix' '
	t_code 2 nnp-cases 42 &&
	t_err_line nnp-cases "nnUNet_raw" "export nnUNet_raw=" "dataset folder"
'

test_expect_success 'unknown id: names the id and nnUNet_raw' '
	nnUNet_raw="$RAW" t_code 1 nnp-cases 777 &&
	t_err_line nnp-cases 777 nnUNet_raw
'

test_expect_success 'ambiguous id: lists the matching folders' '
	mkds Dataset042_Again "$J2" &&
	nnUNet_raw="$RAW" t_code 1 nnp-cases 42 &&
	t_err_line nnp-cases Dataset042_Again Dataset042_Two &&
	rm -r "$RAW/Dataset042_Again"
'

test_expect_success 'missing dataset.json is named' '
	mkdir -p "$RAW/Dataset050_NoJson/imagesTr" &&
	t_code 1 nnp-cases "$RAW/Dataset050_NoJson" &&
	t_err_line nnp-cases "Dataset050_NoJson/dataset.json"
'

test_expect_success 'malformed JSON: file, line and column' '
	mkds Dataset051_Bad "{\"labels\": {\"background\": 0,}
}" &&
	t_code 1 nnp-cases "$RAW/Dataset051_Bad" &&
	t_err_line nnp-cases "Dataset051_Bad/dataset.json" "line 1" column
'

test_expect_success 'background not 0: file and JSON path' '
	mkds Dataset052_Bg "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 1},
 \"numTraining\": 1, \"file_ending\": \".nii.gz\"}" &&
	t_code 1 nnp-cases "$RAW/Dataset052_Bg" &&
	t_err_line nnp-cases "Dataset052_Bg/dataset.json" "labels.background: must be 0"
'

test_expect_success 'missing imagesTr is named' '
	mkds Dataset053_NoImg "$J2" &&
	t_code 1 nnp-cases "$RAW/Dataset053_NoImg" &&
	t_err_line nnp-cases "Dataset053_NoImg/imagesTr"
'

test_expect_success 'a misnamed image file is named' '
	mkds Dataset054_Name "$J2" imagesTr/good_0000.nii.gz imagesTr/good.nii.gz &&
	t_code 1 nnp-cases "$RAW/Dataset054_Name" &&
	t_err_line nnp-cases "good.nii.gz" "imagesTr"
'

test_expect_success '--folder: a loose images folder with a dataset.json (the input of nnp predict)' '
	mkdir -p loose && : >loose/z_0001.nii.gz && : >loose/z_0000.nii.gz && : >loose/a_0000.nii.gz &&
	: >loose/a_0001.nii.gz && : >loose/note.txt &&
	printf "%s" "$J2" >loose.json &&
	nnp-cases --folder loose --images loose.json >out &&
	printf "a\tloose/a_0000.nii.gz\tloose/a_0001.nii.gz\t-\nz\tloose/z_0000.nii.gz\tloose/z_0001.nii.gz\t-\n" >want &&
	cmp want out &&
	mkdir -p jdir && cp loose.json jdir/dataset.json && nnp-cases --folder loose jdir >out2 &&
	printf "a\nz\n" >want2 && cmp want2 out2
'

test_expect_success '--folder: a case without all channels, an empty folder, a missing folder: exit 1 naming it' '
	mkdir -p loose2 && : >loose2/b_0000.nii.gz &&
	t_code 1 nnp-cases --folder loose2 loose.json &&
	t_err_line nnp-cases "case '\''b'\''" "1 channel file(s)" "2 channel(s)" &&
	mkdir -p none && t_code 1 nnp-cases --folder none loose.json && t_err_line nnp-cases "no images ending in" &&
	t_code 1 nnp-cases --folder nowhere loose.json && t_err_line nnp-cases "nowhere"
'

test_expect_success 'bad options are usage errors' '
	t_code 2 nnp-cases --split Val "$D42" && t_err_line nnp-cases "--split" &&
	t_code 2 nnp-cases && t_err_line nnp-cases DATASET &&
	t_code 2 nnp-cases --bogus "$D42" && t_err_line nnp-cases "--bogus" &&
	t_code 2 nnp-cases "$D42" extra && t_err_line nnp-cases extra
'

test_expect_success '--help and --version exit 0' '
	t_code 0 nnp-cases --help && grep -q "nnp cases" stdout &&
	t_code 0 nnp-cases --version && grep -q "nnp-cases" stdout
'

done_testing
