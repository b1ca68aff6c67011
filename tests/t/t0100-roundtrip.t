#!/bin/bash
# t0100-roundtrip.t — nnp-read | nnp-write reproduces NIfTI input exactly:
# voxel bytes, dtype, shape, qform/sform (codes and fields), pixdim,
# scl_slope/scl_inter and NIfTI version, checked by tests/tools/niicmp.py
# (nibabel), and the stream itself decodes with a generic msgpack decoder.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-read nnp-write

DTYPES="u8 i8 i16 u16 i32 u32 i64 u64 f32 f64"
S3=7,6,5
S4=7,6,5,3

# rt SRC OUT [niicmp options]: read, write, compare, no temp file left.
rt() {
	local src=$1 out=$2
	shift 2
	nnp-read "$src" | nnp-write -o "$out"
	niicmp "$@" "$src" "$out"
	check_no_tmp "$(dirname "$out")"
}

# is_little FILE: the written file is a little-endian NIfTI.
is_little() {
	"$PYTHON" -c 'import sys, nibabel
sys.exit(nibabel.load(sys.argv[1]).header.endianness != "<")' "$1"
}

# nifti_version FILE: print 1 or 2.
nifti_version() {
	"$PYTHON" -c 'import sys, nibabel
print(2 if isinstance(nibabel.load(sys.argv[1]).header, nibabel.Nifti2Header) else 1)' "$1"
}

# ---- the full dtype x {3D, 4D} matrix, .nii.gz, qform and (different) sform
for dt in $DTYPES; do
	for nd in 3 4; do
		[ $nd = 3 ] && shape=$S3 || shape=$S4
		test_expect_success "$dt ${nd}D .nii.gz with qform and sform round-trips" "
			mknii --dtype $dt --shape $shape --form both m_${dt}_$nd.nii.gz &&
			rt m_${dt}_$nd.nii.gz o_${dt}_$nd.nii.gz
		"
	done
done

# ---- each orientation form, 3D i16 .nii and 4D f32 .nii.gz
for form in qform sform both none; do
	test_expect_success "form $form: 3D i16 .nii round-trips" "
		mknii --dtype i16 --form $form --seed 11 f_$form.nii &&
		rt f_$form.nii of_$form.nii
	"
	test_expect_success "form $form: 4D f32 .nii.gz round-trips" "
		mknii --dtype f32 --shape $S4 --form $form --seed 12 f4_$form.nii.gz &&
		rt f4_$form.nii.gz of4_$form.nii.gz
	"
done

# ---- file kinds: .nii <-> .nii.gz, .hdr/.img pair in
test_expect_success '.nii in, .nii.gz out' '
	mknii --dtype u16 --seed 21 k1.nii &&
	rt k1.nii k1_out.nii.gz
'
test_expect_success '.nii.gz in, .nii out (uncompressed output)' '
	mknii --dtype f64 --shape 7,6,5,2 --seed 22 k2.nii.gz &&
	rt k2.nii.gz k2_out.nii &&
	test "$(head -c 2 k2_out.nii | od -An -tx1 | tr -d " ")" != 1f8b
'
test_expect_success '.nii.gz output is gzip' '
	test "$(head -c 2 k1_out.nii.gz | od -An -tx1 | tr -d " ")" = 1f8b
'
test_expect_success '.hdr/.img pair in, .nii.gz out' '
	mknii --dtype i32 --seed 23 --form sform pair.hdr &&
	test -f pair.img &&
	rt pair.hdr pair_out.nii.gz
'

# ---- odd shapes
for shape in 1,1,1 9,8,1 1,1,40 13,1,3 3,4,2,1 5,4,3,7; do
	n=s_$(echo $shape | tr , x)
	test_expect_success "shape $shape round-trips" "
		mknii --dtype i16 --shape $shape --seed 31 $n.nii.gz &&
		rt $n.nii.gz ${n}_out.nii.gz
	"
done

# ---- scl_slope / scl_inter are carried, not applied
test_expect_success 'i16 with scl_slope 0.5, scl_inter -10 carried unchanged' '
	mknii --dtype i16 --slope 0.5 --inter -10 --seed 41 sc1.nii.gz &&
	rt sc1.nii.gz sc1_out.nii.gz
'
test_expect_success 'u8 with scl_slope 2, scl_inter 1 carried unchanged' '
	mknii --dtype u8 --slope 2 --inter 1 --seed 42 sc2.nii &&
	rt sc2.nii sc2_out.nii
'
test_expect_success 'f32 4D with scl_slope 1.5, scl_inter 0.25 carried unchanged' '
	mknii --dtype f32 --shape $S4 --slope 1.5 --inter 0.25 --seed 43 sc3.nii.gz &&
	rt sc3.nii.gz sc3_out.nii.gz
'
test_expect_success 'scaled image: the stream carries "scale" and raw voxels' '
	nnp-read sc1.nii.gz >sc1.nnp &&
	frame_decode --frames 1 --nii 0=sc1.nii.gz sc1.nnp
'

# ---- NIfTI-2
test_expect_success 'NIfTI-2 3D i16 .nii stays NIfTI-2' '
	mknii --nifti2 --dtype i16 --seed 51 n2a.nii &&
	rt n2a.nii n2a_out.nii &&
	test "$(nifti_version n2a_out.nii)" = 2
'
test_expect_success 'NIfTI-2 4D f32 .nii.gz, sform only, stays NIfTI-2' '
	mknii --nifti2 --dtype f32 --shape $S4 --form sform --seed 52 n2b.nii.gz &&
	rt n2b.nii.gz n2b_out.nii.gz &&
	test "$(nifti_version n2b_out.nii.gz)" = 2
'
test_expect_success 'NIfTI-2 u8 with qform and sform and scaling' '
	mknii --nifti2 --dtype u8 --slope 3 --inter -1 --seed 53 n2c.nii.gz &&
	rt n2c.nii.gz n2c_out.nii.gz
'
test_expect_success 'NIfTI-1 input stays NIfTI-1' '
	test "$(nifti_version o_i16_3.nii.gz)" = 1
'

# ---- big-endian input: read correctly, written little-endian
for dt in i16 u16 i32 i64 f32 f64; do
	test_expect_success "big-endian $dt input: same values, little-endian output" "
		mknii --big-endian --dtype $dt --seed 61 be_$dt.nii &&
		rt be_$dt.nii be_${dt}_out.nii.gz &&
		is_little be_${dt}_out.nii.gz
	"
done
test_expect_success 'big-endian 4D f32 .nii.gz with scaling' '
	mknii --big-endian --dtype f32 --shape $S4 --slope 2 --inter 5 --seed 62 be4.nii.gz &&
	rt be4.nii.gz be4_out.nii.gz &&
	is_little be4_out.nii.gz
'
test_expect_success 'big-endian NIfTI-2' '
	mknii --big-endian --nifti2 --dtype i16 --seed 63 be2.nii &&
	rt be2.nii be2_out.nii &&
	test "$(nifti_version be2_out.nii)" = 2 &&
	is_little be2_out.nii
'
test_expect_success 'big-endian input decodes from the stream to the same values' '
	nnp-read be_i16.nii >be.nnp &&
	frame_decode --frames 1 --nii 0=be_i16.nii be.nnp
'

# ---- other carried header fields (nifti.h: the carried header supplies
# every field the frame does not determine)
test_expect_success 'descrip, intent, xyzt_units survive (niicmp --strict)' '
	mknii --dtype i16 --descrip "carried description" --intent 1002 --seed 71 st.nii.gz &&
	rt st.nii.gz st_out.nii.gz --strict
'
test_expect_success 'NIfTI-2 header fields survive (niicmp --strict)' '
	mknii --nifti2 --dtype f32 --descrip "n2 description" --seed 72 st2.nii &&
	rt st2.nii st2_out.nii --strict
'
test_expect_success 'a file with a NIfTI extension round-trips data and geometry' '
	mknii --dtype i16 --ext-comment "an extension" --seed 73 ext.nii.gz &&
	rt ext.nii.gz ext_out.nii.gz
'

# ---- several channels from separate files, directory output
test_expect_success 'three channel files -> CASE_0000..0002 in a directory' '
	for c in 0 1 2; do
		mknii --dtype i16 --seed 8$c --geom-seed 80 mc_000$c.nii.gz || exit 1
	done &&
	mkdir mcout &&
	nnp-read mc_0000.nii.gz mc_0001.nii.gz mc_0002.nii.gz | nnp-write -o mcout &&
	t_files_are mcout mc_0000.nii.gz mc_0001.nii.gz mc_0002.nii.gz &&
	for c in 0 1 2; do
		niicmp mc_000$c.nii.gz mcout/mc_000$c.nii.gz || exit 1
	done
'
test_expect_success 'the multi-channel stream is one frame equal to the files' '
	nnp-read mc_0000.nii.gz mc_0001.nii.gz mc_0002.nii.gz >mc.nnp &&
	frame_decode --frames 1 --role 0=image --case 0=mc \
		--nii 0=mc_0000.nii.gz,mc_0001.nii.gz,mc_0002.nii.gz mc.nnp
'
test_expect_success 'per-channel scl_slope goes back to each channel file' '
	mknii --dtype i16 --seed 90 --geom-seed 90 --slope 1 --inter 0 pc_0000.nii &&
	mknii --dtype i16 --seed 91 --geom-seed 90 --slope 0.25 --inter 7 pc_0001.nii &&
	nnp-read pc_0000.nii pc_0001.nii | nnp-write -o pcout/ &&
	niicmp pc_0000.nii pcout/pc_0000.nii.gz &&
	niicmp pc_0001.nii pcout/pc_0001.nii.gz &&
	check_no_tmp pcout
'
test_expect_success 'per-channel scale in the stream: one [slope, inter] per channel' '
	nnp-read pc_0000.nii pc_0001.nii >pc.nnp &&
	frame_decode --frames 1 --nii 0=pc_0000.nii,pc_0001.nii pc.nnp
'
test_expect_success 'a 4D file -> one 4D CASE.nii.gz in a directory' '
	mkdir d4 &&
	nnp-read m_f32_4.nii.gz | nnp-write -o d4 &&
	t_files_are d4 m_f32_4.nii.gz &&
	niicmp m_f32_4.nii.gz d4/m_f32_4.nii.gz
'
test_expect_success 'OUT ending with / is created as a directory' '
	nnp-read mc_0000.nii.gz | nnp-write -o fresh/ &&
	test -d fresh &&
	t_files_are fresh mc_0000.nii.gz &&
	niicmp mc_0000.nii.gz fresh/mc_0000.nii.gz
'
test_expect_success '--case sets the output names' '
	nnp-read --case brain_042 mc_0000.nii.gz mc_0001.nii.gz | nnp-write -o casedir/ &&
	t_files_are casedir brain_042_0000.nii.gz brain_042_0001.nii.gz &&
	niicmp mc_0001.nii.gz casedir/brain_042_0001.nii.gz
'
test_expect_success '--ext .nii writes uncompressed files in a directory' '
	nnp-read mc_0000.nii.gz mc_0001.nii.gz | nnp-write --ext .nii -o extdir/ &&
	t_files_are extdir mc_0000.nii mc_0001.nii &&
	niicmp mc_0000.nii.gz extdir/mc_0000.nii
'
for lvl in 0 1 9; do
	test_expect_success "--gzip-level $lvl gives the same image" "
		nnp-read m_i32_4.nii.gz | nnp-write --gzip-level $lvl -o gz$lvl.nii.gz &&
		niicmp m_i32_4.nii.gz gz$lvl.nii.gz
	"
done

# ---- image + label
test_expect_success 'image + --label -> CASE_0000.nii.gz and CASE.nii.gz' '
	mknii --dtype f32 --seed 100 --geom-seed 100 img_0000.nii.gz &&
	mknii --dtype u8 --values labels:4 --seed 101 --geom-seed 100 lab.nii.gz &&
	nnp-read img_0000.nii.gz --label lab.nii.gz | nnp-write -o il/ &&
	t_files_are il img_0000.nii.gz img.nii.gz &&
	niicmp img_0000.nii.gz il/img_0000.nii.gz &&
	niicmp lab.nii.gz il/img.nii.gz &&
	check_no_tmp il
'
test_expect_success 'image + label stream: two frames, roles image and label' '
	nnp-read img_0000.nii.gz --label lab.nii.gz >il.nnp &&
	frame_decode --frames 2 --role 0=image --role 1=label \
		--case 0=img --case 1=img \
		--nii 0=img_0000.nii.gz --nii 1=lab.nii.gz il.nnp
'

test_expect_success 'another role (seg) -> CASE_seg.nii.gz' '
	nnp-read lab.nii.gz >seg.nnp &&
	frame_edit --set "role=\"seg\"" seg.nnp seg2.nnp &&
	nnp-write -o segdir/ seg2.nnp &&
	t_files_are segdir lab_seg.nii.gz &&
	niicmp lab.nii.gz segdir/lab_seg.nii.gz
'
test_expect_success 'a multi-channel non-image role -> one 4D CASE_ROLE.nii.gz' '
	frame_edit --set "role=\"probabilities\"" mc.nnp prob.nnp &&
	nnp-write -o probdir/ prob.nnp &&
	t_files_are probdir mc_probabilities.nii.gz &&
	"$PYTHON" -c "import sys, nibabel as n; s = n.load(\"probdir/mc_probabilities.nii.gz\").shape; sys.exit(s != (7, 6, 5, 3))"
'

# ---- the stream, decoded by a generic msgpack decoder, equals nibabel's data
for f in m_u8_3 m_i16_4 m_u64_3 m_f64_4 f_none s_1x1x40 n2b; do
	test_expect_success "stream of $f decodes (generic msgpack) to the NIfTI data" "
		src=\$(ls $f.nii* | head -n 1) &&
		nnp-read \$src >$f.nnp &&
		frame_decode --frames 1 --role 0=image --case 0=$f --nii 0=\$src $f.nnp
	"
done

# ---- chunking
test_expect_success 'setup: volumes larger than one 1 MiB chunk' '
	mknii --dtype i16 --shape 128,128,40 --values ramp --seed 110 big3.nii.gz &&
	mknii --dtype i16 --shape 96,96,50,2 --seed 111 big4.nii.gz
'
test_expect_success '--chunk-mb 1: several chunks, last one short, round-trips' '
	nnp-read --chunk-mb 1 big3.nii.gz >big3.nnp &&
	frame_decode --offsets --nii 0=big3.nii.gz big3.nnp >big3.off &&
	test "$(grep -c " chunk " big3.off)" -ge 2 &&
	nnp-write -o big3_out.nii.gz big3.nnp &&
	niicmp big3.nii.gz big3_out.nii.gz
'
test_expect_success '--chunk-mb 1: 4D, chunks hold all channels of a slab' '
	nnp-read --chunk-mb 1 big4.nii.gz >big4.nnp &&
	frame_decode --offsets --nii 0=big4.nii.gz big4.nnp >big4.off &&
	test "$(grep -c " chunk " big4.off)" -ge 2 &&
	nnp-write -o big4_out.nii big4.nnp &&
	niicmp big4.nii.gz big4_out.nii
'
test_expect_success '--chunk-mb 1: no chunk over 1 MiB' '
	awk "\$2 == \"chunk\" && \$5 - \$4 > 1048576 + 5 { bad = 1 } END { exit bad }" big3.off big4.off
'

# ---- stream files, stdin, idempotence
test_expect_success 'nnp-read -o FILE, nnp-write FILE' '
	nnp-read -o s.nnp m_i8_4.nii.gz &&
	nnp-write -o s_out.nii.gz s.nnp &&
	niicmp m_i8_4.nii.gz s_out.nii.gz
'
test_expect_success 'nnp-write - reads stdin' '
	nnp-write -o s_out2.nii.gz - <s.nnp &&
	niicmp m_i8_4.nii.gz s_out2.nii.gz
'
test_expect_success 'read -> write -> read -> write gives the same bytes (.nii)' '
	nnp-read m_f32_3.nii.gz | nnp-write -o id1.nii &&
	nnp-read id1.nii | nnp-write -o id2.nii &&
	t_same_file id1.nii id2.nii
'
test_expect_success 'two runs give the same stream' '
	nnp-read m_u16_4.nii.gz >r1.nnp &&
	nnp-read m_u16_4.nii.gz >r2.nnp &&
	t_same_file r1.nnp r2.nnp
'

# ---- streams written by an independent encoder (Python msgpack)
test_expect_success 'nnp-write reads a stream from a stock msgpack encoder' '
	frame_encode m_i16_3.nii.gz -o py.nnp &&
	nnp-write -o py_out.nii.gz py.nnp &&
	niicmp --loose m_i16_3.nii.gz py_out.nii.gz
'
test_expect_success 'nnp-write: big-endian payload (dtype ">f4") is swapped' '
	frame_encode --big-endian --chunk 2 m_f32_4.nii.gz -o pybe.nnp &&
	nnp-write -o pybe_out.nii.gz pybe.nnp &&
	niicmp --loose m_f32_4.nii.gz pybe_out.nii.gz &&
	is_little pybe_out.nii.gz
'
test_expect_success 'nnp-write ignores unknown keys and accepts a newer minor version' '
	frame_encode --extra "{\"v\": [1, 9], \"zz_future\": {\"a\": [1, 2]}}" m_u8_3.nii.gz -o pyv.nnp &&
	nnp-write -o pyv_out.nii.gz pyv.nnp &&
	niicmp --loose m_u8_3.nii.gz pyv_out.nii.gz
'
test_expect_success 'image + label from the stock encoder into a directory' '
	frame_encode img_0000.nii.gz --label lab.nii.gz -o pyil.nnp &&
	nnp-write -o pyil/ pyil.nnp &&
	t_files_are pyil img_0000.nii.gz img.nii.gz &&
	niicmp --loose img_0000.nii.gz pyil/img_0000.nii.gz &&
	niicmp --loose lab.nii.gz pyil/img.nii.gz
'

# ---- the git-style dispatcher
if [ -x "$NNP_BIN/nnp" ]; then
	test_expect_success 'nnp read | nnp write round-trips' '
		nnp read m_i16_4.nii.gz | nnp write -o disp.nii.gz &&
		niicmp m_i16_4.nii.gz disp.nii.gz
	'
else
	test_skip 'nnp read | nnp write round-trips' 'bin/nnp not built'
fi

done_testing
