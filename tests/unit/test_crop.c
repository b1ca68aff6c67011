/* test_crop.c — crop_to_nonzero against nnU-Net's own outputs
 * (tests/fixtures/ops/crop_to_nonzero, made by crop_to_nonzero itself). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "crop.h"
#include "nifti.h"

#define FX "tests/fixtures/ops/crop_to_nonzero/"

static void load(const char *name, struct nnp_vol *v)
{
	assert_int_equal(nnp_nifti_read_volume(name, v), 0);
}

static void test_mask_matches(void **state)
{
	struct nnp_vol img, ref;
	uint8_t *m;
	(void)state;
	load(FX "in_data.nii.gz", &img);
	load(FX "out_nonzero_mask.nii.gz", &ref);
	m = malloc((size_t)nnp_frame_nvox(&img.f));
	nnp_nonzero_mask(&img, m);
	assert_int_equal(nnp_fill_holes(m, img.f.shape + 1), 0);
	assert_memory_equal(m, ref.data, (size_t)nnp_frame_nvox(&img.f));
	free(m);
	nnp_vol_release(&img);
	nnp_vol_release(&ref);
}

static void test_crop_with_seg(void **state)
{
	struct nnp_vol img, seg, out, sout, rdata, rseg;
	int64_t bbox[3][2];
	static const int64_t want[3][2] = { { 1, 11 }, { 3, 12 }, { 2, 15 } };
	(void)state;
	load(FX "in_data.nii.gz", &img);
	load(FX "in_seg.nii.gz", &seg);
	load(FX "out_data.nii.gz", &rdata);
	load(FX "out_seg.nii.gz", &rseg);
	assert_int_equal(nnp_crop_to_nonzero(&img, &seg, &out, &sout, bbox), 0);
	assert_memory_equal(bbox, want, sizeof want);
	assert_int_equal(out.f.shape[0], 2);
	assert_int_equal(out.f.shape[1], 10);
	assert_memory_equal(out.data, rdata.data, nnp_frame_nbytes(&rdata.f));
	assert_int_equal(sout.f.dtype, NNP_I8);
	assert_memory_equal(sout.data, rseg.data, nnp_frame_nbytes(&rseg.f));
	nnp_vol_release(&img); nnp_vol_release(&seg); nnp_vol_release(&out);
	nnp_vol_release(&sout); nnp_vol_release(&rdata); nnp_vol_release(&rseg);
}

static void test_crop_without_seg(void **state)
{
	struct nnp_vol img, out, sout, rseg;
	int64_t bbox[3][2];
	(void)state;
	load(FX "in_data.nii.gz", &img);
	load(FX "out_seg_noseg.nii.gz", &rseg);
	assert_int_equal(nnp_crop_to_nonzero(&img, NULL, &out, &sout, bbox), 0);
	assert_memory_equal(sout.data, rseg.data, nnp_frame_nbytes(&rseg.f));
	nnp_vol_release(&img); nnp_vol_release(&out); nnp_vol_release(&sout); nnp_vol_release(&rseg);
}

static void test_all_zero_and_2d(void **state)
{
	struct nnp_vol img, out, sout;
	int64_t bbox[3][2];
	uint8_t m[9] = { 1, 1, 1, 1, 0, 1, 1, 1, 1 };
	const int64_t flat[3] = { 1, 3, 3 }, cube[3] = { 3, 3, 3 };
	uint8_t c[27];
	(void)state;
	nnp_vol_init(&img);
	img.f.dtype = NNP_F32;
	img.f.shape[0] = 1; img.f.shape[1] = 4; img.f.shape[2] = 5; img.f.shape[3] = 6;
	nnp_frame_default_affine(&img.f);
	assert_int_equal(nnp_vol_alloc(&img), 0);
	assert_int_equal(nnp_crop_to_nonzero(&img, NULL, &out, &sout, bbox), 0);
	assert_int_equal(bbox[0][1], 4);
	assert_int_equal(bbox[2][1], 6);
	for (uint64_t i = 0; i < nnp_frame_nvox(&sout.f); i++)
		assert_int_equal(((int8_t *)sout.data)[i], -1);
	/* z = 1: the centre hole touches the border along z, so it stays a hole */
	assert_int_equal(nnp_fill_holes(m, flat), 0);
	assert_int_equal(m[4], 0);
	/* a 3x3x3 shell with an enclosed centre is filled */
	memset(c, 1, sizeof c);
	c[13] = 0;
	assert_int_equal(nnp_fill_holes(c, cube), 0);
	assert_int_equal(c[13], 1);
	nnp_vol_release(&img); nnp_vol_release(&out); nnp_vol_release(&sout);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mask_matches),
		cmocka_unit_test(test_crop_with_seg),
		cmocka_unit_test(test_crop_without_seg),
		cmocka_unit_test(test_all_zero_and_2d),
	};
	return cmocka_run_group_tests_name("crop", tests, NULL, NULL);
}
