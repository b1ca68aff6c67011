/* infer.c — the sliding-window prediction driver (infer.h).
 *
 * Internally every tile is 3D: a 2D tile (p0, p1) is (1, p0, p1) on the
 * unpadded z axis, its mirror axes shifted by one.  The accumulator is a ring
 * of t[0] padded slices, slot = padded z % t[0], laid out [slot][k][y][x]. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dtype.h"
#include "err.h"
#include "infer.h"
#include "sliding.h"

#define PAR_MIN 32768 /* voxels below which loops stay serial */

struct geom {
	int64_t C, K, Z, Y, X;
	int64_t t[3], lo[3], pd[3]; /* tile, padding before, padded size (3D view) */
	int64_t tv, plane;          /* voxels of a tile, of a padded slice */
	int64_t nz, ny, nx;         /* tile offsets per axis */
	const int64_t *offz, *offy, *offx; /* offz NULL for 2D tiles: offset = index */
	int nvar;                   /* 1 + number of mirror subsets */
	unsigned flip[8];           /* bit d: flip internal axis d */
	struct nnp_sw_steps st;
};

struct run {
	const struct nnp_infer_opts *o;
	const struct nnp_infer_model *models;
	int nmodels;
	const float *image;
	struct geom g;
	float *gauss;       /* tv weights (float16 values) */
	float *acc, *cnt;   /* float32 mode ring */
	uint16_t *acc16, *cnt16; /* fp16 mode: nmodels rings, one count ring */
	float *in, *out, *pred, *slab;
};

void nnp_infer_opts_init(struct nnp_infer_opts *o)
{
	memset(o, 0, sizeof *o);
	o->ndim_tile = 3;
	o->step = 0.5;
	o->use_gaussian = 1;
	o->max_batch = 8;
}

/* ---- validation and geometry ---- */

static int check_opts(const struct nnp_infer_opts *o, const int64_t shape[4])
{
	if (!o || !shape)
		return nnp_err(NNP_EUSAGE, "infer: missing options or shape");
	if (o->ndim_tile != 2 && o->ndim_tile != 3)
		return nnp_err(NNP_EUSAGE, "infer: tile dimensionality %d is not 2 or 3", o->ndim_tile);
	for (int d = 0; d < o->ndim_tile; d++)
		if (o->tile[d] < 1)
			return nnp_err(NNP_EUSAGE, "infer: tile size %lld on axis %d is not positive",
				       (long long)o->tile[d], d);
	if (!(o->step > 0 && o->step <= 1))
		return nnp_err(NNP_EUSAGE, "infer: step %g is not in (0, 1]", o->step);
	if (o->n_mirror_axes < 0 || o->n_mirror_axes > o->ndim_tile)
		return nnp_err(NNP_EUSAGE, "infer: %d mirror axes for a %dD tile", o->n_mirror_axes,
			       o->ndim_tile);
	for (int i = 0; i < o->n_mirror_axes; i++) {
		if (o->mirror_axes[i] < 0 || o->mirror_axes[i] >= o->ndim_tile)
			return nnp_err(NNP_EUSAGE, "infer: mirror axis %d is not an axis of a %dD tile",
				       o->mirror_axes[i], o->ndim_tile);
		for (int j = 0; j < i; j++)
			if (o->mirror_axes[j] == o->mirror_axes[i])
				return nnp_err(NNP_EUSAGE, "infer: mirror axis %d given twice",
					       o->mirror_axes[i]);
	}
	if (o->max_batch < 1)
		return nnp_err(NNP_EUSAGE, "infer: max_batch %d is not positive", o->max_batch);
	for (int d = 0; d < 4; d++)
		if (shape[d] < 1)
			return nnp_err(NNP_EUSAGE, "infer: image shape has a non-positive size on axis %d", d);
	return NNP_OK;
}

/* itertools.combinations(range(n), r) for r = 1 .. n, as index bit masks. */
static int mirror_subsets(const struct nnp_infer_opts *o, unsigned *flip)
{
	static const unsigned comb[4][7] = {
		{ 0 }, { 1 }, { 1, 2, 3 }, { 1, 2, 4, 3, 5, 6, 7 }
	};
	int n = o->n_mirror_axes, shift = o->ndim_tile == 2 ? 1 : 0, nsub = (1 << n) - 1;
	flip[0] = 0;
	for (int s = 0; s < nsub; s++) {
		unsigned m = 0;
		for (int i = 0; i < n; i++)
			if (comb[n][s] & (1u << i))
				m |= 1u << (o->mirror_axes[i] + shift);
		flip[s + 1] = m;
	}
	return nsub + 1;
}

/* Sizes and padding (not the offsets): shared by run and estimate. */
static int geom_sizes(struct geom *g, const struct nnp_infer_opts *o, int64_t K,
		      const int64_t shape[4])
{
	int rc, two = o->ndim_tile == 2;
	int64_t img[3] = { shape[1], shape[2], shape[3] }, hi[3];
	memset(g, 0, sizeof *g);
	g->C = shape[0], g->K = K, g->Z = shape[1], g->Y = shape[2], g->X = shape[3];
	g->t[0] = two ? 1 : o->tile[0];
	g->t[1] = o->tile[two ? 0 : 1];
	g->t[2] = o->tile[two ? 1 : 2];
	if ((rc = nnp_sw_pad(3, img, g->t, g->lo, hi, g->pd)))
		return rc;
	if (g->t[0] > ((int64_t)1 << 20) || g->t[1] > ((int64_t)1 << 20) || g->t[2] > ((int64_t)1 << 20) ||
	    g->pd[1] > ((int64_t)1 << 24) || g->pd[2] > ((int64_t)1 << 24))
		return nnp_err(NNP_ENOMEM, "infer: tile or image too large");
	g->tv = g->t[0] * g->t[1] * g->t[2];
	if (g->tv > NNP_SW_GAUSS_MAX)
		return nnp_err(NNP_ENOMEM, "infer: a tile of %lld voxels is too large", (long long)g->tv);
	g->plane = g->pd[1] * g->pd[2];
	g->nvar = mirror_subsets(o, g->flip);
	return NNP_OK;
}

static int geom_steps(struct geom *g, const struct nnp_infer_opts *o)
{
	int rc;
	if (o->ndim_tile == 2) {
		int64_t img[2] = { g->Y, g->X };
		if ((rc = nnp_sw_steps(2, img, o->tile, o->step, &g->st)))
			return rc;
		g->nz = g->Z, g->offz = NULL;
		g->ny = g->st.n[0], g->offy = g->st.off[0];
		g->nx = g->st.n[1], g->offx = g->st.off[1];
	} else {
		int64_t img[3] = { g->Z, g->Y, g->X };
		if ((rc = nnp_sw_steps(3, img, o->tile, o->step, &g->st)))
			return rc;
		g->nz = g->st.n[0], g->offz = g->st.off[0];
		g->ny = g->st.n[1], g->offy = g->st.off[1];
		g->nx = g->st.n[2], g->offx = g->st.off[2];
	}
	return NNP_OK;
}

static int64_t offz(const struct geom *g, int64_t iz)
{
	return g->offz ? g->offz[iz] : iz;
}

/* Element counts of every buffer, in floats (uint16 for the fp16 rings). */
struct sizes {
	int64_t ring, cnt, slab, in, out, pred, gauss;
};

static int buffer_sizes(const struct geom *g, const struct nnp_infer_opts *o, int nmodels,
			struct sizes *s)
{
	int64_t plane_ring = 0, b = o->max_batch;
	if (__builtin_mul_overflow(g->t[0], g->plane, &plane_ring) ||
	    __builtin_mul_overflow(plane_ring, g->K * (o->fp16_compat ? nmodels : 1), &s->ring) ||
	    __builtin_mul_overflow(g->K, g->Y * g->X, &s->slab) ||
	    __builtin_mul_overflow(b * g->C, g->tv, &s->in) ||
	    __builtin_mul_overflow(b * g->K, g->tv, &s->out) || s->ring > ((int64_t)1 << 40) ||
	    s->in > ((int64_t)1 << 40) || s->out > ((int64_t)1 << 40))
		return nnp_err(NNP_ENOMEM, "infer: buffer sizes overflow");
	s->cnt = plane_ring;
	s->pred = g->nvar > 1 ? g->K * g->tv : 0; /* the TTA sum; without mirroring: none */
	s->gauss = g->tv;
	return NNP_OK;
}

int nnp_infer_estimate(const struct nnp_infer_opts *o, int out_channels, int nmodels,
		       const int64_t shape[4], int64_t *bytes)
{
	struct geom g;
	struct sizes s = { 0 };
	int rc = check_opts(o, shape);
	if (rc)
		return rc;
	if (out_channels < 1 || nmodels < 1 || !bytes)
		return nnp_err(NNP_EUSAGE, "infer: bad channel or model count");
	if ((rc = geom_sizes(&g, o, out_channels, shape)) || (rc = buffer_sizes(&g, o, nmodels, &s)))
		return rc;
	int64_t e = o->fp16_compat ? 2 : 4, input;
	if (__builtin_mul_overflow(shape[0], shape[1], &input) ||
	    __builtin_mul_overflow(input, shape[2] * shape[3], &input) || input > ((int64_t)1 << 56))
		return nnp_err(NNP_ENOMEM, "infer: image size overflows");
	/* + the Gaussian's transient float64 map and float16 copy (sliding.c) */
	*bytes = 4 * input + e * (s.ring + s.cnt) +
		 4 * (s.slab + s.in + s.out + s.pred + s.gauss) + 10 * s.gauss;
	return NNP_OK;
}

/* ---- tiles ---- */

/* Item = the tile at padded (oz, oy, ox) flipped by mask, C x tv, zero outside
 * the image. */
static void extract(const struct run *r, int64_t oz, int64_t oy, int64_t ox, unsigned mask, float *dst)
{
	const struct geom *g = &r->g;
	int64_t rows = g->C * g->t[0] * g->t[1];
	#pragma omp parallel for if (rows * g->t[2] >= PAR_MIN)
	for (int64_t row = 0; row < rows; row++) {
		int64_t c = row / (g->t[0] * g->t[1]), a = row / g->t[1] % g->t[0], b = row % g->t[1];
		int64_t z = oz + ((mask & 1) ? g->t[0] - 1 - a : a) - g->lo[0];
		int64_t y = oy + ((mask & 2) ? g->t[1] - 1 - b : b) - g->lo[1];
		float *d = dst + row * g->t[2];
		if (z < 0 || z >= g->Z || y < 0 || y >= g->Y) {
			memset(d, 0, (size_t)g->t[2] * sizeof *d);
			continue;
		}
		/* unflipped position j reads image x0 + j; valid j in [j0, j1) */
		const float *s = r->image + ((c * g->Z + z) * g->Y + y) * g->X;
		int64_t n = g->t[2], x0 = ox - g->lo[2];
		int64_t j0 = x0 < 0 ? -x0 : 0, j1 = g->X - x0 < n ? g->X - x0 : n;
		memset(d, 0, (size_t)n * sizeof *d);
		if (j1 > j0 && !(mask & 4))
			memcpy(d + j0, s + x0 + j0, (size_t)(j1 - j0) * sizeof *d);
		else
			for (int64_t j = j0; j < j1; j++)
				d[n - 1 - j] = s[x0 + j];
	}
}

/* pred (= or +=) flip(out, mask), K x tv. */
static void gather(const struct geom *g, const float *out, unsigned mask, int add, float *pred)
{
	int64_t rows = g->K * g->t[0] * g->t[1];
	#pragma omp parallel for if (rows * g->t[2] >= PAR_MIN)
	for (int64_t row = 0; row < rows; row++) {
		int64_t k = row / (g->t[0] * g->t[1]), a = row / g->t[1] % g->t[0], b = row % g->t[1];
		int64_t fa = (mask & 1) ? g->t[0] - 1 - a : a, fb = (mask & 2) ? g->t[1] - 1 - b : b;
		const float *s = out + ((k * g->t[0] + fa) * g->t[1] + fb) * g->t[2];
		float *d = pred + row * g->t[2];
		int64_t n = g->t[2];
		if (mask & 4) {
			for (int64_t i = 0; i < n; i++)
				d[i] = add ? d[i] + s[n - 1 - i] : s[n - 1 - i];
		} else {
			for (int64_t i = 0; i < n; i++)
				d[i] = add ? d[i] + s[i] : s[i];
		}
	}
}

/* TTA average, check, and add pred * G into the ring (model m); pred is
 * r->pred (mirroring) or the network's output itself (no mirroring). */
static int accumulate(struct run *r, float *pred, int m, int64_t tile, int64_t oz, int64_t oy, int64_t ox)
{
	const struct geom *g = &r->g;
	int64_t rows = g->K * g->t[0] * g->t[1], n = g->t[2];
	float div = (float)g->nvar;
	int bad = 0;
	#pragma omp parallel for reduction(| : bad) if (rows * n >= PAR_MIN)
	for (int64_t row = 0; row < rows; row++) {
		int64_t k = row / (g->t[0] * g->t[1]), ab = row % (g->t[0] * g->t[1]);
		int64_t a = ab / g->t[1], b = ab % g->t[1], slot = (oz + a) % g->t[0];
		int64_t at = (slot * g->K + k) * g->plane + (oy + b) * g->pd[2] + ox;
		float *p = pred + row * n;
		const float *w = r->gauss + ab * n;
		for (int64_t i = 0; i < n; i++) {
			if (g->nvar > 1)
				p[i] /= div;
			bad |= !isfinite(p[i]);
			float v = p[i] * w[i];
			if (r->acc16) {
				uint16_t *d = r->acc16 + (int64_t)m * g->t[0] * g->K * g->plane + at + i;
				*d = nnp_float_to_half(nnp_half_to_float(*d) + v);
			} else {
				r->acc[at + i] += v;
			}
		}
	}
	if (bad)
		return nnp_err(NNP_EDATA,
			       "infer: model %d: tile %lld at padded (%lld, %lld, %lld): network output is not finite",
			       m, (long long)tile, (long long)oz, (long long)oy, (long long)ox);
	if (m == 0) {
		int64_t crow = g->t[0] * g->t[1];
		#pragma omp parallel for if (crow * n >= PAR_MIN)
		for (int64_t ab = 0; ab < crow; ab++) {
			int64_t a = ab / g->t[1], b = ab % g->t[1], slot = (oz + a) % g->t[0];
			int64_t at = slot * g->plane + (oy + b) * g->pd[2] + ox;
			const float *w = r->gauss + ab * n;
			for (int64_t i = 0; i < n; i++) {
				if (r->cnt16)
					r->cnt16[at + i] = nnp_float_to_half(nnp_half_to_float(r->cnt16[at + i]) + w[i]);
				else
					r->cnt[at + i] += w[i];
			}
		}
	}
	return NNP_OK;
}

/* All tiles of z-row oz for model m, in order, max_batch inputs per call. */
static int predict_row(struct run *r, int m, int64_t iz)
{
	const struct geom *g = &r->g;
	const struct nnp_infer_model *md = &r->models[m];
	int64_t oz = offz(g, iz), per_row = g->ny * g->nx, items = per_row * g->nvar;
	for (int64_t q0 = 0; q0 < items; q0 += r->o->max_batch) {
		int n = (int)(items - q0 < r->o->max_batch ? items - q0 : r->o->max_batch), rc;
		for (int j = 0; j < n; j++) {
			int64_t t = (q0 + j) / g->nvar;
			extract(r, oz, g->offy[t / g->nx], g->offx[t % g->nx], g->flip[(q0 + j) % g->nvar],
				r->in + j * g->C * g->tv);
		}
		rc = md->forward(md->ctx, n, r->in, r->out);
		if (rc > 0)
			return nnp_err(NNP_EINTERNAL, "infer: model %d: forward returned %d", m, rc);
		if (rc)
			return nnp_err_ctx(rc, "model %d, tiles %lld-%lld", m,
					   (long long)(iz * per_row + q0 / g->nvar),
					   (long long)(iz * per_row + (q0 + n - 1) / g->nvar));
		for (int j = 0; j < n; j++) {
			int64_t q = q0 + j, t = q / g->nvar;
			int v = (int)(q % g->nvar);
			float *o = r->out + j * g->K * g->tv;
			if (g->nvar > 1)
				gather(g, o, g->flip[v], v > 0, r->pred);
			if (v == g->nvar - 1 &&
			    (rc = accumulate(r, g->nvar > 1 ? r->pred : o, m, iz * per_row + t, oz,
					     g->offy[t / g->nx], g->offx[t % g->nx])))
				return rc;
		}
	}
	return NNP_OK;
}

/* ---- output ---- */

/* The output value of channel k at padded in-slice index yx of ring slot
 * slot (all models combined); *bad |= 1 if it, or in fp16_compat one model's
 * result, is not finite. */
static float final_value(const struct run *r, int64_t slot, int64_t k, int64_t yx, int *bad)
{
	const struct geom *g = &r->g;
	int64_t ci = slot * g->plane + yx, ai = (slot * g->K + k) * g->plane + yx;
	float v;
	if (!r->acc16) {
		v = r->acc[ai] / (r->cnt[ci] * (float)r->nmodels);
	} else {
		float c = nnp_half_to_float(r->cnt16[ci]);
		uint16_t s = 0;
		for (int m = 0; m < r->nmodels; m++) {
			int64_t stride = (int64_t)m * g->t[0] * g->K * g->plane;
			uint16_t f = nnp_float_to_half(nnp_half_to_float(r->acc16[stride + ai]) / c);
			*bad |= !isfinite(nnp_half_to_float(f));
			s = m ? nnp_float_to_half(nnp_half_to_float(s) + nnp_half_to_float(f)) : f;
		}
		if (r->nmodels > 1)
			s = nnp_float_to_half(nnp_half_to_float(s) / (float)r->nmodels);
		v = nnp_half_to_float(s);
	}
	*bad |= !isfinite(v);
	return v;
}

/* Padded slices [z0, z1): divide the image part into the slab one slice at
 * a time (the slab holds one slice: K x Y x X), emit each, clear. */
static int finish_slices(struct run *r, int64_t z0, int64_t z1, nnp_infer_emit_fn emit, void *ectx)
{
	const struct geom *g = &r->g;
	int64_t i0 = z0 - g->lo[0] > 0 ? z0 - g->lo[0] : 0;
	int64_t i1 = z1 - g->lo[0] < g->Z ? z1 - g->lo[0] : g->Z, yxn = g->Y * g->X;
	int rc = NNP_OK;
	for (int64_t i = i0; i < i1 && !rc; i++) {
		int64_t rows = g->K * g->Y, slot = (i + g->lo[0]) % g->t[0];
		int bad = 0;
		#pragma omp parallel for reduction(| : bad) if (rows * g->X >= PAR_MIN)
		for (int64_t row = 0; row < rows; row++) {
			int64_t k = row / g->Y, y = row % g->Y;
			int64_t yx = (y + g->lo[1]) * g->pd[2] + g->lo[2];
			float *d = r->slab + k * yxn + y * g->X;
			for (int64_t x = 0; x < g->X; x++)
				d[x] = final_value(r, slot, k, yx + x, &bad);
		}
		if (bad)
			return nnp_err(NNP_EDATA, "infer: non-finite logits in slice %lld", (long long)i);
		rc = emit(ectx, i, 1, r->slab);
		if (rc > 0)
			rc = nnp_err(NNP_EINTERNAL, "infer: emit returned %d", rc);
	}
	for (int64_t z = z0; z < z1; z++) {
		int64_t slot = z % g->t[0];
		if (r->acc16) {
			for (int m = 0; m < r->nmodels; m++)
				memset(r->acc16 + ((int64_t)m * g->t[0] + slot) * g->K * g->plane, 0,
				       (size_t)(g->K * g->plane) * 2);
			memset(r->cnt16 + slot * g->plane, 0, (size_t)g->plane * 2);
		} else {
			memset(r->acc + slot * g->K * g->plane, 0, (size_t)(g->K * g->plane) * 4);
			memset(r->cnt + slot * g->plane, 0, (size_t)g->plane * 4);
		}
	}
	return rc;
}

/* ---- the run ---- */

static int check_models(const struct nnp_infer_model *models, int nmodels, int64_t C)
{
	if (!models || nmodels < 1)
		return nnp_err(NNP_EUSAGE, "infer: no model");
	for (int m = 0; m < nmodels; m++) {
		if (!models[m].forward || models[m].in_channels < 1 || models[m].out_channels < 1)
			return nnp_err(NNP_EUSAGE, "infer: model %d has no forward function or channels", m);
		if (models[m].in_channels != C || models[m].out_channels != models[0].out_channels)
			return nnp_err(NNP_EUSAGE,
				       "infer: model %d has %d input / %d output channels, expected %lld / %d",
				       m, models[m].in_channels, models[m].out_channels, (long long)C,
				       models[0].out_channels);
	}
	return NNP_OK;
}

static int alloc_run(struct run *r)
{
	struct sizes s = { 0 };
	const struct nnp_infer_opts *o = r->o;
	int rc = buffer_sizes(&r->g, o, r->nmodels, &s);
	if (rc)
		return rc;
	if (o->fp16_compat) {
		r->acc16 = calloc((size_t)s.ring, 2);
		r->cnt16 = calloc((size_t)s.cnt, 2);
	} else {
		r->acc = calloc((size_t)s.ring, 4);
		r->cnt = calloc((size_t)s.cnt, 4);
	}
	r->slab = malloc((size_t)s.slab * 4);
	r->in = malloc((size_t)s.in * 4);
	r->out = malloc((size_t)s.out * 4);
	r->pred = s.pred ? malloc((size_t)s.pred * 4) : NULL;
	r->gauss = malloc((size_t)s.gauss * 4);
	if ((!r->acc16 && !r->acc) || (!r->cnt16 && !r->cnt) || !r->slab || !r->in || !r->out ||
	    (s.pred && !r->pred) || !r->gauss)
		return nnp_err(NNP_ENOMEM, "infer: out of memory for the accumulator and tile buffers");
	if (!o->use_gaussian) {
		for (int64_t i = 0; i < s.gauss; i++)
			r->gauss[i] = 1.0f;
		return NNP_OK;
	}
	return nnp_sw_gaussian(o->ndim_tile, o->tile, 1.0 / 8, 10.0, r->gauss);
}

static void free_run(struct run *r)
{
	free(r->acc), free(r->cnt), free(r->acc16), free(r->cnt16);
	free(r->slab), free(r->in), free(r->out), free(r->pred), free(r->gauss);
	nnp_sw_steps_release(&r->g.st);
}

int nnp_infer_run(const struct nnp_infer_opts *o, const struct nnp_infer_model *models,
		  int nmodels, const float *image, const int64_t shape[4], nnp_infer_emit_fn emit,
		  void *emit_ctx)
{
	struct run r;
	int rc = check_opts(o, shape);
	if (rc)
		return rc;
	if (!image || !emit)
		return nnp_err(NNP_EUSAGE, "infer: missing image or emit callback");
	if ((rc = check_models(models, nmodels, shape[0])))
		return rc;
	memset(&r, 0, sizeof r);
	r.o = o, r.models = models, r.nmodels = nmodels, r.image = image;
	if ((rc = geom_sizes(&r.g, o, models[0].out_channels, shape)) || (rc = geom_steps(&r.g, o)) ||
	    (rc = alloc_run(&r)))
		goto out;
	int64_t done = 0;
	for (int64_t iz = 0; iz < r.g.nz && !rc; iz++) {
		for (int m = 0; m < nmodels && !rc; m++)
			rc = predict_row(&r, m, iz);
		int64_t next = iz + 1 < r.g.nz ? offz(&r.g, iz + 1) : r.g.pd[0];
		if (!rc && next - done > r.g.t[0])
			rc = nnp_err(NNP_EINTERNAL, "infer: tile offsets %lld -> %lld leave a gap",
				     (long long)done, (long long)next);
		if (!rc && next > done) {
			rc = finish_slices(&r, done, next, emit, emit_ctx);
			done = next;
		}
	}
out:
	free_run(&r);
	return rc;
}
