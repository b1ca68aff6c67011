/* trainnet_cuda.cu — the CUDA backend of the training network
 * (trainnet_cuda.h; the CPU backend is trainnet.c, whose semantics this
 * mirrors operator by operator).
 *
 * Values: one packed float32 NCDHW (2D: NCHW) device array per operator
 * output, as on the CPU ("values": an in-place operator of the graph gets a
 * new value, so a backward finds every pre-activation), each with a
 * gradient array of the same shape (not for the network input).  Backward
 * walks the operators in reverse; a value's gradient is written by its
 * first contribution and added to by later ones (cuDNN beta 0 / 1, the own
 * kernels' `acc` flag); an operator whose output got no gradient is skipped.
 *
 * Every convolution is described on its "conv side" x -> y with a filter
 * (K = y channels, C = x channels, k): a CONV has x = its input, y = its
 * output; a DECONV (kernel = stride, no padding) has x = its output, y = its
 * input, and the PyTorch weight (in, out, k) is that filter unchanged.  So:
 *   CONV    forward  cudnnConvolutionForward(x -> y)
 *           backward cudnnConvolutionBackwardData(dy -> dx),
 *                    cudnnConvolutionBackwardFilter(x, dy -> dw),
 *                    cudnnConvolutionBackwardBias(dy -> db)
 *   DECONV  forward  cudnnConvolutionBackwardData(in -> out)
 *           backward cudnnConvolutionForward(dout -> din),
 *                    cudnnConvolutionBackwardFilter(x = dout, dy = in -> dw),
 *                    cudnnConvolutionBackwardBias(dout -> db)
 * A CONV with a second input (the decoder's concat) is two convolutions over
 * the weight's two input-channel blocks: the blocks are copied out of the
 * PyTorch-layout weight (cudaMemcpy2DAsync) before each forward, their
 * gradients copied back into the PyTorch-layout gradient after the backward.
 *
 * Own kernels: bias add, InstanceNorm forward (float64 partial sums over
 * fixed chunks of NORM_CHUNK voxels, block tree reduction, chunks combined in
 * order: deterministic) and backward (float64 sums of dz and dz * xhat the
 * same way, the CPU's formulas), LeakyReLU backward, residual add forward and
 * backward, average pooling forward and backward.
 *
 * Algorithms: cuDNN's heuristics (cudnnGet*Algorithm_v7, nothing
 * benchmarked), CUDNN_DETERMINISTIC results only; fp32 mode uses
 * CUDNN_FMA_MATH and IMPLICIT_GEMM / IMPLICIT_PRECOMP_GEMM / GEMM / DIRECT
 * forward, BWD_DATA_ALGO_1 and BWD_FILTER_ALGO_1 (the inference backend's
 * rule, extended to the filter gradient), any other deterministic algorithm
 * only for a shape none of those supports; one workspace of the largest
 * size per plan (one (n, spatial, precision)).
 *
 * C linkage; no C++ standard library.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda_check.h"

extern "C" {
#include "err.h"
#include "net.h"
#include "trainnet_cuda.h"
}

#define NT 256                     /* threads per block */
#define NORM_CHUNK 16384           /* voxels per block of the norm sums */
#define WS_MAX ((size_t)4 << 30)   /* skip algorithms wanting more workspace */
#define MAX_ALGOS 8                /* >= every CUDNN_CONVOLUTION_*_ALGO_COUNT */

/* ---- errors: cuda_check.h ---- */

static const float k_one = 1.0f, k_zero = 0.0f;

/* ---- kernels ---- */

#define GRID_STRIDE(i, total) \
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (total); i += (int64_t)gridDim.x * blockDim.x)

static unsigned grid_for(int64_t total)
{
	int64_t b = (total + NT - 1) / NT;
	return (unsigned)(b < 1 ? 1 : b > 65536 ? 65536 : b);
}

/* y[(n, c, s)] += b[c]. */
__global__ static void bias_kernel(float *y, const float *b, int C, int64_t S, int64_t total)
{
	GRID_STRIDE(i, total)
		y[i] += b[(i / S) % C];
}

/* The CPU's act_grad: LeakyReLU backward from the output y. */
__device__ static inline float act_grad(float dy, float y, int act, float slope)
{
	return act && y <= 0.0f ? __fmul_rn(dy, slope) : dy;
}

/* Tree reduction of (a, b) over the NT threads of a block in a fixed order;
 * the sums are in sa[0], sb[0] afterwards. */
__device__ static void block_reduce2(double *sa, double *sb, double a, double b)
{
	int t = threadIdx.x;
	sa[t] = a;
	sb[t] = b;
	__syncthreads();
	for (int k = NT / 2; k > 0; k >>= 1) {
		if (t < k) {
			sa[t] += sa[t + k];
			sb[t] += sb[t + k];
		}
		__syncthreads();
	}
}

/* Sums of x and x^2 of (sample, channel) blockIdx.x over chunk blockIdx.y. */
__global__ static void norm_fsum_kernel(const float *x, int64_t S, int nch, double *part)
{
	__shared__ double sa[NT], sb[NT];
	int64_t nc = blockIdx.x, lo = (int64_t)blockIdx.y * NORM_CHUNK;
	int64_t hi = lo + NORM_CHUNK < S ? lo + NORM_CHUNK : S;
	const float *p = x + nc * S;
	double s = 0, q = 0;

	for (int64_t i = lo + threadIdx.x; i < hi; i += NT) {
		double v = p[i];
		s += v;
		q += v * v;
	}
	block_reduce2(sa, sb, s, q);
	if (threadIdx.x == 0) {
		part[(nc * nch + blockIdx.y) * 2] = sa[0];
		part[(nc * nch + blockIdx.y) * 2 + 1] = sb[0];
	}
}

/* Per (sample, channel): the chunks' sums in order -> sums[2 nc], sums[2 nc + 1]. */
__global__ static void norm_combine_kernel(const double *part, int nch, int nC, double *sums)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	double a = 0, b = 0;
	if (i >= nC)
		return;
	for (int k = 0; k < nch; k++) {
		a += part[((int64_t)i * nch + k) * 2];
		b += part[((int64_t)i * nch + k) * 2 + 1];
	}
	sums[2 * i] = a;
	sums[2 * i + 1] = b;
}

/* Mean, 1/std (float64, kept for the backward) and the affine coefficients
 * a = gamma / std, c = beta - mean * gamma / std, as the CPU's norm_forward. */
__global__ static void norm_stats_kernel(const double *sums, int nC, int C, int64_t S, const float *gamma,
					 const float *beta, double eps, double *mean, double *rstd, float *ac)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	double m, var, r, g, be;
	if (i >= nC)
		return;
	m = sums[2 * i] / (double)S;
	var = sums[2 * i + 1] / (double)S - m * m;
	r = 1.0 / sqrt((var > 0 ? var : 0) + eps);
	g = gamma ? (double)gamma[i % C] : 1.0;
	be = beta ? (double)beta[i % C] : 0.0;
	mean[i] = m;
	rstd[i] = r;
	ac[2 * i] = (float)(g * r);
	ac[2 * i + 1] = (float)(be - m * g * r);
}

/* y = x * a + c, then LeakyReLU when act (the CPU's affine_act, unfused). */
__global__ static void norm_apply_kernel(const float *x, float *y, const float *ac, int64_t S, int64_t total, int act,
					 float slope)
{
	GRID_STRIDE(i, total) {
		int64_t nc = i / S;
		float z = __fadd_rn(__fmul_rn(x[i], ac[2 * nc]), ac[2 * nc + 1]);
		y[i] = act && z < 0.0f ? __fmul_rn(z, slope) : z;
	}
}

/* Backward sums of (sample, channel) blockIdx.x over chunk blockIdx.y:
 * dz and dz * xhat (dz = the gradient before the activation). */
__global__ static void norm_bsum_kernel(const float *x, const float *y, const float *dy, const double *mean,
					const double *rstd, int64_t S, int nch, int act, float slope, double *part)
{
	__shared__ double sa[NT], sb[NT];
	int64_t nc = blockIdx.x, lo = (int64_t)blockIdx.y * NORM_CHUNK, off = nc * S;
	int64_t hi = lo + NORM_CHUNK < S ? lo + NORM_CHUNK : S;
	double m = mean[nc], r = rstd[nc], a = 0, b = 0;

	for (int64_t i = lo + threadIdx.x; i < hi; i += NT) {
		double dz = act_grad(dy[off + i], y[off + i], act, slope);
		a += dz;
		b += dz * (((double)x[off + i] - m) * r);
	}
	block_reduce2(sa, sb, a, b);
	if (threadIdx.x == 0) {
		part[(nc * nch + blockIdx.y) * 2] = sa[0];
		part[(nc * nch + blockIdx.y) * 2 + 1] = sb[0];
	}
}

/* dgamma[c] = sum over samples of sum dz * xhat, dbeta[c] = of sum dz
 * (float, samples in order, as the CPU). */
__global__ static void norm_pgrad_kernel(const double *sums, int n, int C, float *dgamma, float *dbeta)
{
	int c = blockIdx.x * blockDim.x + threadIdx.x;
	float g = 0, b = 0;
	if (c >= C)
		return;
	for (int s = 0; s < n; s++) {
		b = __fadd_rn(b, (float)sums[2 * ((int64_t)s * C + c)]);
		g = __fadd_rn(g, (float)sums[2 * ((int64_t)s * C + c) + 1]);
	}
	if (dgamma)
		dgamma[c] = g;
	if (dbeta)
		dbeta[c] = b;
}

/* dx = gamma / std * (dz - mean(dz) - xhat * mean(dz * xhat)); = or += (acc). */
__global__ static void norm_dx_kernel(const float *x, const float *y, const float *dy, const double *mean,
				      const double *rstd, const double *sums, const float *gamma, int C, int64_t S,
				      int64_t total, int act, float slope, float *dx, int acc)
{
	GRID_STRIDE(i, total) {
		int64_t nc = i / S;
		double dz = act_grad(dy[i], y[i], act, slope);
		double xh = ((double)x[i] - mean[nc]) * rstd[nc];
		double gr = (gamma ? (double)gamma[nc % C] : 1.0) * rstd[nc];
		double c1 = sums[2 * nc] / (double)S, c2 = sums[2 * nc + 1] / (double)S;
		float d = (float)(gr * (dz - c1 - xh * c2));
		dx[i] = acc ? __fadd_rn(dx[i], d) : d;
	}
}

/* y = LeakyReLU(a + b). */
__global__ static void add_act_kernel(const float *a, const float *b, float *y, int64_t total, float slope)
{
	GRID_STRIDE(i, total) {
		float z = __fadd_rn(a[i], b[i]);
		y[i] = z < 0.0f ? __fmul_rn(z, slope) : z;
	}
}

/* dx = or += LeakyReLU'(y) * dy (y: the activation's output). */
__global__ static void act_back_kernel(const float *dy, const float *y, float *dx, int64_t total, float slope, int acc)
{
	GRID_STRIDE(i, total) {
		float d = act_grad(dy[i], y[i], 1, slope);
		dx[i] = acc ? __fadd_rn(dx[i], d) : d;
	}
}

/* Average pooling, kernel = stride = (k0, k1, k2), no padding; in is
 * (NC, od k0, oh k1, ow k2) (2D: ow = k2 = 1). */
__global__ static void avgpool_kernel(const float *in, float *out, int64_t NC, int64_t od, int64_t oh, int64_t ow,
				      int k0, int k1, int k2)
{
	int64_t total = NC * od * oh * ow, H = oh * k1, W = ow * k2, D = od * k0;
	float kv = (float)(k0 * k1 * k2);
	GRID_STRIDE(i, total) {
		int64_t x = i % ow, r = i / ow, y = r % oh, z, nc;
		float s = 0;
		r /= oh;
		z = r % od;
		nc = r / od;
		for (int a = 0; a < k0; a++)
			for (int b = 0; b < k1; b++) {
				const float *row = in + ((nc * D + z * k0 + a) * H + y * k1 + b) * W + x * k2;
				for (int c = 0; c < k2; c++)
					s = __fadd_rn(s, row[c]);
			}
		out[i] = __fdiv_rn(s, kv);
	}
}

/* Its backward: din = or += dout / kernel volume, per input voxel. */
__global__ static void avgpool_back_kernel(const float *dout, float *din, int64_t NC, int64_t od, int64_t oh,
					   int64_t ow, int k0, int k1, int k2, int acc)
{
	int64_t H = oh * k1, W = ow * k2, D = od * k0, total = NC * D * H * W;
	float kv = (float)(k0 * k1 * k2);
	GRID_STRIDE(i, total) {
		int64_t x = i % W, r = i / W, y = r % H, z, nc;
		float d;
		r /= H;
		z = r % D;
		nc = r / D;
		d = __fdiv_rn(dout[((nc * od + z / k0) * oh + y / k1) * ow + x / k2], kv);
		din[i] = acc ? __fadd_rn(din[i], d) : d;
	}
}

/* ---- state ---- */

enum { D_FWD, D_BWD_DATA, D_BWD_FILTER, D_COUNT };
static const char *const dir_name[D_COUNT] = { "fwd", "bwd-data", "bwd-filter" };

struct dparam {                 /* one parameter tensor on the device, PyTorch layout */
	char name[NNP_NET_NAME + 8];
	int ndim;
	int64_t shape[5];
	int64_t n;
	float *w, *g;
};

struct dop {                    /* per operator, independent of the shape */
	int pw, pb;                 /* weight (norm: gamma), bias (norm: beta), or -1 */
	int64_t c1, c2, kvol;       /* concat conv: the two input-channel blocks */
	float *wpart[2], *gpart[2]; /* concat conv: w and g of the two blocks */
};

struct tconv {                  /* one convolution on its conv side x -> y */
	cudnnTensorDescriptor_t x, y;              /* borrowed from the values */
	cudnnFilterDescriptor_t f;
	cudnnConvolutionDescriptor_t cd[D_COUNT];  /* one per direction (own math type) */
	int algo[D_COUNT], math[D_COUNT];
	size_t ws[D_COUNT];
};

struct dval {                   /* an operator output (value 0: the input) */
	int c, level;
	int64_t elems;
	float *x, *g;
	cudnnTensorDescriptor_t d;
	int written;                /* backward: the gradient holds a contribution */
};

struct tstep {
	int vin[2], vout;           /* vin[1]: a conv's second input, the residual, or -1 */
	int nparts;
	struct tconv cv[2];
	cudnnTensorDescriptor_t bias;   /* (1, C, 1...) for the bias gradient */
	double *mean, *rstd;            /* NORM_ACT: per (sample, channel) */
};

struct tplan {
	int valid, n, forwarded;
	enum nnp_precision prec;
	int64_t sp[3];
	int64_t lsp[NNP_NET_MAX_STAGES + 1][3];
	int nv;
	struct dval *v;
	struct tstep *s;
	int headv[NNP_NET_MAX_STAGES];
	void *ws;
	size_t ws_bytes;
	double *part, *sums;        /* norm chunk sums and per-(sample, channel) sums, largest norm */
	float *ac;                  /* norm coefficients, largest norm */
};

struct nnp_cuda_tnet {
	struct nnp_net_graph g;
	int device;
	enum nnp_precision prec;
	int profile;
	int np, uploaded;
	struct dparam *p;
	struct dop *o;
	int nheads;
	int heads[NNP_NET_MAX_STAGES];
	cudaStream_t stream;
	cudnnHandle_t h;
	struct tplan plan;
};

/* ---- parameters ---- */

static int dev_alloc(void **p, size_t bytes, const char *what)
{
	CU(cudaMalloc(p, bytes ? bytes : 4), what);
	return NNP_OK;
}

/* Returns the new parameter's index (counted at once, so that
 * nnp_cuda_tnet_free releases a partial allocation) or a negative code. */
static int add_param(struct nnp_cuda_tnet *t, const struct nnp_op *op, const char *suffix)
{
	int idx = t->np++, rc;
	struct dparam *p = &t->p[idx];
	p->ndim = nnp_net_param_shape(&t->g, op, suffix, p->shape);
	snprintf(p->name, sizeof p->name, "%s.%s", op->w, suffix);
	p->n = 1;
	for (int d = 0; d < p->ndim; d++)
		p->n *= p->shape[d];
	if ((rc = dev_alloc((void **)&p->w, (size_t)p->n * sizeof(float), "cannot allocate GPU memory for the parameters")) ||
	    (rc = dev_alloc((void **)&p->g, (size_t)p->n * sizeof(float), "cannot allocate GPU memory for the gradients")))
		return rc;
	CU(cudaMemsetAsync(p->g, 0, (size_t)p->n * sizeof(float), t->stream), "cannot clear the gradients");
	return idx;
}

/* The decoder conv's weight (out, c1 + c2, k): buffers for its two blocks. */
static int concat_parts(struct nnp_cuda_tnet *t, const struct nnp_op *op, struct dop *o)
{
	const struct dparam *w = &t->p[o->pw];
	int rc;
	o->c1 = t->g.tensors[op->in].channels;
	o->c2 = t->g.tensors[op->in2].channels;
	o->kvol = 1;
	for (int d = 2; d < w->ndim; d++)
		o->kvol *= w->shape[d];
	if (o->c1 <= 0 || o->c1 + o->c2 != w->shape[1])
		return nnp_err(NNP_EINTERNAL, "training network: %s: bad channel split %lld + %lld of %lld", op->w,
			       (long long)o->c1, (long long)o->c2, (long long)w->shape[1]);
	for (int k = 0; k < 2; k++) {
		size_t bytes = (size_t)(w->shape[0] * (k ? o->c2 : o->c1) * o->kvol) * sizeof(float);
		if ((rc = dev_alloc((void **)&o->wpart[k], bytes, "cannot allocate GPU memory for the parameters")) ||
		    (rc = dev_alloc((void **)&o->gpart[k], bytes, "cannot allocate GPU memory for the gradients")))
			return rc;
	}
	return NNP_OK;
}

/* The parameters of operator i, in the CPU network's order and names. */
static int op_params(struct nnp_cuda_tnet *t, int i)
{
	const struct nnp_op *op = &t->g.ops[i];
	struct dop *o = &t->o[i];
	int want_w, want_b;

	o->pw = o->pb = -1;
	if (op->kind == NNP_OP_ADD_ACT || op->kind == NNP_OP_AVGPOOL)
		return NNP_OK;
	want_w = op->kind != NNP_OP_NORM_ACT || t->g.arch.norm_affine;
	want_b = op->kind == NNP_OP_NORM_ACT ? t->g.arch.norm_affine : op->has_bias;
	if (want_w && (o->pw = add_param(t, op, "weight")) < 0)
		return o->pw;
	if (want_b && (o->pb = add_param(t, op, "bias")) < 0)
		return o->pb;
	if (op->kind == NNP_OP_CONV && op->in2 >= 0)
		return concat_parts(t, op, o);
	return NNP_OK;
}

/* The net's parameter named like host entry p (fast path: same index). */
static int find_param(const struct nnp_cuda_tnet *t, const struct nnp_tparam *p, int hint)
{
	int k = -1;
	if (hint < t->np && !strcmp(t->p[hint].name, p->name))
		k = hint;
	for (int i = 0; i < t->np && k < 0; i++)
		if (!strcmp(t->p[i].name, p->name))
			k = i;
	if (k < 0)
		return nnp_err(NNP_EDATA, "parameter '%s': not in the network", p->name);
	if (t->p[k].ndim != p->ndim || memcmp(t->p[k].shape, p->shape, (size_t)p->ndim * sizeof *p->shape) ||
	    t->p[k].n != p->n)
		return nnp_err(NNP_EDATA, "parameter '%s': shape differs from the network's", p->name);
	return k;
}

extern "C" int nnp_cuda_tnet_upload_params(struct nnp_cuda_tnet *t, const struct nnp_tparam *p, int np)
{
	int *seen, rc = NNP_OK;

	CU(cudaSetDevice(t->device), "cannot select the GPU");
	if (!(seen = (int *)calloc((size_t)t->np + 1, sizeof *seen)))
		return nnp_err(NNP_ENOMEM, "training network: out of memory");
	for (int j = 0; j < np && !rc; j++) {
		int k = find_param(t, &p[j], j);
		cudaError_t ce;
		if (k < 0) {
			rc = k;
			break;
		}
		seen[k] = 1;
		ce = cudaMemcpyAsync(t->p[k].w, p[j].w, (size_t)p[j].n * sizeof(float), cudaMemcpyHostToDevice, t->stream);
		if (ce != cudaSuccess)
			rc = cu_fail(ce, "cannot copy the parameters to the GPU");
	}
	for (int k = 0; k < t->np && !rc; k++)
		if (!seen[k])
			rc = nnp_err(NNP_EDATA, "parameter '%s': not uploaded (%d of the network's %d given)", t->p[k].name,
				     np, t->np);
	free(seen);
	if (rc)
		return rc;
	CU(cudaStreamSynchronize(t->stream), "copying the parameters to the GPU");
	t->uploaded = 1;
	return NNP_OK;
}

extern "C" int nnp_cuda_tnet_download_grads(struct nnp_cuda_tnet *t, struct nnp_tparam *p, int np)
{
	CU(cudaSetDevice(t->device), "cannot select the GPU");
	for (int j = 0; j < np; j++) {
		int k = find_param(t, &p[j], j);
		if (k < 0)
			return k;
		CU(cudaMemcpyAsync(p[j].g, t->p[k].g, (size_t)p[j].n * sizeof(float), cudaMemcpyDeviceToHost, t->stream),
		   "cannot copy the gradients from the GPU");
	}
	CU(cudaStreamSynchronize(t->stream), "copying the gradients from the GPU");
	return NNP_OK;
}

/* Concat convs: PyTorch-layout weight -> its two input-channel blocks. */
static int split_weights(struct nnp_cuda_tnet *t)
{
	for (int i = 0; i < t->g.nops; i++) {
		const struct dop *o = &t->o[i];
		size_t row = (size_t)((o->c1 + o->c2) * o->kvol) * sizeof(float);
		const float *w;
		if (!o->wpart[0])
			continue;
		w = t->p[o->pw].w;
		for (int k = 0; k < 2; k++) {
			size_t width = (size_t)((k ? o->c2 : o->c1) * o->kvol) * sizeof(float);
			CU(cudaMemcpy2DAsync(o->wpart[k], width, w + (k ? o->c1 * o->kvol : 0), row, width,
					     (size_t)t->p[o->pw].shape[0], cudaMemcpyDeviceToDevice, t->stream),
			   "cannot split a decoder weight");
		}
	}
	return NNP_OK;
}

/* Concat conv i: the two blocks' gradients -> the PyTorch-layout gradient. */
static int merge_grads(struct nnp_cuda_tnet *t, int i)
{
	const struct dop *o = &t->o[i];
	size_t row = (size_t)((o->c1 + o->c2) * o->kvol) * sizeof(float);
	float *g = t->p[o->pw].g;
	for (int k = 0; k < 2; k++) {
		size_t width = (size_t)((k ? o->c2 : o->c1) * o->kvol) * sizeof(float);
		CU(cudaMemcpy2DAsync(g + (k ? o->c1 * o->kvol : 0), row, o->gpart[k], width, width,
				     (size_t)t->p[o->pw].shape[0], cudaMemcpyDeviceToDevice, t->stream),
		   "cannot merge a decoder weight gradient");
	}
	return NNP_OK;
}

static const float *conv_w(const struct nnp_cuda_tnet *t, int i, int k)
{
	return t->o[i].wpart[0] ? t->o[i].wpart[k] : t->p[t->o[i].pw].w;
}

static float *conv_g(const struct nnp_cuda_tnet *t, int i, int k)
{
	return t->o[i].gpart[0] ? t->o[i].gpart[k] : t->p[t->o[i].pw].g;
}

/* ---- plan: values and descriptors ---- */

static void plan_release(struct nnp_cuda_tnet *t)
{
	struct tplan *p = &t->plan;
	if (p->s)
		for (int i = 0; i < t->g.nops; i++) {
			struct tstep *s = &p->s[i];
			for (int k = 0; k < 2; k++) {
				if (s->cv[k].f)
					cudnnDestroyFilterDescriptor(s->cv[k].f);
				for (int d = 0; d < D_COUNT; d++)
					if (s->cv[k].cd[d])
						cudnnDestroyConvolutionDescriptor(s->cv[k].cd[d]);
			}
			if (s->bias)
				cudnnDestroyTensorDescriptor(s->bias);
			cudaFree(s->mean);
			cudaFree(s->rstd);
		}
	if (p->v)
		for (int i = 0; i < p->nv; i++) {
			cudaFree(p->v[i].x);
			cudaFree(p->v[i].g);
			if (p->v[i].d)
				cudnnDestroyTensorDescriptor(p->v[i].d);
		}
	cudaFree(p->ws);
	cudaFree(p->part);
	cudaFree(p->sums);
	cudaFree(p->ac);
	free(p->v);
	free(p->s);
	memset(p, 0, sizeof *p);
}

static int64_t level_vox(const struct nnp_cuda_tnet *t, int level)
{
	int64_t v = 1;
	for (int d = 0; d < t->g.arch.ndim; d++)
		v *= t->plan.lsp[level][d];
	return v;
}

/* Packed NC(D)HW descriptor with dims v[0..nb-1]; the legacy API takes int
 * dimensions and strides. */
static int packed_desc(const int64_t *v, int nb, cudnnTensorDescriptor_t *d)
{
	int dims[5], strides[5];
	int64_t total = 1;
	for (int k = 0; k < nb; k++)
		total *= v[k];
	if (total > INT32_MAX)
		return nnp_err(NNP_EUSAGE, "training network on the GPU: a tensor of %lld elements is larger than "
			       "cuDNN's limit of 2^31 - 1 (use a smaller batch or patch)", (long long)total);
	for (int k = nb - 1, s = 1; k >= 0; k--) {
		dims[k] = (int)v[k];
		strides[k] = s;
		s *= dims[k];
	}
	DNN(cudnnCreateTensorDescriptor(d), "cudnnCreateTensorDescriptor");
	DNN(cudnnSetTensorNdDescriptor(*d, CUDNN_DATA_FLOAT, nb, dims, strides), "cudnnSetTensorNdDescriptor");
	return NNP_OK;
}

static int value_desc(const struct nnp_cuda_tnet *t, const struct dval *val, cudnnTensorDescriptor_t *d)
{
	int64_t v[5];
	v[0] = t->plan.n;
	v[1] = val->c;
	for (int k = 0; k < t->g.arch.ndim; k++)
		v[2 + k] = t->plan.lsp[val->level][k];
	return packed_desc(v, 2 + t->g.arch.ndim, d);
}

/* Values: one per operator output, as on the CPU; heads resolved. */
static int plan_values(struct nnp_cuda_tnet *t)
{
	struct tplan *p = &t->plan;
	const struct nnp_net_graph *g = &t->g;
	int *tval = (int *)malloc((size_t)g->ntensors * sizeof *tval);

	p->v = (struct dval *)calloc((size_t)g->nops + 1, sizeof *p->v);
	p->s = (struct tstep *)calloc((size_t)g->nops, sizeof *p->s);
	if (!tval || !p->v || !p->s) {
		free(tval);
		return nnp_err(NNP_ENOMEM, "training network: out of memory");
	}
	tval[0] = 0;
	p->v[0].c = g->tensors[0].channels;
	p->nv = 1;
	for (int i = 0; i < g->nops; i++) {
		const struct nnp_op *op = &g->ops[i];
		struct tstep *s = &p->s[i];
		s->vin[0] = tval[op->in];
		s->vin[1] = op->in2 >= 0 ? tval[op->in2] : -1;
		p->v[p->nv].c = g->tensors[op->out].channels;
		p->v[p->nv].level = g->tensors[op->out].level;
		s->vout = p->nv;
		tval[op->out] = p->nv++;
	}
	for (int h = 0; h < t->nheads; h++)
		p->headv[h] = tval[t->heads[h]];
	free(tval);
	return NNP_OK;
}

static int plan_buffers(struct nnp_cuda_tnet *t)
{
	struct tplan *p = &t->plan;
	for (int i = 0; i < p->nv; i++) {
		struct dval *v = &p->v[i];
		size_t bytes;
		int rc;
		v->elems = (int64_t)p->n * v->c * level_vox(t, v->level);
		bytes = (size_t)v->elems * sizeof(float);
		if ((rc = value_desc(t, v, &v->d)) ||
		    (rc = dev_alloc((void **)&v->x, bytes, "cannot allocate GPU memory for the activations")))
			return rc;
		if (i > 0 && (rc = dev_alloc((void **)&v->g, bytes, "cannot allocate GPU memory for the gradients")))
			return rc;
	}
	return NNP_OK;
}

/* ---- plan: convolutions ---- */

static cudnnMathType_t base_math(const struct nnp_cuda_tnet *t)
{
	return t->plan.prec == NNP_PREC_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
}

/* fp32 never uses tensor cores (TF32); no mode down-converts to fp16. */
static int math_ok(const struct nnp_cuda_tnet *t, cudnnMathType_t m)
{
	if (m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
		return 0;
	return t->plan.prec != NNP_PREC_FP32 || m != CUDNN_TENSOR_OP_MATH;
}

/* fp32: algorithms that compute the plain sum of products (no FFT/Winograd). */
static int exact_algo(int dir, int a)
{
	if (dir == D_FWD)
		return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
		       a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
	return dir == D_BWD_DATA ? a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 : a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
}

/* Deterministic algorithms that support every shape, tried last. */
static const int fallback_algo[D_COUNT] = { CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
					    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 };

struct cand {
	int algo;
	cudnnStatus_t status;
	cudnnDeterminism_t det;
	cudnnMathType_t math;
};

/* The heuristics' results of any direction as candidates. */
#define TAKE(perf, n, out)                                     \
	for (int i_ = 0; i_ < (n) && i_ < MAX_ALGOS; i_++) {   \
		(out)[i_].algo = (int)(perf)[i_].algo;         \
		(out)[i_].status = (perf)[i_].status;          \
		(out)[i_].det = (perf)[i_].determinism;        \
		(out)[i_].math = (perf)[i_].mathType;          \
	}

static int heuristics(const struct nnp_cuda_tnet *t, const struct tconv *c, int dir, struct cand *out, int *n)
{
	*n = 0;
	if (dir == D_FWD) {
		cudnnConvolutionFwdAlgoPerf_t p[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
		DNN(cudnnGetConvolutionForwardAlgorithm_v7(t->h, c->x, c->f, c->cd[dir], c->y,
							   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, n, p),
		    "cudnnGetConvolutionForwardAlgorithm_v7");
		TAKE(p, *n, out);
	} else if (dir == D_BWD_DATA) {
		cudnnConvolutionBwdDataAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
		DNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(t->h, c->f, c->y, c->cd[dir], c->x,
								CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, n, p),
		    "cudnnGetConvolutionBackwardDataAlgorithm_v7");
		TAKE(p, *n, out);
	} else {
		cudnnConvolutionBwdFilterAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
		DNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(t->h, c->x, c->y, c->cd[dir], c->f,
								  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, n, p),
		    "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
		TAKE(p, *n, out);
	}
	if (*n > MAX_ALGOS)
		*n = MAX_ALGOS;
	return NNP_OK;
}

static cudnnStatus_t ws_size(const struct nnp_cuda_tnet *t, const struct tconv *c, int dir, int algo, size_t *ws)
{
	if (dir == D_FWD)
		return cudnnGetConvolutionForwardWorkspaceSize(t->h, c->x, c->f, c->cd[dir], c->y,
							       (cudnnConvolutionFwdAlgo_t)algo, ws);
	if (dir == D_BWD_DATA)
		return cudnnGetConvolutionBackwardDataWorkspaceSize(t->h, c->f, c->y, c->cd[dir], c->x,
								    (cudnnConvolutionBwdDataAlgo_t)algo, ws);
	return cudnnGetConvolutionBackwardFilterWorkspaceSize(t->h, c->x, c->y, c->cd[dir], c->f,
							      (cudnnConvolutionBwdFilterAlgo_t)algo, ws);
}

/* 1 when (algo, math) works for direction dir of c (recorded), else 0. */
static int try_algo(const struct nnp_cuda_tnet *t, struct tconv *c, int dir, int algo, cudnnMathType_t m)
{
	size_t ws = 0;
	if (cudnnSetConvolutionMathType(c->cd[dir], m) != CUDNN_STATUS_SUCCESS || ws_size(t, c, dir, algo, &ws) !=
	    CUDNN_STATUS_SUCCESS || ws > WS_MAX)
		return 0;
	c->algo[dir] = algo;
	c->math[dir] = (int)m;
	c->ws[dir] = ws;
	return 1;
}

/* The heuristics' first usable result: deterministic, an allowed math type,
 * workspace <= WS_MAX; fp32 first among exact_algo() (then the fallback),
 * and only if none fits a shape, any deterministic algorithm (FFT, Winograd)
 * with FMA math. */
static int pick_algo(const struct nnp_cuda_tnet *t, const struct nnp_op *op, struct tconv *c, int dir)
{
	struct cand cs[MAX_ALGOS];
	int n = 0, rc, fp32 = t->plan.prec == NNP_PREC_FP32;

	DNN(cudnnSetConvolutionMathType(c->cd[dir], base_math(t)), "cudnnSetConvolutionMathType");
	if ((rc = heuristics(t, c, dir, cs, &n)))
		return rc;
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < n; i++) {
			if (cs[i].status != CUDNN_STATUS_SUCCESS || cs[i].det != CUDNN_DETERMINISTIC ||
			    !math_ok(t, cs[i].math) || (fp32 && !pass && !exact_algo(dir, cs[i].algo)))
				continue;
			if (try_algo(t, c, dir, cs[i].algo, fp32 ? CUDNN_FMA_MATH : cs[i].math))
				return NNP_OK;
		}
		if (!pass && try_algo(t, c, dir, fallback_algo[dir], base_math(t)))
			return NNP_OK;
	}
	return nnp_err(NNP_EIO, "cuDNN: %s: no deterministic %s convolution algorithm for this shape", op->w,
		       dir_name[dir]);
}

/* The convolution (x, f) must produce exactly the dims of y. */
static int check_out_dims(const struct nnp_cuda_tnet *t, const struct nnp_op *op, const struct tconv *c)
{
	int nb = 2 + t->g.arch.ndim, got[5], wd[5], ws[5], wn = 0;
	cudnnDataType_t dt;
	DNN(cudnnGetConvolutionNdForwardOutputDim(c->cd[D_FWD], c->x, c->f, nb, got),
	    "cudnnGetConvolutionNdForwardOutputDim");
	DNN(cudnnGetTensorNdDescriptor(c->y, nb, &dt, &wn, wd, ws), "cudnnGetTensorNdDescriptor");
	for (int k = 0; k < nb; k++)
		if (wn != nb || got[k] != wd[k])
			return nnp_err(NNP_EINTERNAL, "training network on the GPU: %s: convolution output dim %d is %d, "
				       "expected %d", op->w, k, got[k], k < wn ? wd[k] : -1);
	return NNP_OK;
}

/* Conv side x -> y with filter (ky, kx, kernel); padding (k-1)/2, or 0 for
 * a transposed conv; descriptors, output check and three algorithms. */
static int conv_plan(const struct nnp_cuda_tnet *t, const struct nnp_op *op, struct tconv *c, int ky, int kx,
		     cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t y)
{
	int nd = t->g.arch.ndim, fd[5], pad[3], st[3], dil[3], rc;
	fd[0] = ky;
	fd[1] = kx;
	for (int d = 0; d < nd; d++) {
		fd[2 + d] = op->kernel[d];
		st[d] = op->stride[d];
		pad[d] = op->kind == NNP_OP_DECONV ? 0 : (op->kernel[d] - 1) / 2;
		dil[d] = 1;
	}
	c->x = x;
	c->y = y;
	DNN(cudnnCreateFilterDescriptor(&c->f), "cudnnCreateFilterDescriptor");
	DNN(cudnnSetFilterNdDescriptor(c->f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 2 + nd, fd),
	    "cudnnSetFilterNdDescriptor");
	for (int d = 0; d < D_COUNT; d++) {
		DNN(cudnnCreateConvolutionDescriptor(&c->cd[d]), "cudnnCreateConvolutionDescriptor");
		DNN(cudnnSetConvolutionNdDescriptor(c->cd[d], nd, pad, st, dil, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
		    "cudnnSetConvolutionNdDescriptor");
	}
	if ((rc = check_out_dims(t, op, c)))
		return rc;
	for (int d = 0; d < D_COUNT; d++)
		if ((rc = pick_algo(t, op, c, d)))
			return rc;
	return NNP_OK;
}

static int bias_desc(const struct nnp_cuda_tnet *t, int C, cudnnTensorDescriptor_t *d)
{
	int64_t v[5] = { 1, C, 1, 1, 1 };
	return packed_desc(v, 2 + t->g.arch.ndim, d);
}

static int plan_convs(struct nnp_cuda_tnet *t, int i)
{
	const struct nnp_op *op = &t->g.ops[i];
	struct tstep *s = &t->plan.s[i];
	struct dval *v = t->plan.v;
	int rc, cout = v[s->vout].c;

	if (t->o[i].pb >= 0 && (rc = bias_desc(t, cout, &s->bias)))
		return rc;
	if (op->kind == NNP_OP_DECONV) {
		s->nparts = 1;
		return conv_plan(t, op, &s->cv[0], v[s->vin[0]].c, cout, v[s->vout].d, v[s->vin[0]].d);
	}
	s->nparts = op->in2 >= 0 ? 2 : 1;
	for (int k = 0; k < s->nparts; k++)
		if ((rc = conv_plan(t, op, &s->cv[k], cout, v[s->vin[k]].c, v[s->vin[k]].d, v[s->vout].d)))
			return rc;
	return NNP_OK;
}

/* ---- plan: the other operators ---- */

struct normsize {
	size_t part, sums;          /* doubles */
};

static int plan_norm(struct nnp_cuda_tnet *t, int i, struct normsize *ns)
{
	struct tstep *s = &t->plan.s[i];
	const struct dval *v = &t->plan.v[s->vout];
	int64_t S = level_vox(t, v->level), nch = (S + NORM_CHUNK - 1) / NORM_CHUNK;
	size_t nC = (size_t)t->plan.n * (size_t)v->c;
	int rc;

	if (nch > 65535 || nC > INT32_MAX)
		return nnp_err(NNP_EUSAGE, "training network on the GPU: %s: %lld voxels x %zu channels is too large",
			       t->g.ops[i].w, (long long)S, nC);
	if (nC * (size_t)nch * 2 > ns->part)
		ns->part = nC * (size_t)nch * 2;
	if (nC * 2 > ns->sums)
		ns->sums = nC * 2;
	if ((rc = dev_alloc((void **)&s->mean, nC * sizeof(double), "cannot allocate GPU memory for norm statistics")) ||
	    (rc = dev_alloc((void **)&s->rstd, nC * sizeof(double), "cannot allocate GPU memory for norm statistics")))
		return rc;
	return NNP_OK;
}

static int plan_pool(const struct nnp_cuda_tnet *t, int i)
{
	const struct nnp_op *op = &t->g.ops[i];
	const struct tstep *s = &t->plan.s[i];
	const struct dval *vi = &t->plan.v[s->vin[0]], *vo = &t->plan.v[s->vout];
	const int64_t *a = t->plan.lsp[vi->level], *b = t->plan.lsp[vo->level];
	if (vi->c != vo->c)
		return nnp_err(NNP_EINTERNAL, "training network on the GPU: %s: pooling changes channels", op->w);
	for (int d = 0; d < t->g.arch.ndim; d++)
		if (a[d] != b[d] * op->kernel[d] || op->kernel[d] != op->stride[d])
			return nnp_err(NNP_EINTERNAL, "training network on the GPU: %s: pooling axis %d: %lld -> %lld "
				       "with kernel %d", op->w, d, (long long)a[d], (long long)b[d], op->kernel[d]);
	return NNP_OK;
}

static int plan_step(struct nnp_cuda_tnet *t, int i, struct normsize *ns)
{
	const struct nnp_op *op = &t->g.ops[i];
	const struct tstep *s = &t->plan.s[i];
	switch (op->kind) {
	case NNP_OP_CONV:
	case NNP_OP_DECONV:
		return plan_convs(t, i);
	case NNP_OP_NORM_ACT:
		return plan_norm(t, i, ns);
	case NNP_OP_ADD_ACT:
		if (t->plan.v[s->vin[0]].elems != t->plan.v[s->vout].elems ||
		    t->plan.v[s->vin[1]].elems != t->plan.v[s->vout].elems)
			return nnp_err(NNP_EINTERNAL, "training network on the GPU: %s: residual add of different sizes",
				       op->w);
		return NNP_OK;
	case NNP_OP_AVGPOOL:
		return plan_pool(t, i);
	}
	return nnp_err(NNP_EINTERNAL, "training network on the GPU: unknown operator %d", (int)op->kind);
}

static void profile_step(const struct nnp_cuda_tnet *t, int i)
{
	const struct tstep *s = &t->plan.s[i];
	for (int k = 0; k < s->nparts; k++) {
		const struct tconv *c = &s->cv[k];
		fprintf(stderr, "nnp-tnet: cuda plan %s%s:", t->g.ops[i].w, k ? " (skip input)" : "");
		for (int d = 0; d < D_COUNT; d++)
			fprintf(stderr, " %s algo %d math %d ws %zu%s", dir_name[d], c->algo[d], c->math[d], c->ws[d],
				d + 1 < D_COUNT ? ";" : "\n");
	}
}

static int plan_scratch(struct nnp_cuda_tnet *t, const struct normsize *ns)
{
	struct tplan *p = &t->plan;
	int rc;
	for (int i = 0; i < t->g.nops; i++)
		for (int k = 0; k < p->s[i].nparts; k++)
			for (int d = 0; d < D_COUNT; d++)
				if (p->s[i].cv[k].ws[d] > p->ws_bytes)
					p->ws_bytes = p->s[i].cv[k].ws[d];
	if (p->ws_bytes && (rc = dev_alloc(&p->ws, p->ws_bytes, "cannot allocate the cuDNN workspace")))
		return rc;
	if (ns->part &&
	    ((rc = dev_alloc((void **)&p->part, ns->part * sizeof(double), "cannot allocate GPU memory for norm sums")) ||
	     (rc = dev_alloc((void **)&p->sums, ns->sums * sizeof(double), "cannot allocate GPU memory for norm sums")) ||
	     (rc = dev_alloc((void **)&p->ac, ns->sums * sizeof(float), "cannot allocate GPU memory for norm sums"))))
		return rc;
	return NNP_OK;
}

static int plan_build(struct nnp_cuda_tnet *t, int n, const int64_t *sp)
{
	struct tplan *p = &t->plan;
	const struct nnp_net_arch *a = &t->g.arch;
	struct normsize ns = { 0, 0 };
	int rc;

	if (p->valid && p->n == n && p->prec == t->prec && !memcmp(p->sp, sp, (size_t)a->ndim * sizeof *sp))
		return NNP_OK;
	plan_release(t);
	p->n = n;
	p->prec = t->prec;
	memcpy(p->sp, sp, (size_t)a->ndim * sizeof *sp);
	for (int l = 0; l < a->n_stages; l++)
		for (int d = 0; d < a->ndim; d++)
			p->lsp[l][d] = sp[d] / nnp_net_level_div(a, l, d);
	rc = plan_values(t);
	if (!rc)
		rc = plan_buffers(t);
	for (int i = 0; i < t->g.nops && !rc; i++) {
		rc = plan_step(t, i, &ns);
		if (!rc && t->profile)
			profile_step(t, i);
	}
	if (!rc)
		rc = plan_scratch(t, &ns);
	if (rc) {
		plan_release(t);
		return rc;
	}
	p->valid = 1;
	return NNP_OK;
}

/* ---- forward ---- */

static int add_bias(struct nnp_cuda_tnet *t, int i)
{
	const struct dval *v = &t->plan.v[t->plan.s[i].vout];
	if (t->o[i].pb < 0)
		return NNP_OK;
	bias_kernel<<<grid_for(v->elems), NT, 0, t->stream>>>(v->x, t->p[t->o[i].pb].w, v->c,
							       v->elems / ((int64_t)t->plan.n * v->c), v->elems);
	LAUNCHED("bias kernel");
	return NNP_OK;
}

static int fwd_conv(struct nnp_cuda_tnet *t, int i)
{
	struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	for (int k = 0; k < s->nparts; k++) {
		const struct tconv *c = &s->cv[k];
		DNN(cudnnConvolutionForward(t->h, &k_one, c->x, p->v[s->vin[k]].x, c->f, conv_w(t, i, k), c->cd[D_FWD],
					    (cudnnConvolutionFwdAlgo_t)c->algo[D_FWD], p->ws, p->ws_bytes,
					    k ? &k_one : &k_zero, c->y, p->v[s->vout].x),
		    "cudnnConvolutionForward");
	}
	return add_bias(t, i);
}

static int fwd_deconv(struct nnp_cuda_tnet *t, int i)
{
	struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	const struct tconv *c = &s->cv[0];
	DNN(cudnnConvolutionBackwardData(t->h, &k_one, c->f, conv_w(t, i, 0), c->y, p->v[s->vin[0]].x,
					 c->cd[D_BWD_DATA], (cudnnConvolutionBwdDataAlgo_t)c->algo[D_BWD_DATA], p->ws,
					 p->ws_bytes, &k_zero, c->x, p->v[s->vout].x),
	    "cudnnConvolutionBackwardData (transposed convolution)");
	return add_bias(t, i);
}

static int fwd_norm(struct nnp_cuda_tnet *t, int i)
{
	struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	const struct dop *o = &t->o[i];
	const struct dval *vi = &p->v[s->vin[0]], *vo = &p->v[s->vout];
	int64_t S = level_vox(t, vo->level), nch = (S + NORM_CHUNK - 1) / NORM_CHUNK;
	int nC = p->n * vo->c;

	norm_fsum_kernel<<<dim3((unsigned)nC, (unsigned)nch), NT, 0, t->stream>>>(vi->x, S, (int)nch, p->part);
	LAUNCHED("instance norm: sums kernel");
	norm_combine_kernel<<<(nC + NT - 1) / NT, NT, 0, t->stream>>>(p->part, (int)nch, nC, p->sums);
	LAUNCHED("instance norm: combine kernel");
	norm_stats_kernel<<<(nC + NT - 1) / NT, NT, 0, t->stream>>>(
		p->sums, nC, vo->c, S, o->pw >= 0 ? t->p[o->pw].w : NULL, o->pb >= 0 ? t->p[o->pb].w : NULL,
		t->g.arch.norm_eps, s->mean, s->rstd, p->ac);
	LAUNCHED("instance norm: statistics kernel");
	norm_apply_kernel<<<grid_for(vo->elems), NT, 0, t->stream>>>(vi->x, vo->x, p->ac, S, vo->elems, t->g.ops[i].act,
								      (float)t->g.arch.slope);
	LAUNCHED("instance norm: apply kernel");
	return NNP_OK;
}

static int fwd_pool(struct nnp_cuda_tnet *t, int i)
{
	const struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	const struct dval *vo = &p->v[s->vout];
	const int64_t *o = p->lsp[vo->level];
	int k[3] = { 1, 1, 1 };
	int64_t od[3] = { 1, 1, 1 };
	for (int d = 0; d < t->g.arch.ndim; d++) {
		k[d] = t->g.ops[i].kernel[d];
		od[d] = o[d];
	}
	avgpool_kernel<<<grid_for(vo->elems), NT, 0, t->stream>>>(p->v[s->vin[0]].x, vo->x, (int64_t)p->n * vo->c, od[0],
								   od[1], od[2], k[0], k[1], k[2]);
	LAUNCHED("average pooling kernel");
	return NNP_OK;
}

static int fwd_step(struct nnp_cuda_tnet *t, int i)
{
	const struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	switch (t->g.ops[i].kind) {
	case NNP_OP_CONV:
		return fwd_conv(t, i);
	case NNP_OP_DECONV:
		return fwd_deconv(t, i);
	case NNP_OP_NORM_ACT:
		return fwd_norm(t, i);
	case NNP_OP_ADD_ACT:
		add_act_kernel<<<grid_for(p->v[s->vout].elems), NT, 0, t->stream>>>(
			p->v[s->vin[0]].x, p->v[s->vin[1]].x, p->v[s->vout].x, p->v[s->vout].elems, (float)t->g.arch.slope);
		LAUNCHED("residual add kernel");
		return NNP_OK;
	case NNP_OP_AVGPOOL:
		return fwd_pool(t, i);
	}
	return nnp_err(NNP_EINTERNAL, "training network on the GPU: unknown operator %d", (int)t->g.ops[i].kind);
}

extern "C" int nnp_cuda_tnet_forward(struct nnp_cuda_tnet *t, int n, const int64_t *spatial, const float *host_in)
{
	struct tplan *p = &t->plan;
	int rc;

	if (n < 1)
		return nnp_err(NNP_EUSAGE, "training network: batch size %d", n);
	if (!t->uploaded)
		return nnp_err(NNP_EUSAGE, "training network on the GPU: forward before the parameters were uploaded");
	if ((rc = nnp_net_check_shape(&t->g.arch, spatial)))
		return rc;
	CU(cudaSetDevice(t->device), "cannot select the GPU");
	p->forwarded = 0;
	if ((rc = plan_build(t, n, spatial)) || (rc = split_weights(t)))
		return rc;
	CU(cudaMemcpyAsync(p->v[0].x, host_in, (size_t)p->v[0].elems * sizeof(float), cudaMemcpyHostToDevice,
			   t->stream),
	   "cannot copy the input to the GPU");
	for (int i = 0; i < t->g.nops; i++)
		if ((rc = fwd_step(t, i)))
			return rc;
	CU(cudaStreamSynchronize(t->stream), "training network forward on the GPU");
	p->forwarded = 1;
	return NNP_OK;
}

extern "C" int nnp_cuda_tnet_nheads(const struct nnp_cuda_tnet *t)
{
	return t->nheads;
}

extern "C" int nnp_cuda_tnet_head_shape(const struct nnp_cuda_tnet *t, int h, int64_t shape[5])
{
	const struct tplan *p = &t->plan;
	const struct dval *v;
	if (!p->forwarded || h < 0 || h >= t->nheads)
		return nnp_err(NNP_EUSAGE, "training network: no head %d (run a forward first)", h);
	v = &p->v[p->headv[h]];
	shape[0] = p->n;
	shape[1] = v->c;
	for (int d = 0; d < t->g.arch.ndim; d++)
		shape[2 + d] = p->lsp[v->level][d];
	return 2 + t->g.arch.ndim;
}

extern "C" int nnp_cuda_tnet_output(struct nnp_cuda_tnet *t, int head, float *host_out)
{
	int64_t shape[5];
	const struct dval *v;
	int rc;
	if ((rc = nnp_cuda_tnet_head_shape(t, head, shape)) < 0)
		return rc;
	v = &t->plan.v[t->plan.headv[head]];
	CU(cudaSetDevice(t->device), "cannot select the GPU");
	CU(cudaMemcpyAsync(host_out, v->x, (size_t)v->elems * sizeof(float), cudaMemcpyDeviceToHost, t->stream),
	   "cannot copy a head from the GPU");
	CU(cudaStreamSynchronize(t->stream), "copying a head from the GPU");
	return NNP_OK;
}

/* ---- backward ---- */

/* cuDNN's beta for a contribution to v's gradient: 0 first, 1 afterwards. */
static const float *grad_beta(struct dval *v)
{
	const float *b = v->written ? &k_one : &k_zero;
	v->written = 1;
	return b;
}

/* Own kernels' flag: add (1) or write (0). */
static int grad_acc(struct dval *v)
{
	int acc = v->written;
	v->written = 1;
	return acc;
}

static int bwd_bias(struct nnp_cuda_tnet *t, int i)
{
	const struct tstep *s = &t->plan.s[i];
	const struct dval *vo = &t->plan.v[s->vout];
	if (t->o[i].pb < 0)
		return NNP_OK;
	DNN(cudnnConvolutionBackwardBias(t->h, &k_one, vo->d, vo->g, &k_zero, s->bias, t->p[t->o[i].pb].g),
	    "cudnnConvolutionBackwardBias");
	return NNP_OK;
}

static int bwd_conv(struct nnp_cuda_tnet *t, int i)
{
	struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	const float *dy = p->v[s->vout].g;
	int rc;

	if ((rc = bwd_bias(t, i)))
		return rc;
	for (int k = 0; k < s->nparts; k++) {
		const struct tconv *c = &s->cv[k];
		struct dval *vi = &p->v[s->vin[k]];
		DNN(cudnnConvolutionBackwardFilter(t->h, &k_one, c->x, vi->x, c->y, dy, c->cd[D_BWD_FILTER],
						   (cudnnConvolutionBwdFilterAlgo_t)c->algo[D_BWD_FILTER], p->ws,
						   p->ws_bytes, &k_zero, c->f, conv_g(t, i, k)),
		    "cudnnConvolutionBackwardFilter");
		if (s->vin[k] == 0)
			continue;   /* no gradient for the network input */
		DNN(cudnnConvolutionBackwardData(t->h, &k_one, c->f, conv_w(t, i, k), c->y, dy, c->cd[D_BWD_DATA],
						 (cudnnConvolutionBwdDataAlgo_t)c->algo[D_BWD_DATA], p->ws, p->ws_bytes,
						 grad_beta(vi), c->x, vi->g),
		    "cudnnConvolutionBackwardData");
	}
	return s->nparts == 2 ? merge_grads(t, i) : NNP_OK;
}

/* The transposed conv's conv side: x = its output (gradient dy), y = its input. */
static int bwd_deconv(struct nnp_cuda_tnet *t, int i)
{
	struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	const struct tconv *c = &s->cv[0];
	struct dval *vi = &p->v[s->vin[0]];
	const float *dy = p->v[s->vout].g;
	int rc;

	if ((rc = bwd_bias(t, i)))
		return rc;
	DNN(cudnnConvolutionBackwardFilter(t->h, &k_one, c->x, dy, c->y, vi->x, c->cd[D_BWD_FILTER],
					   (cudnnConvolutionBwdFilterAlgo_t)c->algo[D_BWD_FILTER], p->ws, p->ws_bytes,
					   &k_zero, c->f, conv_g(t, i, 0)),
	    "cudnnConvolutionBackwardFilter (transposed convolution)");
	if (s->vin[0] == 0)
		return NNP_OK;
	DNN(cudnnConvolutionForward(t->h, &k_one, c->x, dy, c->f, conv_w(t, i, 0), c->cd[D_FWD],
				    (cudnnConvolutionFwdAlgo_t)c->algo[D_FWD], p->ws, p->ws_bytes, grad_beta(vi), c->y,
				    vi->g),
	    "cudnnConvolutionForward (transposed convolution backward)");
	return NNP_OK;
}

static int bwd_norm(struct nnp_cuda_tnet *t, int i)
{
	struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	const struct dop *o = &t->o[i];
	struct dval *vi = &p->v[s->vin[0]];
	const struct dval *vo = &p->v[s->vout];
	int64_t S = level_vox(t, vo->level), nch = (S + NORM_CHUNK - 1) / NORM_CHUNK;
	int nC = p->n * vo->c, act = t->g.ops[i].act;
	float slope = (float)t->g.arch.slope;

	norm_bsum_kernel<<<dim3((unsigned)nC, (unsigned)nch), NT, 0, t->stream>>>(vi->x, vo->x, vo->g, s->mean, s->rstd, S,
										   (int)nch, act, slope, p->part);
	LAUNCHED("instance norm backward: sums kernel");
	norm_combine_kernel<<<(nC + NT - 1) / NT, NT, 0, t->stream>>>(p->part, (int)nch, nC, p->sums);
	LAUNCHED("instance norm backward: combine kernel");
	if (o->pw >= 0 || o->pb >= 0) {
		norm_pgrad_kernel<<<(vo->c + NT - 1) / NT, NT, 0, t->stream>>>(
			p->sums, p->n, vo->c, o->pw >= 0 ? t->p[o->pw].g : NULL, o->pb >= 0 ? t->p[o->pb].g : NULL);
		LAUNCHED("instance norm backward: parameter kernel");
	}
	if (s->vin[0] == 0)
		return NNP_OK;
	norm_dx_kernel<<<grid_for(vo->elems), NT, 0, t->stream>>>(vi->x, vo->x, vo->g, s->mean, s->rstd, p->sums,
								   o->pw >= 0 ? t->p[o->pw].w : NULL, vo->c, S,
								   vo->elems, act, slope, vi->g, grad_acc(vi));
	LAUNCHED("instance norm backward: input gradient kernel");
	return NNP_OK;
}

static int bwd_add(struct nnp_cuda_tnet *t, int i)
{
	struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	const struct dval *vo = &p->v[s->vout];
	for (int k = 0; k < 2; k++) {
		struct dval *vi = &p->v[s->vin[k]];
		if (s->vin[k] == 0)
			continue;
		act_back_kernel<<<grid_for(vo->elems), NT, 0, t->stream>>>(vo->g, vo->x, vi->g, vo->elems,
									    (float)t->g.arch.slope, grad_acc(vi));
		LAUNCHED("residual add backward kernel");
	}
	return NNP_OK;
}

static int bwd_pool(struct nnp_cuda_tnet *t, int i)
{
	struct tplan *p = &t->plan;
	const struct tstep *s = &p->s[i];
	const struct dval *vo = &p->v[s->vout];
	struct dval *vi = &p->v[s->vin[0]];
	const int64_t *o = p->lsp[vo->level];
	int k[3] = { 1, 1, 1 };
	int64_t od[3] = { 1, 1, 1 };
	if (s->vin[0] == 0)
		return NNP_OK;
	for (int d = 0; d < t->g.arch.ndim; d++) {
		k[d] = t->g.ops[i].kernel[d];
		od[d] = o[d];
	}
	avgpool_back_kernel<<<grid_for(vi->elems), NT, 0, t->stream>>>(vo->g, vi->g, (int64_t)p->n * vo->c, od[0], od[1],
									od[2], k[0], k[1], k[2], grad_acc(vi));
	LAUNCHED("average pooling backward kernel");
	return NNP_OK;
}

static int bwd_step(struct nnp_cuda_tnet *t, int i)
{
	if (!t->plan.v[t->plan.s[i].vout].written)
		return NNP_OK;   /* nothing flows back through this operator */
	switch (t->g.ops[i].kind) {
	case NNP_OP_CONV:
		return bwd_conv(t, i);
	case NNP_OP_DECONV:
		return bwd_deconv(t, i);
	case NNP_OP_NORM_ACT:
		return bwd_norm(t, i);
	case NNP_OP_ADD_ACT:
		return bwd_add(t, i);
	case NNP_OP_AVGPOOL:
		return bwd_pool(t, i);
	}
	return nnp_err(NNP_EINTERNAL, "training network on the GPU: unknown operator %d", (int)t->g.ops[i].kind);
}

extern "C" int nnp_cuda_tnet_backward(struct nnp_cuda_tnet *t, const float *const *host_dout)
{
	struct tplan *p = &t->plan;
	int rc;

	if (!p->forwarded)
		return nnp_err(NNP_EUSAGE, "training network: backward without a forward");
	CU(cudaSetDevice(t->device), "cannot select the GPU");
	for (int i = 0; i < t->np; i++)
		CU(cudaMemsetAsync(t->p[i].g, 0, (size_t)t->p[i].n * sizeof(float), t->stream),
		   "cannot clear the gradients");
	for (int i = 0; i < p->nv; i++)
		p->v[i].written = 0;
	for (int h = 0; h < t->nheads; h++) {
		struct dval *v = &p->v[p->headv[h]];
		if (!host_dout[h])
			continue;
		CU(cudaMemcpyAsync(v->g, host_dout[h], (size_t)v->elems * sizeof(float), cudaMemcpyHostToDevice,
				   t->stream),
		   "cannot copy a head gradient to the GPU");
		v->written = 1;
	}
	for (int i = t->g.nops - 1; i >= 0; i--)
		if ((rc = bwd_step(t, i)))
			return rc;
	CU(cudaStreamSynchronize(t->stream), "training network backward on the GPU");
	return NNP_OK;
}

/* ---- lifecycle ---- */

extern "C" int nnp_cuda_tnet_available(int device)
{
	int ndev = 0, major = 0;
	if (device < 0)
		return 0;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || device >= ndev ||
	    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
		cudaGetLastError();
		return 0;
	}
	return major >= 8 && cudnnGetVersion() / 10000 == CUDNN_MAJOR;
}

extern "C" int nnp_cuda_tnet_set_precision(struct nnp_cuda_tnet *t, enum nnp_precision prec)
{
	if (prec != NNP_PREC_FP32 && prec != NNP_PREC_BF16)
		return nnp_err(NNP_EUSAGE, "training network: unknown precision %d", (int)prec);
	t->prec = prec;
	t->plan.forwarded = 0;
	return NNP_OK;
}

static int check_device(int device)
{
	int ndev = 0;
	cudaError_t ce = cudaGetDeviceCount(&ndev);
	if (ce == cudaErrorNoDevice || ce == cudaErrorInsufficientDriver) {
		cudaGetLastError();
		ndev = 0;
	} else if (ce != cudaSuccess) {
		return cu_fail(ce, "cannot count CUDA devices");
	}
	if (device < 0 || device >= ndev)
		return nnp_err(NNP_EUSAGE, "device cuda:%d does not exist (%d CUDA device%s)", device, ndev,
			       ndev == 1 ? "" : "s");
	if (cudnnGetVersion() / 10000 != CUDNN_MAJOR)
		return nnp_err(NNP_EIO, "cuDNN: the library is version %zu, this program was built with %d.%d.%d",
			       cudnnGetVersion(), CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
	return NNP_OK;
}

static int open_device(struct nnp_cuda_tnet *t)
{
	cudnnStatus_t ds;
	CU(cudaSetDevice(t->device), "cannot select the GPU");
	CU(cudaStreamCreateWithFlags(&t->stream, cudaStreamNonBlocking), "cannot create a CUDA stream");
	if ((ds = cudnnCreate(&t->h)) != CUDNN_STATUS_SUCCESS) {
		t->h = NULL;
		return dnn_fail(ds, "cudnnCreate (is libcudnn installed and matching the driver?)");
	}
	DNN(cudnnSetStream(t->h, t->stream), "cudnnSetStream");
	return NNP_OK;
}

extern "C" int nnp_cuda_tnet_create(const struct nnp_net_graph *g, int device, struct nnp_cuda_tnet **out)
{
	struct nnp_cuda_tnet *t;
	int rc;

	*out = NULL;
	if ((rc = check_device(device)))
		return rc;
	if (!(t = (struct nnp_cuda_tnet *)calloc(1, sizeof *t)))
		return nnp_err(NNP_ENOMEM, "training network: out of memory");
	t->device = device;
	t->prec = NNP_PREC_FP32;
	t->profile = getenv("NNP_TNET_PROFILE") != NULL;
	if ((rc = nnp_net_graph_copy(g, &t->g))) {
		free(t);
		return rc;
	}
	t->nheads = g->n_ds > 0 ? g->n_ds : 1;
	for (int h = 0; h < t->nheads; h++)
		t->heads[h] = g->n_ds > 0 ? g->ds_out[h] : g->out;
	t->p = (struct dparam *)calloc((size_t)g->nops * 2, sizeof *t->p);
	t->o = (struct dop *)calloc((size_t)g->nops, sizeof *t->o);
	if (!t->p || !t->o)
		rc = nnp_err(NNP_ENOMEM, "training network: out of memory");
	if (!rc)
		rc = open_device(t);
	for (int i = 0; i < g->nops && !rc; i++)
		rc = op_params(t, i);
	if (!rc) {
		cudaError_t ce = cudaStreamSynchronize(t->stream);
		if (ce != cudaSuccess)
			rc = cu_fail(ce, "clearing the gradients on the GPU");
	}
	if (rc) {
		nnp_cuda_tnet_free(t);
		return rc;
	}
	*out = t;
	return NNP_OK;
}

extern "C" void nnp_cuda_tnet_free(struct nnp_cuda_tnet *t)
{
	if (!t)
		return;
	cudaSetDevice(t->device);
	if (t->stream)
		cudaStreamSynchronize(t->stream);
	plan_release(t);
	if (t->p)
		for (int i = 0; i < t->np; i++) {
			cudaFree(t->p[i].w);
			cudaFree(t->p[i].g);
		}
	if (t->o)
		for (int i = 0; i < t->g.nops; i++)
			for (int k = 0; k < 2; k++) {
				cudaFree(t->o[i].wpart[k]);
				cudaFree(t->o[i].gpart[k]);
			}
	if (t->h)
		cudnnDestroy(t->h);
	if (t->stream)
		cudaStreamDestroy(t->stream);
	free(t->p);
	free(t->o);
	nnp_net_graph_release(&t->g);
	free(t);
}
