/* plan.c — nnU-Net's experiment planning (see plan.h, docs/planning.md).
 *
 * The order of floating-point operations below is nnU-Net's (numpy float64,
 * left to right as the Python source evaluates); do not "simplify" it. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "plan.h"

/* ------------------------------------------------------------------ */
/* planners                                                            */

static const int plain_enc[14] = { 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2 };
static const int plain_dec[13] = { 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2 };
static const int res_enc[13] = { 1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6 };
static const int res_dec[12] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };

#define PLAIN_UNET "dynamic_network_architectures.architectures.unet.PlainConvUNet"
#define RES_UNET "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"

#define STOCK_FEATURES NNP_PLAN_BASE_FEATURES, NNP_PLAN_MAX_FEATURES_2D, NNP_PLAN_MAX_FEATURES_3D

static const struct nnp_planner planners[] = {
	{ "default", "ExperimentPlanner", "nnUNetPlans", PLAIN_UNET, 0, 560000000.0, 85000000.0, 8, 8,
	  0.05, plain_enc, 14, plain_dec, 13, 0, STOCK_FEATURES },
	{ "resenc", "ResEncUNetPlanner", "nnUNetResEncUNetPlans", RES_UNET, 1, 680000000.0, 135000000.0,
	  8, 8, 0.05, res_enc, 13, res_dec, 12, 1, STOCK_FEATURES },
	{ "resenc-m", "nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans", RES_UNET, 1, 680000000.0,
	  135000000.0, 8, 8, 1, res_enc, 13, res_dec, 12, 1, STOCK_FEATURES },
	{ "resenc-l", "nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans", RES_UNET, 1, 2100000000.0,
	  380000000.0, 24, 24, 1, res_enc, 13, res_dec, 12, 1, STOCK_FEATURES },
	{ "resenc-xl", "nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans", RES_UNET, 1, 3600000000.0,
	  560000000.0, 40, 40, 1, res_enc, 13, res_dec, 12, 1, STOCK_FEATURES },
};

const struct nnp_planner *nnp_planner_list(size_t *n)
{
	*n = sizeof planners / sizeof planners[0];
	return planners;
}

const struct nnp_planner *nnp_planner_find(const char *key)
{
	for (size_t i = 0; key && i < sizeof planners / sizeof planners[0]; i++)
		if (!strcmp(planners[i].key, key))
			return &planners[i];
	return NULL;
}

int nnp_planner_with_features(const struct nnp_planner *p, int base, int max_2d, int max_3d,
			      struct nnp_planner *out)
{
	const int v[3] = { base, max_2d, max_3d };
	static const char *const what[3] = { "base features", "2d maximum features",
					     "3d maximum features" };
	for (int i = 0; i < 3; i++)
		if (v[i] < 1 || v[i] > NNP_PLAN_FEATURES_MAX)
			return nnp_err(NNP_EUSAGE, "%s must be 1..%d, not %d", what[i],
				       NNP_PLAN_FEATURES_MAX, v[i]);
	for (int i = 1; i < 3; i++)
		if (v[i] < base)
			return nnp_err(NNP_EUSAGE, "%s (%d) must be >= the base features (%d)", what[i],
				       v[i], base);
	*out = *p;
	out->base_features = base;
	out->max_features_2d = max_2d;
	out->max_features_3d = max_3d;
	return NNP_OK;
}

int nnp_planner_stock_features(const struct nnp_planner *p)
{
	return p->base_features == NNP_PLAN_BASE_FEATURES &&
	       p->max_features_2d == NNP_PLAN_MAX_FEATURES_2D &&
	       p->max_features_3d == NNP_PLAN_MAX_FEATURES_3D;
}

int nnp_planner_plans_name(const struct nnp_planner *p, char *buf, size_t n)
{
	int len;
	if (nnp_planner_stock_features(p))
		len = snprintf(buf, n, "%s", p->plans_name);
	else if (p->max_features_2d == p->max_features_3d)
		len = snprintf(buf, n, "%s_f%dx%d", p->plans_name, p->base_features, p->max_features_3d);
	else
		len = snprintf(buf, n, "%s_f%dx%dx%d", p->plans_name, p->base_features,
			       p->max_features_2d, p->max_features_3d);
	if (len < 0 || (size_t)len >= n)
		return nnp_err(NNP_EUSAGE, "plans name too long");
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* numpy / Python arithmetic                                           */

double nnp_py_round(double x)
{
	return nearbyint(x);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* numpy's _lerp: a + (b-a)*t, or b - (b-a)*(1-t) where t >= 0.5. */
static double np_lerp(double a, double b, double t)
{
	double d = b - a;
	if (t >= 0.5)
		return b - d * (1 - t);
	return a + d * t;
}

double nnp_np_percentile(double *v, size_t n, double q)
{
	double vi, prev;
	size_t i;
	qsort(v, n, sizeof *v, cmp_double);
	vi = (double)(n - 1) * (q / 100.0);
	if (vi >= (double)(n - 1))
		return np_lerp(v[n - 1], v[n - 1], vi + 1);
	if (vi < 0)
		return v[0];
	prev = floor(vi);
	i = (size_t)prev;
	return np_lerp(v[i], v[i + 1], vi - prev);
}

double nnp_np_median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	if (n % 2)
		return v[n / 2] / 1.0;
	return (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* np.prod of a short float64 vector (sequential multiply). */
static double prodd(int n, const double *v)
{
	double r = v[0];
	for (int i = 1; i < n; i++)
		r *= v[i];
	return r;
}

static double prodll_d(int n, const long long *v)
{
	double r = (double)v[0];
	for (int i = 1; i < n; i++)
		r *= (double)v[i];
	return r;
}

static long long prodll(int n, const long long *v)
{
	long long r = 1;
	for (int i = 0; i < n; i++)
		r *= v[i];
	return r;
}

/* ------------------------------------------------------------------ */
/* dataset-level rules                                                 */

int nnp_plan_fullres_spacing(const struct nnp_plan_input *in, double out[3])
{
	size_t n = in->ncases;
	double *col = malloc(n * sizeof *col), tsize[3], max_osp = -INFINITY, min_osz = INFINITY;
	int w = 0;
	if (!col)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (int a = 0; a < 3; a++) {
		for (size_t c = 0; c < n; c++)
			col[c] = in->spacings[c][a];
		out[a] = nnp_np_percentile(col, n, 50);
		for (size_t c = 0; c < n; c++)
			col[c] = in->shapes[c][a];
		tsize[a] = nnp_np_percentile(col, n, 50);
	}
	for (int a = 1; a < 3; a++)
		if (out[a] > out[w])
			w = a;
	for (int a = 0; a < 3; a++) {
		if (a == w)
			continue;
		if (out[a] > max_osp)
			max_osp = out[a];
		if (tsize[a] < min_osz)
			min_osz = tsize[a];
	}
	if (out[w] > NNP_PLAN_ANISO_THRESHOLD * max_osp && tsize[w] * NNP_PLAN_ANISO_THRESHOLD < min_osz) {
		double t;
		for (size_t c = 0; c < n; c++)
			col[c] = in->spacings[c][w];
		t = nnp_np_percentile(col, n, 10);
		if (t < max_osp)
			t = (max_osp > t ? max_osp : t) + 1e-5;
		out[w] = t;
	}
	free(col);
	return NNP_OK;
}

void nnp_plan_transpose(const double spacing[3], int fwd[3], int bwd[3])
{
	int m = 0, k = 1;
	for (int a = 1; a < 3; a++)
		if (spacing[a] > spacing[m])
			m = a;
	fwd[0] = m;
	for (int a = 0; a < 3; a++)
		if (a != m)
			fwd[k++] = a;
	for (int a = 0; a < 3; a++)
		bwd[fwd[a]] = a;
}

void nnp_plan_new_shape(const double shape[3], const double old_sp[3], const double new_sp[3],
			double out[3])
{
	for (int a = 0; a < 3; a++)
		out[a] = nnp_py_round(old_sp[a] / new_sp[a] * shape[a]);
}

/* ------------------------------------------------------------------ */
/* topology and VRAM                                                   */

/* Python's float %: the result has the sign of the divisor. */
static double py_mod(double a, double b)
{
	double r = fmod(a, b);
	if (r != 0 && ((r < 0) != (b < 0)))
		r += b;
	return r;
}

int nnp_plan_topology(int dim, const double *spacing, const double *patch, int min_edge,
		      int max_numpool, struct nnp_topology *t)
{
	double sp[3], sz[3];
	int kernel[3] = { 1, 1, 1 }, nk = 0;

	memset(t, 0, sizeof *t);
	if (dim < 2 || dim > 3)
		return nnp_err(NNP_EINTERNAL, "topology: dimension %d", dim);
	for (int i = 0; i < dim; i++)
		if (!(patch[i] >= 0 && patch[i] < 1e15) || !(spacing[i] > 0) || !isfinite(spacing[i]))
			return nnp_err(NNP_EDATA, "cannot plan a patch of %g voxels at spacing %g", patch[i],
				       spacing[i]);
	t->dim = dim;
	for (int i = 0; i < dim; i++) {
		sp[i] = spacing[i];
		sz[i] = patch[i];
		t->strides[0][i] = 1;
	}
	t->nstages = 1;
	for (;;) {
		int valid[3], nv = 0, k = 0, st[3];
		double m, mall;
		for (int i = 0; i < dim; i++)
			if (sz[i] >= 2.0 * min_edge)
				valid[nv++] = i;
		if (!nv)
			break;
		m = sp[valid[0]];
		for (int j = 1; j < nv; j++)
			if (sp[valid[j]] < m)
				m = sp[valid[j]];
		for (int j = 0; j < nv; j++)
			if (sp[valid[j]] / m < 2 && t->num_pool[valid[j]] < max_numpool)
				valid[k++] = valid[j];
		nv = k;
		if (nv == 1 && sz[valid[0]] < 3.0 * min_edge)
			break;
		if (!nv)
			break;
		mall = sp[0];
		for (int i = 1; i < dim; i++)
			if (sp[i] < mall)
				mall = sp[i];
		for (int i = 0; i < dim; i++)
			if (kernel[i] != 3 && sp[i] / mall < 2)
				kernel[i] = 3;
		if (t->nstages >= NNP_PLAN_STAGES_MAX)
			return nnp_err(NNP_EDATA, "the patch needs more than %d network stages",
				       NNP_PLAN_STAGES_MAX);
		for (int i = 0; i < dim; i++)
			st[i] = 1;
		for (int j = 0; j < nv; j++) {
			int v = valid[j];
			st[v] = 2;
			t->num_pool[v]++;
			sp[v] *= 2;
			sz[v] = ceil(sz[v] / 2);
		}
		for (int i = 0; i < dim; i++) {
			t->strides[t->nstages][i] = st[i];
			t->kernels[nk][i] = kernel[i];
		}
		t->nstages++;
		nk++;
	}
	for (int i = 0; i < dim; i++)
		t->kernels[nk][i] = 3;
	for (int i = 0; i < dim; i++) {
		double d, r, p;
		t->divisible[i] = 1LL << t->num_pool[i];
		d = (double)t->divisible[i];
		r = py_mod(patch[i], d);
		p = patch[i] + d - r;
		if (r == 0)
			p -= d;
		t->patch[i] = (long long)p;
	}
	return NNP_OK;
}

int nnp_plan_arch(const struct nnp_planner *p, const struct nnp_topology *t, struct nnp_arch *a)
{
	int maxf = t->dim == 2 ? p->max_features_2d : p->max_features_3d;
	memset(a, 0, sizeof *a);
	if (p->base_features < 1 || maxf < 1)
		return nnp_err(NNP_EINTERNAL, "planner %s without feature sizes", p->class_name);
	if (t->nstages > p->nblocks_enc || t->nstages - 1 > p->nblocks_dec)
		return nnp_err(NNP_EDATA, "the patch needs %d network stages; %s supports at most %d",
			       t->nstages, p->class_name,
			       p->nblocks_enc < p->nblocks_dec + 1 ? p->nblocks_enc : p->nblocks_dec + 1);
	a->dim = t->dim;
	a->nstages = t->nstages;
	a->residual = p->residual;
	for (int s = 0; s < t->nstages; s++) {
		long long f = s < 30 ? (long long)p->base_features << s : maxf;
		a->features[s] = f < maxf ? (int)f : maxf;
		a->n_enc[s] = p->blocks_enc[s];
		if (s < t->nstages - 1)
			a->n_dec[s] = p->blocks_dec[s];
		for (int i = 0; i < t->dim; i++) {
			a->strides[s][i] = t->strides[s][i];
			a->kernels[s][i] = t->kernels[s][i];
		}
	}
	return NNP_OK;
}

long long nnp_plan_vram(const struct nnp_arch *a, const long long *patch, int n_out,
			int deep_supervision)
{
	long long size[3], skips[NNP_PLAN_STAGES_MAX][3], out = 0;
	int dim = a->dim, ns = a->nstages - 1;

	memcpy(size, patch, sizeof(long long) * (size_t)dim);
	if (a->residual) {
		long long cin = a->features[0];
		out += a->features[0] * prodll(dim, patch); /* stem, stride 1 */
		for (int s = 0; s < a->nstages; s++) {
			long long after[3], f = a->features[s], v;
			int changed = 0;
			for (int i = 0; i < dim; i++) {
				after[i] = size[i] / a->strides[s][i];
				changed |= after[i] != size[i];
			}
			v = prodll(dim, after);
			out += 2 * f * v;                       /* conv1 + conv2 of block 0 */
			if (cin != f || changed)
				out += f * v;                   /* skip projection */
			out += (long long)(a->n_enc[s] - 1) * 2 * f * v; /* further blocks */
			cin = f;
			memcpy(size, after, sizeof size);
		}
	} else {
		for (int s = 0; s < a->nstages; s++) {
			for (int i = 0; i < dim; i++)
				size[i] /= a->strides[s][i];
			out += (long long)a->n_enc[s] * a->features[s] * prodll(dim, size);
		}
	}
	memcpy(size, patch, sizeof(long long) * (size_t)dim);
	for (int s = 0; s < ns; s++)
		for (int i = 0; i < dim; i++)
			skips[s][i] = size[i] = size[i] / a->strides[s][i];
	for (int s = 0; s < ns; s++) {
		int k = ns - 1 - s;
		long long f = a->features[k], v = prodll(dim, skips[k]);
		out += (long long)a->n_dec[s] * f * v; /* decoder convs */
		out += f * v;                          /* transposed conv */
		if (deep_supervision || s == ns - 1)
			out += (long long)n_out * v;   /* segmentation layer */
	}
	return out;
}

/* ------------------------------------------------------------------ */
/* configurations                                                      */

static int arch_of(const struct nnp_planner *p, int dim, const double *spacing, const double *patch,
		   struct nnp_topology *t, struct nnp_arch *a)
{
	int rc = nnp_plan_topology(dim, spacing, patch, NNP_PLAN_MIN_EDGE, NNP_PLAN_MAX_NUMPOOL, t);
	return rc ? rc : nnp_plan_arch(p, t, a);
}

static void ll_to_d(int dim, const long long *v, double *out)
{
	for (int i = 0; i < dim; i++)
		out[i] = (double)v[i];
}

int nnp_plan_configuration(const struct nnp_planner *p, double gpu_gb, int n_out, int dim,
			   const double *spacing, const double *median, int median_is_int,
			   double n_vox_dataset, struct nnp_plan_config *out)
{
	struct nnp_topology t, t2;
	double tmp[3], init[3], f, ref, bs, cap, dp[3];
	int ref_bs = dim == 2 ? NNP_PLAN_REF_BS_2D : NNP_PLAN_REF_BS_3D, rc, steps = 0;
	long long est;

	memset(out, 0, sizeof *out);
	for (int i = 0; i < dim; i++) {
		if (!(spacing[i] > 0) || !isfinite(spacing[i]))
			return nnp_err(NNP_EDATA, "spacing must be > 0 (axis %d is %g)", i, spacing[i]);
		if (!(median[i] >= 0) || !isfinite(median[i]))
			return nnp_err(NNP_EDATA, "median shape must be >= 0 (axis %d is %g)", i,
				       median[i]);
	}
	for (int i = 0; i < dim; i++)
		tmp[i] = 1 / spacing[i];
	if (dim == 3)
		f = pow(16777216.0 / prodd(3, tmp), 1.0 / 3.0);
	else
		f = pow(4194304.0 / prodd(2, tmp), 1.0 / 2.0);
	for (int i = 0; i < dim; i++) {
		double r = nnp_py_round(tmp[i] * f);
		init[i] = median[i] < r ? median[i] : r;
		if (!isfinite(init[i]))
			return nnp_err(NNP_EDATA, "spacing (%g on axis %d) too extreme to plan a patch",
				       spacing[i], i);
	}
	if ((rc = arch_of(p, dim, spacing, init, &t, &out->arch)))
		return rc;
	est = nnp_plan_vram(&out->arch, t.patch, n_out, 0);
	ref = (dim == 2 ? p->ref_2d : p->ref_3d) * (gpu_gb / p->ref_gb);
	for (;;) {
		int ax = 0;
		double best = -INFINITY;
		long long reduced[3];
		if (p->residual ? !((double)est > ref) : !((double)est / ref_bs * 2 > ref))
			break;
		if (++steps > NNP_PLAN_LOOP_MAX)
			return nnp_err(NNP_EINTERNAL, "patch size search does not end");
		/* np.argsort(...)[-1]: stable for these tiny arrays, so the
		 * last of equal maxima */
		for (int i = 0; i < dim; i++) {
			double r = (double)t.patch[i] / median[i];
			if (r >= best) {
				best = r;
				ax = i;
			}
		}
		memcpy(reduced, t.patch, sizeof reduced);
		reduced[ax] -= t.divisible[ax];
		ll_to_d(dim, reduced, dp);
		if ((rc = nnp_plan_topology(dim, spacing, dp, NNP_PLAN_MIN_EDGE, NNP_PLAN_MAX_NUMPOOL, &t2)))
			return rc;
		memcpy(reduced, t.patch, sizeof reduced);
		reduced[ax] -= t2.divisible[ax];
		ll_to_d(dim, reduced, dp);
		if ((rc = arch_of(p, dim, spacing, dp, &t, &out->arch)))
			return rc;
		est = nnp_plan_vram(&out->arch, t.patch, n_out, 0);
	}
	if (est <= 0 || prodll(dim, t.patch) <= 0)
		return nnp_err(NNP_EDATA, "no usable patch size (the median image or the GPU memory "
			       "target is too small)");
	bs = nnp_py_round(ref / (double)est * ref_bs);
	cap = nnp_py_round(n_vox_dataset * p->max_dataset_covered / prodll_d(dim, t.patch));
	if (cap < bs)
		bs = cap;
	if (bs < NNP_PLAN_MIN_BATCH)
		bs = NNP_PLAN_MIN_BATCH;
	if (!(bs < 9e15))
		return nnp_err(NNP_EDATA, "batch size %g out of range", bs);
	out->dim = dim;
	out->batch_size = (long long)bs;
	out->estimate = est;
	out->shrink_steps = steps;
	out->median_is_int = median_is_int;
	for (int i = 0; i < dim; i++) {
		out->patch[i] = t.patch[i];
		out->median[i] = median[i];
		out->spacing[i] = spacing[i];
	}
	return NNP_OK;
}

int nnp_plan_lowres(const struct nnp_planner *p, double gpu_gb, int n_out,
		    const struct nnp_plan_config *fullres, const double median_t[3],
		    long long num_training, struct nnp_plan_config *low, int *have, int *iterations)
{
	double lsp[3], median_vox = prodd(3, median_t), patch_vox = prodll_d(3, fullres->patch);
	int n = 0, rc;

	*have = 0;
	memcpy(lsp, fullres->spacing, sizeof lsp);
	while (patch_vox / median_vox < NNP_PLAN_LOWRES_THRESHOLD) {
		double mx = lsp[0], scaled[3], med[3];
		int any = 0, mask[3];
		if (++n > NNP_PLAN_LOOP_MAX)
			return nnp_err(NNP_EINTERNAL, "3d_lowres search does not end");
		for (int i = 1; i < 3; i++)
			if (lsp[i] > mx)
				mx = lsp[i];
		for (int i = 0; i < 3; i++)
			any |= mask[i] = mx / lsp[i] > 2;
		for (int i = 0; i < 3; i++)
			if (mask[i] || !any)
				lsp[i] *= NNP_PLAN_LOWRES_FACTOR;
		for (int i = 0; i < 3; i++)
			scaled[i] = fullres->spacing[i] / lsp[i] * median_t[i];
		median_vox = prodd(3, scaled);
		for (int i = 0; i < 3; i++)
			med[i] = nnp_py_round(scaled[i]);
		if ((rc = nnp_plan_configuration(p, gpu_gb, n_out, 3, lsp, med, 1,
						 median_vox * (double)num_training, low)))
			return rc;
		patch_vox = (double)prodll(3, low->patch);
	}
	*iterations = n;
	*have = n > 0 && !(prodd(3, median_t) / median_vox < 2);
	return NNP_OK;
}

int nnp_plan_experiment(const struct nnp_planner *p, double gpu_gb, const struct nnp_plan_input *in,
			struct nnp_plan *out)
{
	size_t n = in->ncases;
	double fs_t[3], med[3], msp[3], msh[3], *col[3] = { NULL, NULL, NULL };
	int rc = NNP_OK;

	memset(out, 0, sizeof *out);
	if (!n)
		return nnp_err(NNP_EDATA, "the fingerprint lists no cases");
	if ((rc = nnp_plan_fullres_spacing(in, out->fullres_spacing)))
		return rc;
	nnp_plan_transpose(out->fullres_spacing, out->tf, out->tb);
	for (int a = 0; a < 3; a++) {
		fs_t[a] = out->fullres_spacing[out->tf[a]];
		if (!(col[a] = malloc(n * sizeof(double)))) {
			rc = nnp_err(NNP_ENOMEM, "out of memory");
			goto done;
		}
	}
	for (size_t c = 0; c < n; c++) {
		double ns[3];
		nnp_plan_new_shape(in->shapes[c], in->spacings[c], out->fullres_spacing, ns);
		for (int a = 0; a < 3; a++)
			col[a][c] = ns[a];
	}
	for (int a = 0; a < 3; a++)
		med[a] = nnp_np_median(col[a], n);
	for (int a = 0; a < 3; a++)
		out->median_t[a] = med[out->tf[a]];
	out->n_vox = prodd(3, out->median_t) * (double)in->num_training;
	if (out->median_t[0] != 1) {
		out->have_3d = 1;
		if ((rc = nnp_plan_configuration(p, gpu_gb, in->n_out, 3, fs_t, out->median_t, 0, out->n_vox,
						 &out->fullres)))
			goto done;
		if ((rc = nnp_plan_lowres(p, gpu_gb, in->n_out, &out->fullres, out->median_t,
					  in->num_training, &out->lowres, &out->have_lowres,
					  &out->lowres_iterations)))
			goto done;
		out->fullres.batch_dice = out->have_lowres;
		out->lowres.batch_dice = 0;
	}
	if ((rc = nnp_plan_configuration(p, gpu_gb, in->n_out, 2, fs_t + 1, out->median_t + 1, 0,
					 out->n_vox, &out->c2d)))
		goto done;
	out->c2d.batch_dice = 1;
	for (int a = 0; a < 3; a++) {
		for (size_t c = 0; c < n; c++)
			col[a][c] = in->spacings[c][a];
		msp[a] = nnp_np_median(col[a], n);
		for (size_t c = 0; c < n; c++)
			col[a][c] = in->shapes[c][a];
		msh[a] = nnp_np_median(col[a], n);
	}
	for (int a = 0; a < 3; a++) {
		out->orig_spacing_t[a] = msp[out->tf[a]];
		out->orig_shape_t[a] = (long long)nnp_py_round(msh[out->tf[a]]);
	}
done:
	for (int a = 0; a < 3; a++)
		free(col[a]);
	return rc;
}

/* ------------------------------------------------------------------ */
/* dataset.json rules                                                  */

/* str.casefold() restricted to what can match the scheme names: ASCII
 * letters and U+017F (long s, folds to 's'). */
static int casefold_eq(const char *s, const char *lower)
{
	const unsigned char *u = (const unsigned char *)s;
	while (*lower) {
		unsigned c = *u;
		if (c == 0xc5 && u[1] == 0xbf) {
			c = 's';
			u++;
		} else if (c >= 'A' && c <= 'Z') {
			c += 'a' - 'A';
		}
		if (c != (unsigned char)*lower)
			return 0;
		u++;
		lower++;
	}
	return *u == 0;
}

const char *nnp_plan_norm_scheme(const char *name)
{
	static const char *const map[][2] = {
		{ "ct", "CTNormalization" },
		{ "nonorm", "NoNormalization" },
		{ "zscore", "ZScoreNormalization" },
		{ "rescale_to_0_1", "RescaleTo01Normalization" },
		{ "rgb_to_0_1", "RGBTo01Normalization" },
	};
	for (size_t i = 0; name && i < sizeof map / sizeof map[0]; i++)
		if (casefold_eq(name, map[i][0]))
			return map[i][1];
	return "ZScoreNormalization";
}

const char *nnp_plan_reader_writer(const json_t *dj, int *ignored_override)
{
	static const struct {
		const char *name;
		const char *endings[5];
	} readers[] = {
		{ "NaturalImage2DIO", { ".png", ".bmp", ".tif", NULL } },
		{ "SimpleITKIO", { ".nii.gz", ".nrrd", ".mha", ".gipl", NULL } },
		{ "Tiff3DIO", { ".tif", ".tiff", NULL } },
		{ "NibabelIO", { ".nii", ".nii.gz", NULL } },
		{ "NibabelIOWithReorient", { ".nii", ".nii.gz", NULL } },
	};
	static const char *const known[] = { "SimpleITKIO", "SimpleITKIOWithReorient", "NibabelIO",
					     "NibabelIOWithReorient", "NaturalImage2DIO", "Tiff3DIO" };
	const json_t *ov = json_object_get(dj, "overwrite_image_reader_writer");
	const char *fe = json_string_value(json_object_get(dj, "file_ending"));
	char low[80];
	size_t i;

	*ignored_override = 0;
	if (ov && !(json_is_string(ov) && !strcmp(json_string_value(ov), "None"))) {
		for (i = 0; json_is_string(ov) && i < sizeof known / sizeof known[0]; i++)
			if (!strcmp(json_string_value(ov), known[i]))
				return known[i];
		*ignored_override = 1;
	}
	if (!fe || strlen(fe) >= sizeof low)
		return NULL;
	for (i = 0; fe[i]; i++)
		low[i] = (char)(fe[i] >= 'A' && fe[i] <= 'Z' ? fe[i] + 'a' - 'A' : fe[i]);
	low[i] = '\0';
	for (i = 0; i < sizeof readers / sizeof readers[0]; i++)
		for (int k = 0; readers[i].endings[k]; k++)
			if (!strcmp(low, readers[i].endings[k]))
				return readers[i].name;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* reading the inputs                                                  */

static int ferr(const char *file, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ferr(const char *file, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return nnp_err(NNP_EDATA, "'%s': %s", file, msg);
}

static const json_t *channel_dict(const json_t *dj)
{
	const json_t *ch = json_object_get(dj, "channel_names");
	return ch ? ch : json_object_get(dj, "modality");
}

static int read_triples(const json_t *fp, const char *file, const char *key, int integral,
			double (**out)[3], size_t *n)
{
	const json_t *a = json_object_get(fp, key);
	size_t m;
	*out = NULL;
	if (!json_is_array(a))
		return ferr(file, "%s: missing or not a list", key);
	m = json_array_size(a);
	if (m > NNP_PLAN_CASES_MAX)
		return ferr(file, "%s: too many cases (%zu, at most %d)", key, m, NNP_PLAN_CASES_MAX);
	if (!(*out = calloc(m ? m : 1, sizeof **out)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t c = 0; c < m; c++) {
		const json_t *e = json_array_get(a, c);
		if (!json_is_array(e) || json_array_size(e) != 3)
			return ferr(file, "%s[%zu]: must be a list of 3 numbers (z, y, x)", key, c);
		for (size_t i = 0; i < 3; i++) {
			const json_t *x = json_array_get(e, i);
			double v = json_number_value(x);
			if (!json_is_number(x) || !isfinite(v))
				return ferr(file, "%s[%zu][%zu]: must be a number", key, c, i);
			if (integral ? !(v >= 1 && v <= NNP_PLAN_SHAPE_MAX && v == floor(v)) : !(v > 0))
				return ferr(file, "%s[%zu][%zu]: %s, not %g", key, c, i,
					    integral ? "must be a whole number >= 1" : "must be > 0", v);
			(*out)[c][i] = v;
		}
	}
	*n = m;
	return NNP_OK;
}

void nnp_plan_input_release(struct nnp_plan_input *in)
{
	if (!in)
		return;
	free(in->spacings);
	free(in->shapes);
	in->spacings = in->shapes = NULL;
	in->ncases = 0;
}

int nnp_plan_input_from_json(const json_t *dj, const json_t *fp, const char *fp_name,
			     struct nnp_plan_input *in)
{
	const json_t *ch = channel_dict(dj), *labels = json_object_get(dj, "labels");
	const json_t *nt = json_object_get(dj, "numTraining"), *mr;
	size_t ns = 0, nsh = 0;
	int rc;

	memset(in, 0, sizeof *in);
	if (!json_is_object(ch) || !json_object_size(ch))
		return nnp_err(NNP_EDATA, "dataset.json: channel_names: must be a non-empty dict");
	if (json_object_size(ch) > NNP_PLAN_CHANNELS_MAX)
		return nnp_err(NNP_EDATA, "dataset.json: channel_names: too many channels");
	if (!json_is_object(labels) || !json_object_size(labels))
		return nnp_err(NNP_EDATA, "dataset.json: labels: must be a non-empty dict");
	if (json_object_size(labels) > NNP_PLAN_LABELS_MAX)
		return nnp_err(NNP_EDATA, "dataset.json: labels: too many labels");
	if (!json_is_integer(nt) || json_integer_value(nt) < 0)
		return nnp_err(NNP_EDATA, "dataset.json: numTraining: must be a non-negative integer");
	if (!json_is_object(fp))
		return ferr(fp_name, "must be a JSON object");
	mr = json_object_get(fp, "median_relative_size_after_cropping");
	if (!json_is_number(mr))
		return ferr(fp_name, "median_relative_size_after_cropping: missing or not a number");
	if (!json_is_object(json_object_get(fp, "foreground_intensity_properties_per_channel")))
		return ferr(fp_name, "foreground_intensity_properties_per_channel: missing or not a dict");
	in->n_in = (int)json_object_size(ch);
	in->n_out = (int)json_object_size(labels);
	in->num_training = (long long)json_integer_value(nt);
	in->median_relative_size = json_number_value(mr);
	if ((rc = read_triples(fp, fp_name, "spacings", 0, &in->spacings, &ns)) ||
	    (rc = read_triples(fp, fp_name, "shapes_after_crop", 1, &in->shapes, &nsh))) {
		nnp_plan_input_release(in);
		return rc;
	}
	if (ns != nsh || !ns) {
		nnp_plan_input_release(in);
		return ns ? ferr(fp_name, "spacings has %zu entries but shapes_after_crop %zu", ns, nsh)
			  : ferr(fp_name, "spacings: no cases");
	}
	in->ncases = ns;
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* plans JSON                                                          */

struct jb {
	int bad; /* an allocation or insertion failed */
};

static json_t *jnew(struct jb *b, json_t *v)
{
	if (!v)
		b->bad = 1;
	return v;
}

static void jset(struct jb *b, json_t *o, const char *k, json_t *v)
{
	if (!o || !v || json_object_set_new(o, k, v))
		b->bad = 1;
}

static void jpush(struct jb *b, json_t *a, json_t *v)
{
	if (!a || !v || json_array_append_new(a, v))
		b->bad = 1;
}

static json_t *jints(struct jb *b, int n, const int *v)
{
	json_t *a = jnew(b, json_array());
	for (int i = 0; i < n; i++)
		jpush(b, a, json_integer(v[i]));
	return a;
}

static json_t *jlls(struct jb *b, int n, const long long *v)
{
	json_t *a = jnew(b, json_array());
	for (int i = 0; i < n; i++)
		jpush(b, a, json_integer(v[i]));
	return a;
}

static json_t *jreals(struct jb *b, int n, const double *v)
{
	json_t *a = jnew(b, json_array());
	for (int i = 0; i < n; i++)
		jpush(b, a, json_real(v[i]));
	return a;
}

static json_t *jmatrix(struct jb *b, int rows, int dim, const int (*m)[3])
{
	json_t *a = jnew(b, json_array());
	for (int s = 0; s < rows; s++)
		jpush(b, a, jints(b, dim, m[s]));
	return a;
}

static json_t *resampling_kwargs(struct jb *b, int is_seg, int order)
{
	json_t *o = jnew(b, json_object());
	jset(b, o, "is_seg", json_boolean(is_seg));
	jset(b, o, "order", json_integer(order));
	jset(b, o, "order_z", json_integer(0));
	jset(b, o, "force_separate_z", json_null());
	return o;
}

static json_t *architecture(struct jb *b, const struct nnp_planner *p, const struct nnp_arch *a)
{
	static const char *const req[] = { "conv_op", "norm_op", "dropout_op", "nonlin" };
	json_t *o = jnew(b, json_object()), *kw = jnew(b, json_object()), *x, *r;
	char op[64];

	jset(b, o, "network_class_name", json_string(p->network_class));
	jset(b, kw, "n_stages", json_integer(a->nstages));
	jset(b, kw, "features_per_stage", jints(b, a->nstages, a->features));
	snprintf(op, sizeof op, "torch.nn.modules.conv.Conv%dd", a->dim);
	jset(b, kw, "conv_op", json_string(op));
	jset(b, kw, "kernel_sizes", jmatrix(b, a->nstages, a->dim, a->kernels));
	jset(b, kw, "strides", jmatrix(b, a->nstages, a->dim, a->strides));
	jset(b, kw, p->residual ? "n_blocks_per_stage" : "n_conv_per_stage",
	     jints(b, a->nstages, a->n_enc));
	jset(b, kw, "n_conv_per_stage_decoder", jints(b, a->nstages - 1, a->n_dec));
	jset(b, kw, "conv_bias", json_true());
	snprintf(op, sizeof op, "torch.nn.modules.instancenorm.InstanceNorm%dd", a->dim);
	jset(b, kw, "norm_op", json_string(op));
	x = jnew(b, json_object());
	jset(b, x, "eps", json_real(1e-5));
	jset(b, x, "affine", json_true());
	jset(b, kw, "norm_op_kwargs", x);
	jset(b, kw, "dropout_op", json_null());
	jset(b, kw, "dropout_op_kwargs", json_null());
	jset(b, kw, "nonlin", json_string("torch.nn.LeakyReLU"));
	x = jnew(b, json_object());
	jset(b, x, "inplace", json_true());
	jset(b, kw, "nonlin_kwargs", x);
	jset(b, o, "arch_kwargs", kw);
	r = jnew(b, json_array());
	for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
		jpush(b, r, json_string(req[i]));
	jset(b, o, "_kw_requires_import", r);
	return o;
}

struct plan_meta {
	const char *plans_name;
	size_t nch;
	const char **norm;
	int *mask;
};

static json_t *config_json(struct jb *b, const struct nnp_planner *p, const struct plan_meta *m,
			   const struct nnp_plan_config *c, const char *cfg)
{
	json_t *o = jnew(b, json_object()), *x;
	char *id = NULL;
	int dim = c->dim;

	if (p->shared_data_ids && (!strcmp(cfg, "2d") || !strcmp(cfg, "3d_fullres"))) {
		if (asprintf(&id, "nnUNetPlans_%s", cfg) < 0)
			id = NULL;
	} else if (asprintf(&id, "%s_%s", m->plans_name, cfg) < 0) {
		id = NULL;
	}
	jset(b, o, "data_identifier", id ? json_string(id) : NULL);
	free(id);
	jset(b, o, "preprocessor_name", json_string("DefaultPreprocessor"));
	jset(b, o, "batch_size", json_integer(c->batch_size));
	jset(b, o, "patch_size", jlls(b, dim, c->patch));
	if (c->median_is_int) {
		long long mi[3];
		for (int i = 0; i < dim; i++)
			mi[i] = (long long)c->median[i];
		jset(b, o, "median_image_size_in_voxels", jlls(b, dim, mi));
	} else {
		jset(b, o, "median_image_size_in_voxels", jreals(b, dim, c->median));
	}
	jset(b, o, "spacing", jreals(b, dim, c->spacing));
	x = jnew(b, json_array());
	for (size_t i = 0; i < m->nch; i++)
		jpush(b, x, json_string(m->norm[i]));
	jset(b, o, "normalization_schemes", x);
	x = jnew(b, json_array());
	for (size_t i = 0; i < m->nch; i++)
		jpush(b, x, json_boolean(m->mask[i]));
	jset(b, o, "use_mask_for_norm", x);
	jset(b, o, "resampling_fn_data", json_string("resample_data_or_seg_to_shape"));
	jset(b, o, "resampling_fn_seg", json_string("resample_data_or_seg_to_shape"));
	jset(b, o, "resampling_fn_data_kwargs", resampling_kwargs(b, 0, 3));
	jset(b, o, "resampling_fn_seg_kwargs", resampling_kwargs(b, 1, 1));
	jset(b, o, "resampling_fn_probabilities", json_string("resample_data_or_seg_to_shape"));
	jset(b, o, "resampling_fn_probabilities_kwargs", resampling_kwargs(b, 0, 1));
	jset(b, o, "architecture", architecture(b, p, &c->arch));
	jset(b, o, "batch_dice", json_boolean(c->batch_dice));
	return o;
}

int nnp_plan_build(const struct nnp_planner *p, double gpu_gb, const json_t *dj, const json_t *fp,
		   const char *fp_name, const struct nnp_plan_names *names, json_t **plans)
{
	struct nnp_plan_input in;
	struct nnp_plan *pl = NULL;
	struct plan_meta m = { 0 };
	struct jb b = { 0 };
	const json_t *ch, *v;
	const char *k, *reader;
	json_t *o = NULL, *cfgs, *low;
	char own_name[256];
	int rc, ignored;
	size_t i = 0;

	*plans = NULL;
	if (!(gpu_gb > 0) || !isfinite(gpu_gb))
		return nnp_err(NNP_EUSAGE, "the GPU memory target must be > 0 GB");
	if (!(names && names->plans_name) && (rc = nnp_planner_plans_name(p, own_name, sizeof own_name)))
		return rc;
	if ((rc = nnp_plan_input_from_json(dj, fp, fp_name, &in)))
		return rc;
	m.plans_name = names && names->plans_name ? names->plans_name : own_name;
	if (!(reader = nnp_plan_reader_writer(dj, &ignored))) {
		rc = nnp_err(NNP_EDATA, "dataset.json: no nnU-Net reader/writer supports file_ending '%s'",
			     json_string_value(json_object_get(dj, "file_ending")) ?
				     json_string_value(json_object_get(dj, "file_ending")) : "(none)");
		goto done;
	}
	ch = channel_dict(dj);
	m.nch = json_object_size(ch);
	m.norm = calloc(m.nch, sizeof *m.norm);
	m.mask = calloc(m.nch, sizeof *m.mask);
	pl = malloc(sizeof *pl);
	if (!m.norm || !m.mask || !pl) {
		rc = nnp_err(NNP_ENOMEM, "out of memory");
		goto done;
	}
	json_object_foreach((json_t *)ch, k, v) {
		if (!json_is_string(v)) {
			rc = nnp_err(NNP_EDATA, "dataset.json: channel_names.%s: must be a string", k);
			goto done;
		}
		m.norm[i] = nnp_plan_norm_scheme(json_string_value(v));
		m.mask[i] = in.median_relative_size < 3 / 4.0 &&
			    !strcmp(m.norm[i], "ZScoreNormalization");
		i++;
	}
	if ((rc = nnp_plan_experiment(p, gpu_gb, &in, pl)))
		goto done;

	o = jnew(&b, json_object());
	jset(&b, o, "dataset_name", json_string(names && names->dataset_name ? names->dataset_name : ""));
	jset(&b, o, "plans_name", json_string(m.plans_name));
	jset(&b, o, "original_median_spacing_after_transp", jreals(&b, 3, pl->orig_spacing_t));
	jset(&b, o, "original_median_shape_after_transp", jlls(&b, 3, pl->orig_shape_t));
	jset(&b, o, "image_reader_writer", json_string(reader));
	jset(&b, o, "transpose_forward", jints(&b, 3, pl->tf));
	jset(&b, o, "transpose_backward", jints(&b, 3, pl->tb));
	cfgs = jnew(&b, json_object());
	jset(&b, cfgs, "2d", config_json(&b, p, &m, &pl->c2d, "2d"));
	if (pl->have_3d && pl->have_lowres) {
		low = config_json(&b, p, &m, &pl->lowres, "3d_lowres");
		jset(&b, low, "next_stage", json_string("3d_cascade_fullres"));
		jset(&b, cfgs, "3d_lowres", low);
	}
	if (pl->have_3d)
		jset(&b, cfgs, "3d_fullres", config_json(&b, p, &m, &pl->fullres, "3d_fullres"));
	if (pl->have_3d && pl->have_lowres) {
		json_t *c = jnew(&b, json_object());
		jset(&b, c, "inherits_from", json_string("3d_fullres"));
		jset(&b, c, "previous_stage", json_string("3d_lowres"));
		jset(&b, cfgs, "3d_cascade_fullres", c);
	}
	jset(&b, o, "configurations", cfgs);
	jset(&b, o, "experiment_planner_used", json_string(p->class_name));
	jset(&b, o, "label_manager", json_string("LabelManager"));
	jset(&b, o, "foreground_intensity_properties_per_channel",
	     json_deep_copy(json_object_get(fp, "foreground_intensity_properties_per_channel")));
	if (b.bad) {
		rc = nnp_err(NNP_ENOMEM, "out of memory building the plans");
		goto done;
	}
	*plans = o;
	o = NULL;
done:
	json_decref(o);
	free(m.norm);
	free(m.mask);
	free(pl);
	nnp_plan_input_release(&in);
	return rc;
}

int nnp_plan_keep_old_configurations(json_t *plans, const json_t *old)
{
	json_t *cfgs = json_object_get(plans, "configurations");
	const json_t *oc = json_object_get(old, "configurations");
	const char *k;
	json_t *v;
	int kept = 0;
	if (!json_is_object(cfgs))
		return nnp_err(NNP_EINTERNAL, "plans without configurations");
	if (!json_is_object(oc))
		return nnp_err(NNP_EDATA, "the existing plans file has no \"configurations\" dict");
	json_object_foreach((json_t *)oc, k, v) {
		if (json_object_get(cfgs, k))
			continue;
		if (json_object_set(cfgs, k, v))
			return nnp_err(NNP_ENOMEM, "out of memory");
		kept++;
	}
	return kept;
}
