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
/* Regenerate the 624-word state (called when it is used up). */
void nnp_rs_twist(struct nnp_rs *rs);

/* Next tempered 32-bit output (inline: the fingerprint draws 1e8 per pass). */
static inline uint32_t nnp_rs_next32(struct nnp_rs *rs)
{
	uint32_t y;
	if (rs->idx >= 624)
		nnp_rs_twist(rs);
	y = rs->mt[rs->idx++];
	y ^= y >> 11;
	y ^= (y << 7) & 0x9d2c5680u;
	y ^= (y << 15) & 0xefc60000u;
	y ^= y >> 18;
	return y;
}
/* random_sample(): 53-bit double in [0, 1). */
double nnp_rs_random(struct nnp_rs *rs);
uint64_t nnp_rs_bounded64(struct nnp_rs *rs, uint64_t m);

/* Legacy masked-rejection bounded integer in [0, m] (m = 0 draws nothing). */
static inline uint64_t nnp_rs_bounded(struct nnp_rs *rs, uint64_t m)
{
	uint32_t mask, v;
	if (m == 0)
		return 0;
	if (m > 0xffffffffu)
		return nnp_rs_bounded64(rs, m);
	mask = (uint32_t)m;
	mask |= mask >> 1;
	mask |= mask >> 2;
	mask |= mask >> 4;
	mask |= mask >> 8;
	mask |= mask >> 16;
	do
		v = nnp_rs_next32(rs) & mask;
	while (v > m);
	return v;
}
/* randint(0, n) k times == choice(n, k, replace=True): out[i] in [0, n). */
void nnp_rs_randint(struct nnp_rs *rs, uint64_t n, size_t k, uint64_t *out);
/* shuffle(a) of n int64 values in place. */
void nnp_rs_shuffle(struct nnp_rs *rs, int64_t *a, size_t n);
/* permutation(n) into out[0..n). */
void nnp_rs_permutation(struct nnp_rs *rs, int64_t *out, size_t n);

#endif
