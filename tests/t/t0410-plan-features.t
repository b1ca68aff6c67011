#!/bin/bash
# t0410-plan-features.t — nnp plan --base-features / --max-features[-2d|-3d]:
# the planner attributes UNet_base_num_features and UNet_max_features_{2d,3d}
# overridden as a planner subclass would.  The plans equal
# tests/tools/plan_reference.py with the same attributes byte for byte (2d,
# 3d, anisotropic, CT-like with 3d_lowres, 2D data, ResEnc); the stock values
# given explicitly reproduce the nnU-Net fixture; a variant never takes the
# stock file name; bad values are usage errors; plan-and-preprocess passes the
# options on and preprocesses into the variant's data identifiers.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-plan

REF="$T_PYTOOLS/plan_reference.py"
MKFP="$T_PYTOOLS/mkfingerprint.py"
PRE=$(t_tmpdir)
unset nnUNet_raw nnUNet_preprocessed nnUNet_results

fresh() {
	rm -rf "${PRE:?}/$1"
	cp -r "$T_FIXTURES/$1" "$PRE/$1"
	rm -f "$PRE/$1/nnUNetPlans.json"
}
ref() {
	local d=$1
	shift
	"$PYTHON" "$REF" "$d/dataset.json" "$d/dataset_fingerprint.json" --dataset-name "$(basename "$d")" "$@"
}
jget() {
	"$PYTHON" -c 'import json,sys; p=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(v if isinstance(v, str) else json.dumps(v))' "$1" "$2"
}
feats() { # FILE CONFIG: features_per_stage
	jget "$1" "p[\"configurations\"][\"$2\"][\"architecture\"][\"arch_kwargs\"][\"features_per_stage\"]"
}

test_expect_success 'the stock values given explicitly: nnUNetPlans.json, byte-identical to nnU-Net' '
	fresh Dataset901_Spheres &&
	t_code 0 nnp-plan --base-features 32 --max-features-2d 512 --max-features-3d 320 "$PRE/Dataset901_Spheres" &&
	t_same_file "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" "$PRE/Dataset901_Spheres/nnUNetPlans.json" &&
	t_code 0 nnp-plan --max-features-3d 320 -o "$PWD/s.json" "$PRE/Dataset901_Spheres" &&
	t_same_file "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" s.json
'

test_expect_success 'base 16 / max 128: nnUNetPlans_f16x128.json, the reference planner with those attributes' '
	fresh Dataset901_Spheres &&
	D="$PRE/Dataset901_Spheres" &&
	t_code 0 nnp-plan --base-features 16 --max-features 128 "$D" &&
	P="$D/nnUNetPlans_f16x128.json" &&
	t_no_file "$D/nnUNetPlans.json" &&
	t_same_file "$P" <(ref "$D" --plans-name nnUNetPlans_f16x128 --base-features 16 \
		--max-features-2d 128 --max-features-3d 128) &&
	test "$(jget "$P" "p[\"plans_name\"]")" = nnUNetPlans_f16x128 &&
	test "$(jget "$P" "p[\"configurations\"][\"3d_fullres\"][\"data_identifier\"]")" = nnUNetPlans_f16x128_3d_fullres &&
	test "$(jget "$P" "p[\"configurations\"][\"2d\"][\"data_identifier\"]")" = nnUNetPlans_f16x128_2d &&
	test "$(feats "$P" 3d_fullres)" = "[16, 32, 64, 128, 128]" &&
	f2=$(feats "$P" 2d) && case $f2 in "[16, 32, 64, 128, 128"*) ;; *) echo "2d: $f2"; exit 1 ;; esac
'

test_expect_success 'smaller networks get bigger batches (estimate follows the features)' '
	D="$PRE/Dataset901_Spheres" &&
	b32=$(jget "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" "p[\"configurations\"][\"2d\"][\"batch_size\"]") &&
	b16=$(jget "$D/nnUNetPlans_f16x128.json" "p[\"configurations\"][\"2d\"][\"batch_size\"]") &&
	echo "2d batch: stock $b32, f16x128 $b16" &&
	test "$b16" -ge "$b32"
'

# cmp_ref DIR PLANNER ARGS...: nnp-plan ARGS == reference with the resolved attributes
cmp_ref() {
	local d=$1 pl=$2 b=$3 m2=$4 m3=$5 name=$6
	shift 6
	rm -f c.json &&
	t_code 0 nnp-plan --planner "$pl" "$@" -o "$PWD/c.json" "$d" &&
	ref "$d" --planner "$pl" --plans-name "$name" --base-features "$b" \
		--max-features-2d "$m2" --max-features-3d "$m3" >r.json &&
	t_same_file r.json c.json &&
	test "$(jget c.json "p[\"plans_name\"]")" = "$name"
}

test_expect_success 'generated fingerprints (iso, aniso, ct with 3d_lowres, 2D data): identical to the reference' '
	args=() &&
	for k in iso aniso ct twod huge; do args+=("$k" 3 "$PRE/Dataset94${#args[@]}_$k"); done &&
	"$PYTHON" "$MKFP" "${args[@]}" &&
	n=0 &&
	for d in "$PRE"/Dataset94*_*; do
		cmp_ref "$d" default 16 128 128 nnUNetPlans_f16x128 --base-features 16 --max-features 128 &&
		cmp_ref "$d" default 8 64 64 nnUNetPlans_f8x64 --base-features 8 --max-features 64 &&
		cmp_ref "$d" default 16 256 128 nnUNetPlans_f16x256x128 \
			--base-features 16 --max-features-2d 256 --max-features-3d 128 &&
		cmp_ref "$d" default 32 320 320 nnUNetPlans_f32x320 --max-features 320 &&
		cmp_ref "$d" default 24 200 100 nnUNetPlans_f24x200x100 \
			--max-features-3d 100 --base-features 24 --max-features 200 || { echo "differs: $d"; return 1; }
		n=$((n + 5))
	done &&
	echo "$n plans identical" && test $n = 25
'

test_expect_success 'the features change what the planner decides (aniso, huge with 3d_lowres)' '
	D=$(echo "$PRE"/Dataset94*_aniso) &&
	nnp-plan -q -o a.json "$D" && nnp-plan -q --base-features 8 --max-features 64 -o v.json "$D" &&
	test "$(feats v.json 3d_fullres | cut -c1-12)" = "[8, 16, 32, " &&
	test "$(jget v.json "p[\"configurations\"][\"3d_fullres\"][\"architecture\"][\"arch_kwargs\"][\"strides\"][1]")" = "[1, 2, 2]" &&
	D=$(echo "$PRE"/Dataset94*_huge) &&
	nnp-plan -q -o hs.json "$D" && nnp-plan -q --base-features 8 --max-features 64 -o hv.json "$D" &&
	test "$(jget hs.json "list(p[\"configurations\"])")" = "[\"2d\", \"3d_lowres\", \"3d_fullres\", \"3d_cascade_fullres\"]" &&
	ps=$(jget hs.json "p[\"configurations\"][\"3d_fullres\"][\"patch_size\"]") &&
	pv=$(jget hv.json "p[\"configurations\"][\"3d_fullres\"][\"patch_size\"]") &&
	echo "3d_fullres patch: stock $ps, f8x64 $pv" && test "$ps" != "$pv"
'

test_expect_success 'ResEnc presets: the same attributes, shared 2d/3d_fullres data identifiers' '
	fresh Dataset901_Spheres &&
	D="$PRE/Dataset901_Spheres" &&
	cmp_ref "$D" resenc-m 16 128 128 nnUNetResEncUNetMPlans_f16x128 --base-features 16 --max-features 128 &&
	cmp_ref "$D" resenc 8 64 64 nnUNetResEncUNetPlans_f8x64 --base-features 8 --max-features 64 &&
	test "$(jget c.json "p[\"configurations\"][\"3d_fullres\"][\"data_identifier\"]")" = nnUNetPlans_3d_fullres &&
	t_code 0 nnp-plan --planner resenc-l --base-features 16 --max-features 128 "$D" &&
	test -f "$D/nnUNetResEncUNetLPlans_f16x128.json"
'

test_expect_success '--plans-name wins over the variant name' '
	fresh Dataset901_Spheres &&
	D="$PRE/Dataset901_Spheres" &&
	t_code 0 nnp-plan --base-features 16 --max-features 128 --plans-name small "$D" &&
	test "$(jget "$D/small.json" "p[\"configurations\"][\"2d\"][\"data_identifier\"]")" = small_2d &&
	t_same_file "$D/small.json" <(ref "$D" --plans-name small --base-features 16 --max-features-2d 128 --max-features-3d 128)
'

test_expect_success 'bad feature values are usage errors; nothing is written' '
	fresh Dataset901_Spheres &&
	D="$PRE/Dataset901_Spheres" &&
	for v in 0 -1 -16 abc 1.5 "" 65537 99999999999999999999; do
		t_code 2 nnp-plan --base-features "$v" "$D" && t_err_line nnp-plan base-features &&
		t_code 2 nnp-plan --max-features "$v" "$D" && t_err_line nnp-plan max-features &&
		t_code 2 nnp-plan --max-features-2d "$v" "$D" && t_err_line nnp-plan max-features-2d &&
		t_code 2 nnp-plan --max-features-3d "$v" "$D" && t_err_line nnp-plan max-features-3d || return 1
	done &&
	t_code 2 nnp-plan --base-features 64 --max-features 32 "$D" && t_err_line nnp-plan maximum base &&
	t_code 2 nnp-plan --max-features 16 "$D" && t_err_line nnp-plan maximum &&
	t_code 2 nnp-plan --base-features 16 --max-features 128 --max-features-2d 8 "$D" && t_err_line nnp-plan 2d &&
	t_code 2 nnp-plan --base-features && t_err_line nnp-plan needs &&
	nnp-plan --help | grep -q -- --max-features-3d &&
	ls "$D" >list && ! grep -q Plans list && check_no_tmp "$D"
'

if command -v parallel >/dev/null && [ -x "$NNP_BIN/nnp-plan-and-preprocess" ]; then
	test_expect_success 'plan-and-preprocess passes the options on; cases go to the variant data identifier' '
		mkdir -p raw pp && cp -r "$T_FIXTURES/raw/Dataset901_Spheres" raw/ &&
		nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pp t_code 0 nnp plan-and-preprocess -d 901 -j 2 \
			--base-features 16 --max-features 128 -c 3d_fullres &&
		P=pp/Dataset901_Spheres &&
		t_no_file $P/nnUNetPlans.json &&
		t_same_file $P/nnUNetPlans_f16x128.json <(ref $P \
			--plans-name nnUNetPlans_f16x128 --base-features 16 --max-features-2d 128 --max-features-3d 128) &&
		test -s $P/nnUNetPlans_f16x128_3d_fullres/sph_004.nnp && test -s $P/nnUNetPlans_f16x128_3d_fullres/sph_007.nnp &&
		nnp read --dataset raw/Dataset901_Spheres --case sph_007 | nnp preprocess -p $P/nnUNetPlans_f16x128.json -c 3d_fullres >hand.nnp &&
		cmp hand.nnp $P/nnUNetPlans_f16x128_3d_fullres/sph_007.nnp &&
		nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pp t_code 0 nnp plan-and-preprocess -d 901 -j 2 \
			--planner resenc-m --max-features 64 -c 2d &&
		test -f $P/nnUNetResEncUNetMPlans_f32x64.json &&
		test -s $P/nnUNetPlans_2d/sph_004.nnp &&
		t_code 2 nnp plan-and-preprocess -d 901 --base-features 0 &&
		t_code 2 nnp plan-and-preprocess -d 901 --max-features x
	'
else
	test_skip 'plan-and-preprocess passes the options on' 'GNU parallel or the pipeline missing'
fi

done_testing
