#!/bin/bash
# tests/lint.sh — static checks (make lint): shell syntax of every script, and
# cppcheck (warnings, portability) over the C sources when it is installed.
# Suppressed globally: jansson's foreach macros (unknownMacro), cppcheck parser
# failures (internalAstError), offsetof-based field writes (invalidPointerCast)
# and the cross-file output-parameter false positives (ctu*).
set -u
cd "$(dirname "$0")/.." || exit 2
rc=0
for f in pipelines/*.sh tests/t/*.t tests/t/lib.sh bench/run.sh examples/*.sh .ci/run; do
	[ -f "$f" ] || continue
	bash -n "$f" || { echo "lint: shell syntax error in $f"; rc=1; }
done
if command -v cppcheck >/dev/null; then
	cppcheck -q --error-exitcode=1 --enable=warning,portability --inline-suppr --std=c11 \
		-D__GNUC__ -DNNP_HAVE_F16C_PATH -Icommon --suppress=missingIncludeSystem \
		--suppress=unknownMacro --suppress=internalAstError --suppress=invalidPointerCast \
		--suppress=ctuuninitvar --suppress=ctunullpointer \
		common filters tests/tools/*.c || rc=1
else
	echo "lint: cppcheck not installed, C checks skipped"
fi
exit $rc
