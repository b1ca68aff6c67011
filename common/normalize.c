/* normalize.c — nnU-Net's normalisation schemes with numpy's float32
 * arithmetic (see normalize.h and docs/normalization.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "normalize.h"
#include "plans.h"
#include "err.h"
#include "fingerprint.h"

#define NP_BUFSIZE 8192          /* numpy's reduction buffer: np.sum adds the
                                    pairwise sums of 8192-value blocks */
#define EPS 1e-8                 /* nnU-Net's max(std, 1e-8) */
#define CONV_BLK 4096

static const char *const scheme_names[] = {
	[NNP_NORM_UNKNOWN] = "?",
	[NNP_NORM_CT] = "CTNormalization",
	[NNP_NORM_ZSCORE] = "ZScoreNormalization",
	[NNP_NORM_RESCALE01] = "RescaleTo01Normalization",
	[NNP_NORM_RGB01] = "RGBTo01Normalization",
	[NNP_NORM_NONE] = "NoNormalization",
};

int nnp_norm_scheme_parse(const char *name, enum nnp_norm_scheme *out)
{
	for (int s = NNP_NORM_CT; s <= NNP_NORM_NONE; s++)
		if (name && !strcmp(name, scheme_names[s])) {
			*out = (enum nnp_norm_scheme)s;
			return NNP_OK;
		}
	*out = NNP_NORM_UNKNOWN;
	return nnp_err(NNP_EDATA, "unknown normalization scheme '%s' (nnU-Net knows CTNormalization, "
		       "ZScoreNormalization, RescaleTo01Normalization, RGBTo01Normalization, NoNormalization)",
		       name ? name : "(null)");
}

const char *nnp_norm_scheme_name(enum nnp_norm_scheme s)
{
	return s >= NNP_NORM_CT && s <= NNP_NORM_NONE ? scheme_names[s] : "?";
}

/* str.casefold() == lower, restricted to what can fold into the ASCII keys:
 * ASCII letters and U+017F LATIN SMALL LETTER LONG S (folds to 's').  The
 * other characters whose casefold is ASCII (ß, ẞ, K, the ff/fi/fl/st
 * ligatures) fold to strings that none of the keys contain. */
static int casefold_eq(const char *s, const char *lower)
{
	const unsigned char *u = (const unsigned char *)s;
	for (; *lower; lower++, u++) {
		unsigned c = *u;
		if (c == 0xc5 && u[1] == 0xbf) {
			c = 's';
			u++;
		} else if (c >= 'A' && c <= 'Z') {
			c += 'a' - 'A';
		}
		if (c != (unsigned char)*lower)
			return 0;
	}
	return *u == 0;
}

enum nnp_norm_scheme nnp_norm_scheme_for_channel(const char *channel_name)
{
	static const struct {
		const char *key;
		enum nnp_norm_scheme s;
	} map[] = {
		{ "ct", NNP_NORM_CT },
		{ "nonorm", NNP_NORM_NONE },
		{ "zscore", NNP_NORM_ZSCORE },
		{ "rescale_to_0_1", NNP_NORM_RESCALE01 },
		{ "rgb_to_0_1", NNP_NORM_RGB01 },
	};
	for (size_t i = 0; channel_name && i < sizeof map / sizeof map[0]; i++)
		if (casefold_eq(channel_name, map[i].key))
			return map[i].s;
	return NNP_NORM_ZSCORE;
}

int nnp_norm_use_mask_for_norm(enum nnp_norm_scheme s, double median_relative_size_after_cropping)
{
	return s == NNP_NORM_ZSCORE && median_relative_size_after_cropping < 3 / 4.0;
}

/* ------------------------------------------------------------------ */
/* plans                                                               */

int nnp_norm_props_from_json(const json_t *fg_props, int64_t c, struct nnp_norm_props *out)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "mean", offsetof(struct nnp_norm_props, mean) },
		{ "std", offsetof(struct nnp_norm_props, std) },
		{ "median", offsetof(struct nnp_norm_props, median) },
		{ "min", offsetof(struct nnp_norm_props, min) },
		{ "max", offsetof(struct nnp_norm_props, max) },
		{ "percentile_00_5", offsetof(struct nnp_norm_props, p00_5) },
		{ "percentile_99_5", offsetof(struct nnp_norm_props, p99_5) },
	};
	char name[32];
	const json_t *o;

	out->present = 0;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		*(double *)((char *)out + keys[i].off) = NAN;
	snprintf(name, sizeof name, "%lld", (long long)c);
	if (!fg_props || !(o = json_object_get(fg_props, name)))
		return NNP_OK;
	if (!json_is_object(o))
		return nnp_err(NNP_EDATA, "foreground_intensity_properties_per_channel.%s: must be an object", name);
	out->present = 1;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const json_t *v = json_object_get(o, keys[i].key);
		if (!v)
			continue;
		if (!json_is_number(v))
			return nnp_err(NNP_EDATA, "foreground_intensity_properties_per_channel.%s.%s: must be a number",
				       name, keys[i].key);
		*(double *)((char *)out + keys[i].off) = json_number_value(v);
	}
	return NNP_OK;
}

static int check_channel(const struct nnp_norm_channel *ch)
{
	const struct nnp_norm_props *p = &ch->props;
	if (ch->scheme != NNP_NORM_CT)
		return NNP_OK;
	if (!p->present)
		return nnp_err(NNP_EDATA, "CTNormalization needs the channel's "
			       "foreground_intensity_properties_per_channel entry");
	if (!isfinite(p->mean) || !isfinite(p->std) || !isfinite(p->p00_5) || !isfinite(p->p99_5))
		return nnp_err(NNP_EDATA, "CTNormalization needs finite mean, std, percentile_00_5 and "
			       "percentile_99_5 in foreground_intensity_properties_per_channel");
	return NNP_OK;
}

static int plan_alloc(struct nnp_norm_plan *out, size_t n)
{
	out->nch = 0;
	out->ch = NULL;
	if (n > NNP_CHANNELS_MAX)
		return nnp_err(NNP_EDATA, "%zu channels: more than the %d a frame can hold", n, NNP_CHANNELS_MAX);
	if (n && !(out->ch = calloc(n, sizeof *out->ch)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	out->nch = (int64_t)n;
	return NNP_OK;
}

int nnp_norm_plan_from_config(const json_t *config, const json_t *fg_props, struct nnp_norm_plan *out)
{
	const json_t *sch = json_object_get(config, "normalization_schemes");
	const json_t *um = json_object_get(config, "use_mask_for_norm");
	int rc;

	out->nch = 0;
	out->ch = NULL;
	if (!json_is_array(sch))
		return nnp_err(NNP_EDATA, "plans configuration: normalization_schemes: missing or not a list");
	if (!json_is_array(um))
		return nnp_err(NNP_EDATA, "plans configuration: use_mask_for_norm: missing or not a list");
	if (json_array_size(um) != json_array_size(sch))
		return nnp_err(NNP_EDATA, "plans configuration: %zu normalization_schemes but %zu use_mask_for_norm "
			       "entries", json_array_size(sch), json_array_size(um));
	if ((rc = plan_alloc(out, json_array_size(sch))))
		return rc;
	for (int64_t c = 0; c < out->nch; c++) {
		struct nnp_norm_channel *ch = &out->ch[c];
		const json_t *s = json_array_get(sch, (size_t)c), *m = json_array_get(um, (size_t)c);
		if (!json_is_string(s)) {
			rc = nnp_err(NNP_EDATA, "plans configuration: normalization_schemes[%lld]: must be a string",
				     (long long)c);
			goto fail;
		}
		if ((rc = nnp_norm_scheme_parse(json_string_value(s), &ch->scheme))) {
			nnp_err_ctx(rc, "plans configuration: normalization_schemes[%lld]", (long long)c);
			goto fail;
		}
		if (!json_is_boolean(m) && !json_is_null(m)) {
			rc = nnp_err(NNP_EDATA, "plans configuration: use_mask_for_norm[%lld]: must be true, false "
				     "or null", (long long)c);
			goto fail;
		}
		ch->use_mask = json_is_true(m);
		if ((rc = nnp_norm_props_from_json(fg_props, c, &ch->props)))
			goto fail;
		if ((rc = check_channel(ch))) {
			nnp_err_ctx(rc, "channel %lld", (long long)c);
			goto fail;
		}
	}
	return NNP_OK;
fail:
	nnp_norm_plan_release(out);
	return rc;
}

int nnp_norm_plan_from_plans(const json_t *plans, const char *configuration, struct nnp_norm_plan *out)
{
	const json_t *sch, *um;
	json_t *tmp;
	int rc;

	out->nch = 0;
	out->ch = NULL;
	if ((rc = nnp_plans_config_get(plans, configuration, "normalization_schemes", &sch)) ||
	    (rc = nnp_plans_config_get(plans, configuration, "use_mask_for_norm", &um)))
		return rc;
	if (!(tmp = json_object()))
		return nnp_err(NNP_ENOMEM, "out of memory");
	if ((sch && json_object_set(tmp, "normalization_schemes", (json_t *)sch)) ||
	    (um && json_object_set(tmp, "use_mask_for_norm", (json_t *)um))) {
		json_decref(tmp);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	rc = nnp_norm_plan_from_config(tmp, json_object_get(plans, "foreground_intensity_properties_per_channel"),
				       out);
	json_decref(tmp);
	if (rc)
		nnp_err_ctx(rc, "configuration '%s'", configuration);
	return rc;
}

int nnp_norm_plan_from_dataset(const json_t *dataset_json, double median_relative_size_after_cropping,
			       const json_t *fg_props, struct nnp_norm_plan *out)
{
	const json_t *names = json_object_get(dataset_json, "channel_names"), *v;
	const char *k;
	int64_t c = 0;
	int rc;

	out->nch = 0;
	out->ch = NULL;
	if (!names)
		names = json_object_get(dataset_json, "modality");
	if (!json_is_object(names))
		return nnp_err(NNP_EDATA, "dataset.json: channel_names: missing or not an object");
	if ((rc = plan_alloc(out, json_object_size(names))))
		return rc;
	json_object_foreach((json_t *)names, k, v) {
		struct nnp_norm_channel *ch = &out->ch[c];
		if (!json_is_string(v)) {
			rc = nnp_err(NNP_EDATA, "dataset.json: channel_names.%s: must be a string", k);
			goto fail;
		}
		ch->scheme = nnp_norm_scheme_for_channel(json_string_value(v));
		ch->use_mask = nnp_norm_use_mask_for_norm(ch->scheme, median_relative_size_after_cropping);
		if ((rc = nnp_norm_props_from_json(fg_props, c, &ch->props)))
			goto fail;
		c++;
	}
	return NNP_OK;
fail:
	nnp_norm_plan_release(out);
	return rc;
}

void nnp_norm_plan_release(struct nnp_norm_plan *p)
{
	if (!p)
		return;
	free(p->ch);
	p->ch = NULL;
	p->nch = 0;
}

/* ------------------------------------------------------------------ */
/* the schemes                                                         */

int nnp_norm_mask_from_seg(const struct nnp_vol *seg, uint8_t *mask)
{
	const struct nnp_frame *f = &seg->f;
	uint64_t n = nnp_frame_nvox(f);
	size_t es = nnp_dtype_size(f->dtype);
	if (f->shape[0] != 1 || !es)
		return nnp_err(NNP_EDATA, "case '%s': the segmentation must have one channel of a known dtype",
			       f->case_id ? f->case_id : "(no case id)");
	#pragma omp parallel for schedule(static)
	for (uint64_t off = 0; off < n; off += CONV_BLK) {
		double tmp[CONV_BLK];
		size_t m = n - off < CONV_BLK ? (size_t)(n - off) : CONV_BLK;
		nnp_to_f64(f->dtype, (const char *)seg->data + off * es, tmp, m);
		for (size_t i = 0; i < m; i++)
			mask[off + i] = tmp[i] >= 0;
	}
	return NNP_OK;
}

static uint64_t first_nan(const float *x, uint64_t n, int inf_too, const uint8_t *mask)
{
	for (uint64_t i = 0; i < n; i++)
		if (isnan(x[i]) || (inf_too && isinf(x[i]) && (!mask || mask[i])))
			return i;
	return UINT64_MAX;
}

/* np.sum of the float32 values x[i] (i in the mask, or all), or of
 * (x[i] - mu)^2 with sq: numpy's 8192-value blocks, each summed pairwise,
 * accumulated in float32. */
static float np_sum(const float *x, uint64_t n, const uint8_t *mask, int sq, float mu, uint64_t *count)
{
	float buf[NP_BUFSIZE], s = 0.0f;
	uint64_t fill = 0, cnt = 0;
	if (!mask && !sq) {
		*count = n;
		return nnp_np_sum_f32(x, n);
	}
	if (!mask) {
		uint64_t nb = (n + NP_BUFSIZE - 1) / NP_BUFSIZE;
		for (uint64_t b = 0; b < nb; b++) {
			uint64_t lo = b * NP_BUFSIZE, m = n - lo < NP_BUFSIZE ? n - lo : NP_BUFSIZE;
			for (uint64_t i = 0; i < m; i++) {
				float d = x[lo + i] - mu;
				buf[i] = d * d;
			}
			s += nnp_np_pairwise_f32(buf, m);
		}
		*count = n;
		return s;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (!mask[i])
			continue;
		if (sq) {
			float d = x[i] - mu;
			buf[fill++] = d * d;
		} else {
			buf[fill++] = x[i];
		}
		cnt++;
		if (fill == NP_BUFSIZE) {
			s += nnp_np_pairwise_f32(buf, fill);
			fill = 0;
		}
	}
	if (fill)
		s += nnp_np_pairwise_f32(buf, fill);
	*count = cnt;
	return s;
}

/* Python's max(std, 1e-8), then numpy's cast of the divisor to float32. */
static float divisor(double sd)
{
	return (float)(EPS > sd ? EPS : sd);
}

static int zscore(const struct nnp_norm_channel *ch, float *x, uint64_t n, const uint8_t *mask,
		  struct nnp_norm_result *res)
{
	uint64_t cnt, i;
	float s, mu, ss, var, sd, d;
	const uint8_t *m = ch->use_mask ? mask : NULL;

	if ((i = first_nan(x, n, 1, m)) != UINT64_MAX)
		return nnp_err(NNP_EDATA, "%s at voxel %llu: refusing to normalise (nnU-Net would spread NaN over "
			       "the channel)", isnan(x[i]) ? "NaN" : "infinite value", (unsigned long long)i);
	s = np_sum(x, n, m, 0, 0.0f, &cnt);
	if (cnt == 0) {           /* empty mask: numpy's mean is NaN, nothing is assigned */
		res->a = res->b = NAN;
		res->n = 0;
		return NNP_OK;
	}
	mu = (float)((double)s / (double)cnt);
	ss = np_sum(x, n, m, 1, mu, &cnt);
	var = (float)((double)ss / (double)cnt);
	sd = sqrtf(var);
	if (!isfinite(mu) || !isfinite(sd))
		return nnp_err(NNP_EDATA, "z-score statistics overflow float32 (mean %g, std %g): the intensities "
			       "are too large", (double)mu, (double)sd);
	d = divisor(sd);
	if (m) {
		#pragma omp parallel for schedule(static)
		for (uint64_t j = 0; j < n; j++)
			if (m[j])
				x[j] = (x[j] - mu) / d;
	} else {
		#pragma omp parallel for schedule(static)
		for (uint64_t j = 0; j < n; j++)
			x[j] = (x[j] - mu) / d;
	}
	res->a = mu;
	res->b = sd;
	res->n = cnt;
	return NNP_OK;
}

static int ct(const struct nnp_norm_channel *ch, float *x, uint64_t n, struct nnp_norm_result *res)
{
	const struct nnp_norm_props *p = &ch->props;
	float lo = (float)p->p00_5, hi = (float)p->p99_5, mu = (float)p->mean, d;
	uint64_t i;
	int rc = check_channel(ch);
	if (rc)
		return rc;
	if ((i = first_nan(x, n, 0, NULL)) != UINT64_MAX)
		return nnp_err(NNP_EDATA, "NaN at voxel %llu: refusing to normalise", (unsigned long long)i);
	d = divisor(p->std);
	/* numpy's clip for floats: min(max(x, lo), hi) with (a > b ? a : b),
	 * (a < b ? a : b); then two separately rounded float32 operations. */
	#pragma omp parallel for schedule(static)
	for (uint64_t j = 0; j < n; j++) {
		float t = x[j];
		t = t > lo ? t : lo;
		t = t < hi ? t : hi;
		t = t - mu;
		x[j] = t / d;
	}
	res->a = mu;
	res->b = d;
	res->n = n;
	return NNP_OK;
}

static void minmax(const float *x, uint64_t n, float *mn, float *mx)
{
	float a = INFINITY, b = -INFINITY;
	for (uint64_t i = 0; i < n; i++) {
		a = x[i] < a ? x[i] : a;
		b = x[i] > b ? x[i] : b;
	}
	*mn = a;
	*mx = b;
}

static int rescale(float *x, uint64_t n, struct nnp_norm_result *res)
{
	float mn, mx, d;
	uint64_t i;
	if ((i = first_nan(x, n, 1, NULL)) != UINT64_MAX)
		return nnp_err(NNP_EDATA, "%s at voxel %llu: refusing to normalise (nnU-Net would produce NaN)",
			       isnan(x[i]) ? "NaN" : "infinite value", (unsigned long long)i);
	if (!n) {
		res->a = res->b = NAN;
		res->n = 0;
		return NNP_OK;
	}
	minmax(x, n, &mn, &mx);
	#pragma omp parallel for schedule(static)
	for (uint64_t j = 0; j < n; j++)
		x[j] = x[j] - mn;
	minmax(x, n, &d, &mx);
	/* np.clip(max, a_min=1e-8) is a float64 scalar; the division casts it
	 * back to float32 */
	d = (float)((double)mx < EPS ? EPS : (double)mx);
	#pragma omp parallel for schedule(static)
	for (uint64_t j = 0; j < n; j++)
		x[j] = x[j] / d;
	res->a = mn;
	res->b = d;
	res->n = n;
	return NNP_OK;
}

static int rgb(float *x, uint64_t n, struct nnp_norm_result *res)
{
	float mn, mx;
	uint64_t i;
	if ((i = first_nan(x, n, 0, NULL)) != UINT64_MAX)
		return nnp_err(NNP_EDATA, "NaN at voxel %llu: refusing to normalise", (unsigned long long)i);
	if (n) {
		minmax(x, n, &mn, &mx);
		if (mn < 0)
			return nnp_err(NNP_EDATA, "RGBTo01Normalization: a value below 0 (%g): RGB images are uint8, "
				       "these do not seem to be RGB images", (double)mn);
		if (mx > 255)
			return nnp_err(NNP_EDATA, "RGBTo01Normalization: a value above 255 (%g): RGB images are uint8, "
				       "these do not seem to be RGB images", (double)mx);
	}
	#pragma omp parallel for schedule(static)
	for (uint64_t j = 0; j < n; j++)
		x[j] = x[j] / 255.0f;
	res->a = 0;
	res->b = 255;
	res->n = n;
	return NNP_OK;
}

int nnp_norm_channel_f32(const struct nnp_norm_channel *ch, float *x, uint64_t n, const uint8_t *mask,
			 struct nnp_norm_result *res)
{
	struct nnp_norm_result dummy;
	uint64_t i;
	if (!res)
		res = &dummy;
	res->a = res->b = NAN;
	res->n = 0;
	switch (ch->scheme) {
	case NNP_NORM_CT:
		return ct(ch, x, n, res);
	case NNP_NORM_ZSCORE:
		return zscore(ch, x, n, mask, res);
	case NNP_NORM_RESCALE01:
		return rescale(x, n, res);
	case NNP_NORM_RGB01:
		return rgb(x, n, res);
	case NNP_NORM_NONE:
		if ((i = first_nan(x, n, 0, NULL)) != UINT64_MAX)
			return nnp_err(NNP_EDATA, "NaN at voxel %llu: refusing to pass it on", (unsigned long long)i);
		return NNP_OK;
	default:
		return nnp_err(NNP_EINTERNAL, "normalization scheme %d is not known", (int)ch->scheme);
	}
}

/* ------------------------------------------------------------------ */
/* volumes                                                             */

/* Channel c of src (dtype st, scale sc or NULL) -> float32 dst; dst may
 * alias src when st is float32. */
static void to_float(enum nnp_dtype st, const double *sc, int64_t c, const void *src, float *dst, uint64_t n)
{
	size_t es = nnp_dtype_size(st);
	double slope = 1, inter = 0;
	if (sc && sc[2 * c] != 0) {
		slope = sc[2 * c];
		inter = sc[2 * c + 1];
	}
	if (slope == 1 && inter == 0) {       /* nibabel skips scaling by (1, 0) */
		if (st != NNP_F32 && (nnp_dtype_is_float(st) || es <= 4)) {
			/* exact in double, so one rounding to float32 either way */
			#pragma omp parallel for schedule(static)
			for (uint64_t off = 0; off < n; off += CONV_BLK) {
				size_t m = n - off < CONV_BLK ? (size_t)(n - off) : CONV_BLK;
				nnp_to_f32(st, (const char *)src + off * es, dst + off, m);
			}
		} else if (st != NNP_F32) {
			#pragma omp parallel for schedule(static)
			for (uint64_t off = 0; off < n; off += CONV_BLK) {
				double tmp[CONV_BLK];
				size_t m = n - off < CONV_BLK ? (size_t)(n - off) : CONV_BLK;
				nnp_to_f64(st, (const char *)src + off * es, tmp, m);
				for (size_t i = 0; i < m; i++)
					dst[off + i] = (float)tmp[i];
			}
		} else if ((const void *)dst != src) {
			memcpy(dst, src, (size_t)n * sizeof(float));
		}
		return;
	}
	#pragma omp parallel for schedule(static)
	for (uint64_t off = 0; off < n; off += CONV_BLK) {
		double tmp[CONV_BLK];
		size_t m = n - off < CONV_BLK ? (size_t)(n - off) : CONV_BLK;
		nnp_to_f64(st, (const char *)src + off * es, tmp, m);
		for (size_t i = 0; i < m; i++) {
			double t = tmp[i] * slope;      /* two statements: never fused into an fma */
			dst[off + i] = (float)(t + inter);
		}
	}
}

static const char *case_or(const struct nnp_frame *f)
{
	return f->case_id ? f->case_id : "(no case id)";
}

static int check_inputs(const struct nnp_norm_plan *plan, const struct nnp_frame *f, const struct nnp_vol *seg)
{
	if (!nnp_dtype_size(f->dtype))
		return nnp_err(NNP_EDATA, "case '%s': unknown dtype", case_or(f));
	if (plan->nch != f->shape[0])
		return nnp_err(NNP_EDATA, "case '%s': the plans have %lld normalization schemes but the image has "
			       "%lld channels", case_or(f), (long long)plan->nch, (long long)f->shape[0]);
	if (seg && (seg->f.shape[0] != 1 || seg->f.shape[1] != f->shape[1] || seg->f.shape[2] != f->shape[2] ||
		    seg->f.shape[3] != f->shape[3]))
		return nnp_err(NNP_EDATA, "case '%s': segmentation shape (%lld, %lld, %lld, %lld) does not match the "
			       "image (%lld, %lld, %lld)", case_or(f), (long long)seg->f.shape[0],
			       (long long)seg->f.shape[1], (long long)seg->f.shape[2], (long long)seg->f.shape[3],
			       (long long)f->shape[1], (long long)f->shape[2], (long long)f->shape[3]);
	return NNP_OK;
}

/* Normalise every channel of the float32 buffer data (frame f gives the
 * geometry and the case for messages). */
static int run_channels(const struct nnp_norm_plan *plan, const struct nnp_frame *f, float *data,
			const struct nnp_vol *seg, struct nnp_norm_result *res)
{
	uint64_t nvox = nnp_frame_nvox(f);
	uint8_t *mask = NULL;
	int need = 0, rc = NNP_OK;

	for (int64_t c = 0; c < plan->nch; c++)
		need |= plan->ch[c].scheme == NNP_NORM_ZSCORE && plan->ch[c].use_mask;
	if (seg && need) {
		if (!(mask = malloc(nvox ? (size_t)nvox : 1)))
			return nnp_err(NNP_ENOMEM, "case '%s': out of memory for the normalisation mask", case_or(f));
		if ((rc = nnp_norm_mask_from_seg(seg, mask)))
			goto done;
	}
	for (int64_t c = 0; c < plan->nch; c++) {
		float *x = data + (uint64_t)c * nvox;
		uint64_t i = first_nan(x, nvox, 0, NULL);
		if (i != UINT64_MAX) {
			int64_t X = f->shape[3], Y = f->shape[2];
			rc = nnp_err(NNP_EDATA, "case '%s' channel %lld: NaN at voxel (z %lld, y %lld, x %lld): "
				     "refusing to normalise (nnU-Net would propagate it)", case_or(f), (long long)c,
				     (long long)(i / (uint64_t)(X * Y)), (long long)(i / (uint64_t)X % (uint64_t)Y),
				     (long long)(i % (uint64_t)X));
			goto done;
		}
		if ((rc = nnp_norm_channel_f32(&plan->ch[c], x, nvox, mask, res ? &res[c] : NULL))) {
			nnp_err_ctx(rc, "case '%s' channel %lld (%s)", case_or(f), (long long)c,
				    nnp_norm_scheme_name(plan->ch[c].scheme));
			goto done;
		}
	}
done:
	free(mask);
	return rc;
}

static void as_float_frame(struct nnp_frame *f)
{
	f->dtype = NNP_F32;
	free(f->scale);
	f->scale = NULL;
	if (f->props)
		json_object_del(f->props, "channel_dtypes");
}

int nnp_normalize(const struct nnp_norm_plan *plan, const struct nnp_vol *img, const struct nnp_vol *seg,
		  struct nnp_vol *out, struct nnp_norm_result *res)
{
	const struct nnp_frame *f = &img->f;
	uint64_t nvox = nnp_frame_nvox(f);
	size_t es = nnp_dtype_size(f->dtype);
	int rc;

	nnp_vol_init(out);
	if ((rc = check_inputs(plan, f, seg)) || (rc = nnp_frame_copy(&out->f, f)))
		return rc;
	as_float_frame(&out->f);
	if ((rc = nnp_vol_alloc(out)))
		goto fail;
	for (int64_t c = 0; c < f->shape[0]; c++)
		to_float(f->dtype, f->scale, c, (const char *)img->data + (uint64_t)c * nvox * es,
			 (float *)out->data + (uint64_t)c * nvox, nvox);
	if ((rc = run_channels(plan, &out->f, out->data, seg, res)))
		goto fail;
	return NNP_OK;
fail:
	nnp_vol_release(out);
	return rc;
}

int nnp_normalize_inplace(const struct nnp_norm_plan *plan, struct nnp_vol *v, const struct nnp_vol *seg,
			  struct nnp_norm_result *res)
{
	struct nnp_frame *f = &v->f;
	uint64_t nvox = nnp_frame_nvox(f);
	int rc;

	if ((rc = check_inputs(plan, f, seg)))
		return rc;
	if (f->dtype == NNP_F32) {
		for (int64_t c = 0; c < f->shape[0]; c++) {
			float *x = (float *)v->data + (uint64_t)c * nvox;
			to_float(NNP_F32, f->scale, c, x, x, nvox);
		}
	} else {
		size_t es = nnp_dtype_size(f->dtype);
		uint64_t nb = nnp_frame_nbytes(f) / es * sizeof(float);
		float *d;
		if (nb > SIZE_MAX || !(d = nnp_aligned_alloc((size_t)nb)))
			return nnp_err(NNP_ENOMEM, "case '%s': cannot allocate %.1f MiB for the float32 volume",
				       case_or(f), nb / 1048576.0);
		for (int64_t c = 0; c < f->shape[0]; c++)
			to_float(f->dtype, f->scale, c, (const char *)v->data + (uint64_t)c * nvox * es,
				 d + (uint64_t)c * nvox, nvox);
		free(v->data);
		v->data = d;
	}
	as_float_frame(f);
	return run_channels(plan, f, v->data, seg, res);
}
