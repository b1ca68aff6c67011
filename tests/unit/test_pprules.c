/* test_pprules.c — pyjson (Python's NaN/Infinity tokens in and out) and the
 * postprocessing rule lists (parsing every labels_or_regions form, errors
 * naming the field, applying the steps in order). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "json.h"
#include "pprules.h"
#include "pyjson.h"

static json_t *parse(const char *text)
{
	json_t *j = NULL;
	assert_int_equal(nnp_pyjson_loads(text, strlen(text), "test", &j), 0);
	return j;
}

/* json.dump(obj, indent=None) of Python reads back and prints the same bytes. */
static void test_pyjson_round_trip(void **state)
{
	static const char *text = "{\"a\": NaN, \"b\": [Infinity, -Infinity, -1.5, 2], "
				  "\"NaN\": \"NaN\", \"q\": \"x\\\"NaN\", \"r\": 1e-05}";
	json_t *j = parse(text);
	char *out;
	double v;
	(void)state;
	assert_true(nnp_pyjson_number(json_object_get(j, "a"), &v) && isnan(v));
	assert_true(nnp_pyjson_number(json_array_get(json_object_get(j, "b"), 0), &v) && v == INFINITY);
	assert_true(nnp_pyjson_number(json_array_get(json_object_get(j, "b"), 1), &v) && v == -INFINITY);
	assert_true(nnp_pyjson_number(json_array_get(json_object_get(j, "b"), 3), &v) && v == 2);
	assert_false(nnp_pyjson_number(json_object_get(j, "NaN"), &v));   /* a real string stays one */
	assert_string_equal(json_string_value(json_object_get(j, "q")), "x\"NaN");
	assert_int_equal(nnp_pyjson_dumps(j, -1, 0, &out), 0);
	assert_string_equal(out, text);
	free(out);
	json_decref(j);

	j = json_pack("{s:o,s:o,s:o}", "x", nnp_pyjson_real(NAN), "y", nnp_pyjson_real(0.25), "z",
		      nnp_pyjson_real(-INFINITY));
	assert_int_equal(nnp_pyjson_dumps(j, 4, NNP_JSON_SORT_KEYS, &out), 0);
	assert_string_equal(out, "{\n    \"x\": NaN,\n    \"y\": 0.25,\n    \"z\": -Infinity\n}");
	free(out);
	json_decref(j);
}

static void test_pyjson_errors(void **state)
{
	json_t *j = NULL;
	(void)state;
	assert_int_equal(nnp_pyjson_loads("{\"a\":\n nan}", 11, "f.json", &j), NNP_EDATA);
	assert_null(j);
	assert_non_null(strstr(nnp_err_msg(), "'f.json': invalid JSON at line 2"));
}

static struct nnp_pprules *rules_of(const char *text, int want_rc)
{
	json_t *j = parse(text);
	struct nnp_pprules *r = NULL;
	assert_int_equal(nnp_pprules_from_json(j, "pp.json", &r), want_rc);
	json_decref(j);
	return r;
}

#define FN "\"remove_all_but_largest_component_from_segmentation\""

static void test_rules_forms(void **state)
{
	struct nnp_pprules *r = rules_of("{\"input_folder\": {\"foreground_mean\": {\"Dice\": NaN}},"
					 "\"postprocessing_fns\": [" FN ", " FN ", " FN "],"
					 "\"postprocessing_kwargs\": [{\"labels_or_regions\": [3, 1, 2, 1]},"
					 "{\"labels_or_regions\": 2}, {\"labels_or_regions\": [[2, 3], 5],"
					 " \"background_label\": 0}]}", 0);
	json_t *o = json_object();
	char *out;
	(void)state;
	assert_int_equal(r->n, 3);
	assert_int_equal(r->v[0].nlabels, 3);
	assert_int_equal(r->v[0].labels[0], 1);
	assert_int_equal(r->v[0].labels[2], 3);
	assert_int_equal(r->v[1].nlabels, 1);
	assert_int_equal(r->v[1].labels[0], 2);
	assert_int_equal(r->v[2].nlabels, 3);
	assert_int_equal(r->v[2].labels[2], 5);
	/* written back as given */
	assert_int_equal(nnp_pprules_to_json(r, o), 0);
	assert_int_equal(nnp_pyjson_dumps(json_object_get(o, "postprocessing_kwargs"), -1, 0, &out), 0);
	assert_string_equal(out, "[{\"labels_or_regions\": [3, 1, 2, 1]}, {\"labels_or_regions\": 2}, "
				 "{\"labels_or_regions\": [[2, 3], 5]}]");
	free(out);
	json_decref(o);
	nnp_pprules_free(r);
}

static void test_rules_errors(void **state)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{ "[]", "not a JSON object" },
		{ "{\"postprocessing_kwargs\": []}", "postprocessing_fns: missing" },
		{ "{\"postprocessing_fns\": [], \"postprocessing_kwargs\": {}}", "postprocessing_kwargs: want a list" },
		{ "{\"postprocessing_fns\": [" FN "], \"postprocessing_kwargs\": []}", "has 1 entries" },
		{ "{\"postprocessing_fns\": [\"f\"], \"postprocessing_kwargs\": [{}]}", "postprocessing_fns[0]: unknown" },
		{ "{\"postprocessing_fns\": [" FN "], \"postprocessing_kwargs\": [{}]}", "no labels_or_regions" },
		{ "{\"postprocessing_fns\": [" FN "], \"postprocessing_kwargs\": [{\"labels_or_regions\": 1.5}]}",
		  "postprocessing_kwargs[0].labels_or_regions: want an integer" },
		{ "{\"postprocessing_fns\": [" FN "], \"postprocessing_kwargs\": [{\"labels_or_regions\": [[[1]]]}]}",
		  "want an integer" },
		{ "{\"postprocessing_fns\": [" FN "], \"postprocessing_kwargs\": [{\"labels_or_regions\": 40000}]}",
		  "outside the int16 range" },
		{ "{\"postprocessing_fns\": [" FN "], \"postprocessing_kwargs\": [{\"labels_or_regions\": 1, "
		  "\"background_label\": 2}]}", "background_label: only 0" },
		{ "{\"postprocessing_fns\": [" FN "], \"postprocessing_kwargs\": [{\"labels_or_regions\": 1, \"x\": 1}]}",
		  "unknown argument 'x'" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		assert_null(rules_of(bad[i].text, NNP_EDATA));
		if (!strstr(nnp_err_msg(), bad[i].msg) || !strstr(nnp_err_msg(), "'pp.json'"))
			fail_msg("case %zu: '%s' lacks '%s'", i, nnp_err_msg(), bad[i].msg);
	}
}

/* Two steps in order: the joint one, then label 2 alone (its smaller piece goes). */
static void test_rules_apply(void **state)
{
	struct nnp_pprules *r = rules_of("{\"postprocessing_fns\": [" FN ", " FN "], \"postprocessing_kwargs\": "
					 "[{\"labels_or_regions\": [1, 2]}, {\"labels_or_regions\": 2}]}", 0);
	/* 1 x 3 x 8: one 1-2 object and a lone 1 (x = 7); label 2 in two pieces */
	uint8_t seg[24] = { 1, 1, 2, 0, 2, 2, 0, 1,
			    1, 1, 0, 0, 2, 2, 0, 0,
			    1, 1, 2, 2, 2, 2, 0, 0 };
	int16_t s16[24];
	const int64_t n[3] = { 1, 3, 8 };
	int64_t rem[2];
	(void)state;
	for (int i = 0; i < 24; i++)
		s16[i] = seg[i];
	assert_int_equal(nnp_pprules_apply(r, NNP_U8, seg, n, rem), 0);
	assert_int_equal(rem[0], 1);   /* the lone 1 */
	assert_int_equal(rem[1], 1);   /* the 2 at (0, 2) has no 2 among its 8 neighbours */
	assert_int_equal(seg[7], 0);
	assert_int_equal(seg[2], 0);
	assert_int_equal(seg[4], 2);
	assert_int_equal(nnp_pprules_apply(r, NNP_I16, s16, n, NULL), 0);
	for (int i = 0; i < 24; i++)
		assert_int_equal(s16[i], seg[i]);
	assert_int_equal(nnp_pprules_apply(r, NNP_F32, s16, n, NULL), NNP_EDATA);
	nnp_pprules_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pyjson_round_trip),
		cmocka_unit_test(test_pyjson_errors),
		cmocka_unit_test(test_rules_forms),
		cmocka_unit_test(test_rules_errors),
		cmocka_unit_test(test_rules_apply),
	};
	return cmocka_run_group_tests_name("pprules", tests, NULL, NULL);
}
