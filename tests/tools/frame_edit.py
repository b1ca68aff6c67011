#!/usr/bin/python3
"""frame_edit.py — make broken (or unusual) frame streams for the tests.

Usage: frame_edit.py [options] IN OUT       (IN/OUT may be "-")

Parses IN with the generic msgpack decoder (structure not validated), applies
the edits to frame --frame (default 0) and re-encodes every object with the
stock msgpack Packer.  Without edits OUT is a re-encoding of IN.

Edits:
  --set KEY=JSON      set a header key (JSON value), e.g. --set 'v=[2,0]'
  --del KEY           delete a header key
  --pad-props MIB     add props["pad"] = a string of MIB MiB (header over the cap)
  --chunk-delta K:N   chunk K: drop N bytes from its end (N < 0) or append N zero bytes
  --chunk-str K       re-encode chunk K as a msgpack str instead of bin
  --drop-chunk K      leave chunk K out
  --replace-header JSON   replace the header with this JSON value (any msgpack)
  --append-json JSON  append one more top-level object after the stream
"""
import argparse
import json
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import nnpframe  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("inp")
    p.add_argument("out")
    p.add_argument("--frame", type=int, default=0)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--del", dest="delete", action="append", default=[])
    p.add_argument("--pad-props", type=float)
    p.add_argument("--chunk-delta", action="append", default=[])
    p.add_argument("--chunk-str", type=int, action="append", default=[])
    p.add_argument("--drop-chunk", type=int, action="append", default=[])
    p.add_argument("--replace-header")
    p.add_argument("--append-json", action="append", default=[])
    o = p.parse_args()
    data = sys.stdin.buffer.read() if o.inp == "-" else open(o.inp, "rb").read()
    objs = nnpframe.objects(data)
    # locate the frame: header maps with "nnp" and their chunks
    fidx = -1
    out = []
    i = 0
    while i < len(objs):
        h = objs[i].value
        n = int(h.get("nchunks", 0)) if isinstance(h, dict) else 0
        chunks = [c.value for c in objs[i + 1:i + 1 + n]]
        i += 1 + n
        fidx += 1
        if fidx == o.frame:
            for s in o.set:
                k, v = s.split("=", 1)
                h[k] = json.loads(v)
            for k in o.delete:
                h.pop(k, None)
            if o.pad_props is not None:
                props = h.get("props") or {}
                props["pad"] = "x" * int(o.pad_props * (1 << 20))
                h["props"] = props
            if o.replace_header is not None:
                h = json.loads(o.replace_header)
            for s in o.chunk_delta:
                k, d = (int(t) for t in s.split(":"))
                chunks[k] = chunks[k][:len(chunks[k]) + d] if d < 0 else chunks[k] + b"\0" * d
            enc = []
            for k, c in enumerate(chunks):
                if k in o.drop_chunk:
                    continue
                if k in o.chunk_str:
                    enc.append(nnpframe.msgpack.packb(c.decode("latin-1"), use_bin_type=True))
                else:
                    enc.append(nnpframe.pack(c))
            out.append(nnpframe.pack(h))
            out += enc
        else:
            out.append(nnpframe.pack(h))
            out += [nnpframe.pack(c) for c in chunks]
    for j in o.append_json:
        out.append(nnpframe.pack(json.loads(j)))
    buf = b"".join(out)
    if o.out == "-":
        sys.stdout.buffer.write(buf)
    else:
        with open(o.out, "wb") as f:
            f.write(buf)


if __name__ == "__main__":
    main()
