/* gpu.h — the CUDA module (common/cuda/gpu.cu), compiled only when the
 * Makefile sets GPU=1 (which defines NNP_HAVE_CUDA=1 and links -lcudart).
 * Without it, common/gpu.c provides versions that fail with NNP_EUSAGE.
 *
 * Functions return NNP_OK / a count, or a negative NNP_E* code with the
 * message set (err.h).  No state is kept between calls.
 */
#ifndef NNP_GPU_H
#define NNP_GPU_H

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices (0 when the driver reports none), or <0. */
int nnp_cuda_device_count(void);
/* On device: y = a*x + b over 1M floats, copied back and compared exactly.
 * NNP_OK, NNP_EDATA (wrong result), NNP_ENOMEM, NNP_EIO (CUDA error) or
 * NNP_EUSAGE (bad device / no CUDA in this build). */
int nnp_cuda_selftest(int device);

#define NNP_NO_CUDA_MSG "this build has no CUDA support (rebuild with nvcc and cuDNN " \
	"installed, without GPU=0)"

#ifdef __cplusplus
}
#endif

#endif
