/* test_verify.c — unit tests for common/verify.c on small datasets written
 * with the library's own NIfTI writer in a temporary folder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "err.h"
#include "frame.h"
#include "json.h"
#include "nifti.h"
#include "verify.h"
#include "test_tmpdir.h"

static char root[256];   /* mkdtemp folder */
static char ds[512];     /* root/Dataset042_Unit */

static const char json_fmt[] =
	"{\"channel_names\": {\"0\": \"CT\", \"1\": \"T2\"},"
	" \"labels\": {\"background\": 0, \"a\": 1, \"b\": 2},"
	" \"numTraining\": %d, \"file_ending\": \".nii.gz\"}";

/* ---- helpers ---- */

static int setup(void **state)
{
	(void)state;
	if (!test_tmpdir(root, sizeof root, "verify"))
		return -1;
	snprintf(ds, sizeof ds, "%s/Dataset042_Unit", root);
	return 0;
}

static int teardown(void **state)
{
	char cmd[400];
	(void)state;
	if (getenv("NNP_TEST_KEEP"))
		return 0;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	return system(cmd);
}

static void write_text(const char *rel, const char *text)
{
	char p[700];
	FILE *f;
	snprintf(p, sizeof p, "%s/%s", ds, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void mkdirs(void)
{
	char p[700];
	mkdir(ds, 0755);
	snprintf(p, sizeof p, "%s/imagesTr", ds);
	mkdir(p, 0755);
	snprintf(p, sizeof p, "%s/labelsTr", ds);
	mkdir(p, 0755);
}

/* A volume z x y x x of dtype t, voxel i = value(i); written to ds/rel. */
static void write_vol(const char *rel, enum nnp_dtype t, int64_t z, int64_t y, int64_t x,
		      double (*value)(uint64_t i, void *arg), void *arg)
{
	struct nnp_vol v;
	struct nnp_nifti_opts o = { 1, 1, 0 };
	char p[700];
	uint64_t n;
	double *tmp;
	nnp_vol_init(&v);
	v.f.dtype = t;
	v.f.shape[0] = 1;
	v.f.shape[1] = z;
	v.f.shape[2] = y;
	v.f.shape[3] = x;
	v.f.spacing[0] = 2.5;
	v.f.spacing[1] = 0.8;
	v.f.spacing[2] = 0.7;
	nnp_frame_default_affine(&v.f);
	v.f.affine[0][3] = -10;
	v.f.affine[1][3] = 20.5;
	assert_int_equal(nnp_vol_alloc(&v), NNP_OK);
	n = nnp_frame_nvox(&v.f);
	tmp = malloc(n * sizeof *tmp);
	assert_non_null(tmp);
	for (uint64_t i = 0; i < n; i++)
		tmp[i] = value(i, arg);
	nnp_convert(t, v.data, NNP_F64, tmp, n);
	free(tmp);
	snprintf(p, sizeof p, "%s/%s", ds, rel);
	assert_int_equal(nnp_nifti_write_volume(p, &v, 0, 1, 0, &o), NNP_OK);
	nnp_vol_release(&v);
}

static double smooth(uint64_t i, void *arg)
{
	(void)arg;
	return 100.0 + (double)(i % 17);
}

/* Labels 0, 1, 2 in blocks (every value present). */
static double blocks(uint64_t i, void *arg)
{
	(void)arg;
	return (double)((i / 40) % 3);
}

/* blocks, but voxel k of arg[0..] gets the value arg[1]. */
static double blocks_with(uint64_t i, void *arg)
{
	const double *kv = arg;
	return (double)i == kv[0] ? kv[1] : blocks(i, NULL);
}

static void make_dataset(int ncases)
{
	char rel[128], json[512];
	mkdirs();
	snprintf(json, sizeof json, json_fmt, ncases);
	write_text("dataset.json", json);
	for (int c = 0; c < ncases; c++) {
		for (int ch = 0; ch < 2; ch++) {
			snprintf(rel, sizeof rel, "imagesTr/case_%03d_%04d.nii.gz", c, ch);
			write_vol(rel, NNP_F32, 4, 5, 6, smooth, NULL);
		}
		snprintf(rel, sizeof rel, "labelsTr/case_%03d.nii.gz", c);
		write_vol(rel, NNP_U8, 4, 5, 6, blocks, NULL);
	}
}

static struct nnp_verify_report *run(int threads, long max_errors)
{
	struct nnp_verify_opts o = { threads, max_errors };
	struct nnp_verify_report *r = NULL;
	assert_int_equal(nnp_verify_dataset(ds, &o, &r), NNP_OK);
	assert_non_null(r);
	return r;
}

/* The finding of severity sev and check id about a file ending in file. */
static const struct nnp_finding *find(const struct nnp_verify_report *r, enum nnp_severity sev,
				      const char *check, const char *file)
{
	for (size_t i = 0; i < r->nfindings; i++) {
		const struct nnp_finding *f = &r->findings[i];
		size_t n = strlen(f->file), m = strlen(file);
		if (f->severity == sev && !strcmp(f->check, check) && n >= m && !strcmp(f->file + n - m, file))
			return f;
	}
	print_error("no %s %s for %s; findings:\n", sev ? "warning" : "error", check, file);
	for (size_t i = 0; i < r->nfindings; i++)
		print_error("  %s %s: %s\n", r->findings[i].check, r->findings[i].file, r->findings[i].message);
	return NULL;
}

static void assert_contains(const char *s, const char *sub)
{
	if (!strstr(s, sub))
		fail_msg("'%s' does not contain '%s'", s, sub);
}

/* ---- tests ---- */

static void test_clean(void **state)
{
	struct nnp_verify_report *r;
	char sum[256];
	(void)state;
	make_dataset(3);
	r = run(2, 0);
	assert_int_equal(r->ncases, 3);
	assert_int_equal(r->nerrors, 0);
	assert_int_equal(r->nwarnings, 0);
	assert_false(r->truncated);
	assert_string_equal(r->dataset, "Dataset042_Unit");
	nnp_verify_summary(r, sum, sizeof sum);
	assert_string_equal(sum, "Dataset042_Unit: 3 cases, 0 errors, 0 warnings: OK");
	nnp_verify_report_free(r);
	nnp_verify_report_free(NULL);
}

static void test_label_values(void **state)
{
	double kv5[2] = { 7, 5 }, kvneg[2] = { 3, -1 }, kvbig[2] = { 11, 100000 };
	struct nnp_verify_report *r;
	const struct nnp_finding *f;
	(void)state;
	make_dataset(3);
	write_vol("labelsTr/case_000.nii.gz", NNP_U8, 4, 5, 6, blocks_with, kv5);
	write_vol("labelsTr/case_001.nii.gz", NNP_I8, 4, 5, 6, blocks_with, kvneg);
	write_vol("labelsTr/case_002.nii.gz", NNP_I32, 4, 5, 6, blocks_with, kvbig);
	r = run(3, 0);
	assert_int_equal(r->nerrors, 3);
	assert_non_null(f = find(r, NNP_SEV_ERROR, "unexpected-labels", "labelsTr/case_000.nii.gz"));
	assert_string_equal(f->message, "unexpected labels [5]; dataset.json declares 0..2");
	assert_string_equal(f->case_id, "case_000");
	assert_non_null(f = find(r, NNP_SEV_ERROR, "negative-labels", "labelsTr/case_001.nii.gz"));
	assert_string_equal(f->message, "negative label values [-1]");
	/* a value outside the bitmap goes through the hash set */
	assert_non_null(f = find(r, NNP_SEV_ERROR, "unexpected-labels", "labelsTr/case_002.nii.gz"));
	assert_string_equal(f->message, "unexpected labels [100000]; dataset.json declares 0..2");
	nnp_verify_report_free(r);
}

static double distinct(uint64_t i, void *arg)
{
	(void)arg;
	return 1000000.0 + (double)i;
}

static void test_many_distinct_values(void **state)
{
	struct nnp_verify_report *r;
	const struct nnp_finding *f;
	(void)state;
	make_dataset(1);
	write_text("dataset.json", "{\"channel_names\": {\"0\": \"CT\", \"1\": \"T2\"}, \"labels\": "
		   "{\"background\": 0, \"a\": 1}, \"numTraining\": 1, \"file_ending\": \".nii.gz\"}");
	/* 70000 distinct values, none in the bitmap: the hash set grows to its cap */
	write_vol("imagesTr/case_000_0000.nii.gz", NNP_F32, 10, 70, 100, smooth, NULL);
	write_vol("imagesTr/case_000_0001.nii.gz", NNP_F32, 10, 70, 100, smooth, NULL);
	write_vol("labelsTr/case_000.nii.gz", NNP_I32, 10, 70, 100, distinct, NULL);
	r = run(1, 0);
	assert_non_null(f = find(r, NNP_SEV_ERROR, "unexpected-labels", "labelsTr/case_000.nii.gz"));
	assert_contains(f->message, "unexpected labels [1000000, 1000001, ");
	assert_contains(f->message, "... (65536 values)] and more: over 65536 distinct values");
	assert_contains(f->message, "an image, not a label map?");
	nnp_verify_report_free(r);
}

static double with_nan(uint64_t i, void *arg)
{
	(void)arg;
	return i == 3 || i == 50 ? NAN : i == 51 ? -INFINITY : smooth(i, NULL);
}

static double half(uint64_t i, void *arg)
{
	(void)arg;
	return i == 9 ? 0.5 : blocks(i, NULL);
}

static void test_nan_and_float_labels(void **state)
{
	struct nnp_verify_report *r;
	const struct nnp_finding *f;
	(void)state;
	make_dataset(2);
	write_vol("imagesTr/case_001_0001.nii.gz", NNP_F64, 4, 5, 6, with_nan, NULL);
	write_vol("labelsTr/case_000.nii.gz", NNP_F32, 4, 5, 6, half, NULL);
	r = run(2, 0);
	assert_non_null(f = find(r, NNP_SEV_ERROR, "nan-image", "imagesTr/case_001_0001.nii.gz"));
	assert_string_equal(f->message, "image contains 2 NaN and 1 Inf voxels (of 120)");
	assert_non_null(f = find(r, NNP_SEV_ERROR, "non-integer-labels", "labelsTr/case_000.nii.gz"));
	assert_string_equal(f->message, "1 voxels have non-integer label values (e.g. 0.5)");
	assert_non_null(find(r, NNP_SEV_WARNING, "label-dtype", "labelsTr/case_000.nii.gz"));
	assert_int_equal(r->nerrors, 2);
	assert_int_equal(r->nwarnings, 1);
	nnp_verify_report_free(r);
}

static void test_json_all_problems_at_once(void **state)
{
	struct nnp_verify_report *r;
	const struct nnp_finding *f;
	(void)state;
	make_dataset(2);
	write_text("dataset.json", "{\"modality\": {\"0\": \"CT\", \"1\": \"T2\"},"
		   " \"labels\": {\"background\": 1, \"a\": [1, 2], \"b\": 4, \"c\": true},"
		   " \"numTraining\": 2.0, \"file_ending\": \".nii.gz\"}");
	r = run(1, 0);
	assert_non_null(find(r, NNP_SEV_WARNING, "legacy-modality", "dataset.json"));
	assert_non_null(f = find(r, NNP_SEV_ERROR, "background", "dataset.json"));
	assert_string_equal(f->message, "labels.background: must be 0, not 1");
	assert_null(f->case_id);
	assert_non_null(f = find(r, NNP_SEV_ERROR, "label-value", "dataset.json"));
	assert_string_equal(f->message, "labels.c: must be an integer or a list of integers, not true");
	assert_non_null(f = find(r, NNP_SEV_ERROR, "regions", "dataset.json"));
	assert_string_equal(f->message, "regions_class_order: missing: labels define 3 regions (lists "
			    "of values)");
	assert_non_null(f = find(r, NNP_SEV_WARNING, "num-training", "dataset.json"));
	/* background is not 0: the declared labels are unknown, values are not checked */
	for (size_t i = 0; i < r->nfindings; i++)
		assert_string_not_equal(r->findings[i].check, "unexpected-labels");
	nnp_verify_report_free(r);
}

static void test_deterministic_and_capped(void **state)
{
	double kv[2] = { 0, 9 };
	struct nnp_verify_report *a, *b, *c;
	char p[700];
	(void)state;
	make_dataset(8);
	for (int i = 0; i < 8; i += 2) {
		char rel[64];
		snprintf(rel, sizeof rel, "labelsTr/case_%03d.nii.gz", i);
		write_vol(rel, NNP_U8, 4, 5, 6, blocks_with, kv);
	}
	snprintf(p, sizeof p, "%s/imagesTr/case_005_0001.nii.gz", ds);
	assert_int_equal(unlink(p), 0);
	a = run(1, 0);
	b = run(4, 0);
	assert_int_equal(a->nfindings, 5);
	assert_int_equal(a->nfindings, b->nfindings);
	for (size_t i = 0; i < a->nfindings; i++) {
		assert_string_equal(a->findings[i].file, b->findings[i].file);
		assert_string_equal(a->findings[i].message, b->findings[i].message);
		if (i)   /* case order */
			assert_true(strcmp(a->findings[i - 1].case_id, a->findings[i].case_id) <= 0);
	}
	c = run(4, 2);
	assert_int_equal(c->nerrors, 2);
	assert_true(c->truncated);
	assert_string_equal(c->findings[1].file, a->findings[1].file);
	nnp_verify_report_free(a);
	nnp_verify_report_free(b);
	nnp_verify_report_free(c);
}

static void test_report_json(void **state)
{
	struct nnp_verify_report *r;
	json_t *j, *e;
	char *s;
	(void)state;
	make_dataset(2);
	write_text("dataset.json", "{\"channel_names\": {\"0\": \"CT\", \"1\": \"T2\"}, \"labels\": "
		   "{\"background\": 0, \"a\": 1, \"b\": 2}, \"numTraining\": 5, \"file_ending\": \".nii.gz\"}");
	r = run(1, 0);
	assert_int_equal(nnp_verify_report_json(r, &j), NNP_OK);
	assert_string_equal(json_string_value(json_object_get(j, "dataset")), "Dataset042_Unit");
	assert_int_equal(json_integer_value(json_object_get(j, "cases")), 2);
	assert_true(json_is_false(json_object_get(j, "ok")));
	e = json_array_get(json_object_get(j, "errors"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "check")), "num-training");
	assert_true(json_is_null(json_object_get(e, "case")));
	assert_string_equal(json_string_value(json_object_get(e, "message")),
			    "numTraining: is 5 but 2 training cases were found in imagesTr");
	assert_string_equal(json_string_value(json_object_get(e, "fix")),
			    "set \"numTraining\": 2, or add the missing cases");
	assert_int_equal(json_array_size(json_object_get(j, "warnings")), 0);
	assert_int_equal(nnp_json_dumps(j, 2, 0, &s), NNP_OK);
	assert_contains(s, "\"errors\": [\n");
	free(s);
	json_decref(j);
	nnp_verify_report_free(r);
}

static double last_slice_9(uint64_t i, void *arg)
{
	const uint64_t *n = arg;
	return i == n[0] - 1 ? 9 : (double)(i % 2);
}

/* A label larger than one slab (8 MiB): the value in the last slice is found. */
static void test_streams_slabs(void **state)
{
	uint64_t n = 45ull * 512 * 512;
	struct nnp_verify_report *r;
	const struct nnp_finding *f;
	(void)state;
	mkdirs();
	write_text("dataset.json", "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0,"
		   " \"a\": 1}, \"numTraining\": 1, \"file_ending\": \".nii\"}");
	write_vol("imagesTr/big_0000.nii", NNP_U8, 45, 512, 512, blocks, NULL);
	write_vol("labelsTr/big.nii", NNP_U8, 45, 512, 512, last_slice_9, &n);
	r = run(1, 0);
	assert_non_null(f = find(r, NNP_SEV_ERROR, "unexpected-labels", "labelsTr/big.nii"));
	assert_string_equal(f->message, "unexpected labels [9]; dataset.json declares 0..1");
	nnp_verify_report_free(r);
}

static void test_dict_mode(void **state)
{
	char json[1024];
	struct nnp_verify_report *r;
	const struct nnp_finding *f;
	(void)state;
	make_dataset(2);
	setenv("NNP_UNIT_DS", ds, 1);
	snprintf(json, sizeof json, "{\"channel_names\": {\"0\": \"CT\", \"1\": \"T2\"}, \"labels\": "
		 "{\"background\": 0, \"a\": 1, \"b\": 2}, \"numTraining\": 2, \"file_ending\": \".nii.gz\","
		 " \"dataset\": {\"x\": {\"images\": [\"$NNP_UNIT_DS/imagesTr/case_000_0000.nii.gz\","
		 " \"imagesTr/case_000_0001.nii.gz\"], \"label\": \"labelsTr/case_000.nii.gz\"},"
		 " \"y\": {\"images\": [\"imagesTr/case_001_0000.nii.gz\"], \"label\": \"labelsTr/nope.nii.gz\"}}}");
	write_text("dataset.json", json);
	r = run(2, 0);
	assert_int_equal(r->ncases, 2);
	assert_non_null(f = find(r, NNP_SEV_ERROR, "missing-channel", "dataset.json"));
	assert_string_equal(f->case_id, "y");
	assert_non_null(find(r, NNP_SEV_ERROR, "missing-label", "labelsTr/nope.nii.gz"));
	assert_int_equal(r->nerrors, 2);
	nnp_verify_report_free(r);
	unsetenv("NNP_UNIT_DS");
}

static void test_not_a_folder(void **state)
{
	struct nnp_verify_report *r = (void *)1;
	char p[700];
	(void)state;
	snprintf(p, sizeof p, "%s/nosuch", root);
	assert_int_equal(nnp_verify_dataset(p, NULL, &r), NNP_EDATA);
	assert_null(r);
	assert_contains(nnp_err_msg(), "nosuch");
	assert_int_equal(nnp_verify_dataset("", NULL, &r), NNP_EUSAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clean, setup, teardown),
		cmocka_unit_test_setup_teardown(test_label_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_distinct_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nan_and_float_labels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_all_problems_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deterministic_and_capped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streams_slabs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dict_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_folder, setup, teardown),
	};
	return cmocka_run_group_tests_name("verify", tests, NULL, NULL);
}
