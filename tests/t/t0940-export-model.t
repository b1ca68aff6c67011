#!/bin/bash
# t0940-export-model.t — nnp export-model writes nnU-Net results folders back
# from nnpipe model files (and results folders).  Round trip: the fixture
# folders (checkpoints written by real torch) -> nnp import-model -> .nnpm ->
# nnp export-model --nnunet -> a folder whose checkpoints
#  - tests/tools/pthcheck.py reads with Python's pickle + zipfile (torch
#    stand-ins): STORED 64-byte aligned members, the same state_dict names in
#    the same order as the torch-written original, the same storage key per
#    name (aliases share storage), bit-identical values (the deep-supervision
#    heads a model file lacks are zeros), the same _metadata, init_args,
#    trainer, mirror axes, epoch; pickling the loaded object again with
#    Python's pickler gives the same bytes;
#  - nnpipe reads back: nnp inspect-model lists what the original lists,
#    nnp infer gives bit-identical logits, a re-import has the same payloads;
#  - torch.load reads (only when python3 can import torch).
# Then refusals: a missing model, a truncated or corrupt model file (nothing
# left behind), existing outputs without --force, usage errors.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-export-model nnp-import-model nnp-infer nnp-inspect-model nnp-read

R901="$T_FIXTURES/results/Dataset901_Spheres/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
R903="$T_FIXTURES/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
IN901="$T_FIXTURES/inference/Dataset901_Spheres/forward_fold0/input.nii.gz"
IN903="$T_FIXTURES/inference/Dataset903_MultiChannel/mc_101/preprocessed_data.nii.gz"
CHECK="$T_PYTOOLS/pthcheck.py"

# pth_like RES OUT FOLD [pthcheck options]: OUT/fold_FOLD against RES/fold_FOLD
pth_like() {
	local res=$1 out=$2 fold=$3
	shift 3
	"$PYTHON" "$CHECK" check "$out/fold_$fold/checkpoint_final.pth" --like "$res/fold_$fold/checkpoint_final.pth" \
		--fold "$fold" --trainer nnUNetTrainer --config 3d_fullres --mirror 0 1 2 \
		--plans "$res/plans.json" --dataset "$res/dataset.json" "$@"
}

# payload_shas FILE.nnpm: one line per fold, "fold sha256"
payload_shas() {
	"$PYTHON" -c '
import json, sys, msgpack
u = msgpack.Unpacker(raw=False)
u.feed(open(sys.argv[1], "rb").read())
for f in json.loads(next(u)["header"])["folds"]:
    print(f["fold"], f["sha256"])' "$1"
}

test_expect_success 'setup: both fixture models as nnpipe model files' '
	nnp import-model -m "$R901" -f 0 1 -o m901.nnpm &&
	nnp import-model -m "$R903" -f 0 1 -o m903.nnpm
'

test_expect_success 'export a model file: the nnU-Net folder layout, plans and dataset.json, nothing else' '
	t_code 0 nnp export-model m901.nnpm --nnunet -o e901 &&
	t_files_are e901 plans.json dataset.json fold_0 fold_1 &&
	t_files_are e901/fold_0 checkpoint_final.pth && t_files_are e901/fold_1 checkpoint_final.pth &&
	check_no_tmp e901 &&
	"$PYTHON" -c "
import json, sys
for n in (\"plans.json\", \"dataset.json\"):
    assert json.load(open(\"e901/\" + n)) == json.load(open(\"$R901/\" + n)), n
" &&
	nnp export-model m903.nnpm --nnunet -o e903
'

test_expect_success 'pthcheck: 901 checkpoints equal the torch-written originals (names, order, aliases, values)' '
	pth_like "$R901" e901 0 --zero-ds --epoch 1000 &&
	pth_like "$R901" e901 1 --zero-ds --epoch 1000
'

test_expect_success 'pthcheck: 903 checkpoints equal the torch-written originals' '
	pth_like "$R903" e903 0 --zero-ds --epoch 1000 &&
	pth_like "$R903" e903 1 --zero-ds --epoch 1000
'

test_expect_success 'export a results folder: every tensor including the deep-supervision heads, its epoch' '
	nnp export-model "$R901" -o f901 &&
	t_files_are f901 plans.json dataset.json fold_0 fold_1 &&
	pth_like "$R901" f901 0 --epoch 1 && pth_like "$R901" f901 1 --epoch 1
'

test_expect_success 'pthcheck notices a wrong value, order or epoch' '
	! pth_like "$R901" e901 0 --epoch 1000 >out.txt &&
	grep -q "decoder.seg_layers.0.weight: values differ" out.txt &&
	! pth_like "$R901" e901 0 --zero-ds --epoch 7 >out.txt && grep -q "current_epoch 1000" out.txt &&
	! "$PYTHON" "$CHECK" check e901/fold_0/checkpoint_final.pth --like "$R903/fold_0/checkpoint_final.pth" >out.txt &&
	grep -q "state_dict names differ" out.txt
'

test_expect_success 'nnp inspect-model lists the same tensors as for the original' '
	for f in 0 1; do
		nnp inspect-model "$R901/fold_$f/checkpoint_final.pth" | sed -n "/^tensors:/,\$p" >a.txt &&
		nnp inspect-model e901/fold_$f/checkpoint_final.pth | sed -n "/^tensors:/,\$p" >b.txt &&
		grep -q "^tensors: 240 (88 storages)$" b.txt && t_same_file a.txt b.txt || return 1
	done &&
	nnp inspect-model e903/fold_1/checkpoint_final.pth >i.txt &&
	grep -q "^epoch: 1000$" i.txt && grep -q "^fold: 1$" i.txt && grep -q "^device: \"cpu\"$" i.txt &&
	grep -q "^mirroring axes: \[0,1,2\]$" i.txt
'

test_expect_success 'nnp infer with the exported folder: bit-identical logits (two folds)' '
	nnp read "$IN901" >i901.nnp && nnp read "$IN903" >i903.nnp &&
	nnp infer -m "$R901" -f 0 1 --disable-tta i901.nnp >a.nnp &&
	nnp infer -m e901 -f 0 1 --disable-tta i901.nnp >b.nnp && t_same_file a.nnp b.nnp &&
	nnp infer -m "$R903" -f 0 1 --disable-tta i903.nnp >a.nnp &&
	nnp infer -m e903 -f 0 1 --disable-tta i903.nnp >b.nnp && t_same_file a.nnp b.nnp
'

test_expect_success 'a re-import of the exported folder has the same payloads' '
	nnp import-model -m e901 -f 0 1 -o again.nnpm &&
	payload_shas m901.nnpm >a.txt && payload_shas again.nnpm >b.txt &&
	test "$(wc -l <a.txt)" = 2 && t_same_file a.txt b.txt
'

test_expect_success '-f selects folds; exporting the same model twice gives the same bytes' '
	nnp export-model m903.nnpm -f 1 -o one &&
	t_files_are one plans.json dataset.json fold_1 &&
	t_same_file one/fold_1/checkpoint_final.pth e903/fold_1/checkpoint_final.pth &&
	nnp export-model -m m903.nnpm -f 0 -o one &&
	t_files_are one plans.json dataset.json fold_0 fold_1 &&
	t_same_file one/fold_0/checkpoint_final.pth e903/fold_0/checkpoint_final.pth &&
	t_same_file one/plans.json e903/plans.json
'

"$PYTHON" -c "import torch" 2>/dev/null && test_set_prereq TORCH

test_expect_success TORCH 'torch.load reads the exported checkpoints' '
	"$PYTHON" "$CHECK" torch e901/fold_0/checkpoint_final.pth e901/fold_1/checkpoint_final.pth \
		e903/fold_0/checkpoint_final.pth e903/fold_1/checkpoint_final.pth --zero-ds \
		--like "$R901/fold_0/checkpoint_final.pth" "$R901/fold_1/checkpoint_final.pth" \
		"$R903/fold_0/checkpoint_final.pth" "$R903/fold_1/checkpoint_final.pth" &&
	"$PYTHON" "$CHECK" torch f901/fold_0/checkpoint_final.pth f901/fold_1/checkpoint_final.pth \
		--plans "$R901/plans.json" \
		--like "$R901/fold_0/checkpoint_final.pth" "$R901/fold_1/checkpoint_final.pth"
'

test_expect_success 'a missing model: exit 1, nothing created' '
	t_code 1 nnp export-model nosuch.nnpm -o x1 &&
	t_err_line nnp-export-model "nosuch.nnpm" && t_no_file x1 &&
	mkdir empty && t_code 1 nnp export-model empty -o x1 &&
	t_err_line nnp-export-model "no fold_" && t_no_file x1 &&
	t_code 1 nnp export-model "$IN901" -o x1 && t_err_line nnp-export-model "not an nnpipe model file" &&
	t_code 1 nnp export-model m901.nnpm -f 3 -o x1 && t_err_line nnp-export-model "requested folds" &&
	t_no_file x1
'

test_expect_success 'a truncated or corrupt model file: exit 1, no partial files' '
	size=$(stat -c %s m901.nnpm) &&
	head -c $((size - 100)) m901.nnpm >short.nnpm &&
	t_code 1 nnp export-model short.nnpm -o x2 &&
	t_err_line nnp-export-model "short.nnpm" "truncated" && t_no_file x2 &&
	cp m901.nnpm bad.nnpm &&
	printf "\\x7f" | dd of=bad.nnpm bs=1 seek=$((size - 1000)) conv=notrunc 2>/dev/null &&
	t_code 1 nnp export-model bad.nnpm -o x2 &&
	t_err_line nnp-export-model "sha256 mismatch" && t_no_file x2 &&
	mkdir keep && t_code 1 nnp export-model bad.nnpm -o keep &&
	t_files_are keep && check_no_tmp .
'

test_expect_success 'existing outputs: refused without --force (exit 2, unchanged), replaced with it' '
	cp -r e903 again && sha=$(sha256sum again/fold_0/checkpoint_final.pth) &&
	t_code 2 nnp export-model m901.nnpm -o again &&
	t_err_line nnp-export-model "again/fold_0/checkpoint_final.pth" "exists" "--force" &&
	test "$(sha256sum again/fold_0/checkpoint_final.pth)" = "$sha" &&
	rm -r again/fold_0 again/fold_1 &&
	t_code 2 nnp export-model m901.nnpm -o again &&
	t_err_line nnp-export-model "again/plans.json" "differs" && t_files_are again plans.json dataset.json &&
	t_code 0 nnp export-model m901.nnpm -o again --force &&
	t_same_file again/plans.json e901/plans.json &&
	t_same_file again/fold_1/checkpoint_final.pth e901/fold_1/checkpoint_final.pth &&
	t_code 0 nnp export-model m901.nnpm -o again --force && check_no_tmp again
'

test_expect_success 'usage errors exit 2' '
	t_code 2 nnp export-model m901.nnpm &&
	t_code 2 nnp export-model -o x3 &&
	t_code 2 nnp export-model m901.nnpm -o x3 extra &&
	t_code 2 nnp export-model m901.nnpm -o x3 -f 0,x &&
	t_code 2 nnp export-model m901.nnpm -o x3 --bogus &&
	t_no_file x3 &&
	nnp export-model --help >help.txt && grep -q "checkpoint_final.pth" help.txt &&
	nnp export-model --version >/dev/null
'
done_testing
