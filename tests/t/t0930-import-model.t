#!/bin/bash
# t0930-import-model.t — nnp import-model writes one nnpipe model file from an
# nnU-Net results folder; nnp infer / nnp predict read it and give the same
# bytes as the folder; the header names its sources (sha256 of each
# checkpoint) and every payload is verified when loaded; damaged files,
# missing folds and bad folders are refused with exit 1, usage errors exit 2.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-import-model nnp-infer nnp-inspect-model nnp-predict nnp-read

RES="$T_FIXTURES/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
CASE="$T_FIXTURES/inference/Dataset903_MultiChannel/mc_101"

test_expect_success 'import two folds; infer from the file equals infer from the folder' '
	nnp import-model -m "$RES" -f 0 1 -o m.nnpm &&
	nnp read "$CASE/preprocessed_data.nii.gz" >img.nnp &&
	nnp infer -m m.nnpm --disable-tta img.nnp >a.nnp &&
	nnp infer -m "$RES" -f 0 1 --disable-tta img.nnp >b.nnp &&
	cmp a.nnp b.nnp &&
	nnp infer -m m.nnpm -f 1 img.nnp >c.nnp &&
	nnp infer -m "$RES" -f 1 img.nnp >d.nnp && cmp c.nnp d.nnp
'

test_expect_success 'the header: msgpack, configuration, plans, per-fold tables and sha256s' '
	nnp inspect-model m.nnpm >info.txt &&
	grep -q "^configuration: \"3d_fullres\"$" info.txt &&
	test "$(grep -c "^fold [01]: 64 tensors" info.txt)" = 2 &&
	sha=$(sha256sum "$RES/fold_0/checkpoint_final.pth" | cut -d" " -f1) &&
	grep -q "^fold 0: .*(checkpoint sha256 $sha)$" info.txt &&
	nnp inspect-model --plans m.nnpm | cmp - <(nnp inspect-model --plans m.nnpm) &&
	"$PYTHON" - m.nnpm "$RES/plans.json" <<-\PY
	import json, sys, msgpack, hashlib
	data = open(sys.argv[1], "rb").read()
	u = msgpack.Unpacker(raw=False)
	u.feed(data)
	top = next(u)
	assert top["nnp"] == "model" and top["v"][0] == 1
	h = json.loads(top["header"])
	assert h["plans"] == json.load(open(sys.argv[2]))
	assert [f["fold"] for f in h["folds"]] == ["0", "1"]
	for f in h["folds"]:
	    blob = next(u)
	    assert len(blob) == f["nbytes"] and hashlib.sha256(blob).hexdigest() == f["sha256"]
	    names = [t["name"] for t in f["tensors"]]
	    assert "decoder.seg_layers.2.weight" in names and not any("all_modules" in n for n in names)
	PY
'

test_expect_success 'nnp predict -m FILE: the same segmentations as the folder' '
	nnp predict -q -i "$T_FIXTURES/raw/Dataset903_MultiChannel/imagesTs" -o p1 -m m.nnpm -f 0 --disable-tta &&
	nnp predict -q -i "$T_FIXTURES/raw/Dataset903_MultiChannel/imagesTs" -o p2 -m "$RES" -f 0 --disable-tta &&
	cmp p1/mc_100.nii.gz p2/mc_100.nii.gz && cmp p1/mc_101.nii.gz p2/mc_101.nii.gz
'

test_expect_success 'a flipped payload byte, a truncated file, a foreign file: exit 1' '
	size=$(stat -c %s m.nnpm) &&
	cp m.nnpm bad.nnpm &&
	printf "\\x7f" | dd of=bad.nnpm bs=1 seek=$((size - 1000)) conv=notrunc 2>/dev/null &&
	t_code 1 nnp infer -m bad.nnpm img.nnp &&
	grep -q "fold .1.: sha256 mismatch" stderr &&
	head -c $((size - 100)) m.nnpm >short.nnpm &&
	t_code 1 nnp infer -m short.nnpm img.nnp &&
	grep -q "truncated" stderr &&
	t_code 1 nnp infer -m "$CASE/properties.json" img.nnp &&
	t_code 1 nnp infer -m m.nnpm -f 3 img.nnp &&
	grep -q "requested folds are not all in it" stderr
'

test_expect_success 'import refusals: a missing fold, a plans/checkpoint mismatch; nothing written' '
	t_code 1 nnp import-model -m "$RES" -f 0 4 -o x.nnpm &&
	grep -q "fold 4 has no checkpoint" stderr && test ! -e x.nnpm &&
	mkdir -p bad && cp -r "$RES"/* bad/ &&
	"$PYTHON" -c "
import json
p = json.load(open(\"bad/plans.json\"))
p[\"configurations\"][\"3d_fullres\"][\"architecture\"][\"arch_kwargs\"][\"features_per_stage\"][0] = 6
json.dump(p, open(\"bad/plans.json\", \"w\"))
" &&
	t_code 1 nnp import-model -m bad -f 0 -o x.nnpm &&
	grep -q "has shape (4, 2, 3, 3, 3) but the plans. architecture needs (6, 2, 3, 3, 3)" stderr &&
	test ! -e x.nnpm && test -z "$(ls -a | grep "\.tmp\.")" &&
	t_code 2 nnp import-model -m "$RES" -f 0 -o m.nnpm &&
	grep -q "exists" stderr &&
	nnp import-model -m "$RES" -f 0 -o m.nnpm --force
'

test_expect_success 'usage errors exit 2' '
	t_code 2 nnp import-model -m "$RES" &&
	t_code 2 nnp import-model -o x.nnpm &&
	t_code 2 nnp import-model -m "$RES" -o x.nnpm --bogus &&
	t_code 2 nnp inspect-model --plans "$RES/fold_0/checkpoint_final.pth"
'
done_testing
