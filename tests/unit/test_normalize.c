/* test_normalize.c — nnU-Net's normalisation schemes: bit-identical to
 * nnU-Net's own outputs (tests/fixtures/ops/normalization, made by the
 * schemes' run()), to numpy on volumes larger than numpy's 8192-value
 * reduction buffer (tests/fixtures/ops/normalization_numpy.json, made by
 * tests/tools/normclass_reference.py), plus the rules and edge cases. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "err.h"
#include "nifti.h"
#include "normalize.h"

#define FX "tests/fixtures/ops/normalization/"
#define NUMPY "tests/fixtures/ops/normalization_numpy.json"

static json_t *load_json(const char *path)
{
	json_error_t e;
	json_t *j = json_load_file(path, 0, &e);
	if (!j)
		fail_msg("%s:%d: %s", path, e.line, e.text);
	return j;
}

static uint32_t fbits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

/* float32 values as a monotonic integer line, for ulp distances */
static int64_t ordered(float f)
{
	int32_t i;
	memcpy(&i, &f, sizeof i);
	return i < 0 ? -(int64_t)(i & 0x7fffffff) : (int64_t)i;
}

/* Number of values that differ and the largest ulp distance. */
static uint64_t ulp_diff(const float *a, const float *b, uint64_t n, int64_t *maxulp)
{
	uint64_t nd = 0;
	*maxulp = 0;
	for (uint64_t i = 0; i < n; i++) {
		int64_t d = ordered(a[i]) - ordered(b[i]);
		if (d < 0)
			d = -d;
		if (fbits(a[i]) != fbits(b[i]))
			nd++;
		if (d > *maxulp)
			*maxulp = d;
	}
	return nd;
}

static uint64_t fnv1a(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t hexval(const char *s)
{
	return strtoull(s, NULL, 16);
}

/* tests/tools/normclass_reference.py gen() */
static uint64_t gen(uint64_t i, uint64_t seed)
{
	uint64_t h = ((i + seed) * 2654435761ull) & 0xffffffffull;
	h ^= h >> 13;
	h = (h * 0x5bd1e995ull) & 0xffffffffull;
	h ^= h >> 15;
	return h;
}

static void plan_one(struct nnp_norm_plan *p, const char *scheme, int use_mask, const json_t *props)
{
	json_t *cfg = json_pack("{s:[s],s:[b]}", "normalization_schemes", scheme, "use_mask_for_norm", use_mask);
	json_t *fg = json_object();
	if (props && json_is_object(props))
		json_object_set(fg, "0", (json_t *)props);
	assert_int_equal(nnp_norm_plan_from_config(cfg, fg, p), 0);
	json_decref(cfg);
	json_decref(fg);
}

static void vol_f32(struct nnp_vol *v, const char *case_id, int64_t c, int64_t z, int64_t y, int64_t x)
{
	nnp_vol_init(v);
	v->f.dtype = NNP_F32;
	v->f.shape[0] = c;
	v->f.shape[1] = z;
	v->f.shape[2] = y;
	v->f.shape[3] = x;
	nnp_frame_default_affine(&v->f);
	if (case_id)
		assert_int_equal(nnp_frame_set_case(&v->f, case_id), 0);
	assert_int_equal(nnp_vol_alloc(v), 0);
}

/* ---- nnU-Net's own outputs ---- */

static void run_fixture_entry(const json_t *e)
{
	const char *scheme = json_string_value(json_object_get(e, "class"));
	const char *in = json_string_value(json_object_get(e, "input"));
	const char *segn = json_string_value(json_object_get(e, "seg"));
	const char *outn = json_string_value(json_object_get(e, "output"));
	int use_mask = json_is_true(json_object_get(e, "use_mask_for_norm"));
	char path[512];
	struct nnp_vol img, seg, ref, out;
	struct nnp_norm_plan p;
	struct nnp_norm_result res;
	int64_t maxulp;
	uint64_t nd, n;

	plan_one(&p, scheme, use_mask, json_object_get(e, "intensityproperties"));
	snprintf(path, sizeof path, FX "%s", in);
	assert_int_equal(nnp_nifti_read_volume(path, &img), 0);
	if (segn) {
		snprintf(path, sizeof path, FX "%s", segn);
		assert_int_equal(nnp_nifti_read_volume(path, &seg), 0);
	}
	snprintf(path, sizeof path, FX "%s", outn);
	assert_int_equal(nnp_nifti_read_volume(path, &ref), 0);
	assert_int_equal(ref.f.dtype, NNP_F32);
	assert_int_equal(nnp_normalize(&p, &img, segn ? &seg : NULL, &out, &res), 0);
	assert_int_equal(out.f.dtype, NNP_F32);
	n = nnp_frame_nvox(&ref.f);
	assert_int_equal(nnp_frame_nvox(&out.f), n);
	nd = ulp_diff(out.data, ref.data, n, &maxulp);
	if (nd)
		print_message("%s (%s): %llu of %llu values differ, up to %lld ulp\n", scheme,
			      use_mask ? "mask" : "no mask", (unsigned long long)nd, (unsigned long long)n,
			      (long long)maxulp);
	assert_int_equal(nd, 0);
	nnp_vol_release(&img);
	if (segn)
		nnp_vol_release(&seg);
	nnp_vol_release(&ref);
	nnp_vol_release(&out);
	nnp_norm_plan_release(&p);
}

static void run_fixture(const char *scheme_entry)
{
	json_t *idx = load_json(FX "index.json"), *e;
	size_t i;
	int found = 0;
	json_array_foreach(json_object_get(idx, "entries"), i, e)
		if (!strcmp(json_string_value(json_object_get(e, "scheme")), scheme_entry)) {
			run_fixture_entry(e);
			found = 1;
		}
	assert_true(found);
	json_decref(idx);
}

static void test_fixture_ct(void **s) { (void)s; run_fixture("CTNormalization"); }
static void test_fixture_zscore_mask(void **s) { (void)s; run_fixture("ZScoreNormalization_mask"); }
static void test_fixture_zscore_nomask(void **s) { (void)s; run_fixture("ZScoreNormalization_nomask"); }
static void test_fixture_nonorm(void **s) { (void)s; run_fixture("NoNormalization"); }
static void test_fixture_rescale(void **s) { (void)s; run_fixture("RescaleTo01Normalization"); }
static void test_fixture_rgb(void **s) { (void)s; run_fixture("RGBTo01Normalization"); }

/* ---- numpy on larger and degenerate volumes ---- */

static void make_input(const char *name, uint64_t n, float *img, uint8_t *mask, int *has_seg)
{
	*has_seg = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (!strcmp(name, "big")) {
			uint64_t h2 = gen(i, 12);
			img[i] = (float)((double)(gen(i, 11) % 100000) / 100000.0 * 300.0 - 120.0);
			mask[i] = h2 % 7 != 0;       /* seg = -1 there, else a label >= 0 */
			*has_seg = 1;
		} else if (!strcmp(name, "const01")) {
			img[i] = 0.1f;
		} else if (!strcmp(name, "const5")) {
			img[i] = 5.0f;
		} else if (!strcmp(name, "rgb")) {
			img[i] = (float)((double)(gen(i, 13) % 25501) / 100.0);
		} else {
			fail_msg("unknown input '%s'", name);
		}
	}
}

static void test_numpy_vectors(void **state)
{
	json_t *j = load_json(NUMPY), *c, *r, *props;
	size_t i, k;
	(void)state;
	props = json_object_get(j, "ct_properties");
	json_array_foreach(json_object_get(j, "cases"), i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		const json_t *sh = json_object_get(c, "shape");
		uint64_t n = 1;
		float *img, *x;
		uint8_t *mask;
		int has_seg;
		for (size_t a = 0; a < 3; a++)
			n *= (uint64_t)json_integer_value(json_array_get(sh, a));
		img = malloc(n * sizeof *img);
		x = malloc(n * sizeof *x);
		mask = malloc(n);
		make_input(name, n, img, mask, &has_seg);
		assert_true(fnv1a(img, n * sizeof *img) ==
			    hexval(json_string_value(json_object_get(c, "input_fnv1a64"))));
		json_array_foreach(json_object_get(c, "results"), k, r) {
			const char *scheme = json_string_value(json_object_get(r, "scheme"));
			int use_mask = json_is_true(json_object_get(r, "use_mask_for_norm"));
			struct nnp_norm_plan p;
			struct nnp_norm_result res;
			const json_t *smp;
			size_t q;
			json_t *sv;
			plan_one(&p, scheme, use_mask, props);
			memcpy(x, img, n * sizeof *x);
			assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, n, has_seg ? mask : NULL, &res), 0);
			if (json_object_get(r, "mean_bits")) {
				uint32_t mb = (uint32_t)json_integer_value(json_object_get(r, "mean_bits"));
				uint32_t sb = (uint32_t)json_integer_value(json_object_get(r, "std_bits"));
				if (fbits((float)res.a) != mb || fbits((float)res.b) != sb)
					print_message("%s %s mask %d: mean %.9g std %.9g, numpy %.9g %.9g\n", name, scheme,
						      use_mask, res.a, res.b,
						      json_real_value(json_object_get(r, "mean")),
						      json_real_value(json_object_get(r, "std")));
				assert_int_equal(fbits((float)res.a), mb);
				assert_int_equal(fbits((float)res.b), sb);
			}
			smp = json_object_get(r, "samples");
			json_array_foreach(smp, q, sv) {
				uint64_t at = (uint64_t)json_integer_value(json_array_get(sv, 0));
				uint32_t want = (uint32_t)json_integer_value(json_array_get(sv, 1));
				if (fbits(x[at]) != want)
					print_message("%s %s mask %d: voxel %llu = %.9g (%08x), numpy %08x\n", name, scheme,
						      use_mask, (unsigned long long)at, (double)x[at], fbits(x[at]), want);
				assert_int_equal(fbits(x[at]), want);
			}
			assert_true(fnv1a(x, n * sizeof *x) == hexval(json_string_value(json_object_get(r, "fnv1a64"))));
			nnp_norm_plan_release(&p);
		}
		free(img);
		free(x);
		free(mask);
	}
	json_decref(j);
}

/* ---- edge cases ---- */

static void test_std_zero(void **state)
{
	struct nnp_norm_plan p;
	struct nnp_norm_result res;
	float x[1000];
	(void)state;
	plan_one(&p, "ZScoreNormalization", 0, NULL);
	for (int i = 0; i < 1000; i++)
		x[i] = 5.0f;
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 1000, NULL, &res), 0);
	assert_true(res.a == 5.0 && res.b == 0.0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(fbits(x[i]), 0);    /* +0.0: (5 - 5) / (float)1e-8 */
	nnp_norm_plan_release(&p);
	/* rescale of a constant image: (x - min) / (float)1e-8 = 0 */
	plan_one(&p, "RescaleTo01Normalization", 0, NULL);
	for (int i = 0; i < 1000; i++)
		x[i] = -3.25f;
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 1000, NULL, &res), 0);
	assert_true(res.b == (double)(float)1e-8);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(fbits(x[i]), 0);
	nnp_norm_plan_release(&p);
}

static void test_empty_mask(void **state)
{
	struct nnp_vol img, seg, out;
	struct nnp_norm_plan p;
	struct nnp_norm_result res;
	(void)state;
	plan_one(&p, "ZScoreNormalization", 1, NULL);
	vol_f32(&img, "empty_mask", 1, 2, 3, 4);
	nnp_vol_init(&seg);
	seg.f.dtype = NNP_I8;
	seg.f.shape[0] = 1; seg.f.shape[1] = 2; seg.f.shape[2] = 3; seg.f.shape[3] = 4;
	assert_int_equal(nnp_vol_alloc(&seg), 0);
	for (int i = 0; i < 24; i++) {
		((float *)img.data)[i] = (float)i * 0.5f;
		((int8_t *)seg.data)[i] = -1;
	}
	/* nnU-Net: image[mask] is empty, its mean NaN, nothing is assigned */
	assert_int_equal(nnp_normalize(&p, &img, &seg, &out, &res), 0);
	assert_true(isnan(res.a) && res.n == 0);
	assert_memory_equal(out.data, img.data, 24 * sizeof(float));
	nnp_vol_release(&out);
	/* one voxel inside: std 0, it becomes 0, the others keep their value */
	((int8_t *)seg.data)[7] = 0;
	assert_int_equal(nnp_normalize(&p, &img, &seg, &out, &res), 0);
	assert_true(res.n == 1 && res.a == 3.5 && res.b == 0);
	for (int i = 0; i < 24; i++)
		assert_true(((float *)out.data)[i] == (i == 7 ? 0.0f : (float)i * 0.5f));
	nnp_vol_release(&out);
	/* without a seg the mask flag is ignored (nnU-Net: seg is None) */
	assert_int_equal(nnp_normalize(&p, &img, NULL, &out, &res), 0);
	assert_true(res.n == 24);
	nnp_vol_release(&out);
	nnp_vol_release(&img);
	nnp_vol_release(&seg);
	nnp_norm_plan_release(&p);
}

static void test_nan_rejected(void **state)
{
	static const char *const schemes[] = { "CTNormalization", "ZScoreNormalization", "RescaleTo01Normalization",
					       "RGBTo01Normalization", "NoNormalization" };
	json_t *props = json_pack("{s:f,s:f,s:f,s:f}", "mean", 1.0, "std", 2.0, "percentile_00_5", 0.0,
				  "percentile_99_5", 10.0);
	(void)state;
	for (size_t s = 0; s < sizeof schemes / sizeof schemes[0]; s++) {
		struct nnp_vol img, out;
		struct nnp_norm_plan p;
		plan_one(&p, schemes[s], 0, props);
		vol_f32(&img, "case_nan", 1, 3, 4, 5);
		for (int i = 0; i < 60; i++)
			((float *)img.data)[i] = 1.0f;
		((float *)img.data)[1 * 20 + 2 * 5 + 3] = NAN;
		assert_int_equal(nnp_normalize(&p, &img, NULL, &out, NULL), NNP_EDATA);
		assert_non_null(strstr(nnp_err_msg(), "case_nan"));
		assert_non_null(strstr(nnp_err_msg(), "NaN"));
		assert_non_null(strstr(nnp_err_msg(), "(z 1, y 2, x 3)"));
		assert_null(out.data);
		/* the channel function refuses it too */
		assert_int_equal(nnp_norm_channel_f32(&p.ch[0], img.data, 60, NULL, NULL), NNP_EDATA);
		assert_int_equal(nnp_normalize_inplace(&p, &img, NULL, NULL), NNP_EDATA);
		nnp_vol_release(&img);
		nnp_norm_plan_release(&p);
	}
	json_decref(props);
}

static void test_infinity(void **state)
{
	json_t *props = json_pack("{s:f,s:f,s:f,s:f}", "mean", 1.0, "std", 2.0, "percentile_00_5", 0.0,
				  "percentile_99_5", 10.0);
	struct nnp_norm_plan p;
	float x[4] = { 1, INFINITY, -INFINITY, 3 };
	uint8_t m[4] = { 1, 0, 0, 1 };
	(void)state;
	plan_one(&p, "CTNormalization", 0, props);   /* clipped like numpy */
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 4, NULL, NULL), 0);
	assert_true(x[0] == 0.0f && x[1] == 4.5f && x[2] == -0.5f && x[3] == 1.0f);
	nnp_norm_plan_release(&p);
	plan_one(&p, "ZScoreNormalization", 0, NULL);
	x[1] = INFINITY;
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 4, NULL, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "infinite"));
	nnp_norm_plan_release(&p);
	/* outside the mask an infinite value is left alone, as nnU-Net does */
	plan_one(&p, "ZScoreNormalization", 1, NULL);
	x[0] = 1; x[1] = INFINITY; x[2] = -INFINITY; x[3] = 3;
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 4, m, NULL), 0);
	assert_true(x[0] == -1.0f && x[3] == 1.0f && isinf(x[1]) && isinf(x[2]));
	nnp_norm_plan_release(&p);
	plan_one(&p, "RescaleTo01Normalization", 0, NULL);
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 4, NULL, NULL), NNP_EDATA);
	nnp_norm_plan_release(&p);
	/* float32 overflow of the statistics */
	plan_one(&p, "ZScoreNormalization", 0, NULL);
	x[0] = 3e38f; x[1] = 3e38f; x[2] = 3e38f; x[3] = 3e38f;
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 4, NULL, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "overflow"));
	nnp_norm_plan_release(&p);
	json_decref(props);
}

static void test_rgb_range(void **state)
{
	struct nnp_norm_plan p;
	float x[3] = { 0, 255, 255.5f };
	(void)state;
	plan_one(&p, "RGBTo01Normalization", 0, NULL);
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 3, NULL, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "above 255"));
	x[2] = -1;
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 3, NULL, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "below 0"));
	x[2] = -0.0f;
	assert_int_equal(nnp_norm_channel_f32(&p.ch[0], x, 3, NULL, NULL), 0);
	assert_true(x[0] == 0 && x[1] == 1 && fbits(x[2]) == 0x80000000u);
	nnp_norm_plan_release(&p);
}

static void test_scheme_names(void **state)
{
	enum nnp_norm_scheme s;
	static const char *const names[] = { "CTNormalization", "ZScoreNormalization", "RescaleTo01Normalization",
					      "RGBTo01Normalization", "NoNormalization" };
	(void)state;
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(nnp_norm_scheme_parse(names[i], &s), 0);
		assert_string_equal(nnp_norm_scheme_name(s), names[i]);
	}
	assert_int_equal(nnp_norm_scheme_parse("ctnormalization", &s), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "ctnormalization"));
	assert_int_equal(nnp_norm_scheme_parse("", &s), NNP_EDATA);
	assert_int_equal(nnp_norm_scheme_parse(NULL, &s), NNP_EDATA);
	assert_string_equal(nnp_norm_scheme_name(NNP_NORM_UNKNOWN), "?");

	assert_int_equal(nnp_norm_scheme_for_channel("CT"), NNP_NORM_CT);
	assert_int_equal(nnp_norm_scheme_for_channel("ct"), NNP_NORM_CT);
	assert_int_equal(nnp_norm_scheme_for_channel("cT"), NNP_NORM_CT);
	assert_int_equal(nnp_norm_scheme_for_channel("CT "), NNP_NORM_ZSCORE);
	assert_int_equal(nnp_norm_scheme_for_channel("CTA"), NNP_NORM_ZSCORE);
	assert_int_equal(nnp_norm_scheme_for_channel("noNorm"), NNP_NORM_NONE);
	assert_int_equal(nnp_norm_scheme_for_channel("NONORM"), NNP_NORM_NONE);
	assert_int_equal(nnp_norm_scheme_for_channel("zscore"), NNP_NORM_ZSCORE);
	assert_int_equal(nnp_norm_scheme_for_channel("rescale_to_0_1"), NNP_NORM_RESCALE01);
	assert_int_equal(nnp_norm_scheme_for_channel("Rescale_To_0_1"), NNP_NORM_RESCALE01);
	assert_int_equal(nnp_norm_scheme_for_channel("re\xc5\xbf" "cale_to_0_1"), NNP_NORM_RESCALE01); /* U+017F */
	assert_int_equal(nnp_norm_scheme_for_channel("rescale_0_1"), NNP_NORM_ZSCORE);   /* pre-2.x name */
	assert_int_equal(nnp_norm_scheme_for_channel("rgb_to_0_1"), NNP_NORM_RGB01);
	assert_int_equal(nnp_norm_scheme_for_channel("RGB_to_0_1"), NNP_NORM_RGB01);
	assert_int_equal(nnp_norm_scheme_for_channel("rgb"), NNP_NORM_ZSCORE);           /* not a key */
	assert_int_equal(nnp_norm_scheme_for_channel("T2"), NNP_NORM_ZSCORE);
	assert_int_equal(nnp_norm_scheme_for_channel(""), NNP_NORM_ZSCORE);
	assert_int_equal(nnp_norm_scheme_for_channel(NULL), NNP_NORM_ZSCORE);

	assert_true(nnp_norm_use_mask_for_norm(NNP_NORM_ZSCORE, 0.7499));
	assert_false(nnp_norm_use_mask_for_norm(NNP_NORM_ZSCORE, 0.75));
	assert_false(nnp_norm_use_mask_for_norm(NNP_NORM_CT, 0.1));
	assert_false(nnp_norm_use_mask_for_norm(NNP_NORM_RESCALE01, 0.1));
	assert_false(nnp_norm_use_mask_for_norm(NNP_NORM_NONE, 0.1));
}

static void test_plans(void **state)
{
	json_t *plans = load_json("tests/fixtures/Dataset901_Spheres/nnUNetPlans.json"), *j, *dj;
	struct nnp_norm_plan p;
	(void)state;
	assert_int_equal(nnp_norm_plan_from_plans(plans, "3d_fullres", &p), 0);
	assert_int_equal(p.nch, 1);
	assert_int_equal(p.ch[0].scheme, NNP_NORM_CT);
	assert_false(p.ch[0].use_mask);
	assert_true(p.ch[0].props.present);
	assert_true(p.ch[0].props.mean == 104.11238098144531 && p.ch[0].props.std == 35.77189254760742);
	assert_true(p.ch[0].props.p00_5 == -33.0 && p.ch[0].props.p99_5 == 234.0);
	assert_true(p.ch[0].props.median == 108.0 && p.ch[0].props.min == -375.0 && p.ch[0].props.max == 364.0);
	nnp_norm_plan_release(&p);
	assert_int_equal(nnp_norm_plan_from_plans(plans, "3d_lowres", &p), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "3d_lowres"));
	json_decref(plans);

	/* inherits_from, null use_mask, a cycle, CT without properties */
	j = json_loads("{\"configurations\": {"
		       "\"a\": {\"normalization_schemes\": [\"ZScoreNormalization\", \"NoNormalization\"],"
		       "        \"use_mask_for_norm\": [true, null]},"
		       "\"b\": {\"inherits_from\": \"a\", \"patch_size\": [1]},"
		       "\"c\": {\"inherits_from\": \"d\"}, \"d\": {\"inherits_from\": \"c\"},"
		       "\"e\": {\"normalization_schemes\": [\"CTNormalization\"], \"use_mask_for_norm\": [false]},"
		       "\"f\": {\"normalization_schemes\": [\"Foo\"], \"use_mask_for_norm\": [false]},"
		       "\"g\": {\"normalization_schemes\": [\"NoNormalization\"], \"use_mask_for_norm\": []}},"
		       "\"foreground_intensity_properties_per_channel\": {\"0\": {\"mean\": 1}}}", 0, NULL);
	assert_non_null(j);
	assert_int_equal(nnp_norm_plan_from_plans(j, "b", &p), 0);
	assert_int_equal(p.nch, 2);
	assert_true(p.ch[0].scheme == NNP_NORM_ZSCORE && p.ch[0].use_mask);
	assert_true(p.ch[1].scheme == NNP_NORM_NONE && !p.ch[1].use_mask);
	assert_true(p.ch[0].props.present && p.ch[0].props.mean == 1 && isnan(p.ch[0].props.std));
	assert_false(p.ch[1].props.present);
	nnp_norm_plan_release(&p);
	assert_int_equal(nnp_norm_plan_from_plans(j, "c", &p), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "circular"));
	assert_int_equal(nnp_norm_plan_from_plans(j, "e", &p), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "CTNormalization needs"));
	assert_int_equal(nnp_norm_plan_from_plans(j, "f", &p), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "'Foo'"));
	assert_int_equal(nnp_norm_plan_from_plans(j, "g", &p), NNP_EDATA);
	assert_null(p.ch);
	json_decref(j);

	/* the planner's choice from dataset.json */
	dj = json_loads("{\"channel_names\": {\"0\": \"T1\", \"1\": \"CT\", \"2\": \"noNorm\", \"3\": \"flair\"}}",
			0, NULL);
	assert_int_equal(nnp_norm_plan_from_dataset(dj, 0.5, NULL, &p), 0);
	assert_int_equal(p.nch, 4);
	assert_true(p.ch[0].scheme == NNP_NORM_ZSCORE && p.ch[0].use_mask);
	assert_true(p.ch[1].scheme == NNP_NORM_CT && !p.ch[1].use_mask);
	assert_true(p.ch[2].scheme == NNP_NORM_NONE && !p.ch[2].use_mask);
	assert_true(p.ch[3].scheme == NNP_NORM_ZSCORE && p.ch[3].use_mask);
	nnp_norm_plan_release(&p);
	assert_int_equal(nnp_norm_plan_from_dataset(dj, 0.75, NULL, &p), 0);
	assert_false(p.ch[0].use_mask || p.ch[3].use_mask);
	nnp_norm_plan_release(&p);
	json_decref(dj);
	dj = json_loads("{\"modality\": {\"0\": \"MRI\"}}", 0, NULL);
	assert_int_equal(nnp_norm_plan_from_dataset(dj, 0.5, NULL, &p), 0);
	assert_true(p.nch == 1 && p.ch[0].scheme == NNP_NORM_ZSCORE);
	nnp_norm_plan_release(&p);
	json_decref(dj);
	nnp_norm_plan_release(NULL);
}

/* int16 with a NIfTI scale, several channels, in place == copy */
static void test_volume_paths(void **state)
{
	json_t *cfg = json_loads("{\"normalization_schemes\": [\"ZScoreNormalization\", \"NoNormalization\","
				 " \"ZScoreNormalization\"], \"use_mask_for_norm\": [false, false, true]}", 0, NULL);
	struct nnp_norm_plan p;
	struct nnp_vol img, seg, out, ref;
	struct nnp_norm_result res[3];
	uint64_t nvox = 5 * 6 * 7;
	(void)state;
	assert_int_equal(nnp_norm_plan_from_config(cfg, NULL, &p), 0);
	nnp_vol_init(&img);
	img.f.dtype = NNP_I16;
	img.f.shape[0] = 3; img.f.shape[1] = 5; img.f.shape[2] = 6; img.f.shape[3] = 7;
	assert_int_equal(nnp_frame_set_case(&img.f, "scaled"), 0);
	img.f.scale = calloc(6, sizeof(double));
	img.f.scale[0] = 0.5; img.f.scale[1] = -3;     /* channel 0 scaled */
	img.f.scale[2] = 1; img.f.scale[3] = 0;        /* channel 1: (1, 0) = unscaled */
	assert_int_equal(nnp_vol_alloc(&img), 0);
	json_object_set_new(nnp_frame_props(&img.f), "channel_dtypes", json_pack("[sss]", "int16", "int16", "int16"));
	nnp_vol_init(&seg);
	seg.f.dtype = NNP_I16;
	seg.f.shape[0] = 1; seg.f.shape[1] = 5; seg.f.shape[2] = 6; seg.f.shape[3] = 7;
	assert_int_equal(nnp_vol_alloc(&seg), 0);
	for (uint64_t i = 0; i < 3 * nvox; i++)
		((int16_t *)img.data)[i] = (int16_t)((int64_t)gen(i, 5) % 4001 - 2000);
	for (uint64_t i = 0; i < nvox; i++)
		((int16_t *)seg.data)[i] = (int16_t)(gen(i, 6) % 5 == 0 ? -1 : 300);

	/* reference: the conversions by hand, then the channel function */
	vol_f32(&ref, NULL, 3, 5, 6, 7);
	for (uint64_t i = 0; i < nvox; i++) {
		float *r = ref.data;
		const int16_t *v = img.data;
		r[i] = (float)((double)v[i] * 0.5 + -3.0);
		r[nvox + i] = (float)v[nvox + i];
		r[2 * nvox + i] = (float)v[2 * nvox + i];
	}
	{
		uint8_t *m = malloc(nvox);
		assert_int_equal(nnp_norm_mask_from_seg(&seg, m), 0);
		for (int c = 0; c < 3; c++)
			assert_int_equal(nnp_norm_channel_f32(&p.ch[c], (float *)ref.data + c * nvox, nvox, m, NULL), 0);
		free(m);
	}
	assert_int_equal(nnp_normalize(&p, &img, &seg, &out, res), 0);
	assert_int_equal(out.f.dtype, NNP_F32);
	assert_null(out.f.scale);
	assert_null(json_object_get(out.f.props, "channel_dtypes"));
	assert_string_equal(out.f.case_id, "scaled");
	assert_memory_equal(out.data, ref.data, 3 * nvox * sizeof(float));
	assert_true(res[0].n == nvox && res[2].n < nvox && res[2].n > 0 && isnan(res[1].a));
	assert_int_equal(nnp_normalize_inplace(&p, &img, &seg, NULL), 0);
	assert_int_equal(img.f.dtype, NNP_F32);
	assert_null(img.f.scale);
	assert_memory_equal(img.data, ref.data, 3 * nvox * sizeof(float));
	/* float32 in place again (plan of 3 NoNormalization): values kept, -0.0 too */
	nnp_norm_plan_release(&p);
	json_decref(cfg);
	cfg = json_loads("{\"normalization_schemes\": [\"NoNormalization\", \"NoNormalization\", \"NoNormalization\"],"
			 " \"use_mask_for_norm\": [false, false, false]}", 0, NULL);
	assert_int_equal(nnp_norm_plan_from_config(cfg, NULL, &p), 0);
	((float *)img.data)[3] = -0.0f;
	nnp_vol_release(&out);
	assert_int_equal(nnp_normalize(&p, &img, NULL, &out, NULL), 0);
	assert_memory_equal(out.data, img.data, 3 * nvox * sizeof(float));
	assert_int_equal(nnp_normalize_inplace(&p, &img, NULL, NULL), 0);
	assert_memory_equal(out.data, img.data, 3 * nvox * sizeof(float));
	nnp_vol_release(&out);

	/* mismatches */
	seg.f.shape[3] = 6;
	assert_int_equal(nnp_normalize(&p, &img, &seg, &out, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "does not match"));
	p.nch = 2;
	assert_int_equal(nnp_normalize(&p, &img, NULL, &out, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "3 channels"));
	p.nch = 3;
	seg.f.shape[3] = 7;
	nnp_vol_release(&img);
	nnp_vol_release(&seg);
	nnp_vol_release(&ref);
	nnp_norm_plan_release(&p);
	json_decref(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_ct),
		cmocka_unit_test(test_fixture_zscore_mask),
		cmocka_unit_test(test_fixture_zscore_nomask),
		cmocka_unit_test(test_fixture_nonorm),
		cmocka_unit_test(test_fixture_rescale),
		cmocka_unit_test(test_fixture_rgb),
		cmocka_unit_test(test_numpy_vectors),
		cmocka_unit_test(test_std_zero),
		cmocka_unit_test(test_empty_mask),
		cmocka_unit_test(test_nan_rejected),
		cmocka_unit_test(test_infinity),
		cmocka_unit_test(test_rgb_range),
		cmocka_unit_test(test_scheme_names),
		cmocka_unit_test(test_plans),
		cmocka_unit_test(test_volume_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
