#!/bin/bash
# t1110-plot-log.t — nnp plot-log: training_log.tsv -> progress.png.  The
# PNG is checked with Python's zlib and struct only (signature, IHDR size,
# chunk CRCs, the inflated scanlines, a background pixel); bad logs end with
# exit 1 and one error line naming the file and the line, leaving no output
# and no temporary file (an existing PNG stays as it was).
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-plot-log

# mklog FILE EPOCHS [nan]: a nnU-Net-like log (negative losses, 2 classes,
# NaN Dice now and then; with nan also a stretch of NaN losses).
mklog() {
	"$PYTHON" - "$@" <<'EOF'
import math, sys
path, n = sys.argv[1], int(sys.argv[2])
gaps = len(sys.argv) > 3
cols = ["epoch", "train_loss", "val_loss", "dice_liver", "dice_tumor", "mean_fg_dice",
        "ema_fg_dice", "lr", "epoch_time_s", "timestamp"]
f = open(path, "w")
f.write("\t".join(cols) + "\n")
ema = None
for e in range(n):
    tr = -0.8 + 0.75 * math.exp(-e / 50) + 0.01 * math.sin(e)
    va = -0.7 + 0.7 * math.exp(-e / 60) + 0.02 * math.cos(3 * e)
    d = [0.9 - 0.5 * math.exp(-e / 40), float("nan") if e % 7 == 3 else 0.6 + (0.002 * e) % 0.3]
    ok = [x for x in d if x == x]
    mean = sum(ok) / len(ok)
    ema = mean if ema is None else 0.9 * ema + 0.1 * mean
    if gaps and 20 <= e < 30:
        tr = va = float("nan")
    vals = [tr, va] + d + [mean, ema, 0.01 * (1 - e / n) ** 0.9, 100 + e % 5]
    f.write("%d\t" % e + "\t".join("nan" if v != v else "%.9g" % v for v in vals) +
            "\t%.6f\n" % (1.7e9 + 110 * e))
EOF
}

# pngcheck FILE: a well-formed 1200x1800 8-bit RGB PNG; prints "ok W H".
pngcheck() {
	"$PYTHON" - "$1" <<'EOF'
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "signature"
pos, chunks, idat = 8, [], b""
while pos < len(b):
    n, = struct.unpack(">I", b[pos:pos + 4])
    kind, data = b[pos + 4:pos + 8], b[pos + 8:pos + 8 + n]
    crc, = struct.unpack(">I", b[pos + 8 + n:pos + 12 + n])
    assert zlib.crc32(kind + data) & 0xffffffff == crc, "crc of %r" % kind
    chunks.append(kind)
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", data[:10])
    if kind == b"IDAT":
        idat += data
    pos += 12 + n
assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", chunks
assert (w, h, depth, ctype) == (1200, 1800, 8, 2), (w, h, depth, ctype)
raw = zlib.decompress(idat)
assert len(raw) == h * (1 + 3 * w), len(raw)
# the first scanline (its prior line is zeros) is all background white
f, line, out = raw[0], raw[1:1 + 3 * w], bytearray()
assert f <= 4, f
for i, x in enumerate(line):
    a = out[i - 3] if i >= 3 else 0
    out.append((x + (0, a, 0, a // 2, a)[f]) & 255)
assert set(out) == {255}, f
print("ok", w, h)
EOF
}

test_expect_success 'setup: logs of 1000 epochs, of 1 epoch, with NaN gaps' '
	mklog log.tsv 1000 && mklog one.tsv 1 && mklog gaps.tsv 120 nan &&
	test "$(wc -l <log.tsv)" -eq 1001 && grep -q "	nan	" log.tsv
'

test_expect_success 'plot-log writes a 1200x1800 PNG, silently, no temp file' '
	t_code 0 nnp-plot-log log.tsv -o progress.png &&
	t_stderr_empty && test ! -s stdout &&
	pngcheck progress.png | grep -q "^ok 1200 1800$" && check_no_tmp .
'

test_expect_success 'one epoch and NaN gaps plot too' '
	t_code 0 nnp-plot-log one.tsv -o one.png && pngcheck one.png &&
	t_code 0 nnp-plot-log gaps.tsv -o gaps.png && pngcheck gaps.png &&
	! cmp -s one.png gaps.png
'

test_expect_success 'the nnp front end, stdin and stdout give the same bytes' '
	t_code 0 nnp plot-log log.tsv -o again.png && t_same_file progress.png again.png &&
	nnp plot-log - -o stdin.png <log.tsv && t_same_file progress.png stdin.png &&
	nnp plot-log log.tsv -o - >stdout.png && t_same_file progress.png stdout.png
'

test_expect_success 'a header-only log (no epochs yet) gives empty panels' '
	head -n 1 log.tsv >empty-log.tsv &&
	t_code 0 nnp-plot-log empty-log.tsv -o empty.png && pngcheck empty.png
'

test_expect_success 'an existing output is kept without --force (exit 2), replaced with it' '
	cp one.png keep.png &&
	t_code 2 nnp-plot-log log.tsv -o keep.png && t_err_line nnp-plot-log keep.png --force &&
	t_same_file one.png keep.png &&
	t_code 0 nnp-plot-log log.tsv -o keep.png --force && t_same_file progress.png keep.png &&
	t_code 0 nnp-plot-log one.tsv -f -o keep.png && t_same_file one.png keep.png
'

# bad LOG LINE WORD: exit 1, one error line naming LOG, line LINE and WORD;
# no output file and no temporary file.
bad() {
	t_code 1 nnp-plot-log "$1" -o bad.png &&
	t_err_line nnp-plot-log "'$1'" "$2" "$3" &&
	t_no_file bad.png && check_no_tmp .
}

test_expect_success 'a wrong header: exit 1 naming the file and line 1' '
	printf "epoch\ttrain_loss\n0\t1\n" >short-header.tsv &&
	bad short-header.tsv "line 1" header &&
	sed "1s/ema_fg_dice/ema/" log.tsv >renamed.tsv && bad renamed.tsv "line 1" "(ema)"
'

test_expect_success 'a row with too few fields: exit 1 naming the line' '
	head -n 10 log.tsv >cut.tsv && printf "9\t-0.5\t" >>cut.tsv &&
	bad cut.tsv "line 11" "3 fields"
'

test_expect_success 'a field that is not a number: exit 1 naming line and column' '
	awk -F "\t" -v OFS="\t" "NR == 42 { \$5 = \"0.5oops\" } { print }" log.tsv >word.tsv &&
	bad word.tsv "line 42" "dice_tumor"
'

test_expect_success 'epochs out of order, an empty file, a binary file: exit 1' '
	sed "5d" log.tsv >skip.tsv && bad skip.tsv "line 5" "where 3 was expected" &&
	: >zero.tsv && bad zero.tsv "empty" "" &&
	head -c 2000 progress.png >binary.tsv && bad binary.tsv "line" ""
'

test_expect_success 'a missing log: exit 1 naming it' '
	t_code 1 nnp-plot-log no-such.tsv -o bad.png &&
	t_err_line nnp-plot-log "no-such.tsv" && t_no_file bad.png
'

test_expect_success 'a bad log leaves an existing PNG untouched, even with --force' '
	cp progress.png before.png &&
	t_code 1 nnp-plot-log cut.tsv -o progress.png --force &&
	t_err_line nnp-plot-log cut.tsv && t_same_file before.png progress.png && check_no_tmp .
'

test_expect_success 'a bad log to stdout writes nothing' '
	t_code 1 nnp-plot-log word.tsv -o - && test ! -s stdout && t_err_line nnp-plot-log word.tsv
'

test_expect_success 'an output folder that does not exist: exit 3' '
	t_code 3 nnp-plot-log log.tsv -o no/such/dir/progress.png &&
	t_err_line nnp-plot-log "no/such/dir"
'

test_expect_success 'usage errors: exit 2' '
	t_code 2 nnp-plot-log && t_err_line nnp-plot-log TRAINING_LOG &&
	t_code 2 nnp-plot-log log.tsv && t_err_line nnp-plot-log "-o" &&
	t_code 2 nnp-plot-log log.tsv one.tsv -o x.png && t_err_line nnp-plot-log one.tsv &&
	t_code 2 nnp-plot-log log.tsv -o && t_err_line nnp-plot-log "-o" &&
	t_code 2 nnp-plot-log --bogus log.tsv -o x.png && t_err_line nnp-plot-log "--bogus" &&
	t_no_file x.png
'

if command -v script >/dev/null; then
	test_expect_success 'refuses to write the PNG to a terminal (exit 2)' '
		rc=0; script -qec "nnp-plot-log log.tsv -o -" /dev/null >tty.out 2>&1 || rc=$?
		test $rc -eq 2 || { echo "exit $rc"; cat -v tty.out; exit 1; }
		grep -q "terminal" tty.out && ! grep -qa "IHDR" tty.out
	'
else
	test_skip 'refuses to write the PNG to a terminal' 'script is not installed'
fi

test_expect_success '--help and --version exit 0' '
	t_code 0 nnp-plot-log --help && grep -q "nnp plot-log" stdout && grep -q "Exit status:" stdout &&
	t_code 0 nnp-plot-log --version && grep -q "nnp-plot-log (nnpipe)" stdout
'

done_testing
