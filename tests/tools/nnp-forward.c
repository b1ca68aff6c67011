/* nnp-forward — time forward passes of a configuration's network with
 * He-initialised random weights (benchmark helper, not installed).
 *
 *   nnp-forward PLANS.json CONFIG [--channels C] [--classes K] [--bf16]
 *               [--reps N] [--batch B] [--patch Z,Y,X] [--device cpu|cuda|cuda:N]
 *
 * With --device cuda:N the network runs on that CUDA device (a GPU=1
 * build): every forward copies the input in and the logits out and
 * synchronises the device, so the times are wall-clock times of complete
 * forwards including both transfers (the first, untimed, forward also
 * builds the plan and picks the cuDNN algorithms).
 *
 * Prints one line: config, patch, MACs, precision, threads, seconds per
 * forward (best and mean of N after one warm-up), and the engine's
 * activation bytes.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../common/engine.h"
#include "../../common/err.h"
#include "../../common/json.h"
#include "../../common/model.h"
#include "../../common/net.h"
#include "../../common/plans.h"

struct rnd {
	uint64_t s;
	float *bufs[4096];
	int n;
};

static double gauss(struct rnd *r)
{
	double u1, u2;
	r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
	u1 = ((double)(r->s >> 11) + 1) / 9007199254740993.0;
	r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
	u2 = (double)(r->s >> 11) / 9007199254740992.0;
	return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

static const float *he_get(void *ctx, const char *name, int ndim, const int64_t *shape)
{
	struct rnd *r = ctx;
	size_t n = 1, fan = 1;
	float *b;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	for (int i = 1; i < ndim; i++)
		fan *= (size_t)shape[i];
	if (!(b = malloc(n * sizeof *b)) || r->n == 4096)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (ndim == 1)
			b[i] = strstr(name, "norm.weight") ? 1.0f : 0.0f;
		else
			b[i] = (float)(gauss(r) * sqrt(2.0 / (1 + 1e-4)) / sqrt((double)fan));
	}
	r->bufs[r->n++] = b;
	return b;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
	json_t *plans;
	const json_t *arch, *patch;
	struct nnp_net_arch a;
	struct nnp_net_graph g;
	struct rnd r = { 12345, { 0 }, 0 };
	struct nnp_param_src src = { &r, he_get };
	struct nnp_engine_opts eo = { -1, NNP_PREC_FP32 };
	struct nnp_engine *e;
	int channels = 1, classes = 3, reps = 3, batch = 1;
	int64_t sp[3] = { 0, 0, 0 };
	double best = 1e30, sum = 0;
	float *in, *out;
	size_t nv = 1;
	char devname[96];

	if (argc < 3) {
		fprintf(stderr, "usage: nnp-forward PLANS.json CONFIG [--channels C] [--classes K] [--bf16] [--reps N] [--batch B] [--patch Z,Y,X] [--device cpu|cuda:N]\n");
		return 2;
	}
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--bf16"))
			eo.prec = NNP_PREC_BF16;
		else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
			if (nnp_model_parse_device(argv[++i], &eo.device)) {
				fprintf(stderr, "nnp-forward: %s\n", nnp_err_msg());
				return 2;
			}
		} else if (!strcmp(argv[i], "--channels") && i + 1 < argc)
			channels = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--classes") && i + 1 < argc)
			classes = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
			batch = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--patch") && i + 1 < argc) {
			long long z, y, x = 0;
			if (sscanf(argv[++i], "%lld,%lld,%lld", &z, &y, &x) < 2)
				return 2;
			sp[0] = z, sp[1] = y, sp[2] = x;
		} else {
			fprintf(stderr, "nnp-forward: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (nnp_json_load(argv[1], &plans) || nnp_plans_config_get(plans, argv[2], "architecture", &arch) ||
	    nnp_plans_config_get(plans, argv[2], "patch_size", &patch) ||
	    nnp_net_arch_parse(arch, channels, classes, &a) || nnp_net_graph_build(&a, &g) ||
	    nnp_engine_create(&g, &src, &eo, &e)) {
		fprintf(stderr, "nnp-forward: error: %s\n", nnp_err_msg());
		return 1;
	}
	for (int d = 0; d < a.ndim; d++) {
		if (!sp[d])
			sp[d] = json_integer_value(json_array_get(patch, (size_t)d));
		nv *= (size_t)sp[d];
	}
	in = malloc((size_t)batch * channels * nv * sizeof *in);
	out = malloc((size_t)batch * classes * nv * sizeof *out);
	for (size_t i = 0; i < (size_t)batch * channels * nv; i++)
		in[i] = (float)gauss(&r);
	for (int k = -1; k < reps; k++) {
		double t0 = now(), dt;
		if (nnp_engine_forward(e, batch, sp, in, out)) {
			fprintf(stderr, "nnp-forward: error: %s\n", nnp_err_msg());
			return 1;
		}
		dt = now() - t0;
		if (k < 0)
			continue;
		sum += dt;
		if (dt < best)
			best = dt;
	}
	if (eo.device >= 0)
		snprintf(devname, sizeof devname, "cuda:%d (host float32 in/out, transfers included)", eo.device);
	else
		snprintf(devname, sizeof devname, "%s", nnp_engine_cpu_info());
	printf("%s patch %lldx%lldx%lld batch %d: %.2f GMAC, %s, %d threads: best %.3f s, mean %.3f s; "
	       "activations %.0f MiB (CPU estimate); %s\n",
	       argv[2], (long long)sp[0], (long long)sp[1], (long long)(a.ndim == 3 ? sp[2] : 1), batch,
	       nnp_net_macs(&g, sp) * batch / 1e9, eo.prec == NNP_PREC_BF16 ? "bf16" : "fp32",
	       omp_get_max_threads(), best, sum / reps,
	       (double)nnp_engine_mem_estimate(&g, batch, sp, eo.prec, 0) / 1048576.0, devname);
	nnp_engine_free(e);
	for (int i = 0; i < r.n; i++)
		free(r.bufs[i]);
	nnp_net_graph_release(&g);
	json_decref(plans);
	free(in);
	free(out);
	return 0;
}
