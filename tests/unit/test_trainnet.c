/* test_trainnet.c — the training network's forward against the inference
 * engine, and its backward against central finite differences.
 *
 * The loss is a fixed random projection of every head, L = sum_h <r_h, y_h>,
 * so dL/dy_h = r_h.  For every parameter tensor, the analytic directional
 * derivative <dL/dw, d> along a random direction d must match
 * (L(w + eps d) - L(w - eps d)) / 2 eps computed with the float32 network
 * (forward sums in double).  Networks cover what nnU-Net's planner emits:
 * kernels 1 and 3 per axis, strides 1 and 2 per axis (anisotropic first
 * stages), 2D and 3D, PlainConvUNet (decoder concat, transposed convs) and
 * ResidualEncoderUNet (strided average pooling, projection skips, residual
 * adds), deep supervision heads, batch 2.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../common/augment.h"
#include "../../common/engine.h"
#include "../../common/err.h"
#include "../../common/net.h"
#include "../../common/trainnet.h"
#include "test_archs.h"

struct fixture {
	struct nnp_net_graph g;
	struct nnp_tnet *t;
	int n;
	int64_t sp[3];
	size_t nin;
	float *in;
	int nh;
	size_t hn[NNP_NET_MAX_STAGES];
	float *r[NNP_NET_MAX_STAGES], *y[NNP_NET_MAX_STAGES];
};

static void build(struct fixture *f, const char *arch, int cin, int k, int ds, int n, const int64_t *sp,
		  double slope)
{
	json_error_t e;
	json_t *a = json_loads(arch, 0, &e);
	struct nnp_net_arch na;
	struct nnp_aug_rng r;

	memset(f, 0, sizeof *f);
	assert_non_null(a);
	assert_int_equal(nnp_net_arch_parse(a, cin, k, &na), NNP_OK);
	json_decref(a);
	na.deep_supervision = ds;
	if (slope > 0)
		na.slope = slope;
	assert_int_equal(nnp_net_graph_build(&na, &f->g), NNP_OK);
	assert_int_equal(nnp_tnet_create(&f->g, NULL, 7, &f->t), NNP_OK);
	nnp_aug_rng_seed(&r, 11);
	/* non-trivial biases and norm affines so that every gradient is exercised */
	for (int i = 0; i < nnp_tnet_nparams(f->t); i++) {
		struct nnp_tparam *p = nnp_tnet_param(f->t, i);
		int is_norm = strstr(p->name, ".norm.") != NULL;
		if (strstr(p->name, ".bias") || is_norm)
			for (int64_t j = 0; j < p->n; j++)
				p->w[j] = (float)((is_norm && strstr(p->name, ".weight") ? 1.0 : 0.0) +
						  0.2 * nnp_aug_normal(&r));
	}
	f->n = n;
	memcpy(f->sp, sp, sizeof f->sp);
	f->nin = (size_t)n * (size_t)cin;
	for (int d = 0; d < na.ndim; d++)
		f->nin *= (size_t)sp[d];
	f->in = malloc(f->nin * sizeof(float));
	for (size_t i = 0; i < f->nin; i++)
		f->in[i] = (float)nnp_aug_normal(&r);
	assert_int_equal(nnp_tnet_forward(f->t, n, sp, f->in), NNP_OK);
	f->nh = nnp_tnet_nheads(f->t);
	for (int h = 0; h < f->nh; h++) {
		int64_t shape[5];
		int nd = nnp_tnet_head_shape(f->t, h, shape);
		f->hn[h] = 1;
		for (int d = 0; d < nd; d++)
			f->hn[h] *= (size_t)shape[d];
		f->r[h] = malloc(f->hn[h] * sizeof(float));
		f->y[h] = malloc(f->hn[h] * sizeof(float));
		for (size_t i = 0; i < f->hn[h]; i++)
			f->r[h][i] = (float)(nnp_aug_normal(&r) / sqrt((double)f->hn[h]));
	}
}

static void release(struct fixture *f)
{
	for (int h = 0; h < f->nh; h++) {
		free(f->r[h]);
		free(f->y[h]);
	}
	free(f->in);
	nnp_tnet_free(f->t);
	nnp_net_graph_release(&f->g);
}

static double loss(struct fixture *f)
{
	double l = 0;
	assert_int_equal(nnp_tnet_forward(f->t, f->n, f->sp, f->in), NNP_OK);
	for (int h = 0; h < f->nh; h++) {
		assert_int_equal(nnp_tnet_output(f->t, h, f->y[h]), NNP_OK);
		for (size_t i = 0; i < f->hn[h]; i++)
			l += (double)f->r[h][i] * f->y[h][i];
	}
	return l;
}

/* Worst error of the directional derivatives over all parameters, relative
 * to max(|analytic|, |grad|, 1e-2 max |grad|): for a standard normal
 * direction |<g, d>| is of the order of |g|, and tensors whose gradient is
 * zero (a conv bias before an InstanceNorm) are compared with the scale of
 * the others. */
static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double grad_check(struct fixture *f, double eps_scale, int verbose, double *median)
{
	const float *dout[NNP_NET_MAX_STAGES];
	struct nnp_aug_rng r;
	double worst = 0, gmax = 0;
	int np = nnp_tnet_nparams(f->t);
	double *gn = calloc((size_t)np, sizeof *gn), *errs = calloc((size_t)np, sizeof *errs);

	loss(f);
	for (int h = 0; h < f->nh; h++)
		dout[h] = f->r[h];
	assert_int_equal(nnp_tnet_backward(f->t, dout), NNP_OK);
	for (int i = 0; i < np; i++) {
		struct nnp_tparam *p = nnp_tnet_param(f->t, i);
		for (int64_t j = 0; j < p->n; j++)
			gn[i] += (double)p->g[j] * p->g[j];
		gn[i] = sqrt(gn[i]);
		gmax = gn[i] > gmax ? gn[i] : gmax;
	}
	nnp_aug_rng_seed(&r, 99);
	for (int i = 0; i < np; i++) {
		struct nnp_tparam *p = nnp_tnet_param(f->t, i);
		float *w0 = malloc((size_t)p->n * sizeof(float)), *dir = malloc((size_t)p->n * sizeof(float));
		float *g0 = malloc((size_t)p->n * sizeof(float));
		double ana = 0, wn = 0, num, err, eps, scale;
		memcpy(g0, p->g, (size_t)p->n * sizeof(float));
		for (int64_t j = 0; j < p->n; j++) {
			dir[j] = (float)nnp_aug_normal(&r);
			ana += (double)g0[j] * dir[j];
			wn += (double)p->w[j] * p->w[j];
		}
		memcpy(w0, p->w, (size_t)p->n * sizeof(float));
		wn = sqrt(wn / (double)p->n);
		/* vectors (biases, norm affines): larger steps, their curvature is small */
		eps = eps_scale * (p->ndim == 1 ? (wn > 1 ? wn : 1) : (wn > 0.05 ? wn : 0.05));
		for (int64_t j = 0; j < p->n; j++)
			p->w[j] = (float)(w0[j] + eps * dir[j]);
		num = loss(f);
		for (int64_t j = 0; j < p->n; j++)
			p->w[j] = (float)(w0[j] - eps * dir[j]);
		num = (num - loss(f)) / (2 * eps);
		memcpy(p->w, w0, (size_t)p->n * sizeof(float));
		scale = fabs(ana);
		scale = gn[i] > scale ? gn[i] : scale;
		scale = 1e-2 * gmax > scale ? 1e-2 * gmax : scale;
		err = fabs(num - ana) / scale;
		if (verbose)
			fprintf(stderr, "  %-48s analytic %+.6e numeric %+.6e err %.2e\n", p->name, ana, num, err);
		if (err > worst)
			worst = err;
		errs[i] = err;
		free(w0);
		free(dir);
		free(g0);
	}
	qsort(errs, (size_t)np, sizeof *errs, cmp_double);
	*median = errs[np / 2];
	free(errs);
	free(gn);
	return worst;
}

/* slope 1 makes LeakyReLU linear: no kinks, so central differences are
 * accurate to float32 noise and the bound is tight; with nnU-Net's 0.01
 * kinks crossed inside [-eps, eps] cost accuracy (the error shrinks in
 * proportion to eps, down to the float32 noise floor), so the bounds are
 * looser: median and worst; a backward that ignores the slope gives errors
 * above 1 on every network. */
static void check_net(const char *arch, int cin, int k, int ds, int n, const int64_t *sp, const char *what)
{
	const double slope[2] = { 1.0, 0.01 }, eps[2] = { 1e-2, 1e-3 }, tol[2] = { 2e-3, 5e-1 }, mtol[2] = { 2e-3, 1e-2 };
	for (int i = 0; i < 2; i++) {
		struct fixture f;
		double worst, median;
		build(&f, arch, cin, k, ds, n, sp, slope[i]);
		worst = grad_check(&f, eps[i], getenv("NNP_TEST_VERBOSE") != NULL, &median);
		fprintf(stderr, "# %s, LeakyReLU slope %g: %d parameter tensors, error median %.2e worst %.2e (bounds %g, %g)\n",
			what, slope[i], nnp_tnet_nparams(f.t), median, worst, mtol[i], tol[i]);
		assert_true(worst < tol[i]);
		assert_true(median < mtol[i]);
		release(&f);
	}
}

static void test_grad_plain3d(void **state)
{
	int64_t sp[3] = { 4, 8, 12 };
	(void)state;
	check_net(plain3d, 2, 3, 1, 2, sp, "PlainConvUNet 3D, deep supervision, batch 2");
}

static void test_grad_plain2d(void **state)
{
	int64_t sp[3] = { 16, 12, 0 };
	(void)state;
	check_net(plain2d, 1, 4, 1, 2, sp, "PlainConvUNet 2D, deep supervision, batch 2");
}

static void test_grad_resenc3d(void **state)
{
	int64_t sp[3] = { 4, 8, 8 };
	(void)state;
	check_net(resenc3d, 1, 2, 0, 1, sp, "ResidualEncoderUNet 3D");
}

/* The training forward equals the inference engine on the same weights. */
static void test_forward_matches_engine(void **state)
{
	struct fixture f;
	struct nnp_engine *e;
	struct nnp_engine_opts eo = { -1, NNP_PREC_FP32 };
	struct nnp_param_src src;
	int64_t sp[3] = { 4, 8, 12 };
	float *out;
	double num = 0, den = 0;
	(void)state;
	build(&f, plain3d, 2, 3, 0, 2, sp, 0);
	src = nnp_tnet_param_src(f.t);
	assert_int_equal(nnp_engine_create(&f.g, &src, &eo, &e), NNP_OK);
	out = malloc(f.hn[0] * sizeof(float));
	assert_int_equal(nnp_engine_forward(e, 2, sp, f.in, out), NNP_OK);
	assert_int_equal(nnp_tnet_output(f.t, 0, f.y[0]), NNP_OK);
	for (size_t i = 0; i < f.hn[0]; i++) {
		num += ((double)out[i] - f.y[0][i]) * ((double)out[i] - f.y[0][i]);
		den += (double)out[i] * out[i];
	}
	fprintf(stderr, "# training forward vs inference engine: rel-L2 %.2e\n", sqrt(num / den));
	assert_true(sqrt(num / den) < 1e-5);
	nnp_engine_free(e);
	free(out);
	release(&f);
}

/* Heads without a gradient contribute nothing; a wrong shape is refused. */
static void test_partial_and_errors(void **state)
{
	struct fixture f;
	const float *dout[NNP_NET_MAX_STAGES] = { 0 };
	int64_t sp[3] = { 4, 8, 12 }, bad[3] = { 4, 7, 12 };
	(void)state;
	build(&f, plain3d, 2, 3, 1, 1, sp, 0);
	assert_int_equal(nnp_tnet_backward(f.t, dout), NNP_OK);
	for (int i = 0; i < nnp_tnet_nparams(f.t); i++) {
		struct nnp_tparam *p = nnp_tnet_param(f.t, i);
		for (int64_t j = 0; j < p->n; j++)
			assert_true(p->g[j] == 0.0f);
	}
	assert_int_equal(nnp_tnet_forward(f.t, 1, bad, f.in), NNP_EUSAGE);
	release(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_matches_engine),
		cmocka_unit_test(test_grad_plain3d),
		cmocka_unit_test(test_grad_plain2d),
		cmocka_unit_test(test_grad_resenc3d),
		cmocka_unit_test(test_partial_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
