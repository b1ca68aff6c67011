/* synth_params.h — deterministic synthetic network parameters for the engine
 * tests (test_net.c, test_net_cuda.c): a nnp_param_src whose values depend on
 * the parameter name and index only (norm weights around 1).  The struct owns
 * what it returns; synth_release frees it. */
#ifndef NNP_TEST_SYNTH_PARAMS_H
#define NNP_TEST_SYNTH_PARAMS_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SYNTH_MAX 512

struct synth {
	float *buf[SYNTH_MAX];
	int n;
};

static const float *synth_get(void *ctx, const char *name, int ndim, const int64_t *shape)
{
	struct synth *s = ctx;
	size_t n = 1, h = 5381;
	float *b;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	for (const char *c = name; *c; c++)
		h = h * 33 + (unsigned char)*c;
	if (s->n == SYNTH_MAX || !(b = malloc(n * sizeof *b)))
		return NULL;
	for (size_t i = 0; i < n; i++)
		b[i] = (float)(0.3 * sin((double)(h % 1000) + 0.7 * (double)i)) + (strstr(name, "norm.weight") ? 1.0f : 0.0f);
	s->buf[s->n++] = b;
	return b;
}

static void synth_release(struct synth *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->buf[i]);
	s->n = 0;
}

#endif
