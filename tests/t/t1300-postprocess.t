#!/bin/bash
# t1300-postprocess.t — nnp postprocess against nnU-Net's
# remove_all_but_largest_component in numpy/scipy (tests/tools/pp_reference.py):
# random blob label maps (3 labels, several components each, a tie), 3D and
# 2D (one slice), uint8 and int16, joint / per-class / both, --labels.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-postprocess nnp-read nnp-write
ref() { "$PYTHON" "$T_PYTOOLS/pp_reference.py" "$@"; }
pp() { nnp read --role seg "$1" | nnp postprocess "${@:3}" | nnp write -q -f -o "$2"; }
same() { "$PYTHON" -c "
import nibabel as nib, numpy as np, sys
a = np.asanyarray(nib.load(sys.argv[1]).dataobj); b = np.asanyarray(nib.load(sys.argv[2]).dataobj)
assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
d = int((a != b).sum()); print('differing voxels', d); assert d == 0" "$1" "$2"; }

test_expect_success 'setup: blob label maps' '
	"$PYTHON" - <<-\EOF
	import nibabel as nib, numpy as np
	from scipy import ndimage
	r = np.random.RandomState(3)
	def blobs(shape, dtype, name):
	    seg = np.zeros(shape, np.int16)
	    for lab in (1, 2, 3):
	        m = ndimage.gaussian_filter(r.rand(*shape), 1.5) > 0.53 + 0.01 * lab
	        seg[m & (seg == 0)] = lab
	    nib.save(nib.Nifti1Image(seg.astype(dtype), np.diag([0.8, 0.8, 2.0, 1])), name)
	blobs((40, 36, 20), np.uint8, "u8.nii.gz")
	blobs((40, 36, 20), np.int16, "i16.nii.gz")
	blobs((64, 48, 1), np.uint8, "2d.nii.gz")
	t = np.zeros((12, 12, 6), np.uint8)
	t[1:3, 1:3, 1:3] = 1; t[6:8, 6:8, 2:4] = 1; t[10, 10, 5] = 1     # a tie of two 8-voxel objects
	nib.save(nib.Nifti1Image(t, np.eye(4)), "tie.nii.gz")
	EOF
'
for f in u8 i16 2d; do
	test_expect_success "$f: --largest-component, --per-class and both equal nnU-Net's rule" '
		pp '$f'.nii.gz a.nii.gz --largest-component && ref '$f'.nii.gz b.nii.gz --joint && same a.nii.gz b.nii.gz &&
		pp '$f'.nii.gz a.nii.gz --per-class && ref '$f'.nii.gz b.nii.gz --per-class && same a.nii.gz b.nii.gz &&
		pp '$f'.nii.gz a.nii.gz --largest-component --per-class && ref '$f'.nii.gz b.nii.gz --joint --per-class &&
		same a.nii.gz b.nii.gz && ! cmp -s a.nii.gz '$f'.nii.gz
	'
done
test_expect_success '--labels restricts the rule; ties keep every largest component' '
	pp i16.nii.gz a.nii.gz --per-class --labels 2 && ref i16.nii.gz b.nii.gz --per-class --labels 2 && same a.nii.gz b.nii.gz &&
	pp tie.nii.gz a.nii.gz --largest-component && ref tie.nii.gz b.nii.gz --joint && same a.nii.gz b.nii.gz &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
a = np.asanyarray(nib.load(\"a.nii.gz\").dataobj); assert a.sum() == 16, a.sum()"
'
test_expect_success 'props record the steps; other frames pass through' '
	nnp read -l u8.nii.gz i16.nii.gz | nnp postprocess --largest-component --per-class >s.nnp &&
	nnp info s.nnp >info && grep -q "role image" info && grep -q "postprocess" info
'
test_expect_success 'errors: no rule, a float map, a truncated stream' '
	t_code 2 nnp postprocess u8.nii.gz &&
	nnp read --role seg i16.nii.gz >s.nnp && head -c 3000 s.nnp >cut.nnp &&
	t_code 1 nnp postprocess --per-class cut.nnp && grep -q "truncated" stderr &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), \"f.nii.gz\")" &&
	nnp read --role seg f.nii.gz >f.nnp && t_code 1 nnp postprocess --per-class f.nnp && grep -q "want uint8 or int16" stderr
'
done_testing
