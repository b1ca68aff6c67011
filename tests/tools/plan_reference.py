#!/usr/bin/python3
"""plan_reference.py — an independent Python/numpy transcription of nnU-Net
2.8.1's experiment planning rules (ExperimentPlanner and the ResEnc presets),
written from nnunet-facts.md §4 for testing nnp-plan.  It uses numpy's own
percentile/median/prod so that rounding follows numpy exactly.

  plan_reference.py DATASET_JSON FINGERPRINT_JSON [--planner P] [--gpu-memory GB]
                    [--plans-name NAME] [--dataset-name NAME]
                    [--base-features N] [--max-features-2d N] [--max-features-3d N]
      prints the plans JSON (json.dumps, indent 4, no key sorting), no newline.
  plan_reference.py --batch FILE
      one plan per line of FILE: "DATASET_DIR PLANNER OUTFILE" (DIR holds
      dataset.json and dataset_fingerprint.json; dataset name = basename).
  plan_reference.py --vram plain|resenc DIM PATCH STRIDES FEATURES NENC NDEC NOUT [DS]
      prints compute_conv_feature_map_size (lists as JSON).
  plan_reference.py --topology SPACING PATCH
      prints [strides, kernels, patch, divisible_by] (JSON).

Not nnU-Net code: a re-statement of its rules, kept as a test oracle.
"""
import json
import sys
from copy import deepcopy

import numpy as np

PLANNERS = {
    # name: (class, plans_name, residual, ref3d, ref2d, ref_gb, default_gb, max_cov)
    'default': ('ExperimentPlanner', 'nnUNetPlans', False, 560000000, 85000000, 8, 8, 0.05),
    'resenc': ('ResEncUNetPlanner', 'nnUNetResEncUNetPlans', True, 680000000, 135000000, 8, 8, 0.05),
    'resenc-m': ('nnUNetPlannerResEncM', 'nnUNetResEncUNetMPlans', True, 680000000, 135000000, 8, 8, 1),
    'resenc-l': ('nnUNetPlannerResEncL', 'nnUNetResEncUNetLPlans', True, 2100000000, 380000000, 24, 24, 1),
    'resenc-xl': ('nnUNetPlannerResEncXL', 'nnUNetResEncUNetXLPlans', True, 3600000000, 560000000, 40, 40, 1),
}
PLAIN_ENC = (2,) * 14
PLAIN_DEC = (2,) * 13
RES_ENC = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
RES_DEC = (1,) * 12
NORM = {'ct': 'CTNormalization', 'nonorm': 'NoNormalization', 'zscore': 'ZScoreNormalization',
        'rescale_to_0_1': 'RescaleTo01Normalization', 'rgb_to_0_1': 'RGBTo01Normalization'}
READERS = [('NaturalImage2DIO', ['.png', '.bmp', '.tif']),
           ('SimpleITKIO', ['.nii.gz', '.nrrd', '.mha', '.gipl']),
           ('Tiff3DIO', ['.tif', '.tiff']),
           ('NibabelIO', ['.nii', '.nii.gz']),
           ('NibabelIOWithReorient', ['.nii', '.nii.gz'])]
KNOWN_READERS = {'SimpleITKIO', 'SimpleITKIOWithReorient', 'NibabelIO', 'NibabelIOWithReorient',
                 'NaturalImage2DIO', 'Tiff3DIO'}


def prodi(v):
    r = 1
    for x in v:
        r *= int(x)
    return r


def topology(spacing, patch, min_edge=4, max_numpool=999999):
    dim = len(spacing)
    cur_sp = list(spacing)
    cur_sz = list(patch)
    strides = [[1] * dim]
    kernels = []
    npool = [0] * dim
    kernel = [1] * dim
    while True:
        valid = [i for i in range(dim) if cur_sz[i] >= 2 * min_edge]
        if not valid:
            break
        m = min(cur_sp[i] for i in valid)
        valid = [i for i in valid if cur_sp[i] / m < 2]
        valid = [i for i in valid if npool[i] < max_numpool]
        if len(valid) == 1 and cur_sz[valid[0]] < 3 * min_edge:
            break
        if not valid:
            break
        for d in range(dim):
            if kernel[d] != 3 and cur_sp[d] / min(cur_sp) < 2:
                kernel[d] = 3
        st = [1] * dim
        for v in valid:
            st[v] = 2
            npool[v] += 1
            cur_sp[v] *= 2
            cur_sz[v] = np.ceil(cur_sz[v] / 2)
        strides.append(st)
        kernels.append(list(kernel))
    div = [2 ** n for n in npool]
    newp = [patch[i] + div[i] - patch[i] % div[i] for i in range(dim)]
    for i in range(dim):
        if patch[i] % div[i] == 0:
            newp[i] -= div[i]
    newp = [int(x) for x in np.array(newp).astype(int)]
    kernels.append([3] * dim)
    return strides, kernels, newp, div


def vram_plain(patch, strides, feats, nenc, ndec, nout, deep_supervision=False):
    out = 0
    size = list(patch)
    for s in range(len(strides)):
        size = [i // j for i, j in zip(size, strides[s])]
        out += nenc[s] * feats[s] * prodi(size)
    return out + decoder(patch, strides, feats, ndec, nout, deep_supervision)


def decoder(patch, strides, feats, ndec, nout, deep_supervision):
    skips = []
    size = list(patch)
    for s in range(len(strides) - 1):
        size = [i // j for i, j in zip(size, strides[s])]
        skips.append(size)
    out = 0
    ns = len(strides) - 1
    for s in range(ns):
        sz = skips[-(s + 1)]
        f = feats[-(s + 2)]
        out += ndec[s] * f * prodi(sz)
        out += f * prodi(sz)
        if deep_supervision or s == ns - 1:
            out += nout * prodi(sz)
    return out


def vram_resenc(patch, strides, feats, nblocks, ndec, nout, deep_supervision=False):
    out = feats[0] * prodi(patch)          # stem, stride 1
    size = list(patch)
    cin = feats[0]
    for s in range(len(strides)):
        after = [i // j for i, j in zip(size, strides[s])]
        out += 2 * feats[s] * prodi(after)
        if cin != feats[s] or any(i != j for i, j in zip(size, after)):
            out += feats[s] * prodi(after)
        out += (nblocks[s] - 1) * 2 * feats[s] * prodi(after)
        cin = feats[s]
        size = after
    return out + decoder(patch, strides, feats, ndec, nout, deep_supervision)


class Planner:
    # the planner attributes a subclass may override
    UNet_base_num_features = 32
    UNet_max_features_2d = 512
    UNet_max_features_3d = 320

    def __init__(self, dj, fp, planner='default', gpu=None, plans_name=None, dataset_name='Dataset',
                 base_features=None, max_features_2d=None, max_features_3d=None):
        (self.cls, pn, self.residual, self.ref3d, self.ref2d, self.ref_gb, dgb,
         self.max_cov) = PLANNERS[planner]
        if base_features is not None:
            self.UNet_base_num_features = base_features
        if max_features_2d is not None:
            self.UNet_max_features_2d = max_features_2d
        if max_features_3d is not None:
            self.UNet_max_features_3d = max_features_3d
        self.plans_name = plans_name or pn
        self.gpu = dgb if gpu is None else gpu
        self.dj, self.fp, self.dataset_name = dj, fp, dataset_name
        self.enc = RES_ENC if self.residual else PLAIN_ENC
        self.dec = RES_DEC if self.residual else PLAIN_DEC
        ch = dj['channel_names'] if 'channel_names' in dj else dj['modality']
        self.nin = len(ch)
        self.nout = len(dj['labels'])
        self.norm = [NORM.get(v.casefold(), 'ZScoreNormalization') for v in ch.values()]
        if fp['median_relative_size_after_cropping'] < 3 / 4.:
            self.mask = [n == 'ZScoreNormalization' for n in self.norm]
        else:
            self.mask = [False] * len(self.norm)

    def data_id(self, c):
        if self.residual and c in ('2d', '3d_fullres'):
            return 'nnUNetPlans_' + c
        return self.plans_name + '_' + c

    def fullres_spacing(self):
        spacings = np.vstack(self.fp['spacings'])
        target = np.percentile(spacings, 50, 0)
        tsize = np.percentile(np.vstack(self.fp['shapes_after_crop']), 50, 0)
        w = np.argmax(target)
        others = [i for i in range(len(target)) if i != w]
        osp = [target[i] for i in others]
        osz = [tsize[i] for i in others]
        if target[w] > 3 * max(osp) and tsize[w] * 3 < min(osz):
            t = np.percentile(spacings[:, w], 10)
            if t < max(osp):
                t = max(max(osp), t) + 1e-5
            target[w] = t
        return target

    def arch(self, dim, nst, strides, kernels):
        maxf = self.UNet_max_features_2d if dim == 2 else self.UNet_max_features_3d
        feats = [min(maxf, self.UNet_base_num_features * 2 ** i) for i in range(nst)]
        cls = 'ResidualEncoderUNet' if self.residual else 'PlainConvUNet'
        kw = {'n_stages': nst, 'features_per_stage': feats,
              'conv_op': 'torch.nn.modules.conv.Conv%dd' % dim,
              'kernel_sizes': kernels, 'strides': strides}
        kw['n_blocks_per_stage' if self.residual else 'n_conv_per_stage'] = list(self.enc[:nst])
        kw['n_conv_per_stage_decoder'] = list(self.dec[:nst - 1])
        if len(kw['n_conv_per_stage_decoder']) != nst - 1 or len(self.enc[:nst]) != nst:
            raise RuntimeError('too many stages')
        kw.update({'conv_bias': True, 'norm_op': 'torch.nn.modules.instancenorm.InstanceNorm%dd' % dim,
                   'norm_op_kwargs': {'eps': 1e-05, 'affine': True}, 'dropout_op': None,
                   'dropout_op_kwargs': None, 'nonlin': 'torch.nn.LeakyReLU', 'nonlin_kwargs': {'inplace': True}})
        return {'network_class_name': 'dynamic_network_architectures.architectures.unet.' + cls,
                'arch_kwargs': kw, '_kw_requires_import': ['conv_op', 'norm_op', 'dropout_op', 'nonlin']}

    def estimate(self, patch, a):
        kw = a['arch_kwargs']
        f = vram_resenc if self.residual else vram_plain
        return np.int64(f(patch, kw['strides'], kw['features_per_stage'],
                          kw['n_blocks_per_stage' if self.residual else 'n_conv_per_stage'],
                          kw['n_conv_per_stage_decoder'], self.nout))

    def config(self, spacing, median, ident, nvox):
        dim = len(spacing)
        tmp = 1 / np.array(spacing)
        if dim == 3:
            init = [round(i) for i in tmp * (256 ** 3 / np.prod(tmp)) ** (1 / 3)]
        else:
            init = [round(i) for i in tmp * (2048 ** 2 / np.prod(tmp)) ** (1 / 2)]
        init = np.array([min(i, j) for i, j in zip(init, median[:dim])])
        strides, kernels, patch, div = topology(spacing, init)
        a = self.arch(dim, len(strides), strides, kernels)
        est = self.estimate(patch, a)
        ref = (self.ref2d if dim == 2 else self.ref3d) * (self.gpu / self.ref_gb)
        ref_bs = 12 if dim == 2 else 2

        def too_big(e):
            return e > ref if self.residual else e / ref_bs * 2 > ref
        while too_big(est):
            ax = np.argsort([i / j for i, j in zip(patch, median[:dim])])[-1]
            patch = list(patch)
            t = deepcopy(patch)
            t[ax] -= div[ax]
            _, _, _, div = topology(spacing, t)
            patch[ax] -= div[ax]
            strides, kernels, patch, div = topology(spacing, patch)
            a = self.arch(dim, len(strides), strides, kernels)
            est = self.estimate(patch, a)
        bs = round((ref / est) * ref_bs)
        cap = round(nvox * self.max_cov / np.prod(patch, dtype=np.float64))
        bs = max(min(bs, cap), 2)
        kw = lambda o: {'is_seg': False, 'order': o, 'order_z': 0, 'force_separate_z': None}
        seg = {'is_seg': True, 'order': 1, 'order_z': 0, 'force_separate_z': None}
        return {
            'data_identifier': ident, 'preprocessor_name': 'DefaultPreprocessor', 'batch_size': int(bs),
            'patch_size': [int(i) for i in patch],
            'median_image_size_in_voxels': [x if isinstance(x, int) else float(x) for x in median],
            'spacing': [float(i) for i in spacing],
            'normalization_schemes': list(self.norm), 'use_mask_for_norm': list(self.mask),
            'resampling_fn_data': 'resample_data_or_seg_to_shape',
            'resampling_fn_seg': 'resample_data_or_seg_to_shape',
            'resampling_fn_data_kwargs': kw(3), 'resampling_fn_seg_kwargs': seg,
            'resampling_fn_probabilities': 'resample_data_or_seg_to_shape',
            'resampling_fn_probabilities_kwargs': kw(1), 'architecture': a}

    def reader(self):
        rw = self.dj.get('overwrite_image_reader_writer')
        if rw is not None and rw != 'None' and rw in KNOWN_READERS:
            return rw
        fe = self.dj['file_ending'].lower()
        for name, ends in READERS:
            if fe in ends:
                return name
        raise RuntimeError('no reader for ' + fe)

    def plan(self):
        fs = self.fullres_spacing()
        mx = int(np.argmax(fs))
        tf = [mx] + [i for i in range(3) if i != mx]
        tb = [int(np.argwhere(np.array(tf) == i)[0][0]) for i in range(3)]
        fs_t = fs[tf]
        new_shapes = [np.array([int(round(i / j * k)) for i, j, k in zip(sp, fs, sh)])
                      for sp, sh in zip(self.fp['spacings'], self.fp['shapes_after_crop'])]
        med_t = np.median(new_shapes, 0)[tf]
        nvox = float(np.prod(med_t, dtype=np.float64) * self.dj['numTraining'])
        full = low = None
        if med_t[0] != 1:
            full = self.config(fs_t, med_t, self.data_id('3d_fullres'), nvox)
            mvox = np.prod(med_t, dtype=np.float64)
            pvox = np.prod(full['patch_size'], dtype=np.float64)
            lsp = deepcopy(fs_t)
            while pvox / mvox < 0.25:
                m = max(lsp)
                if np.any((m / lsp) > 2):
                    lsp[(m / lsp) > 2] *= 1.03
                else:
                    lsp *= 1.03
                mvox = np.prod(fs_t / lsp * med_t, dtype=np.float64)
                low = self.config(lsp, tuple([round(i) for i in fs_t / lsp * med_t]),
                                  self.data_id('3d_lowres'), float(np.prod(mvox) * self.dj['numTraining']))
                pvox = np.prod(low['patch_size'], dtype=np.int64)
            if np.prod(med_t, dtype=np.float64) / mvox < 2:
                low = None
            if low is not None:
                low['batch_dice'] = False
                full['batch_dice'] = True
            else:
                full['batch_dice'] = False
        p2 = self.config(fs_t[1:], med_t[1:], self.data_id('2d'), nvox)
        p2['batch_dice'] = True
        msp = np.median(self.fp['spacings'], 0)[tf]
        msh = np.median(self.fp['shapes_after_crop'], 0)[tf]
        plans = {'dataset_name': self.dataset_name, 'plans_name': self.plans_name,
                 'original_median_spacing_after_transp': [float(i) for i in msp],
                 'original_median_shape_after_transp': [int(round(i)) for i in msh],
                 'image_reader_writer': self.reader(),
                 'transpose_forward': tf, 'transpose_backward': tb,
                 'configurations': {'2d': p2},
                 'experiment_planner_used': self.cls, 'label_manager': 'LabelManager',
                 'foreground_intensity_properties_per_channel':
                     self.fp['foreground_intensity_properties_per_channel']}
        if low is not None:
            plans['configurations']['3d_lowres'] = low
            low['next_stage'] = '3d_cascade_fullres'
        if full is not None:
            plans['configurations']['3d_fullres'] = full
            if low is not None:
                plans['configurations']['3d_cascade_fullres'] = {'inherits_from': '3d_fullres',
                                                                 'previous_stage': '3d_lowres'}
        return plans


def plan_file(dj_path, fp_path, planner, gpu, plans_name, dataset_name, **features):
    dj = json.load(open(dj_path))
    fp = json.load(open(fp_path))
    p = Planner(dj, fp, planner, gpu, plans_name, dataset_name, **features).plan()
    return json.dumps(p, indent=4, sort_keys=False)


def main(argv):
    if argv[1] == '--batch':
        import os
        for line in open(argv[2]):
            if not line.strip():
                continue
            d, planner, out = line.split()
            s = plan_file(os.path.join(d, 'dataset.json'), os.path.join(d, 'dataset_fingerprint.json'),
                          planner, None, None, os.path.basename(d.rstrip('/')))
            with open(out, 'w') as f:
                f.write(s)
        return 0
    if argv[1] == '--vram':
        kind, dim = argv[2], int(argv[3])
        a = [json.loads(x) for x in argv[4:10]]
        ds = len(argv) > 10 and argv[10] == '1'
        f = vram_resenc if kind == 'resenc' else vram_plain
        print(f(a[0], a[1], a[2], a[3], a[4], a[5], ds))
        return 0
    if argv[1] == '--topology':
        sp, p = json.loads(argv[2]), json.loads(argv[3])
        print(json.dumps(list(topology(sp, p))))
        return 0
    opts = {'--planner': 'default', '--gpu-memory': None, '--plans-name': None, '--dataset-name': 'Dataset',
            '--base-features': None, '--max-features-2d': None, '--max-features-3d': None}
    pos = []
    i = 1
    while i < len(argv):
        if argv[i] in opts:
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            pos.append(argv[i])
            i += 1
    gpu = float(opts['--gpu-memory']) if opts['--gpu-memory'] is not None else None
    feats = {k[2:].replace('-', '_'): int(opts[k])
             for k in ('--base-features', '--max-features-2d', '--max-features-3d') if opts[k] is not None}
    sys.stdout.write(plan_file(pos[0], pos[1], opts['--planner'], gpu, opts['--plans-name'],
                               opts['--dataset-name'], **feats))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
