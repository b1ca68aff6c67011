/* engine_cuda.cu — the CUDA backend of the network engine (engine_cuda.h).
 *
 * Layout: every activation is a packed float32 NCDHW (2D: NCHW) device
 * array of its own — no buffer reuse, so that a later backward pass finds
 * every operator's output (and the norms' per-(sample, channel) mean and
 * 1/std, kept per NORM_ACT op) still in place.  NORM_ACT and ADD_ACT work in
 * place, exactly as the graph says (net.h).
 *
 * Operators (the semantics of the CPU backend in engine.c):
 *   CONV     cudnnConvolutionForward, padding (k-1)/2, stride; a second
 *            input (the decoder's skip) is a second convolution with the
 *            weight's second input-channel block, accumulated with beta = 1;
 *            then the bias (own kernel).
 *   DECONV   cudnnConvolutionBackwardData: the PyTorch weight (in, out, k) is
 *            the filter (K = in, C = out, k) of a convolution from `out` to
 *            `in` channels with stride = kernel and no padding; then the bias.
 *   NORM_ACT own kernels: partial sums and sums of squares in float64 per
 *            (sample, channel, chunk), coefficients in float64 (biased
 *            variance, eps from the arch), then y = x * a + c and LeakyReLU.
 *   ADD_ACT  own kernel, in = LeakyReLU(in + in2).
 *   AVGPOOL  own kernel, kernel = stride, no padding.
 *
 * Plan: descriptors, algorithms and activation buffers for one (n, spatial),
 * rebuilt when the shape changes; one workspace of the largest size any
 * chosen algorithm needs.  Algorithms come from cuDNN's heuristics
 * (cudnnGet*Algorithm_v7, nothing is benchmarked), deterministic ones only;
 * in fp32 mode only IMPLICIT_GEMM / IMPLICIT_PRECOMP_GEMM / GEMM / DIRECT
 * (forward) and ALGO_1 (backward data) with CUDNN_FMA_MATH.
 *
 * C linkage; no C++ standard library.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda_check.h"

extern "C" {
#include "err.h"
#include "engine_cuda.h"
#include "net.h"
}

#define NT 256                     /* threads per block of the element-wise kernels */
#define NORM_CHUNK 16384           /* voxels per block of the norm's partial sums */
#define WS_MAX ((size_t)4 << 30)   /* skip algorithms wanting more workspace */

/* ---- errors: cuda_check.h ---- */

/* ---- kernels ---- */

/* y[(n, c, s)] += b[c] over total = N * C * S elements. */
__global__ static void bias_kernel(float *y, const float *b, int C, int64_t S, int64_t total)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
	     i += (int64_t)gridDim.x * blockDim.x)
		y[i] += b[(i / S) % C];
}

/* Partial sums of one (sample, channel) = blockIdx.x over chunk blockIdx.y. */
__global__ static void norm_partial_kernel(const float *x, int64_t S, int nch, double *part)
{
	__shared__ double ss[NT], sq[NT];
	int64_t nc = blockIdx.x, lo = (int64_t)blockIdx.y * NORM_CHUNK;
	int64_t hi = lo + NORM_CHUNK < S ? lo + NORM_CHUNK : S;
	const float *p = x + nc * S;
	double s = 0, q = 0;
	int t = threadIdx.x;

	for (int64_t i = lo + t; i < hi; i += NT) {
		double v = p[i];
		s += v;
		q += v * v;
	}
	ss[t] = s;
	sq[t] = q;
	__syncthreads();
	for (int k = NT / 2; k > 0; k >>= 1) {
		if (t < k) {
			ss[t] += ss[t + k];
			sq[t] += sq[t + k];
		}
		__syncthreads();
	}
	if (t == 0) {
		part[(nc * nch + blockIdx.y) * 2] = ss[0];
		part[(nc * nch + blockIdx.y) * 2 + 1] = sq[0];
	}
}

/* Per (sample, channel): mean and 1/std (kept for a backward pass) and the
 * affine coefficients a = gamma / std, c = beta - mean * gamma / std, as in
 * the CPU backend's norm_coeffs. */
__global__ static void norm_coef_kernel(const double *part, int nch, int nC, int C, int64_t S,
					const float *gamma, const float *beta, double eps, float *stats, float *ac)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	double s = 0, q = 0, mean, var, rstd, g, be;
	if (i >= nC)
		return;
	for (int k = 0; k < nch; k++) {
		s += part[((int64_t)i * nch + k) * 2];
		q += part[((int64_t)i * nch + k) * 2 + 1];
	}
	mean = s / (double)S;
	var = q / (double)S - mean * mean;
	rstd = 1.0 / sqrt((var > 0 ? var : 0) + eps);
	g = gamma ? (double)gamma[i % C] : 1.0;
	be = beta ? (double)beta[i % C] : 0.0;
	stats[2 * i] = (float)mean;
	stats[2 * i + 1] = (float)rstd;
	ac[2 * i] = (float)(g * rstd);
	ac[2 * i + 1] = (float)(be - mean * g * rstd);
}

/* x = x * a + c per (sample, channel), then LeakyReLU (sl = slope) or not (sl = 1). */
__global__ static void norm_apply_kernel(float *x, const float *ac, int64_t S, int64_t total, float sl)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
	     i += (int64_t)gridDim.x * blockDim.x) {
		int64_t nc = i / S;
		float y = x[i] * ac[2 * nc] + ac[2 * nc + 1], m = y * sl;
		x[i] = y > m ? y : m;
	}
}

/* x = LeakyReLU(x + y). */
__global__ static void add_act_kernel(float *x, const float *y, int64_t total, float slope)
{
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
	     i += (int64_t)gridDim.x * blockDim.x) {
		float v = x[i] + y[i], m = v * slope;
		x[i] = v > m ? v : m;
	}
}

/* Average pooling, kernel = stride = (k0, k1, k2), no padding; in is
 * (NC, D, H, W) with D = od * k0 etc. (2D: W = ow = k2 = 1). */
__global__ static void avgpool_kernel(const float *in, float *out, int64_t NC, int64_t od, int64_t oh, int64_t ow,
				      int k0, int k1, int k2)
{
	int64_t total = NC * od * oh * ow, H = oh * k1, W = ow * k2, D = od * k0;
	float inv = (float)(k0 * k1 * k2);
	for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
	     i += (int64_t)gridDim.x * blockDim.x) {
		int64_t x = i % ow, r = i / ow, y = r % oh, z, nc;
		float s = 0;
		r /= oh;
		z = r % od;
		nc = r / od;
		for (int a = 0; a < k0; a++)
			for (int b = 0; b < k1; b++) {
				const float *row = in + ((nc * D + z * k0 + a) * H + y * k1 + b) * W + x * k2;
				for (int c = 0; c < k2; c++)
					s += row[c];
			}
		out[i] = s / inv;
	}
}

static unsigned grid_for(int64_t total)
{
	int64_t b = (total + NT - 1) / NT;
	return (unsigned)(b < 1 ? 1 : b > 65536 ? 65536 : b);
}

/* ---- engine state ---- */

struct dweights {               /* device copies, PyTorch layout */
	float *w, *w2;          /* conv: w2 = the in2 block of input channels */
	float *b;
	float *gamma, *beta;
};

struct cconv {                  /* one cuDNN convolution (forward or backward data) */
	cudnnTensorDescriptor_t x;  /* conv: its input; deconv: dy = the op's input */
	cudnnFilterDescriptor_t f;
	cudnnConvolutionDescriptor_t cd;
	int algo;                   /* cudnnConvolutionFwdAlgo_t or cudnnConvolutionBwdDataAlgo_t */
	int math;                   /* the cudnnMathType_t set on cd */
	size_t ws;
};

struct cstep {
	struct cconv c[2];          /* c[1]: the CONV's second input */
	int nconv;
	cudnnTensorDescriptor_t y;  /* the op's output */
	float *stats;               /* NORM_ACT: (mean, 1/std) per (sample, channel) */
};

struct cplan {
	int valid, n;
	int64_t sp[3];
	int64_t tsp[NNP_NET_MAX_STAGES + 1][3];
	float **t;                  /* per tensor (t[0] = the input) */
	int64_t *telems;
	struct cstep *steps;        /* per op */
	void *ws;
	size_t ws_bytes;
	double *part;               /* norm partial sums, largest norm */
	float *ac;                  /* norm coefficients, largest norm */
};

struct nnp_cuda_engine {
	struct nnp_net_graph g;
	int device;
	enum nnp_precision prec;
	int profile;
	struct dweights *w;
	cudaStream_t stream;
	cudnnHandle_t h;
	struct cplan plan;
};

/* ---- weights ---- */

static int upload(const float *host, size_t n, float **dev)
{
	CU(cudaMalloc((void **)dev, n * sizeof(float)), "cannot allocate GPU memory for the weights");
	CU(cudaMemcpy(*dev, host, n * sizeof(float), cudaMemcpyHostToDevice), "cannot copy the weights to the GPU");
	return NNP_OK;
}

static const float *get_param(const struct nnp_param_src *src, const char *prefix, const char *suffix, int ndim,
			      const int64_t *shape, size_t *n)
{
	char name[NNP_NET_NAME + 16];
	snprintf(name, sizeof name, "%s.%s", prefix, suffix);
	*n = 1;
	for (int i = 0; i < ndim; i++)
		*n *= (size_t)shape[i];
	return src->get(src->ctx, name, ndim, shape);
}

/* The decoder conv's weight (out, c1 + c2, k) as (out, c1, k) and (out, c2, k). */
static int upload_split(const float *w, int64_t cout, int64_t c1, int64_t c2, int64_t kvol, float **a, float **b)
{
	float *ha = (float *)malloc((size_t)(cout * c1 * kvol) * sizeof(float));
	float *hb = (float *)malloc((size_t)(cout * c2 * kvol) * sizeof(float));
	int rc;
	if (!ha || !hb) {
		free(ha);
		free(hb);
		return nnp_err(NNP_ENOMEM, "network weights: out of memory");
	}
	for (int64_t o = 0; o < cout; o++) {
		memcpy(ha + o * c1 * kvol, w + o * (c1 + c2) * kvol, (size_t)(c1 * kvol) * sizeof(float));
		memcpy(hb + o * c2 * kvol, w + (o * (c1 + c2) + c1) * kvol, (size_t)(c2 * kvol) * sizeof(float));
	}
	rc = upload(ha, (size_t)(cout * c1 * kvol), a);
	if (!rc)
		rc = upload(hb, (size_t)(cout * c2 * kvol), b);
	free(ha);
	free(hb);
	return rc;
}

static int load_op(const struct nnp_net_graph *g, const struct nnp_op *op, const struct nnp_param_src *src,
		   struct dweights *w)
{
	int64_t shape[5];
	const float *p;
	size_t n;
	int nd, rc;

	if (op->kind == NNP_OP_ADD_ACT || op->kind == NNP_OP_AVGPOOL)
		return NNP_OK;
	if (op->kind == NNP_OP_NORM_ACT) {
		if (!g->arch.norm_affine)
			return NNP_OK;
		nd = nnp_net_param_shape(g, op, "weight", shape);
		if (!(p = get_param(src, op->w, "weight", nd, shape, &n)))
			return NNP_EDATA;
		if ((rc = upload(p, n, &w->gamma)))
			return rc;
		if (!(p = get_param(src, op->w, "bias", nd, shape, &n)))
			return NNP_EDATA;
		return upload(p, n, &w->beta);
	}
	nd = nnp_net_param_shape(g, op, "weight", shape);
	if (!(p = get_param(src, op->w, "weight", nd, shape, &n)))
		return NNP_EDATA;
	if (op->kind == NNP_OP_CONV && op->in2 >= 0) {
		int64_t kvol = 1, c1 = g->tensors[op->in].channels;
		for (int d = 2; d < nd; d++)
			kvol *= shape[d];
		if (c1 <= 0 || c1 + g->tensors[op->in2].channels != shape[1])
			return nnp_err(NNP_EINTERNAL, "network: %s: bad channel split %lld + %d of %lld", op->w,
				       (long long)c1, g->tensors[op->in2].channels, (long long)shape[1]);
		rc = upload_split(p, shape[0], c1, shape[1] - c1, kvol, &w->w, &w->w2);
	} else {
		rc = upload(p, n, &w->w);
	}
	if (rc)
		return rc;
	if (op->has_bias) {
		nd = nnp_net_param_shape(g, op, "bias", shape);
		if (!(p = get_param(src, op->w, "bias", nd, shape, &n)))
			return NNP_EDATA;
		return upload(p, n, &w->b);
	}
	return NNP_OK;
}

/* ---- plan ---- */

static void conv_release(struct cconv *c)
{
	if (c->x)
		cudnnDestroyTensorDescriptor(c->x);
	if (c->f)
		cudnnDestroyFilterDescriptor(c->f);
	if (c->cd)
		cudnnDestroyConvolutionDescriptor(c->cd);
}

static void plan_release(struct nnp_cuda_engine *e)
{
	struct cplan *p = &e->plan;
	if (p->steps)
		for (int i = 0; i < e->g.nops; i++) {
			struct cstep *s = &p->steps[i];
			conv_release(&s->c[0]);
			conv_release(&s->c[1]);
			if (s->y)
				cudnnDestroyTensorDescriptor(s->y);
			cudaFree(s->stats);
		}
	if (p->t)
		for (int t = 0; t < e->g.ntensors; t++)
			cudaFree(p->t[t]);
	cudaFree(p->ws);
	cudaFree(p->part);
	cudaFree(p->ac);
	free(p->t);
	free(p->telems);
	free(p->steps);
	memset(p, 0, sizeof *p);
}

static int tensor_desc(const struct nnp_cuda_engine *e, int t, cudnnTensorDescriptor_t *d)
{
	const struct cplan *p = &e->plan;
	int nd = e->g.arch.ndim, lvl = e->g.tensors[t].level;
	int dims[5], strides[5];
	int64_t v[5], total = 1;

	v[0] = p->n;
	v[1] = e->g.tensors[t].channels;
	for (int k = 0; k < nd; k++)
		v[2 + k] = p->tsp[lvl][k];
	for (int k = 0; k < 2 + nd; k++)
		total *= v[k];
	/* the legacy API takes int dimensions and strides */
	if (total > INT32_MAX)
		return nnp_err(NNP_EUSAGE, "network on the GPU: a tensor of %lld elements is larger than cuDNN's "
			       "limit of 2^31 - 1 (use a smaller batch or patch)", (long long)total);
	for (int k = 2 + nd - 1, s = 1; k >= 0; k--) {
		dims[k] = (int)v[k];
		strides[k] = s;
		s *= dims[k];
	}
	DNN(cudnnCreateTensorDescriptor(d), "cudnnCreateTensorDescriptor");
	DNN(cudnnSetTensorNdDescriptor(*d, CUDNN_DATA_FLOAT, 2 + nd, dims, strides), "cudnnSetTensorNdDescriptor");
	return NNP_OK;
}

/* Filter (k0, k1, kernel...) and convolution (stride, padding) descriptors. */
static int conv_descs(const struct nnp_cuda_engine *e, const struct nnp_op *op, int k0, int k1, int deconv,
		      struct cconv *c)
{
	int nd = e->g.arch.ndim;
	int fd[5], pad[3], st[3], dil[3];
	fd[0] = k0;
	fd[1] = k1;
	for (int d = 0; d < nd; d++) {
		fd[2 + d] = op->kernel[d];
		st[d] = op->stride[d];
		pad[d] = deconv ? 0 : (op->kernel[d] - 1) / 2;
		dil[d] = 1;
	}
	DNN(cudnnCreateFilterDescriptor(&c->f), "cudnnCreateFilterDescriptor");
	DNN(cudnnSetFilterNdDescriptor(c->f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 2 + nd, fd),
	    "cudnnSetFilterNdDescriptor");
	DNN(cudnnCreateConvolutionDescriptor(&c->cd), "cudnnCreateConvolutionDescriptor");
	DNN(cudnnSetConvolutionNdDescriptor(c->cd, nd, pad, st, dil, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
	    "cudnnSetConvolutionNdDescriptor");
	return NNP_OK;
}

/* The convolution (x, f, cd) must produce exactly the dims of `want`. */
static int check_out_dims(const struct nnp_cuda_engine *e, const struct nnp_op *op, cudnnTensorDescriptor_t x,
			  const struct cconv *c, cudnnTensorDescriptor_t want)
{
	int nb = 2 + e->g.arch.ndim, got[5], wd[5], ws[5], wn = 0;
	cudnnDataType_t dt;
	DNN(cudnnGetConvolutionNdForwardOutputDim(c->cd, x, c->f, nb, got), "cudnnGetConvolutionNdForwardOutputDim");
	DNN(cudnnGetTensorNdDescriptor(want, nb, &dt, &wn, wd, ws), "cudnnGetTensorNdDescriptor");
	for (int k = 0; k < nb; k++)
		if (wn != nb || got[k] != wd[k])
			return nnp_err(NNP_EINTERNAL, "network on the GPU: %s: convolution output dim %d is %d, "
				       "expected %d", op->w, k, got[k], k < wn ? wd[k] : -1);
	return NNP_OK;
}

static int fwd_exact(int a)
{
	return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
	       a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

static cudnnMathType_t base_math(const struct nnp_cuda_engine *e)
{
	return e->prec == NNP_PREC_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
}

/* A usable math type from a heuristic result: fp32 never tensor cores
 * (TF32), no mode ever down-converts to fp16. */
static int math_ok(const struct nnp_cuda_engine *e, cudnnMathType_t m)
{
	if (m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
		return 0;
	return e->prec != NNP_PREC_FP32 || m != CUDNN_TENSOR_OP_MATH;
}

static int pick_fwd(struct nnp_cuda_engine *e, const struct nnp_op *op, struct cconv *c, cudnnTensorDescriptor_t y)
{
	cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
	int got = 0;
	size_t ws = 0;

	DNN(cudnnSetConvolutionMathType(c->cd, base_math(e)), "cudnnSetConvolutionMathType");
	DNN(cudnnGetConvolutionForwardAlgorithm_v7(e->h, c->x, c->f, c->cd, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
						   perf),
	    "cudnnGetConvolutionForwardAlgorithm_v7");
	for (int i = 0; i < got; i++) {
		cudnnMathType_t m = e->prec == NNP_PREC_FP32 ? CUDNN_FMA_MATH : perf[i].mathType;
		if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].determinism != CUDNN_DETERMINISTIC ||
		    !math_ok(e, perf[i].mathType) || (e->prec == NNP_PREC_FP32 && !fwd_exact(perf[i].algo)))
			continue;
		if (cudnnSetConvolutionMathType(c->cd, m) != CUDNN_STATUS_SUCCESS ||
		    cudnnGetConvolutionForwardWorkspaceSize(e->h, c->x, c->f, c->cd, y, perf[i].algo, &ws) !=
			    CUDNN_STATUS_SUCCESS ||
		    ws > WS_MAX)
			continue;
		c->algo = (int)perf[i].algo;
		c->math = (int)m;
		c->ws = ws;
		return NNP_OK;
	}
	/* implicit GEMM supports every shape and needs no workspace */
	DNN(cudnnSetConvolutionMathType(c->cd, base_math(e)), "cudnnSetConvolutionMathType");
	c->algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
	c->math = (int)base_math(e);
	{
		cudnnStatus_t s = cudnnGetConvolutionForwardWorkspaceSize(e->h, c->x, c->f, c->cd, y,
									  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, &ws);
		if (s != CUDNN_STATUS_SUCCESS)
			return nnp_err(NNP_EIO, "cuDNN: %s: no convolution algorithm for this shape (%s)", op->w,
				       cudnnGetErrorString(s));
	}
	c->ws = ws;
	return NNP_OK;
}

/* Transposed conv as backward data: dy = the op's input (c->x), dx = y. */
static int pick_bwd(struct nnp_cuda_engine *e, const struct nnp_op *op, struct cconv *c, cudnnTensorDescriptor_t y)
{
	cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
	int got = 0;
	size_t ws = 0;

	DNN(cudnnSetConvolutionMathType(c->cd, base_math(e)), "cudnnSetConvolutionMathType");
	DNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(e->h, c->f, c->x, c->cd, y, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
							&got, perf),
	    "cudnnGetConvolutionBackwardDataAlgorithm_v7");
	for (int i = 0; i < got; i++) {
		cudnnMathType_t m = e->prec == NNP_PREC_FP32 ? CUDNN_FMA_MATH : perf[i].mathType;
		if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].determinism != CUDNN_DETERMINISTIC ||
		    !math_ok(e, perf[i].mathType) ||
		    (e->prec == NNP_PREC_FP32 && perf[i].algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_1))
			continue;
		if (cudnnSetConvolutionMathType(c->cd, m) != CUDNN_STATUS_SUCCESS ||
		    cudnnGetConvolutionBackwardDataWorkspaceSize(e->h, c->f, c->x, c->cd, y, perf[i].algo, &ws) !=
			    CUDNN_STATUS_SUCCESS ||
		    ws > WS_MAX)
			continue;
		c->algo = (int)perf[i].algo;
		c->math = (int)m;
		c->ws = ws;
		return NNP_OK;
	}
	/* ALGO_1 is deterministic and supports every shape */
	DNN(cudnnSetConvolutionMathType(c->cd, base_math(e)), "cudnnSetConvolutionMathType");
	c->algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
	c->math = (int)base_math(e);
	{
		cudnnStatus_t s = cudnnGetConvolutionBackwardDataWorkspaceSize(e->h, c->f, c->x, c->cd, y,
									       CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, &ws);
		if (s != CUDNN_STATUS_SUCCESS)
			return nnp_err(NNP_EIO, "cuDNN: %s: no transposed-convolution algorithm for this shape (%s)",
				       op->w, cudnnGetErrorString(s));
	}
	c->ws = ws;
	return NNP_OK;
}

static int64_t spatial_elems(const struct nnp_cuda_engine *e, int t)
{
	int64_t v = 1;
	for (int d = 0; d < e->g.arch.ndim; d++)
		v *= e->plan.tsp[e->g.tensors[t].level][d];
	return v;
}

static int op_plan(struct nnp_cuda_engine *e, int i, size_t *part_n, size_t *ac_n)
{
	const struct nnp_op *op = &e->g.ops[i];
	struct cstep *s = &e->plan.steps[i];
	int rc, n = e->plan.n;
	int cout = e->g.tensors[op->out].channels;

	switch (op->kind) {
	case NNP_OP_CONV:
		if ((rc = tensor_desc(e, op->out, &s->y)))
			return rc;
		s->nconv = op->in2 >= 0 ? 2 : 1;
		for (int k = 0; k < s->nconv; k++) {
			struct cconv *c = &s->c[k];
			int src = k ? op->in2 : op->in;
			if ((rc = tensor_desc(e, src, &c->x)) ||
			    (rc = conv_descs(e, op, cout, e->g.tensors[src].channels, 0, c)) ||
			    (rc = check_out_dims(e, op, c->x, c, s->y)) || (rc = pick_fwd(e, op, c, s->y)))
				return rc;
		}
		return NNP_OK;
	case NNP_OP_DECONV: {
		struct cconv *c = &s->c[0];
		s->nconv = 1;
		/* filter (K = deconv in, C = deconv out, k): a conv from y (out) to x (in) */
		if ((rc = tensor_desc(e, op->out, &s->y)) || (rc = tensor_desc(e, op->in, &c->x)) ||
		    (rc = conv_descs(e, op, e->g.tensors[op->in].channels, cout, 1, c)) ||
		    (rc = check_out_dims(e, op, s->y, c, c->x)) || (rc = pick_bwd(e, op, c, s->y)))
			return rc;
		return NNP_OK;
	}
	case NNP_OP_NORM_ACT: {
		int64_t S = spatial_elems(e, op->out), nch = (S + NORM_CHUNK - 1) / NORM_CHUNK;
		size_t nC = (size_t)n * (size_t)cout;
		if (nch > 65535 || nC > INT32_MAX)
			return nnp_err(NNP_EUSAGE, "network on the GPU: %s: %lld voxels x %zu channels is too large",
				       op->w, (long long)S, nC);
		if (nC * (size_t)nch * 2 > *part_n)
			*part_n = nC * (size_t)nch * 2;
		if (nC * 2 > *ac_n)
			*ac_n = nC * 2;
		CU(cudaMalloc((void **)&s->stats, nC * 2 * sizeof(float)), "cannot allocate GPU memory for norm statistics");
		return NNP_OK;
	}
	case NNP_OP_ADD_ACT:
		if (e->plan.telems[op->in2] != e->plan.telems[op->out])
			return nnp_err(NNP_EINTERNAL, "network on the GPU: %s: residual add of different sizes", op->w);
		return NNP_OK;
	case NNP_OP_AVGPOOL: {
		const int64_t *a = e->plan.tsp[e->g.tensors[op->in].level], *b = e->plan.tsp[e->g.tensors[op->out].level];
		if (e->g.tensors[op->in].channels != cout)
			return nnp_err(NNP_EINTERNAL, "network on the GPU: %s: pooling changes channels", op->w);
		for (int d = 0; d < e->g.arch.ndim; d++)
			if (a[d] != b[d] * op->kernel[d] || op->kernel[d] != op->stride[d])
				return nnp_err(NNP_EINTERNAL, "network on the GPU: %s: pooling axis %d: %lld -> %lld "
					       "with kernel %d", op->w, d, (long long)a[d], (long long)b[d], op->kernel[d]);
		return NNP_OK;
	}
	}
	return nnp_err(NNP_EINTERNAL, "network on the GPU: unknown operator %d", (int)op->kind);
}

static int plan_build(struct nnp_cuda_engine *e, int n, const int64_t *sp)
{
	struct cplan *p = &e->plan;
	const struct nnp_net_graph *g = &e->g;
	size_t part_n = 0, ac_n = 0;
	int rc = NNP_OK;

	plan_release(e);
	p->n = n;
	for (int d = 0; d < 3; d++)
		p->sp[d] = d < g->arch.ndim ? sp[d] : 1;
	for (int l = 0; l < g->arch.n_stages; l++)
		for (int d = 0; d < 3; d++)
			p->tsp[l][d] = d < g->arch.ndim ? sp[d] / nnp_net_level_div(&g->arch, l, d) : 1;
	p->t = (float **)calloc((size_t)g->ntensors, sizeof *p->t);
	p->telems = (int64_t *)calloc((size_t)g->ntensors, sizeof *p->telems);
	p->steps = (struct cstep *)calloc((size_t)g->nops, sizeof *p->steps);
	if (!p->t || !p->telems || !p->steps) {
		plan_release(e);
		return nnp_err(NNP_ENOMEM, "network plan: out of memory");
	}
	for (int t = 0; t < g->ntensors && !rc; t++) {
		cudaError_t ce;
		p->telems[t] = (int64_t)n * g->tensors[t].channels * spatial_elems(e, t);
		ce = cudaMalloc((void **)&p->t[t], (size_t)p->telems[t] * sizeof(float));
		if (ce != cudaSuccess)
			rc = cu_fail(ce, "cannot allocate GPU memory for the activations");
	}
	for (int i = 0; i < g->nops && !rc; i++) {
		rc = op_plan(e, i, &part_n, &ac_n);
		for (int k = 0; !rc && k < e->plan.steps[i].nconv; k++) {
			const struct cconv *c = &p->steps[i].c[k];
			if (c->ws > p->ws_bytes)
				p->ws_bytes = c->ws;
			if (e->profile)
				fprintf(stderr, "nnp-engine: cuda plan %s%s: %s algo %d, math type %d, workspace %zu\n",
					g->ops[i].w, k ? " (skip input)" : "",
					g->ops[i].kind == NNP_OP_DECONV ? "bwd-data" : "fwd", c->algo, c->math, c->ws);
		}
	}
	if (!rc && p->ws_bytes) {
		cudaError_t ce = cudaMalloc(&p->ws, p->ws_bytes);
		if (ce != cudaSuccess)
			rc = cu_fail(ce, "cannot allocate the cuDNN workspace");
	}
	if (!rc && part_n) {
		cudaError_t ce = cudaMalloc((void **)&p->part, part_n * sizeof(double));
		if (ce == cudaSuccess)
			ce = cudaMalloc((void **)&p->ac, ac_n * sizeof(float));
		if (ce != cudaSuccess)
			rc = cu_fail(ce, "cannot allocate GPU memory for norm statistics");
	}
	if (rc) {
		plan_release(e);
		return rc;
	}
	p->valid = 1;
	return NNP_OK;
}

/* ---- running ---- */

static int run_conv(struct nnp_cuda_engine *e, int i)
{
	const struct nnp_op *op = &e->g.ops[i];
	const struct dweights *w = &e->w[i];
	struct cplan *p = &e->plan;
	struct cstep *s = &p->steps[i];
	const float one = 1.0f, zero = 0.0f;
	float *y = p->t[op->out];
	int cout = e->g.tensors[op->out].channels;

	if (op->kind == NNP_OP_DECONV) {
		DNN(cudnnConvolutionBackwardData(e->h, &one, s->c[0].f, w->w, s->c[0].x, p->t[op->in], s->c[0].cd,
						 (cudnnConvolutionBwdDataAlgo_t)s->c[0].algo, p->ws, p->ws_bytes, &zero,
						 s->y, y),
		    "cudnnConvolutionBackwardData (transposed convolution)");
	} else {
		for (int k = 0; k < s->nconv; k++)
			DNN(cudnnConvolutionForward(e->h, &one, s->c[k].x, p->t[k ? op->in2 : op->in], s->c[k].f,
						    k ? w->w2 : w->w, s->c[k].cd,
						    (cudnnConvolutionFwdAlgo_t)s->c[k].algo, p->ws, p->ws_bytes,
						    k ? &one : &zero, s->y, y),
			    "cudnnConvolutionForward");
	}
	if (w->b) {
		int64_t total = p->telems[op->out];
		bias_kernel<<<grid_for(total), NT, 0, e->stream>>>(y, w->b, cout, total / ((int64_t)p->n * cout), total);
		LAUNCHED("bias kernel");
	}
	return NNP_OK;
}

static int run_norm(struct nnp_cuda_engine *e, int i)
{
	const struct nnp_op *op = &e->g.ops[i];
	struct cplan *p = &e->plan;
	int C = e->g.tensors[op->out].channels, nC = p->n * C;
	int64_t S = spatial_elems(e, op->out), nch = (S + NORM_CHUNK - 1) / NORM_CHUNK;
	float *x = p->t[op->out];
	dim3 grid((unsigned)nC, (unsigned)nch);

	norm_partial_kernel<<<grid, NT, 0, e->stream>>>(x, S, (int)nch, p->part);
	LAUNCHED("instance norm: partial sums kernel");
	norm_coef_kernel<<<(nC + NT - 1) / NT, NT, 0, e->stream>>>(p->part, (int)nch, nC, C, S, e->w[i].gamma,
								     e->w[i].beta, e->g.arch.norm_eps,
								     p->steps[i].stats, p->ac);
	LAUNCHED("instance norm: coefficients kernel");
	norm_apply_kernel<<<grid_for(p->telems[op->out]), NT, 0, e->stream>>>(
		x, p->ac, S, p->telems[op->out], op->act ? (float)e->g.arch.slope : 1.0f);
	LAUNCHED("instance norm: apply kernel");
	return NNP_OK;
}

static int run_op(struct nnp_cuda_engine *e, int i)
{
	const struct nnp_op *op = &e->g.ops[i];
	struct cplan *p = &e->plan;

	switch (op->kind) {
	case NNP_OP_CONV:
	case NNP_OP_DECONV:
		return run_conv(e, i);
	case NNP_OP_NORM_ACT:
		return run_norm(e, i);
	case NNP_OP_ADD_ACT: /* sizes checked by op_plan */
		add_act_kernel<<<grid_for(p->telems[op->out]), NT, 0, e->stream>>>(
			p->t[op->out], p->t[op->in2], p->telems[op->out], (float)e->g.arch.slope);
		LAUNCHED("residual add kernel");
		return NNP_OK;
	case NNP_OP_AVGPOOL: {
		int k[3] = { 1, 1, 1 };
		const int64_t *o = p->tsp[e->g.tensors[op->out].level];
		int64_t NC = (int64_t)p->n * e->g.tensors[op->out].channels;
		for (int d = 0; d < e->g.arch.ndim; d++)
			k[d] = op->kernel[d];
		avgpool_kernel<<<grid_for(p->telems[op->out]), NT, 0, e->stream>>>(p->t[op->in], p->t[op->out], NC,
										  o[0], o[1], o[2], k[0], k[1],
										  k[2]);
		LAUNCHED("average pooling kernel");
		return NNP_OK;
	}
	}
	return nnp_err(NNP_EINTERNAL, "network on the GPU: unknown operator %d", (int)op->kind);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *op_name(enum nnp_op_kind k)
{
	return k == NNP_OP_CONV ? "conv" : k == NNP_OP_DECONV ? "deconv" : k == NNP_OP_NORM_ACT ? "norm" :
	       k == NNP_OP_ADD_ACT ? "add" : "pool";
}

extern "C" int nnp_cuda_engine_forward(struct nnp_cuda_engine *e, int n, const int64_t *spatial, const float *host_in,
				       float *host_out, int features)
{
	struct cplan *p = &e->plan;
	int rc, same = p->valid && p->n == n, head = -1, res;

	for (int i = 0; i < e->g.nops; i++)
		if (e->g.ops[i].out == e->g.out)
			head = i;
	if (head < 0)
		return nnp_err(NNP_EINTERNAL, "network: no segmentation head");
	res = features ? e->g.ops[head].in : e->g.out; /* the tensor handed back */

	if (n < 1)
		return nnp_err(NNP_EUSAGE, "network: batch size %d", n);
	if ((rc = nnp_net_check_shape(&e->g.arch, spatial)))
		return rc;
	CU(cudaSetDevice(e->device), "cannot select the GPU");
	for (int d = 0; d < e->g.arch.ndim && same; d++)
		same = p->sp[d] == spatial[d];
	if (!same && (rc = plan_build(e, n, spatial)))
		return rc;
	CU(cudaMemcpyAsync(p->t[0], host_in, (size_t)p->telems[0] * sizeof(float), cudaMemcpyHostToDevice, e->stream),
	   "cannot copy the input to the GPU");
	for (int i = 0; i < e->g.nops; i++) {
		double t0 = e->profile ? now() : 0;
		if (features && i == head)
			continue;
		if ((rc = run_op(e, i)))
			return rc;
		if (e->profile) {
			CU(cudaStreamSynchronize(e->stream), "network step");
			fprintf(stderr, "nnp-engine: cuda step %d %s (%s) %.2f ms\n", i, op_name(e->g.ops[i].kind),
				e->g.ops[i].w, 1e3 * (now() - t0));
		}
	}
	CU(cudaMemcpyAsync(host_out, p->t[res], (size_t)p->telems[res] * sizeof(float), cudaMemcpyDeviceToHost,
			   e->stream),
	   "cannot copy the result from the GPU");
	/* everything ran on e->stream: when this returns the result is in host_out */
	CU(cudaStreamSynchronize(e->stream), "network forward on the GPU");
	CU(cudaGetLastError(), "network forward on the GPU");
	return NNP_OK;
}

/* ---- lifecycle ---- */

extern "C" int nnp_cuda_engine_create(const struct nnp_net_graph *g, const struct nnp_param_src *params,
				      const struct nnp_engine_opts *o, struct nnp_cuda_engine **out)
{
	struct nnp_cuda_engine *e;
	int rc = NNP_OK, ndev = 0;
	cudaError_t ce;
	cudnnStatus_t ds;

	*out = NULL;
	ce = cudaGetDeviceCount(&ndev);
	if (ce == cudaErrorNoDevice || ce == cudaErrorInsufficientDriver) {
		cudaGetLastError();
		ndev = 0;
	} else if (ce != cudaSuccess) {
		return cu_fail(ce, "cannot count CUDA devices");
	}
	if (cudnnGetVersion() / 10000 != CUDNN_MAJOR)
		return nnp_err(NNP_EIO, "cuDNN: the library is version %zu, this program was built with %d.%d.%d",
			       cudnnGetVersion(), CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
	if (!o || o->device < 0 || o->device >= ndev)
		return nnp_err(NNP_EUSAGE, "device cuda:%d does not exist (%d CUDA device%s)", o ? o->device : -1, ndev,
			       ndev == 1 ? "" : "s");
	if (!(e = (struct nnp_cuda_engine *)calloc(1, sizeof *e)))
		return nnp_err(NNP_ENOMEM, "network: out of memory");
	e->device = o->device;
	e->prec = o->prec;
	e->profile = getenv("NNP_ENGINE_PROFILE") != NULL;
	if ((rc = nnp_net_graph_copy(g, &e->g)) || !(e->w = (struct dweights *)calloc((size_t)g->nops, sizeof *e->w))) {
		nnp_cuda_engine_free(e);
		return rc ? rc : nnp_err(NNP_ENOMEM, "network: out of memory");
	}
	if ((ce = cudaSetDevice(e->device)) != cudaSuccess)
		rc = cu_fail(ce, "cannot select the GPU");
	if (!rc && (ce = cudaStreamCreateWithFlags(&e->stream, cudaStreamNonBlocking)) != cudaSuccess)
		rc = cu_fail(ce, "cannot create a CUDA stream");
	if (!rc && (ds = cudnnCreate(&e->h)) != CUDNN_STATUS_SUCCESS) {
		e->h = NULL;
		rc = dnn_fail(ds, "cudnnCreate (is libcudnn installed and matching the driver?)");
	}
	if (!rc && (ds = cudnnSetStream(e->h, e->stream)) != CUDNN_STATUS_SUCCESS)
		rc = dnn_fail(ds, "cudnnSetStream");
	for (int i = 0; i < g->nops && !rc; i++)
		rc = load_op(g, &g->ops[i], params, &e->w[i]);
	/* a pageable cudaMemcpy may return before its DMA is done, and e->stream
	 * (non-blocking) does not wait for the legacy stream: finish it here */
	if (!rc && (ce = cudaDeviceSynchronize()) != cudaSuccess)
		rc = cu_fail(ce, "copying the weights to the GPU");
	if (rc) {
		nnp_cuda_engine_free(e);
		return rc;
	}
	*out = e;
	return NNP_OK;
}

extern "C" void nnp_cuda_engine_free(struct nnp_cuda_engine *e)
{
	if (!e)
		return;
	cudaSetDevice(e->device);
	if (e->stream)
		cudaStreamSynchronize(e->stream);
	plan_release(e);
	if (e->w)
		for (int i = 0; i < e->g.nops; i++) {
			cudaFree(e->w[i].w);
			cudaFree(e->w[i].w2);
			cudaFree(e->w[i].b);
			cudaFree(e->w[i].gamma);
			cudaFree(e->w[i].beta);
		}
	if (e->h)
		cudnnDestroy(e->h);
	if (e->stream)
		cudaStreamDestroy(e->stream);
	free(e->w);
	free(e->g.ops);
	free(e->g.tensors);
	free(e);
}
