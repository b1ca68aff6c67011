/* test_sample.c — nnU-Net's patch sampler: §7.3 initial patch sizes, the
 * forced-foreground rule, get_bbox bounds and class choice, crop with
 * padding against the whole case, and the oversampling statistics. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "casefile.h"
#include "err.h"
#include "frame.h"
#include "sample.h"

static char path[256];
#define Z 40
#define Y 44
#define X 48

static void check_initial(const int64_t *patch, int dim, const int64_t *want, int dummy)
{
	struct nnp_sample_aug a;
	assert_int_equal(nnp_sample_configure(patch, dim, &a), 0);
	for (int i = 0; i < dim; i++)
		assert_int_equal(a.initial[i], want[i]);
	assert_int_equal(a.dummy_2d, dummy);
	assert_int_equal(a.nmirror, dim);
}

static void test_initial_patch(void **state)
{
	(void)state;
	check_initial((int64_t[]){ 128, 128, 128 }, 3, (int64_t[]){ 205, 205, 205 }, 0);
	check_initial((int64_t[]){ 64, 192, 160 }, 3, (int64_t[]){ 178, 289, 200 }, 0);
	check_initial((int64_t[]){ 40, 56, 40 }, 3, (int64_t[]){ 73, 80, 64 }, 0);
	check_initial((int64_t[]){ 512, 512 }, 2, (int64_t[]){ 602, 602 }, 0);
	/* (56, 40) with +-15 deg (the facts' example); the rule itself gives
	 * +-180 deg (56 / 40 <= 1.5), bounded to 90 deg: max(56, 40) on both axes */
	int64_t out[2];
	nnp_sample_patch_size((int64_t[]){ 56, 40 }, 2, 15. / 360 * 2. * M_PI, NNP_SAMPLE_MIN_SCALE, out);
	assert_int_equal(out[0], 75);
	assert_int_equal(out[1], 47);
	check_initial((int64_t[]){ 56, 40 }, 2, (int64_t[]){ 65, 65 }, 0);
	/* dummy 2-D (128 / 16 > 3): axis 0 keeps the patch, rotation +-180 deg */
	struct nnp_sample_aug a;
	assert_int_equal(nnp_sample_configure((int64_t[]){ 16, 128, 128 }, 3, &a), 0);
	assert_true(a.dummy_2d);
	assert_int_equal(a.initial[0], 16);
	assert_true(a.rot[1] > 3.14159 && a.rot[1] < 3.1416 && a.rot[0] == -a.rot[1]);
	assert_int_equal(nnp_sample_configure((int64_t[]){ 64, 40 }, 2, &a), 0);
	assert_true(a.rot[1] > 0.2617 && a.rot[1] < 0.2618);   /* 15 deg: 64 / 40 > 1.5 */
	assert_int_equal(nnp_sample_configure((int64_t[]){ 0, 40 }, 2, &a), NNP_EDATA);
}

static void test_forced_counts(void **state)
{
	static const int64_t B[] = { 2, 9, 12, 1, 3 }, want[] = { 1, 3, 4, 0, 1 }, first[] = { 1, 6, 8, 1, 2 };
	(void)state;
	for (size_t k = 0; k < sizeof B / sizeof *B; k++) {
		int64_t n = 0;
		for (int64_t j = 0; j < B[k]; j++) {
			n += nnp_sample_forced(j, B[k]);
			assert_int_equal(nnp_sample_forced(j, B[k]), j >= first[k]);
		}
		assert_int_equal(n, want[k]);
	}
}

static void test_bounds(void **state)
{
	int64_t lb[3], ub[3];
	(void)state;
	/* train: P = initial, need_to_pad 66, 67, 35 -> 46 (101 + 35 < 147) */
	nnp_sample_bounds((int64_t[]){ 57, 116, 101 }, (int64_t[]){ 122, 179, 147 }, (int64_t[]){ 56, 112, 112 }, lb, ub);
	assert_int_equal(lb[0], -33); assert_int_equal(ub[0], 57 + 33 - 122);
	assert_int_equal(lb[1], -34); assert_int_equal(ub[1], 116 + 34 - 179);   /* n = 67: floor(-33.5) */
	assert_int_equal(lb[2], -23); assert_int_equal(ub[2], -23);
	/* val, case smaller than the patch: n = P - S (odd on axis 2) */
	nnp_sample_bounds((int64_t[]){ 10, 20, 5 }, (int64_t[]){ 16, 16, 8 }, (int64_t[]){ 16, 16, 8 }, lb, ub);
	assert_int_equal(lb[0], -3); assert_int_equal(ub[0], -3);
	assert_int_equal(lb[1], 0); assert_int_equal(ub[1], 4);
	assert_int_equal(lb[2], -2); assert_int_equal(ub[2], -1);
}

/* Two classes: "1" with locations near one corner, "(-1, 0, 1)" annotated. */
static void classlocs(struct nnp_classlocs *cl, uint64_t n1, uint64_t na)
{
	memset(cl, 0, sizeof *cl);
	cl->n = 2;
	cl->keys = calloc(2, sizeof *cl->keys);
	cl->keys[0] = strdup("1");
	cl->keys[1] = strdup("(-1, 0, 1)");
	cl->count = calloc(2, sizeof *cl->count);
	cl->first = calloc(2, sizeof *cl->first);
	cl->rows = calloc((n1 + na + 1) * 4, sizeof *cl->rows);
	cl->count[0] = n1, cl->count[1] = na, cl->first[1] = n1;
	for (uint64_t r = 0; r < n1 + na; r++) {
		cl->rows[r * 4 + 1] = (int32_t)(r % 7);
		cl->rows[r * 4 + 2] = (int32_t)(r % 5 + 30);
		cl->rows[r * 4 + 3] = (int32_t)(r % 3 + (r >= n1 ? 40 : 0));
	}
	cl->annotated = 1;
}

static void test_bbox_rules(void **state)
{
	const int64_t S[3] = { Z, Y, X }, P[3] = { 12, 12, 12 }, F[3] = { 8, 8, 8 };
	int64_t lb[3], ub[3];
	struct nnp_rs rs;
	struct nnp_classlocs cl;
	struct nnp_sample_pick pk;
	(void)state;
	nnp_rs_seed(&rs, 7);
	nnp_sample_bounds(S, P, F, lb, ub);
	for (int i = 0; i < 500; i++) {   /* random boxes: lb <= lo <= ub */
		nnp_sample_bbox(&rs, S, P, F, 0, NULL, &pk);
		assert_int_equal(pk.cls, -1);
		for (int d = 0; d < 3; d++)
			assert_true(pk.lo[d] >= lb[d] && pk.lo[d] <= ub[d] && pk.hi[d] == pk.lo[d] + P[d]);
	}
	classlocs(&cl, 20, 30);
	for (int i = 0; i < 500; i++) {   /* forced: never the annotated key while "1" is eligible */
		nnp_sample_bbox(&rs, S, P, F, 1, &cl, &pk);
		assert_int_equal(pk.cls, 0);
		for (int d = 0; d < 3; d++) {
			assert_true(pk.voxel[d] >= pk.lo[d] && pk.voxel[d] < pk.hi[d]);
			assert_int_equal(pk.lo[d], pk.voxel[d] - P[d] / 2 > lb[d] ? pk.voxel[d] - P[d] / 2 : lb[d]);
		}
		nnp_sample_bbox(&rs, S, P, F, 0, &cl, &pk);   /* ignore label: centred on an annotated voxel */
		assert_int_equal(pk.cls, 1);
		assert_true(pk.voxel[2] >= 40);
	}
	cl.count[0] = 0, cl.count[1] = 50, cl.first[1] = 0;   /* only the annotated key is eligible */
	nnp_sample_bbox(&rs, S, P, F, 1, &cl, &pk);
	assert_int_equal(pk.cls, 1);
	cl.count[1] = 0;                                      /* nothing eligible: a random box */
	nnp_sample_bbox(&rs, S, P, F, 1, &cl, &pk);
	assert_int_equal(pk.cls, -1);
	nnp_classlocs_release(&cl);
	assert_int_equal(cl.annotated, -1);
}

/* ---- a case file: 2-channel float32 image, int8 label with -1 and a
 * 2x2x2 foreground blob, its class_locations frame ---- */

static void make_vol(struct nnp_vol *v, const char *role, enum nnp_dtype t, int64_t c, int64_t chunk)
{
	nnp_vol_init(v);
	snprintf(v->f.role, sizeof v->f.role, "%s", role);
	v->f.dtype = t;
	v->f.shape[0] = c, v->f.shape[1] = Z, v->f.shape[2] = Y, v->f.shape[3] = X;
	v->f.chunk_slices = chunk;
	nnp_frame_default_affine(&v->f);
	assert_int_equal(nnp_frame_set_case(&v->f, "c1"), 0);
	assert_int_equal(nnp_vol_alloc(v), 0);
}

static void write_case(void)
{
	struct nnp_vol a, b, l;
	struct nnp_writer *w;
	int fd, k = 0;
	snprintf(path, sizeof path, "%s/nnp-test-sample-%d.nnp", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
		 (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	w = nnp_writer_fd(fd, path);
	make_vol(&a, "image", NNP_F32, 2, 7);
	make_vol(&b, "label", NNP_I8, 1, 5);
	for (uint64_t i = 0; i < 2 * (uint64_t)Z * Y * X; i++)
		((float *)a.data)[i] = (float)(i % 1000) * 0.25f - 3;
	for (int64_t z = 0; z < Z; z++)
		for (int64_t y = 0; y < Y; y++)
			for (int64_t x = 0; x < X; x++) {
				int8_t *p = (int8_t *)b.data + (z * Y + y) * X + x;
				*p = x < 2 ? -1 : (z >= 30 && z < 32 && y >= 3 && y < 5 && x >= 40 && x < 42);
			}
	nnp_vol_init(&l);
	snprintf(l.f.role, sizeof l.f.role, "class_locations");
	l.f.dtype = NNP_I32;
	l.f.shape[0] = l.f.shape[1] = 1, l.f.shape[2] = 8, l.f.shape[3] = 4;
	assert_int_equal(nnp_vol_alloc(&l), 0);
	for (int z = 30; z < 32; z++)
		for (int y = 3; y < 5; y++)
			for (int x = 40; x < 42; x++, k++) {
				int32_t *r = (int32_t *)l.data + k * 4;
				r[1] = z, r[2] = y, r[3] = x;
			}
	json_object_set_new(nnp_frame_props(&l.f), "classes", json_pack("[s]", "1"));
	json_object_set_new(nnp_frame_props(&l.f), "counts", json_pack("[i]", 8));
	assert_int_equal(nnp_writer_volume(w, &a), 0);
	assert_int_equal(nnp_writer_volume(w, &b), 0);
	assert_int_equal(nnp_writer_volume(w, &l), 0);
	nnp_writer_free(w);
	close(fd);
	nnp_vol_release(&a);
	nnp_vol_release(&b);
	nnp_vol_release(&l);
}

static int setup(void **state)
{
	(void)state;
	write_case();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

/* The reference crop_and_pad_nd from the whole volume. */
static void crop_ref(const struct nnp_vol *v, const int64_t lo[3], const int64_t P[3], enum nnp_dtype dt, double pad,
		     void *out)
{
	size_t es = nnp_dtype_size(dt), o = 0;
	for (int64_t c = 0; c < v->f.shape[0]; c++)
		for (int64_t z = lo[0]; z < lo[0] + P[0]; z++)
			for (int64_t y = lo[1]; y < lo[1] + P[1]; y++)
				for (int64_t x = lo[2]; x < lo[2] + P[2]; x++, o++) {
					int in = z >= 0 && z < Z && y >= 0 && y < Y && x >= 0 && x < X;
					size_t i = (size_t)(((c * Z + z) * Y + y) * X + x);
					if (in)
						nnp_convert(dt, (char *)out + o * es, v->f.dtype,
							    (const char *)v->data + i * nnp_dtype_size(v->f.dtype), 1);
					else
						nnp_convert(dt, (char *)out + o * es, NNP_F64, &pad, 1);
				}
}

static void test_crop_equals_whole(void **state)
{
	static const int64_t P[3] = { 13, 50, 9 }, F[3] = { 8, 8, 8 };
	static const int64_t fixed[][3] = { { -20, -20, -20 }, { 35, 40, 45 }, { 0, 0, 0 }, { -5, -3, 44 } };
	struct nnp_casefile *cf;
	struct nnp_vol img, lab;
	struct nnp_classlocs cl;
	struct nnp_rs rs;
	size_t n = (size_t)(P[0] * P[1] * P[2]);
	float *a = malloc(2 * n * 4), *b = malloc(2 * n * 4);
	int16_t *c = malloc(n * 2), *d = malloc(n * 2);
	(void)state;
	assert_int_equal(nnp_casefile_open(path, &cf), 0);
	assert_int_equal(nnp_casefile_read_frame(cf, 0, &img), 0);
	assert_int_equal(nnp_casefile_read_frame(cf, 1, &lab), 0);
	assert_int_equal(nnp_classlocs_read(cf, &cl), 0);
	assert_int_equal(cl.n, 1);
	assert_int_equal(cl.count[0], 8);
	nnp_rs_seed(&rs, 3);
	for (int i = 0; i < 40; i++) {
		struct nnp_sample_pick pk;
		if (i < 4)
			memcpy(pk.lo, fixed[i], sizeof pk.lo);
		else
			nnp_sample_bbox(&rs, (int64_t[]){ Z, Y, X }, P, F, i % 2, &cl, &pk);
		assert_int_equal(nnp_sample_crop(cf, 0, pk.lo, P, NNP_F32, 0, a), 0);
		crop_ref(&img, pk.lo, P, NNP_F32, 0, b);
		assert_memory_equal(a, b, 2 * n * 4);
		assert_int_equal(nnp_sample_crop(cf, 1, pk.lo, P, NNP_I16, -1, c), 0);
		crop_ref(&lab, pk.lo, P, NNP_I16, -1, d);
		assert_memory_equal(c, d, n * 2);
	}
	nnp_classlocs_release(&cl);
	nnp_vol_release(&img);
	nnp_vol_release(&lab);
	nnp_casefile_close(cf);
	free(a), free(b), free(c), free(d);
}

/* Fraction of samples whose label patch holds foreground, batches of B. */
static double fg_fraction(const struct nnp_casefile *cf, const struct nnp_classlocs *cl, int force, int64_t B,
			  int iters)
{
	static const int64_t P[3] = { 8, 8, 8 };
	int16_t lab[8 * 8 * 8];
	struct nnp_rs rs;
	long hit = 0, n = 0;
	nnp_rs_seed(&rs, 11);
	for (int it = 0; it < iters; it++)
		for (int64_t j = 0; j < B; j++, n++) {
			struct nnp_sample_pick pk;
			int any = 0;
			nnp_sample_bbox(&rs, (int64_t[]){ Z, Y, X }, P, P, force && nnp_sample_forced(j, B), cl, &pk);
			assert_int_equal(nnp_sample_crop(cf, 1, pk.lo, P, NNP_I16, -1, lab), 0);
			for (int k = 0; k < 512; k++)
				any |= lab[k] > 0;
			hit += any;
		}
	return (double)hit / (double)n;
}

static void test_oversampling_statistics(void **state)
{
	struct nnp_casefile *cf;
	struct nnp_classlocs cl;
	double with2, with12, without;
	(void)state;
	assert_int_equal(nnp_casefile_open(path, &cf), 0);
	assert_int_equal(nnp_classlocs_read(cf, &cl), 0);
	without = fg_fraction(cf, &cl, 0, 2, 1000);
	with2 = fg_fraction(cf, &cl, 1, 2, 1000);
	with12 = fg_fraction(cf, &cl, 1, 12, 200);
	printf("# foreground in %.1f %% of 2000 random patches; forced B=2: %.1f %%, B=12: %.1f %%\n",
	       100 * without, 100 * with2, 100 * with12);
	assert_true(without < 0.05);
	assert_true(with2 >= 0.5);      /* sample 1 of 2 is forced */
	assert_true(with12 >= 0.33);    /* 4 of 12 */
	nnp_classlocs_release(&cl);
	nnp_casefile_close(cf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_initial_patch),
		cmocka_unit_test(test_forced_counts),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_bbox_rules),
		cmocka_unit_test(test_crop_equals_whole),
		cmocka_unit_test(test_oversampling_statistics),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
