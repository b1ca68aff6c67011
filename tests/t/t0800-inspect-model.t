#!/bin/bash
# t0800-inspect-model.t — nnp-inspect-model lists the tensors of the
# Dataset903 checkpoints (names/shapes checked against state_dict.json made
# with torch), --json parses, and bad files / bad usage exit 1 / 2.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-inspect-model

RES="$T_FIXTURES/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
SD="$T_FIXTURES/inference/Dataset903_MultiChannel/state_dict.json"

test_expect_success 'text output names trainer, epoch and tensors' '
	nnp-inspect-model "$RES/fold_0/checkpoint_final.pth" >out.txt &&
	grep -q "^trainer: nnUNetTrainer$" out.txt &&
	grep -q "^epoch: 1$" out.txt &&
	grep -q "^tensors: 188 (68 storages)$" out.txt &&
	grep -q "^encoder.stages.0.0.convs.0.conv.weight	float32	\[4, 2, 3, 3, 3\]$" out.txt
'
for fold in fold_0 fold_1; do
test_expect_success "--json matches state_dict.json ($fold)" '
	nnp inspect-model --json "$RES/'$fold'/checkpoint_final.pth" >out.json &&
	"$PYTHON" - "$SD" '$fold' out.json <<-\PY
	import json, sys
	sd = json.load(open(sys.argv[1]))["files"][sys.argv[2]]
	got = json.load(open(sys.argv[3]))
	assert got["trainer_name"] == sd["trainer_name"]
	assert got["current_epoch"] == sd["current_epoch"]
	assert got["inference_allowed_mirroring_axes"] == sd["inference_allowed_mirroring_axes"]
	assert got["init_args"]["configuration"] == sd["init_args"]["configuration"]
	assert got["init_args"]["fold"] == sd["init_args"]["fold"]
	assert got["init_args"]["plans_name"] == sd["init_args"]["plans.plans_name"]
	assert got["checkpoint_keys"] == list(sd["checkpoint_keys"])
	want = [(e["key"], e["shape"], e["dtype"]) for e in sd["state_dict"]]
	have = [(t["name"], t["shape"], t["dtype"]) for t in got["tensors"]]
	assert want == have, "tensor list differs"
	st = {t["name"]: t["storage"] for t in got["tensors"]}
	for e in sd["state_dict"]:
	    if e["alias_of"]:
	        assert st[e["key"]] == st[e["alias_of"]], e["key"]
	PY
'
done
test_expect_success 'bad files exit 1 with a message naming the file' '
	head -c 100000 "$RES/fold_0/checkpoint_final.pth" >trunc.pth &&
	t_code 1 nnp-inspect-model trunc.pth &&
	grep -q "trunc.pth" stderr &&
	echo hello >notzip.pth &&
	t_code 1 nnp-inspect-model --json notzip.pth &&
	t_code 1 nnp-inspect-model missing.pth &&
	test ! -s stdout
'
test_expect_success 'a pickle calling os.system is refused, not run' '
	"$PYTHON" -c "
import zipfile
pkl = b\"\\x80\\x02cos\\nsystem\\nX\\x0c\\x00\\x00\\x00touch pwned!\\x85R.\"
with zipfile.ZipFile(\"evil.pth\", \"w\") as z:
    z.writestr(\"evil/data.pkl\", pkl)
" &&
	t_code 1 nnp-inspect-model evil.pth &&
	grep -q "refusing pickle global .os.system." stderr &&
	test ! -e pwned!
'
test_expect_success 'usage errors exit 2' '
	t_code 2 nnp-inspect-model &&
	t_code 2 nnp-inspect-model a.pth b.pth &&
	t_code 2 nnp-inspect-model --bogus "$RES/fold_0/checkpoint_final.pth"
'
done_testing
