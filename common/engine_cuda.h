/* engine_cuda.h — the CUDA backend of the network engine (engine.h),
 * implemented in common/cuda/engine_cuda.cu with cuDNN 9 (legacy
 * convolution API) and kernels of its own.  Only compiled and linked when
 * the Makefile sets GPU=1 (NNP_HAVE_CUDA); engine.c dispatches to it for
 * nnp_engine_opts.device >= 0.  docs/gpu.md describes the design.
 *
 * Semantics are those of nnp_engine_create / nnp_engine_forward /
 * nnp_engine_free (engine.h): host float32 in and out, C order
 * (n, C, *spatial) -> (n, K, *spatial).  forward copies the input to the
 * device, runs every operator on one CUDA stream, copies the logits back and
 * synchronises, so it returns only when the result is in `out`.
 *
 * Precision: NNP_PREC_FP32 runs cuDNN with CUDNN_FMA_MATH (no TF32) and only
 * direct/GEMM-type algorithms; NNP_PREC_BF16 is mapped to TF32 tensor-core
 * convolutions (float32 tensors and weights, inputs rounded to TF32 by the
 * tensor cores, float32 accumulation); norms are float32 with float64 sums.
 *
 * Errors: NNP_EUSAGE (bad device index, shape too large for cuDNN's int
 * dimensions), NNP_ENOMEM (GPU memory), NNP_EIO (a CUDA or cuDNN call failed,
 * message names the call and the library's own error string), NNP_EDATA
 * (parameter source), NNP_EINTERNAL.
 */
#ifndef NNP_ENGINE_CUDA_H
#define NNP_ENGINE_CUDA_H

#include <stdint.h>

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

struct nnp_cuda_engine;

int nnp_cuda_engine_create(const struct nnp_net_graph *g, const struct nnp_param_src *params,
			   const struct nnp_engine_opts *o, struct nnp_cuda_engine **out);
/* features: stop before the full-resolution segmentation head and return its
 * input (n x F x spatial), as nnp_engine_forward_features. */
int nnp_cuda_engine_forward(struct nnp_cuda_engine *e, int n, const int64_t *spatial, const float *host_in,
			    float *host_out, int features);
void nnp_cuda_engine_free(struct nnp_cuda_engine *e);

#ifdef __cplusplus
}
#endif

#endif
