#!/usr/bin/python3
"""Independent reference for `nnp fingerprint`: nnU-Net 2.8.1's
DatasetFingerprintExtractor transcribed with numpy/scipy/nibabel
(nnunet-facts §3, §5.2), so tests can compare nnpipe's JSON byte for byte
without nnU-Net installed.

usage: fingerprint_reference.py RAW_DATASET_DIR [--num-samples N] > fingerprint.json
"""
import argparse, json, os, re, sys
import numpy as np
import nibabel as nib
from scipy.ndimage import binary_fill_holes


def read(path):
    img = nib.load(path)
    a = np.asanyarray(img.get_fdata(), dtype=np.float64)  # nibabel applies scl_slope/inter
    a = a.astype(np.float32)
    if a.ndim == 3:
        a = a.transpose(2, 1, 0)[None]
    else:
        a = a.transpose(3, 2, 1, 0)
    spacing = [float(z) for z in img.header.get_zooms()[:3]][::-1]
    return a, spacing


def cases(ds):
    dj = json.load(open(os.path.join(ds, 'dataset.json')))
    fe = dj['file_ending']
    files = sorted(os.listdir(os.path.join(ds, 'imagesTr')))
    ids = sorted({f[:-(len(fe) + 5)] for f in files if f.endswith(fe)})
    out = []
    for i in ids:
        pat = re.compile(re.escape(i) + r'_\d\d\d\d' + re.escape(fe))
        ims = [os.path.join(ds, 'imagesTr', f) for f in files if pat.fullmatch(f)]
        out.append((i, ims, os.path.join(ds, 'labelsTr', i + fe)))
    return out


def crop_to_nonzero(data, seg):
    mask = np.zeros(data.shape[1:], dtype=bool)
    for c in range(data.shape[0]):
        mask |= data[c] != 0
    mask = binary_fill_holes(mask)
    idx = np.where(mask)
    bbox = [[int(np.min(idx[a])), int(np.max(idx[a])) + 1] if len(idx[a]) else [0, mask.shape[a]]
            for a in range(3)]
    sl = tuple(slice(*b) for b in bbox)
    data = data[(slice(None),) + sl]
    seg = seg[(slice(None),) + sl].copy()
    m = mask[sl][None]
    seg[(seg == 0) & ~m] = -1
    return data, seg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('dataset')
    ap.add_argument('--num-samples', type=float, default=10e7)
    a = ap.parse_args()
    cs = cases(a.dataset)
    num_samples = int(a.num_samples // len(cs))
    nch = None
    shapes, spacings, rel, samples = [], [], [], None
    for cid, ims, lab in cs:
        chans = [read(p) for p in ims]
        data = np.vstack([c[0] for c in chans])
        spacing = chans[0][1]
        seg, _ = read(lab)
        before = data.shape[1:]
        data, seg = crop_to_nonzero(data, seg)
        nch = data.shape[0]
        if samples is None:
            samples = [[] for _ in range(nch)]
        fg = seg[0] > 0
        rs = np.random.RandomState(1234)
        for c in range(nch):
            vals = data[c][fg]
            if len(vals) > 0:
                samples[c].append(rs.choice(vals, num_samples, replace=True))
        shapes.append(list(data.shape[1:]))
        spacings.append(spacing)
        rel.append(np.prod(data.shape[1:]) / np.prod(before))
    props = {}
    for c in range(nch):
        v = np.concatenate(samples[c])
        props[str(c)] = {
            'max': float(np.max(v)), 'mean': float(np.mean(v)), 'median': float(np.median(v)),
            'min': float(np.min(v)), 'percentile_00_5': float(np.percentile(v, 0.5)),
            'percentile_99_5': float(np.percentile(v, 99.5)), 'std': float(np.std(v))}
    fp = {'foreground_intensity_properties_per_channel': props,
          'median_relative_size_after_cropping': float(np.median(rel)),
          'shapes_after_crop': [[int(s) for s in sh] for sh in shapes],
          'spacings': spacings}
    sys.stdout.write(json.dumps(fp, sort_keys=True, indent=4))


if __name__ == '__main__':
    main()
