/* test_nifti.c — unit tests of the NIfTI reader/writer rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <nifti2_io.h>
#include "err.h"
#include "frame.h"
#include "nifti.h"
#include "test_tmpdir.h"

static char dir[256];

static int setup(void **state)
{
	(void)state;
	return test_tmpdir(dir, sizeof dir, "nifti") ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd);
}

static void path_in(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

static void make_vol(struct nnp_vol *v, enum nnp_dtype t, int64_t c)
{
	nnp_vol_init(v);
	v->f.dtype = t;
	v->f.shape[0] = c;
	v->f.shape[1] = 5;
	v->f.shape[2] = 6;
	v->f.shape[3] = 7;
	v->f.spacing[0] = 2.5;
	v->f.spacing[1] = 0.8;
	v->f.spacing[2] = 0.7;
	nnp_frame_default_affine(&v->f);
	v->f.affine[0][3] = -10;
	v->f.affine[1][3] = 20.5;
	v->f.affine[2][3] = 3;
	assert_int_equal(nnp_vol_alloc(v), NNP_OK);
	for (uint64_t i = 0; i < nnp_frame_nbytes(&v->f); i++)
		((unsigned char *)v->data)[i] = (unsigned char)(i * 37 + 1);
}

static void test_write_read_dtypes(void **state)
{
	static const enum nnp_dtype types[] = { NNP_U8, NNP_I8, NNP_I16, NNP_U16, NNP_I32, NNP_U32,
						NNP_I64, NNP_U64, NNP_F32, NNP_F64 };
	(void)state;
	for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
		for (int gz = 0; gz < 2; gz++) {
			struct nnp_vol v, w;
			char p[512];
			struct nnp_nifti_opts o = { -1, 1, 0 };
			make_vol(&v, types[i], 2);
			path_in(p, sizeof p, gz ? "a.nii.gz" : "a.nii");
			assert_int_equal(nnp_nifti_write_volume(p, &v, 0, 2, 0, &o), NNP_OK);
			assert_int_equal(nnp_nifti_read_volume(p, &w), NNP_OK);
			assert_int_equal(w.f.dtype, types[i]);
			assert_int_equal(w.f.shape[0], 2);
			assert_memory_equal(v.data, w.data, nnp_frame_nbytes(&v.f));
			for (int r = 0; r < 3; r++)
				for (int c = 0; c < 4; c++)
					assert_true(fabs(w.f.affine[r][c] - v.f.affine[r][c]) < 1e-6);
			assert_true(fabs(w.f.spacing[0] - 2.5) < 1e-6);
			nnp_vol_release(&v);
			nnp_vol_release(&w);
		}
	}
}

static void test_header_kept_and_regenerated(void **state)
{
	struct nnp_vol v, w, x;
	char p[512], q[512], r2[512];
	struct nnp_nifti_opts o = { -1, 1, 0 };
	nifti_image *nim;
	(void)state;
	make_vol(&v, NNP_I16, 1);
	path_in(p, sizeof p, "h.nii");
	path_in(q, sizeof q, "h2.nii");
	path_in(r2, sizeof r2, "h3.nii");
	assert_int_equal(nnp_nifti_write_volume(p, &v, 0, 1, 0, &o), NNP_OK);
	/* set a description and sform_code 4 by hand, re-read: it must be carried */
	nim = nifti_image_read(p, 1);
	assert_non_null(nim);
	strcpy(nim->descrip, "carried description");
	nim->sform_code = 4;
	nifti_image_write(nim);
	nifti_image_free(nim);
	assert_int_equal(nnp_nifti_read_volume(p, &w), NNP_OK);
	assert_int_equal(nnp_nifti_write_volume(q, &w, 0, 1, 0, &o), NNP_OK);
	nim = nifti_image_read(q, 0);
	assert_string_equal(nim->descrip, "carried description");
	assert_int_equal(nim->sform_code, 4);
	nifti_image_free(nim);
	/* change the geometry: sform/qform are rebuilt from the frame, codes kept */
	w.f.affine[0][3] += 5.0;
	w.f.spacing[0] = 1.25;
	w.f.affine[2][2] = 1.25;
	assert_int_equal(nnp_nifti_write_volume(r2, &w, 0, 1, 0, &o), NNP_OK);
	assert_int_equal(nnp_nifti_read_volume(r2, &x), NNP_OK);
	assert_true(fabs(x.f.affine[0][3] - w.f.affine[0][3]) < 1e-5);
	assert_true(fabs(x.f.spacing[0] - 1.25) < 1e-6);
	nim = nifti_image_read(r2, 0);
	assert_int_equal(nim->sform_code, 4);
	assert_true(fabs(nim->qto_xyz.m[2][2] - 1.25) < 1e-5);
	nifti_image_free(nim);
	nnp_vol_release(&v);
	nnp_vol_release(&w);
	nnp_vol_release(&x);
}

static void test_scale_carried(void **state)
{
	struct nnp_vol v, w;
	char p[512];
	struct nnp_nifti_opts o = { -1, 1, 0 };
	(void)state;
	make_vol(&v, NNP_I16, 1);
	v.f.scale = calloc(2, sizeof(double));
	v.f.scale[0] = 0.5;
	v.f.scale[1] = -100;
	path_in(p, sizeof p, "s.nii.gz");
	assert_int_equal(nnp_nifti_write_volume(p, &v, 0, 1, 0, &o), NNP_OK);
	assert_int_equal(nnp_nifti_read_volume(p, &w), NNP_OK);
	assert_non_null(w.f.scale);
	assert_true(w.f.scale[0] == 0.5 && w.f.scale[1] == -100);
	assert_memory_equal(v.data, w.data, nnp_frame_nbytes(&v.f));
	nnp_vol_release(&v);
	nnp_vol_release(&w);
}

static void test_errors(void **state)
{
	struct nnp_vol v, w;
	char p[512], bad[512];
	struct nnp_nifti_opts o = { -1, 1, 0 };
	FILE *fp;
	(void)state;
	path_in(p, sizeof p, "missing.nii.gz");
	assert_int_equal(nnp_nifti_read_volume(p, &w), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "missing.nii.gz"));
	path_in(p, sizeof p, "text.nii");
	fp = fopen(p, "w");
	fputs("this is not a nifti file, just some text that is long enough....", fp);
	for (int i = 0; i < 40; i++)
		fputs("padding padding padding\n", fp);
	fclose(fp);
	assert_int_equal(nnp_nifti_read_volume(p, &w), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "text.nii"));
	/* truncated compressed data */
	make_vol(&v, NNP_F32, 1);
	path_in(p, sizeof p, "t.nii.gz");
	assert_int_equal(nnp_nifti_write_volume(p, &v, 0, 1, 0, &o), NNP_OK);
	path_in(bad, sizeof bad, "t2.nii.gz");
	{
		char cmd[2048];
		snprintf(cmd, sizeof cmd, "head -c $(( $(stat -c %%s '%s') / 2 )) '%s' > '%s'", p, p, bad);
		assert_int_equal(system(cmd), 0);
	}
	assert_int_equal(nnp_nifti_read_volume(bad, &w), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "t2.nii.gz"));
	/* refusing to overwrite without force, and no temp file left behind */
	o.force = 0;
	assert_int_equal(nnp_nifti_write_volume(p, &v, 0, 1, 0, &o), NNP_EUSAGE);
	assert_non_null(strstr(nnp_err_msg(), "exists"));
	nnp_vol_release(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read_dtypes),
		cmocka_unit_test(test_header_kept_and_regenerated),
		cmocka_unit_test(test_scale_carried),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests_name("nifti", tests, setup, teardown);
}
