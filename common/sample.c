/* sample.c — nnU-Net's patch sampler (see sample.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "sample.h"

#define CLASSLOC_ROWS_MAX ((uint64_t)1 << 28)

/* ---- §7.3: rotation, dummy 2-D, mirroring, initial patch ---- */

/* out = |v . R| for the rotation by a about axis (3-D: 0 = x, 1 = y, 2 = z
 * as batchgenerators' create_matrix_rotation_{x,y,z}_3d; 2-D: one matrix). */
static void rotate_abs(const double *v, int dim, int axis, double a, double *out)
{
	double c = cos(a), s = sin(a), R[3][3] = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } };
	if (dim == 2) {
		R[0][0] = c, R[0][1] = -s, R[1][0] = s, R[1][1] = c;
	} else if (axis == 0) {
		R[1][1] = c, R[1][2] = -s, R[2][1] = s, R[2][2] = c;
	} else if (axis == 1) {
		R[0][0] = c, R[0][2] = s, R[2][0] = -s, R[2][2] = c;
	} else {
		R[0][0] = c, R[0][1] = -s, R[1][0] = s, R[1][1] = c;
	}
	for (int j = 0; j < dim; j++) {
		double acc = 0;
		for (int i = 0; i < dim; i++)
			acc += v[i] * R[i][j];
		out[j] = fabs(acc);
	}
}

void nnp_sample_patch_size(const int64_t *patch, int dim, double rot, double min_scale, int64_t *out)
{
	double v[3], fin[3], r[3];
	rot = fmin(fabs(rot), 90.0 / 360 * 2. * M_PI);
	for (int i = 0; i < dim; i++)
		v[i] = fin[i] = (double)patch[i];
	for (int axis = 0; axis < (dim == 3 ? 3 : 1); axis++) {
		rotate_abs(v, dim, axis, rot, r);
		for (int i = 0; i < dim; i++)
			fin[i] = fmax(fin[i], r[i]);
	}
	for (int i = 0; i < dim; i++)
		out[i] = (int64_t)(fin[i] / min_scale);
}

int nnp_sample_configure(const int64_t *patch, int dim, struct nnp_sample_aug *a)
{
	double mx = 0, mn = 0;
	memset(a, 0, sizeof *a);
	if (dim != 2 && dim != 3)
		return nnp_err(NNP_EDATA, "patch_size must have 2 or 3 entries, not %d", dim);
	for (int i = 0; i < dim; i++) {
		if (patch[i] < 1 || patch[i] > NNP_SAMPLE_PATCH_MAX)
			return nnp_err(NNP_EDATA, "patch_size[%d] = %lld is out of range", i, (long long)patch[i]);
		a->patch[i] = patch[i];
		mx = i ? fmax(mx, (double)patch[i]) : (double)patch[i];
		mn = i ? fmin(mn, (double)patch[i]) : (double)patch[i];
	}
	a->dim = dim;
	if (dim == 2) {
		a->rot[1] = (mx / mn > 1.5 ? 15. : 180.) / 360 * 2. * M_PI;
	} else {
		a->dummy_2d = mx / (double)patch[0] > NNP_SAMPLE_ANISO;
		a->rot[1] = (a->dummy_2d ? 180. : 30.) / 360 * 2. * M_PI;
	}
	a->rot[0] = -a->rot[1];
	a->nmirror = dim;
	for (int i = 0; i < dim; i++)
		a->mirror[i] = i;
	nnp_sample_patch_size(patch, dim, a->rot[1], NNP_SAMPLE_MIN_SCALE, a->initial);
	if (a->dummy_2d)
		a->initial[0] = patch[0];
	return NNP_OK;
}

int nnp_sample_forced(int64_t j, int64_t batch)
{
	return (double)j >= nearbyint((double)batch * (1 - NNP_SAMPLE_OVERSAMPLE));
}

void nnp_sample_patches(const struct nnp_sample_aug *a, int val, int64_t P[3], int64_t F[3])
{
	int off = a->dim == 2;
	P[0] = F[0] = 1;
	for (int i = 0; i < a->dim; i++) {
		P[i + off] = val ? a->patch[i] : a->initial[i];
		F[i + off] = a->patch[i];
	}
}

/* Python floor division and modulo for n >= 0 divided by 2. */
static int64_t floordiv2(int64_t n) { return n >= 0 ? n / 2 : -((-n + 1) / 2); }

void nnp_sample_bounds(const int64_t S[3], const int64_t P[3], const int64_t F[3], int64_t lb[3], int64_t ub[3])
{
	for (int d = 0; d < 3; d++) {
		int64_t n = P[d] - F[d];
		if (n + S[d] < P[d])
			n = P[d] - S[d];
		lb[d] = floordiv2(-n);
		ub[d] = S[d] + floordiv2(n) + (n - 2 * floordiv2(n)) - P[d];
	}
}

/* ---- class locations ---- */

void nnp_classlocs_release(struct nnp_classlocs *cl)
{
	for (size_t i = 0; cl->keys && i < cl->n; i++)
		free(cl->keys[i]);
	free(cl->keys);
	free(cl->count);
	free(cl->first);
	free(cl->rows);
	memset(cl, 0, sizeof *cl);
	cl->annotated = -1;
}

static int classlocs_index(const json_t *classes, const json_t *counts, uint64_t nrows, struct nnp_classlocs *cl)
{
	uint64_t row = 0;
	cl->n = json_array_size(classes);
	cl->keys = calloc(cl->n + 1, sizeof *cl->keys);
	cl->count = calloc(cl->n + 1, sizeof *cl->count);
	cl->first = calloc(cl->n + 1, sizeof *cl->first);
	if (!cl->keys || !cl->count || !cl->first)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < cl->n; i++) {
		const json_t *k = json_array_get(classes, i), *c = json_array_get(counts, i);
		if (!json_is_string(k) || !json_is_integer(c) || json_integer_value(c) < 0)
			return nnp_err(NNP_EDATA, "class_locations: bad classes/counts entry %zu", i);
		if (!(cl->keys[i] = nnp_strdup(json_string_value(k))))
			return NNP_ENOMEM;
		cl->count[i] = (uint64_t)json_integer_value(c);
		cl->first[i] = row;
		if (cl->count[i] > nrows - row)
			return nnp_err(NNP_EDATA, "class_locations: counts exceed the %llu stored rows",
				       (unsigned long long)nrows);
		row += cl->count[i];
		if (!strncmp(cl->keys[i], "(-1,", 4))
			cl->annotated = (long)i;
	}
	return NNP_OK;
}

int nnp_classlocs_read(const struct nnp_casefile *cf, struct nnp_classlocs *cl)
{
	long fi = nnp_casefile_find(cf, "class_locations");
	const struct nnp_frame *f;
	const json_t *classes, *counts;
	struct nnp_vol v;
	int rc;
	memset(cl, 0, sizeof *cl);
	cl->annotated = -1;
	if (fi < 0)
		return NNP_OK;
	f = nnp_casefile_frame(cf, (size_t)fi);
	classes = json_object_get(f->props, "classes");
	counts = json_object_get(f->props, "counts");
	if (f->dtype != NNP_I32 || f->shape[3] != 4 || (uint64_t)f->shape[2] > CLASSLOC_ROWS_MAX ||
	    !json_is_array(classes) || !json_is_array(counts) || json_array_size(classes) != json_array_size(counts))
		return nnp_err(NNP_EDATA, "class_locations frame: need int32 (1, 1, K, 4) with props classes and counts");
	if ((rc = nnp_casefile_read_frame(cf, (size_t)fi, &v)))
		return rc;
	rc = classlocs_index(classes, counts, (uint64_t)v.f.shape[2], cl);
	if (!rc) {
		cl->rows = v.data;   /* take the payload */
		v.data = NULL;
	}
	nnp_vol_release(&v);
	if (rc)
		nnp_classlocs_release(cl);
	return rc;
}

/* ---- get_bbox ---- */

static void random_box(struct nnp_rs *rs, const int64_t lb[3], const int64_t ub[3], int64_t lo[3])
{
	for (int d = 0; d < 3; d++)
		lo[d] = lb[d] + (int64_t)nnp_rs_bounded(rs, (uint64_t)(ub[d] - lb[d]));
}

/* nnU-Net's eligible list: classes with locations, without the annotated
 * key when another class is eligible; the pick-th of them. */
static long eligible_class(const struct nnp_classlocs *cl, struct nnp_rs *rs)
{
	size_t n = 0, k;
	int drop;
	for (size_t i = 0; i < cl->n; i++)
		n += cl->count[i] > 0;
	drop = cl->annotated >= 0 && cl->count[cl->annotated] > 0 && n > 1;
	n -= (size_t)drop;
	if (n == 0)
		return -1;
	k = (size_t)nnp_rs_bounded(rs, n - 1);
	for (size_t i = 0; i < cl->n; i++) {
		if (cl->count[i] == 0 || (drop && (long)i == cl->annotated))
			continue;
		if (k-- == 0)
			return (long)i;
	}
	return -1;
}

void nnp_sample_bbox(struct nnp_rs *rs, const int64_t S[3], const int64_t P[3], const int64_t F[3], int forced,
		     const struct nnp_classlocs *cl, struct nnp_sample_pick *out)
{
	int64_t lb[3], ub[3];
	long c = -1;
	nnp_sample_bounds(S, P, F, lb, ub);
	if (cl && forced)
		c = eligible_class(cl, rs);
	else if (cl && cl->annotated >= 0 && cl->count[cl->annotated] > 0)
		c = cl->annotated;
	out->cls = c;
	if (c < 0) {
		random_box(rs, lb, ub, out->lo);
	} else {
		uint64_t r = cl->first[c] + nnp_rs_bounded(rs, cl->count[c] - 1);
		for (int d = 0; d < 3; d++) {
			int64_t v = cl->rows[r * 4 + 1 + (uint64_t)d];
			out->voxel[d] = v;
			out->lo[d] = v - P[d] / 2 > lb[d] ? v - P[d] / 2 : lb[d];
		}
	}
	for (int d = 0; d < 3; d++)
		out->hi[d] = out->lo[d] + P[d];
}

/* ---- crop with padding ---- */

/* n elements of pad in dtype dt: one converted element, then doubling copies. */
static void fill(void *dst, enum nnp_dtype dt, double pad, size_t n)
{
	size_t es = nnp_dtype_size(dt), have = 1, total = n * es;
	unsigned char *d = dst;
	if (n == 0)
		return;
	if (pad == 0) {
		memset(dst, 0, total);
		return;
	}
	nnp_convert(dt, d, NNP_F64, &pad, 1);
	for (have = es; have < total; have *= 2)
		memcpy(d + have, d, have < total - have ? have : total - have);
}

int nnp_sample_crop(const struct nnp_casefile *cf, size_t fi, const int64_t lo[3], const int64_t P[3],
		    enum nnp_dtype dt, double pad, void *dst)
{
	const struct nnp_frame *f = nnp_casefile_frame(cf, fi);
	int64_t a[3], b[3], e[3], C;
	size_t es = nnp_dtype_size(dt), ses, n = 1;
	unsigned char *tmp, *d = dst;
	int rc;
	if (!f)
		return nnp_err(NNP_EINTERNAL, "frame index out of range");
	C = f->shape[0];
	fill(dst, dt, pad, (size_t)(C * P[0] * P[1] * P[2]));
	for (int k = 0; k < 3; k++) {
		a[k] = lo[k] > 0 ? lo[k] : 0;
		b[k] = lo[k] + P[k] < f->shape[k + 1] ? lo[k] + P[k] : f->shape[k + 1];
		if (b[k] <= a[k])
			return NNP_OK;   /* the box misses the volume: all padding */
		e[k] = b[k] - a[k];
		n *= (size_t)e[k];
	}
	ses = nnp_dtype_size(f->dtype);
	if (!(tmp = malloc((size_t)C * n * ses)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	if (!(rc = nnp_casefile_read_box(cf, fi, a, b, tmp))) {
		for (int64_t c = 0; c < C; c++)
			for (int64_t z = 0; z < e[0]; z++)
				for (int64_t y = 0; y < e[1]; y++) {
					size_t src = (size_t)(((c * e[0] + z) * e[1] + y) * e[2]);
					size_t o = (size_t)((((c * P[0] + z + a[0] - lo[0]) * P[1] + y + a[1] - lo[1]) * P[2]) +
							    a[2] - lo[2]);
					nnp_convert(dt, d + o * es, f->dtype, tmp + src * ses, (size_t)e[2]);
				}
	}
	free(tmp);
	return rc;
}
