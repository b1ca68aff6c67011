/* nnp-trainstep — time training steps (forward, head outputs, backward,
 * gradients) of a configuration's network with He-initialised weights
 * (benchmark helper, not installed).
 *
 *   nnp-trainstep PLANS.json CONFIG [--channels C] [--classes K] [--reps N]
 *                 [--batch B] [--patch Z,Y,X] [--no-ds] [--tf32]
 *                 [--device cpu|cuda|cuda:N]
 *
 * One step is what a trainer with a host-side loss and optimizer does:
 * upload the parameters (CUDA only), forward, copy every head to the host,
 * backward from fixed random head gradients, copy the gradients to the
 * host.  Each call returns only when its work is done, so the times are
 * wall-clock times of complete steps.  One untimed warm-up step builds the
 * plan (and picks the cuDNN algorithms).  Deep supervision is on unless
 * --no-ds (nnU-Net trains with it); --tf32 selects TF32 convolutions on
 * CUDA.
 *
 * Prints one line: config, patch, batch, forward MACs, device, best and
 * mean seconds per step and the mean of each phase.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../common/err.h"
#include "../../common/json.h"
#include "../../common/model.h"
#include "../../common/net.h"
#include "../../common/plans.h"
#include "../../common/trainnet.h"
#include "../../common/trainnet_cuda.h"

struct opts {
	int channels, classes, reps, batch, ds, tf32, device;
	int64_t sp[3];
};

/* The two networks behind one step: the CPU one always (it owns the host
 * parameters), the CUDA one when device >= 0. */
struct nets {
	struct nnp_tnet *cpu;
	struct nnp_cuda_tnet *gpu;
	int np, nh;
	struct nnp_tparam *hp;          /* host parameter table (CUDA upload/download) */
	float *in, *y[NNP_NET_MAX_STAGES], *dy[NNP_NET_MAX_STAGES];
	size_t hn[NNP_NET_MAX_STAGES];
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float gauss(uint64_t *s)
{
	double u1, u2;
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	u1 = ((double)(*s >> 11) + 1) / 9007199254740993.0;
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	u2 = (double)(*s >> 11) / 9007199254740992.0;
	return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static int usage(void)
{
	fprintf(stderr, "usage: nnp-trainstep PLANS.json CONFIG [--channels C] [--classes K] [--reps N] [--batch B] "
		"[--patch Z,Y,X] [--no-ds] [--tf32] [--device cpu|cuda:N]\n");
	return 2;
}

/* --NAME VALUE options: 1 when argv[*i] is one (VALUE consumed), 0 when not. */
static int int_opt(int argc, char **argv, int *i, const char *name, int *out)
{
	if (strcmp(argv[*i], name) || *i + 1 >= argc)
		return 0;
	*out = atoi(argv[++*i]);
	return 1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i];
		long long z, y, x = 0;
		if (!strcmp(a, "--no-ds"))
			o->ds = 0;
		else if (!strcmp(a, "--tf32"))
			o->tf32 = 1;
		else if (int_opt(argc, argv, &i, "--channels", &o->channels) ||
			 int_opt(argc, argv, &i, "--classes", &o->classes) || int_opt(argc, argv, &i, "--reps", &o->reps) ||
			 int_opt(argc, argv, &i, "--batch", &o->batch))
			continue;
		else if (!strcmp(a, "--device") && i + 1 < argc) {
			int rc = nnp_model_parse_device(argv[++i], &o->device);
			if (rc)
				return rc;
		} else if (!strcmp(a, "--patch") && i + 1 < argc) {
			if (sscanf(argv[++i], "%lld,%lld,%lld", &z, &y, &x) < 2)
				return nnp_err(NNP_EUSAGE, "--patch '%s': want Z,Y,X or Y,X", argv[i]);
			o->sp[0] = z, o->sp[1] = y, o->sp[2] = x;
		} else {
			return nnp_err(NNP_EUSAGE, "unknown argument '%s'", a);
		}
	}
	if (o->channels < 1 || o->classes < 1 || o->reps < 1 || o->batch < 1)
		return nnp_err(NNP_EUSAGE, "--channels, --classes, --reps and --batch must be >= 1");
	return NNP_OK;
}

static int load_graph(const char *plans_path, const char *config, struct opts *o, struct nnp_net_graph *g)
{
	json_t *plans;
	const json_t *arch, *patch;
	struct nnp_net_arch a;
	int rc;

	if ((rc = nnp_json_load(plans_path, &plans)))
		return rc;
	if (!(rc = nnp_plans_config_get(plans, config, "architecture", &arch)) &&
	    !(rc = nnp_plans_config_get(plans, config, "patch_size", &patch)) &&
	    !(rc = nnp_net_arch_parse(arch, o->channels, o->classes, &a))) {
		a.deep_supervision = o->ds;
		for (int d = 0; d < a.ndim; d++)
			if (!o->sp[d])
				o->sp[d] = json_integer_value(json_array_get(patch, (size_t)d));
		rc = nnp_net_graph_build(&a, g);
	}
	json_decref(plans);
	return rc;
}

static int nets_open(struct nets *n, const struct nnp_net_graph *g, const struct opts *o)
{
	int rc;
	size_t nin = (size_t)o->batch * (size_t)o->channels;
	uint64_t seed = 12345;

	if ((rc = nnp_tnet_create(g, NULL, 1, &n->cpu)))
		return rc;
	n->np = nnp_tnet_nparams(n->cpu);
	n->nh = nnp_tnet_nheads(n->cpu);
	for (int d = 0; d < g->arch.ndim; d++)
		nin *= (size_t)o->sp[d];
	if (!(n->in = malloc(nin * sizeof *n->in)) || !(n->hp = calloc((size_t)n->np, sizeof *n->hp)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < nin; i++)
		n->in[i] = gauss(&seed);
	for (int i = 0; i < n->np; i++)
		n->hp[i] = *nnp_tnet_param(n->cpu, i);
	if (o->device < 0)
		return NNP_OK;
	if ((rc = nnp_cuda_tnet_create(g, o->device, &n->gpu)) ||
	    (rc = nnp_cuda_tnet_set_precision(n->gpu, o->tf32 ? NNP_PREC_BF16 : NNP_PREC_FP32)))
		return rc;
	return NNP_OK;
}

/* Head buffers and fixed random head gradients, after the first forward. */
static int heads_alloc(struct nets *n)
{
	uint64_t seed = 777;
	for (int h = 0; h < n->nh; h++) {
		int64_t shape[5];
		int nd = n->gpu ? nnp_cuda_tnet_head_shape(n->gpu, h, shape) : nnp_tnet_head_shape(n->cpu, h, shape);
		if (nd < 0)
			return nd;
		n->hn[h] = 1;
		for (int d = 0; d < nd; d++)
			n->hn[h] *= (size_t)shape[d];
		if (!(n->y[h] = malloc(n->hn[h] * sizeof(float))) || !(n->dy[h] = malloc(n->hn[h] * sizeof(float))))
			return nnp_err(NNP_ENOMEM, "out of memory");
		for (size_t i = 0; i < n->hn[h]; i++)
			n->dy[h][i] = gauss(&seed) / (float)sqrt((double)n->hn[h]);
	}
	return NNP_OK;
}

/* One step; t[0..2] += seconds of upload, forward + heads, backward + gradients. */
static int step(struct nets *n, const struct opts *o, double *t)
{
	double t0 = now(), t1, t2;
	int rc = NNP_OK;
	if (n->gpu)
		rc = nnp_cuda_tnet_upload_params(n->gpu, n->hp, n->np);
	t1 = now();
	if (!rc)
		rc = n->gpu ? nnp_cuda_tnet_forward(n->gpu, o->batch, o->sp, n->in) :
			      nnp_tnet_forward(n->cpu, o->batch, o->sp, n->in);
	if (!rc && !n->y[0])
		rc = heads_alloc(n);
	for (int h = 0; h < n->nh && !rc; h++)
		rc = n->gpu ? nnp_cuda_tnet_output(n->gpu, h, n->y[h]) : nnp_tnet_output(n->cpu, h, n->y[h]);
	t2 = now();
	if (!rc)
		rc = n->gpu ? nnp_cuda_tnet_backward(n->gpu, (const float *const *)n->dy) :
			      nnp_tnet_backward(n->cpu, (const float *const *)n->dy);
	if (!rc && n->gpu)
		rc = nnp_cuda_tnet_download_grads(n->gpu, n->hp, n->np);
	t[0] += t1 - t0;
	t[1] += t2 - t1;
	t[2] += now() - t2;
	return rc;
}

static void nets_close(struct nets *n)
{
	for (int h = 0; h < n->nh; h++) {
		free(n->y[h]);
		free(n->dy[h]);
	}
	free(n->in);
	free(n->hp);
	nnp_cuda_tnet_free(n->gpu);
	nnp_tnet_free(n->cpu);
}

int main(int argc, char **argv)
{
	struct opts o = { 1, 3, 3, 1, 1, 0, -1, { 0, 0, 0 } };
	struct nnp_net_graph g;
	struct nets n;
	double best = 1e30, sum = 0, phase[3] = { 0, 0, 0 };
	char dev[64];

	memset(&n, 0, sizeof n);
	memset(&g, 0, sizeof g);
	if (argc < 3)
		return usage();
	if (parse_args(argc, argv, &o)) {
		fprintf(stderr, "nnp-trainstep: %s\n", nnp_err_msg());
		return 2;
	}
	if (load_graph(argv[1], argv[2], &o, &g) || nets_open(&n, &g, &o)) {
		fprintf(stderr, "nnp-trainstep: error: %s\n", nnp_err_msg());
		nets_close(&n);
		nnp_net_graph_release(&g);
		return 1;
	}
	for (int k = -1; k < o.reps; k++) {
		double t[3] = { 0, 0, 0 }, dt;
		if (step(&n, &o, t)) {
			fprintf(stderr, "nnp-trainstep: error: %s\n", nnp_err_msg());
			nets_close(&n);
			nnp_net_graph_release(&g);
			return 1;
		}
		if (k < 0)
			continue;
		dt = t[0] + t[1] + t[2];
		sum += dt;
		best = dt < best ? dt : best;
		for (int i = 0; i < 3; i++)
			phase[i] += t[i];
	}
	if (o.device >= 0)
		snprintf(dev, sizeof dev, "cuda:%d %s", o.device, o.tf32 ? "tf32" : "fp32");
	else
		snprintf(dev, sizeof dev, "cpu fp32, %d threads", omp_get_max_threads());
	printf("%s patch %lldx%lldx%lld batch %d%s: %.2f GMAC forward, %s: step best %.3f s, mean %.3f s "
	       "(mean upload %.3f, forward+heads %.3f, backward+gradients %.3f)\n",
	       argv[2], (long long)o.sp[0], (long long)o.sp[1], (long long)(g.arch.ndim == 3 ? o.sp[2] : 1), o.batch,
	       o.ds ? ", deep supervision" : "", nnp_net_macs(&g, o.sp) * o.batch / 1e9, dev, best, sum / o.reps,
	       phase[0] / o.reps, phase[1] / o.reps, phase[2] / o.reps);
	nets_close(&n);
	nnp_net_graph_release(&g);
	return 0;
}
