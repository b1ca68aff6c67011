#!/bin/bash
# t0110-badinput.t — bad streams, bad NIfTI files, bad command lines.
#
# Every failure must end with the documented exit status (1 bad data,
# 2 usage, 3 output I/O), exactly one "nnp-NAME: error: ..." line naming
# the file or case and the problem, no crash (status < 128, not 70) and no
# output or temporary file left behind.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-read nnp-write nnp-info

# mp_write JSON FILE: FILE = one msgpack object (from JSON), stock packer.
mp_write() {
	"$PYTHON" -c 'import sys, json, msgpack
open(sys.argv[2], "wb").write(msgpack.packb(json.loads(sys.argv[1]), use_bin_type=True))' "$1" "$2"
}

# write_fails CODE STREAM WORD...: nnp-write -o out/x.nii.gz STREAM exits
# CODE with one error line holding the WORDs; nothing is left in out/.
write_fails() {
	local code=$1 s=$2
	shift 2
	rm -rf wout && mkdir wout &&
	t_code "$code" nnp-write -o wout/x.nii.gz "$s" &&
	t_err_line nnp-write "$@" &&
	t_files_are wout
}

# info_fails CODE STREAM WORD...: the same for nnp-info.
info_fails() {
	local code=$1 s=$2
	shift 2
	t_code "$code" nnp-info "$s" &&
	t_err_line nnp-info "$@"
}

# offset FRAME WHAT [K]: start/end offsets from frame_decode --offsets of good.off
hdr_end() { awk '$1 == 0 && $2 == "header" { print $5 }' good.off; }
chunk_start() { awk -v k="$1" '$1 == 0 && $2 == "chunk" && $3 == k { print $4 }' good.off; }
chunk_end() { awk -v k="$1" '$1 == 0 && $2 == "chunk" && $3 == k { print $5 }' good.off; }

test_expect_success 'setup: a valid two-chunk stream and an image+label stream' '
	mknii --dtype i16 --shape 128,128,40 --seed 1 good.nii.gz &&
	nnp-read --chunk-mb 1 good.nii.gz >good.nnp &&
	frame_decode --offsets good.nnp >good.off &&
	test "$(grep -c " chunk " good.off)" -ge 2 &&
	mknii --dtype f32 --seed 2 --geom-seed 2 il_0000.nii.gz &&
	mknii --dtype u8 --values labels:3 --seed 3 --geom-seed 2 illab.nii.gz &&
	nnp-read il_0000.nii.gz --label illab.nii.gz >il.nnp &&
	frame_decode --offsets il.nnp >il.off
'

# ---- truncated streams -------------------------------------------------------
trunc_case() { # NAME OFFSET-EXPRESSION NEED-CASE
	test_expect_success "truncated stream ($1): nnp-write exits 1, says truncated" "
		n=\$(( $2 )) && test \$n -gt 0 &&
		head -c \$n good.nnp >tr_$1.nnp &&
		write_fails 1 tr_$1.nnp truncated tr_$1.nnp $3 &&
		check_no_tmp .
	"
	test_expect_success "truncated stream ($1): nnp-info exits 1, says truncated" "
		info_fails 1 tr_$1.nnp truncated tr_$1.nnp $3
	"
}
trunc_case hdr1 1 ""
trunc_case hdrmid '$(hdr_end) / 2' ""
trunc_case hdrend '$(hdr_end)' good
trunc_case binlen '$(chunk_start 0) + 2' good
trunc_case chunk0 '$(chunk_start 0) + 1000' good
trunc_case between '$(chunk_end 0)' good
trunc_case last '$(chunk_end 1) - 7' good
trunc_case end1 "\$(wc -c <good.nnp) - 1" good

test_expect_success 'truncated stream on stdin: nnp-write exits 1, says truncated' '
	head -c 5000 good.nnp >tr_stdin.nnp &&
	rm -rf wout && mkdir wout &&
	t_code 1 nnp-write -o wout/x.nii.gz <tr_stdin.nnp &&
	t_err_line nnp-write truncated &&
	t_files_are wout
'
test_expect_success 'label frame truncated: exit 1, no label file, no temp file' '
	n=$(awk "\$1 == 1 && \$2 == \"chunk\" && \$3 == 0 { print \$4 + 10 }" il.off) &&
	head -c $n il.nnp >tr_il.nnp &&
	rm -rf ilout && mkdir ilout &&
	t_code 1 nnp-write -o ilout tr_il.nnp &&
	t_err_line nnp-write truncated tr_il.nnp &&
	t_no_file ilout/il.nii.gz &&
	check_no_tmp ilout
'
test_expect_success 'a stream cut by a pipe reader going away mid-frame' '
	rm -rf wout && mkdir wout &&
	t_code 1 sh -c "nnp-read good.nii.gz | head -c 3000 | nnp-write -o wout/x.nii.gz" &&
	t_err_line nnp-write truncated &&
	t_files_are wout
'

# ---- corrupt headers ---------------------------------------------------------
test_expect_success 'random bytes (invalid msgpack) -> 1' '
	printf "\301\301\301\301garbage" >rnd1.nnp &&
	write_fails 1 rnd1.nnp rnd1.nnp &&
	info_fails 1 rnd1.nnp rnd1.nnp
'
test_expect_success 'seeded random bytes -> 1' '
	"$PYTHON" -c "import numpy as np; open(\"rnd2.nnp\", \"wb\").write(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())" &&
	write_fails 1 rnd2.nnp rnd2.nnp &&
	info_fails 1 rnd2.nnp rnd2.nnp
'
for v in '[1, 2, 3]' '42' '"frame"' 'null'; do
	test_expect_success "valid msgpack but not a map ($v) -> 1" "
		mp_write '$v' nomap.nnp &&
		write_fails 1 nomap.nnp nomap.nnp &&
		info_fails 1 nomap.nnp nomap.nnp
	"
done
test_expect_success 'a map without "nnp" -> 1' '
	mp_write "{\"role\": \"image\", \"shape\": [1, 2, 2, 2]}" nonnp.nnp &&
	write_fails 1 nonnp.nnp nonnp.nnp &&
	info_fails 1 nonnp.nnp nonnp.nnp
'
for key in dtype shape nbytes nchunks v; do
	test_expect_success "a header without \"$key\" -> 1" "
		frame_edit --del $key good.nnp del_$key.nnp &&
		write_fails 1 del_$key.nnp del_$key.nnp &&
		info_fails 1 del_$key.nnp
	"
done
for bad in 'dtype="<c8"' 'dtype="int"' 'dtype=7' 'shape=[1,2,3]' 'shape=[1,-40,128,128]' \
	'shape=[0,40,128,128]' 'shape="big"' 'chunk=0' 'chunk=-1' 'codec="zstd-unknown"' \
	'role=5' 'affine=[[1,0],[0,1]]' 'spacing=[1,1]'; do
	test_expect_success "bad header value $bad -> 1" "
		frame_edit --set '$bad' good.nnp bad.nnp &&
		write_fails 1 bad.nnp bad.nnp &&
		info_fails 1 bad.nnp
	"
done
test_expect_success 'header over the 16 MiB cap -> 1, too large' '
	frame_edit --pad-props 17 good.nnp huge.nnp &&
	test "$(wc -c <huge.nnp)" -gt 17825792 &&
	write_fails 1 huge.nnp "too large" huge.nnp &&
	info_fails 1 huge.nnp "too large"
'
test_expect_success 'unknown major version v [2, 0] -> 1, version' '
	frame_edit --set "v=[2,0]" good.nnp v2.nnp &&
	write_fails 1 v2.nnp version v2.nnp &&
	info_fails 1 v2.nnp version
'
test_expect_success 'garbage after a complete frame -> 1' '
	cp il.nnp tail.nnp && printf "\301junk" >>tail.nnp &&
	t_code 1 nnp-info tail.nnp &&
	t_err_line nnp-info tail.nnp
'
test_expect_success 'absurd sizes (dims over the caps) -> 1 or 4, no crash' '
	frame_edit --set "shape=[1,2097152,128,128]" --set "nbytes=68719476736" good.nnp absurd1.nnp &&
	frame_edit --set "shape=[65536,1048576,1048576,1048576]" good.nnp absurd2.nnp &&
	for s in absurd1 absurd2; do
		rc=0; nnp-write -o wout/$s.nii.gz $s.nnp 2>stderr || rc=$?
		case $rc in 1|4) ;; *) echo "$s: exit $rc"; cat stderr; exit 1 ;; esac
		t_err_line nnp-write $s.nnp || exit 1
		t_no_file wout/$s.nii.gz || exit 1
	done
'

# ---- wrong byte counts ---------------------------------------------------------
test_expect_success 'nbytes inconsistent with shape -> 1' '
	frame_edit --set "nbytes=12345" good.nnp nb.nnp &&
	write_fails 1 nb.nnp nb.nnp &&
	info_fails 1 nb.nnp
'
test_expect_success 'nchunks inconsistent with shape and chunk -> 1' '
	frame_edit --set "nchunks=1" good.nnp nc.nnp &&
	write_fails 1 nc.nnp nc.nnp &&
	info_fails 1 nc.nnp
'
test_expect_success 'chunk (slices per chunk) inconsistent with nchunks -> 1' '
	frame_edit --set "chunk=1" good.nnp ck.nnp &&
	write_fails 1 ck.nnp ck.nnp &&
	info_fails 1 ck.nnp
'
test_expect_success 'a chunk one byte short -> 1' '
	frame_edit --chunk-delta 0:-1 good.nnp short.nnp &&
	write_fails 1 short.nnp short.nnp &&
	info_fails 1 short.nnp
'
test_expect_success 'a chunk one byte long -> 1' '
	frame_edit --chunk-delta 1:1 good.nnp long.nnp &&
	write_fails 1 long.nnp long.nnp &&
	info_fails 1 long.nnp
'
test_expect_success 'a chunk missing (next object is not a bin) -> 1' '
	frame_edit --drop-chunk 0 good.nnp drop.nnp &&
	write_fails 1 drop.nnp drop.nnp &&
	info_fails 1 drop.nnp
'
test_expect_success 'a chunk encoded as str instead of bin -> 1' '
	frame_edit --chunk-str 0 good.nnp str.nnp &&
	write_fails 1 str.nnp str.nnp &&
	info_fails 1 str.nnp
'

# ---- bad NIfTI input -------------------------------------------------------
test_expect_success 'setup: a random (incompressible) .nii.gz' '
	mknii --dtype f32 --shape 64,64,20 --seed 5 rnd.nii.gz
'
# read_fails FILE WORD...: nnp-read FILE exits 1 naming it; -o leaves nothing
read_fails() {
	local f=$1
	shift
	rm -rf rout && mkdir rout &&
	t_code 1 nnp-read -o rout/s.nnp "$f" &&
	t_err_line nnp-read "$f" "$@" &&
	t_files_are rout
}
test_expect_success '.nii.gz with flipped bytes in the middle -> 1 naming the file' '
	"$PYTHON" -c "import sys; b = bytearray(open(sys.argv[1], \"rb\").read()); m = len(b) // 2
for i in range(m, m + 4): b[i] ^= 0xff
open(sys.argv[2], \"wb\").write(b)" rnd.nii.gz flip.nii.gz &&
	read_fails flip.nii.gz
'
test_expect_success '.nii.gz with flipped bytes: nothing usable reaches stdout consumers' '
	rm -rf wout && mkdir wout &&
	t_code 1 sh -c "nnp-read flip.nii.gz 2>read.err | nnp-write -o wout/x.nii.gz" &&
	grep -q "^nnp-read: error: .*flip.nii.gz" read.err &&
	t_files_are wout
'
test_expect_success '.nii.gz cut in half -> 1 naming the file' '
	head -c $(( $(wc -c <rnd.nii.gz) / 2 )) rnd.nii.gz >half.nii.gz &&
	read_fails half.nii.gz
'
test_expect_success '.nii.gz without its gzip trailer (CRC, size) -> 1 naming the file' '
	head -c $(( $(wc -c <rnd.nii.gz) - 8 )) rnd.nii.gz >notrailer.nii.gz &&
	read_fails notrailer.nii.gz
'
test_expect_success '.nii.gz with a wrong CRC -> 1 naming the file' '
	"$PYTHON" -c "import sys; b = bytearray(open(sys.argv[1], \"rb\").read()); b[-6] ^= 0x55
open(sys.argv[2], \"wb\").write(b)" rnd.nii.gz badcrc.nii.gz &&
	read_fails badcrc.nii.gz
'
test_expect_success 'truncated .nii (voxel data short) -> 1 naming the file' '
	mknii --dtype i16 --seed 6 full.nii &&
	head -c $(( $(wc -c <full.nii) - 10 )) full.nii >short.nii &&
	read_fails short.nii
'
test_expect_success 'header-only .nii (no voxels) -> 1 naming the file' '
	head -c 352 full.nii >hdronly.nii &&
	read_fails hdronly.nii
'
test_expect_success 'a text file named .nii -> 1 naming the file' '
	printf "this is not a nifti file\n%.0s" 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 >text.nii &&
	read_fails text.nii
'
test_expect_success 'an empty .nii.gz -> 1 naming the file' '
	: >empty.nii.gz &&
	read_fails empty.nii.gz
'
test_expect_success 'a gzip of text named .nii.gz -> 1 naming the file' '
	printf "hello world, not nifti %.0s" $(seq 1 40) | gzip -n >textgz.nii.gz &&
	read_fails textgz.nii.gz
'
test_expect_success 'a negative dim in the header -> 1 naming the file' '
	"$PYTHON" -c "import sys, struct; b = bytearray(open(sys.argv[1], \"rb\").read()); b[42:44] = struct.pack(\"<h\", -7)
open(sys.argv[2], \"wb\").write(b)" full.nii negdim.nii &&
	read_fails negdim.nii
'
test_expect_success 'a 5-D file (dim[5] > 1) -> 1 naming the file' '
	mknii --dtype i16 --shape 3,4,5,2,2 five.nii.gz &&
	read_fails five.nii.gz
'
test_expect_success 'an unsupported voxel type (complex64) -> 1 naming the file' '
	mknii --dtype c64 cplx.nii &&
	read_fails cplx.nii
'
test_expect_success 'a missing file -> 1 naming it' '
	read_fails nosuch_0000.nii.gz
'
test_expect_success 'a missing channel file -> 1 naming it' '
	mknii --dtype i16 --seed 10 --geom-seed 10 ch_0000.nii.gz &&
	rm -rf rout && mkdir rout &&
	t_code 1 nnp-read -o rout/s.nnp ch_0000.nii.gz ch_0001.nii.gz &&
	t_err_line nnp-read ch_0001.nii.gz &&
	t_files_are rout
'
test_expect_success 'a missing --label file -> 1 naming it' '
	rm -rf rout && mkdir rout &&
	t_code 1 nnp-read -o rout/s.nnp ch_0000.nii.gz --label nolabel.nii.gz &&
	t_err_line nnp-read nolabel.nii.gz &&
	t_files_are rout
'
# chan_fails NAME MKNII-OPTIONS...: a second channel made with these options
# differs in geometry from ch_0000.nii.gz: nnp-read exits 1 naming it.
chan_fails() {
	local n=$1
	shift
	mknii --dtype i16 --seed 11 "$@" $n &&
	rm -rf rout && mkdir rout &&
	t_code 1 nnp-read -o rout/s.nnp ch_0000.nii.gz $n &&
	t_err_line nnp-read $n &&
	t_files_are rout
}
test_expect_success 'channels of different shape -> 1 naming the file' '
	chan_fails shp_0001.nii.gz --geom-seed 10 --shape 7,6,4
'
test_expect_success 'channels of different spacing -> 1 naming the file' '
	chan_fails spc_0001.nii.gz --geom-seed 10 --pixdim 0.75,1.25,3.0
'
test_expect_success 'channels of different affine -> 1 naming the file' '
	chan_fails aff_0001.nii.gz --geom-seed 99
'
test_expect_success 'a --label of different geometry -> 1 naming it, no output' '
	mknii --dtype u8 --values labels:2 --seed 13 --geom-seed 77 badlab.nii.gz &&
	rm -rf rout && mkdir rout &&
	t_code 1 nnp-read -o rout/s.nnp ch_0000.nii.gz --label badlab.nii.gz &&
	t_err_line nnp-read badlab.nii.gz &&
	t_files_are rout
'
test_expect_success 'a 4D channel file mixed with 3D of the same grid is not a crash' '
	mknii --dtype i16 --seed 12 --geom-seed 10 --shape 7,6,5,2 c4_0001.nii.gz &&
	rc=0; nnp-read ch_0000.nii.gz c4_0001.nii.gz >mix.nnp 2>stderr || rc=$?
	case $rc in
	0) frame_decode --nii 0=ch_0000.nii.gz,c4_0001.nii.gz mix.nnp ;;
	1) t_err_line nnp-read c4_0001.nii.gz ;;
	*) echo "exit $rc"; cat stderr; exit 1 ;;
	esac
'

# ---- terminals -------------------------------------------------------------
test_expect_success 'nnp-read refuses to write frames to a terminal (exit 2)' '
	rc=0; script -qec "nnp-read ch_0000.nii.gz" /dev/null >tty.out 2>&1 || rc=$?
	test $rc -eq 2 || { echo "exit $rc"; cat -v tty.out; exit 1; }
	grep -qi "terminal" tty.out &&
	# nothing but the one error line reached the terminal
	test "$(tr -d "\r" <tty.out)" = "$(grep -a "^nnp-read: error: " tty.out | tr -d "\r")"
'
for p in "nnp-write -o tty_out.nii.gz" nnp-info; do
	test_expect_success "$p with a terminal on stdin does not hang (exit 2)" "
		rc=0; script -qec 'timeout 10 $p' /dev/null >tty2.out 2>&1 || rc=\$?
		test \$rc -eq 2 || { echo \"exit \$rc\"; cat -v tty2.out; exit 1; }
		t_no_file tty_out.nii.gz
	"
done

# ---- SIGPIPE, full disks, unwritable outputs ---------------------------------
test_expect_success 'nnp-read | head -c 10 ends quietly (141 or 0, no stderr)' '
	set +e
	nnp-read good.nii.gz 2>pipe.err | head -c 10 >/dev/null
	st=("${PIPESTATUS[@]}")
	set -e
	case ${st[0]} in 0|141) ;; *) echo "nnp-read exit ${st[0]}"; cat pipe.err; exit 1 ;; esac
	t_stderr_empty pipe.err
'
test_expect_success 'nnp-info | head -n 1 ends quietly' '
	cat il.nnp il.nnp il.nnp il.nnp >many.nnp &&
	for i in 1 2 3 4 5 6; do cat many.nnp; done >many6.nnp &&
	set +e
	nnp-info many6.nnp 2>pipe2.err | head -n 1 >/dev/null
	st=("${PIPESTATUS[@]}")
	set -e
	case ${st[0]} in 0|141) ;; *) echo "nnp-info exit ${st[0]}"; cat pipe2.err; exit 1 ;; esac
	t_stderr_empty pipe2.err
'
test_expect_success 'nnp-read >/dev/full -> 3 with one error line' '
	test -w /dev/full || exit 0
	t_code 3 sh -c "nnp-read good.nii.gz >/dev/full" &&
	t_err_line nnp-read
'
test_expect_success 'nnp-info >/dev/full -> 3' '
	test -w /dev/full || exit 0
	t_code 3 sh -c "nnp-info il.nnp >/dev/full" &&
	t_err_line nnp-info
'
test_expect_success 'nnp-write into a path under a regular file -> 3' '
	: >plainfile &&
	t_code 3 nnp-write -o plainfile/x.nii.gz il.nnp &&
	t_err_line nnp-write plainfile
'
test_expect_success 'nnp-write killed by SIGTERM mid-stream leaves no temp file' '
	k=$(t_tmpdir) &&
	n=$(( $(chunk_end 0) + 100 ))
	{ head -c $n good.nnp; sleep 3; } |
		sh -c "echo \$\$ >w.pid; exec nnp-write -o $k/x.nii.gz" 2>kill.err &
	job=$!
	sleep 1.5 &&
	echo "before the signal: $(ls -A $k)" &&
	kill -TERM "$(cat w.pid)" &&
	{ wait $job || true; } &&
	t_files_are $k
'

# ---- case ids must not escape the output directory
for cid in '../escape' '/tmp/nnp-t0110-abs' 'a/../../escape2' '..' ''; do
	test_expect_success "case id '$cid' cannot write outside OUT" "
		mkdir -p esc/out &&
		frame_edit --set 'case=\"$cid\"' il.nnp esc.nnp &&
		rc=0; (cd esc && nnp-write -o out/ ../esc.nnp) 2>stderr || rc=\$?
		case \$rc in 0|1|2) ;; *) echo \"exit \$rc\"; cat stderr; exit 1 ;; esac
		test \$rc -eq 0 || t_err_line nnp-write
		t_files_are esc out &&
		t_no_file /tmp/nnp-t0110-abs.nii.gz /tmp/nnp-t0110-abs_0000.nii.gz escape.nii.gz escape_0000.nii.gz &&
		rm -rf esc
	"
done

# ---- refusing to clobber, output names, frame counts ---------------------------
test_expect_success 'existing output file without --force -> 2, file untouched' '
	echo precious >exist.nii.gz && cp exist.nii.gz exist.copy &&
	t_code 2 nnp-write -o exist.nii.gz il.nnp &&
	t_err_line nnp-write exist.nii.gz &&
	t_same_file exist.nii.gz exist.copy
'
test_expect_success 'existing output file with --force is replaced' '
	nnp-read ch_0000.nii.gz | nnp-write --force -o exist.nii.gz &&
	niicmp ch_0000.nii.gz exist.nii.gz &&
	check_no_tmp .
'
test_expect_success 'existing CASE_0000 in a directory without --force -> 2, untouched' '
	rm -rf dout && mkdir dout &&
	echo precious >dout/il_0000.nii.gz && cp dout/il_0000.nii.gz il.copy &&
	t_code 2 nnp-write -o dout/ il.nnp &&
	t_err_line nnp-write il_0000.nii.gz &&
	t_same_file dout/il_0000.nii.gz il.copy &&
	check_no_tmp dout
'
test_expect_success 'two frames to a single-file OUT -> 2, no file' '
	t_code 2 nnp-write -o two.nii.gz il.nnp &&
	t_err_line nnp-write &&
	t_no_file two.nii.gz &&
	check_no_tmp .
'
test_expect_success 'an empty stream (upstream failed) to a single-file OUT -> 1, no file' '
	: >empty.nnp &&
	t_code 1 nnp-write -o zero.nii.gz empty.nnp &&
	t_err_line nnp-write &&
	t_no_file zero.nii.gz
'
test_expect_success 'OUT that is neither a directory nor .nii/.nii.gz -> 2' '
	t_code 2 nnp-write -o out.txt il.nnp &&
	t_err_line nnp-write out.txt &&
	t_no_file out.txt
'
test_expect_success 'a missing stream file -> 1 naming it' '
	t_code 1 nnp-write -o miss.nii.gz nosuch.nnp &&
	t_err_line nnp-write nosuch.nnp &&
	t_no_file miss.nii.gz &&
	t_code 1 nnp-info nosuch.nnp &&
	t_err_line nnp-info nosuch.nnp
'

# ---- usage errors ----------------------------------------------------------
usage_fails() { # PROG ARGS...
	local p=$1
	t_code 2 "$@" </dev/null &&
	t_err_line "$p"
}
for cmd in 'nnp-read --no-such-option ch_0000.nii.gz' 'nnp-read' \
	'nnp-read --chunk-mb 0 ch_0000.nii.gz' 'nnp-read --chunk-mb -3 ch_0000.nii.gz' \
	'nnp-read --chunk-mb abc ch_0000.nii.gz' 'nnp-read --case' \
	'nnp-write --no-such-option -o u.nii.gz il.nnp' 'nnp-write il.nnp' \
	'nnp-write --gzip-level 10 -o u.nii.gz il.nnp' 'nnp-write --gzip-level x -o u.nii.gz il.nnp' \
	'nnp-write --ext .foo -o udir/ il.nnp' 'nnp-write -o' \
	'nnp-info --no-such-option il.nnp'; do
	test_expect_success "usage error: $cmd -> 2" "
		usage_fails $cmd &&
		t_no_file u.nii.gz udir
	"
done

# ---- --help and --version --------------------------------------------------
for p in nnp-read nnp-write nnp-info nnp; do
	test_expect_success "$p --help exits 0 with usage and the exit-status table" "
		t_code 0 $p --help &&
		t_stderr_empty &&
		grep -qi usage stdout &&
		grep -qi 'exit status' stdout
	"
	test_expect_success "$p --version exits 0" "
		t_code 0 $p --version &&
		t_stderr_empty &&
		grep -q '^$p .*[0-9]\.[0-9]' stdout
	"
done

done_testing
