/* trainnet_cuda.c — the entry points of trainnet_cuda.h for builds without
 * CUDA.  With NNP_HAVE_CUDA the real ones come from
 * common/cuda/trainnet_cuda.cu. */
#include "err.h"
#include "gpu.h"
#include "trainnet_cuda.h"

#ifndef NNP_HAVE_CUDA

int nnp_cuda_tnet_available(int device)
{
	(void)device;
	return 0;
}

int nnp_cuda_tnet_create(const struct nnp_net_graph *g, int device, struct nnp_cuda_tnet **out)
{
	(void)g;
	*out = NULL;
	return nnp_err(NNP_EUSAGE, "device cuda:%d: %s", device, NNP_NO_CUDA_MSG);
}

void nnp_cuda_tnet_free(struct nnp_cuda_tnet *t)
{
	(void)t;
}

int nnp_cuda_tnet_set_precision(struct nnp_cuda_tnet *t, enum nnp_precision prec)
{
	(void)t;
	(void)prec;
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

int nnp_cuda_tnet_nheads(const struct nnp_cuda_tnet *t)
{
	(void)t;
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

int nnp_cuda_tnet_head_shape(const struct nnp_cuda_tnet *t, int h, int64_t shape[5])
{
	(void)t;
	(void)h;
	(void)shape;
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

int nnp_cuda_tnet_upload_params(struct nnp_cuda_tnet *t, const struct nnp_tparam *p, int np)
{
	(void)t;
	(void)p;
	(void)np;
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

int nnp_cuda_tnet_forward(struct nnp_cuda_tnet *t, int n, const int64_t *spatial, const float *host_in)
{
	(void)t;
	(void)n;
	(void)spatial;
	(void)host_in;
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

int nnp_cuda_tnet_output(struct nnp_cuda_tnet *t, int head, float *host_out)
{
	(void)t;
	(void)head;
	(void)host_out;
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

int nnp_cuda_tnet_backward(struct nnp_cuda_tnet *t, const float *const *host_dout)
{
	(void)t;
	(void)host_dout;
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

int nnp_cuda_tnet_download_grads(struct nnp_cuda_tnet *t, struct nnp_tparam *p, int np)
{
	(void)t;
	(void)p;
	(void)np;
	return nnp_err(NNP_EUSAGE, NNP_NO_CUDA_MSG);
}

#else

typedef int nnp_trainnet_cuda_c_is_empty_with_cuda; /* ISO C wants a declaration */

#endif
