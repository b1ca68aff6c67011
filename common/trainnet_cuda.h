/* trainnet_cuda.h — the CUDA backend of the training network (trainnet.h),
 * implemented in common/cuda/trainnet_cuda.cu with cuDNN 9 (legacy
 * convolution API) and kernels of its own (docs/gpu.md, "The CUDA training
 * backend").  This header compiles in every build; without CUDA (GPU=0)
 * common/trainnet_cuda.c provides versions that fail with NNP_EUSAGE and
 * NNP_NO_CUDA_MSG, and nnp_cuda_tnet_available returns 0.
 *
 * Semantics are those of the CPU training network: nnp_cuda_tnet_forward
 * computes every head (deep supervision heads g->ds_out[], full resolution
 * first; g->out alone without deep supervision) and keeps every activation
 * on the device; nnp_cuda_tnet_backward(dout) then sets (does not
 * accumulate) every parameter gradient for the loss whose gradients with
 * respect to the heads are dout[h] (NULL: that head contributes nothing).
 * Host input, outputs and head gradients are float32 C order
 * (n, C, *spatial).  Parameters live on the device in PyTorch layout under
 * their state_dict names; upload_params copies host values in (before the
 * first forward and after every host-side update), download_grads copies
 * the gradients out into the host arrays' g.  Host arrays are matched by
 * name (any order); every parameter of the network must be uploaded, and
 * a name the network does not have is NNP_EDATA.
 *
 * Every call that launches work returns only when it is finished
 * (cudaStreamSynchronize on the net's own stream), so its errors are
 * reported by that call and host buffers may be reused at once.
 *
 * Precision: NNP_PREC_FP32 (default) runs cuDNN with CUDNN_FMA_MATH (no
 * TF32) and only direct/GEMM-type deterministic algorithms; NNP_PREC_BF16
 * selects TF32 tensor-core convolutions (float32 tensors, as the inference
 * backend's "bf16" mode).  InstanceNorm statistics and their backward sums
 * are float64 over fixed chunks (results do not depend on timing); every
 * chosen cuDNN algorithm is CUDNN_DETERMINISTIC.
 *
 * Errors: NNP_EUSAGE (no such device, no CUDA in this build, bad shape,
 * forward before upload, backward before forward), NNP_EDATA (parameter
 * names or shapes), NNP_ENOMEM (GPU or host memory), NNP_EIO (a CUDA or
 * cuDNN call failed; the message names the call and the library's error
 * string), NNP_EINTERNAL.
 *
 * Ownership: nnp_cuda_tnet_create copies the graph; the net owns its device
 * memory and is freed with nnp_cuda_tnet_free (NULL is a no-op).  Functions
 * never keep the caller's pointers.  One thread at a time per net.
 */
#ifndef NNP_TRAINNET_CUDA_H
#define NNP_TRAINNET_CUDA_H

#include <stdint.h>

#include "engine.h"
#include "net.h"
#include "trainnet.h"

#ifdef __cplusplus
extern "C" {
#endif

struct nnp_cuda_tnet;

/* 1 when CUDA device `device` exists and can run this backend (compute
 * capability 8.0 or newer, the cuDNN library of the build's major
 * version), else 0 (no message recorded). */
int nnp_cuda_tnet_available(int device);

int nnp_cuda_tnet_create(const struct nnp_net_graph *g, int device, struct nnp_cuda_tnet **out);
void nnp_cuda_tnet_free(struct nnp_cuda_tnet *t);

/* NNP_PREC_FP32 or NNP_PREC_BF16 (= TF32 convolutions); takes effect at the
 * next forward (the plan is rebuilt; until then there is nothing to run a
 * backward or read a head from). */
int nnp_cuda_tnet_set_precision(struct nnp_cuda_tnet *t, enum nnp_precision prec);

/* Heads (g->n_ds, or 1) and head h's shape (n, K, *spatial) of the last
 * forward; returns 2 + ndim or a negative code. */
int nnp_cuda_tnet_nheads(const struct nnp_cuda_tnet *t);
int nnp_cuda_tnet_head_shape(const struct nnp_cuda_tnet *t, int h, int64_t shape[5]);

/* Host p[0..np-1].w (PyTorch layout) -> the device parameters. */
int nnp_cuda_tnet_upload_params(struct nnp_cuda_tnet *t, const struct nnp_tparam *p, int np);
/* host_in: n x C x spatial. */
int nnp_cuda_tnet_forward(struct nnp_cuda_tnet *t, int n, const int64_t *spatial, const float *host_in);
/* Head h of the last forward into host_out (nnp_cuda_tnet_head_shape). */
int nnp_cuda_tnet_output(struct nnp_cuda_tnet *t, int head, float *host_out);
/* host_dout[h]: gradient of the loss with respect to head h, or NULL. */
int nnp_cuda_tnet_backward(struct nnp_cuda_tnet *t, const float *const *host_dout);
/* The gradients of the last backward -> host p[0..np-1].g. */
int nnp_cuda_tnet_download_grads(struct nnp_cuda_tnet *t, struct nnp_tparam *p, int np);

#ifdef __cplusplus
}
#endif

#endif
