#!/bin/bash
# t1010-augment.t — nnp augment: the sample contract, the seg rule against a
# numpy reference, determinism (seeds, -j), mirror/mask, previews, errors.
# The transforms themselves are unit-tested in tests/unit/test_augment.c.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-augment nnp-info

mks() { "$PYTHON" "$T_PYTOOLS/mksamples.py" "$@"; }
spatial_ref() { "$PYTHON" "$T_PYTOOLS/spatial_reference.py" "$@"; }
# data_of STREAM: sha256 of the voxel payloads only (props differ between runs)
data_of() {
	"$PYTHON" -c "
import hashlib, sys
sys.path.insert(0, '$T_PYTOOLS')
import nnpframe
h = hashlib.sha256()
for f in nnpframe.frames(open(sys.argv[1], 'rb').read()):
    h.update(nnpframe.assemble(f).tobytes())
print(h.hexdigest())
" "$1"
}

test_expect_success 'setup: 3D, 2D, dummy-2D and golden sample streams' '
	mks -n 24 --channels 2 --labels 3 --seed 3 -o s3d.nnp &&
	mks -n 12 --shape 1,14,13 --final 8,9 --rotation=-3.14159,3.14159 --seed 4 -o s2d.nnp &&
	mks -n 12 --shape 4,14,13 --final 4,8,9 --dummy-2d --rotation=-3.14159,3.14159 --seed 5 -o sd2.nnp &&
	mks -n 8 --channels 2 --plain --seed 1 -o gold.nnp
'

test_expect_success 'default pipeline: final shapes, dtypes, labels 0..2, props carried + augment' '
	nnp-augment --seed 1 s3d.nnp >o.nnp &&
	nnp-info --json -H o.nnp >info.json &&
	"$PYTHON" -c "
import json
fr = [json.loads(l) for l in open(\"info.json\")]
assert len(fr) == 48, len(fr)
for i in range(0, 48, 2):
    a, b = fr[i], fr[i + 1]
    assert a[\"role\"] == \"image\" and a[\"dtype\"] == \"float32\" and a[\"shape\"] == [2, 5, 6, 7], a
    assert b[\"role\"] == \"label\" and b[\"dtype\"] == \"int16\" and b[\"shape\"] == [1, 5, 6, 7], b
    s, g = a[\"props\"][\"sample\"], a[\"props\"][\"augment\"]
    assert (s[\"iteration\"], s[\"index\"]) == (i // 4, (i // 2) % 2), s   # order kept
    assert g[\"applied\"][-1] == \"remove_label\" and g == b[\"props\"][\"augment\"], g
    assert g[\"applied\"][0] in (\"center_crop\", \"rotation\", \"scaling\"), g
    for k in g.get(\"rotation\", []):
        assert abs(k) <= 0.5236, g
" &&
	"$PYTHON" -c "
import sys; sys.path.insert(0, \"$T_PYTOOLS\")
import numpy as np, nnpframe
fr = nnpframe.frames(open(\"o.nnp\", \"rb\").read())
for f in fr[1::2]:
    u = set(np.unique(nnpframe.assemble(f)).tolist())
    assert u <= {0, 1, 2}, u
for f in fr[0::2]:
    assert np.isfinite(nnpframe.assemble(f)).all()
"
'

test_expect_success 'seg rule and trilinear image vs the numpy reference (3D, 2D, dummy 2D)' '
	nnp-augment --seed 5 --only rotation,scaling s3d.nnp >r3.nnp && spatial_ref s3d.nnp r3.nnp &&
	nnp-augment --seed 6 --only rotation s3d.nnp >r3b.nnp && spatial_ref s3d.nnp r3b.nnp &&
	nnp-augment --seed 7 --only rotation,scaling s2d.nnp >r2.nnp && spatial_ref s2d.nnp r2.nnp &&
	nnp-augment --seed 8 --only rotation,scaling sd2.nnp >rd.nnp && spatial_ref sd2.nnp rd.nnp &&
	nnp-info --json -H rd.nnp >rd.json && head -n 1 rd.json | grep -q "\"applied\":\[\"convert_3d_to_2d\",\"rotation\",\"scaling\",\"convert_2d_to_3d\""
'

test_expect_success '--none is the plain centre crop (reference) with RemoveLabel' '
	nnp-augment --none s3d.nnp >n.nnp && spatial_ref s3d.nnp n.nnp &&
	nnp-info --json -H n.nnp >n.json && head -n 1 n.json | grep -q "\"applied\":\[\"center_crop\",\"remove_label\"\]"
'

test_expect_success 'identical seeds: identical bytes; -j 1 and -j 2 identical; golden sha256' '
	nnp-augment --seed 11 -j 1 gold.nnp >g1.nnp &&
	nnp-augment --seed 11 -j 1 gold.nnp >g1b.nnp &&
	nnp-augment --seed 11 -j 2 gold.nnp >g2.nnp &&
	t_same_file g1.nnp g1b.nnp && t_same_file g1.nnp g2.nnp &&
	sha256sum gold.nnp g1.nnp &&
	echo "$(sha256sum <gold.nnp | cut -c1-64) $(sha256sum <g1.nnp | cut -c1-64)" >got &&
	echo "b79be1634686a300ab6ec01a3b6112c068ce77e6719adf47bb49c02ddcb82bd1 95fd3d467534db4f787432c9093b24c964faae4cf7768e974e1b6cadb84ebeab" >want &&
	t_same_file want got
'

test_expect_success 'different seeds differ' '
	nnp-augment --seed 12 gold.nnp >g3.nnp &&
	test "$(data_of g1.nnp)" != "$(data_of g3.nnp)"
'

test_expect_success 'mirroring twice is the identity (--only mirror flips every allowed axis)' '
	nnp-augment --only mirror s3d.nnp | nnp-augment --only mirror >mm.nnp &&
	nnp-augment --only mirror s3d.nnp >m1.nnp &&
	test "$(data_of mm.nnp)" = "$(data_of n.nnp)" &&
	test "$(data_of m1.nnp)" != "$(data_of n.nnp)"
'

test_expect_success '--mask-channels 0: channel 0 zero outside the mask, channel 1 untouched' '
	mks -n 6 --channels 2 --margin 4 -o smk.nnp &&
	nnp-augment --none smk.nnp >mk0.nnp &&
	nnp-augment --only mask --mask-channels 0 smk.nnp >mk.nnp &&
	"$PYTHON" -c "
import sys; sys.path.insert(0, \"$T_PYTOOLS\")
import numpy as np, nnpframe
a = nnpframe.frames(open(\"mk0.nnp\", \"rb\").read())
b = nnpframe.frames(open(\"mk.nnp\", \"rb\").read())
src = nnpframe.frames(open(\"smk.nnp\", \"rb\").read())
hit = 0
for i in range(0, len(a), 2):
    x, y = nnpframe.assemble(a[i]), nnpframe.assemble(b[i])
    seg = nnpframe.assemble(src[i + 1])[0][2:7, 3:9, 2:9]   # the centre crop of 9x12x11 -> 5x6x7
    assert (y[0][seg < 0] == 0).all() and (y[0][seg >= 0] == x[0][seg >= 0]).all()
    assert (y[1] == x[1]).all()
    hit += (x[0][seg < 0] != 0).sum()
assert hit > 0 and b[0].header[\"props\"][\"augment\"][\"mask_channels\"] == [0]
"
'

test_expect_success '--preview 2 -o DIR: two PNGs (input | output)' '
	nnp-augment --seed 1 --preview 2 -o prev s3d.nnp >/dev/null &&
	t_files_are prev preview_000000_000.png preview_000000_001.png &&
	"$PYTHON" -c "
import struct
d = open(\"prev/preview_000000_000.png\", \"rb\").read()
assert d[:8] == b\"\\x89PNG\\r\\n\\x1a\\n\"
w, h = struct.unpack(\">II\", d[16:24])
assert (w, h) == (11 + 4 + 7, 12), (w, h)
"
'

bad_case() {
	mks -n 2 "$@" -o bad.nnp &&
	t_code 1 nnp-augment bad.nnp && t_err_line nnp-augment
}
test_expect_success 'bad input exits 1 with one error line' '
	bad_case --drop-key final_patch && grep -q final_patch stderr &&
	bad_case --drop-key iteration &&
	bad_case --drop-label && grep -q "label" stderr &&
	bad_case --image-dtype "<f8" && grep -q float32 stderr &&
	bad_case --label-dtype "<i4" && grep -q int16 stderr &&
	bad_case --final 10,6,7 && grep -q "does not fit" stderr &&
	bad_case --shape 4,14,13 --final 3,8,9 --dummy-2d &&
	bad_case --mirror 3 &&
	bad_case --shape 2,14,13 --final 8,9 &&
	mks -n 2 -o ok.nnp && t_code 1 nnp-augment --mask-channels 1 ok.nnp && t_err_line nnp-augment channel &&
	head -c 100 ok.nnp >trunc.nnp && t_code 1 nnp-augment trunc.nnp
'

test_expect_success 'usage errors exit 2' '
	t_code 2 nnp-augment --only bogus s3d.nnp && t_err_line nnp-augment bogus &&
	t_code 2 nnp-augment --only mirror --none s3d.nnp &&
	t_code 2 nnp-augment --preview 2 s3d.nnp &&
	t_code 2 nnp-augment --seed -1 s3d.nnp &&
	t_code 2 nnp-augment s3d.nnp s2d.nnp &&
	t_code 2 nnp-augment --bogus
'

test_expect_success 'empty input: empty output' '
	: >empty.nnp && nnp-augment empty.nnp >eo.nnp && test ! -s eo.nnp
'

done_testing
