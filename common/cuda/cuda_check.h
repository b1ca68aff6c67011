/* cuda_check.h — error helpers shared by the CUDA backends (internal to
 * the .cu files of common/cuda): a failed CUDA or cuDNN call becomes an nnp_err message
 * naming the step, NNP_ENOMEM for allocation failures, NNP_EIO otherwise. */
#ifndef NNP_CUDA_CHECK_H
#define NNP_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <cudnn.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "err.h"
#ifdef __cplusplus
}
#endif

static inline int cu_fail(cudaError_t e, const char *what)
{
	int code = e == cudaErrorMemoryAllocation ? NNP_ENOMEM : NNP_EIO;
	cudaGetLastError(); /* clear a non-sticky error */
	return nnp_err(code, "CUDA: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static inline int dnn_fail(cudnnStatus_t s, const char *what)
{
	int code = s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ? NNP_ENOMEM : NNP_EIO;
	return nnp_err(code, "cuDNN: %s: %s (status %d)", what, cudnnGetErrorString(s), (int)s);
}

#define CU(call, what)                                         \
	do {                                                   \
		cudaError_t e_ = (call);                       \
		if (e_ != cudaSuccess)                         \
			return cu_fail(e_, what);              \
	} while (0)

#define DNN(call, what)                                        \
	do {                                                   \
		cudnnStatus_t s_ = (call);                     \
		if (s_ != CUDNN_STATUS_SUCCESS)                \
			return dnn_fail(s_, what);             \
	} while (0)

/* After a kernel launch: launch errors now, execution errors at the sync. */
#define LAUNCHED(what) CU(cudaGetLastError(), what)

#endif
