/* test_loss.c — the training loss, deep supervision and pseudo-Dice:
 * values against the numpy port of nnU-Net (tests/tools/loss_reference.py ->
 * tests/fixtures/train/loss_vectors.json), gradients against central finite
 * differences, hand-checkable cases, thread-count independence, errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "loss.h"

#define FIXTURE "tests/fixtures/train/loss_vectors.json"

static json_t *fx;

static int setup(void **state)
{
	json_error_t e;
	(void)state;
	fx = json_load_file(FIXTURE, 0, &e);
	if (!fx)
		fprintf(stderr, "%s:%d: %s\n", FIXTURE, e.line, e.text);
	return fx ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	json_decref(fx);
	return 0;
}

/* ---- helpers ---- */

static float *jfloats(json_t *a)
{
	float *v = malloc(sizeof(float) * (json_array_size(a) + 1));
	for (size_t i = 0; i < json_array_size(a); i++)
		v[i] = (float)json_number_value(json_array_get(a, i));
	return v;
}

static void *jints(json_t *a, size_t es)
{
	char *v = malloc(es * (json_array_size(a) + 1));
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_int_t x = json_integer_value(json_array_get(a, i));
		if (es == 2) {
			int16_t s = (int16_t)x;
			memcpy(v + 2 * i, &s, 2);
		} else {
			v[i] = (char)x;
		}
	}
	return v;
}

static struct nnp_loss_shape jshape(json_t *c)
{
	struct nnp_loss_shape s = { 0 };
	json_t *sp = json_object_get(c, "spatial");
	s.b = json_integer_value(json_object_get(c, "b"));
	s.c = json_integer_value(json_object_get(c, "c"));
	s.dim = (int)json_array_size(sp);
	for (int a = 0; a < s.dim; a++)
		s.n[a] = json_integer_value(json_array_get(sp, (size_t)a));
	return s;
}

static void assert_rel(double got, double want, double tol)
{
	double err = fabs(got - want), lim = tol * fmax(fabs(want), 1.0);
	if (!(err <= lim))
		fail_msg("got %.17g want %.17g (error %.3g > %.3g)", got, want, err, lim);
}

static void check_counts(const struct nnp_pdice *d, json_t *c)
{
	for (int64_t k = 0; k < d->n; k++) {
		assert_int_equal(d->tp[k], json_integer_value(json_array_get(json_object_get(c, "tp"), (size_t)k)));
		assert_int_equal(d->fp[k], json_integer_value(json_array_get(json_object_get(c, "fp"), (size_t)k)));
		assert_int_equal(d->fn[k], json_integer_value(json_array_get(json_object_get(c, "fn"), (size_t)k)));
	}
}

/* Deterministic pseudo-random numbers for the synthetic tensors. */
static uint64_t lcg_state = 88172645463325252ull;
static double urand(void)
{
	lcg_state ^= lcg_state << 13;
	lcg_state ^= lcg_state >> 7;
	lcg_state ^= lcg_state << 17;
	return (double)(lcg_state >> 11) / 9007199254740992.0;
}

/* Logits on a 2^-12 grid in [-3, 3]: z +- 2^-10 is exact in float32. */
static void fill_logits(float *z, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		z[i] = (float)(nearbyint((urand() * 6 - 3) * 4096) / 4096);
}

/* ---- fixture: values ---- */

static void test_fixture_labels(void **state)
{
	size_t i;
	json_t *c;
	(void)state;
	json_array_foreach(json_object_get(fx, "labels"), i, c) {
		struct nnp_loss_shape s = jshape(c);
		json_t *ig = json_object_get(c, "ignore_label");
		struct nnp_loss_opts o = { json_is_true(json_object_get(c, "batch_dice")), !json_is_null(ig),
					   (int)json_integer_value(ig) };
		float *z = jfloats(json_object_get(c, "logits"));
		int16_t *t = jints(json_object_get(c, "target"), 2);
		float *g = malloc(sizeof(float) * json_array_size(json_object_get(c, "logits")));
		struct nnp_loss_value v;
		struct nnp_pdice d;
		assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, g, &v), 0);
		assert_rel(v.total, json_real_value(json_object_get(c, "total")), 1e-10);
		assert_rel(v.ce, json_real_value(json_object_get(c, "ce")), 1e-10);
		assert_rel(v.dice, json_real_value(json_object_get(c, "dice")), 1e-10);
		assert_int_equal(nnp_pdice_alloc(&d, s.c - 1), 0);
		assert_int_equal(nnp_pdice_add_labels(&d, &s, z, t, &o), 0);
		check_counts(&d, c);
		nnp_pdice_release(&d);
		free(z);
		free(t);
		free(g);
	}
}

static void test_fixture_regions(void **state)
{
	size_t i;
	json_t *c;
	(void)state;
	json_array_foreach(json_object_get(fx, "regions"), i, c) {
		struct nnp_loss_shape s = jshape(c);
		struct nnp_loss_opts o = { json_is_true(json_object_get(c, "batch_dice")),
					   json_is_true(json_object_get(c, "use_ignore")), 0 };
		float *z = jfloats(json_object_get(c, "logits"));
		uint8_t *t = jints(json_object_get(c, "target"), 1);
		struct nnp_loss_value v;
		struct nnp_pdice d;
		assert_int_equal(nnp_loss_dc_bce(&s, z, t, &o, 1.0, NULL, &v), 0);
		assert_rel(v.total, json_real_value(json_object_get(c, "total")), 1e-10);
		assert_rel(v.ce, json_real_value(json_object_get(c, "ce")), 1e-10);
		assert_rel(v.dice, json_real_value(json_object_get(c, "dice")), 1e-10);
		assert_int_equal(nnp_pdice_alloc(&d, s.c), 0);
		assert_int_equal(nnp_pdice_add_regions(&d, &s, z, t, &o), 0);
		check_counts(&d, c);
		nnp_pdice_release(&d);
		free(z);
		free(t);
	}
}

static void test_fixture_ds(void **state)
{
	const char *key;
	json_t *w, *c;
	size_t i;
	(void)state;
	json_object_foreach(json_object_get(fx, "ds_weights"), key, w) {
		double got[NNP_DS_MAX];
		int n = atoi(key);
		assert_int_equal(nnp_ds_weights(n, got), 0);
		for (int k = 0; k < n; k++)
			assert_true(got[k] == json_real_value(json_array_get(w, (size_t)k)));
	}
	json_array_foreach(json_object_get(fx, "ds_scales"), i, c) {
		json_t *st = json_object_get(c, "strides"), *sc = json_object_get(c, "scales");
		int ns = (int)json_array_size(st), dim = (int)json_array_size(json_array_get(st, 0));
		int64_t strides[64];
		double scales[64];
		for (int r = 0; r < ns; r++)
			for (int a = 0; a < dim; a++)
				strides[r * dim + a] = json_integer_value(json_array_get(json_array_get(st, (size_t)r), (size_t)a));
		assert_int_equal(nnp_ds_scales(strides, ns, dim, scales), ns - 1);
		assert_int_equal(json_array_size(sc), (size_t)(ns - 1));
		for (int r = 0; r < ns - 1; r++)
			for (int a = 0; a < dim; a++)
				assert_true(scales[r * dim + a] ==
					    json_real_value(json_array_get(json_array_get(sc, (size_t)r), (size_t)a)));
	}
}

static void test_fixture_downsample(void **state)
{
	size_t i;
	json_t *c;
	(void)state;
	json_array_foreach(json_object_get(fx, "downsample"), i, c) {
		json_t *sh = json_object_get(c, "shape"), *sc = json_object_get(c, "scale");
		json_t *osh = json_object_get(c, "out_shape"), *want = json_object_get(c, "out");
		int dim = (int)json_array_size(sh);
		int64_t n[3], on[3];
		double scale[3];
		for (int a = 0; a < dim; a++) {
			n[a] = json_integer_value(json_array_get(sh, (size_t)a));
			scale[a] = json_real_value(json_array_get(sc, (size_t)a));
		}
		int16_t *in = jints(json_object_get(c, "in"), 2), *out = malloc(2 * json_array_size(want));
		assert_int_equal(nnp_ds_downsample_seg(in, json_integer_value(json_object_get(c, "planes")), dim, n,
						       scale, out, on), 0);
		for (int a = 0; a < dim; a++)
			assert_int_equal(on[a], json_integer_value(json_array_get(osh, (size_t)a)));
		for (size_t k = 0; k < json_array_size(want); k++)
			assert_int_equal(out[k], json_integer_value(json_array_get(want, k)));
		free(in);
		free(out);
	}
}

/* ---- finite differences ---- */

struct fdcase {
	int regions, dim, batch_dice, ignore;
	int64_t c, n[3];
};

static double eval_loss(const struct fdcase *k, const struct nnp_loss_shape *s, const float *z, const void *t,
			const struct nnp_loss_opts *o, float *g)
{
	struct nnp_loss_value v;
	int rc = k->regions ? nnp_loss_dc_bce(s, z, t, o, 1.0, g, &v) : nnp_loss_dc_ce(s, z, t, o, 1.0, g, &v);
	assert_int_equal(rc, 0);
	return v.total;
}

/* Random targets: labels 0..C-1 with ~25 % ignore (label C) when asked;
 * regions 0/1 with a last ignore channel when asked. */
static void *make_target(const struct fdcase *k, int64_t b, int64_t nvox)
{
	if (!k->regions) {
		int16_t *t = malloc(sizeof(int16_t) * (size_t)(b * nvox));
		for (int64_t i = 0; i < b * nvox; i++)
			t[i] = k->ignore && urand() < 0.25 ? (int16_t)k->c : (int16_t)(urand() * (double)k->c);
		return t;
	}
	int64_t T = k->c + (k->ignore ? 1 : 0);
	uint8_t *t = malloc((size_t)(b * T * nvox));
	for (int64_t i = 0; i < b * T * nvox; i++)
		t[i] = urand() < (i / nvox % T == k->c ? 0.25 : 0.4);
	return t;
}

static void fd_check(const struct fdcase *k)
{
	struct nnp_loss_shape s = { 2, k->c, k->dim, { k->n[0], k->n[1], k->n[2] } };
	struct nnp_loss_opts o = { k->batch_dice, k->ignore, (int)k->c };
	int64_t nvox = nnp_loss_nvox(&s), n = s.b * s.c * nvox;
	float *z = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n);
	void *t = make_target(k, s.b, nvox);
	const float h = 1.0f / 1024;
	double gmax = 0, worst = 0;
	fill_logits(z, n);
	eval_loss(k, &s, z, t, &o, g);
	for (int64_t i = 0; i < n; i++)
		gmax = fmax(gmax, fabs(g[i]));
	assert_true(gmax > 0);
	for (int64_t i = 0; i < n; i++) {
		float z0 = z[i];
		z[i] = z0 + h;
		double lp = eval_loss(k, &s, z, t, &o, NULL);
		z[i] = z0 - h;
		double lm = eval_loss(k, &s, z, t, &o, NULL);
		z[i] = z0;
		double fd = (lp - lm) / (2.0 * (double)h);
		double err = fabs(fd - g[i]) / fmax(fabs(g[i]), 1e-2 * gmax);
		worst = fmax(worst, err);
	}
	if (!(worst < 1e-4))
		fail_msg("regions %d dim %d C %lld batch_dice %d ignore %d: relative error %.3g", k->regions, k->dim,
			 (long long)k->c, k->batch_dice, k->ignore, worst);
	free(z);
	free(g);
	free(t);
}

static void test_fd_labels(void **state)
{
	(void)state;
	for (int dim = 2; dim <= 3; dim++)
		for (int64_t c = 2; c <= 3; c++)
			for (int ig = 0; ig <= 1; ig++)
				for (int bd = 0; bd <= 1; bd++) {
					struct fdcase k = { 0, dim, bd, ig, c, { 4, 5, 3 } };
					if (dim == 2)
						k.n[0] = 5, k.n[1] = 6;
					fd_check(&k);
				}
}

static void test_fd_regions(void **state)
{
	(void)state;
	for (int dim = 2; dim <= 3; dim++)
		for (int64_t c = 1; c <= 3; c += 2)
			for (int ig = 0; ig <= 1; ig++)
				for (int bd = 0; bd <= 1; bd++) {
					struct fdcase k = { 1, dim, bd, ig, c, { 3, 4, 5 } };
					if (dim == 2)
						k.n[0] = 6, k.n[1] = 5;
					fd_check(&k);
				}
}

/* ---- deep supervision sum ---- */

static void test_ds_sum(void **state)
{
	enum { NOUT = 4 };
	struct nnp_loss_shape s[NOUT];
	float *z[NOUT], *g[NOUT], *gi[NOUT];
	int16_t *t[NOUT];
	double w[NOUT], total, want = 0;
	int64_t n0[3] = { 8, 12, 10 };
	struct nnp_loss_opts o = { 1, 1, 3 };
	struct fdcase k = { 0, 3, 1, 1, 3, { 0 } };
	(void)state;
	assert_int_equal(nnp_ds_weights(NOUT, w), 0);
	int16_t *full = make_target(&k, 2, n0[0] * n0[1] * n0[2]);
	for (int i = 0; i < NOUT; i++) {
		double sc[3] = { 1.0 / (1 << i), 1.0 / (1 << i), 1.0 / (1 << i) };
		s[i] = (struct nnp_loss_shape){ 2, 3, 3, { 0 } };
		assert_int_equal(nnp_ds_shape(3, n0, sc, s[i].n), 0);
		int64_t nv = nnp_loss_nvox(&s[i]), ne = 2 * 3 * nv;
		t[i] = malloc(sizeof(int16_t) * (size_t)(2 * nv));
		assert_int_equal(nnp_ds_downsample_seg(full, 2, 3, n0, sc, t[i], NULL), 0);
		z[i] = malloc(sizeof(float) * (size_t)ne);
		g[i] = malloc(sizeof(float) * (size_t)ne);
		gi[i] = malloc(sizeof(float) * (size_t)ne);
		fill_logits(z[i], ne);
		g[i][0] = 12345.f;   /* must be overwritten (zeros for the weight-0 output) */
	}
	assert_int_equal(nnp_loss_ds(NOUT, s, (const float *const *)z, (const int16_t *const *)t, NULL, &o, w, g,
				     &total), 0);
	for (int i = 0; i < NOUT; i++) {
		struct nnp_loss_value v;
		int64_t ne = 2 * 3 * nnp_loss_nvox(&s[i]);
		assert_int_equal(nnp_loss_dc_ce(&s[i], z[i], t[i], &o, 1.0, gi[i], &v), 0);
		if (w[i] != 0)
			want += w[i] * v.total;
		for (int64_t e = 0; e < ne; e++) {
			double ref = w[i] * gi[i][e];
			assert_true(fabs(g[i][e] - ref) <= 1e-6 * fabs(ref) + 1e-12);
		}
	}
	assert_true(w[NOUT - 1] == 0 && g[NOUT - 1][0] == 0.0f);
	assert_true(fabs(total - want) <= 1e-14 * fabs(want));
	for (int i = 0; i < NOUT; i++) {
		free(z[i]);
		free(g[i]);
		free(gi[i]);
		free(t[i]);
	}
	free(full);
}

/* ---- hand-checkable cases ---- */

static void test_hand_values(void **state)
{
	enum { B = 2, C = 3, NV = 5 * 6 };
	struct nnp_loss_shape s = { B, C, 2, { 5, 6, 0 } };
	struct nnp_loss_opts o = { 0, 0, 0 };
	float z[B * C * NV];
	int16_t t[B * NV];
	struct nnp_loss_value v;
	double w[8];
	(void)state;
	/* every class present in every sample; perfect, confident prediction */
	for (int b = 0; b < B; b++)
		for (int i = 0; i < NV; i++) {
			t[b * NV + i] = (int16_t)(i % C);
			for (int c = 0; c < C; c++)
				z[(b * C + c) * NV + i] = c == t[b * NV + i] ? 30.f : -30.f;
		}
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, NULL, &v), 0);
	assert_true(fabs(v.dice + 1) < 1e-6 && v.ce >= 0 && v.ce < 1e-20);
	o.batch_dice = 1;
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, NULL, &v), 0);
	assert_true(fabs(v.dice + 1) < 1e-6);
	/* uniform logits: CE = log(C); Dice per class (2 Sg/C + e) / (Sg + N/C + e) */
	memset(z, 0, sizeof z);
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, NULL, &v), 0);
	assert_true(fabs(v.ce - log(3.0)) < 1e-14);
	double sg = 2.0 * NV / 3, want = (2 * sg / 3 + 1e-5) / (sg + 2.0 * NV / 3 + 1e-5);
	assert_true(fabs(v.dice + want) < 1e-13);
	/* DS weights: 5 outputs (6 stages), 4 outputs (5 stages) */
	assert_int_equal(nnp_ds_weights(5, w), 0);
	assert_true(fabs(w[0] - 0.5333) < 1e-4 && fabs(w[1] - 0.2667) < 1e-4 && fabs(w[2] - 0.1333) < 1e-4 &&
		    fabs(w[3] - 0.0667) < 1e-4 && w[4] == 0);
	assert_true(fabs(w[0] - 8.0 / 15) < 1e-15);
	assert_int_equal(nnp_ds_weights(4, w), 0);
	assert_true(fabs(w[0] - 4.0 / 7) < 1e-15 && fabs(w[1] - 2.0 / 7) < 1e-15 && fabs(w[2] - 1.0 / 7) < 1e-15 &&
		    w[3] == 0);
	assert_int_equal(nnp_ds_weights(1, w), NNP_EDATA);
	/* nnU-Net's 3d_fullres strides (6 stages) give 5 scales */
	int64_t st[6][3] = { { 1, 1, 1 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 }, { 1, 2, 2 } };
	double sc[5][3];
	assert_int_equal(nnp_ds_scales(&st[0][0], 6, 3, &sc[0][0]), 5);
	assert_true(sc[0][0] == 1 && sc[1][2] == 0.5 && sc[4][0] == 0.0625 && sc[4][2] == 0.0625);
}

static void test_all_ignored(void **state)
{
	enum { NV = 12 };
	struct nnp_loss_shape s = { 1, 3, 2, { 3, 4, 0 } };
	struct nnp_loss_opts o = { 1, 1, 7 };
	float z[3 * NV], g[3 * NV];
	int16_t t[NV];
	struct nnp_loss_value v;
	(void)state;
	fill_logits(z, 3 * NV);
	for (int i = 0; i < NV; i++)
		t[i] = 7;
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, g, &v), 0);
	assert_true(v.ce == 0 && v.dice == -1 && v.total == -1);
	for (int i = 0; i < 3 * NV; i++)
		assert_true(g[i] == 0.0f);
}

static void test_downsample_rules(void **state)
{
	int16_t in[25], out[25];
	int64_t n[2] = { 5, 5 }, on[2];
	(void)state;
	for (int i = 0; i < 25; i++)
		in[i] = (int16_t)i;
	/* round half even: 5 * 0.5 = 2.5 -> 2; src = floor((o + 0.5) * 2.5) = 1, 3 */
	assert_int_equal(nnp_ds_downsample_seg(in, 1, 2, n, (double[]){ 0.5, 0.5 }, out, on), 0);
	assert_int_equal(on[0], 2);
	assert_int_equal(on[1], 2);
	assert_int_equal(out[0], 1 * 5 + 1);
	assert_int_equal(out[1], 1 * 5 + 3);
	assert_int_equal(out[3], 3 * 5 + 3);
	/* 5 * 0.7 = 3.5 -> 4: src = floor((o + 0.5) * 1.25) = 0, 1, 3, 4 */
	assert_int_equal(nnp_ds_downsample_seg(in, 1, 2, n, (double[]){ 1.0, 0.7 }, out, on), 0);
	assert_int_equal(on[0], 5);
	assert_int_equal(on[1], 4);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[1], 1);
	assert_int_equal(out[2], 3);
	assert_int_equal(out[3], 4);
	assert_int_equal(out[4], 5);
	/* an extent that would vanish */
	assert_int_equal(nnp_ds_downsample_seg(in, 1, 2, n, (double[]){ 0.05, 1.0 }, out, on), NNP_EDATA);
}

static void test_regions_from_seg(void **state)
{
	int16_t seg[6] = { 0, 1, 2, 3, 2, 9 };
	int len[2] = { 3, 1 };
	int16_t labels[4] = { 1, 2, 3, 3 };
	struct nnp_regions r = { 2, len, labels };
	uint8_t t[18];
	static const uint8_t want[18] = { 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1 };
	(void)state;
	assert_int_equal(nnp_regions_from_seg(seg, 1, 6, &r, 1, 9, t), 0);
	assert_memory_equal(t, want, 18);
}

static void test_pdice_result(void **state)
{
	struct nnp_pdice d;
	double dice[3];
	(void)state;
	assert_int_equal(nnp_pdice_alloc(&d, 3), 0);
	d.tp[0] = 3, d.fp[0] = 1, d.fn[0] = 1;   /* 6 / 8 */
	d.tp[1] = 0, d.fp[1] = 2, d.fn[1] = 0;   /* 0 */
	double m = nnp_pdice_result(&d, dice);   /* class 2 never occurred: NaN */
	assert_true(dice[0] == 0.75 && dice[1] == 0 && isnan(dice[2]) && m == 0.375);
	nnp_pdice_clear(&d);
	assert_true(isnan(nnp_pdice_result(&d, dice)));
	nnp_pdice_release(&d);
	nnp_pdice_release(&d);
}

/* ---- thread-count independence ---- */

struct run_out {
	struct nnp_loss_value v;
	float *g;
	int64_t counts[3 * 4];
};

static void run_all(int threads, int regions, const struct nnp_loss_shape *s, const float *z, const void *t,
		    const struct nnp_loss_opts *o, struct run_out *r)
{
	struct nnp_pdice d;
	int64_t n = s->b * s->c * nnp_loss_nvox(s);
	omp_set_num_threads(threads);
	r->g = malloc(sizeof(float) * (size_t)n);
	if (regions) {
		assert_int_equal(nnp_loss_dc_bce(s, z, t, o, 0.37, r->g, &r->v), 0);
		assert_int_equal(nnp_pdice_alloc(&d, s->c), 0);
		assert_int_equal(nnp_pdice_add_regions(&d, s, z, t, o), 0);
	} else {
		assert_int_equal(nnp_loss_dc_ce(s, z, t, o, 0.37, r->g, &r->v), 0);
		assert_int_equal(nnp_pdice_alloc(&d, s->c - 1), 0);
		assert_int_equal(nnp_pdice_add_labels(&d, s, z, t, o), 0);
	}
	memset(r->counts, 0, sizeof r->counts);
	memcpy(r->counts, d.tp, sizeof(int64_t) * (size_t)(3 * d.n));
	nnp_pdice_release(&d);
}

static void test_threads(void **state)
{
	int maxt = omp_get_max_threads();
	(void)state;
	for (int regions = 0; regions <= 1; regions++)
		for (int bd = 0; bd <= 1; bd++) {
			struct fdcase k = { regions, 3, bd, 1, 4, { 17, 19, 23 } };
			struct nnp_loss_shape s = { 2, 4, 3, { 17, 19, 23 } };
			struct nnp_loss_opts o = { bd, 1, 4 };
			int64_t n = s.b * s.c * nnp_loss_nvox(&s);
			float *z = malloc(sizeof(float) * (size_t)n);
			void *t = make_target(&k, s.b, nnp_loss_nvox(&s));
			struct run_out a, b;
			fill_logits(z, n);
			run_all(1, regions, &s, z, t, &o, &a);
			run_all(2, regions, &s, z, t, &o, &b);
			assert_memory_equal(&a.v, &b.v, sizeof a.v);
			assert_memory_equal(a.g, b.g, sizeof(float) * (size_t)n);
			assert_memory_equal(a.counts, b.counts, sizeof a.counts);
			free(a.g);
			free(b.g);
			free(z);
			free(t);
		}
	omp_set_num_threads(maxt);
}

/* The gradient may replace the logits (grad == logits): same bits. */
static void test_inplace(void **state)
{
	(void)state;
	for (int regions = 0; regions <= 1; regions++) {
		struct fdcase k = { regions, 3, 0, 1, 3, { 9, 10, 11 } };
		struct nnp_loss_shape s = { 2, 3, 3, { 9, 10, 11 } };
		struct nnp_loss_opts o = { 0, 1, 3 };
		int64_t n = s.b * s.c * nnp_loss_nvox(&s);
		float *z = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n);
		void *t = make_target(&k, s.b, nnp_loss_nvox(&s));
		struct nnp_loss_value v1, v2;
		fill_logits(z, n);
		if (regions) {
			assert_int_equal(nnp_loss_dc_bce(&s, z, t, &o, 0.5, g, &v1), 0);
			assert_int_equal(nnp_loss_dc_bce(&s, z, t, &o, 0.5, z, &v2), 0);
		} else {
			assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 0.5, g, &v1), 0);
			assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 0.5, z, &v2), 0);
		}
		assert_memory_equal(&v1, &v2, sizeof v1);
		assert_memory_equal(g, z, sizeof(float) * (size_t)n);
		free(z);
		free(g);
		free(t);
	}
}

/* ---- errors ---- */

static void test_errors(void **state)
{
	struct nnp_loss_shape s = { 1, 3, 2, { 2, 2, 0 } };
	struct nnp_loss_opts o = { 0, 0, 0 };
	float z[12] = { 0 };
	int16_t t[4] = { 0, 1, 2, -1 };
	uint8_t r[12] = { 0, 1, 0, 1, 0, 1, 0, 1, 0, 2, 0, 0 };
	struct nnp_pdice d;
	(void)state;
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, NULL, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "target value -1"));
	t[3] = 3;
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, NULL, NULL), NNP_EDATA);
	o.has_ignore = 1, o.ignore_label = 3;
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, NULL, NULL), 0);
	o.ignore_label = 2;
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, NULL, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "ignore label 2 is also a class"));
	o.has_ignore = 0;
	assert_int_equal(nnp_loss_dc_bce(&s, z, r, &o, 1.0, NULL, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "region target value 2"));
	s.dim = 4;
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, NULL, NULL), NNP_EDATA);
	s.dim = 2, s.c = 1;
	assert_int_equal(nnp_loss_dc_ce(&s, z, t, &o, 1.0, NULL, NULL), NNP_EDATA);
	s.c = 3;
	assert_int_equal(nnp_pdice_alloc(&d, 1), 0);
	assert_int_equal(nnp_pdice_add_labels(&d, &s, z, t, &o), NNP_EDATA);
	nnp_pdice_release(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_labels),
		cmocka_unit_test(test_fixture_regions),
		cmocka_unit_test(test_fixture_ds),
		cmocka_unit_test(test_fixture_downsample),
		cmocka_unit_test(test_fd_labels),
		cmocka_unit_test(test_fd_regions),
		cmocka_unit_test(test_ds_sum),
		cmocka_unit_test(test_hand_values),
		cmocka_unit_test(test_all_ignored),
		cmocka_unit_test(test_downsample_rules),
		cmocka_unit_test(test_regions_from_seg),
		cmocka_unit_test(test_pdice_result),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_inplace),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
