/* test_optim.c — PolyLR, gradient clipping and SGD (Nesterov, weight decay)
 * against the numpy port of torch's float32 semantics
 * (tests/fixtures/train/loss_vectors.json, tests/tools/loss_reference.py),
 * hand-checkable steps, checkpoint state round trips, thread independence. */
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
#include "optim.h"

#define FIXTURE "tests/fixtures/train/loss_vectors.json"
#define MAXP 8

static json_t *fx;

static int setup(void **state)
{
	(void)state;
	fx = json_load_file(FIXTURE, 0, NULL);
	return fx ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	json_decref(fx);
	return 0;
}

static void jfill(json_t *a, float *v)
{
	for (size_t i = 0; i < json_array_size(a); i++)
		v[i] = (float)json_number_value(json_array_get(a, i));
}

/* Equal bits, or report the first difference. */
static void assert_floats(const float *got, json_t *want, const char *what, int step)
{
	for (size_t i = 0; i < json_array_size(want); i++) {
		float w = (float)json_number_value(json_array_get(want, i));
		if (got[i] != w)
			fail_msg("%s step %d [%zu]: got %.9g want %.9g", what, step, i, got[i], w);
	}
}

struct plist {
	int64_t np;
	struct nnp_param p[MAXP];
	float w[MAXP][64], g[MAXP][64];
};

static void plist_from(struct plist *l, json_t *c)
{
	json_t *sizes = json_object_get(c, "sizes");
	l->np = (int64_t)json_array_size(sizes);
	for (int64_t i = 0; i < l->np; i++) {
		l->p[i] = (struct nnp_param){ l->w[i], l->g[i], json_integer_value(json_array_get(sizes, (size_t)i)) };
		jfill(json_array_get(json_object_get(c, "w0"), (size_t)i), l->w[i]);
	}
}

static void set_grads(struct plist *l, json_t *c, size_t step)
{
	json_t *gs = json_array_get(json_object_get(c, "grads"), step);
	for (int64_t i = 0; i < l->np; i++)
		jfill(json_array_get(gs, (size_t)i), l->g[i]);
}

static void test_fixture_sgd(void **state)
{
	size_t k;
	json_t *c;
	(void)state;
	json_array_foreach(json_object_get(fx, "sgd"), k, c) {
		struct plist l;
		struct nnp_sgd o;
		json_t *lrs = json_object_get(c, "lrs");
		plist_from(&l, c);
		assert_int_equal(nnp_sgd_init(&o, l.p, l.np, json_real_value(json_object_get(c, "momentum")),
					      json_real_value(json_object_get(c, "weight_decay")),
					      json_is_true(json_object_get(c, "nesterov"))), 0);
		for (size_t s = 0; s < json_array_size(lrs); s++) {
			set_grads(&l, c, s);
			assert_int_equal(nnp_sgd_step(&o, l.p, l.np, json_real_value(json_array_get(lrs, s))), 0);
			for (int64_t i = 0; i < l.np; i++)
				assert_floats(l.w[i], json_array_get(json_array_get(json_object_get(c, "w_after"), s),
								     (size_t)i), "weights", (int)s);
		}
		assert_int_equal(o.steps, (int64_t)json_array_size(lrs));
		for (int64_t i = 0; i < l.np; i++)
			assert_floats(nnp_sgd_buffer(&o, i), json_array_get(json_object_get(c, "buffers"), (size_t)i),
				      "buffer", -1);
		nnp_sgd_release(&o);
		nnp_sgd_release(&o);
	}
}

/* Two steps, export, a fresh optimizer imports the state: both continue
 * identically. */
static void test_state_roundtrip(void **state)
{
	json_t *c = json_array_get(json_object_get(fx, "sgd"), 0);
	struct plist a, b;
	struct nnp_sgd oa, ob;
	float flat[128];
	uint8_t has[MAXP];
	(void)state;
	plist_from(&a, c);
	assert_int_equal(nnp_sgd_init(&oa, a.p, a.np, 0.99, 3e-5, 1), 0);
	for (int s = 0; s < 2; s++) {
		set_grads(&a, c, (size_t)s);
		assert_int_equal(nnp_sgd_step(&oa, a.p, a.np, 0.01), 0);
	}
	b = a;
	for (int64_t i = 0; i < b.np; i++)
		b.p[i].w = b.w[i], b.p[i].g = b.g[i];
	assert_int_equal(nnp_sgd_state_len(&oa), 67);
	nnp_sgd_export(&oa, flat, has);
	assert_int_equal(nnp_sgd_init(&ob, b.p, b.np, 0.99, 3e-5, 1), 0);
	assert_null(nnp_sgd_buffer(&ob, 0));
	assert_int_equal(nnp_sgd_import(&ob, flat, has, 66), NNP_EDATA);
	assert_int_equal(nnp_sgd_import(&ob, flat, has, 67), 0);
	for (int s = 2; s < 4; s++) {
		set_grads(&a, c, (size_t)s);
		set_grads(&b, c, (size_t)s);
		assert_int_equal(nnp_sgd_step(&oa, a.p, a.np, 0.005), 0);
		assert_int_equal(nnp_sgd_step(&ob, b.p, b.np, 0.005), 0);
	}
	for (int64_t i = 0; i < a.np; i++)
		assert_memory_equal(a.w[i], b.w[i], sizeof(float) * (size_t)a.p[i].n);
	nnp_sgd_release(&oa);
	nnp_sgd_release(&ob);
}

static void test_sgd_hand(void **state)
{
	float w[2] = { 1.0f, 2.0f }, g[2] = { 1.0f, 0.5f }, w2[1] = { 5.0f };
	struct nnp_param p[2] = { { w, g, 2 }, { w2, NULL, 1 } };
	struct nnp_sgd o;
	(void)state;
	assert_int_equal(nnp_sgd_init(&o, p, 2, 0.99, 0.0, 1), 0);
	/* first step: buf = g; d = g + 0.99 g; w -= 0.1 d */
	assert_int_equal(nnp_sgd_step(&o, p, 2, 0.1), 0);
	assert_true(fabsf(w[0] - 0.801f) < 1e-6f && fabsf(w[1] - (2.0f - 0.1f * 0.995f)) < 1e-6f);
	assert_true(w2[0] == 5.0f && nnp_sgd_buffer(&o, 1) == NULL);   /* no gradient: skipped */
	assert_true(nnp_sgd_buffer(&o, 0)[0] == 1.0f);
	/* second step: buf = 0.99 + 1 = 1.99; d = 1 + 0.99 * 1.99 = 2.9701 */
	assert_int_equal(nnp_sgd_step(&o, p, 2, 0.1), 0);
	assert_true(fabsf(nnp_sgd_buffer(&o, 0)[0] - 1.99f) < 1e-6f);
	assert_true(fabsf(w[0] - (0.801f - 0.29701f)) < 1e-6f);
	/* a different list is refused */
	p[1].n = 2;
	assert_int_equal(nnp_sgd_step(&o, p, 2, 0.1), NNP_EDATA);
	assert_int_equal(nnp_sgd_step(&o, p, 1, 0.1), NNP_EDATA);
	nnp_sgd_release(&o);
	/* weight decay without momentum: w -= lr (g + wd w) */
	w[0] = 1.0f, g[0] = 0.0f;
	assert_int_equal(nnp_sgd_init(&o, p, 1, 0.0, 0.5, 0), 0);
	assert_int_equal(nnp_sgd_step(&o, p, 1, 0.1), 0);
	assert_true(w[0] == 0.95f && nnp_sgd_buffer(&o, 0) == NULL);
	nnp_sgd_release(&o);
	assert_int_equal(nnp_sgd_init(&o, p, 1, 0.0, 0.0, 1), NNP_EDATA);   /* nesterov needs momentum */
	assert_int_equal(nnp_sgd_init(&o, p, 1, 1.5, 0.0, 0), NNP_EDATA);
}

static void test_fixture_clip(void **state)
{
	size_t k;
	json_t *c;
	(void)state;
	json_array_foreach(json_object_get(fx, "clip"), k, c) {
		json_t *gs = json_object_get(c, "grads"), *want = json_object_get(c, "clipped");
		struct plist l = { .np = (int64_t)json_array_size(gs) };
		double total;
		for (int64_t i = 0; i < l.np; i++) {
			l.p[i] = (struct nnp_param){ l.w[i], l.g[i], (int64_t)json_array_size(json_array_get(gs, (size_t)i)) };
			jfill(json_array_get(gs, (size_t)i), l.g[i]);
		}
		assert_int_equal(nnp_clip_grad_norm(l.p, l.np, json_real_value(json_object_get(c, "max_norm")), &total), 0);
		double wt = json_real_value(json_object_get(c, "total"));
		assert_true(fabs(total - wt) <= 1e-12 * wt);
		for (int64_t i = 0; i < l.np; i++)
			for (int64_t j = 0; j < l.p[i].n; j++) {
				double w = json_number_value(json_array_get(json_array_get(want, (size_t)i), (size_t)j));
				assert_true(fabs(l.g[i][j] - w) <= 1e-6 * fabs(w));
			}
	}
}

static void test_clip_hand(void **state)
{
	float g1[16], g2[9];
	struct nnp_param p[3] = { { g1, g1, 16 }, { NULL, NULL, 0 }, { g2, g2, 9 } };
	double total;
	(void)state;
	/* norm 6: untouched */
	for (int i = 0; i < 16; i++)
		g1[i] = 1.0f;
	for (int i = 0; i < 9; i++)
		g2[i] = (float)(sqrt(20.0) / 3);
	/* 16 * 1 + 9 * 20/9 = 36 -> 6 */
	assert_int_equal(nnp_clip_grad_norm(p, 3, 12.0, &total), 0);
	assert_true(fabs(total - 6.0) < 1e-6 && g1[0] == 1.0f);
	/* norm 24: scaled by 12 / (24 + 1e-6) */
	for (int i = 0; i < 16; i++)
		g1[i] = 4.0f;
	for (int i = 0; i < 9; i++)
		g2[i] = (float)(sqrt(320.0) / 3);
	assert_int_equal(nnp_clip_grad_norm(p, 3, 12.0, &total), 0);
	assert_true(fabs(total - 24.0) < 1e-5);
	assert_true(g1[0] == 4.0f * (float)(12.0 / (total + 1e-6)));
	assert_int_equal(nnp_clip_grad_norm(p, 3, 12.0, &total), 0);
	assert_true(fabs(total - 12.0) < 1e-5);
	/* a norm of exactly max_norm is still scaled (coef 12 / (12 + 1e-6) < 1) */
	for (int i = 0; i < 16; i++)
		g1[i] = 3.0f;
	for (int i = 0; i < 9; i++)
		g2[i] = 0.0f;
	assert_int_equal(nnp_clip_grad_norm(p, 3, 12.0, &total), 0);
	assert_true(total == 12.0 && g1[0] == 3.0f * (float)(12.0 / (12.0 + 1e-6)) && g1[0] < 3.0f);
	/* non-finite: reported, untouched */
	g1[3] = INFINITY;
	assert_int_equal(nnp_clip_grad_norm(p, 3, 12.0, &total), 0);
	assert_true(isinf(total) && g1[0] < 3.0f && g1[3] == INFINITY);
	p[0].n = -1;
	assert_int_equal(nnp_clip_grad_norm(p, 3, 12.0, &total), NNP_EDATA);
}

static void test_polylr(void **state)
{
	size_t k;
	json_t *c;
	(void)state;
	assert_true(nnp_polylr(0.01, 0, 1000, 0.9) == 0.01);
	assert_true(fabs(nnp_polylr(0.01, 500, 1000, 0.9) - 0.01 * pow(0.5, 0.9)) < 1e-18);
	assert_true(fabs(nnp_polylr(0.01, 500, 1000, 0.9) - 0.0053589) < 1e-7);
	assert_true(fabs(nnp_polylr(0.01, 999, 1000, 0.9) - 1.99526e-5) < 1e-10);
	json_array_foreach(json_object_get(fx, "polylr"), k, c) {
		double lr = nnp_polylr(NNP_INITIAL_LR, json_integer_value(json_object_get(c, "epoch")), 1000,
				       NNP_POLY_EXPONENT);
		assert_true(lr == json_real_value(json_object_get(c, "lr")));
	}
}

/* Norm and step on 3 M values with 1 and 2 threads: identical bits. */
static void test_threads(void **state)
{
	enum { N = 3000000 };
	float *w[2], *g[2];
	double tot[2];
	int maxt = omp_get_max_threads();
	(void)state;
	for (int r = 0; r < 2; r++) {
		struct nnp_param p;
		struct nnp_sgd o;
		w[r] = malloc(sizeof(float) * N);
		g[r] = malloc(sizeof(float) * N);
		for (int i = 0; i < N; i++) {
			w[r][i] = (float)sin(i * 0.001);
			g[r][i] = (float)cos(i * 0.0037) * 0.01f;
		}
		p = (struct nnp_param){ w[r], g[r], N };
		omp_set_num_threads(r + 1);
		assert_int_equal(nnp_clip_grad_norm(&p, 1, 12.0, &tot[r]), 0);
		assert_int_equal(nnp_sgd_init(&o, &p, 1, 0.99, 3e-5, 1), 0);
		assert_int_equal(nnp_sgd_step(&o, &p, 1, 0.01), 0);
		assert_int_equal(nnp_sgd_step(&o, &p, 1, 0.01), 0);
		nnp_sgd_release(&o);
	}
	omp_set_num_threads(maxt);
	assert_true(memcmp(&tot[0], &tot[1], sizeof(double)) == 0 && tot[0] > 12.0);
	assert_memory_equal(g[0], g[1], sizeof(float) * N);
	assert_memory_equal(w[0], w[1], sizeof(float) * N);
	for (int r = 0; r < 2; r++) {
		free(w[r]);
		free(g[r]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_sgd),
		cmocka_unit_test(test_state_roundtrip),
		cmocka_unit_test(test_sgd_hand),
		cmocka_unit_test(test_fixture_clip),
		cmocka_unit_test(test_clip_hand),
		cmocka_unit_test(test_polylr),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
