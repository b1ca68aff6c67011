#!/bin/bash
# t0130-cli.t — the shared program skeleton: progress only on a terminal,
# thread options, the nnp dispatcher, make install. (lib.sh exports
# NNP_QUIET=1; the progress tests clear it.)
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-read nnp-write nnp-info

test_expect_success 'setup: a volume of several chunks' '
	"$NNP_TOOLS/nnp-mkvol" -o big.nii --shape 64,64,40 --dtype int16 &&
	nnp-read --chunk-mb 1 big.nii >big.nnp
'
test_expect_success 'progress bar on stderr when stderr is a terminal' '
	NNP_QUIET= script -qec "nnp-read --chunk-mb 1 big.nii 2>/dev/tty | cat >/dev/null" /dev/null >tty.out &&
	grep -q "nnp-read: big \[" tty.out &&
	grep -q "40/40" tty.out
'
test_expect_success 'no progress when stderr is redirected' '
	nnp-read --chunk-mb 1 big.nii 2>err.txt >/dev/null &&
	test ! -s err.txt
'
test_expect_success '--quiet and NNP_QUIET silence progress on a terminal' '
	NNP_QUIET= script -qec "nnp-read -q --chunk-mb 1 big.nii 2>/dev/tty | cat >/dev/null" /dev/null >q1.out &&
	! grep -q "\[" q1.out &&
	script -qec "NNP_QUIET=1 nnp-read --chunk-mb 1 big.nii 2>/dev/tty | cat >/dev/null" /dev/null >q2.out &&
	! grep -q "\[" q2.out
'
test_expect_success 'nnp-info -j 1 and -j 2 give the same statistics' '
	nnp-info -j 1 --json big.nnp >j1.json &&
	nnp-info -j 2 --json big.nnp >j2.json &&
	cmp j1.json j2.json &&
	NNP_THREADS=1 nnp-info --json big.nnp >j3.json &&
	cmp j1.json j3.json
'
test_expect_success 'bad thread counts are usage errors' '
	t_code 2 nnp-info -j 0 big.nnp &&
	t_code 2 nnp-info -j many big.nnp &&
	NNP_THREADS=lots t_code 2 nnp-info big.nnp &&
	grep -q NNP_THREADS stderr
'
test_expect_success 'nnp dispatches to nnp-NAME and lists commands' '
	nnp read big.nii | nnp info -H >d.txt &&
	grep -q "shape (c,z,y,x) 1 x 40 x 64 x 64" d.txt &&
	nnp help >h.txt && grep -q "^  read$" h.txt && grep -q "^  write$" h.txt &&
	nnp help write | grep -q "Usage:" &&
	nnp --version | grep -q "nnpipe" &&
	t_code 2 nnp no-such-command &&
	grep -q "not an nnp command" stderr &&
	t_code 2 nnp "../etc"
'
test_expect_success 'every program: --help and --version exit 0 on stdout, list the exit codes' '
	for p in "$NNP_BIN"/nnp-*; do
		"$p" --help >help.txt && grep -q "Exit status:" help.txt &&
		grep -q "^  4 " help.txt &&
		"$p" --version | grep -q "(nnpipe)" || { echo "failed: $p"; exit 1; }
	done
'
test_expect_success 'make install PREFIX puts every program in PREFIX/bin' '
	test -f "$T_REPO/Makefile" || exit 0
	if [ "$NNP_BIN" != "$T_REPO/bin" ]; then exit 0; fi
	make -s -C "$T_REPO" install PREFIX="$PWD/inst" >/dev/null &&
	test -x inst/bin/nnp && test -x inst/bin/nnp-read && test -x inst/bin/nnp-write &&
	inst/bin/nnp read big.nii | inst/bin/nnp write -o inst-copy.nii &&
	cmp big.nii inst-copy.nii
'
done_testing
