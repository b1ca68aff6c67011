/* resample.c — nnU-Net 2.8.1's default resampling (see resample.h and
 * docs/resampling.md).
 *
 * Building blocks, all replaying scipy.ndimage 1.10's arithmetic:
 *  - struct amap: per output index of one axis the tap positions and
 *    weights (zoom_shift with grid_mode: cc = (o + 0.5) * (in / out) - 0.5,
 *    + 12 with the prepadding of order >= 2; get_spline_interpolation_weights;
 *    mode 'nearest' clamps the tap indices, not the coordinate);
 *  - resample_axis: one axis of a volume, columns in blocks: edge padding,
 *    B-spline prefilter (apply_filter with the 'reflect' initialisation that
 *    scipy uses for mode 'nearest'), evaluation;
 *  - linear kernels that sum the 2^rank taps in scipy's order with its
 *    exact products ((v * w0) * w1) * w2, so order 1 (data and labels) is
 *    bit-identical, including the >= 0.5 decisions of the label path.
 * Internal functions return NNP_ENOMEM without a message (they may run on
 * OpenMP worker threads, whose error slot nobody reads); the public entry
 * points record the message.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "resample.h"
#include "err.h"

#define NPAD 12          /* scipy's _prepad_for_spline_filter for mode 'nearest' */
#define MAX_ORDER 5
#define BLKW 64          /* columns per block in resample_axis */

/* ------------------------------------------------------------------ */
/* shape and separate-z decision                                       */

int nnp_resample_shape(const int64_t old_shape[3], const double old_spacing[3], const double new_spacing[3],
		       int64_t new_shape[3])
{
	for (int i = 0; i < 3; i++) {
		double v, r;
		if (!isfinite(old_spacing[i]) || old_spacing[i] <= 0 || !isfinite(new_spacing[i]) ||
		    new_spacing[i] <= 0)
			return nnp_err(NNP_EDATA, "resample: spacing %g -> %g on axis %d is not a positive number",
				       old_spacing[i], new_spacing[i], i);
		/* int(round(old_sp / new_sp * old_shape)): float64, half to even */
		v = old_spacing[i] / new_spacing[i] * (double)old_shape[i];
		r = nearbyint(v);
		if (!(r >= 1 && r <= (double)NNP_DIM_MAX))
			return nnp_err(NNP_EDATA, "resample: axis %d: new length %g out of range [1, %lld]", i, r,
				       (long long)NNP_DIM_MAX);
		new_shape[i] = (int64_t)r;
	}
	return NNP_OK;
}

static double max3(const double s[3])
{
	double m = s[0];
	for (int i = 1; i < 3; i++)
		if (s[i] > m)
			m = s[i];
	return m;
}

static double min3(const double s[3])
{
	double m = s[0];
	for (int i = 1; i < 3; i++)
		if (s[i] < m)
			m = s[i];
	return m;
}

/* get_do_separate_z */
static int anisotropic(const double s[3])
{
	return max3(s) / min3(s) > NNP_ANISO_THRESHOLD;
}

/* get_lowres_axis: the axes with max(s) / s == 1; returns their count. */
static int lowres_axes(const double s[3], int *axis)
{
	double mx = max3(s);
	int n = 0;
	for (int i = 0; i < 3; i++)
		if (mx / s[i] == 1.0) {
			n++;
			*axis = i;
		}
	return n;
}

int nnp_resample_separate_z(int force, const double current_spacing[3], const double new_spacing[3], int *axis)
{
	int sep = 0, n = 0, ax = -1;
	if (force != NNP_SEPZ_AUTO) {
		sep = force == NNP_SEPZ_ON;
		if (sep)
			n = lowres_axes(current_spacing, &ax);
	} else if (anisotropic(current_spacing)) {
		sep = 1;
		n = lowres_axes(current_spacing, &ax);
	} else if (anisotropic(new_spacing)) {
		sep = 1;
		n = lowres_axes(new_spacing, &ax);
	}
	if (sep && n != 1)   /* 2 or 3 axes tie for the largest spacing */
		sep = 0;
	*axis = sep ? ax : -1;
	return sep;
}

/* ------------------------------------------------------------------ */
/* per-axis coordinate maps                                            */

/* scipy get_spline_interpolation_weights, operation for operation. */
static void spline_weights(double x, int order, double *w)
{
	double y, z, t;
	x -= floor(order & 1 ? x : x + 0.5);
	y = x;
	z = 1.0 - x;
	switch (order) {
	case 1:
		w[0] = 1.0 - x;
		break;
	case 2:
		w[1] = 0.75 - x * x;
		y = 0.5 - x;
		w[0] = 0.5 * y * y;
		break;
	case 3:
		w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
		w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
		w[0] = z * z * z / 6.0;
		break;
	case 4:
		t = x * x;
		w[2] = t * (t * 0.25 - 0.625) + 115.0 / 192.0;
		y = 1.0 + x;
		w[1] = y * (y * (y * (5.0 - y) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
		w[3] = z * (z * (z * (5.0 - z) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
		y = 0.5 - x;
		t = y * y;
		w[0] = t * t / 24.0;
		break;
	case 5:
		t = y * y;
		w[2] = t * (t * (0.25 - y / 12.0) - 0.5) + 0.55;
		t = z * z;
		w[3] = t * (t * (0.25 - z / 12.0) - 0.5) + 0.55;
		y += 1.0;
		w[1] = y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
		z += 1.0;
		w[4] = z * (z * (z * (z * (z / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
		y = 1.0 - x;
		t = y * y;
		w[0] = y * t * t / 120.0;
		break;
	default:
		break;
	}
	w[order] = 1.0;
	for (int i = 0; i < order; i++)
		w[order] -= w[i];
}

/* scipy 1.10 (mode 'nearest'): a tap outside [0, len) reads the nearest
 * edge voxel; the coordinate itself is not clamped (so an edge voxel can be
 * read by both taps, with weights that add up to 1 only up to rounding). */
static int64_t clamp_index(int64_t idx, int64_t len)
{
	return idx < 0 ? 0 : (idx >= len ? len - 1 : idx);
}

/* Sample position of output o (padded coordinates): zoom_shift with
 * grid_mode, cc = ((o + 0.5) * (in / out) - 0.5) + npad. */
static double sample_pos(int64_t n_in, int64_t n_out, int64_t o, int npad)
{
	double zoom = (double)n_in / (double)n_out, cc = (double)o;
	cc += 0.5;
	cc *= zoom;
	cc -= 0.5;
	cc += (double)npad;
	return cc;
}

static int64_t tap_start(double cc, int order)
{
	return (order & 1) ? (int64_t)floor(cc) - order / 2 : (int64_t)floor(cc + 0.5) - order / 2;
}

struct amap {
	int64_t n_in, n_out, len;   /* len: line length including padding */
	int order, npad, ntap;
	int64_t *idx;               /* n_out * ntap tap positions in [0, len) */
	double *w;                  /* n_out * ntap weights */
};

static void amap_free(struct amap *m)
{
	free(m->idx);
	free(m->w);
	m->idx = NULL;
	m->w = NULL;
}

static int amap_init(struct amap *m, int64_t n_in, int64_t n_out, int order, int npad)
{
	m->n_in = n_in;
	m->n_out = n_out;
	m->order = order;
	m->npad = npad;
	m->ntap = order + 1;
	m->len = n_in + 2 * npad;
	m->idx = malloc((size_t)n_out * (size_t)m->ntap * sizeof *m->idx);
	m->w = malloc((size_t)n_out * (size_t)m->ntap * sizeof *m->w);
	if (!m->idx || !m->w) {
		amap_free(m);
		return NNP_ENOMEM;
	}
	for (int64_t o = 0; o < n_out; o++) {
		double cc = sample_pos(n_in, n_out, o, npad);
		int64_t start = tap_start(cc, order), *ix = m->idx + o * m->ntap;
		double *w = m->w + o * m->ntap;
		for (int k = 0; k < m->ntap; k++)
			ix[k] = clamp_index(start + k, m->len);
		if (order > 0)
			spline_weights(cc, order, w);
		else
			w[0] = 1.0;
	}
	return NNP_OK;
}

int64_t nnp_resample_nearest(int64_t n_in, int64_t n_out, int64_t o)
{
	return clamp_index(tap_start(sample_pos(n_in, n_out, o, 0), 0), n_in);
}

void nnp_resample_src_range(int64_t n_in, int64_t n_out, int order, int64_t o0, int64_t o1, int64_t *lo,
			    int64_t *hi)
{
	if (order >= 2 || o0 >= o1) {
		*lo = 0;
		*hi = order >= 2 ? n_in : 0;
		return;
	}
	/* positions are non-decreasing in o: the extremes are at o0 and o1-1 */
	*lo = tap_start(sample_pos(n_in, n_out, o0, 0), order);
	*hi = tap_start(sample_pos(n_in, n_out, o1 - 1, 0), order) + order + 1;
	if (*hi > n_in)
		*hi = n_in;
	if (*lo < 0)
		*lo = 0;
}

void nnp_resample_linear_taps(int64_t n_in, int64_t n_out, int64_t o, int64_t idx[2], double w[2])
{
	double cc = sample_pos(n_in, n_out, o, 0);
	int64_t start = tap_start(cc, 1);
	idx[0] = clamp_index(start, n_in);
	idx[1] = clamp_index(start + 1, n_in);
	spline_weights(cc, 1, w);
}

/* ------------------------------------------------------------------ */
/* element access                                                      */

/* A data source: elements of dt, value * slope + inter when scaled. */
struct source {
	const void *p;
	enum nnp_dtype dt;
	int scaled;
	double slope, inter;
};

static void source_get(const struct source *s, int64_t off, int64_t n, double *dst)
{
	size_t es = nnp_dtype_size(s->dt);
	if (s->dt == NNP_F64)
		memcpy(dst, (const double *)s->p + off, (size_t)n * sizeof *dst);
	else
		nnp_to_f64(s->dt, (const char *)s->p + (size_t)off * es, dst, (size_t)n);
	if (s->scaled)
		for (int64_t i = 0; i < n; i++)
			dst[i] = dst[i] * s->slope + s->inter;
}

/* A data sink: F16/F32/F64, optionally clipped like np.clip. */
struct sink {
	void *p;
	enum nnp_dtype dt;
	int clip;
	double lo, hi;
};

static void sink_put(const struct sink *s, int64_t off, int64_t stride, const double *v, int64_t n)
{
	const double lo = s->lo, hi = s->hi;
#define SPUT(T, CONV)                                                            \
	do {                                                                     \
		T *d_ = (T *)s->p + off;                                         \
		if (s->clip)                                                     \
			for (int64_t i_ = 0; i_ < n; i_++) {                     \
				double x_ = v[i_];                               \
				x_ = x_ < lo ? lo : (x_ > hi ? hi : x_);         \
				d_[i_ * stride] = CONV(x_);                      \
			}                                                        \
		else                                                             \
			for (int64_t i_ = 0; i_ < n; i_++)                       \
				d_[i_ * stride] = CONV(v[i_]);                   \
	} while (0)
#define AS_F64(x) (x)
#define AS_F32(x) ((float)(x))
	switch (s->dt) {
	case NNP_F64: SPUT(double, AS_F64); break;
	case NNP_F32: SPUT(float, AS_F32); break;
	case NNP_F16: SPUT(uint16_t, nnp_double_to_half); break;
	default: break;
	}
#undef SPUT
#undef AS_F64
#undef AS_F32
}

static int label_dtype_ok(enum nnp_dtype t)
{
	return t == NNP_U8 || t == NNP_I8 || t == NNP_I16 || t == NNP_U16 || t == NNP_I32;
}

static void labels_get(enum nnp_dtype t, const void *p, int64_t off, int64_t n, int64_t stride, int32_t *dst)
{
#define LGET(T)                                                          \
	do {                                                             \
		const T *s_ = (const T *)p + off;                        \
		for (int64_t i_ = 0; i_ < n; i_++)                       \
			dst[i_] = (int32_t)s_[i_ * stride];              \
	} while (0)
	switch (t) {
	case NNP_U8: LGET(uint8_t); break;
	case NNP_I8: LGET(int8_t); break;
	case NNP_I16: LGET(int16_t); break;
	case NNP_U16: LGET(uint16_t); break;
	case NNP_I32: LGET(int32_t); break;
	default: break;
	}
#undef LGET
}

static void labels_put(enum nnp_dtype t, void *p, int64_t off, int64_t n, int64_t stride, const int32_t *v)
{
#define LPUT(T)                                                          \
	do {                                                             \
		T *d_ = (T *)p + off;                                    \
		for (int64_t i_ = 0; i_ < n; i_++)                       \
			d_[i_ * stride] = (T)v[i_];                      \
	} while (0)
	switch (t) {
	case NNP_U8: LPUT(uint8_t); break;
	case NNP_I8: LPUT(int8_t); break;
	case NNP_I16: LPUT(int16_t); break;
	case NNP_U16: LPUT(uint16_t); break;
	case NNP_I32: LPUT(int32_t); break;
	default: break;
	}
#undef LPUT
}

/* skimage's clip range: min/max of the resize call's input, NaN-safe. */
static void minmax_source(const struct source *s, int64_t n, double *lo, double *hi)
{
	enum { BLK = 4096 };
	double mn = INFINITY, mx = -INFINITY;
	int any = 0;
	#pragma omp parallel for schedule(static) reduction(min:mn) reduction(max:mx) reduction(|:any)
	for (int64_t off = 0; off < n; off += BLK) {
		double tmp[BLK];
		int64_t m = n - off < BLK ? n - off : BLK;
		source_get(s, off, m, tmp);
		for (int64_t i = 0; i < m; i++)
			if (!isnan(tmp[i])) {
				any = 1;
				if (tmp[i] < mn)
					mn = tmp[i];
				if (tmp[i] > mx)
					mx = tmp[i];
			}
	}
	*lo = any ? mn : NAN;
	*hi = any ? mx : NAN;
}

static void minmax_plane(const double *v, int64_t n, double *lo, double *hi)
{
	double mn = INFINITY, mx = -INFINITY;
	int any = 0;
	for (int64_t i = 0; i < n; i++)
		if (!isnan(v[i])) {
			any = 1;
			if (v[i] < mn)
				mn = v[i];
			if (v[i] > mx)
				mx = v[i];
		}
	*lo = any ? mn : NAN;
	*hi = any ? mx : NAN;
}

/* ------------------------------------------------------------------ */
/* B-spline prefilter and one-axis resampling                          */

static int filter_poles(int order, double *poles)
{
	switch (order) {
	case 2: poles[0] = -0.171572875253809902396622551580603843; return 1;
	case 3: poles[0] = -0.267949192431122706472553658494127633; return 1;
	case 4:
		poles[0] = -0.361341225900220177092212841325675255;
		poles[1] = -0.013725429297339121360331226939128204;
		return 2;
	case 5:
		poles[0] = -0.430575347099973791851434783493520110;
		poles[1] = -0.043096288203264653822712376822550182;
		return 2;
	default: return 0;
	}
}

/* apply_filter along the rows of c[n][w] (w independent columns) with the
 * 'reflect' initialisation.  The causal initial sum stops where z^i drops
 * below 1e-30 (scipy sums all n terms; the rest is far below rounding). */
static void prefilter_cols(double *c, int64_t n, int64_t w, int order)
{
	double poles[2], gain = 1.0, c0[BLKW];
	int np = filter_poles(order, poles);
	if (n <= 1)
		return;
	for (int k = 0; k < np; k++)
		gain *= (1.0 - poles[k]) * (1.0 - 1.0 / poles[k]);
	for (int64_t i = 0; i < n * w; i++)
		c[i] *= gain;
	for (int k = 0; k < np; k++) {
		const double z = poles[k], zn = pow(z, (double)n);
		double zi = z, f;
		int64_t nterm = (int64_t)ceil(log(1e-30) / log(fabs(z)));
		if (nterm > n - 1)
			nterm = n - 1;
		for (int64_t j = 0; j < w; j++) {
			c0[j] = c[j];
			c[j] = c[j] + zn * c[(n - 1) * w + j];
		}
		for (int64_t i = 1; i <= nterm; i++) {
			const double *a = c + i * w, *b = c + (n - 1 - i) * w;
			for (int64_t j = 0; j < w; j++)
				c[j] += zi * (a[j] + zn * b[j]);
			zi *= z;
		}
		f = z / (1 - zn * zn);
		for (int64_t j = 0; j < w; j++) {
			c[j] *= f;
			c[j] += c0[j];
		}
		for (int64_t i = 1; i < n; i++) {
			double *r = c + i * w;
			const double *p = r - w;
			for (int64_t j = 0; j < w; j++)
				r[j] += z * p[j];
		}
		f = z / (z - 1);
		for (int64_t j = 0; j < w; j++)
			c[(n - 1) * w + j] *= f;
		for (int64_t i = n - 2; i >= 0; i--) {
			double *r = c + i * w;
			const double *q = r + w;
			for (int64_t j = 0; j < w; j++)
				r[j] = z * (q[j] - r[j]);
		}
	}
}

/* Output row o of a block T[len][w] into r[w]: t = 0; t += w_k * T[idx_k]
 * (for orders 0 and 1 exactly scipy's sum along one axis). */
static void eval_row(const double *T, int64_t w, const struct amap *m, int64_t o, double *r)
{
	const int64_t *ix = m->idx + o * m->ntap;
	const double *wt = m->w + o * m->ntap;
	if (m->ntap == 4) {
		const double *a = T + ix[0] * w, *b = T + ix[1] * w, *c = T + ix[2] * w, *d = T + ix[3] * w;
		const double w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3];
		for (int64_t j = 0; j < w; j++)
			r[j] = ((w0 * a[j] + w1 * b[j]) + w2 * c[j]) + w3 * d[j];
		return;
	}
	for (int64_t j = 0; j < w; j++)
		r[j] = 0.0;
	for (int k = 0; k < m->ntap; k++) {
		const double *a = T + ix[k] * w, wk = wt[k];
		if (m->order == 0)
			for (int64_t j = 0; j < w; j++)
				r[j] += a[j];
		else
			for (int64_t j = 0; j < w; j++)
				r[j] += wk * a[j];
	}
}

static void pad_block(double *T, int64_t n, int64_t w, int npad)
{
	for (int i = 0; i < npad; i++) {
		memcpy(T + (int64_t)i * w, T + (int64_t)npad * w, (size_t)w * sizeof *T);
		memcpy(T + (npad + n + i) * w, T + (npad + n - 1) * w, (size_t)w * sizeof *T);
	}
}

/* Per-thread work buffers, grown on demand and kept across calls (large
 * malloc/free pairs per plane would mmap/munmap every time). */
enum { WS_T, WS_ROW, WS_LINE, WS_OB, WS_TMP, WS_N };
struct ws {
	double *p[WS_N];
	size_t cap[WS_N];
};

static double *ws_get(struct ws *w, int slot, size_t n)
{
	if (w->cap[slot] < n) {
		free(w->p[slot]);
		w->p[slot] = malloc(n * sizeof(double));
		w->cap[slot] = w->p[slot] ? n : 0;
	}
	return w->p[slot];
}

static void ws_free(struct ws *w)
{
	for (int i = 0; i < WS_N; i++)
		free(w->p[i]);
	memset(w, 0, sizeof *w);
}

/* One block of resample_axis: BLKW columns of the [len][w] line block. */
static int axis_block(const struct source *src, int64_t outer, int64_t n, int64_t inner, const struct sink *dst,
		      const struct amap *m, int64_t b, struct ws *ws)
{
	const int64_t len = n + 2 * m->npad, mo = m->n_out;
	const int npad = m->npad, pre = m->order >= 2;
	double *T = ws_get(ws, WS_T, (size_t)len * BLKW), *r = ws_get(ws, WS_ROW, BLKW);
	if (!T || !r)
		return NNP_ENOMEM;
	if (inner > 1) {
		/* BLKW neighbouring columns of one [n][inner] slab: rows are contiguous */
		const int64_t nbi = (inner + BLKW - 1) / BLKW;
		int64_t q = b / nbi, i0 = (b % nbi) * BLKW, w = inner - i0 < BLKW ? inner - i0 : BLKW;
		for (int64_t i = 0; i < n; i++)
			source_get(src, (q * n + i) * inner + i0, w, T + (npad + i) * w);
		pad_block(T, n, w, npad);
		if (pre)
			prefilter_cols(T, len, w, m->order);
		for (int64_t o = 0; o < mo; o++) {
			eval_row(T, w, m, o, r);
			sink_put(dst, (q * mo + o) * inner + i0, 1, r, w);
		}
	} else {
		/* contiguous lines: BLKW of them become the columns of a block */
		int64_t l0 = b * BLKW, w = outer - l0 < BLKW ? outer - l0 : BLKW;
		double *line = ws_get(ws, WS_LINE, (size_t)n), *ob = ws_get(ws, WS_OB, (size_t)mo * BLKW);
		if (!line || !ob)
			return NNP_ENOMEM;
		for (int64_t j = 0; j < w; j++) {
			source_get(src, (l0 + j) * n, n, line);
			for (int64_t i = 0; i < n; i++)
				T[(npad + i) * w + j] = line[i];
		}
		pad_block(T, n, w, npad);
		if (pre)
			prefilter_cols(T, len, w, m->order);
		for (int64_t o = 0; o < mo; o++) {
			eval_row(T, w, m, o, r);
			for (int64_t j = 0; j < w; j++)
				ob[j * mo + o] = r[j];
		}
		for (int64_t j = 0; j < w; j++)
			sink_put(dst, (l0 + j) * mo, 1, ob + j * mo, mo);
	}
	return NNP_OK;
}

/* Resample axis `n` of a volume viewed as [outer][n][inner] into
 * [outer][m->n_out][inner].  Prefilters when m->order >= 2 (then
 * m->npad must be NPAD).  ws: NULL = OpenMP over blocks with per-thread
 * buffers; else serial in the caller's buffers. */
static int resample_axis(const struct source *src, int64_t outer, int64_t n, int64_t inner, const struct sink *dst,
			 const struct amap *m, struct ws *ws)
{
	const int64_t nblk = inner > 1 ? outer * ((inner + BLKW - 1) / BLKW) : (outer + BLKW - 1) / BLKW;
	int fail = 0;
	if (ws) {
		for (int64_t b = 0; b < nblk; b++)
			if (axis_block(src, outer, n, inner, dst, m, b, ws))
				return NNP_ENOMEM;
		return NNP_OK;
	}
	#pragma omp parallel reduction(|:fail)
	{
		struct ws w;
		memset(&w, 0, sizeof w);
		#pragma omp for schedule(dynamic, 1)
		for (int64_t b = 0; b < nblk; b++)
			if (!fail && axis_block(src, outer, n, inner, dst, m, b, &w))
				fail = 1;
		ws_free(&w);
	}
	return fail ? NNP_ENOMEM : NNP_OK;
}

/* ------------------------------------------------------------------ */
/* label decisions                                                     */

/* The resize_segmentation rule for one output voxel with taps L[k] and
 * scipy's tap products p[k] (in scipy's summation order): the largest
 * label whose mask interpolates to >= 0.5, else 0.  Only the distinct
 * labels among the taps are evaluated (the others interpolate to 0). */
static int32_t label_pick(const int32_t *L, const double *p, int n, uint64_t *cnt)
{
	int32_t best = 0;
	int have = 0, same = 1;
	for (int k = 1; k < n; k++)
		if (L[k] != L[0])
			same = 0;
	if (same) {
		(*cnt)++;
		return L[0];   /* its mask interpolates to sum(p) = 1 (+- ulps) */
	}
	for (int i = 0; i < n; i++) {
		int32_t li = L[i];
		double s = 0.0;
		int dup = 0;
		for (int j = 0; j < i; j++)
			if (L[j] == li)
				dup = 1;
		if (dup)
			continue;
		for (int j = i; j < n; j++)
			if (L[j] == li)
				s += p[j];
		(*cnt)++;
		if (s >= 0.5 && (!have || li > best)) {
			best = li;
			have = 1;
		}
	}
	return have ? best : 0;
}

/* ------------------------------------------------------------------ */
/* 2D planes                                                           */

/* order 1, 2D: t = sum over taps (a, b) of (v * wa) * wb. */
static void linear2(const double *src, const struct amap *ma, const struct amap *mb, int64_t b, double *dst)
{
	for (int64_t i = 0; i < ma->n_out; i++) {
		const int64_t *ia = ma->idx + 2 * i;
		const double *wa = ma->w + 2 * i;
		for (int64_t j = 0; j < mb->n_out; j++) {
			const int64_t *ib = mb->idx + 2 * j;
			const double *wb = mb->w + 2 * j;
			double t = 0.0;
			for (int u = 0; u < 2; u++)
				for (int v = 0; v < 2; v++) {
					double c = src[ia[u] * b + ib[v]];
					c *= wa[u];
					c *= wb[v];
					t += c;
				}
			dst[i * mb->n_out + j] = t;
		}
	}
}

static void clip_plane(double *v, int64_t n, double lo, double hi)
{
	for (int64_t i = 0; i < n; i++)
		v[i] = v[i] < lo ? lo : (v[i] > hi ? hi : v[i]);
}

/* Data plane; serial; no message on failure. */
static int plane_data(const double *src, int64_t a, int64_t b, double *dst, int64_t a2, int64_t b2, int order,
		      struct ws *ws)
{
	struct amap ma = { 0 }, mb = { 0 };
	double lo, hi;
	int rc = NNP_OK;
	minmax_plane(src, a * b, &lo, &hi);
	if (a == a2 && b == b2) {
		memcpy(dst, src, (size_t)(a * b) * sizeof *dst);
		clip_plane(dst, a * b, lo, hi);
		return NNP_OK;
	}
	if (order == 0) {
		for (int64_t i = 0; i < a2; i++) {
			int64_t si = nnp_resample_nearest(a, a2, i);
			for (int64_t j = 0; j < b2; j++)
				dst[i * b2 + j] = 0.0 + src[si * b + nnp_resample_nearest(b, b2, j)];
		}
	} else if (order == 1) {
		if (amap_init(&ma, a, a2, 1, 0) || amap_init(&mb, b, b2, 1, 0))
			rc = NNP_ENOMEM;
		else
			linear2(src, &ma, &mb, b, dst);
	} else {
		struct source s = { src, NNP_F64, 0, 1, 0 };
		struct sink d = { dst, NNP_F64, 0, 0, 0 };
		if (a != a2 && b != b2) {
			/* both axes: the smaller intermediate first */
			int a_first = a2 * b <= a * b2;
			double *tmp = ws_get(ws, WS_TMP, (size_t)(a_first ? a2 * b : a * b2));
			if (!tmp)
				return NNP_ENOMEM;
			if (amap_init(&ma, a, a2, order, NPAD) || amap_init(&mb, b, b2, order, NPAD)) {
				rc = NNP_ENOMEM;
			} else {
				struct sink t = { tmp, NNP_F64, 0, 0, 0 };
				struct source ts = { tmp, NNP_F64, 0, 1, 0 };
				if (a_first)
					rc = resample_axis(&s, 1, a, b, &t, &ma, ws);
				if (!rc && a_first)
					rc = resample_axis(&ts, a2, b, 1, &d, &mb, ws);
				if (!a_first)
					rc = resample_axis(&s, a, b, 1, &t, &mb, ws);
				if (!rc && !a_first)
					rc = resample_axis(&ts, 1, a, b2, &d, &ma, ws);
			}
		} else if (a != a2) {
			if (amap_init(&ma, a, a2, order, NPAD))
				rc = NNP_ENOMEM;
			else
				rc = resample_axis(&s, 1, a, b, &d, &ma, ws);
		} else {
			if (amap_init(&mb, b, b2, order, NPAD))
				rc = NNP_ENOMEM;
			else
				rc = resample_axis(&s, a, b, 1, &d, &mb, ws);
		}
	}
	amap_free(&ma);
	amap_free(&mb);
	if (!rc)
		clip_plane(dst, a2 * b2, lo, hi);
	return rc;
}

static int check_plane(int64_t a, int64_t b, int64_t a2, int64_t b2)
{
	if (a < 1 || b < 1 || a2 < 1 || b2 < 1 || a > NNP_DIM_MAX || b > NNP_DIM_MAX || a2 > NNP_DIM_MAX ||
	    b2 > NNP_DIM_MAX)
		return nnp_err(NNP_EUSAGE, "resample: plane %lldx%lld -> %lldx%lld out of range", (long long)a,
			       (long long)b, (long long)a2, (long long)b2);
	return NNP_OK;
}

int nnp_resample_plane(const double *src, int64_t a, int64_t b, double *dst, int64_t a2, int64_t b2, int order)
{
	int rc = check_plane(a, b, a2, b2);
	if (rc)
		return rc;
	if (order < 0 || order > MAX_ORDER)
		return nnp_err(NNP_EUSAGE, "resample: order %d is not in 0..5", order);
	{
		struct ws ws;
		memset(&ws, 0, sizeof ws);
		rc = plane_data(src, a, b, dst, a2, b2, order, &ws);
		ws_free(&ws);
	}
	if (rc)
		return nnp_err(rc, "resample: cannot allocate the work buffers of a %lldx%lld plane",
			       (long long)a2, (long long)b2);
	return NNP_OK;
}

/* Label plane, order 0 or 1; serial; no message on failure. */
static int plane_labels(const int32_t *src, int64_t a, int64_t b, int32_t *dst, int64_t a2, int64_t b2, int order,
			uint64_t *cnt)
{
	struct amap ma, mb;
	if (a == a2 && b == b2) {
		memcpy(dst, src, (size_t)(a * b) * sizeof *dst);
		return NNP_OK;
	}
	if (order == 0) {
		for (int64_t i = 0; i < a2; i++) {
			int64_t si = nnp_resample_nearest(a, a2, i);
			for (int64_t j = 0; j < b2; j++)
				dst[i * b2 + j] = src[si * b + nnp_resample_nearest(b, b2, j)];
		}
		return NNP_OK;
	}
	if (amap_init(&ma, a, a2, 1, 0))
		return NNP_ENOMEM;
	if (amap_init(&mb, b, b2, 1, 0)) {
		amap_free(&ma);
		return NNP_ENOMEM;
	}
	for (int64_t i = 0; i < a2; i++) {
		const int64_t *ia = ma.idx + 2 * i;
		const double *wa = ma.w + 2 * i;
		for (int64_t j = 0; j < b2; j++) {
			const int64_t *ib = mb.idx + 2 * j;
			const double *wb = mb.w + 2 * j;
			int32_t L[4];
			double p[4];
			for (int u = 0; u < 2; u++)
				for (int v = 0; v < 2; v++) {
					double c = 1.0;
					c *= wa[u];
					c *= wb[v];
					L[2 * u + v] = src[ia[u] * b + ib[v]];
					p[2 * u + v] = c;
				}
			dst[i * b2 + j] = label_pick(L, p, 4, cnt);
		}
	}
	amap_free(&ma);
	amap_free(&mb);
	return NNP_OK;
}

int nnp_resample_plane_labels(const int32_t *src, int64_t a, int64_t b, int32_t *dst, int64_t a2, int64_t b2,
			      int order, uint64_t *label_evals)
{
	uint64_t cnt = 0;
	int rc = check_plane(a, b, a2, b2);
	if (rc)
		return rc;
	if (order < 0 || order > 1)
		return nnp_err(NNP_EUSAGE, "resample: label order %d is not 0 or 1", order);
	if ((rc = plane_labels(src, a, b, dst, a2, b2, order, &cnt)))
		return nnp_err(rc, "resample: cannot allocate the work buffers of a %lldx%lld plane",
			       (long long)a2, (long long)b2);
	if (label_evals)
		*label_evals += cnt;
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* whole channels                                                      */

static int64_t prod3(const int64_t s[3])
{
	return s[0] * s[1] * s[2];
}

/* 3D order 0 (data): 0.0 + nearest input voxel. */
static int data_nearest3(const struct source *src, const int64_t in[3], const struct sink *dst,
			 const int64_t out[3])
{
	int fail = 0;
	#pragma omp parallel reduction(|:fail)
	{
		double *row = malloc((size_t)in[2] * sizeof *row), *orow = malloc((size_t)out[2] * sizeof *orow);
		if (!row || !orow)
			fail = 1;
		#pragma omp for schedule(static)
		for (int64_t r = 0; r < out[0] * out[1]; r++) {
			int64_t oz = r / out[1], oy = r % out[1];
			int64_t iz = nnp_resample_nearest(in[0], out[0], oz), iy = nnp_resample_nearest(in[1], out[1], oy);
			if (fail)
				continue;
			source_get(src, (iz * in[1] + iy) * in[2], in[2], row);
			for (int64_t x = 0; x < out[2]; x++)
				orow[x] = 0.0 + row[nnp_resample_nearest(in[2], out[2], x)];
			sink_put(dst, r * out[2], 1, orow, out[2]);
		}
		free(row);
		free(orow);
	}
	return fail ? NNP_ENOMEM : NNP_OK;
}

/* 3D order 1 (data), scipy's exact sum: t += ((v * wz) * wy) * wx over the
 * 8 taps, z slowest, x fastest.  A: the channel in float64. */
static int data_linear3(const double *A, const int64_t in[3], const struct sink *dst, const int64_t out[3])
{
	struct amap m[3] = { { 0 } };
	int fail = 0;
	for (int k = 0; k < 3; k++)
		if (amap_init(&m[k], in[k], out[k], 1, 0)) {
			for (int j = 0; j < k; j++)
				amap_free(&m[j]);
			return NNP_ENOMEM;
		}
	#pragma omp parallel reduction(|:fail)
	{
		double *orow = malloc((size_t)out[2] * sizeof *orow);
		if (!orow)
			fail = 1;
		#pragma omp for schedule(static)
		for (int64_t r = 0; r < out[0] * out[1]; r++) {
			int64_t oz = r / out[1], oy = r % out[1];
			const int64_t *iz = m[0].idx + 2 * oz, *iy = m[1].idx + 2 * oy;
			const double *wz = m[0].w + 2 * oz, *wy = m[1].w + 2 * oy;
			const double *rows[4];
			double wzy[4][2];
			if (fail)
				continue;
			for (int a = 0; a < 2; a++)
				for (int b = 0; b < 2; b++) {
					rows[2 * a + b] = A + (iz[a] * in[1] + iy[b]) * in[2];
					wzy[2 * a + b][0] = wz[a];
					wzy[2 * a + b][1] = wy[b];
				}
			for (int64_t x = 0; x < out[2]; x++) {
				const int64_t *ix = m[2].idx + 2 * x;
				const double *wx = m[2].w + 2 * x;
				double t = 0.0;
				for (int k = 0; k < 4; k++)
					for (int c = 0; c < 2; c++) {
						double v = rows[k][ix[c]];
						v *= wzy[k][0];
						v *= wzy[k][1];
						v *= wx[c];
						t += v;
					}
				orow[x] = t;
			}
			sink_put(dst, r * out[2], 1, orow, out[2]);
		}
		free(orow);
	}
	for (int k = 0; k < 3; k++)
		amap_free(&m[k]);
	return fail ? NNP_ENOMEM : NNP_OK;
}

/* 3D order >= 2 (data), separable: the axes that change, shrinking ones
 * first; the first pass reads the source, the last writes the sink. */
static int data_spline3(const struct source *src, const int64_t in[3], const struct sink *dst, const int64_t out[3],
			int order)
{
	int axes[3], na = 0, rc = NNP_OK;
	int64_t cur[3] = { in[0], in[1], in[2] }, size[3];
	double *buf[2] = { NULL, NULL };
	for (int k = 0; k < 3; k++)
		if (in[k] != out[k])
			axes[na++] = k;
	for (int i = 1; i < na; i++)      /* by out/in ascending, stable */
		for (int j = i; j > 0; j--) {
			int p = axes[j - 1], q = axes[j];
			if ((double)out[q] / (double)in[q] < (double)out[p] / (double)in[p]) {
				axes[j - 1] = q;
				axes[j] = p;
			}
		}
	for (int i = 0; i < na; i++) {
		cur[axes[i]] = out[axes[i]];
		size[i] = prod3(cur);
	}
	for (int i = 0; i + 1 < na && i < 2; i++)
		if (!(buf[i] = malloc((size_t)size[i] * sizeof(double)))) {
			rc = NNP_ENOMEM;
			goto done;
		}
	cur[0] = in[0];
	cur[1] = in[1];
	cur[2] = in[2];
	for (int i = 0; i < na && !rc; i++) {
		int ax = axes[i];
		struct amap m;
		struct source s = i == 0 ? *src : (struct source){ buf[(i - 1) % 2], NNP_F64, 0, 1, 0 };
		struct sink d = i == na - 1 ? *dst : (struct sink){ buf[i % 2], NNP_F64, 0, 0, 0 };
		int64_t outer = ax == 0 ? 1 : (ax == 1 ? cur[0] : cur[0] * cur[1]);
		int64_t inner = ax == 2 ? 1 : (ax == 1 ? cur[2] : cur[1] * cur[2]);
		if (amap_init(&m, cur[ax], out[ax], order, NPAD)) {
			rc = NNP_ENOMEM;
			break;
		}
		rc = resample_axis(&s, outer, cur[ax], inner, &d, &m, NULL);
		amap_free(&m);
		cur[ax] = out[ax];
		if (i == 1) {   /* the third pass reads buf[1] only */
			free(buf[0]);
			buf[0] = NULL;
		}
	}
done:
	free(buf[0]);
	free(buf[1]);
	return rc;
}

/* Labels, 3D order 1: 8 taps, products ((1 * wz) * wy) * wx. */
static int labels_linear3(const int32_t *L, const int64_t in[3], enum nnp_dtype dt, void *dst, const int64_t out[3],
			  uint64_t *cnt_out)
{
	struct amap m[3] = { { 0 } };
	int fail = 0;
	uint64_t cnt = 0;
	for (int k = 0; k < 3; k++)
		if (amap_init(&m[k], in[k], out[k], 1, 0)) {
			for (int j = 0; j < k; j++)
				amap_free(&m[j]);
			return NNP_ENOMEM;
		}
	#pragma omp parallel reduction(|:fail) reduction(+:cnt)
	{
		int32_t *orow = malloc((size_t)out[2] * sizeof *orow);
		if (!orow)
			fail = 1;
		#pragma omp for schedule(static)
		for (int64_t r = 0; r < out[0] * out[1]; r++) {
			int64_t oz = r / out[1], oy = r % out[1];
			const int64_t *iz = m[0].idx + 2 * oz, *iy = m[1].idx + 2 * oy;
			const double *wz = m[0].w + 2 * oz, *wy = m[1].w + 2 * oy;
			const int32_t *rows[4];
			double pzy[4];
			if (fail)
				continue;
			for (int a = 0; a < 2; a++)
				for (int b = 0; b < 2; b++) {
					double c = 1.0;
					c *= wz[a];
					c *= wy[b];
					rows[2 * a + b] = L + (iz[a] * in[1] + iy[b]) * in[2];
					pzy[2 * a + b] = c;
				}
			for (int64_t x = 0; x < out[2]; x++) {
				const int64_t *ix = m[2].idx + 2 * x;
				const double *wx = m[2].w + 2 * x;
				int32_t lab[8];
				double p[8];
				for (int k = 0; k < 4; k++)
					for (int c = 0; c < 2; c++) {
						lab[2 * k + c] = rows[k][ix[c]];
						p[2 * k + c] = pzy[k] * wx[c];
					}
				orow[x] = label_pick(lab, p, 8, &cnt);
			}
			labels_put(dt, dst, r * out[2], out[2], 1, orow);
		}
		free(orow);
	}
	for (int k = 0; k < 3; k++)
		amap_free(&m[k]);
	*cnt_out += cnt;
	return fail ? NNP_ENOMEM : NNP_OK;
}

static int labels_nearest3(enum nnp_dtype st, const void *src, const int64_t in[3], enum nnp_dtype dt, void *dst,
			   const int64_t out[3])
{
	int fail = 0;
	#pragma omp parallel reduction(|:fail)
	{
		int32_t *row = malloc((size_t)in[2] * sizeof *row), *orow = malloc((size_t)out[2] * sizeof *orow);
		if (!row || !orow)
			fail = 1;
		#pragma omp for schedule(static)
		for (int64_t r = 0; r < out[0] * out[1]; r++) {
			int64_t oz = r / out[1], oy = r % out[1];
			int64_t iz = nnp_resample_nearest(in[0], out[0], oz), iy = nnp_resample_nearest(in[1], out[1], oy);
			if (fail)
				continue;
			labels_get(st, src, (iz * in[1] + iy) * in[2], in[2], 1, row);
			for (int64_t x = 0; x < out[2]; x++)
				orow[x] = row[nnp_resample_nearest(in[2], out[2], x)];
			labels_put(dt, dst, r * out[2], out[2], 1, orow);
		}
		free(row);
		free(orow);
	}
	return fail ? NNP_ENOMEM : NNP_OK;
}

/* Geometry of separate z: the in-plane axes pa < pb and element strides. */
struct sepz {
	int ax, pa, pb;
	int64_t na, ma, a, b, a2, b2;
	int64_t is[3], os[3];   /* strides of input and output (z, y, x) */
};

static void sepz_init(struct sepz *g, int ax, const int64_t in[3], const int64_t out[3])
{
	g->ax = ax;
	g->pa = ax == 0 ? 1 : 0;
	g->pb = ax == 2 ? 1 : 2;
	g->na = in[ax];
	g->ma = out[ax];
	g->a = in[g->pa];
	g->b = in[g->pb];
	g->a2 = out[g->pa];
	g->b2 = out[g->pb];
	g->is[2] = 1;
	g->is[1] = in[2];
	g->is[0] = in[1] * in[2];
	g->os[2] = 1;
	g->os[1] = out[2];
	g->os[0] = out[1] * out[2];
}

/* Output indices [o_lo[s], o_hi[s]) along the axis read source slice s
 * (nearest, or the identity when the length does not change). */
static int sepz_ranges(const struct sepz *g, int64_t **lo, int64_t **hi)
{
	*lo = malloc((size_t)g->na * sizeof **lo);
	*hi = malloc((size_t)g->na * sizeof **hi);
	if (!*lo || !*hi) {
		free(*lo);
		free(*hi);
		return NNP_ENOMEM;
	}
	for (int64_t s = 0; s < g->na; s++)
		(*lo)[s] = (*hi)[s] = 0;
	for (int64_t o = 0; o < g->ma; o++) {
		int64_t s = g->na == g->ma ? o : nnp_resample_nearest(g->na, g->ma, o);
		if ((*lo)[s] == (*hi)[s])
			(*lo)[s] = o;
		(*hi)[s] = o + 1;
	}
	return NNP_OK;
}

/* Extract data slice s along the axis into P[a][b] (float64). */
static void sepz_get_data(const struct sepz *g, const struct source *src, int64_t s, double *P)
{
	for (int64_t i = 0; i < g->a; i++) {
		int64_t off = s * g->is[g->ax] + i * g->is[g->pa];
		if (g->pb == 2)
			source_get(src, off, g->b, P + i * g->b);
		else
			for (int64_t j = 0; j < g->b; j++)
				source_get(src, off + j * g->is[g->pb], 1, P + i * g->b + j);
	}
}

/* Data with separate z. */
static int data_sepz(const struct source *src, const int64_t in[3], const struct sink *dst, const int64_t out[3],
		     const struct nnp_resample_opts *o)
{
	struct sepz g;
	int fail = 0, rc = NNP_OK;
	sepz_init(&g, o->axis, in, out);
	if (g.na == g.ma || o->order_z == 0) {
		int64_t *lo, *hi;
		const int zstep = g.na != g.ma;
		if (sepz_ranges(&g, &lo, &hi))
			return NNP_ENOMEM;
		#pragma omp parallel reduction(|:fail)
		{
			double *P = malloc((size_t)(g.a * g.b) * sizeof *P), *Q = malloc((size_t)(g.a2 * g.b2) * sizeof *Q);
			struct ws ws;
			memset(&ws, 0, sizeof ws);
			if (!P || !Q)
				fail = 1;
			#pragma omp for schedule(dynamic, 1)
			for (int64_t s = 0; s < g.na; s++) {
				if (fail || lo[s] == hi[s])
					continue;   /* slices that no output reads are skipped */
				sepz_get_data(&g, src, s, P);
				if (plane_data(P, g.a, g.b, Q, g.a2, g.b2, o->order, &ws)) {
					fail = 1;
					continue;
				}
				if (zstep)   /* map_coordinates order 0: t = 0.0 + v */
					for (int64_t i = 0; i < g.a2 * g.b2; i++)
						Q[i] = 0.0 + Q[i];
				for (int64_t k = lo[s]; k < hi[s]; k++)
					for (int64_t i = 0; i < g.a2; i++)
						sink_put(dst, k * g.os[g.ax] + i * g.os[g.pa], g.os[g.pb], Q + i * g.b2,
							 g.b2);
			}
			free(P);
			free(Q);
			ws_free(&ws);
		}
		free(lo);
		free(hi);
		return fail ? NNP_ENOMEM : NNP_OK;
	}
	/* order_z >= 1: stack the in-plane results, then map_coordinates along
	 * the axis (order_z, no clip; with order_z >= 2 prefiltered on a padded
	 * copy like scipy, which on the in-plane axes is the identity). */
	{
		int64_t st[3] = { out[0], out[1], out[2] }, outer, inner;
		double *V;
		struct amap m;
		struct sink vs;
		struct source vsrc;
		st[g.ax] = g.na;
		V = malloc((size_t)prod3(st) * sizeof *V);
		if (!V)
			return NNP_ENOMEM;
		vs = (struct sink){ V, NNP_F64, 0, 0, 0 };
		#pragma omp parallel reduction(|:fail)
		{
			double *P = malloc((size_t)(g.a * g.b) * sizeof *P), *Q = malloc((size_t)(g.a2 * g.b2) * sizeof *Q);
			int64_t vst[3] = { st[1] * st[2], st[2], 1 };
			struct ws ws;
			memset(&ws, 0, sizeof ws);
			if (!P || !Q)
				fail = 1;
			#pragma omp for schedule(dynamic, 1)
			for (int64_t s = 0; s < g.na; s++) {
				if (fail)
					continue;
				sepz_get_data(&g, src, s, P);
				if (plane_data(P, g.a, g.b, Q, g.a2, g.b2, o->order, &ws)) {
					fail = 1;
					continue;
				}
				for (int64_t i = 0; i < g.a2; i++)
					sink_put(&vs, s * vst[g.ax] + i * vst[g.pa], vst[g.pb], Q + i * g.b2, g.b2);
			}
			free(P);
			free(Q);
			ws_free(&ws);
		}
		if (fail) {
			free(V);
			return NNP_ENOMEM;
		}
		outer = g.ax == 0 ? 1 : (g.ax == 1 ? st[0] : st[0] * st[1]);
		inner = g.ax == 2 ? 1 : (g.ax == 1 ? st[2] : st[1] * st[2]);
		vsrc = (struct source){ V, NNP_F64, 0, 1, 0 };
		if (amap_init(&m, g.na, g.ma, o->order_z, o->order_z >= 2 ? NPAD : 0)) {
			free(V);
			return NNP_ENOMEM;
		}
		rc = resample_axis(&vsrc, outer, g.na, inner, dst, &m, NULL);
		amap_free(&m);
		free(V);
	}
	return rc;
}

/* Labels with separate z. */
static int labels_sepz(enum nnp_dtype st, const void *src, const int64_t in[3], enum nnp_dtype dt, void *dst,
		       const int64_t out[3], const struct nnp_resample_opts *o, uint64_t *cnt_out)
{
	struct sepz g;
	int fail = 0;
	uint64_t cnt = 0;
	int32_t *V = NULL;
	int64_t *lo = NULL, *hi = NULL, vs[3] = { 0, 0, 0 };
	sepz_init(&g, o->axis, in, out);
	if (g.na == g.ma || o->order_z == 0) {
		/* each output slice is one resized source slice */
		if (sepz_ranges(&g, &lo, &hi))
			return NNP_ENOMEM;
	} else {
		/* order_z 1: stack the resized slices first */
		int64_t shp[3] = { out[0], out[1], out[2] };
		shp[g.ax] = g.na;
		V = malloc((size_t)prod3(shp) * sizeof *V);
		if (!V)
			return NNP_ENOMEM;
		vs[0] = shp[1] * shp[2];
		vs[1] = shp[2];
		vs[2] = 1;
	}
	#pragma omp parallel reduction(|:fail) reduction(+:cnt)
	{
		int32_t *P = malloc((size_t)(g.a * g.b) * sizeof *P), *Q = malloc((size_t)(g.a2 * g.b2) * sizeof *Q);
		if (!P || !Q)
			fail = 1;
		#pragma omp for schedule(dynamic, 1)
		for (int64_t s = 0; s < g.na; s++) {
			if (fail || (!V && lo[s] == hi[s]))
				continue;
			for (int64_t i = 0; i < g.a; i++)
				labels_get(st, src, s * g.is[g.ax] + i * g.is[g.pa], g.b, g.is[g.pb], P + i * g.b);
			if (plane_labels(P, g.a, g.b, Q, g.a2, g.b2, o->order, &cnt)) {
				fail = 1;
				continue;
			}
			if (V) {
				for (int64_t i = 0; i < g.a2; i++)
					for (int64_t j = 0; j < g.b2; j++)
						V[s * vs[g.ax] + i * vs[g.pa] + j * vs[g.pb]] = Q[i * g.b2 + j];
			} else {
				for (int64_t k = lo[s]; k < hi[s]; k++)
					for (int64_t i = 0; i < g.a2; i++)
						labels_put(dt, dst, k * g.os[g.ax] + i * g.os[g.pa], g.b2, g.os[g.pb],
							   Q + i * g.b2);
			}
		}
		free(P);
		free(Q);
	}
	free(lo);
	free(hi);
	if (!fail && V) {
		/* order_z 1 on the label values: per label round(map_coordinates
		 * (onehot, order 1)) > 0.5, ascending, later overwrite, default 0.
		 * Along one axis the mask of a label interpolates to the weight of
		 * its tap (both taps: their sum), so the winner is the tap label
		 * whose weight exceeds 0.5. */
		struct amap m;
		if (amap_init(&m, g.na, g.ma, 1, 0)) {
			fail = 1;
		} else {
			#pragma omp parallel for schedule(static) reduction(+:cnt)
			for (int64_t k = 0; k < g.ma; k++) {
				const int64_t *ix = m.idx + 2 * k;
				const double *w = m.w + 2 * k;
				for (int64_t i = 0; i < g.a2; i++)
					for (int64_t j = 0; j < g.b2; j++) {
						int64_t e = i * vs[g.pa] + j * vs[g.pb];
						int32_t l0 = V[ix[0] * vs[g.ax] + e], l1 = V[ix[1] * vs[g.ax] + e], r = 0;
						if (l0 == l1) {
							double t = 0.0;
							t += w[0];
							t += w[1];
							r = nearbyint(t) > 0.5 ? l0 : 0;
							cnt++;
						} else {
							double t0 = 0.0 + w[0], t1 = 0.0 + w[1];
							int32_t a0 = nearbyint(t0) > 0.5, a1 = nearbyint(t1) > 0.5;
							/* ascending label order, later overwrite */
							if (l0 < l1)
								r = a1 ? l1 : (a0 ? l0 : 0);
							else
								r = a0 ? l0 : (a1 ? l1 : 0);
							cnt += 2;
						}
						labels_put(dt, dst, k * g.os[g.ax] + i * g.os[g.pa] + j * g.os[g.pb], 1, 1,
							   &r);
					}
			}
			amap_free(&m);
		}
	}
	free(V);
	*cnt_out += cnt;
	return fail ? NNP_ENOMEM : NNP_OK;
}

static int check_opts(const struct nnp_resample_opts *o)
{
	if (o->is_seg) {
		if (o->order < 0 || o->order > 1)
			return nnp_err(NNP_EUSAGE, "resample: segmentation order %d is not supported (0 or 1)",
				       o->order);
		if (o->separate_z && (o->order_z < 0 || o->order_z > 1))
			return nnp_err(NNP_EUSAGE, "resample: segmentation order_z %d is not supported (0 or 1)",
				       o->order_z);
	} else {
		if (o->order < 0 || o->order > MAX_ORDER)
			return nnp_err(NNP_EUSAGE, "resample: order %d is not in 0..5", o->order);
		if (o->separate_z && (o->order_z < 0 || o->order_z > MAX_ORDER))
			return nnp_err(NNP_EUSAGE, "resample: order_z %d is not in 0..5", o->order_z);
	}
	if (o->separate_z && (o->axis < 0 || o->axis > 2))
		return nnp_err(NNP_EUSAGE, "resample: separate z needs an axis in 0..2, not %d", o->axis);
	return NNP_OK;
}

int nnp_resample_channel(enum nnp_dtype st, const void *src, double slope, double inter, const int64_t in[3],
			 enum nnp_dtype dt, void *dst, const int64_t out[3], const struct nnp_resample_opts *o)
{
	int rc = check_opts(o), same;
	uint64_t cnt = 0;
	if (rc)
		return rc;
	for (int k = 0; k < 3; k++)
		if (in[k] < 1 || out[k] < 1 || in[k] > NNP_DIM_MAX || out[k] > NNP_DIM_MAX)
			return nnp_err(NNP_EUSAGE, "resample: shape %lldx%lldx%lld -> %lldx%lldx%lld out of range",
				       (long long)in[0], (long long)in[1], (long long)in[2], (long long)out[0],
				       (long long)out[1], (long long)out[2]);
	same = in[0] == out[0] && in[1] == out[1] && in[2] == out[2];
	if (o->is_seg) {
		if (!label_dtype_ok(st) || !label_dtype_ok(dt))
			return nnp_err(NNP_EUSAGE,
				       "resample: labels must be int8, uint8, int16, uint16 or int32, not %s -> %s",
				       nnp_dtype_name(st), nnp_dtype_name(dt));
		if (same) {
			enum { BLK = 4096 };
			int32_t tmp[BLK];
			int64_t n = prod3(in);
			for (int64_t off = 0; off < n; off += BLK) {
				int64_t m = n - off < BLK ? n - off : BLK;
				labels_get(st, src, off, m, 1, tmp);
				labels_put(dt, dst, off, m, 1, tmp);
			}
			return NNP_OK;
		}
		if (o->separate_z) {
			rc = labels_sepz(st, src, in, dt, dst, out, o, &cnt);
		} else if (o->order == 0) {
			rc = labels_nearest3(st, src, in, dt, dst, out);
		} else {
			int32_t *L = malloc((size_t)prod3(in) * sizeof *L);
			if (!L) {
				rc = NNP_ENOMEM;
			} else {
				labels_get(st, src, 0, prod3(in), 1, L);
				rc = labels_linear3(L, in, dt, dst, out, &cnt);
				free(L);
			}
		}
		if (o->label_evals)
			*o->label_evals += cnt;
	} else {
		struct source s = { src, st, slope != 0 && !(slope == 1 && inter == 0), slope, inter };
		struct sink d = { dst, dt, 0, 0, 0 };
		if (!nnp_dtype_size(st) || (dt != NNP_F16 && dt != NNP_F32 && dt != NNP_F64))
			return nnp_err(NNP_EUSAGE,
				       "resample: data %s -> %s: the output must be float16, float32 or float64",
				       nnp_dtype_name(st), nnp_dtype_name(dt));
		if (same) {
			/* resample_data_or_seg returns the input unchanged */
			enum { BLK = 4096 };
			double tmp[BLK];
			int64_t n = prod3(in);
			for (int64_t off = 0; off < n; off += BLK) {
				int64_t m = n - off < BLK ? n - off : BLK;
				source_get(&s, off, m, tmp);
				sink_put(&d, off, 1, tmp, m);
			}
			return NNP_OK;
		}
		if (o->separate_z) {
			rc = data_sepz(&s, in, &d, out, o);
		} else {
			d.clip = 1;
			minmax_source(&s, prod3(in), &d.lo, &d.hi);
			if (o->order == 0) {
				rc = data_nearest3(&s, in, &d, out);
			} else if (o->order == 1) {
				double *A = malloc((size_t)prod3(in) * sizeof *A);
				if (!A) {
					rc = NNP_ENOMEM;
				} else {
					source_get(&s, 0, prod3(in), A);
					rc = data_linear3(A, in, &d, out);
					free(A);
				}
			} else {
				rc = data_spline3(&s, in, &d, out, o->order);
			}
		}
	}
	if (rc == NNP_ENOMEM)
		return nnp_err(rc, "resample: cannot allocate the work buffers for %lldx%lldx%lld -> %lldx%lldx%lld",
			       (long long)in[0], (long long)in[1], (long long)in[2], (long long)out[0],
			       (long long)out[1], (long long)out[2]);
	return rc;
}

/* ------------------------------------------------------------------ */
/* volumes                                                             */

void nnp_resample_opts_init(struct nnp_resample_opts *o)
{
	memset(o, 0, sizeof *o);
	o->order = 3;
	o->order_z = 0;
	o->axis = -1;
	o->out_dtype = NNP_DT_NONE;
}

int nnp_resample_frame(const struct nnp_frame *f, const int64_t new_shape[3], const double new_spacing[3],
		       enum nnp_dtype dt, struct nnp_frame *out)
{
	int rc;
	nnp_frame_init(out);
	if ((rc = nnp_frame_copy(out, f)))
		return rc;
	free(out->scale);
	out->scale = NULL;
	out->dtype = dt;
	out->chunk_slices = 0;
	for (int k = 0; k < 3; k++) {
		double s = (double)f->shape[k + 1] / (double)new_shape[k];
		int col = 2 - k;   /* NIfTI voxel axis of array axis k */
		out->shape[k + 1] = new_shape[k];
		out->spacing[k] = new_spacing ? new_spacing[k] : f->spacing[k] * s;
		if (f->has_affine) {
			/* output voxel o is input position (o + 0.5) * s - 0.5 */
			for (int r = 0; r < 3; r++) {
				out->affine[r][3] += f->affine[r][col] * (0.5 * s - 0.5);
				out->affine[r][col] = f->affine[r][col] * s;
			}
		}
	}
	return NNP_OK;
}

int nnp_resample_vol(const struct nnp_vol *in, const int64_t new_shape[3], const double new_spacing[3],
		     const struct nnp_resample_opts *o, struct nnp_vol *out)
{
	const struct nnp_frame *f = &in->f;
	const int64_t *ish = f->shape + 1;
	enum nnp_dtype dt;
	uint64_t icn, ocn;
	size_t ies, oes;
	int rc;
	nnp_vol_init(out);
	if ((rc = check_opts(o)))
		return rc;
	if (o->is_seg) {
		if (!label_dtype_ok(f->dtype))
			return nnp_err(NNP_EUSAGE,
				       "resample: case '%s': labels must be int8, uint8, int16, uint16 or int32, not %s",
				       f->case_id ? f->case_id : "(no case id)", nnp_dtype_name(f->dtype));
		if (f->scale)
			for (int64_t c = 0; c < f->shape[0]; c++)
				if (f->scale[2 * c] != 0 && (f->scale[2 * c] != 1 || f->scale[2 * c + 1] != 0))
					return nnp_err(NNP_EDATA, "resample: case '%s': a label map with a NIfTI scale",
						       f->case_id ? f->case_id : "(no case id)");
		dt = f->dtype;
	} else if (o->out_dtype != NNP_DT_NONE) {
		dt = o->out_dtype;
	} else {
		dt = f->dtype == NNP_F16 ? NNP_F16 : (f->dtype == NNP_F64 ? NNP_F64 : NNP_F32);
	}
	if ((rc = nnp_resample_frame(f, new_shape, new_spacing, dt, &out->f)))
		return rc;
	if ((rc = nnp_vol_alloc(out))) {
		nnp_vol_release(out);
		return rc;
	}
	icn = nnp_frame_nvox(f);
	ocn = nnp_frame_nvox(&out->f);
	ies = nnp_dtype_size(f->dtype);
	oes = nnp_dtype_size(dt);
	for (int64_t c = 0; c < f->shape[0]; c++) {
		double slope = 0, inter = 0;
		if (f->scale && !o->is_seg) {
			slope = f->scale[2 * c];
			inter = f->scale[2 * c + 1];
		}
		rc = nnp_resample_channel(f->dtype, (const char *)in->data + c * icn * ies, slope, inter, ish, dt,
					  (char *)out->data + c * ocn * oes, new_shape, o);
		if (rc) {
			nnp_vol_release(out);
			return nnp_err_ctx(rc, "case '%s'", f->case_id ? f->case_id : "(no case id)");
		}
	}
	return NNP_OK;
}

int nnp_resample_to_shape(const struct nnp_vol *in, const int64_t new_shape[3], const double current_spacing[3],
			  const double new_spacing[3], int is_seg, int order, int order_z, int force_separate_z,
			  struct nnp_vol *out)
{
	struct nnp_resample_opts o;
	nnp_resample_opts_init(&o);
	o.is_seg = is_seg;
	o.order = order;
	o.order_z = order_z;
	o.separate_z = nnp_resample_separate_z(force_separate_z, current_spacing, new_spacing, &o.axis);
	return nnp_resample_vol(in, new_shape, new_spacing, &o, out);
}

int nnp_resample_step(const struct nnp_vol *in, const int64_t new_shape[3], const double new_spacing[3], int is_seg,
		      int order, int order_z, int force_separate_z, struct nnp_vol *out)
{
	json_t *p;
	int rc = nnp_resample_to_shape(in, new_shape, in->f.spacing, new_spacing, is_seg, order, order_z,
				       force_separate_z, out);
	if (rc)
		return rc;
	memcpy(out->f.spacing, new_spacing, 3 * sizeof *new_spacing);
	if (!(p = nnp_frame_props(&out->f))) {
		nnp_vol_release(out);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	if (!json_object_get(p, "spacing_before_resampling"))
		json_object_set_new(p, "spacing_before_resampling",
				    json_pack("[f,f,f]", in->f.spacing[0], in->f.spacing[1], in->f.spacing[2]));
	return NNP_OK;
}
