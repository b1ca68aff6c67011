/* augment.c — nnU-Net's training augmentation, one sample at a time
 * (nnunet-facts §8; docs/augmentation.md). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "augment.h"
#include "dtype.h"
#include "err.h"

/* ---- patches ---- */

void nnp_patch_init(struct nnp_patch *p)
{
	memset(p, 0, sizeof *p);
}

int64_t nnp_patch_nvox(const struct nnp_patch *p)
{
	return p->n[0] * p->n[1] * p->n[2];
}

int nnp_patch_alloc(struct nnp_patch *p, int64_t c, const int64_t n[3])
{
	nnp_patch_init(p);
	if (c < 1 || n[0] < 1 || n[1] < 1 || n[2] < 1)
		return nnp_err(NNP_EINTERNAL, "empty patch");
	p->c = c;
	memcpy(p->n, n, sizeof p->n);
	p->img = calloc((size_t)(c * nnp_patch_nvox(p)), sizeof(float));
	p->seg = calloc((size_t)nnp_patch_nvox(p), sizeof(int16_t));
	if (!p->img || !p->seg) {
		nnp_patch_release(p);
		return nnp_err(NNP_ENOMEM, "cannot allocate a %lldx%lldx%lld patch", (long long)n[0],
			       (long long)n[1], (long long)n[2]);
	}
	return NNP_OK;
}

void nnp_patch_release(struct nnp_patch *p)
{
	free(p->img);
	free(p->seg);
	nnp_patch_init(p);
}

static float *chan(struct nnp_patch *p, int64_t ch)
{
	return p->img + ch * nnp_patch_nvox(p);
}

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint32_t nnp_aug_sample_seed(uint64_t seed, int64_t iteration, int64_t index)
{
	uint64_t h = splitmix64(seed);
	h = splitmix64(h ^ (uint64_t)iteration);
	h = splitmix64(h ^ (uint64_t)index);
	return (uint32_t)(h ^ (h >> 32));
}

void nnp_aug_rng_seed(struct nnp_aug_rng *r, uint32_t seed)
{
	nnp_rs_seed(&r->rs, seed);
	r->has_gauss = 0;
	r->gauss = 0;
}

double nnp_aug_uniform(struct nnp_aug_rng *r, double lo, double hi)
{
	return lo + (hi - lo) * nnp_rs_random(&r->rs);
}

double nnp_aug_normal(struct nnp_aug_rng *r)
{
	double x1, x2, r2, f;
	if (r->has_gauss) {
		r->has_gauss = 0;
		return r->gauss;
	}
	do {
		x1 = 2.0 * nnp_rs_random(&r->rs) - 1.0;
		x2 = 2.0 * nnp_rs_random(&r->rs) - 1.0;
		r2 = x1 * x1 + x2 * x2;
	} while (r2 >= 1.0 || r2 == 0.0);
	f = sqrt(-2.0 * log(r2) / r2);
	r->gauss = f * x1;
	r->has_gauss = 1;
	return f * x2;
}

double nnp_aug_bgcontrast(struct nnp_aug_rng *r, double a, double b)
{
	if (nnp_rs_random(&r->rs) < 0.5 && a < 1)
		return nnp_aug_uniform(r, a, 1);
	return nnp_aug_uniform(r, a > 1 ? a : 1, b);
}

static int decide(struct nnp_aug_rng *r, double p)
{
	if (p >= 1)
		return 1;
	if (p <= 0)
		return 0;
	return nnp_rs_random(&r->rs) < p;
}

/* ---- spatial transform ---- */

void nnp_aug_affine(int rank, const double angle[3], double scale, double A[3][3])
{
	memset(A, 0, 9 * sizeof(double));
	if (rank == 2) {
		double c = cos(angle[2]), s = sin(angle[2]);
		A[0][0] = c * scale, A[0][1] = -s * scale;
		A[1][0] = s * scale, A[1][1] = c * scale;
		return;
	}
	double cx = cos(angle[0]), sx = sin(angle[0]), cy = cos(angle[1]), sy = sin(angle[1]);
	double cz = cos(angle[2]), sz = sin(angle[2]);
	double Rx[3][3] = { { 1, 0, 0 }, { 0, cx, -sx }, { 0, sx, cx } };
	double Ry[3][3] = { { cy, 0, sy }, { 0, 1, 0 }, { -sy, 0, cy } };
	double Rz[3][3] = { { cz, -sz, 0 }, { sz, cz, 0 }, { 0, 0, 1 } };
	double T[3][3];
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			T[i][j] = Ry[i][0] * Rx[0][j] + Ry[i][1] * Rx[1][j] + Ry[i][2] * Rx[2][j];
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			A[i][j] = (Rz[i][0] * T[0][j] + Rz[i][1] * T[1][j] + Rz[i][2] * T[2][j]) * scale;
}

/* Plain crop starting at floor(S/2) - p/2 (image pad 0, seg pad -1). */
static void centre_crop(const struct nnp_patch *in, int rank, struct nnp_patch *out)
{
	int64_t st[3], nv_in = nnp_patch_nvox(in), nv_out = nnp_patch_nvox(out);
	for (int a = 0; a < 3; a++)
		st[a] = (a == 0 && rank == 2) ? 0 : in->n[a] / 2 - out->n[a] / 2;
	for (int64_t k0 = 0; k0 < out->n[0]; k0++)
		for (int64_t k1 = 0; k1 < out->n[1]; k1++)
			for (int64_t k2 = 0; k2 < out->n[2]; k2++) {
				int64_t i0 = k0 + st[0], i1 = k1 + st[1], i2 = k2 + st[2];
				int64_t o = (k0 * out->n[1] + k1) * out->n[2] + k2;
				int inside = i0 >= 0 && i0 < in->n[0] && i1 >= 0 && i1 < in->n[1] && i2 >= 0 &&
					     i2 < in->n[2];
				int64_t s = inside ? (i0 * in->n[1] + i1) * in->n[2] + i2 : 0;
				out->seg[o] = inside ? in->seg[s] : -1;
				for (int64_t c = 0; c < in->c; c++)
					out->img[c * nv_out + o] = inside ? in->img[c * nv_in + s] : 0.0f;
			}
}

/* Up to 8 interpolation corners of one sample position. */
struct corners {
	int n, full;   /* corners inside / all corners (8 or 4) */
	int64_t off[8];
	double w[8];
};

/* Corners inside the input of position q (rank axes starting at a0). */
static void make_corners(const int64_t *S, int a0, const double *q, struct corners *cs)
{
	int64_t i0[3] = { 0, 0, 0 };
	double t[3] = { 0, 0, 0 };
	int na = 3 - a0;
	for (int a = a0; a < 3; a++) {
		double f = floor(q[a]);
		i0[a] = (int64_t)f;
		t[a] = q[a] - f;
	}
	cs->n = 0;
	cs->full = 1 << na;
	for (int m = 0; m < (1 << na); m++) {
		int64_t idx[3] = { i0[0], i0[1], i0[2] };
		double w = 1;
		int ok = 1;
		for (int a = a0; a < 3; a++) {
			int bit = (m >> (2 - a)) & 1;
			idx[a] += bit;
			w *= bit ? t[a] : 1 - t[a];
			ok &= idx[a] >= 0 && idx[a] < S[a];
		}
		if (!ok)
			continue;
		cs->off[cs->n] = (idx[0] * S[1] + idx[1]) * S[2] + idx[2];
		cs->w[cs->n++] = w;
	}
}

/* The segmentation rule at one position: each label's one-hot x1000,
 * interpolated, cast to float16; the lowest label first, later (higher)
 * labels replace it only when strictly larger. */
static int16_t seg_at(const int16_t *seg, const struct corners *cs, int16_t lowest)
{
	int16_t lab[8];
	int nl = 0, same = cs->n > 0;
	for (int i = 1; i < cs->n; i++)
		same &= seg[cs->off[i]] == seg[cs->off[0]];
	/* All corners inside and equal: that label is the only one with weight
	 * (sum 1 -> 1000), so it wins (fast path for the common case). */
	if (same && cs->n == cs->full)
		return seg[cs->off[0]];
	for (int i = 0; i < cs->n; i++) {
		int16_t v = seg[cs->off[i]];
		int j = 0;
		while (j < nl && lab[j] < v)
			j++;
		if (j < nl && lab[j] == v)
			continue;
		memmove(lab + j + 1, lab + j, (size_t)(nl - j) * sizeof *lab);
		lab[j] = v;
		nl++;
	}
	int16_t best = lowest;
	float bestv = 0;
	for (int j = 0; j < nl; j++) {
		double acc = 0;
		for (int i = 0; i < cs->n; i++)
			if (seg[cs->off[i]] == lab[j])
				acc += cs->w[i] * 1000.0;
		float v = nnp_half_to_float(nnp_double_to_half(acc));
		if (lab[j] == lowest)
			bestv = v;
		else if (v > bestv)
			best = lab[j], bestv = v;
	}
	return best;
}

static int16_t seg_min(const struct nnp_patch *p)
{
	int16_t m = INT16_MAX;
	for (int64_t i = 0; i < nnp_patch_nvox(p); i++)
		if (p->seg[i] < m)
			m = p->seg[i];
	return m;
}

/* One output voxel k (patch extents P) of the affine transform. */
static void affine_voxel(const struct nnp_patch *in, int rank, const double (*A)[3], const int64_t *P,
			 const int64_t k[3], int16_t lowest, struct nnp_patch *out, int64_t o)
{
	int a0 = rank == 2 ? 1 : 0, outside = 0;
	double g[3] = { 0 }, q[3];
	struct corners cs;
	for (int a = a0; a < 3; a++)
		g[a] = (double)k[a] - (double)(P[a] - 1) / 2.0;
	q[0] = (double)k[0];
	for (int a = a0; a < 3; a++) {
		double s = 0;
		for (int b = a0; b < 3; b++)
			s += A[a - a0][b - a0] * g[b];
		q[a] = s + ((double)in->n[a] / 2.0 - 0.5);
		outside |= q[a] < 0 || q[a] > (double)(in->n[a] - 1);
	}
	make_corners(in->n, a0, q, &cs);
	if (rank == 2)   /* the slice's own offset */
		for (int i = 0; i < cs.n; i++)
			cs.off[i] += k[0] * in->n[1] * in->n[2];
	for (int64_t c = 0; c < in->c; c++) {
		const float *src = in->img + c * nnp_patch_nvox(in);
		double v = 0;
		for (int i = 0; i < cs.n; i++)
			v += cs.w[i] * (double)src[cs.off[i]];
		out->img[c * nnp_patch_nvox(out) + o] = (float)v;
	}
	out->seg[o] = outside ? -1 : seg_at(in->seg, &cs, lowest);
}

int nnp_aug_spatial(const struct nnp_patch *in, int rank, const int64_t out_n[3], const double (*A)[3],
		    struct nnp_patch *out)
{
	int rc;
	if (rank != 2 && rank != 3)
		return nnp_err(NNP_EINTERNAL, "spatial transform of rank %d", rank);
	if (rank == 2 && out_n[0] != in->n[0])
		return nnp_err(NNP_EDATA, "2D spatial transform: axis 0 is %lld in, %lld out",
			       (long long)in->n[0], (long long)out_n[0]);
	if ((rc = nnp_patch_alloc(out, in->c, out_n)))
		return rc;
	if (!A) {
		centre_crop(in, rank, out);
		return NNP_OK;
	}
	int16_t lowest = seg_min(in);
	int64_t k[3];
	for (k[0] = 0; k[0] < out_n[0]; k[0]++)
		for (k[1] = 0; k[1] < out_n[1]; k[1]++)
			for (k[2] = 0; k[2] < out_n[2]; k[2]++)
				affine_voxel(in, rank, A, out_n, k, lowest, out,
					     (k[0] * out_n[1] + k[1]) * out_n[2] + k[2]);
	return NNP_OK;
}

/* ---- intensity transforms ---- */

void nnp_aug_noise(struct nnp_patch *p, int64_t ch, double sigma, struct nnp_aug_rng *r)
{
	float *x = chan(p, ch);
	for (int64_t i = 0; i < nnp_patch_nvox(p); i++)
		x[i] += (float)(sigma * nnp_aug_normal(r));
}

int nnp_aug_blur_ksize(double sigma)
{
	double n = 6.0 * sigma + 0.5;
	double r = nearbyint(n);   /* half-even in the default rounding mode */
	if (fmod(r, 2.0) == 0)
		r += n - r >= 0 ? 1 : -1;
	return (int)r;
}

/* Reflect index i into [0, n) (mirror without repeating the edge). */
static int64_t reflect(int64_t i, int64_t n)
{
	if (n == 1)
		return 0;
	int64_t period = 2 * (n - 1);
	i %= period;
	if (i < 0)
		i += period;
	return i < n ? i : period - i;
}

/* Convolve every line of x (extents n) along axis a with kernel w (ks taps). */
static int convolve_axis(float *x, const int64_t n[3], int a, const double *w, int ks)
{
	int64_t st[3] = { n[1] * n[2], n[2], 1 }, len = n[a], r = ks / 2;
	int b = a == 0 ? 1 : 0, c = a == 2 ? 1 : 2;
	float *buf = malloc((size_t)(len + 2 * r) * sizeof(float));
	if (!buf)
		return nnp_err(NNP_ENOMEM, "cannot allocate a blur line");
	for (int64_t i = 0; i < n[b]; i++)
		for (int64_t j = 0; j < n[c]; j++) {
			float *line = x + i * st[b] + j * st[c];
			for (int64_t t = -r; t < len + r; t++)
				buf[t + r] = line[reflect(t, len) * st[a]];
			for (int64_t t = 0; t < len; t++) {
				double s = 0;
				for (int u = 0; u < ks; u++)
					s += w[u] * (double)buf[t + u];
				line[t * st[a]] = (float)s;
			}
		}
	free(buf);
	return NNP_OK;
}

int nnp_aug_blur(struct nnp_patch *p, int64_t ch, const double sigma[3])
{
	for (int a = 0; a < 3; a++) {
		if (sigma[a] <= 0 || p->n[a] == 1)
			continue;
		int ks = nnp_aug_blur_ksize(sigma[a]), rc;
		double w[64], sum = 0;
		if (ks > 63)
			return nnp_err(NNP_EINTERNAL, "blur sigma %g too large", sigma[a]);
		for (int u = 0; u < ks; u++) {
			double x = u - (ks - 1) / 2.0;
			w[u] = exp(-0.5 * (x / sigma[a]) * (x / sigma[a]));
			sum += w[u];
		}
		for (int u = 0; u < ks; u++)
			w[u] /= sum;
		if ((rc = convolve_axis(chan(p, ch), p->n, a, w, ks)))
			return rc;
	}
	return NNP_OK;
}

void nnp_aug_brightness(struct nnp_patch *p, int64_t ch, double m)
{
	float *x = chan(p, ch);
	for (int64_t i = 0; i < nnp_patch_nvox(p); i++)
		x[i] = (float)(x[i] * m);
}

struct stats {
	double mean, sd, lo, hi;   /* sd: unbiased (N-1) */
};

static struct stats stats_of(const float *x, int64_t n)
{
	struct stats s = { 0, 0, x[0], x[0] };
	double ss = 0;
	for (int64_t i = 0; i < n; i++) {
		s.mean += x[i];
		s.lo = x[i] < s.lo ? x[i] : s.lo;
		s.hi = x[i] > s.hi ? x[i] : s.hi;
	}
	s.mean /= (double)n;
	for (int64_t i = 0; i < n; i++)
		ss += (x[i] - s.mean) * (x[i] - s.mean);
	s.sd = n > 1 ? sqrt(ss / (double)(n - 1)) : 0;
	return s;
}

void nnp_aug_contrast(struct nnp_patch *p, int64_t ch, double f)
{
	float *x = chan(p, ch);
	int64_t n = nnp_patch_nvox(p);
	struct stats s = stats_of(x, n);
	for (int64_t i = 0; i < n; i++) {
		double v = (x[i] - s.mean) * f + s.mean;
		x[i] = (float)(v < s.lo ? s.lo : v > s.hi ? s.hi : v);
	}
}

void nnp_aug_gamma(struct nnp_patch *p, int64_t ch, double gamma, int invert)
{
	float *x = chan(p, ch);
	int64_t n = nnp_patch_nvox(p);
	if (invert)
		for (int64_t i = 0; i < n; i++)
			x[i] = -x[i];
	struct stats s = stats_of(x, n);
	double range = s.hi - s.lo, div = range > 1e-7 ? range : 1e-7;
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)(pow((x[i] - s.lo) / div, gamma) * range + s.lo);
	struct stats t = stats_of(x, n);
	double k = s.sd / (t.sd > 1e-7 ? t.sd : 1e-7);
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)((x[i] - t.mean) * k + s.mean);
	if (invert)
		for (int64_t i = 0; i < n; i++)
			x[i] = -x[i];
}

/* Linear resize (align_corners False) of every line along axis a: src
 * extents n (n[a] = from) -> dst with extent `to` on axis a. */
static void linear_axis(const float *src, const int64_t n[3], int a, int64_t to, float *dst)
{
	int64_t m[3] = { n[0], n[1], n[2] }, from = n[a], k[3];
	int64_t sst[3] = { n[1] * n[2], n[2], 1 };
	double scale = (double)from / (double)to;
	m[a] = to;
	for (k[0] = 0; k[0] < m[0]; k[0]++)
		for (k[1] = 0; k[1] < m[1]; k[1]++)
			for (k[2] = 0; k[2] < m[2]; k[2]++) {
				double s = ((double)k[a] + 0.5) * scale - 0.5;
				s = s < 0 ? 0 : s;
				int64_t i0 = (int64_t)s, i1 = i0 + (i0 < from - 1);
				double l1 = s - (double)i0;
				int64_t base = k[0] * sst[0] + k[1] * sst[1] + k[2] - k[a] * sst[a];
				*dst++ = (float)((1 - l1) * src[base + i0 * sst[a]] + l1 * src[base + i1 * sst[a]]);
			}
}

int nnp_aug_lowres(struct nnp_patch *p, int64_t ch, const double s[3])
{
	int64_t m[3], nv = nnp_patch_nvox(p), cur[3];
	for (int a = 0; a < 3; a++) {
		m[a] = (int64_t)nearbyint((double)p->n[a] * s[a]);
		if (m[a] < 1)
			m[a] = 1;
	}
	float *x = chan(p, ch), *a1 = malloc((size_t)nv * sizeof(float)), *a2 = malloc((size_t)nv * sizeof(float));
	if (!a1 || !a2) {
		free(a1), free(a2);
		return nnp_err(NNP_ENOMEM, "cannot allocate the low-resolution buffers");
	}
	for (int64_t k0 = 0; k0 < m[0]; k0++) {
		int64_t i0 = (int64_t)floor((k0 + 0.5) * ((double)p->n[0] / m[0]));
		i0 = i0 < p->n[0] - 1 ? i0 : p->n[0] - 1;
		for (int64_t k1 = 0; k1 < m[1]; k1++) {
			int64_t i1 = (int64_t)floor((k1 + 0.5) * ((double)p->n[1] / m[1]));
			i1 = i1 < p->n[1] - 1 ? i1 : p->n[1] - 1;
			for (int64_t k2 = 0; k2 < m[2]; k2++) {
				int64_t i2 = (int64_t)floor((k2 + 0.5) * ((double)p->n[2] / m[2]));
				i2 = i2 < p->n[2] - 1 ? i2 : p->n[2] - 1;
				a1[(k0 * m[1] + k1) * m[2] + k2] = x[(i0 * p->n[1] + i1) * p->n[2] + i2];
			}
		}
	}
	memcpy(cur, m, sizeof cur);
	float *from = a1, *to = a2;
	for (int a = 2; a >= 0; a--) {
		float *dst = a == 0 ? x : to;
		linear_axis(from, cur, a, p->n[a], dst);
		cur[a] = p->n[a];
		from = dst, to = dst == a1 ? a2 : a1;
	}
	free(a1);
	free(a2);
	return NNP_OK;
}

/* ---- mirror, mask, labels ---- */

static void swap_bytes(unsigned char *a, unsigned char *b, size_t n)
{
	unsigned char t[64];
	while (n) {
		size_t k = n < sizeof t ? n : sizeof t;
		memcpy(t, a, k), memcpy(a, b, k), memcpy(b, t, k);
		a += k, b += k, n -= k;
	}
}

/* Flip a (n0, n1, n2) volume of es-byte elements along axis a. */
static void flip_vol(void *data, const int64_t n[3], size_t es, int a)
{
	unsigned char *d = data;
	int64_t outer = a == 0 ? 1 : a == 1 ? n[0] : n[0] * n[1];
	int64_t len = n[a];
	size_t inner = es * (size_t)(a == 0 ? n[1] * n[2] : a == 1 ? n[2] : 1);
	for (int64_t o = 0; o < outer; o++) {
		unsigned char *base = d + (size_t)o * (size_t)len * inner;
		for (int64_t i = 0; i < len / 2; i++)
			swap_bytes(base + (size_t)i * inner, base + (size_t)(len - 1 - i) * inner, inner);
	}
}

void nnp_aug_mirror(struct nnp_patch *p, const int flip[3])
{
	for (int a = 0; a < 3; a++) {
		if (!flip[a])
			continue;
		for (int64_t c = 0; c < p->c; c++)
			flip_vol(chan(p, c), p->n, sizeof(float), a);
		flip_vol(p->seg, p->n, sizeof(int16_t), a);
	}
}

void nnp_aug_mask(struct nnp_patch *p, int64_t ch)
{
	float *x = chan(p, ch);
	for (int64_t i = 0; i < nnp_patch_nvox(p); i++)
		if (p->seg[i] < 0)
			x[i] = 0;
}

void nnp_aug_remove_label(struct nnp_patch *p)
{
	for (int64_t i = 0; i < nnp_patch_nvox(p); i++)
		if (p->seg[i] == -1)
			p->seg[i] = 0;
}

/* ---- the pipeline ---- */

static const char *const step_names[NNP_AUG_NSTEPS] = {
	"rotation", "scaling", "noise", "blur", "brightness", "contrast",
	"lowres", "gamma_inv", "gamma", "mirror", "mask",
};

const char *nnp_aug_step_name(int step)
{
	return step >= 0 && step < NNP_AUG_NSTEPS ? step_names[step] : "?";
}

int nnp_aug_step_from_name(const char *name)
{
	for (int i = 0; i < NNP_AUG_NSTEPS; i++)
		if (!strcmp(name, step_names[i]))
			return i;
	return -1;
}

void nnp_aug_probs_default(struct nnp_aug_probs *pr)
{
	static const double p[NNP_AUG_NSTEPS] = { 0.2, 0.2, 0.1, 0.2, 0.15, 0.15, 0.25, 0.1, 0.3, 1, 1 };
	for (int i = 0; i < NNP_AUG_NSTEPS; i++)
		pr->p[i] = p[i], pr->p_ch[i] = 1;
	pr->p_ch[NNP_AUG_BLUR] = pr->p_ch[NNP_AUG_LOWRES] = pr->p_ch[NNP_AUG_MIRROR] = 0.5;
}

void nnp_aug_probs_only(struct nnp_aug_probs *pr, unsigned mask)
{
	for (int i = 0; i < NNP_AUG_NSTEPS; i++)
		pr->p[i] = pr->p_ch[i] = (mask >> i) & 1 ? 1 : 0;
}

void nnp_aug_probs_none(struct nnp_aug_probs *pr)
{
	nnp_aug_probs_only(pr, 0);
}

void nnp_aug_record_init(struct nnp_aug_record *rec)
{
	memset(rec, 0, sizeof *rec);
	rec->scale = 1;
}

void nnp_aug_record_release(struct nnp_aug_record *rec)
{
	free(rec->blur_sigma);
	nnp_aug_record_init(rec);
}

static int record_alloc(struct nnp_aug_record *rec, int64_t c)
{
	nnp_aug_record_init(rec);
	rec->c = c;
	rec->blur_sigma = malloc((size_t)c * 8 * sizeof(double));
	if (!rec->blur_sigma)
		return nnp_err(NNP_ENOMEM, "cannot allocate the augmentation record");
	for (int64_t i = 0; i < 8 * c; i++)
		rec->blur_sigma[i] = NAN;
	rec->brightness = rec->blur_sigma + 3 * c;
	rec->contrast = rec->brightness + c;
	rec->lowres = rec->contrast + c;
	rec->gamma_inv = rec->lowres + c;
	rec->gamma = rec->gamma_inv + c;
	return NNP_OK;
}

static void mark(struct nnp_aug_record *rec, int step)
{
	rec->applied |= 1u << step;
	rec->order[rec->napplied++] = step;
}

int nnp_aug_check(const struct nnp_aug_config *cfg, const struct nnp_patch *p)
{
	const int64_t *P = cfg->patch;
	if (cfg->two_d && (p->n[0] != 1 || P[0] != 1))
		return nnp_err(NNP_EDATA, "2D sample: axis 0 must have extent 1, not %lld", (long long)p->n[0]);
	if (cfg->dummy_2d && !cfg->two_d && p->n[0] != P[0])
		return nnp_err(NNP_EDATA, "dummy-2D sample: axis 0 is %lld, the final patch %lld",
			       (long long)p->n[0], (long long)P[0]);
	for (int a = 0; a < 3; a++)
		if (P[a] < 1 || P[a] > p->n[a])
			return nnp_err(NNP_EDATA, "final patch %lldx%lldx%lld does not fit in the %lldx%lldx%lld input",
				       (long long)P[0], (long long)P[1], (long long)P[2], (long long)p->n[0],
				       (long long)p->n[1], (long long)p->n[2]);
	return NNP_OK;
}

static int run_spatial(const struct nnp_aug_config *cfg, struct nnp_patch *p, struct nnp_aug_rng *r,
		       struct nnp_aug_record *rec)
{
	const struct nnp_aug_probs *pr = &cfg->probs;
	int rank = cfg->two_d || cfg->dummy_2d ? 2 : 3, rc;
	int rot = decide(r, pr->p[NNP_AUG_ROTATION]), scl = decide(r, pr->p[NNP_AUG_SCALING]);
	double A[3][3] = { { 0 } };
	struct nnp_patch out;
	if (rot) {
		for (int a = 0; a < 3; a++)
			rec->angle[a] = nnp_aug_uniform(r, cfg->rot[0], cfg->rot[1]);
		if (rank == 2)
			rec->angle[0] = rec->angle[1] = 0;
		mark(rec, NNP_AUG_ROTATION);
	}
	if (scl) {
		rec->scale = nnp_aug_uniform(r, 0.7, 1.4);
		mark(rec, NNP_AUG_SCALING);
	}
	if (rot || scl)
		nnp_aug_affine(rank, rec->angle, rec->scale, A);
	if ((rc = nnp_aug_spatial(p, rank, cfg->patch, rot || scl ? (const double(*)[3])A : NULL, &out)))
		return rc;
	nnp_patch_release(p);
	*p = out;
	return NNP_OK;
}

/* The per-channel BGContrast steps: brightness, contrast, both gammas. */
static void run_bgc_step(const struct nnp_aug_config *cfg, struct nnp_patch *p, struct nnp_aug_rng *r,
			 struct nnp_aug_record *rec, int step)
{
	if (!decide(r, cfg->probs.p[step]))
		return;
	mark(rec, step);
	for (int64_t c = 0; c < p->c; c++) {
		switch (step) {
		case NNP_AUG_BRIGHTNESS:
			nnp_aug_brightness(p, c, rec->brightness[c] = nnp_aug_bgcontrast(r, 0.75, 1.25));
			break;
		case NNP_AUG_CONTRAST:
			nnp_aug_contrast(p, c, rec->contrast[c] = nnp_aug_bgcontrast(r, 0.75, 1.25));
			break;
		case NNP_AUG_GAMMA_INV:
			nnp_aug_gamma(p, c, rec->gamma_inv[c] = nnp_aug_bgcontrast(r, 0.7, 1.5), 1);
			break;
		default:
			nnp_aug_gamma(p, c, rec->gamma[c] = nnp_aug_bgcontrast(r, 0.7, 1.5), 0);
		}
	}
}

static int run_blur(const struct nnp_aug_config *cfg, struct nnp_patch *p, struct nnp_aug_rng *r,
		    struct nnp_aug_record *rec)
{
	int rc;
	if (!decide(r, cfg->probs.p[NNP_AUG_BLUR]))
		return NNP_OK;
	mark(rec, NNP_AUG_BLUR);
	for (int64_t c = 0; c < p->c; c++) {
		if (!decide(r, cfg->probs.p_ch[NNP_AUG_BLUR]))
			continue;
		double *s = rec->blur_sigma + 3 * c;
		for (int a = 0; a < 3; a++)
			s[a] = a == 0 && cfg->two_d ? 0 : nnp_aug_uniform(r, 0.5, 1.0);
		if ((rc = nnp_aug_blur(p, c, s)))
			return rc;
	}
	return NNP_OK;
}

static int run_lowres(const struct nnp_aug_config *cfg, struct nnp_patch *p, struct nnp_aug_rng *r,
		      struct nnp_aug_record *rec)
{
	int rc;
	if (!decide(r, cfg->probs.p[NNP_AUG_LOWRES]))
		return NNP_OK;
	mark(rec, NNP_AUG_LOWRES);
	for (int64_t c = 0; c < p->c; c++) {
		if (!decide(r, cfg->probs.p_ch[NNP_AUG_LOWRES]))
			continue;
		double s = rec->lowres[c] = nnp_aug_uniform(r, 0.5, 1.0);
		double s3[3] = { cfg->two_d || cfg->dummy_2d ? 1 : s, s, s };
		if ((rc = nnp_aug_lowres(p, c, s3)))
			return rc;
	}
	return NNP_OK;
}

static void run_mirror(const struct nnp_aug_config *cfg, struct nnp_patch *p, struct nnp_aug_rng *r,
		       struct nnp_aug_record *rec)
{
	int any = 0;
	if (!decide(r, cfg->probs.p[NNP_AUG_MIRROR]))
		return;
	for (int a = 0; a < 3; a++) {
		rec->mirrored[a] = cfg->mirror_axes[a] && decide(r, cfg->probs.p_ch[NNP_AUG_MIRROR]);
		any |= rec->mirrored[a];
	}
	if (!any)
		return;
	mark(rec, NNP_AUG_MIRROR);
	nnp_aug_mirror(p, rec->mirrored);
}

int nnp_aug_run(const struct nnp_aug_config *cfg, struct nnp_patch *p, struct nnp_aug_rng *r,
		struct nnp_aug_record *rec)
{
	const struct nnp_aug_probs *pr = &cfg->probs;
	int rc;
	if ((rc = record_alloc(rec, p->c)) || (rc = nnp_aug_check(cfg, p)) || (rc = run_spatial(cfg, p, r, rec)))
		return rc;
	if (decide(r, pr->p[NNP_AUG_NOISE])) {
		mark(rec, NNP_AUG_NOISE);
		rec->noise_sigma = nnp_aug_uniform(r, 0, 0.1);
		for (int64_t c = 0; c < p->c; c++)
			nnp_aug_noise(p, c, rec->noise_sigma, r);
	}
	if ((rc = run_blur(cfg, p, r, rec)))
		return rc;
	run_bgc_step(cfg, p, r, rec, NNP_AUG_BRIGHTNESS);
	run_bgc_step(cfg, p, r, rec, NNP_AUG_CONTRAST);
	if ((rc = run_lowres(cfg, p, r, rec)))
		return rc;
	run_bgc_step(cfg, p, r, rec, NNP_AUG_GAMMA_INV);
	run_bgc_step(cfg, p, r, rec, NNP_AUG_GAMMA);
	run_mirror(cfg, p, r, rec);
	if (cfg->mask_ch && decide(r, pr->p[NNP_AUG_MASK])) {
		mark(rec, NNP_AUG_MASK);
		for (int64_t c = 0; c < p->c && c < cfg->n_mask; c++)
			if (cfg->mask_ch[c])
				nnp_aug_mask(p, c);
	}
	nnp_aug_remove_label(p);
	return NNP_OK;
}

/* ---- props ---- */

static int get_int(const json_t *o, const char *key, int64_t *v)
{
	const json_t *j = json_object_get(o, key);
	if (!json_is_integer(j))
		return nnp_err(NNP_EDATA, "props.sample.%s: %s", key, j ? "not an integer" : "missing");
	*v = json_integer_value(j);
	return NNP_OK;
}

static int get_array(const json_t *o, const char *key, size_t lo, size_t hi, const json_t **a)
{
	*a = json_object_get(o, key);
	if (!json_is_array(*a) || json_array_size(*a) < lo || json_array_size(*a) > hi)
		return nnp_err(NNP_EDATA, "props.sample.%s: %s", key,
			       *a ? "not an array of the right length" : "missing");
	return NNP_OK;
}

int nnp_aug_config_from_sample(const json_t *sample, struct nnp_aug_config *cfg, struct nnp_aug_sample *s)
{
	const json_t *fp, *rot, *mir, *d2 = json_object_get(sample, "dummy_2d");
	int rc;
	size_t i;
	if (!json_is_object(sample))
		return nnp_err(NNP_EDATA, "props.sample: %s", sample ? "not an object" : "missing");
	if ((rc = get_int(sample, "iteration", &s->iteration)) || (rc = get_int(sample, "index", &s->index)) ||
	    (rc = get_array(sample, "final_patch", 2, 3, &fp)) || (rc = get_array(sample, "rotation", 2, 2, &rot)) ||
	    (rc = get_array(sample, "mirror_axes", 0, 3, &mir)))
		return rc;
	if (!json_is_boolean(d2))
		return nnp_err(NNP_EDATA, "props.sample.dummy_2d: %s", d2 ? "not a boolean" : "missing");
	s->nd = (int)json_array_size(fp);
	cfg->two_d = s->nd == 2;
	cfg->dummy_2d = json_is_true(d2);
	if (cfg->two_d && cfg->dummy_2d)
		return nnp_err(NNP_EDATA, "props.sample: dummy_2d with a 2D final_patch");
	cfg->patch[0] = 1;
	for (i = 0; i < json_array_size(fp); i++) {
		const json_t *v = json_array_get(fp, i);
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1 << 20)
			return nnp_err(NNP_EDATA, "props.sample.final_patch[%zu]: not a positive integer", i);
		cfg->patch[i + 3 - s->nd] = json_integer_value(v);
	}
	for (i = 0; i < 2; i++) {
		const json_t *v = json_array_get(rot, i);
		if (!json_is_number(v))
			return nnp_err(NNP_EDATA, "props.sample.rotation[%zu]: not a number", i);
		cfg->rot[i] = json_number_value(v);
	}
	if (!(cfg->rot[0] <= cfg->rot[1]))
		return nnp_err(NNP_EDATA, "props.sample.rotation: lower bound above the upper one");
	memset(cfg->mirror_axes, 0, sizeof cfg->mirror_axes);
	for (i = 0; i < json_array_size(mir); i++) {
		const json_t *v = json_array_get(mir, i);
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= s->nd)
			return nnp_err(NNP_EDATA, "props.sample.mirror_axes[%zu]: not an axis below %d", i, s->nd);
		cfg->mirror_axes[json_integer_value(v) + 3 - s->nd] = 1;
	}
	return NNP_OK;
}

/* Per-channel values (NaN = skipped -> null); n values per channel. */
static json_t *per_channel(const double *v, int64_t c, int n, int skip_first)
{
	json_t *a = json_array();
	for (int64_t i = 0; i < c; i++) {
		if (isnan(v[i * n + (n == 3 && skip_first)])) {
			json_array_append_new(a, json_null());
		} else if (n == 1) {
			json_array_append_new(a, json_real(v[i]));
		} else {
			json_t *s = json_array();
			for (int k = skip_first; k < n; k++)
				json_array_append_new(s, json_real(v[i * n + k]));
			json_array_append_new(a, s);
		}
	}
	return a;
}

static void applied_names(const struct nnp_aug_config *cfg, const struct nnp_aug_record *rec, json_t *a)
{
	if (cfg->dummy_2d)
		json_array_append_new(a, json_string("convert_3d_to_2d"));
	if (!(rec->applied & (1u << NNP_AUG_ROTATION | 1u << NNP_AUG_SCALING)))
		json_array_append_new(a, json_string("center_crop"));
	for (int i = 0; i < rec->napplied; i++)   /* rotation, scaling come first */
		if (rec->order[i] <= NNP_AUG_SCALING)
			json_array_append_new(a, json_string(nnp_aug_step_name(rec->order[i])));
	if (cfg->dummy_2d)
		json_array_append_new(a, json_string("convert_2d_to_3d"));
	for (int i = 0; i < rec->napplied; i++)
		if (rec->order[i] > NNP_AUG_SCALING)
			json_array_append_new(a, json_string(nnp_aug_step_name(rec->order[i])));
	json_array_append_new(a, json_string("remove_label"));
}

json_t *nnp_aug_record_json(const struct nnp_aug_config *cfg, const struct nnp_aug_sample *s,
			    const struct nnp_aug_record *rec, uint32_t seed)
{
	json_t *o = json_object(), *a = json_array();
	int rank = cfg->two_d || cfg->dummy_2d ? 2 : 3, skip = cfg->two_d;
	if (!o || !a) {
		json_decref(o), json_decref(a);
		nnp_err(NNP_ENOMEM, "cannot allocate the augment props");
		return NULL;
	}
	applied_names(cfg, rec, a);
	json_object_set_new(o, "applied", a);
	json_object_set_new(o, "seed", json_integer(seed));
	if (rec->applied & (1u << NNP_AUG_ROTATION)) {
		json_t *r = json_array();
		for (int i = rank == 2 ? 2 : 0; i < 3; i++)   /* rank 2 uses the last angle */
			json_array_append_new(r, json_real(rec->angle[i]));
		json_object_set_new(o, "rotation", r);
	}
	if (rec->applied & (1u << NNP_AUG_SCALING))
		json_object_set_new(o, "scale", json_real(rec->scale));
	if (rec->applied & (1u << NNP_AUG_NOISE))
		json_object_set_new(o, "noise_sigma", json_real(rec->noise_sigma));
	if (rec->applied & (1u << NNP_AUG_BLUR))
		json_object_set_new(o, "blur_sigma", per_channel(rec->blur_sigma, rec->c, 3, skip));
	static const struct { int step; const char *key; size_t off; } pc[] = {
		{ NNP_AUG_BRIGHTNESS, "brightness", offsetof(struct nnp_aug_record, brightness) },
		{ NNP_AUG_CONTRAST, "contrast", offsetof(struct nnp_aug_record, contrast) },
		{ NNP_AUG_LOWRES, "lowres_scale", offsetof(struct nnp_aug_record, lowres) },
		{ NNP_AUG_GAMMA_INV, "gamma_inverted", offsetof(struct nnp_aug_record, gamma_inv) },
		{ NNP_AUG_GAMMA, "gamma", offsetof(struct nnp_aug_record, gamma) },
	};
	for (size_t i = 0; i < sizeof pc / sizeof *pc; i++)
		if (rec->applied & (1u << pc[i].step))
			json_object_set_new(o, pc[i].key,
					    per_channel(*(double *const *)((const char *)rec + pc[i].off), rec->c, 1, 0));
	if (rec->applied & (1u << NNP_AUG_MIRROR)) {
		json_t *m = json_array();
		for (int i = 0; i < 3; i++)
			if (rec->mirrored[i])
				json_array_append_new(m, json_integer(i - (3 - s->nd)));
		json_object_set_new(o, "mirror_axes", m);
	}
	if (rec->applied & (1u << NNP_AUG_MASK)) {
		json_t *m = json_array();
		for (int64_t i = 0; i < rec->c && i < cfg->n_mask; i++)
			if (cfg->mask_ch[i])
				json_array_append_new(m, json_integer(i));
		json_object_set_new(o, "mask_channels", m);
	}
	return o;
}
