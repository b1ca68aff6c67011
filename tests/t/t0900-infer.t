#!/bin/bash
# t0900-infer.t — nnp infer against nnU-Net's own predictions of the tiny
# Dataset903 model (mc_101: two tiles along z, Gaussian blending):
#  - float32 accumulation vs the fp32ref logits (same fp32 tiles blended in
#    float64): rel-L2 <= 1e-5;
#  - float32 accumulation vs nnU-Net's float16 logits: the README's masked
#    tolerance (w >= 1e-4: |d| <= 4e-3 max(1,|ref|), rel-L2 <= 1e-3), argmax
#    agrees on >= 99 % of voxels;
#  - --fp16-compat vs nnU-Net's logits: >= 99 % bit-identical, rel-L2 <= 2e-4,
#    max abs <= 0.1 (the README's bounds for an emulation fed with tiles that
#    differ by fp32 round-off);
#  for no mirroring, mirroring (8 flips) and the fold 0+1 ensemble.
# Then bf16, pass-through of other frames, and every refusal.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-read nnp-infer nnp-write nnp-info

RES="$T_FIXTURES/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
CASE="$T_FIXTURES/inference/Dataset903_MultiChannel/mc_101"
CMP="$T_PYTOOLS/logitscmp.py"

test_expect_success 'float32 accumulation equals the fp32 reference (rel-L2 <= 1e-5)' '
	nnp read "$CASE/preprocessed_data.nii.gz" | nnp infer -m "$RES" -f 0 --disable-tta >l.nnp &&
	nnp info --json l.nnp >info.json && grep -q "\"role\":\"logits\"" info.json &&
	grep -q "\"shape\":\[3,60,61,49\]" info.json &&
	nnp write -o l.nii.gz <l.nnp &&
	"$PYTHON" "$CMP" l.nii.gz "$CASE/logits_f0_nomirror_fp32ref.nii.gz" --rel-l2 1e-5 >m.txt &&
	t_comment "$(cat m.txt)"
'

while read variant opts; do
test_expect_success "$variant: float32 within the masked tolerance of nnU-Net's float16 logits" '
	nnp read "$CASE/preprocessed_data.nii.gz" | nnp infer -m "$RES" '"$opts"' | nnp write --force -o l32.nii.gz &&
	"$PYTHON" "$CMP" l32.nii.gz "$CASE/logits_'$variant'.nii.gz" --masked "$CASE/properties.json" \
		--masked-abs 4e-3 --masked-rel-l2 1e-3 --argmax 0.99 >m.txt &&
	t_comment "$(cat m.txt)"
'
test_expect_success "$variant: --fp16-compat reproduces nnU-Net's float16 logits" '
	nnp read "$CASE/preprocessed_data.nii.gz" | nnp infer -m "$RES" '"$opts"' --fp16-compat >l16.nnp &&
	nnp info --json l16.nnp | grep -q "\"dtype\":\"float16\"" &&
	nnp write --force -o l16.nii.gz <l16.nnp &&
	"$PYTHON" "$CMP" l16.nii.gz "$CASE/logits_'$variant'.nii.gz" \
		--bit-identical 0.99 --rel-l2 2e-4 --max-abs 0.1 >m.txt &&
	t_comment "$(cat m.txt)"
'
done <<-EOF2
f0_nomirror -f 0 --disable-tta
f0_mirror -f 0
f01_nomirror -f 0 1 --disable-tta
EOF2

test_expect_success 'folds as -f 0,1 and -f 0 -f 1 give the same ensemble' '
	nnp read "$CASE/preprocessed_data.nii.gz" >img.nnp &&
	nnp infer -m "$RES" -f 0,1 --disable-tta img.nnp >a.nnp &&
	nnp infer -m "$RES" -f 0 -f 1 --disable-tta <img.nnp >b.nnp &&
	cmp a.nnp b.nnp
'

test_expect_success 'accumulating head features equals accumulating logits (rel-L2 <= 1e-6)' '
	for o in "-f 0" "-f 0 1 --disable-tta"; do
		nnp infer -m "$RES" $o img.nnp | nnp write --force -o a.nii.gz &&
		nnp infer -m "$RES" $o --accumulate features img.nnp | nnp write --force -o b.nii.gz &&
		"$PYTHON" "$CMP" b.nii.gz a.nii.gz --rel-l2 1e-6 --argmax 1 >m.txt &&
		t_comment "$o: $(cat m.txt)" || return 1
	done &&
	"$PYTHON" "$CMP" b.nii.gz "$CASE/logits_f01_nomirror.nii.gz" --masked "$CASE/properties.json" \
		--masked-abs 4e-3 --masked-rel-l2 1e-3 --argmax 0.99 >/dev/null &&
	t_code 2 nnp infer -m "$RES" --accumulate sums img.nnp
'

test_expect_success 'bf16 convolutions stay within 3e-2 of float32' '
	if ! grep -q avx512_bf16 /proc/cpuinfo; then t_comment "no AVX-512 BF16: skipped"; exit 0; fi
	nnp infer -m "$RES" -f 0 --disable-tta --precision bf16 img.nnp | nnp write -o lb.nii.gz &&
	"$PYTHON" "$CMP" lb.nii.gz "$CASE/logits_f0_nomirror_fp32ref.nii.gz" --rel-l2 3e-2 >m.txt &&
	t_comment "$(cat m.txt)"
'

test_expect_success 'a 2-channel model refuses a 1-channel image (exit 1)' '
	"$PYTHON" -c "
import nibabel as nib, numpy as np
a = np.zeros((16, 16, 16), np.float32)
nib.save(nib.Nifti1Image(a, np.eye(4)), \"one.nii.gz\")
a[0, 0, 0] = np.nan
nib.save(nib.Nifti1Image(a, np.eye(4)), \"nan.nii.gz\")
a = np.zeros((16, 16, 16, 2), np.float32); a[3, 3, 3, 1] = np.inf
nib.save(nib.Nifti1Image(a, np.eye(4)), \"inf2.nii.gz\")
" &&
	nnp read one.nii.gz >one.nnp &&
	t_code 1 nnp infer -m "$RES" -f 0 one.nnp &&
	grep -q "1 channels but the model takes 2" stderr &&
	nnp read inf2.nii.gz >inf2.nnp &&
	t_code 1 nnp infer -m "$RES" -f 0 inf2.nnp &&
	grep -q "NaN or infinite" stderr
'

test_expect_success 'other frames pass through unchanged' '
	nnp read one.nii.gz --role label >lab.nnp 2>/dev/null || nnp read --role label one.nii.gz >lab.nnp &&
	cat lab.nnp img.nnp >mixed.nnp &&
	nnp infer -m "$RES" -f 0 --disable-tta mixed.nnp >out.nnp &&
	nnp info out.nnp >info.txt &&
	test "$(grep -c "role" info.txt)" -ge 2 || { cat info.txt; false; }
'

test_expect_success 'model folder problems exit 1 and name the problem' '
	t_code 1 nnp infer -m "$RES" -f 7 img.nnp &&
	grep -q "fold 7 has no checkpoint" stderr &&
	t_code 1 nnp infer -m nowhere img.nnp &&
	grep -q "nowhere" stderr &&
	mkdir -p bad && cp -r "$RES"/* bad/ &&
	"$PYTHON" -c "
import json
p = json.load(open(\"bad/plans.json\"))
p[\"configurations\"][\"3d_fullres\"][\"architecture\"][\"arch_kwargs\"][\"features_per_stage\"][1] = 12
json.dump(p, open(\"bad/plans.json\", \"w\"))
" &&
	t_code 1 nnp infer -m bad -f 0 img.nnp &&
	grep -q "has shape (8, 4, 3, 3, 3) but the plans. architecture needs (12, 4, 3, 3, 3)" stderr &&
	"$PYTHON" -c "
import json
p = json.load(open(\"bad/plans.json\"))
k = p[\"configurations\"][\"3d_fullres\"][\"architecture\"][\"arch_kwargs\"]
k[\"features_per_stage\"][1] = 8
k[\"n_conv_per_stage\"][0] = 3
json.dump(p, open(\"bad/plans.json\", \"w\"))
" &&
	t_code 1 nnp infer -m bad -f 0 img.nnp &&
	grep -q "tensor .encoder.stages.0.0.convs.2.conv.weight. is missing" stderr &&
	t_code 2 nnp infer -m "$RES" -c 2d -f 0 img.nnp &&
	grep -q "not .2d." stderr || { cat stderr; false; }
'

test_expect_success 'a run over the memory limit is refused before it starts (exit 4)' '
	t_code 4 nnp infer -m "$RES" -f 0 --max-memory 1M img.nnp &&
	grep -q "needs about .* MiB but the limit is 1 MiB" stderr &&
	test ! -s stdout
'

test_expect_success 'usage errors exit 2' '
	t_code 2 nnp infer img.nnp &&
	t_code 2 nnp infer -m "$RES" --step-size 0 img.nnp &&
	t_code 2 nnp infer -m "$RES" --precision fp8 img.nnp &&
	t_code 2 nnp infer -m "$RES" --device gpu img.nnp &&
	t_code 2 nnp infer -m "$RES" -f x img.nnp &&
	t_code 2 nnp infer -m "$RES" -d 903 -c 3d_fullres img.nnp
'
done_testing
