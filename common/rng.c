/* rng.c — MT19937 and numpy's legacy RandomState draws (see rng.h). */
#include "rng.h"

#define N 624
#define M 397

void nnp_rs_seed(struct nnp_rs *rs, uint32_t seed)
{
	rs->mt[0] = seed;
	for (int i = 1; i < N; i++)
		rs->mt[i] = 1812433253u * (rs->mt[i - 1] ^ (rs->mt[i - 1] >> 30)) + (uint32_t)i;
	rs->idx = N;
}

#define MIX(a, b, c) ((c) ^ ((((a) & 0x80000000u) | ((b) & 0x7fffffffu)) >> 1) ^ \
			(((b) & 1u) ? 0x9908b0dfu : 0u))

void nnp_rs_twist(struct nnp_rs *rs)
{
	uint32_t *mt = rs->mt;
	int i;
	for (i = 0; i < N - M; i++)
		mt[i] = MIX(mt[i], mt[i + 1], mt[i + M]);
	for (; i < N - 1; i++)
		mt[i] = MIX(mt[i], mt[i + 1], mt[i + M - N]);
	mt[N - 1] = MIX(mt[N - 1], mt[0], mt[M - 1]);
	rs->idx = 0;
}

double nnp_rs_random(struct nnp_rs *rs)
{
	uint32_t a = nnp_rs_next32(rs) >> 5, b = nnp_rs_next32(rs) >> 6;
	return ((double)a * 67108864.0 + (double)b) / 9007199254740992.0;
}

uint64_t nnp_rs_bounded64(struct nnp_rs *rs, uint64_t m)
{
	uint64_t mask = m, v;
	mask |= mask >> 1;
	mask |= mask >> 2;
	mask |= mask >> 4;
	mask |= mask >> 8;
	mask |= mask >> 16;
	mask |= mask >> 32;
	do {
		uint64_t hi = nnp_rs_next32(rs), lo = nnp_rs_next32(rs);
		v = ((hi << 32) | lo) & mask;
	} while (v > m);
	return v;
}

void nnp_rs_randint(struct nnp_rs *rs, uint64_t n, size_t k, uint64_t *out)
{
	for (size_t i = 0; i < k; i++)
		out[i] = n ? nnp_rs_bounded(rs, n - 1) : 0;
}

void nnp_rs_shuffle(struct nnp_rs *rs, int64_t *a, size_t n)
{
	for (size_t i = n; i-- > 1;) {
		size_t j = (size_t)nnp_rs_bounded(rs, i);
		int64_t t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

void nnp_rs_permutation(struct nnp_rs *rs, int64_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (int64_t)i;
	nnp_rs_shuffle(rs, out, n);
}
