/* stats.c — per-channel min/max/mean over chunks. */
#include <math.h>
#include <stdlib.h>
#include "err.h"
#include "stats.h"

int nnp_stats_init(struct nnp_stats *s, const struct nnp_frame *f)
{
	s->nch = f->shape[0];
	s->ch = calloc((size_t)s->nch, sizeof *s->ch);
	if (!s->ch)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (int64_t c = 0; c < s->nch; c++) {
		s->ch[c].min = INFINITY;
		s->ch[c].max = -INFINITY;
	}
	return NNP_OK;
}

static void add_block(struct nnp_chan_stats *cs, const double *v, size_t n, double slope, double inter)
{
	for (size_t i = 0; i < n; i++) {
		double x = v[i] * slope + inter;
		if (!isfinite(x)) {
			cs->nonfinite++;
			continue;
		}
		if (x < cs->min)
			cs->min = x;
		if (x > cs->max)
			cs->max = x;
		/* Neumaier summation: exact enough with +-FLT_MAX among small values */
		double t = cs->sum + x;
		if (fabs(cs->sum) >= fabs(x))
			cs->comp += (cs->sum - t) + x;
		else
			cs->comp += (x - t) + cs->sum;
		cs->sum = t;
		cs->n++;
	}
}

void nnp_stats_add(struct nnp_stats *s, const struct nnp_frame *f, const void *chunk, int64_t zs)
{
	enum { BLK = 4096 };
	size_t es = nnp_dtype_size(f->dtype);
	uint64_t per = (uint64_t)zs * (uint64_t)f->shape[2] * (uint64_t)f->shape[3];
	#pragma omp parallel for schedule(static)
	for (int64_t c = 0; c < s->nch; c++) {
		double tmp[BLK];
		double slope = 1, inter = 0;
		const char *p = (const char *)chunk + (uint64_t)c * per * es;
		if (f->scale && f->scale[2 * c] != 0) {
			slope = f->scale[2 * c];
			inter = f->scale[2 * c + 1];
		}
		for (uint64_t off = 0; off < per; off += BLK) {
			size_t m = per - off < BLK ? (size_t)(per - off) : BLK;
			nnp_to_f64(f->dtype, p + off * es, tmp, m);
			add_block(&s->ch[c], tmp, m, slope, inter);
		}
	}
}

double nnp_chan_mean(const struct nnp_chan_stats *c)
{
	return c->n ? (c->sum + c->comp) / (double)c->n : NAN;
}

void nnp_stats_release(struct nnp_stats *s)
{
	free(s->ch);
	s->ch = NULL;
	s->nch = 0;
}
