/* test_casefile.c — random access to saved streams: boxes read through the
 * chunk index equal the same boxes of the whole volume. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "casefile.h"
#include "err.h"
#include "frame.h"

static char path[256];

static void make_vol(struct nnp_vol *v, const char *role, enum nnp_dtype t, int64_t c, int64_t z, int64_t y,
		     int64_t x, int64_t chunk)
{
	nnp_vol_init(v);
	snprintf(v->f.role, sizeof v->f.role, "%s", role);
	v->f.dtype = t;
	v->f.shape[0] = c; v->f.shape[1] = z; v->f.shape[2] = y; v->f.shape[3] = x;
	v->f.chunk_slices = chunk;
	nnp_frame_default_affine(&v->f);
	assert_int_equal(nnp_frame_set_case(&v->f, "c1"), 0);
	assert_int_equal(nnp_vol_alloc(v), 0);
	for (uint64_t i = 0; i < nnp_frame_nbytes(&v->f); i++)
		((unsigned char *)v->data)[i] = (unsigned char)(i * 2654435761u >> 13);
}

static int setup(void **state)
{
	struct nnp_vol a, b;
	struct nnp_writer *w;
	int fd;
	(void)state;
	snprintf(path, sizeof path, "%s/nnp-test-casefile-%d.nnp", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
		 (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	w = nnp_writer_fd(fd, path);
	make_vol(&a, "image", NNP_F32, 2, 23, 9, 11, 4);    /* 6 chunks, the last of 3 slices */
	make_vol(&b, "label", NNP_I8, 1, 23, 9, 11, 10);
	assert_int_equal(nnp_writer_volume(w, &a), 0);
	assert_int_equal(nnp_writer_volume(w, &b), 0);
	nnp_writer_free(w);
	close(fd);
	nnp_vol_release(&a);
	nnp_vol_release(&b);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void box_of(const struct nnp_vol *v, const int64_t lo[3], const int64_t hi[3], char *out)
{
	size_t es = nnp_dtype_size(v->f.dtype);
	for (int64_t c = 0; c < v->f.shape[0]; c++)
		for (int64_t z = lo[0]; z < hi[0]; z++)
			for (int64_t y = lo[1]; y < hi[1]; y++) {
				const char *s = (const char *)v->data +
					(size_t)(((c * v->f.shape[1] + z) * v->f.shape[2] + y) * v->f.shape[3] + lo[2]) * es;
				memcpy(out, s, (size_t)(hi[2] - lo[2]) * es);
				out += (size_t)(hi[2] - lo[2]) * es;
			}
}

static void test_boxes(void **state)
{
	struct nnp_casefile *cf;
	struct nnp_vol whole;
	static const int64_t boxes[][6] = {
		{ 0, 0, 0, 23, 9, 11 }, { 3, 2, 1, 9, 7, 10 }, { 20, 0, 0, 23, 9, 11 }, { 7, 8, 10, 8, 9, 11 },
		{ 3, 0, 0, 5, 9, 11 },   /* crosses a chunk boundary (4) */
	};
	(void)state;
	assert_int_equal(nnp_casefile_open(path, &cf), 0);
	assert_int_equal(nnp_casefile_nframes(cf), 2);
	assert_int_equal(nnp_casefile_find(cf, "label"), 1);
	assert_int_equal(nnp_casefile_find(cf, "logits"), -1);
	for (size_t fi = 0; fi < 2; fi++) {
		assert_int_equal(nnp_casefile_read_frame(cf, fi, &whole), 0);
		for (size_t b = 0; b < sizeof boxes / sizeof *boxes; b++) {
			const int64_t *lo = boxes[b], *hi = boxes[b] + 3;
			size_t n = (size_t)(whole.f.shape[0] * (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2])) *
				   nnp_dtype_size(whole.f.dtype);
			char *got = malloc(n), *want = malloc(n);
			assert_int_equal(nnp_casefile_read_box(cf, fi, lo, hi, got), 0);
			box_of(&whole, lo, hi, want);
			assert_memory_equal(got, want, n);
			free(got);
			free(want);
		}
		nnp_vol_release(&whole);
	}
	{
		int64_t lo[3] = { 0, 0, 0 }, hi[3] = { 24, 9, 11 };
		char buf[16];
		assert_int_equal(nnp_casefile_read_box(cf, 0, lo, hi, buf), NNP_EUSAGE);
	}
	nnp_casefile_close(cf);
}

static void test_truncated_and_missing(void **state)
{
	struct nnp_casefile *cf;
	char cut[300], cmd[1400];
	(void)state;
	snprintf(cut, sizeof cut, "%s.cut", path);
	snprintf(cmd, sizeof cmd, "head -c $(( $(stat -c %%s '%s') - 100 )) '%s' > '%s'", path, path, cut);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(nnp_casefile_open(cut, &cf), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "truncated"));
	unlink(cut);
	assert_int_equal(nnp_casefile_open("/nonexistent/x.nnp", &cf), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "x.nnp"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_boxes),
		cmocka_unit_test(test_truncated_and_missing),
	};
	return cmocka_run_group_tests_name("casefile", tests, setup, teardown);
}
