/* test_infer.c — the sliding-window prediction driver (common/infer.c) with a
 * fake network whose mirrored predictions differ (an asymmetric 3-tap filter
 * along every tile axis, zero outside the tile):
 *   float32 mode against a float64 re-implementation written here (rel 1e-6);
 *   fp16_compat mode bit for bit against tests/fixtures/ops/sliding_window_fp16
 *   (tests/tools/sw_fp16_reference.py: nnU-Net's torch code replayed with numpy
 *   float16 ops); streaming order, the memory estimate, errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dtype.h"
#include "err.h"
#include "infer.h"
#include "sliding.h"

#define FX "tests/fixtures/ops/sliding_window_fp16/"

/* ---- the fake network (same as sw_fp16_reference.py's fake_net) ---- */

struct net {
	int C, K, fold;
	int64_t t[3];      /* 3D view of the tile (2D: 1, p0, p1) */
	int calls, fail_at, nan_at, max_n;
	double big;        /* extra output scale (overflow tests), 0 = 1 */
};

/* One input x (C x tv, T is float or double) -> out (K x tv). */
#define FAKE_NET(T, x, out, t, C, K, fold, big)                                                 \
	do {                                                                                     \
		int64_t tv_ = t[0] * t[1] * t[2];                                                \
		T *s_ = calloc((size_t)tv_, sizeof(T)), *h_ = malloc((size_t)tv_ * sizeof(T));   \
		for (int c_ = 0; c_ < C; c_++)                                                   \
			for (int64_t v_ = 0; v_ < tv_; v_++)                                     \
				s_[v_] += (T)(c_ + 1) * x[c_ * tv_ + v_];                        \
		int64_t st_[3] = { t[1] * t[2], t[2], 1 };                                       \
		for (int64_t v_ = 0; v_ < tv_; v_++) {                                           \
			int64_t co_[3] = { v_ / st_[0], v_ / st_[1] % t[1], v_ % t[2] };         \
			T hv_ = s_[v_];                                                          \
			for (int a_ = 0; a_ < 3; a_++) {                                         \
				T nx_ = co_[a_] + 1 < t[a_] ? s_[v_ + st_[a_]] : 0;              \
				T pv_ = co_[a_] > 0 ? s_[v_ - st_[a_]] : 0;                      \
				hv_ = hv_ + (T)0.5 * nx_ + (T)0.25 * pv_;                        \
			}                                                                        \
			h_[v_] = hv_;                                                            \
		}                                                                                \
		for (int k_ = 0; k_ < K; k_++) {                                                 \
			T sc_ = (T)(k_ + 1 + 0.5 * fold) * (T)(big), b_ = (T)(0.25 * (k_ - 1) - 0.125 * fold); \
			for (int64_t v_ = 0; v_ < tv_; v_++)                                     \
				out[k_ * tv_ + v_] = sc_ * h_[v_] + b_;                          \
		}                                                                                \
		free(s_), free(h_);                                                              \
	} while (0)

static int fake_forward(void *ctx, int n, const float *in, float *out)
{
	struct net *nt = ctx;
	int64_t tv = nt->t[0] * nt->t[1] * nt->t[2];
	nt->calls++;
	if (n > nt->max_n)
		nt->max_n = n;
	if (nt->fail_at && nt->calls == nt->fail_at)
		return nnp_err(NNP_EIO, "fake network failed");
	for (int i = 0; i < n; i++) {
		const float *x = in + (int64_t)i * nt->C * tv;
		float *o = out + (int64_t)i * nt->K * tv;
		FAKE_NET(float, x, o, nt->t, nt->C, nt->K, nt->fold, nt->big ? nt->big : 1.0);
	}
	if (nt->nan_at && nt->calls == nt->nan_at)
		out[0] = NAN;
	return NNP_OK;
}

static void net_init(struct net *nt, const struct nnp_infer_opts *o, int C, int K, int fold)
{
	memset(nt, 0, sizeof *nt);
	nt->C = C, nt->K = K, nt->fold = fold;
	nt->t[0] = o->ndim_tile == 2 ? 1 : o->tile[0];
	nt->t[1] = o->tile[o->ndim_tile == 2 ? 0 : 1];
	nt->t[2] = o->tile[o->ndim_tile == 2 ? 1 : 2];
}

/* ((i * 7919 + 13) % 255 - 127) / 32, exact in float and double */
static float *make_image(const int64_t *shape)
{
	int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
	float *im = malloc((size_t)n * sizeof *im);
	for (int64_t i = 0; i < n; i++)
		im[i] = (float)((i * 7919 + 13) % 255 - 127) / 32.0f;
	return im;
}

/* ---- collecting the output ---- */

struct sink {
	int64_t K, Z, YX, next, calls, max_zs;
	float *out;
	int fail;
};

static int sink_emit(void *ctx, int64_t z0, int64_t zs, const float *slab)
{
	struct sink *s = ctx;
	assert_int_equal(z0, s->next);
	assert_true(zs >= 1 && z0 + zs <= s->Z);
	for (int64_t k = 0; k < s->K; k++)
		memcpy(s->out + (k * s->Z + z0) * s->YX, slab + k * zs * s->YX,
		       (size_t)(zs * s->YX) * sizeof(float));
	s->next += zs;
	s->calls++;
	if (zs > s->max_zs)
		s->max_zs = zs;
	if (s->fail)
		return nnp_err(NNP_EIO, "sink full");
	return NNP_OK;
}

static void sink_init(struct sink *s, int64_t K, const int64_t *shape)
{
	memset(s, 0, sizeof *s);
	s->K = K, s->Z = shape[1], s->YX = shape[2] * shape[3];
	s->out = malloc((size_t)(K * s->Z * s->YX) * sizeof(float));
	for (int64_t i = 0; i < K * s->Z * s->YX; i++)
		s->out[i] = NAN;
}

/* ---- float64 reference: pad, tile, TTA, blend, average folds ---- */

static int64_t ref_steps(int64_t size, int64_t tile, double step, int64_t *off)
{
	int64_t n = (int64_t)ceil((double)(size - tile) / ((double)tile * step)) + 1;
	if (n == 1) {
		off[0] = 0;
		return 1;
	}
	for (int64_t i = 0; i < n; i++)
		off[i] = (int64_t)nearbyint((double)(size - tile) / (double)(n - 1) * (double)i);
	return n;
}

/* Flip a 3D array of m x t blocks along the axes in mask (bit d = axis d). */
static void flip3(const double *src, double *dst, int m, const int64_t *t, unsigned mask)
{
	int64_t tv = t[0] * t[1] * t[2];
	for (int c = 0; c < m; c++)
		for (int64_t a = 0; a < t[0]; a++)
			for (int64_t b = 0; b < t[1]; b++)
				for (int64_t x = 0; x < t[2]; x++) {
					int64_t fa = mask & 1 ? t[0] - 1 - a : a, fb = mask & 2 ? t[1] - 1 - b : b;
					int64_t fx = mask & 4 ? t[2] - 1 - x : x;
					dst[c * tv + (a * t[1] + b) * t[2] + x] = src[c * tv + (fa * t[1] + fb) * t[2] + fx];
				}
}

static double *reference(const struct nnp_infer_opts *o, int nfold, int K, const int64_t *shape,
			 const float *im)
{
	int two = o->ndim_tile == 2, C = (int)shape[0];
	int64_t t[3] = { two ? 1 : o->tile[0], o->tile[two ? 0 : 1], o->tile[two ? 1 : 2] };
	int64_t sz[3] = { shape[1], shape[2], shape[3] }, lo[3], pd[3], tv = t[0] * t[1] * t[2];
	for (int d = 0; d < 3; d++) {
		int64_t diff = t[d] > sz[d] ? t[d] - sz[d] : 0;
		lo[d] = diff / 2, pd[d] = sz[d] + diff;
	}
	int64_t off[3][4096], n[3];
	for (int d = 0; d < 3; d++)
		n[d] = ref_steps(pd[d], t[d], o->step, off[d]);
	if (two) {
		n[0] = sz[0];
		for (int64_t i = 0; i < n[0]; i++)
			off[0][i] = i;
	}
	float *gf = malloc((size_t)tv * sizeof *gf);
	if (o->use_gaussian)
		assert_int_equal(nnp_sw_gaussian(o->ndim_tile, o->tile, 1.0 / 8, 10.0, gf), NNP_OK);
	else
		for (int64_t i = 0; i < tv; i++)
			gf[i] = 1;
	unsigned masks[8] = { 0 };
	int nm = o->n_mirror_axes, nvar = 1, sh = two ? 1 : 0;
	for (int r = 1; r <= nm; r++)   /* itertools.combinations, sizes 1..nm (order irrelevant here) */
		for (unsigned bits = 1; bits < (1u << nm); bits++)
			if (__builtin_popcount(bits) == r) {
				unsigned m = 0;
				for (int i = 0; i < nm; i++)
					if (bits & (1u << i))
						m |= 1u << (o->mirror_axes[i] + sh);
				masks[nvar++] = m;
			}
	int64_t pv = pd[0] * pd[1] * pd[2];
	double *res = calloc((size_t)(K * sz[0] * sz[1] * sz[2]), sizeof *res);
	double *acc = malloc((size_t)(K * pv) * sizeof *acc), *cnt = malloc((size_t)pv * sizeof *cnt);
	double *x = malloc((size_t)(C * tv) * sizeof *x), *xf = malloc((size_t)(C * tv) * sizeof *xf);
	double *y = malloc((size_t)(K * tv) * sizeof *y), *yf = malloc((size_t)(K * tv) * sizeof *yf);
	double *p = malloc((size_t)(K * tv) * sizeof *p);
	for (int f = 0; f < nfold; f++) {
		memset(acc, 0, (size_t)(K * pv) * sizeof *acc);
		memset(cnt, 0, (size_t)pv * sizeof *cnt);
		for (int64_t i0 = 0; i0 < n[0]; i0++)
			for (int64_t i1 = 0; i1 < n[1]; i1++)
				for (int64_t i2 = 0; i2 < n[2]; i2++) {
					int64_t o0 = off[0][i0], o1 = off[1][i1], o2 = off[2][i2];
					for (int c = 0; c < C; c++)
						for (int64_t v = 0; v < tv; v++) {
							int64_t a = v / (t[1] * t[2]) + o0 - lo[0];
							int64_t b = v / t[2] % t[1] + o1 - lo[1];
							int64_t e = v % t[2] + o2 - lo[2];
							int in = a >= 0 && a < sz[0] && b >= 0 && b < sz[1] && e >= 0 && e < sz[2];
							x[c * tv + v] = in ? im[((c * sz[0] + a) * sz[1] + b) * sz[2] + e] : 0;
						}
					memset(p, 0, (size_t)(K * tv) * sizeof *p);
					for (int m = 0; m < nvar; m++) {
						flip3(x, xf, C, t, masks[m]);
						FAKE_NET(double, xf, y, t, C, K, f, 1.0);
						flip3(y, yf, K, t, masks[m]);
						for (int64_t i = 0; i < K * tv; i++)
							p[i] += yf[i] / nvar;
					}
					for (int64_t v = 0; v < tv; v++) {
						int64_t a = v / (t[1] * t[2]) + o0, b = v / t[2] % t[1] + o1, e = v % t[2] + o2;
						int64_t at = (a * pd[1] + b) * pd[2] + e;
						cnt[at] += gf[v];
						for (int k = 0; k < K; k++)
							acc[k * pv + at] += p[k * tv + v] * gf[v];
					}
				}
		for (int k = 0; k < K; k++)
			for (int64_t a = 0; a < sz[0]; a++)
				for (int64_t b = 0; b < sz[1]; b++)
					for (int64_t e = 0; e < sz[2]; e++) {
						int64_t at = ((a + lo[0]) * pd[1] + b + lo[1]) * pd[2] + e + lo[2];
						res[((k * sz[0] + a) * sz[1] + b) * sz[2] + e] +=
							acc[k * pv + at] / cnt[at] / nfold;
					}
	}
	free(gf), free(acc), free(cnt), free(x), free(xf), free(y), free(yf), free(p);
	return res;
}

/* ---- running the driver ---- */

struct runres {
	int rc, forward_calls, max_n;
	struct sink sink;
};

static struct runres run_case(const struct nnp_infer_opts *o, int nfold, int K, const int64_t *shape,
			      const float *im)
{
	struct net nets[8];
	struct nnp_infer_model models[8];
	struct runres r;
	memset(&r, 0, sizeof r);
	for (int f = 0; f < nfold; f++) {
		net_init(&nets[f], o, (int)shape[0], K, f);
		models[f] = (struct nnp_infer_model){ (int)shape[0], K, &nets[f], fake_forward };
	}
	sink_init(&r.sink, K, shape);
	r.rc = nnp_infer_run(o, models, nfold, im, shape, sink_emit, &r.sink);
	for (int f = 0; f < nfold; f++) {
		r.forward_calls += nets[f].calls;
		if (nets[f].max_n > r.max_n)
			r.max_n = nets[f].max_n;
	}
	return r;
}

static void check_fp32(const struct nnp_infer_opts *o, int nfold, int K, const int64_t *shape)
{
	float *im = make_image(shape);
	struct runres r = run_case(o, nfold, K, shape, im);
	assert_int_equal(r.rc, NNP_OK);
	assert_int_equal(r.sink.next, shape[1]);
	assert_true(r.max_n <= o->max_batch);
	double *ref = reference(o, nfold, K, shape, im), maxrel = 0, maxabs = 0;
	int64_t n = K * shape[1] * shape[2] * shape[3];
	for (int64_t i = 0; i < n; i++) {
		double d = fabs((double)r.sink.out[i] - ref[i]) / fmax(fabs(ref[i]), 1.0);
		if (!(d <= maxrel))
			maxrel = d;
		if (fabs(ref[i]) > maxabs)
			maxabs = fabs(ref[i]);
	}
	print_message("    %lld values, max |ref| %.3g, max rel err %.3g, %d forward calls\n",
		      (long long)n, maxabs, maxrel, r.forward_calls);
	assert_true(maxabs > 1);          /* the fake network produces real values */
	assert_true(maxrel <= 1e-6);
	free(ref), free(im), free(r.sink.out);
}

static struct nnp_infer_opts opts3(int64_t t0, int64_t t1, int64_t t2)
{
	struct nnp_infer_opts o;
	nnp_infer_opts_init(&o);
	o.tile[0] = t0, o.tile[1] = t1, o.tile[2] = t2;
	return o;
}

static void set_mirror(struct nnp_infer_opts *o, int n, int a0, int a1, int a2)
{
	o->n_mirror_axes = n;
	o->mirror_axes[0] = a0, o->mirror_axes[1] = a1, o->mirror_axes[2] = a2;
}

static void test_fp32_single_tile(void **state)
{
	struct nnp_infer_opts o = opts3(6, 8, 8);
	int64_t shape[4] = { 2, 6, 8, 8 };
	check_fp32(&o, 1, 3, shape);
	set_mirror(&o, 3, 0, 1, 2);
	check_fp32(&o, 1, 3, shape);
}

static void test_fp32_many_tiles_mirror(void **state)
{
	struct nnp_infer_opts o = opts3(8, 6, 8);
	int64_t shape[4] = { 2, 21, 13, 17 };
	set_mirror(&o, 3, 0, 1, 2);
	o.max_batch = 5;   /* batches straddle tiles */
	check_fp32(&o, 1, 2, shape);
	set_mirror(&o, 0, 0, 0, 0);
	check_fp32(&o, 1, 2, shape);
}

static void test_fp32_padding_all_axes(void **state)
{
	struct nnp_infer_opts o = opts3(8, 6, 10);
	int64_t shape[4] = { 1, 5, 3, 7 };
	set_mirror(&o, 2, 2, 0, 0);   /* axes given out of order */
	check_fp32(&o, 1, 3, shape);
	int64_t shape2[4] = { 2, 11, 3, 19 };   /* padded on y only, odd sizes */
	check_fp32(&o, 1, 2, shape2);
}

static void test_fp32_two_folds(void **state)
{
	struct nnp_infer_opts o = opts3(4, 4, 6);
	int64_t shape[4] = { 2, 11, 9, 13 };
	set_mirror(&o, 1, 1, 0, 0);
	o.max_batch = 1;
	check_fp32(&o, 2, 3, shape);
}

static void test_fp32_no_gaussian_other_step(void **state)
{
	struct nnp_infer_opts o = opts3(5, 4, 6);
	int64_t shape[4] = { 1, 17, 9, 10 };
	o.use_gaussian = 0;
	o.step = 0.33;
	set_mirror(&o, 2, 0, 2, 0);
	check_fp32(&o, 1, 2, shape);
	o.use_gaussian = 1;
	o.step = 1.0;
	check_fp32(&o, 2, 2, shape);
}

static void test_fp32_2d(void **state)
{
	struct nnp_infer_opts o = opts3(6, 4, 0);
	int64_t shape[4] = { 2, 4, 11, 3 };   /* x padded to the tile */
	o.ndim_tile = 2;
	set_mirror(&o, 2, 0, 1, 0);
	o.max_batch = 3;
	check_fp32(&o, 2, 3, shape);
	set_mirror(&o, 1, 1, 0, 0);
	check_fp32(&o, 1, 2, shape);
}

/* ---- fp16_compat against the numpy replay of nnU-Net ---- */

static void check_fp16(const char *name, struct nnp_infer_opts *o, int nfold, int K, const int64_t *shape)
{
	char path[256];
	int64_t n = K * shape[1] * shape[2] * shape[3];
	uint16_t *want = malloc((size_t)n * 2);
	snprintf(path, sizeof path, FX "%s.f16", name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open '%s'", path);
	assert_int_equal(fread(want, 2, (size_t)n + 1, f), (size_t)n);
	fclose(f);
	float *im = make_image(shape);
	o->fp16_compat = 1;
	struct runres r = run_case(o, nfold, K, shape, im);
	assert_int_equal(r.rc, NNP_OK);
	assert_int_equal(r.sink.next, shape[1]);
	int64_t diff = 0, ulp_max = 0;
	for (int64_t i = 0; i < n; i++) {
		float w = nnp_half_to_float(want[i]);
		if (memcmp(&w, &r.sink.out[i], 4) != 0) {
			int64_t u = (int64_t)nnp_float_to_half(r.sink.out[i]) - want[i];
			if (llabs(u) > ulp_max)
				ulp_max = llabs(u);
			diff++;
		}
	}
	print_message("    %s: %lld values, %lld differ (max %lld ulp)\n", name, (long long)n,
		      (long long)diff, (long long)ulp_max);
	assert_int_equal(diff, 0);
	/* and the float32 mode is close to it (float16 rounding level) */
	o->fp16_compat = 0;
	struct runres r32 = run_case(o, nfold, K, shape, im);
	assert_int_equal(r32.rc, NNP_OK);
	double num = 0, den = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = r32.sink.out[i] - r.sink.out[i];
		num += d * d, den += (double)r32.sink.out[i] * r32.sink.out[i];
	}
	assert_true(num > 0 && sqrt(num / den) < 0.05);
	free(want), free(im), free(r.sink.out), free(r32.sink.out);
}

static void test_fp16_fixtures(void **state)
{
	struct nnp_infer_opts o = opts3(6, 8, 4);
	int64_t s1[4] = { 2, 12, 5, 11 };
	set_mirror(&o, 3, 0, 1, 2);
	o.max_batch = 3;
	check_fp16("3d_mirror_2folds", &o, 2, 3, s1);

	o = opts3(4, 4, 4);
	int64_t s2[4] = { 1, 9, 7, 6 };
	check_fp16("3d_plain", &o, 1, 2, s2);

	o = opts3(4, 3, 5);
	int64_t s3[4] = { 2, 7, 6, 9 };
	o.use_gaussian = 0;
	set_mirror(&o, 1, 2, 0, 0);
	check_fp16("3d_nogauss", &o, 1, 2, s3);

	o = opts3(4, 6, 0);
	o.ndim_tile = 2;
	int64_t s4[4] = { 1, 3, 7, 10 };
	set_mirror(&o, 2, 0, 1, 0);
	check_fp16("2d_mirror_3folds", &o, 3, 3, s4);
}

/* ---- streaming and memory ---- */

static void test_streaming_and_estimate(void **state)
{
	struct nnp_infer_opts o = opts3(16, 8, 8);
	int64_t shape[4] = { 1, 40, 8, 8 }, b40, b400;
	float *im = make_image(shape);
	struct runres r = run_case(&o, 1, 2, shape, im);
	assert_int_equal(r.rc, NNP_OK);
	assert_int_equal(r.sink.next, 40);      /* every z once, in order (sink_emit asserts) */
	/* offsets 0 8 16 24: slices become final at 8, 16, 24 and 40; each is
	   emitted on its own (the emit buffer holds one slice) */
	assert_int_equal(r.sink.calls, 40);
	assert_int_equal(r.sink.max_zs, 1);
	free(im), free(r.sink.out);

	assert_int_equal(nnp_infer_estimate(&o, 3, 2, shape, &b40), NNP_OK);
	shape[1] = 400;
	assert_int_equal(nnp_infer_estimate(&o, 3, 2, shape, &b400), NNP_OK);
	assert_int_equal(b400 - b40, (int64_t)4 * 1 * 360 * 8 * 8);
	/* ring of 16 slices x (K + 1), one K-slice emit buffer, 8 tiles in and out,
	   no TTA sum (no mirroring), gaussian */
	int64_t tv = 16 * 8 * 8, want40 = 4 * 40 * 64 + 4 * 16 * 64 * 4 + 4 * 64 * 3 +
					 4 * 8 * (1 + 3) * tv + 14 * tv;
	assert_int_equal(b40, want40);
	o.fp16_compat = 1;   /* float16 ring, one per fold */
	shape[1] = 40;
	assert_int_equal(nnp_infer_estimate(&o, 3, 2, shape, &b40), NNP_OK);
	assert_int_equal(b40, want40 - 4 * 16 * 64 * 4 + 2 * 16 * 64 * (2 * 3 + 1));

	/* 2D: one slice at a time */
	o = opts3(8, 8, 0);
	o.ndim_tile = 2;
	shape[1] = 5;
	im = make_image(shape);
	r = run_case(&o, 1, 2, shape, im);
	assert_int_equal(r.rc, NNP_OK);
	assert_int_equal(r.sink.calls, 5);
	assert_int_equal(r.sink.max_zs, 1);
	free(im), free(r.sink.out);
}

/* ---- errors ---- */

static void test_errors(void **state)
{
	struct nnp_infer_opts o = opts3(4, 4, 4), b;
	int64_t shape[4] = { 1, 9, 6, 6 }, bytes;
	float *im = make_image(shape);
	struct net nt;
	struct nnp_infer_model m;
	struct sink s;

	/* the network fails on its 3rd call: the code and its message come back */
	net_init(&nt, &o, 1, 2, 0);
	nt.fail_at = 3;
	m = (struct nnp_infer_model){ 1, 2, &nt, fake_forward };
	sink_init(&s, 2, shape);
	assert_int_equal(nnp_infer_run(&o, &m, 1, im, shape, sink_emit, &s), NNP_EIO);
	assert_non_null(strstr(nnp_err_msg(), "fake network failed"));
	assert_non_null(strstr(nnp_err_msg(), "model 0"));
	assert_int_equal(nt.calls, 3);

	/* NaN from the network: NNP_EDATA naming the tile */
	net_init(&nt, &o, 1, 2, 0);
	nt.nan_at = 2;
	s.next = 0;
	assert_int_equal(nnp_infer_run(&o, &m, 1, im, shape, sink_emit, &s), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "tile 4 at"));
	assert_non_null(strstr(nnp_err_msg(), "not finite"));

	/* float16 overflow in fp16_compat: inf logits are an error (nnU-Net raises) */
	net_init(&nt, &o, 1, 2, 0);
	nt.big = 1e4;
	s.next = 0;
	b = o;
	b.fp16_compat = 1;
	assert_int_equal(nnp_infer_run(&b, &m, 1, im, shape, sink_emit, &s), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "non-finite logits in slice"));
	/* ... and fine in float32 mode */
	net_init(&nt, &o, 1, 2, 0);
	nt.big = 1e4;
	s.next = 0;
	assert_int_equal(nnp_infer_run(&o, &m, 1, im, shape, sink_emit, &s), NNP_OK);

	/* emit failing stops the run */
	net_init(&nt, &o, 1, 2, 0);
	s.next = 0, s.calls = 0;
	s.fail = 1;
	assert_int_equal(nnp_infer_run(&o, &m, 1, im, shape, sink_emit, &s), NNP_EIO);
	assert_int_equal(s.next, 1);   /* the first slice's emit fails: nothing after it */
	assert_int_equal(s.calls, 1);
	s.fail = 0;

	/* bad options and arguments */
#define BAD(stmt)                                                                         \
	do {                                                                              \
		b = o;                                                                    \
		stmt;                                                                     \
		s.next = 0;                                                               \
		assert_int_equal(nnp_infer_run(&b, &m, 1, im, shape, sink_emit, &s), NNP_EUSAGE); \
		assert_int_equal(nnp_infer_estimate(&b, 2, 1, shape, &bytes), NNP_EUSAGE); \
	} while (0)
	BAD(b.ndim_tile = 1);
	BAD(b.ndim_tile = 4);
	BAD(b.tile[1] = 0);
	BAD(b.step = 0);
	BAD(b.step = 1.5);
	BAD(b.step = NAN);
	BAD(b.max_batch = 0);
	BAD(set_mirror(&b, 4, 0, 1, 2));
	BAD(set_mirror(&b, 1, 3, 0, 0));
	BAD(set_mirror(&b, 2, 1, 1, 0));
	BAD((b.ndim_tile = 2, set_mirror(&b, 1, 2, 0, 0)));
#undef BAD
	b = o;
	assert_int_equal(nnp_infer_run(&b, &m, 0, im, shape, sink_emit, &s), NNP_EUSAGE);
	assert_int_equal(nnp_infer_run(&b, &m, 1, im, shape, NULL, &s), NNP_EUSAGE);
	assert_int_equal(nnp_infer_run(&b, &m, 1, NULL, shape, sink_emit, &s), NNP_EUSAGE);
	m.in_channels = 2;   /* image has 1 channel */
	assert_int_equal(nnp_infer_run(&b, &m, 1, im, shape, sink_emit, &s), NNP_EUSAGE);
	assert_non_null(strstr(nnp_err_msg(), "input"));
	m.in_channels = 1;
	struct nnp_infer_model two[2] = { m, m };
	two[1].out_channels = 3;
	assert_int_equal(nnp_infer_run(&b, two, 2, im, shape, sink_emit, &s), NNP_EUSAGE);
	two[1].out_channels = 2, two[1].forward = NULL;
	assert_int_equal(nnp_infer_run(&b, two, 2, im, shape, sink_emit, &s), NNP_EUSAGE);
	int64_t bad_shape[4] = { 1, 0, 6, 6 };
	assert_int_equal(nnp_infer_run(&b, &m, 1, im, bad_shape, sink_emit, &s), NNP_EUSAGE);
	assert_int_equal(nnp_infer_estimate(&b, 0, 1, shape, &bytes), NNP_EUSAGE);
	/* absurd sizes are refused before any allocation */
	b.tile[0] = b.tile[1] = (int64_t)1 << 20;
	assert_int_equal(nnp_infer_estimate(&b, 2, 1, shape, &bytes), NNP_ENOMEM);
	assert_int_equal(nnp_infer_run(&b, &m, 1, im, shape, sink_emit, &s), NNP_ENOMEM);
	b = o;
	int64_t huge[4] = { 1, (int64_t)1 << 60, 6, 6 };
	assert_int_equal(nnp_infer_estimate(&b, 2, 1, huge, &bytes), NNP_ENOMEM);
	free(im), free(s.out);
}

/* ---- the mirrored copies reach the network in itertools.combinations order ---- */

struct recorder {
	const float *tile;   /* the one tile (= the image, C = 1) */
	int64_t t[3];
	int n, masks[64];
};

static int record_forward(void *ctx, int n, const float *in, float *out)
{
	struct recorder *rc = ctx;
	int64_t tv = rc->t[0] * rc->t[1] * rc->t[2];
	for (int i = 0; i < n; i++) {
		int found = -1;
		for (unsigned m = 0; m < 8 && found < 0; m++) {
			int same = 1;
			for (int64_t v = 0; v < tv && same; v++) {
				int64_t a = v / (rc->t[1] * rc->t[2]), b = v / rc->t[2] % rc->t[1], x = v % rc->t[2];
				a = m & 1 ? rc->t[0] - 1 - a : a, b = m & 2 ? rc->t[1] - 1 - b : b;
				x = m & 4 ? rc->t[2] - 1 - x : x;
				same = in[i * tv + v] == rc->tile[(a * rc->t[1] + b) * rc->t[2] + x];
			}
			if (same)
				found = (int)m;
		}
		assert_true(rc->n < 64);
		rc->masks[rc->n++] = found;
	}
	memset(out, 0, (size_t)(n * tv) * sizeof *out);
	return NNP_OK;
}

static void check_order(struct nnp_infer_opts *o, const int64_t *shape, const int *want, int nwant)
{
	float *im = malloc((size_t)(shape[1] * shape[2] * shape[3]) * sizeof *im);
	for (int64_t i = 0; i < shape[1] * shape[2] * shape[3]; i++)
		im[i] = (float)(i + 1);
	struct recorder rc = { im, { shape[1], shape[2], shape[3] }, 0, { 0 } };
	struct nnp_infer_model m = { 1, 1, &rc, record_forward };
	struct sink s;
	sink_init(&s, 1, shape);
	assert_int_equal(nnp_infer_run(o, &m, 1, im, shape, sink_emit, &s), NNP_OK);
	assert_int_equal(rc.n, nwant);
	for (int i = 0; i < nwant; i++)
		assert_int_equal(rc.masks[i], want[i]);
	free(im), free(s.out);
}

static void test_mirror_order(void **state)
{
	struct nnp_infer_opts o = opts3(3, 4, 5);
	int64_t shape[4] = { 1, 3, 4, 5 };
	o.max_batch = 3;
	set_mirror(&o, 3, 0, 1, 2);   /* (), (0), (1), (2), (0,1), (0,2), (1,2), (0,1,2) */
	check_order(&o, shape, (const int[]){ 0, 1, 2, 4, 3, 5, 6, 7 }, 8);
	set_mirror(&o, 2, 2, 0, 0);   /* (), (2), (0), (2,0) */
	check_order(&o, shape, (const int[]){ 0, 4, 1, 5 }, 4);
	o = opts3(4, 5, 0);           /* 2D: tile axes 0, 1 are image axes 1, 2 */
	o.ndim_tile = 2;
	int64_t shape2[4] = { 1, 1, 4, 5 };
	set_mirror(&o, 2, 1, 0, 0);   /* (), (1), (0), (1,0) */
	check_order(&o, shape2, (const int[]){ 0, 4, 2, 6 }, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fp32_single_tile),
		cmocka_unit_test(test_fp32_many_tiles_mirror),
		cmocka_unit_test(test_fp32_padding_all_axes),
		cmocka_unit_test(test_fp32_two_folds),
		cmocka_unit_test(test_fp32_no_gaussian_other_step),
		cmocka_unit_test(test_fp32_2d),
		cmocka_unit_test(test_fp16_fixtures),
		cmocka_unit_test(test_mirror_order),
		cmocka_unit_test(test_streaming_and_estimate),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
