/* test_dataset.c — unit tests for common/dataset.c on temporary datasets
 * (dataset.json plus empty files named like images). */
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
#include "dataset.h"
#include "err.h"
#include "test_tmpdir.h"

static const char json_ok[] =
	"{\"channel_names\": {\"0\": \"T1\", \"1\": \"T2\"},"
	" \"labels\": {\"background\": 0, \"a\": 1, \"b\": 2},"
	" \"numTraining\": 3, \"file_ending\": \".nii.gz\"}";

struct fx {
	char root[512];        /* mkdtemp folder, like $nnUNet_raw */
	char ds[1024];         /* root/Dataset042_Test */
};

/* ---- helpers ---- */

static void mkdirs(const char *path)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		mkdir(p, 0755);
		*s = '/';
	}
	mkdir(p, 0755);
}

static void write_at(const char *dir, const char *rel, const char *text)
{
	char p[PATH_MAX], d[PATH_MAX];
	FILE *f;
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	snprintf(d, sizeof d, "%s", p);
	*strrchr(d, '/') = '\0';
	mkdirs(d);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void touch(const struct fx *x, const char *rel)
{
	write_at(x->ds, rel, "");
}

static void set_json(const struct fx *x, const char *text)
{
	write_at(x->ds, "dataset.json", text);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof *x);
	if (!x)
		return -1;
	if (!test_tmpdir(x->root, sizeof x->root, "dataset"))
		return -1;
	snprintf(x->ds, sizeof x->ds, "%s/Dataset042_Test", x->root);
	mkdirs(x->ds);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	nftw(x->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(x);
	return 0;
}

static struct nnp_dataset *open_ok(const struct fx *x)
{
	struct nnp_dataset *d = NULL;
	int rc = nnp_dataset_open(x->ds, &d);
	if (rc)
		fail_msg("nnp_dataset_open: %s", nnp_err_msg());
	assert_non_null(d);
	return d;
}

/* Open must fail with NNP_EDATA and a message containing want. */
static void open_fails(const struct fx *x, const char *want)
{
	struct nnp_dataset *d = (struct nnp_dataset *)1;
	int rc = nnp_dataset_open(x->ds, &d);
	assert_int_equal(rc, NNP_EDATA);
	assert_null(d);
	if (!strstr(nnp_err_msg(), want))
		fail_msg("message '%s' lacks '%s'", nnp_err_msg(), want);
}

static void assert_msg_has(const char *want)
{
	if (!strstr(nnp_err_msg(), want))
		fail_msg("message '%s' lacks '%s'", nnp_err_msg(), want);
}

static void assert_path(const char *got, const struct fx *x, const char *rel)
{
	char want[PATH_MAX];
	snprintf(want, sizeof want, "%s/%s", x->ds, rel);
	assert_non_null(got);
	assert_string_equal(got, want);
}

/* ---- dataset.json ---- */

static void test_open_fields(void **state)
{
	struct fx *x = *state;
	struct nnp_dataset *d;
	set_json(x, json_ok);
	d = open_ok(x);
	assert_string_equal(d->name, "Dataset042_Test");
	assert_int_equal(d->id, 42);
	assert_string_equal(d->file_ending, ".nii.gz");
	assert_int_equal(d->nchannels, 2);
	assert_string_equal(d->channel_names[0], "T1");
	assert_string_equal(d->channel_names[1], "T2");
	assert_int_equal(d->nlabels, 3);
	assert_string_equal(d->labels[0].name, "background");
	assert_string_equal(d->labels[2].name, "b");
	assert_int_equal(d->labels[2].values[0], 2);
	assert_int_equal(d->has_regions, 0);
	assert_int_equal(d->num_training, 3);
	assert_non_null(d->json);
	nnp_dataset_free(d);
	nnp_dataset_free(NULL);
}

static void test_open_trailing_slash_and_no_id(void **state)
{
	struct fx *x = *state;
	struct nnp_dataset *d = NULL;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/plain", x->root);
	write_at(dir, "dataset.json", json_ok);
	strcat(dir, "//");
	assert_int_equal(nnp_dataset_open(dir, &d), NNP_OK);
	assert_string_equal(d->name, "plain");
	assert_int_equal(d->id, -1);
	nnp_dataset_free(d);
}

static void test_legacy_modality(void **state)
{
	struct fx *x = *state;
	struct nnp_dataset *d;
	set_json(x, "{\"modality\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0},"
		 " \"numTraining\": 0, \"file_ending\": \".nrrd\"}");
	d = open_ok(x);
	assert_int_equal(d->nchannels, 1);
	assert_string_equal(d->channel_names[0], "CT");
	nnp_dataset_free(d);
}

static void test_regions(void **state)
{
	struct fx *x = *state;
	struct nnp_dataset *d;
	set_json(x, "{\"channel_names\": {\"0\": \"FLAIR\"},"
		 " \"labels\": {\"background\": 0, \"whole\": [1, 2, 3], \"core\": [2, 3],"
		 " \"enh\": 3, \"ignore\": 4},"
		 " \"regions_class_order\": [1, 2, 3], \"numTraining\": 1, \"file_ending\": \".nii.gz\"}");
	d = open_ok(x);
	assert_int_equal(d->has_regions, 1);
	assert_int_equal(d->nlabels, 5);
	assert_string_equal(d->labels[1].name, "whole");
	assert_int_equal(d->labels[1].nvalues, 3);
	assert_int_equal(d->labels[1].values[2], 3);
	assert_string_equal(d->labels[4].name, "ignore");
	nnp_dataset_free(d);

	/* a one-element list is not a region */
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0,"
		 " \"a\": [1]}, \"numTraining\": 1, \"file_ending\": \".nii.gz\"}");
	d = open_ok(x);
	assert_int_equal(d->has_regions, 0);
	nnp_dataset_free(d);
}

static void test_open_errors(void **state)
{
	struct fx *x = *state;
	struct nnp_dataset *d = NULL;
	char dir[PATH_MAX];

	open_fails(x, "dataset.json");                       /* missing */
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"},\n \"labels\": }");
	open_fails(x, "line 2");                             /* malformed */
	open_fails(x, "Dataset042_Test/dataset.json");
	set_json(x, "[1, 2]");
	open_fails(x, "must be a JSON object");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 1},"
		 " \"numTraining\": 1, \"file_ending\": \".nii.gz\"}");
	open_fails(x, "dataset.json': labels.background: must be 0");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"bg\": 0},"
		 " \"numTraining\": 1, \"file_ending\": \".nii.gz\"}");
	open_fails(x, "labels.background: missing");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0,"
		 " \"a\": \"one\"}, \"numTraining\": 1, \"file_ending\": \".nii.gz\"}");
	open_fails(x, "labels.a: must be an integer");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0,"
		 " \"a\": [1, \"x\"]}, \"numTraining\": 1, \"file_ending\": \".nii.gz\"}");
	open_fails(x, "labels.a[1]: must be an integer");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\", \"2\": \"T1\"}, \"labels\":"
		 " {\"background\": 0}, \"numTraining\": 1, \"file_ending\": \".nii.gz\"}");
	open_fails(x, "channel_names: keys must be");
	set_json(x, "{\"labels\": {\"background\": 0}, \"numTraining\": 1, \"file_ending\": \".png\"}");
	open_fails(x, "channel_names: missing");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0},"
		 " \"file_ending\": \".nii.gz\"}");
	open_fails(x, "numTraining: missing");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0},"
		 " \"numTraining\": \"3\", \"file_ending\": \".nii.gz\"}");
	open_fails(x, "numTraining: must be");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0},"
		 " \"numTraining\": 3}");
	open_fails(x, "file_ending: missing");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0,"
		 " \"r\": [1, 2]}, \"numTraining\": 3, \"file_ending\": \".nii.gz\"}");
	open_fails(x, "regions_class_order: missing");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0},"
		 " \"numTraining\": 1, \"file_ending\": \".nii.gz\", \"dataset\": {\"a\": {}}}");
	open_fails(x, "dataset.a: images");

	snprintf(dir, sizeof dir, "%s/nope", x->root);
	assert_int_equal(nnp_dataset_open(dir, &d), NNP_EDATA);
	assert_msg_has("'");
	assert_msg_has("nope");
	assert_null(d);
}

/* ---- cases, folder mode ---- */

static void make_folder_dataset(const struct fx *x)
{
	set_json(x, json_ok);
	/* created out of order: _0001 before _0000 */
	touch(x, "imagesTr/case_b_0001.nii.gz");
	touch(x, "imagesTr/case_b_0000.nii.gz");
	touch(x, "imagesTr/case_a_0001.nii.gz");
	touch(x, "imagesTr/case_a_0000.nii.gz");
	touch(x, "imagesTr/case_a_x_0000.nii.gz");  /* a different case: "case_a_x" */
	touch(x, "imagesTr/case_a_x_0001.nii.gz");
	touch(x, "imagesTr/notes.txt");             /* wrong ending: ignored */
	touch(x, "imagesTr/.hidden_0000.nii.gz");   /* hidden: ignored */
	touch(x, "labelsTr/case_a.nii.gz");
	touch(x, "labelsTr/case_a_x.nii.gz");       /* case_b has no label */
	touch(x, "imagesTs/t_001_0000.nii.gz");
	touch(x, "imagesTs/t_001_0001.nii.gz");
}

static void test_cases_folder(void **state)
{
	struct fx *x = *state;
	struct nnp_dataset *d;
	struct nnp_case *v;
	size_t n;

	make_folder_dataset(x);
	d = open_ok(x);
	assert_int_equal(nnp_dataset_cases(d, "Tr", &v, &n), NNP_OK);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].id, "case_a");
	assert_string_equal(v[1].id, "case_a_x");
	assert_string_equal(v[2].id, "case_b");
	assert_int_equal(v[0].nimages, 2);
	assert_path(v[0].images[0], x, "imagesTr/case_a_0000.nii.gz");
	assert_path(v[0].images[1], x, "imagesTr/case_a_0001.nii.gz");
	assert_path(v[1].images[1], x, "imagesTr/case_a_x_0001.nii.gz");
	assert_path(v[2].images[0], x, "imagesTr/case_b_0000.nii.gz");
	assert_path(v[2].images[1], x, "imagesTr/case_b_0001.nii.gz");
	assert_path(v[0].label, x, "labelsTr/case_a.nii.gz");
	assert_path(v[1].label, x, "labelsTr/case_a_x.nii.gz");
	assert_null(v[2].label);
	nnp_cases_free(v, n);

	assert_int_equal(nnp_dataset_cases(d, "Ts", &v, &n), NNP_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].id, "t_001");
	assert_int_equal(v[0].nimages, 2);
	assert_null(v[0].label);
	nnp_cases_free(v, n);
	nnp_cases_free(NULL, 0);

	assert_int_equal(nnp_dataset_cases(d, "Val", &v, &n), NNP_EUSAGE);
	nnp_dataset_free(d);
}

static void test_case_lookup(void **state)
{
	struct fx *x = *state;
	struct nnp_dataset *d;
	struct nnp_case c;

	make_folder_dataset(x);
	d = open_ok(x);
	assert_int_equal(nnp_dataset_case(d, "Tr", "case_b", &c), NNP_OK);
	assert_string_equal(c.id, "case_b");
	assert_int_equal(c.nimages, 2);
	nnp_case_release(&c);
	assert_null(c.id);
	nnp_case_release(&c);                 /* twice is harmless */

	assert_int_equal(nnp_dataset_case(d, NULL, "t_001", &c), NNP_OK);   /* found in Ts */
	assert_path(c.images[0], x, "imagesTs/t_001_0000.nii.gz");
	nnp_case_release(&c);

	assert_int_equal(nnp_dataset_case(d, "Tr", "zzz", &c), NNP_EDATA);
	assert_msg_has("case 'zzz' not found in '");
	assert_msg_has("Dataset042_Test/imagesTr'");
	assert_null(c.id);
	assert_int_equal(nnp_dataset_case(d, "Ts", "case_a", &c), NNP_EDATA);
	assert_msg_has("imagesTs");
	nnp_dataset_free(d);
}

static void test_cases_errors(void **state)
{
	struct fx *x = *state;
	struct nnp_dataset *d;
	struct nnp_case *v = (struct nnp_case *)1;
	size_t n = 7;
	char p[PATH_MAX];

	set_json(x, json_ok);
	d = open_ok(x);
	assert_int_equal(nnp_dataset_cases(d, "Tr", &v, &n), NNP_EDATA);   /* no imagesTr */
	assert_msg_has("Dataset042_Test/imagesTr");
	assert_null(v);
	assert_int_equal(n, 0);

	touch(x, "imagesTr/ok_0000.nii.gz");
	touch(x, "imagesTr/badname.nii.gz");       /* id "ba" with no ba_XXXX file */
	assert_int_equal(nnp_dataset_cases(d, "Tr", &v, &n), NNP_EDATA);
	assert_msg_has("badname.nii.gz");
	assert_msg_has("imagesTr");

	snprintf(p, sizeof p, "%s/imagesTr/badname.nii.gz", x->ds);
	assert_int_equal(unlink(p), 0);
	touch(x, "imagesTr/x.nii.gz");              /* too short for CASE_XXXX */
	assert_int_equal(nnp_dataset_cases(d, "Tr", &v, &n), NNP_EDATA);
	assert_msg_has("x.nii.gz");
	snprintf(p, sizeof p, "%s/imagesTr/x.nii.gz", x->ds);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(nnp_dataset_cases(d, "Tr", &v, &n), NNP_OK);
	assert_int_equal(n, 1);
	nnp_cases_free(v, n);
	nnp_dataset_free(d);
}

/* ---- cases, "dataset" dict mode ---- */

static void test_cases_dict(void **state)
{
	struct fx *x = *state;
	struct nnp_dataset *d;
	struct nnp_case *v;
	size_t n;

	setenv("NNP_TEST_DATA", "/data/somewhere", 1);
	unsetenv("NNP_TEST_UNSET");
	set_json(x, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0, \"a\": 1},"
		 " \"numTraining\": 3, \"file_ending\": \".nii.gz\", \"dataset\": {"
		 "  \"zeta\": {\"images\": [\"img/z0.nii.gz\", \"img/z1.nii.gz\"], \"label\": \"lab/z.nii.gz\"},"
		 "  \"alpha\": {\"images\": [\"/abs/a0.nii.gz\"], \"label\": \"$NNP_TEST_DATA/a.nii.gz\"},"
		 "  \"mid\": {\"images\": [\"${NNP_TEST_DATA}/m.nii.gz\", \"$NNP_TEST_UNSET/m.nii.gz\"]}"
		 "}}");
	d = open_ok(x);
	assert_int_equal(nnp_dataset_cases(d, "Tr", &v, &n), NNP_OK);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].id, "zeta");                 /* dict order, not sorted */
	assert_string_equal(v[1].id, "alpha");
	assert_string_equal(v[2].id, "mid");
	assert_int_equal(v[0].nimages, 2);
	assert_path(v[0].images[1], x, "img/z1.nii.gz");
	assert_path(v[0].label, x, "lab/z.nii.gz");
	assert_string_equal(v[1].images[0], "/abs/a0.nii.gz");
	assert_string_equal(v[1].label, "/data/somewhere/a.nii.gz");
	assert_string_equal(v[2].images[0], "/data/somewhere/m.nii.gz");
	assert_path(v[2].images[1], x, "$NNP_TEST_UNSET/m.nii.gz");
	assert_null(v[2].label);
	nnp_cases_free(v, n);

	/* Ts still comes from the folder */
	assert_int_equal(nnp_dataset_cases(d, "Ts", &v, &n), NNP_EDATA);
	assert_msg_has("imagesTs");
	assert_int_equal(nnp_dataset_case(d, "Tr", "nope", &(struct nnp_case){ 0 }), NNP_EDATA);
	assert_msg_has("dataset.json");
	nnp_dataset_free(d);
}

/* ---- resolving ---- */

static void test_resolve(void **state)
{
	struct fx *x = *state;
	char out[PATH_MAX], want[PATH_MAX], small[8];

	setenv("nnUNet_raw", x->root, 1);
	snprintf(want, sizeof want, "%s/Dataset042_Test", x->root);
	assert_int_equal(nnp_dataset_resolve("42", NULL, out, sizeof out), NNP_OK);
	assert_string_equal(out, want);
	assert_int_equal(nnp_dataset_resolve("042", "nnUNet_raw", out, sizeof out), NNP_OK);
	assert_string_equal(out, want);
	assert_int_equal(nnp_dataset_resolve("Dataset042_Test", NULL, out, sizeof out), NNP_OK);
	assert_string_equal(out, want);
	assert_int_equal(nnp_dataset_resolve(x->ds, NULL, out, sizeof out), NNP_OK);
	assert_string_equal(out, x->ds);
	assert_int_equal(nnp_dataset_resolve(x->ds, NULL, small, sizeof small), NNP_EUSAGE);

	snprintf(want, sizeof want, "%s/Dataset0420_Other", x->root);
	mkdirs(want);   /* must not match id 42 */
	snprintf(want, sizeof want, "%s/Dataset042_file", x->root);
	write_at(x->root, "Dataset042_file", "");   /* a file, not a folder: ignored */
	assert_int_equal(nnp_dataset_resolve("42", NULL, out, sizeof out), NNP_OK);

	assert_int_equal(nnp_dataset_resolve("7", NULL, out, sizeof out), NNP_EDATA);
	assert_msg_has("7");
	assert_msg_has("nnUNet_raw");
	assert_int_equal(nnp_dataset_resolve("Dataset007_X", NULL, out, sizeof out), NNP_EDATA);
	assert_msg_has("Dataset007_X");
	assert_int_equal(nnp_dataset_resolve("seven", NULL, out, sizeof out), NNP_EUSAGE);
	assert_int_equal(nnp_dataset_resolve("/no/such/dir", NULL, out, sizeof out), NNP_EDATA);
	assert_msg_has("'/no/such/dir'");

	snprintf(want, sizeof want, "%s/Dataset042_Again", x->root);
	mkdirs(want);
	assert_int_equal(nnp_dataset_resolve("42", NULL, out, sizeof out), NNP_EDATA);
	assert_msg_has("Dataset042_Again");
	assert_msg_has("Dataset042_Test");

	setenv("MY_RAW", x->root, 1);
	assert_int_equal(nnp_dataset_resolve("Dataset042_Test", "MY_RAW", out, sizeof out), NNP_OK);
	assert_string_equal(out, x->ds);
	unsetenv("nnUNet_raw");
	assert_int_equal(nnp_dataset_resolve("42", NULL, out, sizeof out), NNP_EUSAGE);
	assert_msg_has("export nnUNet_raw=");
	assert_msg_has("give the dataset folder");
	unsetenv("MY_RAW");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_trailing_slash_and_no_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_modality, setup, teardown),
		cmocka_unit_test_setup_teardown(test_regions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cases_folder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_case_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cases_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cases_dict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
	};
	return cmocka_run_group_tests_name("dataset", tests, NULL, NULL);
}
