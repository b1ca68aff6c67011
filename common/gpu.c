/* gpu.c — the CUDA entry points of gpu.h for builds without CUDA.  With
 * NNP_HAVE_CUDA the real ones come from common/cuda/gpu.cu. */
#include "err.h"
#include "gpu.h"

#ifndef NNP_HAVE_CUDA

int nnp_cuda_device_count(void)
{
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

int nnp_cuda_selftest(int device)
{
	(void)device;
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

#else

typedef int nnp_gpu_c_is_empty_with_cuda; /* ISO C wants a declaration */

#endif
