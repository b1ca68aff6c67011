/* test_rng.c — the legacy RandomState draws against numpy's own vectors
 * (tests/fixtures/ops/randomstate_vectors.json, made with numpy 1.24). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include "rng.h"

static json_t *vec;

static int setup(void **state)
{
	(void)state;
	vec = json_load_file("tests/fixtures/ops/randomstate_vectors.json", 0, NULL);
	return vec ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	json_decref(vec);
	return 0;
}

static void test_raw(void **state)
{
	size_t i;
	json_t *e;
	(void)state;
	json_array_foreach(json_object_get(vec, "mt19937_raw_uint32"), i, e) {
		struct nnp_rs rs;
		json_t *first = json_object_get(e, "first_8"), *late = json_object_get(e, "outputs_1000_to_1003");
		nnp_rs_seed(&rs, (uint32_t)json_integer_value(json_object_get(e, "seed")));
		for (size_t k = 0; k < 8; k++)
			assert_int_equal(nnp_rs_next32(&rs), json_integer_value(json_array_get(first, k)));
		for (size_t k = 8; k < 1000; k++)
			nnp_rs_next32(&rs);
		for (size_t k = 0; k < 4; k++)
			assert_int_equal(nnp_rs_next32(&rs), json_integer_value(json_array_get(late, k)));
	}
}

static void test_random_sample(void **state)
{
	json_t *e = json_array_get(json_object_get(vec, "random_sample"), 0), *v = json_object_get(e, "values");
	struct nnp_rs rs;
	(void)state;
	nnp_rs_seed(&rs, (uint32_t)json_integer_value(json_object_get(e, "seed")));
	for (size_t k = 0; k < json_array_size(v); k++)
		assert_true(nnp_rs_random(&rs) == json_real_value(json_array_get(v, k)));
}

static void check_ints(const char *key, int mode)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(vec, key), i, e) {
		struct nnp_rs rs;
		json_t *v = json_object_get(e, "values");
		size_t k = json_array_size(v);
		int64_t *out = calloc(1 << 20, sizeof *out);
		uint64_t *u = calloc(k, sizeof *u);
		nnp_rs_seed(&rs, (uint32_t)json_integer_value(json_object_get(e, "seed")));
		if (mode == 0) { /* randint(low, high, size) */
			int64_t lo = json_integer_value(json_object_get(e, "low"));
			int64_t hi = json_integer_value(json_object_get(e, "high"));
			nnp_rs_randint(&rs, (uint64_t)(hi - lo), k, u);
			for (size_t j = 0; j < k; j++)
				out[j] = (int64_t)u[j] + lo;
		} else if (mode == 1) { /* choice(n, size, replace=True) */
			nnp_rs_randint(&rs, (uint64_t)json_integer_value(json_object_get(e, "n")), k, u);
			for (size_t j = 0; j < k; j++)
				out[j] = (int64_t)u[j];
		} else { /* permutation(n) / choice without replacement = permutation[:k] */
			nnp_rs_permutation(&rs, out, (size_t)json_integer_value(json_object_get(e, "n")));
		}
		for (size_t j = 0; j < k; j++)
			assert_int_equal(out[j], json_integer_value(json_array_get(v, j)));
		free(out);
		free(u);
	}
}

static void test_randint(void **state) { (void)state; check_ints("randint", 0); }
static void test_choice_replace(void **state) { (void)state; check_ints("choice_with_replacement", 1); }
static void test_permutation(void **state) { (void)state; check_ints("permutation", 2); }
static void test_choice_noreplace(void **state) { (void)state; check_ints("choice_without_replacement", 2); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_random_sample),
		cmocka_unit_test(test_randint),
		cmocka_unit_test(test_choice_replace),
		cmocka_unit_test(test_permutation),
		cmocka_unit_test(test_choice_noreplace),
	};
	return cmocka_run_group_tests_name("rng", tests, setup, teardown);
}
