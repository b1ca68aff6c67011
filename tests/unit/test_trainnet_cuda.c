/* test_trainnet_cuda.c — the CUDA training network (trainnet_cuda.h)
 * against the CPU one (trainnet.h) on the networks of test_trainnet.c.
 *
 * Without a usable CUDA device (or in a GPU=0 build) every comparison test
 * skips with the reason; test_refusals always runs (no device / a device
 * that does not exist is NNP_EUSAGE).  With device 0, for PlainConvUNet 3D
 * and 2D with deep supervision and ResidualEncoderUNet 3D, batch 2:
 *   - the same parameters (uploaded in reverse order: matched by name), the
 *     same input: every head within rel-L2 TOL_FP32 of the CPU;
 *   - the same head gradients (a fixed random projection per head): every
 *     parameter gradient within TOL_FP32, relative to max(its own norm,
 *     1e-3 x the largest gradient norm) (a conv bias before an InstanceNorm
 *     has a gradient that is zero up to rounding);
 *   - with LeakyReLU slope 1 (no kinks) the worst tensor must meet
 *     TOL_FP32; with nnU-Net's 0.01 the median must, the worst TOL_KINK
 *     (a pre-activation within rounding of 0 may take the other side of the
 *     kink on the two devices);
 *   - a second shape on the same nets (plans rebuilt, two norm chunks at
 *     full resolution), heads without a gradient (NULL), a rerun that is
 *     bit-identical (deterministic algorithms and reductions), TF32
 *     ("bf16") within TOL_TF32, and the API's refusals.
 * The bounds were chosen without a GPU measurement; every value is printed.
 *
 * -DNNP_TEST_CUDA_ON_CPU: a self-check of this harness on a machine without
 * a GPU — a second CPU training network stands in for the CUDA one (upload
 * and download copy by name), so every comparison must give 0.
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
#include "../../common/err.h"
#include "../../common/gpu.h"
#include "../../common/net.h"
#include "../../common/trainnet.h"
#include "../../common/trainnet_cuda.h"

#define TOL_FP32 1e-4
#define TOL_KINK 1e-2
#define TOL_TF32 1e-2

#include "test_archs.h"

/* ---- the net under test: CUDA, or a CPU stand-in for the harness check ---- */

#ifdef NNP_TEST_CUDA_ON_CPU
typedef struct nnp_tnet gnet;

static int g_create(const struct nnp_net_graph *g, gnet **out)
{
	return nnp_tnet_create(g, NULL, 1, out);
}

static struct nnp_tparam *g_find(gnet *t, const char *name)
{
	for (int i = 0; i < nnp_tnet_nparams(t); i++)
		if (!strcmp(nnp_tnet_param(t, i)->name, name))
			return nnp_tnet_param(t, i);
	return NULL;
}

static int g_upload(gnet *t, const struct nnp_tparam *p, int np)
{
	for (int j = 0; j < np; j++) {
		struct nnp_tparam *q = g_find(t, p[j].name);
		if (!q || q->n != p[j].n)
			return nnp_err(NNP_EDATA, "parameter '%s': not in the network", p[j].name);
		memcpy(q->w, p[j].w, (size_t)q->n * sizeof(float));
	}
	return np == nnp_tnet_nparams(t) ? NNP_OK : nnp_err(NNP_EDATA, "parameters missing");
}

static int g_download(gnet *t, struct nnp_tparam *p, int np)
{
	for (int j = 0; j < np; j++) {
		struct nnp_tparam *q = g_find(t, p[j].name);
		if (!q)
			return nnp_err(NNP_EDATA, "parameter '%s': not in the network", p[j].name);
		memcpy(p[j].g, q->g, (size_t)q->n * sizeof(float));
	}
	return NNP_OK;
}

#define g_free nnp_tnet_free
#define g_set_precision(t, p) ((void)(t), (void)(p), NNP_OK)
#define g_nheads nnp_tnet_nheads
#define g_forward nnp_tnet_forward
#define g_output nnp_tnet_output
#define g_backward nnp_tnet_backward
#else
typedef struct nnp_cuda_tnet gnet;

static int g_create(const struct nnp_net_graph *g, gnet **out)
{
	return nnp_cuda_tnet_create(g, 0, out);
}

#define g_free nnp_cuda_tnet_free
#define g_set_precision nnp_cuda_tnet_set_precision
#define g_nheads nnp_cuda_tnet_nheads
#define g_upload nnp_cuda_tnet_upload_params
#define g_download nnp_cuda_tnet_download_grads
#define g_forward nnp_cuda_tnet_forward
#define g_output nnp_cuda_tnet_output
#define g_backward nnp_cuda_tnet_backward
#endif

/* 1 when the CUDA training network can run on device 0; else says why. */
static int have_gpu(void)
{
#ifdef NNP_TEST_CUDA_ON_CPU
	fprintf(stderr, "# NNP_TEST_CUDA_ON_CPU: a second CPU training network stands in for the GPU\n");
	return 1;
#else
	int n;
	if (nnp_cuda_tnet_available(0))
		return 1;
#ifdef NNP_HAVE_CUDA
	n = nnp_cuda_device_count();
	fprintf(stderr, "# skipped: %s\n", n < 0 ? nnp_err_msg() : n == 0 ? "no CUDA device" :
		"CUDA device 0 is older than compute capability 8.0 or cuDNN is not version 9");
#else
	(void)n;
	fprintf(stderr, "# skipped: %s\n", NNP_NO_CUDA_MSG);
#endif
	return 0;
#endif
}

#define NEED_GPU()                   \
	do {                         \
		if (!have_gpu())     \
			skip();      \
	} while (0)

static void ok(int rc)
{
	if (rc)
		fprintf(stderr, "# error: %s\n", nnp_err_msg());
	assert_int_equal(rc, NNP_OK);
}

/* ---- a CPU net and the net under test on the same parameters ---- */

struct pair {
	struct nnp_net_graph g;
	struct nnp_tnet *cpu;
	gnet *gpu;
	int np;
	struct nnp_tparam *hp;      /* host table for upload/download, reversed order, own g */
	struct nnp_aug_rng r;
};

static void pair_open(struct pair *pr, const char *arch, int cin, int k, int ds, double slope)
{
	json_error_t e;
	json_t *a = json_loads(arch, 0, &e);
	struct nnp_net_arch na;

	memset(pr, 0, sizeof *pr);
	assert_non_null(a);
	assert_int_equal(nnp_net_arch_parse(a, cin, k, &na), NNP_OK);
	json_decref(a);
	na.deep_supervision = ds;
	na.slope = slope;
	assert_int_equal(nnp_net_graph_build(&na, &pr->g), NNP_OK);
	ok(nnp_tnet_create(&pr->g, NULL, 7, &pr->cpu));
	ok(g_create(&pr->g, &pr->gpu));
	nnp_aug_rng_seed(&pr->r, 11);
	pr->np = nnp_tnet_nparams(pr->cpu);
	pr->hp = calloc((size_t)pr->np, sizeof *pr->hp);
	assert_non_null(pr->hp);
	for (int i = 0; i < pr->np; i++) {
		struct nnp_tparam *p = nnp_tnet_param(pr->cpu, i), *h = &pr->hp[pr->np - 1 - i];
		int is_norm = strstr(p->name, ".norm.") != NULL;
		/* non-trivial biases and norm affines, as test_trainnet.c */
		if (strstr(p->name, ".bias") || is_norm)
			for (int64_t j = 0; j < p->n; j++)
				p->w[j] = (float)((is_norm && strstr(p->name, ".weight") ? 1.0 : 0.0) +
						  0.2 * nnp_aug_normal(&pr->r));
		*h = *p;
		h->g = calloc((size_t)p->n, sizeof(float));
		assert_non_null(h->g);
	}
	ok(g_upload(pr->gpu, pr->hp, pr->np));
}

static void pair_close(struct pair *pr)
{
	for (int i = 0; i < pr->np; i++)
		free(pr->hp[i].g);
	free(pr->hp);
	g_free(pr->gpu);
	nnp_tnet_free(pr->cpu);
	nnp_net_graph_release(&pr->g);
}

static double rel_l2(const float *a, const float *ref, size_t n, double floor)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - ref[i];
		num += d * d;
		den += (double)ref[i] * ref[i];
	}
	den = sqrt(den);
	return sqrt(num) / (den > floor ? den : floor > 0 ? floor : 1);
}

static double l2(const float *a, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * a[i];
	return sqrt(s);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct result {
	double head_worst, grad_worst, grad_median;
	const char *worst_name;
};

/* Heads of the last forward on both nets: worst rel-L2 into res; dr[h]
 * gets head h's gradient (a random projection drawn from pr->r). */
static void compare_heads(struct pair *pr, float **dr, struct result *res)
{
	for (int h = 0; h < nnp_tnet_nheads(pr->cpu); h++) {
		int64_t shape[5];
		size_t hn = 1;
		int nd = nnp_tnet_head_shape(pr->cpu, h, shape);
		float *yc, *yg;
		double e;
		for (int d = 0; d < nd; d++)
			hn *= (size_t)shape[d];
		yc = malloc(hn * sizeof *yc);
		yg = malloc(hn * sizeof *yg);
		dr[h] = malloc(hn * sizeof *dr[h]);
		assert_true(yc && yg && dr[h]);
		ok(nnp_tnet_output(pr->cpu, h, yc));
		ok(g_output(pr->gpu, h, yg));
		e = rel_l2(yg, yc, hn, 0);
		res->head_worst = e > res->head_worst ? e : res->head_worst;
		for (size_t i = 0; i < hn; i++)
			dr[h][i] = (float)(nnp_aug_normal(&pr->r) / sqrt((double)hn));
		free(yc);
		free(yg);
	}
}

/* Gradients of the last backward: per tensor error, worst and median. */
static void compare_grads(struct pair *pr, struct result *res)
{
	double gmax = 0, *errs = calloc((size_t)pr->np, sizeof *errs);
	assert_non_null(errs);
	ok(g_download(pr->gpu, pr->hp, pr->np));
	for (int i = 0; i < pr->np; i++) {
		double gn = l2(nnp_tnet_param(pr->cpu, i)->g, (size_t)nnp_tnet_param(pr->cpu, i)->n);
		gmax = gn > gmax ? gn : gmax;
	}
	for (int i = 0; i < pr->np; i++) {
		const struct nnp_tparam *c = nnp_tnet_param(pr->cpu, i), *g = &pr->hp[pr->np - 1 - i];
		assert_string_equal(c->name, g->name);
		errs[i] = rel_l2(g->g, c->g, (size_t)c->n, 1e-3 * gmax);
		if (getenv("NNP_TEST_VERBOSE"))
			fprintf(stderr, "  %-48s |g| %.3e err %.2e\n", c->name, l2(c->g, (size_t)c->n), errs[i]);
		if (errs[i] >= res->grad_worst) {
			res->grad_worst = errs[i];
			res->worst_name = c->name;
		}
	}
	qsort(errs, (size_t)pr->np, sizeof *errs, cmp_double);
	res->grad_median = errs[pr->np / 2];
	free(errs);
}

/* One step on both nets: input and head gradients drawn from pr->r; heads
 * whose bit is clear in `heads` get no gradient.  Returns the errors. */
static struct result step(struct pair *pr, int n, const int64_t *sp, unsigned heads)
{
	struct result res = { 0, 0, 0, "" };
	const float *dd[NNP_NET_MAX_STAGES] = { 0 };
	float *dr[NNP_NET_MAX_STAGES] = { 0 };
	size_t nin = (size_t)n * (size_t)pr->g.tensors[0].channels;
	int nh = nnp_tnet_nheads(pr->cpu);
	float *in;

	for (int d = 0; d < pr->g.arch.ndim; d++)
		nin *= (size_t)sp[d];
	in = malloc(nin * sizeof *in);
	assert_non_null(in);
	for (size_t i = 0; i < nin; i++)
		in[i] = (float)nnp_aug_normal(&pr->r);
	ok(nnp_tnet_forward(pr->cpu, n, sp, in));
	ok(g_forward(pr->gpu, n, sp, in));
	assert_int_equal(g_nheads(pr->gpu), nh);
	compare_heads(pr, dr, &res);
	for (int h = 0; h < nh; h++)
		dd[h] = heads >> h & 1 ? dr[h] : NULL;
	ok(nnp_tnet_backward(pr->cpu, dd));
	ok(g_backward(pr->gpu, dd));
	compare_grads(pr, &res);
	for (int h = 0; h < nh; h++)
		free(dr[h]);
	free(in);
	return res;
}

static void report(const char *what, double slope, int n, const int64_t *sp, int ndim, const struct result *r)
{
	char shape[64];
	if (ndim == 3)
		snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)sp[0], (long long)sp[1], (long long)sp[2]);
	else
		snprintf(shape, sizeof shape, "%lldx%lld", (long long)sp[0], (long long)sp[1]);
	fprintf(stderr, "# %s, slope %g, batch %d, %s: heads rel-L2 %.2e; gradients median %.2e, worst %.2e (%s)\n",
		what, slope, n, shape, r->head_worst, r->grad_median, r->grad_worst, r->worst_name);
}

/* slope 1: every gradient tensor within TOL_FP32; slope 0.01: the median. */
static void check_result(const struct result *r, double slope, double tol)
{
	assert_true(r->head_worst <= tol);
	assert_true(r->grad_median <= tol);
	assert_true(r->grad_worst <= (slope == 1.0 ? tol : TOL_KINK > tol ? TOL_KINK : tol));
}

static void compare_net(const char *arch, int cin, int k, int ds, const int64_t *sp, const int64_t *sp2,
			const char *what)
{
	const double slopes[2] = { 1.0, 0.01 };
	int ndim = sp[2] ? 3 : 2;
	for (int s = 0; s < 2; s++) {
		struct pair pr;
		struct result r;
		pair_open(&pr, arch, cin, k, ds, slopes[s]);
		r = step(&pr, 2, sp, ~0u);
		report(what, slopes[s], 2, sp, ndim, &r);
		check_result(&r, slopes[s], TOL_FP32);
		if (sp2) {
			r = step(&pr, 2, sp2, ~0u);
			report(what, slopes[s], 2, sp2, ndim, &r);
			check_result(&r, slopes[s], TOL_FP32);
		}
		pair_close(&pr);
	}
}

static void test_plain3d(void **state)
{
	const int64_t sp[3] = { 4, 8, 12 }, sp2[3] = { 16, 32, 48 };
	(void)state;
	NEED_GPU();
	compare_net(plain3d, 2, 3, 1, sp, sp2, "PlainConvUNet 3D, deep supervision");
}

static void test_plain2d(void **state)
{
	const int64_t sp[3] = { 16, 12, 0 }, sp2[3] = { 128, 192, 0 };
	(void)state;
	NEED_GPU();
	compare_net(plain2d, 1, 4, 1, sp, sp2, "PlainConvUNet 2D, deep supervision");
}

static void test_resenc3d(void **state)
{
	const int64_t sp[3] = { 4, 8, 8 }, sp2[3] = { 16, 32, 48 };
	(void)state;
	NEED_GPU();
	compare_net(resenc3d, 1, 2, 0, sp, sp2, "ResidualEncoderUNet 3D");
}

/* Only the second deep-supervision head contributes (the first is NULL). */
static void test_partial_heads(void **state)
{
	const int64_t sp[3] = { 4, 8, 12 };
	struct pair pr;
	struct result r;
	(void)state;
	NEED_GPU();
	pair_open(&pr, plain3d, 2, 3, 1, 1.0);
	r = step(&pr, 2, sp, 2u);
	report("PlainConvUNet 3D, head 1 only", 1.0, 2, sp, 3, &r);
	check_result(&r, 1.0, TOL_FP32);
	r = step(&pr, 2, sp, 0u);   /* no head: every gradient 0 on both */
	for (int i = 0; i < pr.np; i++)
		for (int64_t j = 0; j < pr.hp[i].n; j++)
			assert_true(pr.hp[i].g[j] == 0.0f);
	pair_close(&pr);
}

/* The same step twice on the net under test: bit-identical heads and gradients. */
static void test_deterministic(void **state)
{
	const int64_t sp[3] = { 16, 32, 48 };
	struct pair pr;
	float *g1[512], *y1, *y2, *in, *dout;
	size_t nin = 2 * 2 * 16 * 32 * 48, hn = 2 * 3 * 16 * 32 * 48;
	const float *dd[NNP_NET_MAX_STAGES] = { 0 };
	(void)state;
	NEED_GPU();
	pair_open(&pr, plain3d, 2, 3, 0, 0.01);
	in = malloc(nin * sizeof *in);
	dout = malloc(hn * sizeof *dout);
	y1 = malloc(hn * sizeof *y1);
	y2 = malloc(hn * sizeof *y2);
	assert_true(pr.np <= 512 && in && dout && y1 && y2);
	for (size_t i = 0; i < nin; i++)
		in[i] = (float)nnp_aug_normal(&pr.r);
	for (size_t i = 0; i < hn; i++)
		dout[i] = (float)nnp_aug_normal(&pr.r);
	dd[0] = dout;
	for (int rep = 0; rep < 2; rep++) {
		ok(g_forward(pr.gpu, 2, sp, in));
		ok(g_output(pr.gpu, 0, rep ? y2 : y1));
		ok(g_backward(pr.gpu, dd));
		ok(g_download(pr.gpu, pr.hp, pr.np));
		for (int i = 0; i < pr.np; i++) {
			if (!rep) {
				g1[i] = malloc((size_t)pr.hp[i].n * sizeof(float));
				assert_non_null(g1[i]);
				memcpy(g1[i], pr.hp[i].g, (size_t)pr.hp[i].n * sizeof(float));
			} else {
				assert_memory_equal(g1[i], pr.hp[i].g, (size_t)pr.hp[i].n * sizeof(float));
				free(g1[i]);
			}
		}
	}
	assert_memory_equal(y1, y2, hn * sizeof *y1);
	fprintf(stderr, "# rerun bit-identical: head and %d gradient tensors\n", pr.np);
	free(y1);
	free(y2);
	free(in);
	free(dout);
	pair_close(&pr);
}

/* TF32 convolutions (NNP_PREC_BF16): loose bound, value printed. */
static void test_tf32(void **state)
{
	const int64_t sp[3] = { 16, 32, 48 };
	struct pair pr;
	struct result r;
	(void)state;
	NEED_GPU();
	pair_open(&pr, plain3d, 2, 3, 1, 0.01);
	ok(g_set_precision(pr.gpu, NNP_PREC_BF16));
	r = step(&pr, 2, sp, ~0u);
	report("PlainConvUNet 3D, TF32", 0.01, 2, sp, 3, &r);
	assert_true(r.head_worst <= TOL_TF32);
	assert_true(r.grad_median <= TOL_TF32);
	pair_close(&pr);
}

/* The CUDA API's own refusals (needs a device; not in the CPU harness). */
static void test_api_errors(void **state)
{
#ifdef NNP_TEST_CUDA_ON_CPU
	(void)state;
	skip();
#else
	const int64_t sp[3] = { 4, 8, 12 }, bad[3] = { 4, 7, 12 };
	const float *dd[NNP_NET_MAX_STAGES] = { 0 };
	struct pair pr;
	struct nnp_cuda_tnet *fresh;
	struct nnp_tparam keep;
	float in[2 * 4 * 8 * 12] = { 0 };
	(void)state;
	NEED_GPU();
	pair_open(&pr, plain3d, 2, 3, 1, 0.01);
	ok(nnp_cuda_tnet_create(&pr.g, 0, &fresh));
	assert_int_equal(nnp_cuda_tnet_forward(fresh, 1, sp, in), NNP_EUSAGE);      /* nothing uploaded */
	assert_int_equal(nnp_cuda_tnet_backward(fresh, dd), NNP_EUSAGE);          /* no forward */
	assert_int_equal(nnp_cuda_tnet_upload_params(fresh, pr.hp, pr.np - 1), NNP_EDATA);   /* one missing */
	fprintf(stderr, "# %s\n", nnp_err_msg());
	keep = pr.hp[0];
	snprintf(pr.hp[0].name, sizeof pr.hp[0].name, "decoder.nonexistent.weight");
	assert_int_equal(nnp_cuda_tnet_upload_params(fresh, pr.hp, pr.np), NNP_EDATA);
	pr.hp[0] = keep;
	pr.hp[0].shape[0]++;
	assert_int_equal(nnp_cuda_tnet_upload_params(fresh, pr.hp, pr.np), NNP_EDATA);
	pr.hp[0] = keep;
	ok(nnp_cuda_tnet_upload_params(fresh, pr.hp, pr.np));
	assert_int_equal(nnp_cuda_tnet_forward(fresh, 1, bad, in), NNP_EUSAGE);
	assert_int_equal(nnp_cuda_tnet_forward(fresh, 0, sp, in), NNP_EUSAGE);
	assert_true(nnp_cuda_tnet_head_shape(fresh, 0, (int64_t[5]){ 0 }) < 0);
	ok(nnp_cuda_tnet_forward(fresh, 1, sp, in));
	assert_int_equal(nnp_cuda_tnet_head_shape(fresh, 0, (int64_t[5]){ 0 }), 5);
	assert_true(nnp_cuda_tnet_output(fresh, 99, in) < 0);
	assert_int_equal(nnp_cuda_tnet_set_precision(fresh, (enum nnp_precision)7), NNP_EUSAGE);
	nnp_cuda_tnet_free(fresh);
	nnp_cuda_tnet_free(NULL);
	pair_close(&pr);
#endif
}

/* Runs everywhere: no device / a device that does not exist is refused. */
static void test_refusals(void **state)
{
	json_error_t e;
	json_t *a = json_loads(plain2d, 0, &e);
	struct nnp_net_arch na;
	struct nnp_net_graph g;
	struct nnp_cuda_tnet *t = (struct nnp_cuda_tnet *)&na;
	int dev = nnp_cuda_tnet_available(0) ? 999 : 0;
	(void)state;
	assert_non_null(a);
	assert_int_equal(nnp_net_arch_parse(a, 1, 2, &na), NNP_OK);
	json_decref(a);
	assert_int_equal(nnp_net_graph_build(&na, &g), NNP_OK);
	assert_int_equal(nnp_cuda_tnet_available(-1), 0);
	assert_int_equal(nnp_cuda_tnet_available(999), 0);
	if (nnp_cuda_tnet_available(0) || nnp_cuda_device_count() <= 0) {
		assert_int_equal(nnp_cuda_tnet_create(&g, dev, &t), NNP_EUSAGE);
		assert_null(t);
		fprintf(stderr, "# device cuda:%d refused: %s\n", dev, nnp_err_msg());
#ifdef NNP_HAVE_CUDA
		assert_non_null(strstr(nnp_err_msg(), "does not exist"));
#else
		assert_non_null(strstr(nnp_err_msg(), "no CUDA support"));
#endif
	}
	nnp_cuda_tnet_free(NULL);
	nnp_net_graph_release(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_plain3d),
		cmocka_unit_test(test_plain2d),
		cmocka_unit_test(test_resenc3d),
		cmocka_unit_test(test_partial_heads),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_tf32),
		cmocka_unit_test(test_api_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
