/* test_export.c — export's building blocks: the float16 rounding of
 * --fp16-compat (vector path) against the scalar nnp_double_to_half, the
 * labels of dataset.json. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "dtype.h"
#include "export.h"

static double rand_double(uint64_t *s)
{
	uint64_t x;
	double d;
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	x = *s;
	memcpy(&d, &x, sizeof d);
	return d;
}

static void check(const double *t, int64_t n)
{
	float *out = malloc((size_t)n * sizeof *out);
	assert_non_null(out);
	nnp__export_round_f16(t, n, out);
	for (int64_t i = 0; i < n; i++) {
		float want = nnp_half_to_float(nnp_double_to_half(t[i]));
		if (memcmp(&want, &out[i], sizeof want))
			fail_msg("t = %.17g (%a): got %a, want %a", t[i], t[i], (double)out[i], (double)want);
	}
	free(out);
}

static void test_round_f16_random(void **state)
{
	enum { N = 1 << 20 };
	double *t = malloc(N * sizeof *t);
	uint64_t s = 88172645463325252ULL;
	(void)state;
	assert_non_null(t);
	for (int64_t i = 0; i < N; i++) {
		double d = rand_double(&s);
		/* mostly logit-sized values, also subnormal halves and big ones */
		if (!isfinite(d) || fabs(d) > 60000)
			d = ldexp((double)(s >> 11) / 9007199254740992.0 + 0.5, (int)(i % 40) - 30) * (i & 1 ? -1 : 1);
		t[i] = d;
	}
	check(t, N);
	free(t);
}

static void test_round_f16_midpoints(void **state)
{
	enum { N = 3 * 65536 };
	double *t = malloc(N * sizeof *t);
	int64_t n = 0;
	(void)state;
	assert_non_null(t);
	/* every half h, the exact midpoint to the next half and one double ulp either side */
	for (uint32_t h = 0; h < 0x7bff; h++) {
		double a = nnp_half_to_float((uint16_t)h), b = nnp_half_to_float((uint16_t)(h + 1)), m = (a + b) / 2;
		t[n++] = m;
		t[n++] = nextafter(m, 0);
		t[n++] = nextafter(m, 1e9);
	}
	check(t, n);
	for (int64_t i = 0; i < n; i++)
		t[i] = -t[i];
	check(t, n);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_f16_random),
		cmocka_unit_test(test_round_f16_midpoints),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
