/* engine.h — running a network graph (net.h) on a backend.
 *
 * One interface, several backends: the CPU backend runs convolutions and
 * transposed convolutions with oneDNN (blocked channel layouts kept between
 * operators, weights reordered once per input shape) and InstanceNorm,
 * LeakyReLU and residual adds with OpenMP loops of its own; a CUDA backend
 * plugs in behind the same functions.
 *
 * Semantics: nnp_engine_forward computes the network's full-resolution
 * logits for n inputs of one spatial shape, float32 in and out, C order
 * (n, C, *spatial) -> (n, K, *spatial), exactly the PyTorch module in eval
 * mode (InstanceNorm statistics per sample and channel, biased variance,
 * accumulated in float64).  NNP_PREC_BF16 runs convolutions with bfloat16
 * inputs and weights (float32 accumulation and outputs); norms stay float32.
 *
 * Parameters are fetched once, at nnp_engine_create, through a
 * nnp_param_src (name -> float32 array in PyTorch layout, with its shape
 * checked by the source): the source may be freed afterwards.
 *
 * Ownership: nnp_engine_create returns an engine the caller frees with
 * nnp_engine_free (NULL is a no-op); it keeps a copy of the graph and of the
 * weights.  An engine is used by one thread at a time (it parallelises
 * internally).
 */
#ifndef NNP_ENGINE_H
#define NNP_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"

enum nnp_precision { NNP_PREC_FP32 = 0, NNP_PREC_BF16 = 1 };

struct nnp_engine_opts {
	int device;               /* -1 = CPU, >= 0 = CUDA device index */
	enum nnp_precision prec;
};

struct nnp_param_src {
	void *ctx;
	/* The parameter `name` with the given PyTorch shape, or NULL after
	 * recording NNP_EDATA (missing, or a shape that does not match). */
	const float *(*get)(void *ctx, const char *name, int ndim, const int64_t *shape);
};

struct nnp_engine;

int nnp_engine_create(const struct nnp_net_graph *g, const struct nnp_param_src *params,
		      const struct nnp_engine_opts *o, struct nnp_engine **out);
void nnp_engine_free(struct nnp_engine *e);

/* in: n x C x spatial, out: n x K x spatial (caller-allocated float32). */
int nnp_engine_forward(struct nnp_engine *e, int n, const int64_t *spatial, const float *in, float *out);

/* The same network without its final 1x1 segmentation head: out receives
 * n x F x spatial, F = the head's input channels.  Since the head is linear,
 * averaging these features (Gaussian weights, mirroring) and applying the
 * head afterwards equals averaging logits: the sliding window can then
 * accumulate F channels instead of K (many classes). */
int nnp_engine_forward_features(struct nnp_engine *e, int n, const int64_t *spatial, const float *in, float *out);
/* The head: *classes x *features weights (row-major) and *classes biases,
 * owned by the engine. */
int nnp_engine_head(const struct nnp_engine *e, int *features, int *classes, const float **w, const float **b);

/* Bytes the engine allocates for a forward of n inputs of this shape
 * (activations after buffer reuse, reordered weights, oneDNN scratchpads
 * excluded; features: nnp_engine_forward_features, no logits tensor): for memory checks before a run. */
uint64_t nnp_engine_mem_estimate(const struct nnp_net_graph *g, int n, const int64_t *spatial,
				 enum nnp_precision prec, int features);

/* "oneDNN 2.6.3 (avx512_core_amx)" or similar: what the CPU backend runs. */
const char *nnp_engine_cpu_info(void);

#endif
