/* stats.h — streaming per-channel statistics of frame payloads.
 * Values are reported with the frame's scale (scl_slope/inter) applied.
 * Ownership: caller-owned struct; nnp_stats_release frees its arrays. */
#ifndef NNP_STATS_H
#define NNP_STATS_H

#include "frame.h"

struct nnp_chan_stats {
	double min, max, sum, comp;   /* Neumaier-compensated sum */
	uint64_t n, nonfinite;
};

struct nnp_stats {
	struct nnp_chan_stats *ch;
	int64_t nch;
};

int nnp_stats_init(struct nnp_stats *s, const struct nnp_frame *f);
/* Add a chunk (layout c, zs, y, x) of frame f. */
void nnp_stats_add(struct nnp_stats *s, const struct nnp_frame *f, const void *chunk, int64_t zs);
double nnp_chan_mean(const struct nnp_chan_stats *c);  /* NaN if empty */
void nnp_stats_release(struct nnp_stats *s);

#endif
