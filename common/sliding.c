/* sliding.c — sliding-window tile offsets, padding and the Gaussian
 * importance map, as nnU-Net computes them (docs/sliding-window.md). */
#include "sliding.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "dtype.h"
#include "err.h"

static int check_ndim(int ndim)
{
	if (ndim < 1 || ndim > NNP_SW_MAXDIM)
		return nnp_err(NNP_EUSAGE, "sliding window: %d axes (1 to %d supported)", ndim,
			       NNP_SW_MAXDIM);
	return NNP_OK;
}

int nnp_sw_pad(int ndim, const int64_t *size, const int64_t *tile, int64_t *lo, int64_t *hi,
	       int64_t *padded)
{
	int rc = check_ndim(ndim);
	if (rc)
		return rc;
	for (int d = 0; d < ndim; d++) {
		if (size[d] < 1 || tile[d] < 1)
			return nnp_err(NNP_EUSAGE, "sliding window: axis %d: size %lld, tile %lld",
				       d, (long long)size[d], (long long)tile[d]);
	}
	for (int d = 0; d < ndim; d++) {
		int64_t diff = tile[d] > size[d] ? tile[d] - size[d] : 0;
		lo[d] = diff / 2;
		hi[d] = diff - diff / 2;
		if (padded)
			padded[d] = size[d] + diff;
	}
	return NNP_OK;
}

void nnp_sw_steps_release(struct nnp_sw_steps *s)
{
	if (!s)
		return;
	for (int d = 0; d < NNP_SW_MAXDIM; d++) {
		free(s->off[d]);
		s->off[d] = NULL;
		s->n[d] = 0;
	}
	s->ndim = 0;
}

int nnp_sw_steps(int ndim, const int64_t *image, const int64_t *tile, double step_fraction,
		 struct nnp_sw_steps *s)
{
	int rc;
	memset(s, 0, sizeof(*s));
	if ((rc = check_ndim(ndim)))
		return rc;
	if (!(step_fraction > 0.0 && step_fraction <= 1.0))
		return nnp_err(NNP_EUSAGE, "sliding window: step %g is not in (0, 1]",
			       step_fraction);
	for (int d = 0; d < ndim; d++) {
		if (tile[d] < 1 || image[d] < 1)
			return nnp_err(NNP_EUSAGE, "sliding window: axis %d: image %lld, tile %lld",
				       d, (long long)image[d], (long long)tile[d]);
	}
	s->ndim = ndim;
	for (int d = 0; d < ndim; d++) {
		/* Python: int(np.ceil((i - k) / (k * step))) + 1, all float64. */
		/* An axis shorter than the tile is taken as padded to it (nnp_sw_pad),
		 * as the predictor pads before calling: one tile at 0. */
		int64_t maxv = image[d] > tile[d] ? image[d] - tile[d] : 0;
		double target = (double)tile[d] * step_fraction;
		double nf = ceil((double)maxv / target) + 1.0;
		if (!(nf <= (double)NNP_SW_STEPS_MAX)) {
			nnp_sw_steps_release(s);
			return nnp_err(NNP_ENOMEM,
				       "sliding window: axis %d: %.0f tiles (at most %lld)", d, nf,
				       (long long)NNP_SW_STEPS_MAX);
		}
		int64_t n = (int64_t)nf;
		s->tile[d] = tile[d];
		s->n[d] = n;
		s->off[d] = malloc((size_t)n * sizeof(int64_t));
		if (!s->off[d]) {
			nnp_sw_steps_release(s);
			return nnp_err(NNP_ENOMEM, "sliding window: out of memory");
		}
		if (n == 1) {
			s->off[d][0] = 0;
			continue;
		}
		/* actual_step_size = max / (n - 1); int(np.round(actual * i)). */
		double actual = (double)maxv / (double)(n - 1);
		for (int64_t i = 0; i < n; i++)
			s->off[d][i] = (int64_t)nearbyint(actual * (double)i);
	}
	return NNP_OK;
}

int64_t nnp_sw_ntiles(const struct nnp_sw_steps *s)
{
	int64_t t = 1;
	if (s->ndim < 1)
		return 0;
	for (int d = 0; d < s->ndim; d++) {
		if (s->n[d] > INT64_MAX / t)
			return -1;
		t *= s->n[d];
	}
	return t;
}

int nnp_sw_tile(const struct nnp_sw_steps *s, int64_t idx, int64_t *lo)
{
	int64_t nt = nnp_sw_ntiles(s);
	if (idx < 0 || nt < 0 || idx >= nt)
		return nnp_err(NNP_EUSAGE, "sliding window: tile %lld of %lld", (long long)idx,
			       (long long)nt);
	/* Axis 0 outermost, the last axis innermost (fastest). */
	for (int d = s->ndim - 1; d >= 0; d--) {
		lo[d] = s->off[d][idx % s->n[d]];
		idx /= s->n[d];
	}
	return NNP_OK;
}

/* ---- Gaussian ---- */

/* numpy's pairwise summation of a contiguous float64 array (what
 * phi_x.sum() runs): sequential below 8, 8 accumulators up to 128, else
 * split at n/2 rounded down to a multiple of 8. */
static double np_pairwise_sum(const double *a, int64_t n)
{
	if (n < 8) {
		double res = 0.0;
		for (int64_t i = 0; i < n; i++)
			res += a[i];
		return res;
	}
	if (n <= 128) {
		double r[8], res;
		int64_t i;
		for (int j = 0; j < 8; j++)
			r[j] = a[j];
		for (i = 8; i < n - (n % 8); i += 8)
			for (int j = 0; j < 8; j++)
				r[j] += a[i + j];
		res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++)
			res += a[i];
		return res;
	}
	int64_t n2 = n / 2;
	n2 -= n2 % 8;
	return np_pairwise_sum(a, n2) + np_pairwise_sum(a + n2, n - n2);
}

/* scipy.ndimage._gaussian_kernel1d(sigma, 0, radius): 2*radius+1 weights. */
static void gaussian_kernel1d(double sigma, int64_t radius, double *w)
{
	double sigma2 = sigma * sigma, c = -0.5 / sigma2, sum;
	int64_t n = 2 * radius + 1;
	for (int64_t i = 0; i < n; i++) {
		double x = (double)(i - radius);
		w[i] = exp(c * (x * x));
	}
	sum = np_pairwise_sum(w, n);
	for (int64_t i = 0; i < n; i++)
		w[i] = w[i] / sum;
}

/* scipy's NI_Correlate1D for a symmetric odd kernel on one line, mode
 * 'constant' with cval 0: buf holds the line with radius zeros on each side. */
static void correlate_line(const double *buf, int64_t len, const double *w, int64_t radius,
			   double *out, int64_t ostride)
{
	const double *fw = w + radius;
	for (int64_t l = 0; l < len; l++) {
		const double *il = buf + radius + l;
		double acc = il[0] * fw[0];
		for (int64_t j = -radius; j < 0; j++)
			acc += (il[j] + il[-j]) * fw[j];
		out[l * ostride] = acc;
	}
}

/* gaussian_filter's pass along axis d (in place on a, shape sh[ndim]). */
static void filter_axis(double *a, int ndim, const int64_t *sh, int d, const double *w,
			int64_t radius, double *buf)
{
	int64_t len = sh[d], stride = 1, outer = 1, inner;
	for (int e = d + 1; e < ndim; e++)
		stride *= sh[e];
	for (int e = 0; e < d; e++)
		outer *= sh[e];
	inner = stride;
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t in = 0; in < inner; in++) {
			double *line = a + o * len * stride + in;
			int nonzero = 0;
			for (int64_t l = 0; l < len; l++) {
				buf[radius + l] = line[l * stride];
				nonzero |= line[l * stride] != 0.0;
			}
			/* An all-zero line correlates to exact zeros: skip it. */
			if (!nonzero)
				continue;
			correlate_line(buf, len, w, radius, line, stride);
		}
	}
}

int nnp_sw_gaussian_half(int ndim, const int64_t *tile, double sigma_scale,
			 double value_scaling_factor, uint16_t *out_half)
{
	int64_t nvox = 1, maxlen = 0, maxrad = 0, rad[NNP_SW_MAXDIM];
	double sig[NNP_SW_MAXDIM];
	double *a = NULL, *buf = NULL, *w = NULL, mx = 0.0;
	int rc = check_ndim(ndim);
	if (rc)
		return rc;
	if (!(sigma_scale > 0.0 && isfinite(sigma_scale)) ||
	    !(value_scaling_factor > 0.0 && isfinite(value_scaling_factor)))
		return nnp_err(NNP_EUSAGE, "gaussian: sigma scale %g, value scaling %g must be "
			       "positive", sigma_scale, value_scaling_factor);
	for (int d = 0; d < ndim; d++) {
		if (tile[d] < 1)
			return nnp_err(NNP_EUSAGE, "gaussian: tile axis %d is %lld", d,
				       (long long)tile[d]);
		if (tile[d] > NNP_SW_GAUSS_MAX / nvox)
			return nnp_err(NNP_ENOMEM, "gaussian: tile of more than %lld voxels",
				       (long long)NNP_SW_GAUSS_MAX);
		nvox *= tile[d];
		sig[d] = (double)tile[d] * sigma_scale;
		/* gaussian_filter1d: lw = int(truncate * sd + 0.5), truncate 4. */
		double r = 4.0 * sig[d] + 0.5;
		if (!(r < (double)NNP_SW_GAUSS_MAX))
			return nnp_err(NNP_EUSAGE, "gaussian: sigma %g too large", sig[d]);
		rad[d] = (int64_t)r;
		if (tile[d] > maxlen)
			maxlen = tile[d];
		if (rad[d] > maxrad)
			maxrad = rad[d];
	}
	a = calloc((size_t)nvox, sizeof(double));
	buf = calloc((size_t)(maxlen + 2 * maxrad), sizeof(double));
	w = malloc((size_t)(2 * maxrad + 1) * sizeof(double));
	if (!a || !buf || !w) {
		rc = nnp_err(NNP_ENOMEM, "gaussian: out of memory");
		goto out;
	}
	/* tmp[tile // 2] = 1 */
	{
		int64_t idx = 0;
		for (int d = 0; d < ndim; d++)
			idx = idx * tile[d] + tile[d] / 2;
		a[idx] = 1.0;
	}
	/* Axes in order; every sigma here exceeds scipy's 1e-15 cut-off. */
	for (int d = 0; d < ndim; d++) {
		gaussian_kernel1d(sig[d], rad[d], w);
		/* NI_Correlate1D's symmetry test passes: x**2 is symmetric. */
		memset(buf, 0, (size_t)(maxlen + 2 * maxrad) * sizeof(double));
		filter_axis(a, ndim, tile, d, w, rad[d], buf);
	}
	for (int64_t i = 0; i < nvox; i++)
		if (a[i] > mx)
			mx = a[i];
	/* torch: g / max(g) * value_scaling_factor in float64, .type(float16)
	 * converts double -> float -> half. */
	uint16_t hmin = 0;
	for (int64_t i = 0; i < nvox; i++) {
		double v = a[i] / mx * value_scaling_factor;
		uint16_t h = nnp_float_to_half((float)v);
		out_half[i] = h;
		/* nonnegative halves order as their bit patterns */
		if (h != 0 && (hmin == 0 || h < hmin))
			hmin = h;
	}
	if (hmin == 0) {
		rc = nnp_err(NNP_EUSAGE, "gaussian: every value is 0 in float16 (value scaling %g)",
			     value_scaling_factor);
		goto out;
	}
	for (int64_t i = 0; i < nvox; i++)
		if (out_half[i] == 0)
			out_half[i] = hmin;
	rc = NNP_OK;
out:
	free(a);
	free(buf);
	free(w);
	return rc;
}

int nnp_sw_gaussian(int ndim, const int64_t *tile, double sigma_scale, double value_scaling_factor,
		    float *out)
{
	int64_t nvox = 1;
	uint16_t *h;
	int rc = check_ndim(ndim);
	if (rc)
		return rc;
	for (int d = 0; d < ndim; d++) {
		if (tile[d] < 1 || tile[d] > NNP_SW_GAUSS_MAX / nvox)
			return nnp_sw_gaussian_half(ndim, tile, sigma_scale, value_scaling_factor,
						    NULL);
		nvox *= tile[d];
	}
	h = malloc((size_t)nvox * sizeof(uint16_t));
	if (!h)
		return nnp_err(NNP_ENOMEM, "gaussian: out of memory");
	rc = nnp_sw_gaussian_half(ndim, tile, sigma_scale, value_scaling_factor, h);
	if (rc == NNP_OK)
		for (int64_t i = 0; i < nvox; i++)
			out[i] = nnp_half_to_float(h[i]);
	free(h);
	return rc;
}
