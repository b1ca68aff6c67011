#!/bin/bash
# t0910-export.t — nnp export (nnU-Net's export_prediction_from_logits):
# bit-exact against nnU-Net's exported segmentations, equal to the
# non-streaming composition resample --to-original | argmax | uncrop |
# transpose --undo, bad inputs.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-export nnp-resample nnp-uncrop nnp-transpose nnp-write

INF=$T_FIXTURES/inference
mklogits() { "$PYTHON" "$T_PYTOOLS/mklogits.py" "$@"; }

# segcmp OUT.nii.gz REF.nii.gz MAXDIFF: geometry equal, at most MAXDIFF voxels differ.
segcmp() {
	"$PYTHON" - "$@" <<'EOF'
import sys, numpy as np, nibabel as nib
a, b, n = nib.load(sys.argv[1]), nib.load(sys.argv[2]), int(sys.argv[3])
A, B = np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)
assert A.shape == B.shape and A.dtype == B.dtype == np.uint8, (A.shape, B.shape, A.dtype, B.dtype)
assert np.allclose(a.affine, b.affine, atol=1e-5), (a.affine, b.affine)
d = int((A != B).sum())
print("differing voxels: %d of %d" % (d, A.size))
assert d <= n, d
EOF
}

# compose LOGITS.nnp OUT.npz: the non-streaming composition, argmax and softmax in numpy.
compose() {
	nnp-resample --to-original --order 1 --order-z 0 "$1" | nnp-uncrop | nnp-transpose --undo >comp.nnp &&
	"$PYTHON" - "$2" <<'EOF'
import sys; sys.path.insert(0, __import__("os").environ["T_PYTOOLS"])
import nnpframe, numpy as np
f = nnpframe.frames(open("comp.nnp", "rb").read())[0]
L = f.array.astype(np.float32)
e = np.exp(L - L.max(0)); p = e / e.sum(0)
out = (L == 0).all(0)                     # outside the crop box: nnU-Net sets background = 1
p[:, out] = 0; p[0, out] = 1
np.savez(sys.argv[1], seg=L.argmax(0), prob=p, affine=np.array(f.header["affine"]))
EOF
}
export T_PYTOOLS

# same_as_compose EXPORT.nnp COMP.npz: seg identical, probabilities within 1e-6.
same_as_compose() {
	"$PYTHON" - "$@" <<'EOF'
import sys; sys.path.insert(0, __import__("os").environ["T_PYTOOLS"])
import nnpframe, numpy as np
fr = nnpframe.frames(open(sys.argv[1], "rb").read())
c = np.load(sys.argv[2])
seg = [f for f in fr if f.header["role"] == "seg"][0]
S = seg.array[0]
assert S.shape == c["seg"].shape, (S.shape, c["seg"].shape)
d = int((S != c["seg"]).sum())
print("seg differs from the composition in %d voxels" % d)
assert d == 0
assert np.allclose(seg.header["affine"], c["affine"], atol=1e-9)
pr = [f for f in fr if f.header["role"] == "probabilities"]
if pr:
    P = pr[0].array
    m = np.abs(P - c["prob"]).max()
    print("probabilities max abs diff %.3g" % m)
    assert m < 1e-6, m
    assert np.allclose(P.sum(0), 1, atol=1e-5)
EOF
}

for c in Dataset901_Spheres/sph_101 Dataset903_MultiChannel/mc_101; do
	ds=${c%/*}
	n=${c#*/}
	test_expect_success "$n: --fp16-compat equals nnU-Net's exported segmentation voxel for voxel" '
		mklogits "'"$INF/$c"'" --dtype f2 -o '"$n"'.nnp &&
		nnp-export -v --fp16-compat -p "'"$T_FIXTURES/$ds"'/nnUNetPlans.json" -c 3d_fullres '"$n"'.nnp \
			2>err | nnp-write -o '"$n"'_fp16.nii.gz &&
		cat err && segcmp '"$n"'_fp16.nii.gz "'"$INF/$c"'/seg_f0_nomirror.nii.gz" 0
	'
	test_expect_success "$n: float32 path differs from nnU-Net in a handful of voxels" '
		nnp-export --dataset-json "'"$T_FIXTURES/$ds"'/dataset.json" '"$n"'.nnp | nnp-write -o '"$n"'_f32.nii.gz &&
		segcmp '"$n"'_f32.nii.gz "'"$INF/$c"'/seg_f0_nomirror.nii.gz" 100
	'
done
test_expect_success 'sph_101 takes the streamed separate-z path, mc_101 the linear one (identity)' '
	nnp-export -v sph_101.nnp 2>&1 >/dev/null | grep -q "separate z (streamed)" &&
	nnp-export -v mc_101.nnp 2>&1 >/dev/null | grep -q "linear (streamed)"
'
test_expect_success 'sph_101: = the composition (float32 and float16 frames), probabilities too' '
	mklogits "'"$INF"'/Dataset901_Spheres/sph_101" --dtype f4 -o s32.nnp &&
	compose s32.nnp c32.npz && nnp-export --save-probabilities s32.nnp >e32.nnp && same_as_compose e32.nnp c32.npz &&
	compose sph_101.nnp c16.npz && nnp-export --fp16-compat sph_101.nnp >e16.nnp && same_as_compose e16.nnp c16.npz
'

# synthetic cases: CASE_NAME "mklogits options" "expected path"
synth() {
	test_expect_success "synthetic $1: = the composition ($3 path)" '
		mklogits --synthetic '"$2"' -o '"$1"'.nnp --chunk 3 &&
		compose '"$1"'.nnp '"$1"'.npz &&
		nnp-export -v --save-probabilities '"$1"'.nnp 2>err >'"$1"'.out.nnp && grep -q "'"$3"'" err &&
		same_as_compose '"$1"'.out.nnp '"$1"'.npz &&
		nnp-export --fp16-compat -j 1 --save-probabilities '"$1"'.nnp >'"$1"'.fp16.nnp &&
		"$PYTHON" -c "
import sys; sys.path.insert(0, \"$T_PYTOOLS\"); import nnpframe, numpy as np
a = nnpframe.frames(open(\"'"$1"'.out.nnp\", \"rb\").read()); b = nnpframe.frames(open(\"'"$1"'.fp16.nnp\", \"rb\").read())
d = np.abs(a[0].array - b[0].array).max(); print(\"fp16 vs fp32 probabilities max diff\", d); assert 0 < d < 5e-3
"
	'
}
synth trilinear "4,10,12,14 --mid 13,9,17 --spacing 1,1,1" "linear (streamed)"
synth zdown "3,17,12,14 --mid 5,15,11 --spacing 3,1,1" "linear (streamed)"
synth sepz "3,8,12,14 --mid 11,15,17 --spacing 3.5,0.8,0.8" "separate z (streamed)"
synth sepz-x "3,12,14,8 --mid 15,17,11 --spacing 0.8,0.8,3.5" "whole volume"
synth cropped "3,10,12,14 --mid 13,9,17 --spacing 1,1,1 --bbox 2,0,5 --before 20,9,30" "linear (streamed)"
synth bigplane "3,5,256,256 --mid 7,512,512 --spacing 1,0.5,0.5 --bbox 2,0,0 --before 13,512,512" "linear (streamed)"
synth transposed "3,8,12,14 --mid 11,15,17 --spacing 3.5,0.8,0.8 --transpose 2,0,1" "separate z (streamed)"

test_expect_success 'probabilities are streamed: several chunks, peak RSS below the probabilities volume' '
	nnp-info --json -H bigplane.out.nnp | "$PYTHON" -c "
import json, sys; h = json.loads(sys.stdin.readline()); assert h[\"role\"] == \"probabilities\" and h[\"nchunks\"] > 2, h
" &&
	/usr/bin/time -f %M -o rss nnp-export --save-probabilities bigplane.nnp >/dev/null &&
	echo "peak RSS $(cat rss) KiB; probabilities volume $((3 * 13 * 512 * 512 * 4 / 1024)) KiB" &&
	test "$(cat rss)" -lt $((3 * 13 * 512 * 512 * 4 / 1024))
'
test_expect_success 'labels from dataset.json: regions (sigmoid > 0.5, regions_class_order, later wins)' '
	mkdir -p reg && cat >reg/dataset.json <<-EOF &&
	{"channel_names": {"0": "CT"}, "labels": {"background": 0, "whole": [1, 2], "core": 2},
	 "regions_class_order": [1, 2], "numTraining": 1, "file_ending": ".nii.gz"}
	EOF
	mklogits --synthetic 2,6,7,8 --mid 6,7,8 --spacing 1,1,1 -o r.nnp &&
	nnp-export --dataset-json reg/dataset.json --save-probabilities r.nnp >r.out &&
	"$PYTHON" -c "
import sys; sys.path.insert(0, \"$T_PYTOOLS\"); import nnpframe, numpy as np
L = nnpframe.frames(open(\"r.nnp\", \"rb\").read())[0].array.astype(np.float32)
f = nnpframe.frames(open(\"r.out\", \"rb\").read())
sig = 1 / (1 + np.exp(-L)); want = np.zeros(L.shape[1:], np.uint8)
want[sig[0] > 0.5] = 1; want[sig[1] > 0.5] = 2
assert f[1].header[\"role\"] == \"seg\" and (f[1].array[0] == want).all()
assert np.abs(f[0].array - sig).max() < 1e-6
"
'
test_expect_success 'other frames pass through; two cases in one stream' '
	nnp-read "'"$T_FIXTURES"'/raw/Dataset901_Spheres/labelsTr/sph_000.nii.gz" >lab.nnp &&
	cat lab.nnp mc_101.nnp sph_101.nnp | nnp-export | nnp-info --json -H >info &&
	"$PYTHON" -c "
import json; r = [json.loads(l)[\"role\"] for l in open(\"info\")]
assert r == [\"image\", \"seg\", \"seg\"], r
"
'

# ---- bad input ----
test_expect_success 'missing props: exit 1 naming the case and the prop' '
	for p in spacing_before_resampling shape_before_cropping bbox_used_for_cropping \
		 shape_after_cropping_and_before_resampling; do
		mklogits --synthetic 2,4,5,6 --mid 4,5,6 --spacing 1,1,1 --case c7 --drop-prop $p -o m.nnp &&
		t_code 1 nnp-export m.nnp && t_err_line nnp-export "c7" "$p" || exit 1
	done
'
test_expect_success 'channel count differs from dataset.json labels: exit 1' '
	mklogits --synthetic 4,4,5,6 --mid 4,5,6 --spacing 1,1,1 --case c8 -o k.nnp &&
	t_code 1 nnp-export --dataset-json "'"$T_FIXTURES"'/Dataset901_Spheres/dataset.json" k.nnp &&
	t_err_line nnp-export "c8" "4 channels" "3 labels"
'
test_expect_success 'NaN logits: exit 1 (nnU-Net aborts too), nothing written' '
	mklogits --synthetic 3,6,5,6 --mid 8,5,6 --spacing 1,1,1 --case c9 --nan -o n.nnp &&
	t_code 1 nnp-export n.nnp && t_err_line nnp-export "c9" "NaN" && ! test -s stdout &&
	! nnp-export n.nnp 2>/dev/null | nnp-write -o n.nii.gz && t_no_file n.nii.gz && check_no_tmp .
'
test_expect_success 'truncated stream: exit 1, no output file' '
	head -c 20000 s32.nnp >trunc.nnp &&
	t_code 1 nnp-export trunc.nnp && t_err_line nnp-export &&
	! nnp-export trunc.nnp 2>/dev/null | nnp-write -o t.nii.gz && t_no_file t.nii.gz && check_no_tmp .
'
test_expect_success 'whole-volume path over --max-memory: exit 4 naming the bytes' '
	t_code 4 nnp-export --max-memory 10K sepz-x.nnp && t_err_line nnp-export "bytes" "--max-memory"
'
test_expect_success 'an integer logits frame is refused' '
	mklogits --synthetic 2,4,5,6 --mid 4,5,6 --spacing 1,1,1 --dtype i2 -o i.nnp &&
	t_code 1 nnp-export i.nnp && t_err_line nnp-export "float16, float32 or float64"
'
test_expect_success 'usage errors: -p without -c, a bad --max-memory' '
	t_code 2 nnp-export -p x.json k.nnp && t_err_line nnp-export "-c" &&
	t_code 2 nnp-export --max-memory lots k.nnp
'
done_testing
