#!/usr/bin/python3
"""jsoncmp.py A.json B.json [--tol T] — the two JSON documents have the same
structure (keys, list lengths, types: int stays int, float stays float, str
equal) and every number agrees within T (relative to max(1, |b|); default
1e-6); NaN equals NaN, infinities must match exactly.  Prints "equal" and
exits 0, else names the first difference and exits 1.
"""
import argparse
import json
import math
import sys


def diff(a, b, path, tol):
    if isinstance(a, dict):
        if not isinstance(b, dict) or sorted(a) != sorted(b):
            return "%s: keys %s vs %s" % (path, sorted(a), sorted(b) if isinstance(b, dict) else type(b))
        for k in sorted(a):
            d = diff(a[k], b[k], path + "/" + k, tol)
            if d:
                return d
        return None
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return "%s: list lengths differ" % path
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, "%s[%d]" % (path, i), tol)
            if d:
                return d
        return None
    if type(a) is not type(b):
        return "%s: %r (%s) vs %r (%s)" % (path, a, type(a).__name__, b, type(b).__name__)
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return None if math.isnan(a) and math.isnan(b) else "%s: %r vs %r" % (path, a, b)
        if math.isinf(a) or math.isinf(b):
            return None if a == b else "%s: %r vs %r" % (path, a, b)
        return None if abs(a - b) <= tol * max(1.0, abs(b)) else "%s: %r vs %r" % (path, a, b)
    return None if a == b else "%s: %r vs %r" % (path, a, b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--tol", type=float, default=1e-6)
    o = ap.parse_args()
    with open(o.a) as f:
        a = json.load(f)
    with open(o.b) as f:
        b = json.load(f)
    d = diff(a, b, "", o.tol)
    if d:
        print("differ at " + d)
        sys.exit(1)
    print("equal")


if __name__ == "__main__":
    main()
