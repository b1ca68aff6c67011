/* test_split.c — common/split.c: sklearn KFold against sklearn's own output
 * (tests/fixtures/ops/kfold.json, sklearn 1.2.1), the trainer's random
 * 80:20 fallback against numpy (randomstate_vectors.json), the nnU-Net
 * splits_final.json fixtures byte for byte, validation, comparison and the
 * case ids of preprocessed folders. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "err.h"
#include "json.h"
#include "split.h"
#include "test_tmpdir.h"

static json_t *kfold_fx, *rng_fx;

static int setup(void **state)
{
	(void)state;
	kfold_fx = json_load_file("tests/fixtures/ops/kfold.json", 0, NULL);
	rng_fx = json_load_file("tests/fixtures/ops/randomstate_vectors.json", 0, NULL);
	return kfold_fx && rng_fx ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	json_decref(kfold_fx);
	json_decref(rng_fx);
	return 0;
}

static void assert_idx(const size_t *got, size_t n, const json_t *want)
{
	assert_int_equal(n, json_array_size(want));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(got[i], json_integer_value(json_array_get(want, i)));
}

/* "PREFIX000".."PREFIX{n-1}" */
static char **make_ids(const char *prefix, size_t n)
{
	char **v = calloc(n, sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++) {
		assert_true(asprintf(&v[i], "%s%03zu", prefix, i) > 0);
	}
	return v;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *b;
	long n;
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = calloc((size_t)n + 1, 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return b;
}

/* ---- KFold ---- */

static void test_kfold_sklearn_tables(void **state)
{
	size_t i;
	json_t *t;
	(void)state;
	json_array_foreach(json_object_get(kfold_fx, "tables"), i, t) {
		size_t n = (size_t)json_integer_value(json_object_get(t, "n"));
		json_t *folds = json_object_get(t, "folds");
		struct nnp_fold *f;
		assert_int_equal(nnp_kfold(n, 5, 12345, &f), NNP_OK);
		assert_int_equal(json_array_size(folds), 5);
		for (size_t k = 0; k < 5; k++) {
			json_t *w = json_array_get(folds, k);
			assert_idx(f[k].train, f[k].ntrain, json_object_get(w, "train"));
			assert_idx(f[k].val, f[k].nval, json_object_get(w, "val"));
		}
		nnp_folds_free(f, 5);
	}
	assert_true(i >= 8);
}

/* nnU-Net's generate_crossval_split on case_000..case_006, as JSON. */
static void test_kfold_crossval_example(void **state)
{
	json_t *ex = json_object_get(kfold_fx, "generate_crossval_split_example");
	json_t *idj = json_object_get(ex, "identifiers"), *got;
	size_t n = json_array_size(idj);
	char **ids = calloc(n, sizeof *ids);
	struct nnp_fold *f;
	(void)state;
	for (size_t i = 0; i < n; i++)
		ids[i] = strdup(json_string_value(json_array_get(idj, i)));
	assert_int_equal(nnp_kfold(n, 5, 12345, &f), NNP_OK);
	got = nnp_splits_json(ids, f, 5);
	assert_non_null(got);
	assert_true(json_equal(got, json_object_get(ex, "splits")));
	json_decref(got);
	nnp_folds_free(f, 5);
	nnp_strv_free(ids, n);
}

/* nnunet-facts §1.5 [verified]: case_000..case_009. */
static void test_kfold_verified_ten(void **state)
{
	static const size_t want[5][2] = { { 0, 7 }, { 3, 9 }, { 4, 6 }, { 1, 8 }, { 2, 5 } };
	struct nnp_fold *f;
	(void)state;
	assert_int_equal(nnp_kfold(10, 5, 12345, &f), NNP_OK);
	for (int k = 0; k < 5; k++) {
		assert_int_equal(f[k].nval, 2);
		assert_int_equal(f[k].ntrain, 8);
		assert_int_equal(f[k].val[0], want[k][0]);
		assert_int_equal(f[k].val[1], want[k][1]);
	}
	nnp_folds_free(f, 5);
}

/* Chunk sizes n/k + 1 for the first n % k folds; val sets partition 0..n-1;
 * train = complement; everything ascending. */
static void test_kfold_chunk_sizes(void **state)
{
	(void)state;
	for (size_t k = 2; k <= 7; k++) {
		for (size_t n = k; n <= 41; n++) {
			struct nnp_fold *f;
			unsigned char *seen = calloc(n, 1);
			assert_int_equal(nnp_kfold(n, k, 12345, &f), NNP_OK);
			for (size_t i = 0; i < k; i++) {
				assert_int_equal(f[i].nval, n / k + (i < n % k));
				assert_int_equal(f[i].ntrain + f[i].nval, n);
				for (size_t j = 0; j < f[i].nval; j++) {
					assert_true(f[i].val[j] < n);
					assert_int_equal(seen[f[i].val[j]]++, 0);
					if (j)
						assert_true(f[i].val[j - 1] < f[i].val[j]);
				}
				for (size_t j = 1; j < f[i].ntrain; j++)
					assert_true(f[i].train[j - 1] < f[i].train[j]);
			}
			for (size_t j = 0; j < n; j++)
				assert_int_equal(seen[j], 1);
			free(seen);
			nnp_folds_free(f, k);
		}
	}
}

static void test_kfold_too_few(void **state)
{
	struct nnp_fold *f = (void *)1;
	(void)state;
	assert_int_equal(nnp_kfold(4, 5, 12345, &f), NNP_EDATA);
	assert_null(f);
	assert_non_null(strstr(nnp_err_msg(), "4 cases"));
	assert_non_null(strstr(nnp_err_msg(), "5 folds"));
	assert_int_equal(nnp_kfold(0, 5, 12345, &f), NNP_EDATA);
	assert_int_equal(nnp_kfold(10, 1, 12345, &f), NNP_EUSAGE);
	assert_int_equal(nnp_kfold(5, 5, 12345, &f), NNP_OK);
	for (int k = 0; k < 5; k++)
		assert_int_equal(f[k].nval, 1);
	nnp_folds_free(f, 5);
}

/* ---- the random 80:20 fallback ---- */

static void test_random_numpy_vector(void **state)
{
	size_t i;
	json_t *e;
	int found = 0;
	(void)state;
	json_array_foreach(json_object_get(rng_fx, "choice_without_replacement"), i, e) {
		size_t n = (size_t)json_integer_value(json_object_get(e, "n"));
		json_t *v = json_object_get(e, "values");
		struct nnp_fold f;
		unsigned char *in;
		size_t nv = 0;
		if (json_integer_value(json_object_get(e, "seed")) != 12350)
			continue;
		found = 1;
		assert_int_equal(n, 12);
		assert_int_equal(json_array_size(v), (size_t)(n * 0.8));
		assert_int_equal(nnp_split_random(n, 12350, &f), NNP_OK);
		assert_idx(f.train, f.ntrain, v);   /* draw order */
		in = calloc(n, 1);
		for (size_t k = 0; k < f.ntrain; k++)
			in[f.train[k]] = 1;
		for (size_t k = 0; k < n; k++)
			if (!in[k])
				assert_int_equal(f.val[nv++], k);   /* the rest, ascending */
		assert_int_equal(nv, f.nval);
		free(in);
		nnp_fold_release(&f);
	}
	assert_true(found);
}

/* nnunet-facts Appendix A: fold 5 of 10 cases. */
static void test_random_facts_example(void **state)
{
	static const size_t want[8] = { 0, 8, 4, 5, 3, 9, 7, 6 };
	struct nnp_fold f;
	(void)state;
	assert_int_equal(nnp_split_random(10, 12345 + 5, &f), NNP_OK);
	assert_int_equal(f.ntrain, 8);
	assert_int_equal(f.nval, 2);
	for (int i = 0; i < 8; i++)
		assert_int_equal(f.train[i], want[i]);
	assert_int_equal(f.val[0], 1);
	assert_int_equal(f.val[1], 2);
	nnp_fold_release(&f);
	/* int(n * 0.8) for small n: 1 -> 0 train, 4 -> 3, 5 -> 4 */
	assert_int_equal(nnp_split_random(1, 12346, &f), NNP_OK);
	assert_int_equal(f.ntrain, 0);
	assert_int_equal(f.nval, 1);
	nnp_fold_release(&f);
	assert_int_equal(nnp_split_random(4, 12346, &f), NNP_OK);
	assert_int_equal(f.ntrain, 3);
	nnp_fold_release(&f);
	assert_int_equal(nnp_split_random(0, 12346, &f), NNP_EDATA);
}

/* ---- the nnU-Net files, byte for byte ---- */

static void check_fixture(const char *file, const char *prefix, size_t n)
{
	char **ids = make_ids(prefix, n), *s, *want = slurp(file);
	struct nnp_fold *f;
	json_t *j;
	assert_int_equal(nnp_kfold(n, 5, 12345, &f), NNP_OK);
	assert_non_null(j = nnp_splits_json(ids, f, 5));
	assert_int_equal(nnp_json_dumps(j, 4, NNP_JSON_SORT_KEYS, &s), NNP_OK);
	assert_string_equal(s, want);
	free(s);
	free(want);
	json_decref(j);
	nnp_folds_free(f, 5);
	nnp_strv_free(ids, n);
}

static void test_fixture_files(void **state)
{
	(void)state;
	check_fixture("tests/fixtures/Dataset901_Spheres/splits_final.json", "sph_", 12);
	check_fixture("tests/fixtures/Dataset903_MultiChannel/splits_final.json", "mc_", 10);
}

/* ---- ids, validation, comparison ---- */

static void test_ids_sort(void **state)
{
	char *v[4] = { strdup("b"), strdup("B"), strdup("a_1"), strdup("a") };
	char *d[2] = { strdup("x"), strdup("x") };
	(void)state;
	assert_int_equal(nnp_ids_sort(v, 4), NNP_OK);   /* byte order, like np.sort */
	assert_string_equal(v[0], "B");
	assert_string_equal(v[1], "a");
	assert_string_equal(v[2], "a_1");
	assert_string_equal(v[3], "b");
	assert_int_equal(nnp_ids_sort(d, 2), NNP_EDATA);
	for (int i = 0; i < 4; i++)
		free(v[i]);
	free(d[0]);
	free(d[1]);
}

static int validate_text(const char *text, char *const *ids, size_t n)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	int rc;
	assert_non_null(j);
	rc = nnp_splits_validate(j, "F", ids, n);
	json_decref(j);
	return rc;
}

static void test_validate(void **state)
{
	char *ids[3] = { "a", "b", "c" };
	(void)state;
	assert_int_equal(validate_text("[{\"train\": [\"a\", \"b\"], \"val\": [\"c\"]}]", ids, 3),
			 NNP_OK);
	assert_int_equal(validate_text("[{\"train\": [\"zz\"], \"val\": [\"c\"]}]", NULL, 0),
			 NNP_OK);
	assert_int_equal(validate_text("{}", ids, 3), NNP_EDATA);
	assert_int_equal(validate_text("[]", ids, 3), NNP_EDATA);
	assert_int_equal(validate_text("[[]]", ids, 3), NNP_EDATA);
	assert_int_equal(validate_text("[{\"train\": [\"a\"]}]", ids, 3), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "val"));
	assert_int_equal(validate_text("[{\"train\": [\"a\"], \"val\": []}]", ids, 3), NNP_EDATA);
	assert_int_equal(validate_text("[{\"train\": [1], \"val\": [\"a\"]}]", ids, 3), NNP_EDATA);
	assert_int_equal(validate_text("[{\"train\": [\"a\", \"a\"], \"val\": [\"b\"]}]", ids, 3),
			 NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "twice"));
	assert_int_equal(validate_text("[{\"train\": [\"a\"], \"val\": [\"b\"]}, "
				       "{\"train\": [\"a\"], \"val\": [\"x\"]}]", ids, 3), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "fold 1"));
	assert_non_null(strstr(nnp_err_msg(), "'x'"));
}

static void test_compare(void **state)
{
	json_t *a = json_loads("[{\"train\": [\"a\", \"b\"], \"val\": [\"c\"]}]", 0, NULL);
	json_t *b = json_loads("[{\"val\": [\"c\"], \"train\": [\"b\", \"a\"]}, "
			       "{\"train\": [\"c\"], \"val\": [\"a\"]}]", 0, NULL);
	json_t *c = json_loads("[{\"train\": [\"a\"], \"val\": [\"c\"]}]", 0, NULL);
	(void)state;
	assert_int_equal(nnp_splits_compare(a, "A", b, "B"), NNP_OK);  /* sets; B may have more */
	assert_int_equal(nnp_splits_compare(b, "B", a, "A"), NNP_EDATA);
	assert_int_equal(nnp_splits_compare(a, "A", c, "C"), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "'b'"));
	json_decref(a);
	json_decref(b);
	json_decref(c);
}

/* ---- preprocessed folders ---- */

static char tmpdir[PATH_MAX];

static void touch(const char *rel)
{
	char p[PATH_MAX * 2];
	FILE *f;
	snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
	for (char *s = p + strlen(tmpdir) + 1; *s; s++) {
		if (*s == '/') {
			*s = '\0';
			mkdir(p, 0755);
			*s = '/';
		}
	}
	f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
}

static int rm_cb(const char *p, const struct stat *st, int fl, struct FTW *ftw)
{
	(void)st;
	(void)fl;
	(void)ftw;
	return remove(p);
}

static void test_preprocessed_ids(void **state)
{
	char **ids, from[PATH_MAX];
	size_t n;
	(void)state;
	assert_non_null(test_tmpdir(tmpdir, sizeof tmpdir, "split"));
	/* nothing yet */
	assert_int_equal(nnp_preprocessed_ids(tmpdir, NULL, &ids, &n, from, sizeof from), NNP_OK);
	assert_int_equal(n, 0);
	assert_null(ids);
	touch("dataset.json");
	touch("gt_segmentations/z.nii.gz");
	touch("gt_segmentations/zz.b2nd");
	touch("nnUNetPlans_3d_fullres/b.b2nd");
	touch("nnUNetPlans_3d_fullres/b_seg.b2nd");
	touch("nnUNetPlans_3d_fullres/b.pkl");
	touch("nnUNetPlans_3d_fullres/a.b2nd");
	touch("nnUNetPlans_3d_fullres/a_seg.b2nd");
	touch("nnUNetPlans_3d_fullres/.hidden.b2nd");
	touch("nnUNetPlans_2d/a.npz");
	touch("nnUNetPlans_2d/b.npz");
	touch("nnUNetPlans_2d/b.npy");
	touch("nnUNetPlans_2d/b_seg.npy");
	touch("nnpPlans_3d_fullres/a.nnp");
	touch("nnpPlans_3d_fullres/b.nnp");
	touch("empty_folder/readme.txt");
	assert_int_equal(nnp_preprocessed_ids(tmpdir, NULL, &ids, &n, from, sizeof from), NNP_OK);
	assert_int_equal(n, 2);
	assert_string_equal(ids[0], "a");
	assert_string_equal(ids[1], "b");
	assert_non_null(strstr(from, "nnUNetPlans_2d"));   /* first in sorted order */
	nnp_strv_free(ids, n);
	/* a folder that disagrees */
	touch("nnUNetPlans_3d_lowres/a.b2nd");
	assert_int_equal(nnp_preprocessed_ids(tmpdir, NULL, &ids, &n, from, sizeof from),
			 NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "nnUNetPlans_3d_lowres"));
	assert_non_null(strstr(nnp_err_msg(), "'b'"));
	/* --data picks one */
	assert_int_equal(nnp_preprocessed_ids(tmpdir, "nnUNetPlans_3d_lowres", &ids, &n, from,
					      sizeof from), NNP_OK);
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], "a");
	nnp_strv_free(ids, n);
	assert_int_equal(nnp_preprocessed_ids(tmpdir, "empty_folder", &ids, &n, from, sizeof from),
			 NNP_EDATA);
	assert_int_equal(nnp_preprocessed_ids(tmpdir, "missing", &ids, &n, from, sizeof from),
			 NNP_EDATA);
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* nnp_split_make: create, keep, force, print only, copy from raw. */
static void test_split_make(void **state)
{
	struct nnp_split_opts o;
	struct nnp_split_result r;
	char pp[PATH_MAX * 2], raw[PATH_MAX * 2], out[PATH_MAX * 3], *s, *want;
	(void)state;
	assert_non_null(test_tmpdir(tmpdir, sizeof tmpdir, "split"));
	for (int i = 0; i < 12; i++) {
		char rel[128];
		snprintf(rel, sizeof rel, "pp/Dataset901_Spheres/nnUNetPlans_3d_fullres/sph_%03d.b2nd", i);
		touch(rel);
	}
	snprintf(pp, sizeof pp, "%s/pp/Dataset901_Spheres", tmpdir);
	snprintf(out, sizeof out, "%s/splits_final.json", pp);
	memset(&o, 0, sizeof o);
	o.dir = pp;
	o.raw = NULL;
	o.write = 1;
	o.folds = 5;
	o.seed = 12345;
	unsetenv("nnUNet_raw");
	assert_int_equal(nnp_split_make(&o, &r), NNP_OK);
	assert_int_equal(r.action, NNP_SPLIT_CREATED);
	assert_int_equal(r.ncases, 12);
	assert_string_equal(r.out, out);
	nnp_split_result_release(&r);
	s = slurp(out);
	want = slurp("tests/fixtures/Dataset901_Spheres/splits_final.json");
	assert_string_equal(s, want);
	free(s);
	/* kept */
	assert_int_equal(nnp_split_make(&o, &r), NNP_OK);
	assert_int_equal(r.action, NNP_SPLIT_EXISTING);
	assert_int_equal(json_array_size(r.splits), 5);
	nnp_split_result_release(&r);
	/* print only with 3 folds: computed, not written */
	o.write = 0;
	o.force = 1;
	o.folds = 3;
	assert_int_equal(nnp_split_make(&o, &r), NNP_OK);
	assert_int_equal(r.action, NNP_SPLIT_CREATED);
	assert_int_equal(json_array_size(r.splits), 3);
	nnp_split_result_release(&r);
	s = slurp(out);
	assert_string_equal(s, want);
	free(s);
	free(want);
	/* a raw dataset with its own splits file: copied byte for byte */
	snprintf(raw, sizeof raw, "%s/raw", tmpdir);
	touch("raw/Dataset901_Spheres/splits_final.json");
	{
		FILE *f;
		snprintf(out, sizeof out, "%s/Dataset901_Spheres/splits_final.json", raw);
		f = fopen(out, "w");
		fputs("[{\"train\":[\"sph_000\"],\"val\":[\"sph_001\"]}]\n", f);
		fclose(f);
	}
	setenv("nnUNet_raw", raw, 1);
	o.write = 1;
	o.folds = 5;
	assert_int_equal(nnp_split_make(&o, &r), NNP_OK);
	assert_int_equal(r.action, NNP_SPLIT_COPIED);
	nnp_split_result_release(&r);
	snprintf(out, sizeof out, "%s/splits_final.json", pp);
	s = slurp(out);
	assert_string_equal(s, "[{\"train\":[\"sph_000\"],\"val\":[\"sph_001\"]}]\n");
	free(s);
	/* kept, and agreeing with the raw file */
	o.force = 0;
	assert_int_equal(nnp_split_make(&o, &r), NNP_OK);
	assert_int_equal(r.action, NNP_SPLIT_EXISTING);
	nnp_split_result_release(&r);
	unsetenv("nnUNet_raw");
	/* too few cases */
	touch("pp/Dataset902_Few/nnUNetPlans_2d/a.b2nd");
	snprintf(pp, sizeof pp, "%s/pp/Dataset902_Few", tmpdir);
	o.dir = pp;
	assert_int_equal(nnp_split_make(&o, &r), NNP_EDATA);
	assert_null(r.splits);
	snprintf(out, sizeof out, "%s/splits_final.json", pp);
	assert_int_not_equal(access(out, F_OK), 0);
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kfold_sklearn_tables),
		cmocka_unit_test(test_kfold_crossval_example),
		cmocka_unit_test(test_kfold_verified_ten),
		cmocka_unit_test(test_kfold_chunk_sizes),
		cmocka_unit_test(test_kfold_too_few),
		cmocka_unit_test(test_random_numpy_vector),
		cmocka_unit_test(test_random_facts_example),
		cmocka_unit_test(test_fixture_files),
		cmocka_unit_test(test_ids_sort),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_compare),
		cmocka_unit_test(test_preprocessed_ids),
		cmocka_unit_test(test_split_make),
	};
	return cmocka_run_group_tests_name("split", tests, setup, teardown);
}
