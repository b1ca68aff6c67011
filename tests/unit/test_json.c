/* test_json.c — nnp_json_dumps reproduces Python's json.dumps byte for byte
 * on the JSON files nnU-Net wrote (fixtures), and Python's float repr. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *s;
	long n;
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	s = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return s;
}

static void same_as_python(const char *path, int flags)
{
	json_t *j;
	char *ours, *theirs = slurp(path);
	assert_int_equal(nnp_json_load(path, &j), 0);
	assert_int_equal(nnp_json_dumps(j, 4, flags, &ours), 0);
	if (strcmp(ours, theirs)) {
		size_t i = 0;
		while (ours[i] == theirs[i])
			i++;
		fail_msg("%s differs at byte %zu: ours '%.40s' python '%.40s'", path, i, ours + i, theirs + i);
	}
	free(ours);
	free(theirs);
	json_decref(j);
}

static void test_fixture_files(void **state)
{
	static const char *ds[] = { "Dataset901_Spheres", "Dataset903_MultiChannel" };
	char p[256];
	(void)state;
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof p, "tests/fixtures/%s/nnUNetPlans.json", ds[i]);
		same_as_python(p, 0);
		snprintf(p, sizeof p, "tests/fixtures/%s/dataset_fingerprint.json", ds[i]);
		same_as_python(p, NNP_JSON_SORT_KEYS);
		snprintf(p, sizeof p, "tests/fixtures/%s/splits_final.json", ds[i]);
		same_as_python(p, NNP_JSON_SORT_KEYS);
	}
}

static void test_py_float(void **state)
{
	static const struct { double v; const char *s; } cases[] = {
		{ 0.772, "0.772" }, { 0.7720000147819519, "0.7720000147819519" }, { 1e-05, "1e-05" },
		{ 0.0001, "0.0001" }, { 100.0, "100.0" }, { 1e16, "1e+16" }, { 1e15, "1000000000000000.0" },
		{ -2.5, "-2.5" }, { 123456789.125, "123456789.125" }, { 1.5e-300, "1.5e-300" },
		{ 0.1 + 0.2, "0.30000000000000004" }, { -0.0, "-0.0" }, { 3.0e20, "3e+20" },
	};
	char buf[48];
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		nnp_py_float(cases[i].v, buf, sizeof buf);
		assert_string_equal(buf, cases[i].s);
	}
}

static void test_compact_and_escapes(void **state)
{
	json_t *j = json_pack("{s:[i,f,s],s:{}}", "a", 1, 2.0, "x\"\n\xc3\xa9\xf0\x9f\x98\x80", "b");
	char *s;
	(void)state;
	assert_int_equal(nnp_json_dumps(j, -1, 0, &s), 0);
	assert_string_equal(s, "{\"a\": [1, 2.0, \"x\\\"\\n\\u00e9\\ud83d\\ude00\"], \"b\": {}}");
	free(s);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_files),
		cmocka_unit_test(test_py_float),
		cmocka_unit_test(test_compact_and_escapes),
	};
	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
