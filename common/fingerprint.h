/* fingerprint.h — nnU-Net's dataset fingerprint (nnunet-facts §3).
 *
 * Per case: crop_to_nonzero, shape after crop, spacing, relative size, and
 * foreground intensity samples drawn exactly as nnU-Net draws them
 * (RandomState(1234) per case, floor(1e8 / cases) draws with replacement
 * per channel).  Statistics reproduce numpy's float32 arithmetic (mean and
 * std: pairwise sums over 8192-value buffers; median; linear percentiles)
 * without materialising the 1e8 samples.
 *
 * Memory: threads x one case while reading, plus the foreground values of
 * the cases kept for the second pass (up to cache_bytes; cases over the
 * budget are read again).  Ownership: the JSON returned is a new reference.
 */
#ifndef NNP_FINGERPRINT_H
#define NNP_FINGERPRINT_H

#include <stdint.h>
#include <jansson.h>
#include "dataset.h"

struct nnp_fp_opts {
	uint64_t cache_bytes;   /* foreground values kept between passes */
	int progress;           /* show a progress bar on a TTY */
	double total_samples;   /* nnU-Net's 1e8 (10e7); 0 = default. Other values are
	                           for tests and quick looks: results then differ */
};

int nnp_fingerprint(const struct nnp_dataset *d, const struct nnp_fp_opts *o, json_t **out);

/* numpy-exact helpers (exposed for tests). */
float nnp_np_pairwise_f32(const float *a, uint64_t n);      /* one inner-loop call */
float nnp_np_sum_f32(const float *a, uint64_t n);           /* np.sum of a float32 array */

#endif
