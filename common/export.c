/* export.c — logits -> segmentation (+ probabilities) in the original
 * geometry, streaming over input slices (see export.h). */
#include <math.h>
#include <stdlib.h>
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define NNP_HAVE_F16C_PATH 1
#endif
#include <string.h>
#include "crop.h"
#include "err.h"
#include "export.h"
#include "plans.h"
#include "resample.h"
#include "transpose.h"

/* The row kernels gather; AVX2 has vector gathers, so build a clone for it
 * (selected at load time; the arithmetic and its order are the same). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define NNP_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NNP_VECTOR_CLONES
#endif


void nnp_export_opts_init(struct nnp_export_opts *o)
{
	memset(o, 0, sizeof *o);
	o->order = 1;
	o->order_z = 0;
	o->force_separate_z = NNP_SEPZ_AUTO;
}

/* ------------------------------------------------------------------ */
/* labels                                                              */

static int is_background(const struct nnp_label *l)
{
	for (size_t k = 0; k < l->nvalues; k++)
		if (l->values[k] != 0)
			return 0;
	return 1;
}

int nnp_export_labels_from_dataset(const struct nnp_dataset *d, struct nnp_export_labels *l)
{
	json_t *order = json_object_get(d->json, "regions_class_order");
	memset(l, 0, sizeof *l);
	if (d->has_regions) {
		size_t n = json_array_size(order);
		if (!n || n > NNP_CHANNELS_MAX)
			return nnp_err(NNP_EDATA, "dataset.json: regions need a regions_class_order");
		if (!(l->region_values = malloc(n * sizeof *l->region_values)))
			return nnp_err(NNP_ENOMEM, "out of memory");
		for (size_t i = 0; i < n; i++)
			l->region_values[i] = (int)json_integer_value(json_array_get(order, i));
		l->regions = 1;
		l->nchannels = (int64_t)n;
		l->nforeground = (int64_t)n;
		return NNP_OK;
	}
	for (size_t i = 0; i < d->nlabels; i++) {
		const struct nnp_label *lb = &d->labels[i];
		if (!strcmp(lb->name, "ignore"))
			continue;
		if (lb->nvalues != 1 || lb->values[0] != (int)l->nchannels)
			return nnp_err(NNP_EDATA, "dataset.json: label '%s' is not %lld: labels must be 0, 1, 2, ... "
				       "in order", lb->name, (long long)l->nchannels);
		l->nchannels++;
		l->nforeground += !is_background(lb);
	}
	if (l->nchannels < 1)
		return nnp_err(NNP_EDATA, "dataset.json: no labels");
	return NNP_OK;
}

void nnp_export_labels_release(struct nnp_export_labels *l)
{
	free(l->region_values);
	memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------------ */
/* the job                                                             */

struct job {
	const struct nnp_frame *f;
	const struct nnp_export_opts *o;
	const char *id;
	int64_t K, in[3], mid[3], before[3], bbox[3][2];
	double tgt_sp[3];
	int t[3], order, order_z, force, sepz, axis, path, fp16, regions;
	const int *region_values;
	struct nnp_vol seg, prob;
	int64_t *ty;               /* order-1 taps in y (2 per output) */
	double *wy;
	int32_t *ix0, *ix1;        /* order-1 taps in x, split for vectorised gathers */
	double *wx0, *wx1;
	float *half_lut;           /* float16 input: all 65536 values as float */
	float *slot[2];            /* input slices (K planes, float32) */
	int64_t slot_z[2];
	float *planes;             /* separate z: the K resampled planes of input slice planes_z */
	int64_t planes_z;
	void *res;                 /* whole path: K x mid in res_dt */
	enum nnp_dtype res_dt;
	int64_t next_oz;
	/* streamed probabilities (no transposition): a chunk of pcs slices */
	struct nnp_writer *w;
	int prob_stream;
	float *pchunk;
	int64_t pcs, prob_next_z;
};

/* One output z: the z taps of the linear path. */
struct zctx {
	int64_t oz;
	const float *s[2];
	double wz[2];
	int zfull;                 /* the second tap has a nonzero weight */
};

static float rnd(double t, int fp16)
{
	return fp16 ? nnp_half_to_float(nnp_double_to_half(t)) : (float)t;
}

static const char *case_of(const struct nnp_frame *f)
{
	return f->case_id ? f->case_id : "(no case id)";
}

/* ---- props ---- */

static int get_vec3(const struct job *j, const char *key, double v[3], int integer)
{
	json_t *a = j->f->props ? json_object_get(j->f->props, key) : NULL;
	if (!a)
		return nnp_err(NNP_EDATA, "case '%s': the logits frame has no props.%s (was the case "
			       "preprocessed by nnp preprocess?)", j->id, key);
	if (json_array_size(a) != 3)
		return nnp_err(NNP_EDATA, "case '%s': props.%s must have 3 entries", j->id, key);
	for (size_t i = 0; i < 3; i++) {
		json_t *e = json_array_get(a, i);
		if (integer ? !json_is_integer(e) : !json_is_number(e))
			return nnp_err(NNP_EDATA, "case '%s': props.%s[%zu] must be %s", j->id, key, i,
				       integer ? "an integer" : "a number");
		v[i] = json_number_value(e);
		if (!(v[i] > 0) || !isfinite(v[i]) || (integer && v[i] > (double)NNP_DIM_MAX))
			return nnp_err(NNP_EDATA, "case '%s': props.%s[%zu] = %g is out of range", j->id, key, i,
				       v[i]);
	}
	return NNP_OK;
}

static int read_kwargs(struct job *j)
{
	json_t *kw = j->f->props ? json_object_get(j->f->props, "resampling_fn_probabilities_kwargs") : NULL;
	int rc;
	j->order = j->o->order;
	j->order_z = j->o->order_z;
	j->force = j->o->force_separate_z;
	if (!j->o->kwargs_set && kw) {
		j->order = 1;
		j->order_z = 0;
		j->force = NNP_SEPZ_AUTO;
		if ((rc = nnp_plans_parse_kwargs(kw, "props.resampling_fn_probabilities_kwargs", &j->order,
						 &j->order_z, &j->force)))
			return nnp_err_ctx(rc, "case '%s'", j->id);
	}
	if (j->order < 0 || j->order > 5 || j->order_z < 0 || j->order_z > 5)
		return nnp_err(NNP_EUSAGE, "case '%s': resampling order %d / order_z %d not in 0..5", j->id,
			       j->order, j->order_z);
	return NNP_OK;
}

static int read_props(struct job *j)
{
	double mid[3];
	int rc;
	if ((rc = get_vec3(j, "shape_before_cropping", mid, 1)))
		return rc;
	if (!json_object_get(j->f->props, "bbox_used_for_cropping"))
		return nnp_err(NNP_EDATA, "case '%s': the logits frame has no props.bbox_used_for_cropping (was the "
			       "case preprocessed by nnp preprocess?)", j->id);
	if ((rc = nnp_crop_get_record(j->f, j->before, j->bbox)))
		return rc;
	if ((rc = get_vec3(j, "shape_after_cropping_and_before_resampling", mid, 1)) ||
	    (rc = get_vec3(j, "spacing_before_resampling", j->tgt_sp, 0)))
		return rc;
	for (int a = 0; a < 3; a++) {
		j->mid[a] = (int64_t)mid[a];
		j->in[a] = j->f->shape[a + 1];
		if (j->mid[a] != j->bbox[a][1] - j->bbox[a][0])
			return nnp_err(NNP_EDATA, "case '%s': props.shape_after_cropping_and_before_resampling does "
				       "not match props.bbox_used_for_cropping (axis %d)", j->id, a);
	}
	nnp_transpose_of_frame(j->f, j->t);
	return read_kwargs(j);
}

static int check_input(struct job *j)
{
	const struct nnp_export_labels *l = j->o->labels;
	const struct nnp_frame *f = j->f;
	if (f->dtype != NNP_F16 && f->dtype != NNP_F32 && f->dtype != NNP_F64)
		return nnp_err(NNP_EDATA, "case '%s': logits must be float16, float32 or float64, not %s", j->id,
			       nnp_dtype_name(f->dtype));
	if (f->scale)
		for (int64_t c = 0; c < f->shape[0]; c++)
			if (f->scale[2 * c] != 0 && (f->scale[2 * c] != 1 || f->scale[2 * c + 1] != 0))
				return nnp_err(NNP_EDATA, "case '%s': logits with a NIfTI scale", j->id);
	j->K = f->shape[0];
	if (l && l->nchannels && l->nchannels != j->K)
		return nnp_err(NNP_EDATA, "case '%s': the logits have %lld channels but dataset.json defines %lld "
			       "%s", j->id, (long long)j->K, (long long)l->nchannels, l->regions ? "regions" : "labels");
	j->regions = l && l->regions;
	j->region_values = l ? l->region_values : NULL;
	return NNP_OK;
}

static int64_t prod3(const int64_t s[3])
{
	return s[0] * s[1] * s[2];
}

static void choose_path(struct job *j)
{
	int same = j->in[0] == j->mid[0] && j->in[1] == j->mid[1] && j->in[2] == j->mid[2];
	j->sepz = nnp_resample_separate_z(j->force, j->f->spacing, j->tgt_sp, &j->axis);
	if (same)
		j->path = NNP_EXPORT_LINEAR;   /* the identity: values pass unchanged */
	else if (j->sepz && j->axis == 0 && (j->order_z == 0 || j->in[0] == j->mid[0]))
		j->path = NNP_EXPORT_SEPZ;
	else if (!j->sepz && j->order == 1)
		j->path = NNP_EXPORT_LINEAR;
	else
		j->path = NNP_EXPORT_WHOLE;
}

/* Bytes the chosen path holds at its peak (outputs included). */
static uint64_t memory_estimate(const struct job *j)
{
	uint64_t nin = (uint64_t)prod3(j->in), nmid = (uint64_t)prod3(j->mid), nb = (uint64_t)prod3(j->before);
	uint64_t K = (uint64_t)j->K, plane = (uint64_t)(j->in[1] * j->in[2]);
	uint64_t pl = (uint64_t)(j->before[1] * j->before[2]);
	uint64_t prob = !j->o->save_probabilities ? 0 : nnp_transpose_is_identity(j->t) ? K * pl * 4 + NNP_CHUNK_TARGET
										     : K * nb * 4;
	uint64_t out = nb * 2 + prob;
	uint64_t tr = nnp_transpose_is_identity(j->t) ? 0 : out;
	uint64_t work;
	if (j->path == NNP_EXPORT_WHOLE)
		work = K * nin * nnp_dtype_size(j->f->dtype) + K * nmid * (j->fp16 ? 2 : 4) +
		       3 * (nin > nmid ? nin : nmid) * 8;
	else
		work = 2 * K * plane * 4 + (j->path == NNP_EXPORT_SEPZ ? K * (uint64_t)(j->mid[1] * j->mid[2]) * 4 : 0) +
		       nnp_frame_slice_bytes(j->f) * (uint64_t)(j->f->chunk_slices > 0 ? j->f->chunk_slices : 1);
	return out + tr + work;
}

/* ---- output frames ---- */

static int make_outputs(struct job *j)
{
	struct nnp_frame mf, sf;
	int rc;
	if ((rc = nnp_resample_frame(j->f, j->mid, j->tgt_sp, NNP_F32, &mf)))
		return rc;
	if (mf.props)
		json_object_del(mf.props, "spacing_before_resampling");
	rc = nnp_uncrop_frame(&mf, j->before, j->bbox, &sf);
	nnp_frame_release(&mf);
	if (rc)
		return rc;
	if (j->o->save_probabilities) {
		if ((rc = nnp_frame_copy(&j->prob.f, &sf)))
			goto out;
		strcpy(j->prob.f.role, "probabilities");
		j->prob_stream = nnp_transpose_is_identity(j->t);
		if (!j->prob_stream && (rc = nnp_vol_alloc(&j->prob)))
			goto out;
		if (!j->prob_stream && !j->regions) {
			float *p = j->prob.data;
			for (int64_t i = 0; i < prod3(j->before); i++)
				p[i] = 1.0f;
		}
	}
	sf.shape[0] = 1;
	sf.dtype = nnp_export_seg_dtype(j->o->labels, j->K);
	strcpy(sf.role, "seg");
	j->seg.f = sf;
	nnp_frame_init(&sf);
	rc = nnp_vol_alloc(&j->seg);
out:
	nnp_frame_release(&sf);
	return rc;
}

/* ---- per voxel decisions ---- */

static float sigmoidf(float v)
{
	return 1.0f / (1.0f + expf(-v));
}

/* Probabilities of row (Z, Y) from x = bbox lo, channel c at p + c * nb. */
static void store_probs(const struct job *j, const float *const *rows, int64_t Z, int64_t Y, int64_t nx)
{
	int64_t plane = j->before[1] * j->before[2];
	size_t nb = j->prob_stream ? (size_t)(j->pcs * plane) : (size_t)prod3(j->before);
	size_t off = (size_t)((j->prob_stream ? Z % j->pcs : Z) * plane + Y * j->before[2] + j->bbox[2][0]);
	float *p = (j->prob_stream ? j->pchunk : (float *)j->prob.data) + off;
	for (int64_t x = 0; x < nx; x++) {
		if (j->regions) {
			for (int64_t c = 0; c < j->K; c++)
				p[(size_t)c * nb + (size_t)x] = sigmoidf(rows[c][x]);
		} else {
			float m = rows[0][x], s = 0.0f;
			for (int64_t c = 1; c < j->K; c++)
				m = rows[c][x] > m ? rows[c][x] : m;
			for (int64_t c = 0; c < j->K; c++)
				s += expf(rows[c][x] - m);
			for (int64_t c = 0; c < j->K; c++)
				p[(size_t)c * nb + (size_t)x] = expf(rows[c][x] - m) / s;
		}
	}
}

/* ---- the segmentation rule (export.h; also nnp ensemble) ---- */

enum nnp_dtype nnp_export_seg_dtype(const struct nnp_export_labels *l, int64_t K)
{
	int64_t nfg = l ? l->nforeground : K - 1;
	return nfg >= 255 ? NNP_U16 : NNP_U8;
}

/* First maximum over channels, channel by channel (vectorises with
 * -fno-trapping-math, see the Makefile; no NaN reaches here). */
NNP_VECTOR_CLONES
void nnp_export_argmax_channel(const float *restrict v, float *restrict best, int32_t *restrict lab, int32_t c,
			       int64_t n)
{
	if (c == 0) {
		memcpy(best, v, (size_t)n * sizeof *best);
		memset(lab, 0, (size_t)n * sizeof *lab);
		return;
	}
	for (int64_t x = 0; x < n; x++) { /* branch-free selects: loads, max, blend, stores */
		const float r = v[x], b0 = best[x];
		const int32_t l0 = lab[x], m = -(int32_t)(r > b0);
		best[x] = r > b0 ? r : b0;
		lab[x] = (c & m) | (l0 & ~m);
	}
}

void nnp_export_region_channel(const float *restrict p, int32_t *restrict lab, int32_t value, int64_t n)
{
	for (int64_t x = 0; x < n; x++)
		lab[x] = p[x] > 0.5f ? value : lab[x];
}

void nnp_export_store_labels(enum nnp_dtype dt, void *dst, const int32_t *lab, int64_t n)
{
	if (dt == NNP_U8) {
		uint8_t *d = dst;
		for (int64_t x = 0; x < n; x++)
			d[x] = (uint8_t)lab[x];
	} else {
		uint16_t *d = dst;
		for (int64_t x = 0; x < n; x++)
			d[x] = (uint16_t)lab[x];
	}
}

/* rows[c][x]: the resampled logits of output row (oz, oy), x in [0, mid2);
 * best/lab: nx scratch entries.  Regions threshold sigmoid(logit) (float32),
 * computed into best channel by channel. */
static void decide_row(const struct job *j, const float *const *rows, int64_t oz, int64_t oy, float *best,
		       int32_t *lab)
{
	int64_t nx = j->mid[2], Z = oz + j->bbox[0][0], Y = oy + j->bbox[1][0];
	size_t off = (size_t)(((Z * j->before[1] + Y) * j->before[2]) + j->bbox[2][0]);
	if (j->regions) {
		memset(lab, 0, (size_t)nx * sizeof *lab);
		for (int64_t c = 0; c < j->K; c++) {
			for (int64_t x = 0; x < nx; x++)
				best[x] = sigmoidf(rows[c][x]);
			nnp_export_region_channel(best, lab, j->region_values[c], nx);
		}
	} else {
		for (int32_t c = 0; c < (int32_t)j->K; c++)
			nnp_export_argmax_channel(rows[c], best, lab, c, nx);
	}
	nnp_export_store_labels(j->seg.f.dtype, (char *)j->seg.data + off * nnp_dtype_size(j->seg.f.dtype), lab, nx);
	if (j->o->save_probabilities)
		store_probs(j, rows, Z, Y, nx);
}

/* ---- row providers ---- */

/* One output row from two input rows (z weight exactly 1, second z tap
 * weight 0: those terms add +-0 and v * 1.0 == v, so dropping them is
 * exact): t = 0.0; t += (v * wy) * wx in data_linear3's order. */
NNP_VECTOR_CLONES
static void lin_row2(const float *restrict r0, const float *restrict r1, double wy0, double wy1,
		     const int32_t *restrict ix0, const int32_t *restrict ix1, const double *restrict wx0,
		     const double *restrict wx1, int64_t n, int64_t nin, double *restrict u, double *restrict out)
{
	double *restrict u0 = u, *restrict u1 = u + nin;
	for (int64_t x = 0; x < nin; x++) {   /* (v * wy) once per input voxel: the same products */
		u0[x] = (double)r0[x] * wy0;
		u1[x] = (double)r1[x] * wy1;
	}
	for (int64_t x = 0; x < n; x++) {
		double t = 0.0;
		t += u0[ix0[x]] * wx0[x];
		t += u0[ix1[x]] * wx1[x];
		t += u1[ix0[x]] * wx0[x];
		t += u1[ix1[x]] * wx1[x];
		out[x] = t;
	}
}

/* The general case: four input rows (z, y) = (0,0) (0,1) (1,0) (1,1). */
NNP_VECTOR_CLONES
static void lin_row4(const float *const r[4], const double w[4][2], int nk, const int32_t *restrict ix0,
		     const int32_t *restrict ix1, const double *restrict wx0, const double *restrict wx1, int64_t n,
		     double *restrict out)
{
	for (int64_t x = 0; x < n; x++) {
		double t = 0.0;
		for (int k = 0; k < nk; k++) {
			t += (((double)r[k][ix0[x]] * w[k][0]) * w[k][1]) * wx0[x];
			t += (((double)r[k][ix1[x]] * w[k][0]) * w[k][1]) * wx1[x];
		}
		out[x] = t;
	}
}

#ifdef NNP_HAVE_F16C_PATH
/* float64 -> float16 -> float, rounded once: round to odd into float32
 * (24 >= 2*11 + 2 bits, so the second rounding is exact), then F16C's
 * round-to-nearest-even.  Identical to nnp_double_to_half (unit-tested). */
__attribute__((target("avx,f16c")))
static void round_row_f16c(const double *restrict t, int64_t n, float *restrict out)
{
	int64_t x = 0;
	for (; x + 4 <= n; x += 4) {
		__m256d d = _mm256_loadu_pd(t + x);
		__m128 f = _mm256_cvtpd_ps(d);
		__m256d back = _mm256_cvtps_pd(f);
		__m256d ad = _mm256_andnot_pd(_mm256_set1_pd(-0.0), d);
		__m256d ab = _mm256_andnot_pd(_mm256_set1_pd(-0.0), back);
		__m128i up = _mm256_cvtpd_epi32(_mm256_and_pd(_mm256_cmp_pd(ab, ad, _CMP_GT_OQ), _mm256_set1_pd(1.0)));
		__m128i ne = _mm256_cvtpd_epi32(_mm256_and_pd(_mm256_cmp_pd(back, d, _CMP_NEQ_UQ), _mm256_set1_pd(1.0)));
		__m128i bits = _mm_sub_epi32(_mm_castps_si128(f), up);
		bits = _mm_or_si128(bits, ne);
		__m128i h = _mm_cvtps_ph(_mm_castsi128_ps(bits), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		_mm_storeu_ps(out + x, _mm_cvtph_ps(h));
	}
	for (; x < n; x++)
		out[x] = nnp_half_to_float(nnp_double_to_half(t[x]));
}

__attribute__((target("avx,f16c")))
static void half_row_f16c(const uint16_t *restrict h, int64_t n, float *restrict out)
{
	int64_t x = 0;
	for (; x + 8 <= n; x += 8)
		_mm256_storeu_ps(out + x, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(h + x))));
	for (; x < n; x++)
		out[x] = nnp_half_to_float(h[x]);
}

static int have_f16c(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
}
#endif

NNP_VECTOR_CLONES
static void round_row(const double *restrict t, int64_t n, int fp16, float *restrict out)
{
#ifdef NNP_HAVE_F16C_PATH
	if (fp16 && have_f16c()) {
		round_row_f16c(t, n, out);
		return;
	}
#endif
	if (fp16) {
		for (int64_t x = 0; x < n; x++)
			out[x] = nnp_half_to_float(nnp_double_to_half(t[x]));
	} else {
		for (int64_t x = 0; x < n; x++)
			out[x] = (float)t[x];
	}
}

void nnp__export_round_f16(const double *t, int64_t n, float *out)
{
	round_row(t, n, 1, out);
}

/* Per-thread cache of input rows interpolated along x (in-plane path): row
 * iy of channel c in slot (c, iy & 1); key -1 = empty. */
struct xcache {
	double *rows;      /* K x 2 x nx */
	int64_t *key;      /* K x 2 */
};

NNP_VECTOR_CLONES
static void x_interp(const float *restrict r, const int32_t *restrict ix0, const int32_t *restrict ix1,
		     const double *restrict wx0, const double *restrict wx1, int64_t n, double *restrict out)
{
	for (int64_t x = 0; x < n; x++)
		out[x] = (double)r[ix0[x]] * wx0[x] + (double)r[ix1[x]] * wx1[x];
}

NNP_VECTOR_CLONES
static void y_blend(const double *restrict a, const double *restrict b, double wa, double wb, int64_t n,
		    double *restrict out)
{
	for (int64_t x = 0; x < n; x++)
		out[x] = a[x] * wa + b[x] * wb;
}

/* y_blend straight to float32 (the default path: no float16 rounding). */
NNP_VECTOR_CLONES
static void y_blend_f32(const double *restrict a, const double *restrict b, double wa, double wb, int64_t n,
			float *restrict out)
{
	for (int64_t x = 0; x < n; x++)
		out[x] = (float)(a[x] * wa + b[x] * wb);
}

static const double *cached_row(const struct job *j, struct xcache *xc, const float *slice, int64_t c, int64_t iy)
{
	int64_t nx = j->mid[2], k = c * 2 + (iy & 1);
	double *row = xc->rows + k * nx;
	if (xc->key[k] != iy) {
		x_interp(slice + (c * j->in[1] + iy) * j->in[2], j->ix0, j->ix1, j->wx0, j->wx1, nx, row);
		xc->key[k] = iy;
	}
	return row;
}

/* Linear: data_linear3's arithmetic on the two input slices of zc.  With z
 * unchanged (the in-plane case), separably: x first (rows cached per
 * thread), then y; the same linear interpolation, summed in another order
 * (float64 rounding differences, far below the float16/float32 output). */
static void row_linear(const struct job *j, const struct zctx *zc, int64_t c, int64_t oy, double *tmp, double *u,
		       struct xcache *xc, float *out)
{
	int64_t nxi = j->in[2], plane = j->in[1] * nxi, nx = j->mid[2];
	const int64_t *iy = j->ty + 2 * oy;
	const double *wy = j->wy + 2 * oy;
	const float *r[4];
	double w[4][2];
	int nk = 0;
	for (int a = 0; a < 1 + zc->zfull; a++)
		for (int b = 0; b < 2; b++) {
			r[nk] = zc->s[a] + c * plane + iy[b] * nxi;
			w[nk][0] = zc->wz[a];
			w[nk][1] = wy[b];
			nk++;
		}
	if (!zc->zfull && zc->wz[0] == 1.0 && xc && !j->fp16) {
		y_blend_f32(cached_row(j, xc, zc->s[0], c, iy[0]), cached_row(j, xc, zc->s[0], c, iy[1]), wy[0], wy[1],
			    nx, out);
		return;
	}
	if (!zc->zfull && zc->wz[0] == 1.0 && xc)
		y_blend(cached_row(j, xc, zc->s[0], c, iy[0]), cached_row(j, xc, zc->s[0], c, iy[1]), wy[0], wy[1], nx,
			tmp);
	else if (!zc->zfull && zc->wz[0] == 1.0)
		lin_row2(r[0], r[1], wy[0], wy[1], j->ix0, j->ix1, j->wx0, j->wx1, nx, nxi, u, tmp);
	else
		lin_row4(r, (const double(*)[2])w, nk, j->ix0, j->ix1, j->wx0, j->wx1, nx, tmp);
	round_row(tmp, nx, j->fp16, out);
}

/* ---- streamed probabilities ---- */

/* Background of original slice Z in the chunk buffer: channel 0 = 1 (labels). */
static void prob_slice_begin(const struct job *j, int64_t Z)
{
	int64_t plane = j->before[1] * j->before[2], zi = Z % j->pcs;
	for (int64_t c = 0; c < j->K; c++) {
		float *p = j->pchunk + (c * j->pcs + zi) * plane;
		float v = c == 0 && !j->regions ? 1.0f : 0.0f;
		for (int64_t i = 0; i < plane; i++)
			p[i] = v;
	}
}

/* Slice Z is complete: write the chunk when it is full or the last. */
static int prob_slice_end(struct job *j, int64_t Z)
{
	int64_t zi = Z % j->pcs, plane = j->before[1] * j->before[2];
	j->prob_next_z = Z + 1;
	if (zi != j->pcs - 1 && Z != j->before[0] - 1)
		return NNP_OK;
	if (zi != j->pcs - 1)   /* a short last chunk: close the channel gaps */
		for (int64_t c = 1; c < j->K; c++)
			memmove(j->pchunk + c * (zi + 1) * plane, j->pchunk + c * j->pcs * plane,
				(size_t)((zi + 1) * plane) * sizeof *j->pchunk);
	return nnp_writer_chunk(j->w, j->pchunk, zi + 1);
}

/* Background slices before Z (exclusive). */
static int prob_fill_to(struct job *j, int64_t Z)
{
	int rc;
	while (j->prob_stream && j->prob_next_z < Z) {
		prob_slice_begin(j, j->prob_next_z);
		if ((rc = prob_slice_end(j, j->prob_next_z)))
			return rc;
	}
	return NNP_OK;
}

static int prob_stream_begin(struct job *j)
{
	uint64_t slice;
	int rc;
	if (!j->prob_stream)
		return NNP_OK;
	j->prob.f.chunk_slices = 0;
	if ((rc = nnp_writer_begin(j->w, &j->prob.f)))
		return rc;
	j->pcs = j->prob.f.chunk_slices;
	slice = (uint64_t)(j->K * j->before[1] * j->before[2]) * sizeof(float);
	if (!(j->pchunk = malloc((size_t)((uint64_t)j->pcs * slice))))
		return nnp_err(NNP_ENOMEM, "case '%s': out of memory for a probabilities chunk", j->id);
	return NNP_OK;
}

static int emit_rows(const struct job *j, const struct zctx *zc);

/* Emit output slice oz (and the probabilities' bookkeeping around it). */
static int emit_slice(struct job *j, const struct zctx *zc)
{
	int64_t Z = zc->oz + j->bbox[0][0];
	int rc;
	if (j->prob_stream) {
		if ((rc = prob_fill_to(j, Z)))
			return rc;
		prob_slice_begin(j, Z);
	}
	if ((rc = emit_rows(j, zc)))
		return rc;
	return j->prob_stream ? prob_slice_end(j, Z) : NNP_OK;
}

/* Output slice oz: rows in parallel, each row all K channels. */
static int emit_rows(const struct job *j, const struct zctx *zc)
{
	int64_t K = j->K, nx = j->mid[2];
	int fail = 0;
	#pragma omp parallel reduction(|:fail)
	{
		float *buf = j->path == NNP_EXPORT_SEPZ ? NULL : malloc((size_t)(K * nx) * sizeof *buf);
		double *tmp = malloc((size_t)nx * sizeof *tmp), *u = malloc((size_t)(2 * j->in[2]) * sizeof *u);
		struct xcache xc = { malloc((size_t)(2 * K * nx) * sizeof(double)), malloc((size_t)(2 * K) * sizeof(int64_t)) };
		if (xc.key)
			for (int64_t k = 0; k < 2 * K; k++)
				xc.key[k] = -1;
		const float **rows = malloc((size_t)K * sizeof *rows);
		float *best = malloc((size_t)nx * sizeof *best);
		int32_t *lab = malloc((size_t)nx * sizeof *lab);
		if (!rows || !best || !lab || !tmp || !u || (j->path != NNP_EXPORT_SEPZ && !buf))
			fail = 1;
		#pragma omp for schedule(dynamic, 16)
		for (int64_t oy = 0; oy < j->mid[1]; oy++) {
			if (fail)
				continue;
			for (int64_t c = 0; c < K; c++) {
				if (j->path == NNP_EXPORT_SEPZ) {
					rows[c] = j->planes + (c * j->mid[1] + oy) * nx;
					continue;
				}
				if (j->path == NNP_EXPORT_LINEAR) {
					row_linear(j, zc, c, oy, tmp, u, xc.rows && xc.key ? &xc : NULL, buf + c * nx);
				} else {
					size_t es = nnp_dtype_size(j->res_dt);
					const char *p = (const char *)j->res +
							(size_t)((c * j->mid[0] + zc->oz) * j->mid[1] + oy) * (size_t)nx * es;
					nnp_to_f32(j->res_dt, p, buf + c * nx, (size_t)nx);
				}
				rows[c] = buf + c * nx;
			}
			decide_row(j, rows, zc->oz, oy, best, lab);
		}
		free(buf);
		free(tmp);
		free(u);
		free(rows);
		free(best);
		free(lab);
		free(xc.rows);
		free(xc.key);
	}
	return fail ? nnp_err(NNP_ENOMEM, "case '%s': out of memory for the row buffers", j->id) : NNP_OK;
}

/* ---- separate z: the K resampled planes of input slice s ---- */

static int sepz_planes(struct job *j, int64_t s)
{
	const float *src = j->slot[s & 1];
	int64_t a = j->in[1], b = j->in[2], a2 = j->mid[1], b2 = j->mid[2];
	int fail = 0, zstep = j->in[0] != j->mid[0];
	#pragma omp parallel reduction(|:fail)
	{
		double *P = malloc((size_t)(a * b) * sizeof *P), *Q = malloc((size_t)(a2 * b2) * sizeof *Q);
		if (!P || !Q)
			fail = 1;
		#pragma omp for schedule(dynamic, 1)
		for (int64_t c = 0; c < j->K; c++) {
			float *dst = j->planes + c * a2 * b2;
			if (fail)
				continue;
			for (int64_t i = 0; i < a * b; i++)
				P[i] = src[c * a * b + i];
			if (nnp_resample_plane(P, a, b, Q, a2, b2, j->order)) {
				fail = 1;
				continue;
			}
			for (int64_t i = 0; i < a2 * b2; i++)
				dst[i] = rnd(zstep ? 0.0 + Q[i] : Q[i], j->fp16);
		}
		free(P);
		free(Q);
	}
	j->planes_z = s;
	return fail ? nnp_err(NNP_ENOMEM, "case '%s': cannot resample a %lldx%lld plane to %lldx%lld", j->id,
			      (long long)a, (long long)b, (long long)a2, (long long)b2)
		    : NNP_OK;
}

/* ---- feeding input slices ---- */

/* Input slice s has arrived (j->slot[s & 1]): emit every output slice
 * that needs nothing later. */
static int feed(struct job *j, int64_t s)
{
	int rc;
	while (j->next_oz < j->mid[0]) {
		struct zctx zc = { .oz = j->next_oz };
		if (j->path == NNP_EXPORT_SEPZ) {
			int64_t src = j->in[0] == j->mid[0] ? zc.oz : nnp_resample_nearest(j->in[0], j->mid[0], zc.oz);
			if (src > s)
				break;
			if (j->slot_z[src & 1] != src)
				return nnp_err(NNP_EINTERNAL, "export: input slice %lld is gone", (long long)src);
			if (j->planes_z != src && (rc = sepz_planes(j, src)))
				return rc;
		} else {
			int64_t iz[2];
			nnp_resample_linear_taps(j->in[0], j->mid[0], zc.oz, iz, zc.wz);
			if (iz[0] > s || iz[1] > s)
				break;
			if (j->slot_z[iz[0] & 1] != iz[0] || j->slot_z[iz[1] & 1] != iz[1])
				return nnp_err(NNP_EINTERNAL, "export: input slices %lld/%lld are gone", (long long)iz[0],
					       (long long)iz[1]);
			zc.s[0] = j->slot[iz[0] & 1];
			zc.s[1] = j->slot[iz[1] & 1];
			zc.zfull = zc.wz[1] != 0.0;
		}
		if ((rc = emit_slice(j, &zc)))
			return rc;
		j->next_oz++;
	}
	return NNP_OK;
}

static int check_finite(const struct job *j, const float *p, int64_t n, int64_t c, int64_t z)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(p[i]))
			return nnp_err(NNP_EDATA, "case '%s': the logits contain %s (channel %lld, slice %lld): the "
				       "prediction diverged", j->id, isnan(p[i]) ? "NaN" : "infinity", (long long)c,
				       (long long)z);
	return NNP_OK;
}

/* Nonzero when a float16 / float32 / float64 element is inf or NaN. */
static int nonfinite_bits(enum nnp_dtype t, const void *p, int64_t n)
{
	int bad = 0;
	if (t == NNP_F16) {
		const uint16_t *h = p;
		for (int64_t i = 0; i < n; i++)
			bad |= (h[i] & 0x7c00) == 0x7c00;
	} else if (t == NNP_F32) {
		const uint32_t *u = p;
		for (int64_t i = 0; i < n; i++)
			bad |= (u[i] & 0x7f800000u) == 0x7f800000u;
	} else {
		const double *d = p;
		for (int64_t i = 0; i < n; i++)
			bad |= !(fabs(d[i]) <= 3.0e38);   /* also what float32 would turn into inf */
	}
	return bad;
}

/* Slice s of a chunk (layout c, zs, y, x) into its slot as float32. */
static int load_slice(struct job *j, const void *chunk, int64_t zs, int64_t s, int64_t z)
{
	int64_t plane = j->in[1] * j->in[2], badc = -1;
	size_t es = nnp_dtype_size(j->f->dtype);
	float *dst = j->slot[z & 1];
	#pragma omp parallel for schedule(static) reduction(max:badc)
	for (int64_t c = 0; c < j->K; c++) {
		const char *p = (const char *)chunk + (size_t)((c * zs + s) * plane) * es;
		float *d = dst + c * plane;
		if (nonfinite_bits(j->f->dtype, p, plane)) {
			badc = c;
			continue;
		}
#ifdef NNP_HAVE_F16C_PATH
		if (j->half_lut && have_f16c()) {
			half_row_f16c((const uint16_t *)(const void *)p, plane, d);
			continue;
		}
#endif
		if (j->half_lut) {
			const uint16_t *h = (const uint16_t *)(const void *)p;
			for (int64_t i = 0; i < plane; i++)
				d[i] = j->half_lut[h[i]];
		} else {
			nnp_to_f32(j->f->dtype, p, d, (size_t)plane);
		}
	}
	if (badc >= 0) {
		const char *p = (const char *)chunk + (size_t)((badc * zs + s) * plane) * es;
		double v = 0;
		for (int64_t i = 0; i < plane; i++) {
			nnp_to_f64(j->f->dtype, p + (size_t)i * es, &v, 1);
			if (!(fabs(v) <= 3.0e38))
				break;
		}
		return nnp_err(NNP_EDATA, "case '%s': the logits contain %s (channel %lld, slice %lld): the "
			       "prediction diverged", j->id, isnan(v) ? "NaN" : "infinity or an out-of-range value",
			       (long long)badc, (long long)z);
	}
	j->slot_z[z & 1] = z;
	return NNP_OK;
}

static int taps(int64_t n_in, int64_t n_out, int64_t **idx, double **w)
{
	*idx = malloc((size_t)(2 * n_out) * sizeof **idx);
	*w = malloc((size_t)(2 * n_out) * sizeof **w);
	if (!*idx || !*w)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (int64_t o = 0; o < n_out; o++)
		nnp_resample_linear_taps(n_in, n_out, o, *idx + 2 * o, *w + 2 * o);
	return NNP_OK;
}

static int taps_split(struct job *j)
{
	int64_t n = j->mid[2], idx[2];
	double w[2];
	j->ix0 = malloc((size_t)n * sizeof *j->ix0);
	j->ix1 = malloc((size_t)n * sizeof *j->ix1);
	j->wx0 = malloc((size_t)n * sizeof *j->wx0);
	j->wx1 = malloc((size_t)n * sizeof *j->wx1);
	if (!j->ix0 || !j->ix1 || !j->wx0 || !j->wx1)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (int64_t o = 0; o < n; o++) {
		nnp_resample_linear_taps(j->in[2], n, o, idx, w);
		j->ix0[o] = (int32_t)idx[0];
		j->ix1[o] = (int32_t)idx[1];
		j->wx0[o] = w[0];
		j->wx1[o] = w[1];
	}
	return NNP_OK;
}

static int run_stream(struct job *j, struct nnp_reader *r)
{
	uint64_t cap = nnp_reader_chunk_bytes(r);
	size_t plane = (size_t)(j->in[1] * j->in[2]) * (size_t)j->K;
	void *buf = NULL;
	int64_t z0, zs;
	int rc;
	j->slot_z[0] = j->slot_z[1] = -1;
	j->planes_z = -1;
	if (j->f->dtype == NNP_F16) {
		if (!(j->half_lut = malloc(65536 * sizeof *j->half_lut)))
			return nnp_err(NNP_ENOMEM, "out of memory");
		for (uint32_t h = 0; h < 65536; h++)
			j->half_lut[h] = nnp_half_to_float((uint16_t)h);
	}
	if (!(j->slot[0] = malloc(plane * sizeof(float))) || !(j->slot[1] = malloc(plane * sizeof(float))) ||
	    !(buf = malloc(cap ? cap : 1)))
		rc = nnp_err(NNP_ENOMEM, "case '%s': out of memory for the input slices", j->id);
	else if (j->path == NNP_EXPORT_SEPZ &&
		 !(j->planes = malloc((size_t)(j->K * j->mid[1] * j->mid[2]) * sizeof *j->planes)))
		rc = nnp_err(NNP_ENOMEM, "case '%s': out of memory for the resampled planes", j->id);
	else if (j->path == NNP_EXPORT_LINEAR)
		rc = taps(j->in[1], j->mid[1], &j->ty, &j->wy) || taps_split(j) ? NNP_ENOMEM : NNP_OK;
	else
		rc = NNP_OK;
	while (!rc && (rc = nnp_reader_chunk(r, buf, cap, &z0, &zs)) == 1) {
		rc = NNP_OK;
		for (int64_t s = 0; !rc && s < zs; s++)
			if (!(rc = load_slice(j, buf, zs, s, z0 + s)))
				rc = feed(j, z0 + s);
	}
	free(buf);
	if (rc < 0)
		return rc;
	if (j->next_oz != j->mid[0])
		return nnp_err(NNP_EDATA, "case '%s': the logits frame ended after %lld of %lld slices", j->id,
			       (long long)(j->slot_z[0] > j->slot_z[1] ? j->slot_z[0] : j->slot_z[1]) + 1,
			       (long long)j->in[0]);
	return NNP_OK;
}

static int run_whole(struct job *j, struct nnp_reader *r)
{
	struct nnp_vol v;
	struct nnp_resample_opts ro;
	uint64_t nin = (uint64_t)prod3(j->in), nmid = (uint64_t)prod3(j->mid);
	size_t ies = nnp_dtype_size(j->f->dtype), oes;
	int rc;
	nnp_vol_init(&v);
	nnp_resample_opts_init(&ro);
	ro.order = j->order;
	ro.order_z = j->order_z;
	ro.separate_z = j->sepz;
	ro.axis = j->axis;
	j->res_dt = j->fp16 ? NNP_F16 : NNP_F32;
	oes = nnp_dtype_size(j->res_dt);
	if ((rc = nnp_frame_copy(&v.f, j->f)) || (rc = nnp_reader_payload(r, &v)))
		goto out;
	for (int64_t c = 0; c < j->K; c++)
		for (int64_t z = 0; z < j->in[0]; z++) {
			float *tmp = malloc((size_t)(j->in[1] * j->in[2]) * sizeof *tmp);
			if (!tmp) {
				rc = nnp_err(NNP_ENOMEM, "out of memory");
				goto out;
			}
			nnp_to_f32(j->f->dtype, (const char *)v.data + (size_t)(c * (int64_t)nin + z * j->in[1] * j->in[2]) * ies,
				   tmp, (size_t)(j->in[1] * j->in[2]));
			rc = check_finite(j, tmp, j->in[1] * j->in[2], c, z);
			free(tmp);
			if (rc)
				goto out;
		}
	if (!(j->res = malloc((size_t)((uint64_t)j->K * nmid * oes)))) {
		rc = nnp_err(NNP_ENOMEM, "case '%s': out of memory for the resampled logits", j->id);
		goto out;
	}
	for (int64_t c = 0; c < j->K && !rc; c++)
		rc = nnp_resample_channel(j->f->dtype, (const char *)v.data + (size_t)c * nin * ies, 0, 0, j->in,
					  j->res_dt, (char *)j->res + (size_t)c * nmid * oes, j->mid, &ro);
	nnp_vol_release(&v);
	for (int64_t oz = 0; oz < j->mid[0] && !rc; oz++) {
		struct zctx zc = { .oz = oz };
		rc = emit_slice(j, &zc);
	}
out:
	nnp_vol_release(&v);
	return rc;
}

static void job_release(struct job *j)
{
	nnp_vol_release(&j->seg);
	nnp_vol_release(&j->prob);
	free(j->ty);
	free(j->wy);
	free(j->ix0);
	free(j->ix1);
	free(j->wx0);
	free(j->wx1);
	free(j->half_lut);
	free(j->pchunk);
	free(j->slot[0]);
	free(j->slot[1]);
	free(j->planes);
	free(j->res);
}

static int transpose_back(struct job *j, struct nnp_vol *v)
{
	struct nnp_vol t;
	int inv[3], rc;
	if (!v->data || nnp_transpose_is_identity(j->t))
		return NNP_OK;
	nnp_transpose_inverse(j->t, inv);
	if ((rc = nnp_transpose_vol(v, inv, &t)))
		return rc;
	nnp_vol_release(v);
	*v = t;
	return NNP_OK;
}

static int setup(struct job *j)
{
	uint64_t need;
	int rc;
	if ((rc = check_input(j)) || (rc = read_props(j)))
		return rc;
	choose_path(j);
	need = memory_estimate(j);
	if (j->o->max_memory && need > j->o->max_memory)
		return nnp_err(NNP_ENOMEM, "case '%s': exporting needs about %llu bytes (%.1f GiB) but --max-memory "
			       "is %llu bytes", j->id, (unsigned long long)need, (double)need / (1 << 30),
			       (unsigned long long)j->o->max_memory);
	return make_outputs(j);
}

int nnp_export_frame(struct nnp_reader *r, const struct nnp_frame *f, struct nnp_export_opts *o,
		     struct nnp_writer *w)
{
	struct job j;
	int rc;
	memset(&j, 0, sizeof j);
	nnp_vol_init(&j.seg);
	nnp_vol_init(&j.prob);
	j.f = f;
	j.o = o;
	j.id = case_of(f);
	j.fp16 = o->fp16_compat;
	j.w = w;
	if (!(rc = setup(&j)) && !(rc = prob_stream_begin(&j))) {
		o->path_used = j.path;
		rc = j.path == NNP_EXPORT_WHOLE ? run_whole(&j, r) : run_stream(&j, r);
	}
	if (!rc)
		rc = prob_fill_to(&j, j.before[0]);
	if (!rc && !(rc = transpose_back(&j, &j.seg)) && !(rc = transpose_back(&j, &j.prob))) {
		if (o->save_probabilities && !j.prob_stream)
			rc = nnp_writer_volume(w, &j.prob);
		if (!rc)
			rc = nnp_writer_volume(w, &j.seg);
	}
	job_release(&j);
	return rc;
}
