/* dnnl_check.h — oneDNN error helpers shared by the CPU backends (internal
 * to engine.c and trainnet.c): a failed call becomes an nnp_err message
 * naming the step, NNP_ENOMEM for out-of-memory, NNP_EINTERNAL otherwise. */
#ifndef NNP_DNNL_CHECK_H
#define NNP_DNNL_CHECK_H

#include <oneapi/dnnl/dnnl.h>

#include "err.h"

static inline int dnnl_fail(dnnl_status_t st, const char *what)
{
	if (st == dnnl_success)
		return NNP_OK;
	if (st == dnnl_out_of_memory)
		return nnp_err(NNP_ENOMEM, "oneDNN: %s: out of memory", what);
	return nnp_err(NNP_EINTERNAL, "oneDNN: %s failed (status %d)", what, (int)st);
}

#define DN(call, what)                                              \
	do {                                                        \
		dnnl_status_t st_ = (call);                         \
		if (st_ != dnnl_success)                            \
			return dnnl_fail(st_, what);                \
	} while (0)

#endif
