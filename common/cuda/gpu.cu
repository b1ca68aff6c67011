/* gpu.cu — a small CUDA module: device count and a self-test kernel
 * (see gpu.h).  C linkage; no C++ standard library. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <cuda_runtime.h>

extern "C" {
#include "err.h"
#include "gpu.h"
}

#define SELFTEST_N (1 << 20)

static int cuda_fail(cudaError_t e, const char *what)
{
	int code = e == cudaErrorMemoryAllocation ? NNP_ENOMEM : NNP_EIO;
	return nnp_err(code, "%s: %s (%s)", what, cudaGetErrorString(e),
		       cudaGetErrorName(e));
}

extern "C" int nnp_cuda_device_count(void)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e == cudaErrorNoDevice) {
		cudaGetLastError();
		return 0;
	}
	if (e != cudaSuccess) {
		cudaGetLastError();
		return cuda_fail(e, "cannot count CUDA devices");
	}
	return n;
}

/* y = a*x + b, rounded as two separate float operations (no FMA contraction). */
__global__ static void axpb_kernel(float *y, const float *x, float a, float b, int n)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		y[i] = __fadd_rn(__fmul_rn(a, x[i]), b);
}

/* Inputs whose results are exact in float, so the check can be bitwise. */
static void fill_input(float *x, int n)
{
	for (int i = 0; i < n; i++)
		x[i] = (float)(i - n / 2);
}

static int verify(const float *x, const float *y, int n, float a, float b)
{
	for (int i = 0; i < n; i++) {
		volatile float t = a * x[i];
		float want = t + b;
		if (memcmp(&want, &y[i], sizeof want))
			return nnp_err(NNP_EDATA, "GPU self-test: y[%d] = %.9g, expected %.9g",
				       i, (double)y[i], (double)want);
	}
	return NNP_OK;
}

static int check_device(int device)
{
	int n = nnp_cuda_device_count();
	if (n < 0)
		return n;
	if (device < 0 || device >= n)
		return nnp_err(NNP_EUSAGE, "CUDA device %d does not exist (%d device%s)", device,
			       n, n == 1 ? "" : "s");
	return NNP_OK;
}

/* Copy x to the device, run the kernel, copy y back. */
static int run_on_device(const float *x, float *y, int n, float a, float b)
{
	size_t bytes = (size_t)n * sizeof(float);
	float *dx = NULL, *dy = NULL;
	cudaError_t e;
	int rc = NNP_OK;

	if ((e = cudaMalloc((void **)&dx, bytes)) != cudaSuccess ||
	    (e = cudaMalloc((void **)&dy, bytes)) != cudaSuccess) {
		rc = cuda_fail(e, "cannot allocate GPU memory");
		goto out;
	}
	if ((e = cudaMemcpy(dx, x, bytes, cudaMemcpyHostToDevice)) != cudaSuccess) {
		rc = cuda_fail(e, "cannot copy to the GPU");
		goto out;
	}
	axpb_kernel<<<(n + 255) / 256, 256>>>(dy, dx, a, b, n);
	if ((e = cudaGetLastError()) != cudaSuccess ||
	    (e = cudaDeviceSynchronize()) != cudaSuccess) {
		rc = cuda_fail(e, "GPU self-test kernel failed");
		goto out;
	}
	if ((e = cudaMemcpy(y, dy, bytes, cudaMemcpyDeviceToHost)) != cudaSuccess)
		rc = cuda_fail(e, "cannot copy from the GPU");
out:
	cudaFree(dx);
	cudaFree(dy);
	return rc;
}

extern "C" int nnp_cuda_selftest(int device)
{
	const int n = SELFTEST_N;
	const float a = 0.5f, b = 3.0f;
	float *x = NULL, *y = NULL;
	cudaError_t e;
	int rc;

	if ((rc = check_device(device)))
		return rc;
	if ((e = cudaSetDevice(device)) != cudaSuccess)
		return cuda_fail(e, "cannot select the GPU");
	x = (float *)malloc((size_t)n * sizeof *x);
	y = (float *)calloc((size_t)n, sizeof *y);
	if (!x || !y) {
		free(x);
		free(y);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	fill_input(x, n);
	rc = run_on_device(x, y, n, a, b);
	if (!rc)
		rc = verify(x, y, n, a, b);
	free(x);
	free(y);
	return rc;
}
