# lib.sh — a tiny TAP library for the nnpipe program tests (bash).
#
# In the spirit of git's t/test-lib.sh.  A test script does
#
#	#!/bin/bash
#	. "$(dirname "$0")/lib.sh"
#	test_plan 3                      # or nothing, and done_testing at the end
#	test_expect_success 'reads a file' '
#		mknii a.nii.gz &&
#		nnp-read a.nii.gz >a.nnp
#	'
#	test_expect_code 2 'refuses a terminal' 'false_cmd ...'
#	done_testing
#
# A test may name prerequisites first, like git's: test_set_prereq TORCH, then
# test_expect_success TORCH 'desc' 'body' runs only when TORCH was set.
#
# Each body runs in a subshell (variables do not leak out; files do) with
# "set -e -o pipefail", in the script's trash directory, which is shared by
# all tests of the script so that a setup test can leave files for later
# ones.  The body's output (stdout and stderr) is captured and shown as "# "
# comments when the test fails (always with NNP_TEST_VERBOSE=1).
#
# Environment:
#	NNP_BIN     programs (default: <repo>/bin); put first on PATH
#	NNP_TOOLS   compiled test tools (default: <repo>/build/tools)
#	PYTHON      Python with numpy, nibabel, msgpack (default /usr/bin/python3)
#	NNP_TEST_KEEP=1   keep the trash directory (its path is printed)
#	NNP_TEST_VERBOSE=1  show every body's output
#
# Helpers for bodies: mknii, niicmp, frame_decode, frame_edit, frame_encode
# (the Python tools in tests/tools), t_tmpdir, check_no_tmp, t_code,
# t_err_line, t_stderr_empty, t_no_file, t_same_file, t_is_nifti.

T_SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T_REPO=$(cd "$T_SRCDIR/../.." && pwd)
T_PYTOOLS="$T_REPO/tests/tools"
T_FIXTURES="$T_REPO/tests/fixtures"
: "${NNP_BIN:=$T_REPO/bin}"
: "${NNP_TOOLS:=$T_REPO/build/tools}"
: "${PYTHON:=/usr/bin/python3}"
NNP_BIN=$(cd "$NNP_BIN" 2>/dev/null && pwd || echo "$NNP_BIN")
export NNP_BIN NNP_TOOLS PYTHON
export PATH="$NNP_BIN:$PATH"
# Deterministic, quiet programs; no inherited tuning.
export NNP_QUIET=1 LC_ALL=C TZ=UTC
unset NNP_THREADS NNP_TMPDIR

T_NAME=$(basename "$0" .t)
T_COUNT=0
T_FAILED=0
T_PLANNED=
T_DONE=

# ---- temporary directories -------------------------------------------------

T_CLEANUP_LIST=$(mktemp "${TMPDIR:-/tmp}/nnp-$T_NAME.cleanup.XXXXXX") || {
	echo "Bail out! cannot create a temporary file in ${TMPDIR:-/tmp}"
	exit 1
}

# t_tmpdir: print the name of a new empty directory under ${TMPDIR:-/tmp},
# removed when the script exits (works from subshells and $(...)).
t_tmpdir() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/nnp-$T_NAME.XXXXXX") || return 1
	printf '%s\n' "$d" >>"$T_CLEANUP_LIST"
	printf '%s\n' "$d"
}

t_cleanup() {
	local d
	if [ -n "${NNP_TEST_KEEP:-}" ]; then
		echo "# kept: $T_TRASH"
	elif [ -f "$T_CLEANUP_LIST" ]; then
		while IFS= read -r d; do
			[ -n "$d" ] && rm -rf -- "$d"
		done <"$T_CLEANUP_LIST"
	fi
	rm -f -- "$T_CLEANUP_LIST"
}
trap t_cleanup EXIT

T_TRASH=$(t_tmpdir) || { echo "Bail out! cannot create a trash directory"; exit 1; }
T_WORK=$(t_tmpdir) || { echo "Bail out! cannot create a work directory"; exit 1; }
cd "$T_TRASH" || exit 1

# ---- plan and results --------------------------------------------------------

test_plan() {
	T_PLANNED=$1
	echo "1..$1"
}

# done_testing: print the plan if there was none; exit 1 if anything failed.
done_testing() {
	T_DONE=1
	if [ -z "$T_PLANNED" ]; then
		echo "1..$T_COUNT"
	elif [ "$T_PLANNED" != "$T_COUNT" ]; then
		echo "# planned $T_PLANNED tests but ran $T_COUNT"
		T_FAILED=$((T_FAILED + 1))
	fi
	if [ "$T_FAILED" -gt 0 ]; then
		echo "# failed $T_FAILED of $T_COUNT tests"
		exit 1
	fi
	echo "# passed all $T_COUNT tests"
	exit 0
}

test_skip_all() {
	echo "1..0 # SKIP $*"
	T_DONE=1
	exit 0
}

bail_out() {
	echo "Bail out! $*"
	T_DONE=1
	exit 1
}

t_comment() {
	sed -e 's/^/# /'
}

# t_report OK|FAIL DESC OUTFILE BODY [DIRECTIVE]
t_report() {
	T_COUNT=$((T_COUNT + 1))
	if [ "$1" = OK ]; then
		echo "ok $T_COUNT - $2${5:+ # $5}"
		if [ -n "${NNP_TEST_VERBOSE:-}" ] && [ -s "$3" ]; then
			t_comment <"$3"
		fi
	else
		echo "not ok $T_COUNT - $2${5:+ # $5}"
		[ -z "$5" ] && T_FAILED=$((T_FAILED + 1))
		{
			echo "body:"
			printf '%s\n' "$4" | sed -e '/^[[:space:]]*$/d' -e 's/^/    /'
			echo "output:"
			if [ -s "$3" ]; then head -c 8000 "$3"; else echo "    (none)"; fi
		} | t_comment
	fi
}

# t_run_body BODY OUTFILE: the body in a subshell with set -e and pipefail.
t_run_body() {
	(
		set -e -o pipefail
		cd "$T_TRASH"
		eval "$1"
	) </dev/null >"$2" 2>&1
}

# ---- prerequisites (git's test_set_prereq / test_have_prereq) ---------------

T_PREREQS=" "

# test_set_prereq NAME: NAME is available (e.g. TORCH when python3 imports torch).
test_set_prereq() {
	T_PREREQS="$T_PREREQS$1 "
}

# test_have_prereq A[,B...]: all of them were set.
test_have_prereq() {
	local p
	for p in ${1//,/ }; do
		case "$T_PREREQS" in
		*" $p "*) ;;
		*) return 1 ;;
		esac
	done
}

# test_expect_success [PREREQ] DESC BODY: with PREREQ (A or A,B) the test is
# skipped (TAP "# SKIP missing PREREQ") unless every prerequisite was set.
test_expect_success() {
	local out="$T_WORK/output" rc
	if [ $# -eq 3 ]; then
		if ! test_have_prereq "$1"; then
			test_skip "$2" "missing $1"
			return 0
		fi
		shift
	fi
	t_run_body "$2" "$out"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		t_report OK "$1" "$out" "$2"
	else
		echo "(body exited with status $rc)" >>"$out"
		t_report FAIL "$1" "$out" "$2"
	fi
}

# test_expect_code CODE DESC BODY: BODY (without set -e) must end with CODE.
test_expect_code() {
	local out="$T_WORK/output" rc
	(
		set -o pipefail
		cd "$T_TRASH"
		eval "$3"
	) </dev/null >"$out" 2>&1
	rc=$?
	if [ "$rc" -eq "$1" ]; then
		t_report OK "$2" "$out" "$3"
	else
		echo "(expected exit status $1, got $rc)" >>"$out"
		t_report FAIL "$2" "$out" "$3"
	fi
}

# test_expect_failure DESC BODY: a known breakage (TAP TODO).
test_expect_failure() {
	local out="$T_WORK/output" rc
	t_run_body "$2" "$out"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		t_report OK "$1" "$out" "$2" "TODO known breakage vanished"
	else
		t_report FAIL "$1" "$out" "$2" "TODO known breakage"
	fi
}

# test_skip DESC REASON
test_skip() {
	T_COUNT=$((T_COUNT + 1))
	echo "ok $T_COUNT - $1 # SKIP $2"
}

# ---- helpers for bodies ------------------------------------------------------

mknii() { "$PYTHON" "$T_PYTOOLS/mknii.py" "$@"; }
niicmp() { "$PYTHON" "$T_PYTOOLS/niicmp.py" "$@"; }
frame_decode() { "$PYTHON" "$T_PYTOOLS/frame_decode.py" "$@"; }
frame_edit() { "$PYTHON" "$T_PYTOOLS/frame_edit.py" "$@"; }
frame_encode() { "$PYTHON" "$T_PYTOOLS/frame_encode.py" "$@"; }

# check_no_tmp DIR...: fail if a temporary output file (.tmp* / *.tmp.*) is left.
check_no_tmp() {
	local d left
	for d in "${@:-.}"; do
		left=$(find "$d" \( -name '.tmp*' -o -name '*.tmp.*' -o -name '*.tmp' \) -print 2>/dev/null)
		if [ -n "$left" ]; then
			echo "temporary files left in $d:"
			printf '%s\n' "$left"
			return 1
		fi
	done
}

# t_code CODE CMD [ARGS...]: run CMD with stdout to ./stdout and stderr to
# ./stderr; fail (showing stderr) unless it exits with CODE.  Any status from
# a signal (>= 128) or 70 (internal error) is reported as a crash.
t_code() {
	local want=$1 rc=0
	shift
	"$@" >stdout 2>stderr || rc=$?
	if [ "$rc" -ne "$want" ]; then
		if [ "$rc" -ge 128 ]; then
			echo "CRASH: '$*' was killed by signal $((rc - 128)), expected exit $want"
		elif [ "$rc" -eq 70 ]; then
			echo "INTERNAL ERROR: '$*' exited 70, expected $want"
		else
			echo "'$*' exited $rc, expected $want"
		fi
		echo "--- stderr:"
		head -c 4000 stderr
		return 1
	fi
}

# t_err_line PROG [WORD...]: ./stderr is one line "PROG: error: ..." (a usage
# error may add git's "Try 'PROG --help'" line) containing every WORD
# (case-insensitive, fixed strings).
t_err_line() {
	local prog=$1 n first w
	shift
	n=$(grep -vc "^Try '$prog --help'" stderr || true)
	first=$(head -n 1 stderr)
	if [ "$n" -ne 1 ]; then
		echo "expected one error line on stderr, got $n:"
		cat stderr
		return 1
	fi
	case "$first" in
	"$prog: error: "?*) ;;
	*)
		echo "stderr does not start with '$prog: error: ':"
		cat stderr
		return 1
		;;
	esac
	for w in "$@"; do
		if ! grep -qiF -- "$w" stderr; then
			echo "stderr lacks '$w':"
			cat stderr
			return 1
		fi
	done
}

# t_stderr_empty [FILE]: FILE (default ./stderr) is empty.
t_stderr_empty() {
	local f=${1:-stderr}
	if [ -s "$f" ]; then
		echo "stderr not empty:"
		cat "$f"
		return 1
	fi
}

# t_no_file PATH...: none of these exist.
t_no_file() {
	local p
	for p in "$@"; do
		if [ -e "$p" ] || [ -L "$p" ]; then
			echo "'$p' exists but should not"
			return 1
		fi
	done
}

# t_same_file A B: byte-identical.
t_same_file() {
	if ! cmp "$1" "$2"; then
		echo "'$1' and '$2' differ"
		return 1
	fi
}

# t_files_are DIR NAME...: DIR holds exactly these names (sorted compare).
t_files_are() {
	local d=$1 want got
	shift
	want=$(printf '%s\n' "$@" | sort)
	got=$(ls -A "$d" | sort)
	if [ "$want" != "$got" ]; then
		echo "files in $d:"
		printf '%s\n' "$got"
		echo "expected:"
		printf '%s\n' "$want"
		return 1
	fi
}

# t_require_progs PROG...: bail out unless the programs are built.
t_require_progs() {
	local p
	for p in "$@"; do
		[ -x "$NNP_BIN/$p" ] || bail_out "$NNP_BIN/$p is not built (run make)"
	done
	"$PYTHON" -c 'import numpy, nibabel, msgpack' 2>/dev/null ||
		bail_out "$PYTHON lacks numpy, nibabel or msgpack (make deps)"
}
