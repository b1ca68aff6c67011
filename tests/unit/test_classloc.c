/* test_classloc.c — nnU-Net's class_locations: identical to nnU-Net's own
 * (the preprocessed cases' _props.json, summarised in
 * tests/fixtures/ops/classloc/expected.json next to their seg maps, and
 * tests/fixtures/ops/class_locations_sampling.json), to a numpy
 * re-statement of nnU-Net 2.8.1's algorithm on synthetic label maps (regions,
 * ignore label, > 10^6 voxels, 300 int16 labels), plus edge cases. */
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
#include "classloc.h"
#include "err.h"
#include "json.h"
#include "nifti.h"
#include "rng.h"

#define FX "tests/fixtures/ops/classloc/"

static json_t *load_json(const char *path)
{
	json_error_t e;
	json_t *j = json_load_file(path, 0, &e);
	if (!j)
		fail_msg("%s:%d: %s", path, e.line, e.text);
	return j;
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

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}
#define FNV0 0xcbf29ce484222325ull

/* FNV-1a of the class's locations as int64 [0, z, y, x] rows (little endian) */
static uint64_t loc_hash(const struct nnp_classloc_class *c)
{
	uint64_t h = FNV0;
	for (uint64_t i = 0; i < c->n; i++) {
		int64_t row[4] = { 0, c->zyx[3 * i], c->zyx[3 * i + 1], c->zyx[3 * i + 2] };
		h = fnv1a(row, sizeof row, h);
	}
	return h;
}

static void check_row(const struct nnp_classloc_class *c, uint64_t i, const json_t *row)
{
	assert_int_equal(json_integer_value(json_array_get(row, 0)), 0);
	for (int a = 0; a < 3; a++)
		assert_int_equal(json_integer_value(json_array_get(row, (size_t)a + 1)), c->zyx[3 * i + (uint64_t)a]);
}

/* one class against its summary {num_voxels, n, fnv1a64, first, last} */
static void check_class(const struct nnp_classloc_class *c, const json_t *want, const char *what)
{
	const json_t *first = json_object_get(want, "first"), *last = json_object_get(want, "last"), *row;
	json_int_t nv = json_integer_value(json_object_get(want, "num_voxels"));
	size_t i;
	if (nv >= 0)
		assert_int_equal(c->nvox, nv);
	if (c->n != (uint64_t)json_integer_value(json_object_get(want, "n")))
		fail_msg("%s: %llu locations, nnU-Net %lld", what, (unsigned long long)c->n,
			 (long long)json_integer_value(json_object_get(want, "n")));
	json_array_foreach(first, i, row)
		check_row(c, i, row);
	if (last && json_array_size(last))
		check_row(c, c->n - 1, json_array_get(last, 0));
	if (loc_hash(c) != strtoull(json_string_value(json_object_get(want, "fnv1a64")), NULL, 16))
		fail_msg("%s: locations differ from the reference", what);
}

static void test_nnunet_cases(void **state)
{
	json_t *j = load_json(FX "expected.json"), *e;
	size_t i, ncases = 0;
	(void)state;
	json_array_foreach(json_object_get(j, "nnunet"), i, e) {
		char path[512], key[64];
		struct nnp_vol seg;
		struct nnp_classloc_reqs r;
		struct nnp_classloc cl;
		const json_t *cls = json_object_get(e, "classes");
		snprintf(path, sizeof path, FX "%s", json_string_value(json_object_get(e, "seg")));
		assert_int_equal(nnp_nifti_read_volume(path, &seg), 0);
		assert_int_equal(seg.f.dtype, NNP_I8);
		assert_int_equal(nnp_classloc_reqs_from_labels(json_object_get(e, "labels"), &r), 0);
		assert_int_equal(r.n, json_object_size(cls));
		assert_int_equal(nnp_classloc_sample(&seg, r.req, r.n, NULL, &cl), 0);
		for (size_t c = 0; c < cl.n; c++) {
			const json_t *want;
			nnp_classloc_key(&cl.cls[c], key, sizeof key);
			assert_non_null(want = json_object_get(cls, key));
			snprintf(path, sizeof path, "%s class %s", json_string_value(json_object_get(e, "seg")), key);
			check_class(&cl.cls[c], want, path);
		}
		nnp_classloc_release(&cl);
		nnp_classloc_reqs_release(&r);
		nnp_vol_release(&seg);
		ncases++;
	}
	assert_true(ncases >= 8);
	json_decref(j);
}

/* tests/fixtures/ops/class_locations_sampling.json: the offsets drawn by the
 * shared RandomState and the first locations (sph_000, 3d_fullres). */
static void test_sampling_fixture(void **state)
{
	json_t *j = load_json("tests/fixtures/ops/class_locations_sampling.json"), *l;
	struct nnp_vol seg;
	struct nnp_classloc cl;
	struct nnp_rs rs;
	static const int64_t labs[2] = { 1, 2 };
	struct nnp_classloc_req req[2] = { { &labs[0], 1, 0 }, { &labs[1], 1, 0 } };
	size_t i;
	(void)state;
	assert_int_equal(nnp_nifti_read_volume(FX "Dataset901_3d_fullres_sph_000_seg.nii.gz", &seg), 0);
	assert_int_equal(nnp_classloc_sample(&seg, req, 2, NULL, &cl), 0);
	nnp_rs_seed(&rs, 1234);
	json_array_foreach(json_object_get(j, "labels"), i, l) {
		uint64_t nv = (uint64_t)json_integer_value(json_object_get(l, "num_voxels"));
		uint64_t k = (uint64_t)json_integer_value(json_object_get(l, "num_samples"));
		const json_t *off = json_object_get(l, "first_16_offsets"), *row;
		int64_t *perm = malloc(nv * sizeof *perm);
		size_t q;
		assert_int_equal(json_integer_value(json_object_get(l, "label")), labs[i]);
		assert_int_equal(cl.cls[i].nvox, nv);
		assert_int_equal(cl.cls[i].n, k);
		nnp_rs_permutation(&rs, perm, (size_t)nv);
		json_array_foreach(off, q, row)
			assert_int_equal(perm[q], json_integer_value(row));
		json_array_foreach(json_object_get(l, "first_4_locations"), q, row)
			check_row(&cl.cls[i], q, row);
		free(perm);
	}
	nnp_classloc_release(&cl);
	nnp_vol_release(&seg);
	json_decref(j);
}

static void make_seg(struct nnp_vol *v, enum nnp_dtype dt, int64_t z, int64_t y, int64_t x)
{
	nnp_vol_init(v);
	v->f.dtype = dt;
	v->f.shape[0] = 1;
	v->f.shape[1] = z;
	v->f.shape[2] = y;
	v->f.shape[3] = x;
	nnp_frame_default_affine(&v->f);
	assert_int_equal(nnp_vol_alloc(v), 0);
}

static int64_t synth_label(const char *name, uint64_t i)
{
	uint64_t v;
	if (!strcmp(name, "regions")) {
		v = gen(i, 21) % 100;
		return v < 40 ? 0 : v < 55 ? 1 : v < 70 ? 2 : v < 78 ? 3 : v < 80 ? 4 : v < 85 ? 5 : v < 95 ? -1 : 2;
	}
	if (!strcmp(name, "big")) {
		v = gen(i, 22);
		return v % 997 == 0 ? -1 : v % 20 == 0 ? 2 : 1;
	}
	if (!strcmp(name, "many")) {
		v = gen(i, 23) % 301;
		return v == 150 ? 0 : (int64_t)v;
	}
	fail_msg("unknown synthetic seg '%s'", name);
	return 0;
}

/* every location holds a voxel of the class, none twice */
static void check_members(const struct nnp_vol *seg, const struct nnp_classloc_class *c)
{
	const int64_t Y = seg->f.shape[2], X = seg->f.shape[3];
	uint64_t nvox = nnp_frame_nvox(&seg->f);
	uint8_t *seen = calloc(nvox, 1);
	for (uint64_t i = 0; i < c->n; i++) {
		uint64_t at = ((uint64_t)c->zyx[3 * i] * (uint64_t)Y + (uint64_t)c->zyx[3 * i + 1]) * (uint64_t)X +
			      (uint64_t)c->zyx[3 * i + 2];
		double v;
		int member = 0;
		assert_true(at < nvox);
		nnp_to_f64(seg->f.dtype, (const char *)seg->data + at * nnp_dtype_size(seg->f.dtype), &v, 1);
		for (size_t l = 0; l < c->nlabels; l++)
			member |= (double)c->labels[l] == v;
		assert_true(member);
		/* a label listed twice in a region may be drawn twice */
		if (c->nlabels == 1)
			assert_false(seen[at]);
		seen[at] = 1;
	}
	free(seen);
}

static void test_synthetic(void **state)
{
	json_t *j = load_json(FX "expected.json"), *e;
	size_t i;
	(void)state;
	json_array_foreach(json_object_get(j, "synthetic"), i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *dt = json_string_value(json_object_get(e, "dtype"));
		const json_t *sh = json_object_get(e, "shape"), *keys = json_object_get(e, "keys");
		const json_t *cls = json_object_get(e, "classes");
		struct nnp_vol seg;
		struct nnp_classloc_reqs r;
		struct nnp_classloc cl;
		uint64_t nvox;
		char key[1600], what[1700];
		make_seg(&seg, !strcmp(dt, "int16") ? NNP_I16 : NNP_I8, json_integer_value(json_array_get(sh, 0)),
			 json_integer_value(json_array_get(sh, 1)), json_integer_value(json_array_get(sh, 2)));
		nvox = nnp_frame_nvox(&seg.f);
		for (uint64_t v = 0; v < nvox; v++) {
			if (seg.f.dtype == NNP_I16)
				((int16_t *)seg.data)[v] = (int16_t)synth_label(name, v);
			else
				((int8_t *)seg.data)[v] = (int8_t)synth_label(name, v);
		}
		assert_true(fnv1a(seg.data, (size_t)nnp_frame_nbytes(&seg.f), FNV0) ==
			    strtoull(json_string_value(json_object_get(e, "seg_fnv1a64")), NULL, 16));
		assert_int_equal(nnp_classloc_reqs_from_labels(json_object_get(e, "labels"), &r), 0);
		assert_int_equal(r.n, json_array_size(keys));
		assert_int_equal(nnp_classloc_sample(&seg, r.req, r.n, NULL, &cl), 0);
		for (size_t c = 0; c < cl.n; c++) {
			nnp_classloc_key(&cl.cls[c], key, sizeof key);
			assert_string_equal(key, json_string_value(json_array_get(keys, c)));
			snprintf(what, sizeof what, "%s class %s", name, key);
			check_class(&cl.cls[c], json_array_get(cls, c), what);
			check_members(&seg, &cl.cls[c]);
		}
		nnp_classloc_release(&cl);
		nnp_classloc_reqs_release(&r);
		nnp_vol_release(&seg);
	}
	json_decref(j);
}

/* a class smaller than the sample count: all its voxels, permuted; an
 * absent class draws nothing; the JSON dict */
static void test_small_absent_json(void **state)
{
	struct nnp_vol seg;
	struct nnp_classloc cl, cl2;
	static const int64_t one = 1, absent = 7, two = 2, reg[2] = { 2, 1 };
	struct nnp_classloc_req req[4] = { { &absent, 1, 0 }, { &one, 1, 0 }, { reg, 2, 1 }, { &two, 1, 1 } };
	json_t *j;
	char *s;
	uint8_t seen[24] = { 0 };
	(void)state;
	make_seg(&seg, NNP_U8, 2, 3, 4);
	memset(seg.data, 0, 24);
	((uint8_t *)seg.data)[1] = 1;
	((uint8_t *)seg.data)[5] = 1;
	((uint8_t *)seg.data)[13] = 1;
	((uint8_t *)seg.data)[23] = 2;
	assert_int_equal(nnp_classloc_sample(&seg, req, 4, NULL, &cl), 0);
	assert_int_equal(cl.n, 4);
	assert_true(cl.cls[0].n == 0 && cl.cls[0].nvox == 0 && cl.cls[0].zyx == NULL);
	assert_true(cl.cls[1].n == 3 && cl.cls[1].nvox == 3);
	for (int i = 0; i < 3; i++) {
		int at = (cl.cls[1].zyx[3 * i] * 3 + cl.cls[1].zyx[3 * i + 1]) * 4 + cl.cls[1].zyx[3 * i + 2];
		assert_true(at == 1 || at == 5 || at == 13);
		assert_false(seen[at]);
		seen[at] = 1;
	}
	/* the region (2, 1): label 2's voxel is offset 0, then label 1's in raster order */
	assert_true(cl.cls[2].n == 4 && cl.cls[2].nvox == 4);
	/* the absent class consumed nothing: same draws without it */
	assert_int_equal(nnp_classloc_sample(&seg, req + 1, 3, NULL, &cl2), 0);
	assert_memory_equal(cl2.cls[0].zyx, cl.cls[1].zyx, 9 * sizeof(int32_t));
	assert_memory_equal(cl2.cls[1].zyx, cl.cls[2].zyx, 12 * sizeof(int32_t));
	nnp_classloc_release(&cl2);

	/* permutation(3) with RandomState(1234), then permutation(4): the offsets */
	{
		struct nnp_rs rs;
		int64_t p3[3], p4[4];
		static const int at1[3] = { 1, 5, 13 }, atr[4] = { 23, 1, 5, 13 };
		nnp_rs_seed(&rs, 1234);
		nnp_rs_permutation(&rs, p3, 3);
		nnp_rs_permutation(&rs, p4, 4);
		for (int i = 0; i < 3; i++) {
			int at = (cl.cls[1].zyx[3 * i] * 3 + cl.cls[1].zyx[3 * i + 1]) * 4 + cl.cls[1].zyx[3 * i + 2];
			assert_int_equal(at, at1[p3[i]]);
		}
		for (int i = 0; i < 4; i++) {
			int at = (cl.cls[2].zyx[3 * i] * 3 + cl.cls[2].zyx[3 * i + 1]) * 4 + cl.cls[2].zyx[3 * i + 2];
			assert_int_equal(at, atr[p4[i]]);
		}
	}
	assert_int_equal(nnp_classloc_to_json(&cl, &j), 0);
	assert_int_equal(nnp_json_dumps(j, -1, 0, &s), 0);
	{
		char want[512], *p = want;
		p += sprintf(p, "{\"7\": [], \"1\": [");
		for (int i = 0; i < 3; i++)
			p += sprintf(p, "%s[0, %d, %d, %d]", i ? ", " : "", cl.cls[1].zyx[3 * i], cl.cls[1].zyx[3 * i + 1],
				     cl.cls[1].zyx[3 * i + 2]);
		p += sprintf(p, "], \"(2, 1)\": [");
		for (int i = 0; i < 4; i++)
			p += sprintf(p, "%s[0, %d, %d, %d]", i ? ", " : "", cl.cls[2].zyx[3 * i], cl.cls[2].zyx[3 * i + 1],
				     cl.cls[2].zyx[3 * i + 2]);
		sprintf(p, "], \"(2,)\": [[0, 1, 2, 3]]}");
		assert_string_equal(s, want);
	}
	free(s);
	json_decref(j);
	nnp_classloc_release(&cl);

	/* a repeated class draws again; the dict keeps the first place, last value */
	{
		struct nnp_classloc_req rep[3] = { { &one, 1, 0 }, { &two, 1, 0 }, { &one, 1, 0 } };
		const json_t *v;
		assert_int_equal(nnp_classloc_sample(&seg, rep, 3, NULL, &cl), 0);
		assert_int_equal(nnp_classloc_to_json(&cl, &j), 0);
		assert_int_equal(json_object_size(j), 2);
		assert_string_equal(json_object_iter_key(json_object_iter(j)), "1");
		v = json_array_get(json_object_get(j, "1"), 0);
		assert_int_equal(json_integer_value(json_array_get(v, 3)), cl.cls[2].zyx[2]);
		json_decref(j);
		nnp_classloc_release(&cl);
	}
	nnp_vol_release(&seg);
}

static void test_num_samples(void **state)
{
	struct nnp_classloc_opts o;
	(void)state;
	nnp_classloc_opts_default(&o);
	assert_true(o.seed == 1234 && o.min_num_samples == 10000 && o.min_percent_coverage == 0.01);
	assert_int_equal(nnp_classloc_num_samples(0, &o), 0);
	assert_int_equal(nnp_classloc_num_samples(1, &o), 1);
	assert_int_equal(nnp_classloc_num_samples(9999, &o), 9999);
	assert_int_equal(nnp_classloc_num_samples(10001, &o), 10000);
	assert_int_equal(nnp_classloc_num_samples(1000000, &o), 10000);
	assert_int_equal(nnp_classloc_num_samples(1000001, &o), 10001);
	assert_int_equal(nnp_classloc_num_samples(1068733, &o), 10688);
	assert_int_equal(nnp_classloc_num_samples(300000000, &o), 3000000);
	o.min_percent_coverage = 0.5;
	assert_int_equal(nnp_classloc_num_samples(100001, &o), 50001);
}

/* float and wide label maps; errors */
static void test_dtypes_and_errors(void **state)
{
	struct nnp_vol seg;
	struct nnp_classloc cl;
	struct nnp_classloc_reqs r;
	static const int64_t labs[3] = { 1, 2, 100000 }, huge[2] = { INT64_MIN, INT64_MAX };
	struct nnp_classloc_req req[3] = { { &labs[0], 1, 0 }, { &labs[1], 1, 0 }, { &labs[2], 1, 0 } };
	json_t *j;
	(void)state;
	make_seg(&seg, NNP_F32, 1, 2, 3);
	((float *)seg.data)[0] = 1.0f;
	((float *)seg.data)[1] = 2.5f;
	((float *)seg.data)[2] = 2.0f;
	((float *)seg.data)[3] = -1.0f;
	((float *)seg.data)[4] = 100000.0f;
	((float *)seg.data)[5] = NAN;
	assert_int_equal(nnp_classloc_sample(&seg, req, 3, NULL, &cl), 0);
	assert_true(cl.cls[0].n == 1 && cl.cls[0].zyx[2] == 0);
	assert_true(cl.cls[1].n == 1 && cl.cls[1].zyx[2] == 2);
	assert_true(cl.cls[2].n == 1 && cl.cls[2].zyx[1] == 1 && cl.cls[2].zyx[2] == 1);
	nnp_classloc_release(&cl);
	nnp_vol_release(&seg);

	/* int64 labels far apart (binary search instead of a table) */
	make_seg(&seg, NNP_I64, 1, 1, 4);
	((int64_t *)seg.data)[0] = INT64_MAX;
	((int64_t *)seg.data)[1] = 0;
	((int64_t *)seg.data)[2] = INT64_MIN;
	((int64_t *)seg.data)[3] = INT64_MAX;
	req[0].labels = huge;
	req[0].nlabels = 2;
	req[0].is_region = 1;
	assert_int_equal(nnp_classloc_sample(&seg, req, 1, NULL, &cl), 0);
	assert_true(cl.cls[0].nvox == 3 && cl.cls[0].n == 3);
	assert_int_equal(cl.cls[0].zyx[2] + cl.cls[0].zyx[5] + cl.cls[0].zyx[8], 2 + 0 + 3);
	nnp_classloc_release(&cl);
	nnp_classloc_release(&cl);   /* released twice: a no-op */
	nnp_vol_release(&seg);

	/* nothing requested */
	make_seg(&seg, NNP_I8, 1, 1, 1);
	assert_int_equal(nnp_classloc_sample(&seg, NULL, 0, NULL, &cl), 0);
	assert_int_equal(cl.n, 0);
	assert_int_equal(nnp_classloc_to_json(&cl, &j), 0);
	assert_int_equal(json_object_size(j), 0);
	json_decref(j);
	nnp_classloc_release(&cl);
	seg.f.shape[0] = 2;
	assert_int_equal(nnp_classloc_sample(&seg, req, 1, NULL, &cl), NNP_EDATA);
	seg.f.shape[0] = 1;
	nnp_vol_release(&seg);

	/* LabelManager rules */
	j = json_loads("{\"organ\": 1}", 0, NULL);
	assert_int_equal(nnp_classloc_reqs_from_labels(j, &r), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "background"));
	json_decref(j);
	j = json_loads("{\"background\": 0, \"a\": 1, \"ignore\": 3}", 0, NULL);
	assert_int_equal(nnp_classloc_reqs_from_labels(j, &r), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "ignore"));
	json_decref(j);
	j = json_loads("{\"background\": 0, \"a\": \"x\"}", 0, NULL);
	assert_int_equal(nnp_classloc_reqs_from_labels(j, &r), NNP_EDATA);
	json_decref(j);
	j = json_loads("{\"background\": 0, \"b\": 2, \"a\": [1], \"ignore\": 3}", 0, NULL);
	assert_int_equal(nnp_classloc_reqs_from_labels(j, &r), 0);   /* no regions: sorted labels */
	assert_int_equal(r.n, 3);
	assert_true(r.req[0].labels[0] == 1 && r.req[1].labels[0] == 2 && !r.req[0].is_region);
	assert_true(r.req[2].is_region && r.req[2].nlabels == 4 && r.req[2].labels[0] == -1 && r.req[2].labels[3] == 2);
	nnp_classloc_reqs_release(&r);
	json_decref(j);
	j = json_loads("{\"background\": 0, \"empty\": [], \"w\": [1, 2], \"bg2\": [0, 0]}", 0, NULL);
	assert_int_equal(nnp_classloc_reqs_from_labels(j, &r), 0);
	assert_int_equal(r.n, 2);
	assert_true(r.req[0].is_region && r.req[0].nlabels == 0 && r.req[1].nlabels == 2);
	{
		struct nnp_classloc_class c = { (int64_t *)r.req[0].labels, 0, 1, 0, 0, NULL };
		char key[16];
		nnp_classloc_key(&c, key, sizeof key);
		assert_string_equal(key, "()");
		c.labels = (int64_t *)r.req[1].labels;
		c.nlabels = 2;
		nnp_classloc_key(&c, key, 5);
		assert_string_equal(key, "(1, ");    /* truncated */
	}
	nnp_classloc_reqs_release(&r);
	nnp_classloc_reqs_release(&r);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nnunet_cases),
		cmocka_unit_test(test_sampling_fixture),
		cmocka_unit_test(test_synthetic),
		cmocka_unit_test(test_small_absent_json),
		cmocka_unit_test(test_num_samples),
		cmocka_unit_test(test_dtypes_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
