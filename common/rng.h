/* rng.h — numpy's legacy RandomState (MT19937) algorithms, bit-exact
 * (nnunet-facts Appendix B), for nnU-Net's seeded steps: splits, fingerprint
 * intensity samples, class locations.
 * Ownership: struct nnp_rs is a plain value; no allocation. */
#ifndef NNP_RNG_H
#define NNP_RNG_H

#include <stddef.h>
#include <stdint.h>

struct nnp_rs {
	uint32_t mt[624];
	int idx;
};

/* RandomState(seed) for 0 <= seed < 2^32 (init_genrand). */
void nnp_rs_seed(struct nnp_rs *rs, uint32_t seed);
uint32_t nnp_rs_next32(struct nnp_rs *rs);
/* random_sample(): 53-bit double in [0, 1). */
double nnp_rs_random(struct nnp_rs *rs);
/* Legacy masked-rejection bounded integer in [0, m] (m = 0 draws nothing). */
uint64_t nnp_rs_bounded(struct nnp_rs *rs, uint64_t m);
/* randint(0, n) k times == choice(n, k, replace=True): out[i] in [0, n). */
void nnp_rs_randint(struct nnp_rs *rs, uint64_t n, size_t k, uint64_t *out);
/* shuffle(a) of n int64 values in place. */
void nnp_rs_shuffle(struct nnp_rs *rs, int64_t *a, size_t n);
/* permutation(n) into out[0..n). */
void nnp_rs_permutation(struct nnp_rs *rs, int64_t *out, size_t n);

#endif
