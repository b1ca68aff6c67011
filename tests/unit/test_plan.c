/* test_plan.c — nnU-Net's experiment planning (common/plan.c).
 *
 * Expected values: the worked examples and test vectors of nnunet-facts.md
 * §4.5, §4.7 and Appendix A (verified by running nnU-Net), the numbers printed
 * by dynamic-network-architectures' own ResidualEncoderUNet examples, numpy
 * 1.24 for the percentile/median doubles (hex literals), nnU-Net 2.8.1's
 * fixture plans, and for the generated datasets tests/tools/plan_reference.py
 * (an independent numpy transcription; tests/t/t0400-plan.t compares whole
 * plans files against it on many more fingerprints). */
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
#include "plan.h"

/* exact double equality, printed in hex on failure */
#define EQ_D(got, want)                                                                         \
	do {                                                                                    \
		double g_ = (got), w_ = (want);                                                 \
		if (!(g_ == w_))                                                                \
			fail_msg("%s = %a (%.17g), want %a (%.17g)", #got, g_, g_, w_, w_);     \
	} while (0)

static const struct nnp_planner *planner(const char *key)
{
	const struct nnp_planner *p = nnp_planner_find(key);
	assert_non_null(p);
	return p;
}

static void check_ll3(const long long *got, int dim, long long a, long long b, long long c)
{
	long long want[3] = { a, b, c };
	for (int i = 0; i < dim; i++)
		if (got[i] != want[i])
			fail_msg("axis %d: got %lld, want %lld", i, got[i], want[i]);
}

static void check_rows(const int (*got)[3], int rows, int dim, const int (*want)[3])
{
	for (int s = 0; s < rows; s++)
		for (int i = 0; i < dim; i++)
			if (got[s][i] != want[s][i])
				fail_msg("row %d axis %d: got %d, want %d", s, i, got[s][i], want[s][i]);
}

/* ---- Python / numpy arithmetic ---- */

static void test_round_half_even(void **state)
{
	(void)state;
	EQ_D(nnp_py_round(0.5), 0);
	EQ_D(nnp_py_round(1.5), 2);
	EQ_D(nnp_py_round(2.5), 2);
	EQ_D(nnp_py_round(3.5), 4);
	EQ_D(nnp_py_round(116.5), 116);
	EQ_D(nnp_py_round(110.5), 110);
	EQ_D(nnp_py_round(2.5000001), 3);
	EQ_D(nnp_py_round(-2.5), -2);
}

static void test_percentile_numpy(void **state)
{
	/* z spacings of the Dataset901 fingerprint */
	double z[12] = { 2.75, 3.180000066757202, 3.119999885559082, 2.7899999618530273, 3.140000104904175,
			 3.2100000381469727, 2.799999952316284, 3.0199999809265137, 2.7899999618530273,
			 3.119999885559082, 2.8299999237060547, 2.9200000762939453 };
	double v[12];
	(void)state;
	memcpy(v, z, sizeof v);
	EQ_D(nnp_np_percentile(v, 12, 50), 0x1.7c28f6p+1);
	memcpy(v, z, sizeof v);
	EQ_D(nnp_np_percentile(v, 12, 10), 0x1.651eb8p+1);
	memcpy(v, z, sizeof v);
	EQ_D(nnp_np_median(v, 12), 0x1.7c28f6p+1);
	{
		double a[3] = { 0.7, 0.1, 0.2 };
		EQ_D(nnp_np_percentile(a, 3, 10), 0x1.eb851eb851eb9p-4);
		EQ_D(nnp_np_percentile(a, 3, 90), 0x1.3333333333333p-1);
		EQ_D(nnp_np_percentile(a, 3, 65), 0x1.6666666666666p-2);
		EQ_D(nnp_np_percentile(a, 3, 100), 0.7);
		EQ_D(nnp_np_percentile(a, 3, 0), 0.1);
	}
	{
		/* t >= 0.5 uses b - (b-a)*(1-t): one ulp below a + (b-a)*t here */
		double a[2] = { 0x1.9e12a1aeb2c58p-3, 0x1.0a7037be4944dp+3 };
		EQ_D(nnp_np_percentile(a, 2, 75), 0x1.92e478e0cb4ccp+2);
	}
	{
		/* percentile 50 (fullres spacing) and median (original spacing)
		 * differ in the last bit */
		double a[2] = { 0x1.cfbf1822fd4d3p+0, 0x1.f8ab4bf6e9002p+2 }, b[2];
		memcpy(b, a, sizeof b);
		EQ_D(nnp_np_percentile(a, 2, 50), 0x1.364d88ffd429cp+2);
		EQ_D(nnp_np_median(b, 2), 0x1.364d88ffd429bp+2);
	}
	{
		double one[1] = { 4.5 };
		EQ_D(nnp_np_percentile(one, 1, 10), 4.5);
		EQ_D(nnp_np_median(one, 1), 4.5);
	}
}

/* ---- dataset-level rules ---- */

static void make_input(struct nnp_plan_input *in, size_t n, const double (*sp)[3], const double (*sh)[3])
{
	memset(in, 0, sizeof *in);
	in->ncases = n;
	in->spacings = (double (*)[3])sp;
	in->shapes = (double (*)[3])sh;
}

static void test_fullres_spacing_anisotropic(void **state)
{
	double sp[9][3], sh[9][3], out[3];
	struct nnp_plan_input in;
	(void)state;
	/* median z 5.5 > 3 * 0.74 and 18 * 3 < 204: z = percentile_10 = 5.0 */
	for (int i = 0; i < 9; i++) {
		sp[i][0] = 5.0 + 0.5 * (i % 3);
		sp[i][1] = sp[i][2] = 0.7 + 0.01 * i;
		sh[i][0] = 12 + i;
		sh[i][1] = 200 + i;
		sh[i][2] = 210 + i;
	}
	make_input(&in, 9, (const double (*)[3])sp, (const double (*)[3])sh);
	assert_int_equal(nnp_plan_fullres_spacing(&in, out), 0);
	EQ_D(out[0], 5.0);
	EQ_D(out[1], 0x1.7ae147ae147aep-1);
	EQ_D(out[2], 0x1.7ae147ae147aep-1);
	/* enough slices: the median stays */
	for (int i = 0; i < 9; i++)
		sh[i][0] = 80;
	assert_int_equal(nnp_plan_fullres_spacing(&in, out), 0);
	EQ_D(out[0], 5.5);
	/* exactly 3x is not anisotropic (strict >) */
	for (int i = 0; i < 9; i++) {
		sh[i][0] = 10;
		sp[i][0] = 3.0;
		sp[i][1] = sp[i][2] = 1.0;
	}
	sp[0][0] = 1.0;
	assert_int_equal(nnp_plan_fullres_spacing(&in, out), 0);
	EQ_D(out[0], 3.0);
	/* percentile_10 below the in-plane spacing: max(other) + 1e-5 */
	{
		double s5[5][3] = { { 0.5, 1, 1 }, { 0.5, 1, 1 }, { 4, 1, 1 }, { 4, 1, 1 }, { 4, 1, 1 } };
		double h5[5][3] = { { 10, 100, 100 }, { 10, 100, 100 }, { 10, 100, 100 },
				    { 10, 100, 100 }, { 10, 100, 100 } };
		make_input(&in, 5, (const double (*)[3])s5, (const double (*)[3])h5);
		assert_int_equal(nnp_plan_fullres_spacing(&in, out), 0);
		EQ_D(out[0], 1.0 + 1e-5);
		EQ_D(out[1], 1.0);
	}
	/* the coarse axis last: found there, moved first by the transpose */
	{
		double s3[3][3] = { { 1, 1, 6 }, { 1, 1, 7 }, { 1, 1, 8 } };
		double h3[3][3] = { { 100, 100, 9 }, { 100, 100, 9 }, { 100, 100, 9 } };
		int fwd[3], bwd[3];
		make_input(&in, 3, (const double (*)[3])s3, (const double (*)[3])h3);
		assert_int_equal(nnp_plan_fullres_spacing(&in, out), 0);
		EQ_D(out[2], 0x1.8cccccccccccdp+2); /* percentile_10 of 6, 7, 8 = 6.2 */
		nnp_plan_transpose(out, fwd, bwd);
		assert_int_equal(fwd[0], 2);
		assert_int_equal(fwd[1], 0);
		assert_int_equal(fwd[2], 1);
		assert_int_equal(bwd[0], 1);
		assert_int_equal(bwd[1], 2);
		assert_int_equal(bwd[2], 0);
	}
}

static void test_transpose_and_new_shape(void **state)
{
	int fwd[3], bwd[3];
	double sp[3] = { 1, 3, 3 }, shape[3] = { 5, 7, 9 }, old[3] = { 1, 1, 1 }, nw[3] = { 2, 2, 2 }, out[3];
	(void)state;
	nnp_plan_transpose(sp, fwd, bwd); /* first maximum */
	assert_int_equal(fwd[0], 1);
	assert_int_equal(fwd[1], 0);
	assert_int_equal(fwd[2], 2);
	assert_int_equal(bwd[0], 1);
	assert_int_equal(bwd[1], 0);
	assert_int_equal(bwd[2], 2);
	nnp_plan_new_shape(shape, old, nw, out); /* 2.5 -> 2, 3.5 -> 4, 4.5 -> 4 */
	EQ_D(out[0], 2);
	EQ_D(out[1], 4);
	EQ_D(out[2], 4);
}

/* ---- topology (§4.5) ---- */

static void test_topology_worked_example(void **state)
{
	static const int strides[6][3] = { { 1, 1, 1 }, { 1, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 } };
	static const int kernels[6][3] = { { 1, 3, 3 }, { 3, 3, 3 }, { 3, 3, 3 }, { 3, 3, 3 }, { 3, 3, 3 }, { 3, 3, 3 } };
	double sp[3] = { 2.5, 0.75, 0.75 }, patch[3] = { 64, 192, 160 };
	struct nnp_topology t;
	(void)state;
	assert_int_equal(nnp_plan_topology(3, sp, patch, 4, 999999, &t), 0);
	assert_int_equal(t.nstages, 6);
	check_rows((const int (*)[3])t.strides, 6, 3, strides);
	check_rows((const int (*)[3])t.kernels, 6, 3, kernels);
	check_ll3(t.patch, 3, 64, 192, 160);
	check_ll3(t.divisible, 3, 16, 32, 32);
	/* max_numpool 2 stops each axis after two pools */
	assert_int_equal(nnp_plan_topology(3, sp, patch, 4, 2, &t), 0);
	assert_int_equal(t.num_pool[0], 2);
	assert_int_equal(t.num_pool[1], 2);
}

static void test_topology_fractional_patch(void **state)
{
	/* Dataset901's 3d_fullres: the median shape (48, 116.5, 110.5) padded */
	static const int strides[5][3] = { { 1, 1, 1 }, { 1, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 } };
	static const int kernels[5][3] = { { 1, 3, 3 }, { 3, 3, 3 }, { 3, 3, 3 }, { 3, 3, 3 }, { 3, 3, 3 } };
	double sp[3] = { 2.9700000286102295, 0.8019999861717224, 0.8019999861717224 };
	double patch[3] = { 48, 116.5, 110.5 }, p2[2] = { 116.5, 110.5 };
	struct nnp_topology t;
	(void)state;
	assert_int_equal(nnp_plan_topology(3, sp, patch, 4, 999999, &t), 0);
	assert_int_equal(t.nstages, 5);
	check_rows((const int (*)[3])t.strides, 5, 3, strides);
	check_rows((const int (*)[3])t.kernels, 5, 3, kernels);
	check_ll3(t.patch, 3, 48, 128, 112);
	assert_int_equal(nnp_plan_topology(2, sp + 1, p2, 4, 999999, &t), 0);
	assert_int_equal(t.nstages, 5);
	check_ll3(t.patch, 2, 128, 112, 0);
	/* one poolable axis below 3 * min_edge stops; 12 still pools */
	{
		double s[2] = { 1, 1 }, q[2] = { 11, 4 }, r[2] = { 12, 4 };
		assert_int_equal(nnp_plan_topology(2, s, q, 4, 999999, &t), 0);
		assert_int_equal(t.nstages, 1);
		check_ll3(t.patch, 2, 11, 4, 0);
		assert_int_equal(nnp_plan_topology(2, s, r, 4, 999999, &t), 0);
		assert_int_equal(t.nstages, 2);
		check_ll3(t.patch, 2, 12, 4, 0);
	}
}

/* ---- VRAM estimate (Appendix A, dynamic-network-architectures) ---- */

static void uniform_arch(struct nnp_arch *a, int dim, int nst, int residual, const int *feat,
			 const int *nenc, const int *ndec)
{
	memset(a, 0, sizeof *a);
	a->dim = dim;
	a->nstages = nst;
	a->residual = residual;
	for (int s = 0; s < nst; s++) {
		a->features[s] = feat[s];
		a->n_enc[s] = nenc[s];
		if (s < nst - 1)
			a->n_dec[s] = ndec[s];
		for (int i = 0; i < dim; i++)
			a->strides[s][i] = s ? 2 : 1;
	}
}

static void test_vram_vectors(void **state)
{
	static const int f3[6] = { 32, 64, 128, 256, 320, 320 }, f2[7] = { 32, 64, 128, 256, 512, 512, 512 };
	static const int two[8] = { 2, 2, 2, 2, 2, 2, 2, 2 }, one[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	static const int blocks[7] = { 1, 3, 4, 6, 6, 6, 6 };
	long long p[3] = { 64, 192, 160 }, c3[3] = { 128, 128, 128 }, c2[2] = { 512, 512 };
	struct nnp_arch a;
	(void)state;
	/* Appendix A: PlainConvUNet, strides [1,1,1],[1,2,2],[2,2,2]x4, 3 outputs */
	uniform_arch(&a, 3, 6, 0, f3, two, two);
	a.strides[1][0] = 1;
	assert_int_equal(nnp_plan_vram(&a, p, 3, 0), 528522240LL);
	/* ResidualEncoderUNet examples of dynamic-network-architectures
	 * (deep supervision on): 558319104 and 129793792 */
	uniform_arch(&a, 3, 6, 1, f3, blocks, one);
	assert_int_equal(nnp_plan_vram(&a, c3, 3, 1), 558319104LL);
	uniform_arch(&a, 2, 7, 1, f2, blocks, one);
	assert_int_equal(nnp_plan_vram(&a, c2, 3, 1), 129793792LL);
	/* deep supervision adds 3 * (64^3 + 32^3 + 16^3 + 8^3) outputs to 3d */
	uniform_arch(&a, 3, 6, 1, f3, blocks, one);
	assert_int_equal(nnp_plan_vram(&a, c3, 3, 1) - nnp_plan_vram(&a, c3, 3, 0),
			 3LL * (64 * 64 * 64 + 32 * 32 * 32 + 16 * 16 * 16 + 8 * 8 * 8));
}

static void test_arch_stage_limits(void **state)
{
	struct nnp_topology t;
	struct nnp_arch a;
	(void)state;
	memset(&t, 0, sizeof t);
	t.dim = 3;
	t.nstages = 14;
	assert_int_equal(nnp_plan_arch(planner("default"), &t, &a), 0);
	assert_int_equal(a.features[13], 320);
	assert_int_equal(a.features[3], 256);
	assert_int_equal(nnp_plan_arch(planner("resenc-l"), &t, &a), NNP_EDATA);
	t.nstages = 13;
	assert_int_equal(nnp_plan_arch(planner("resenc-l"), &t, &a), 0);
	assert_int_equal(a.n_enc[0], 1);
	assert_int_equal(a.n_enc[3], 6);
	assert_int_equal(a.n_dec[11], 1);
	t.nstages = 15;
	assert_int_equal(nnp_plan_arch(planner("default"), &t, &a), NNP_EDATA);
	t.dim = 2;
	t.nstages = 9;
	assert_int_equal(nnp_plan_arch(planner("default"), &t, &a), 0);
	assert_int_equal(a.features[8], 512);
	nnp_err_clear();
}

/* the planner attributes UNet_base_num_features / UNet_max_features_{2d,3d} */
static void test_feature_overrides(void **state)
{
	struct nnp_planner p;
	struct nnp_topology t;
	struct nnp_arch a;
	char name[64];
	(void)state;
	assert_true(nnp_planner_stock_features(planner("default")));
	assert_int_equal(nnp_planner_plans_name(planner("resenc-m"), name, sizeof name), 0);
	assert_string_equal(name, "nnUNetResEncUNetMPlans");
	assert_int_equal(nnp_planner_with_features(planner("default"), 16, 128, 128, &p), 0);
	assert_false(nnp_planner_stock_features(&p));
	assert_string_equal(p.class_name, "ExperimentPlanner");
	assert_int_equal(nnp_planner_plans_name(&p, name, sizeof name), 0);
	assert_string_equal(name, "nnUNetPlans_f16x128");
	assert_int_equal(nnp_planner_plans_name(&p, name, 10), NNP_EUSAGE);
	memset(&t, 0, sizeof t);
	t.dim = 3;
	t.nstages = 6;
	assert_int_equal(nnp_plan_arch(&p, &t, &a), 0);
	assert_int_equal(a.features[0], 16);
	assert_int_equal(a.features[2], 64);
	assert_int_equal(a.features[3], 128);
	assert_int_equal(a.features[5], 128);
	assert_int_equal(nnp_planner_with_features(planner("default"), 8, 256, 64, &p), 0);
	assert_int_equal(nnp_planner_plans_name(&p, name, sizeof name), 0);
	assert_string_equal(name, "nnUNetPlans_f8x256x64");
	t.dim = 2;
	assert_int_equal(nnp_plan_arch(&p, &t, &a), 0);
	assert_int_equal(a.features[5], 256);
	/* the stock values are the stock planner (and its name) */
	assert_int_equal(nnp_planner_with_features(planner("resenc"), 32, 512, 320, &p), 0);
	assert_true(nnp_planner_stock_features(&p));
	assert_int_equal(nnp_planner_plans_name(&p, name, sizeof name), 0);
	assert_string_equal(name, "nnUNetResEncUNetPlans");
	assert_int_equal(nnp_planner_with_features(planner("default"), 0, 128, 128, &p), NNP_EUSAGE);
	assert_int_equal(nnp_planner_with_features(planner("default"), 16, 8, 128, &p), NNP_EUSAGE);
	assert_int_equal(nnp_planner_with_features(planner("default"), 16, 128, -1, &p), NNP_EUSAGE);
	assert_int_equal(nnp_planner_with_features(planner("default"), 16, 128, NNP_PLAN_FEATURES_MAX + 1, &p),
			 NNP_EUSAGE);
	nnp_err_clear();
}

/* ---- configurations (§4.4, §4.7) ---- */

static void test_ct_like_reference(void **state)
{
	/* §4.7 CT-like: 40 cases, fullres spacing 2.5 x 0.75025 x 0.75025,
	 * median 195.5 x 512 x 512 */
	static const int fs_strides[6][3] = { { 1, 1, 1 }, { 1, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 } };
	static const int lo_strides[6][3] = { { 1, 1, 1 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 }, { 2, 2, 2 }, { 1, 2, 2 } };
	double sp[3] = { 2.5, 0.75025, 0.75025 }, med[3] = { 195.5, 512, 512 };
	double nvox = 195.5 * 512 * 512 * 40;
	struct nnp_plan_config full, low, c2;
	int have, it;
	(void)state;
	assert_int_equal(nnp_plan_configuration(planner("default"), 8, 3, 3, sp, med, 0, nvox, &full), 0);
	check_ll3(full.patch, 3, 64, 192, 160);
	assert_int_equal(full.batch_size, 2);
	assert_int_equal(full.arch.nstages, 6);
	check_rows((const int (*)[3])full.arch.strides, 6, 3, fs_strides);
	assert_int_equal(full.estimate, 528522240LL); /* Appendix A */
	assert_int_equal(nnp_plan_lowres(planner("default"), 8, 3, &full, med, 40, &low, &have, &it), 0);
	assert_int_equal(have, 1);
	assert_int_equal(it, 25);
	check_ll3(low.patch, 3, 96, 160, 160);
	assert_int_equal(low.batch_size, 2);
	EQ_D(low.spacing[0], 3.074684663562176);
	EQ_D(low.spacing[1], 1.5708568917230752);
	EQ_D(low.spacing[2], 1.5708568917230752);
	EQ_D(low.median[0], 159);
	EQ_D(low.median[1], 245);
	assert_int_equal(low.median_is_int, 1);
	check_rows((const int (*)[3])low.arch.strides, 6, 3, lo_strides);
	assert_int_equal(nnp_plan_configuration(planner("default"), 8, 3, 2, sp + 1, med + 1, 0, nvox, &c2), 0);
	check_ll3(c2.patch, 2, 512, 512, 0);
	assert_int_equal(c2.batch_size, 12);
	assert_int_equal(c2.arch.nstages, 8);
	for (int s = 1; s < 8; s++)
		assert_true(c2.arch.strides[s][0] == 2 && c2.arch.strides[s][1] == 2);
	/* §4.8: ResEnc M 3d_fullres 64x160x160 bs 2; ResEnc L 96x256x224 bs 2, 2d 512x512 bs 35 */
	assert_int_equal(nnp_plan_configuration(planner("resenc-m"), 8, 3, 3, sp, med, 0, nvox, &full), 0);
	check_ll3(full.patch, 3, 64, 160, 160);
	assert_int_equal(full.batch_size, 2);
	assert_int_equal(nnp_plan_configuration(planner("resenc-l"), 24, 3, 3, sp, med, 0, nvox, &full), 0);
	check_ll3(full.patch, 3, 96, 256, 224);
	assert_int_equal(full.batch_size, 2);
	assert_int_equal(nnp_plan_configuration(planner("resenc-l"), 24, 3, 2, sp + 1, med + 1, 0, nvox, &c2), 0);
	check_ll3(c2.patch, 2, 512, 512, 0);
	assert_int_equal(c2.batch_size, 35);
}

static void test_hippocampus_reference(void **state)
{
	/* §4.7: 260 cases, 1 mm, median 37 x 49 x 35: 40x56x40 bs 9, 2d 56x40
	 * bs 368 (both batch sizes are the 5 % caps) */
	double sp[3] = { 1, 1, 1 }, med[3] = { 37, 49, 35 }, nvox = 37.0 * 49 * 35 * 260;
	struct nnp_plan_config c;
	(void)state;
	assert_int_equal(nnp_plan_configuration(planner("default"), 8, 3, 3, sp, med, 0, nvox, &c), 0);
	check_ll3(c.patch, 3, 40, 56, 40);
	assert_int_equal(c.batch_size, 9);
	assert_int_equal(c.arch.nstages, 4);
	assert_int_equal(nnp_plan_configuration(planner("default"), 8, 3, 2, sp + 1, med + 1, 0, nvox, &c), 0);
	check_ll3(c.patch, 2, 56, 40, 0);
	assert_int_equal(c.batch_size, 368);
	assert_int_equal(c.arch.nstages, 4);
}

static void test_shrink_ties_last_axis(void **state)
{
	/* equal patch/median ratios: the last axis is reduced first */
	double sp[3] = { 1, 1, 1 }, med[3] = { 300, 300, 300 }, m2[2] = { 1028, 1028 };
	struct nnp_plan_config c;
	(void)state;
	assert_int_equal(nnp_plan_configuration(planner("default"), 6, 3, 3, sp, med, 0, 1e12, &c), 0);
	check_ll3(c.patch, 3, 128, 128, 112);
	assert_true(c.shrink_steps > 0);
	assert_int_equal(nnp_plan_configuration(planner("default"), 10, 3, 3, sp, med, 0, 1e12, &c), 0);
	check_ll3(c.patch, 3, 160, 128, 128);
	assert_int_equal(nnp_plan_configuration(planner("default"), 8, 3, 2, sp, m2, 0, 1e12, &c), 0);
	check_ll3(c.patch, 2, 1280, 1024, 0);
	assert_int_equal(c.batch_size, 2);
}

static void test_batch_size_caps(void **state)
{
	double sp[3] = { 1, 1, 1 }, med[3] = { 16, 16, 16 }, nvox = 16.0 * 16 * 16 * 5;
	struct nnp_plan_config c;
	(void)state;
	/* 5 % of 5 tiny cases is 0.25 patches: the floor of 2 wins */
	assert_int_equal(nnp_plan_configuration(planner("default"), 8, 3, 3, sp, med, 0, nvox, &c), 0);
	check_ll3(c.patch, 3, 16, 16, 16);
	assert_int_equal(c.batch_size, 2);
	/* 2d: 0.05 * 20480 / 256 = 4 */
	assert_int_equal(nnp_plan_configuration(planner("default"), 8, 3, 2, sp, med, 0, nvox, &c), 0);
	assert_int_equal(c.batch_size, 4);
	/* ResEnc presets cover the whole dataset: 5 and 80 */
	assert_int_equal(nnp_plan_configuration(planner("resenc-m"), 8, 3, 3, sp, med, 0, nvox, &c), 0);
	assert_int_equal(c.batch_size, 5);
	assert_int_equal(nnp_plan_configuration(planner("resenc-m"), 8, 3, 2, sp, med, 0, nvox, &c), 0);
	assert_int_equal(c.batch_size, 80);
	/* ... but the base ResEnc planner keeps the 5 % cap */
	assert_int_equal(nnp_plan_configuration(planner("resenc"), 8, 3, 2, sp, med, 0, nvox, &c), 0);
	assert_int_equal(c.batch_size, 4);
	/* VRAM headroom alone: round(560e6 / est * 2) when the cap is far */
	assert_int_equal(nnp_plan_configuration(planner("default"), 8, 3, 3, sp, med, 0, 1e15, &c), 0);
	assert_int_equal(c.batch_size, (long long)nearbyint(560000000.0 / (double)c.estimate * 2));
	assert_true(c.batch_size > 100);
	/* degenerate input */
	{
		double bad[3] = { 1, 0, 1 };
		assert_int_equal(nnp_plan_configuration(planner("default"), 8, 3, 3, bad, med, 0, nvox, &c),
				 NNP_EDATA);
		nnp_err_clear();
	}
}

/* ---- whole experiments on generated fingerprints ---- */

struct expect_cfg {
	long long patch[3];
	long long bs;
	int nstages;
};

struct expect {
	const char *kind, *planner;
	double fs0, fs1;              /* fullres spacing axis 0, 1 (0: none) */
	struct expect_cfg c2d, full, low; /* full/low .bs == 0: absent */
	double low_sp0, low_sp1;
	long long low_med[3];
	double med_t[3];
};

static const struct expect expects[] = {
	{ "iso", "default", 1, 1, { { 144, 112 }, 43, 5 }, { { 112, 144, 112 }, 2, 5 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 104.5, 129, 103.5 } },
	{ "iso", "resenc-l", 1, 1, { { 144, 112 }, 588, 5 }, { { 112, 144, 112 }, 8, 5 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 104.5, 129, 103.5 } },
	{ "aniso", "default", 5.0, 0x1.7ae147ae147aep-1, { { 224, 224 }, 7, 6 }, { { 20, 224, 224 }, 2, 6 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 18, 204, 214 } },
	{ "aniso", "resenc-l", 5.0, 0x1.7ae147ae147aep-1, { { 224, 224 }, 141, 6 }, { { 20, 224, 224 }, 7, 6 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 18, 204, 214 } },
	{ "twoch", "default", 1, 1, { { 64, 56 }, 19, 4 }, { { 56, 64, 56 }, 2, 4 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 53.5, 56.5, 55 } },
	{ "twoch", "resenc-l", 1, 1, { { 64, 56 }, 371, 4 }, { { 56, 64, 56 }, 7, 4 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 53.5, 56.5, 55 } },
	{ "tiny", "default", 1, 1, { { 16, 16 }, 4, 3 }, { { 16, 16, 16 }, 2, 3 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 16, 16, 16 } },
	{ "tiny", "resenc-l", 1, 1, { { 16, 16 }, 80, 3 }, { { 16, 16, 16 }, 5, 3 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 16, 16, 16 } },
	{ "huge", "default", 0.8, 0.8, { { 640, 640 }, 8, 8 }, { { 128, 128, 128 }, 2, 6 }, { { 128, 128, 128 }, 2, 6 },
	  2.3881813422742018, 2.3881813422742018, { 201, 198, 204 }, { 601.5, 590, 610 } },
	{ "huge", "resenc-l", 0.8, 0.8, { { 640, 640 }, 23, 8 }, { { 192, 192, 192 }, 2, 6 }, { { 192, 192, 192 }, 2, 6 },
	  1.5788692089012846, 1.5788692089012846, { 305, 299, 309 }, { 601.5, 590, 610 } },
	{ "labels105", "default", 2, 0.8, { { 512, 512 }, 9, 8 }, { { 56, 160, 160 }, 2, 6 }, { { 64, 160, 160 }, 2, 6 },
	  3.305695264543504, 1.6750223437233729, { 106, 245, 245 }, { 175, 512, 512 } },
	{ "labels105", "resenc-l", 2, 0.8, { { 512, 512 }, 29, 8 }, { { 80, 224, 224 }, 2, 6 }, { { 96, 256, 224 }, 2, 6 },
	  2.185454, 1.107387096579557, { 160, 370, 370 }, { 175, 512, 512 } },
	{ "labels105", "resenc-xl", 2, 0.8, { { 512, 512 }, 43, 8 }, { { 96, 256, 256 }, 2, 7 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 175, 512, 512 } },
	{ "twod", "default", 0, 0, { { 512, 384 }, 2, 7 }, { { 0 }, 0, 0 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 1, 495, 347.5 } },
	{ "twod", "resenc-l", 0, 0, { { 512, 384 }, 17, 7 }, { { 0 }, 0, 0 }, { { 0 }, 0, 0 }, 0, 0, { 0 }, { 1, 495, 347.5 } },
};

/* The generated fingerprints (same formulas as the reference run). */
static void gen(const char *kind, struct nnp_plan_input *in)
{
	size_t n = !strcmp(kind, "iso") ? 10 : !strcmp(kind, "aniso") ? 9 : !strcmp(kind, "twoch") ? 8 :
		   !strcmp(kind, "tiny") ? 5 : !strcmp(kind, "huge") ? 4 : !strcmp(kind, "labels105") ? 6 : 20;
	memset(in, 0, sizeof *in);
	in->ncases = n;
	in->spacings = calloc(n, sizeof *in->spacings);
	in->shapes = calloc(n, sizeof *in->shapes);
	assert_non_null(in->spacings);
	assert_non_null(in->shapes);
	in->n_in = !strcmp(kind, "twoch") ? 2 : 1;
	in->n_out = !strcmp(kind, "labels105") ? 105 : 3;
	in->num_training = (long long)n;
	in->median_relative_size = !strcmp(kind, "twoch") ? 0.5 : 0.9;
	for (size_t k = 0; k < n; k++) {
		double i = (double)k, *s = in->spacings[k], *h = in->shapes[k];
		if (!strcmp(kind, "iso")) {
			s[0] = s[1] = s[2] = 1;
			h[0] = 100 + i, h[1] = 120 + 2 * i, h[2] = 90 + 3 * i;
		} else if (!strcmp(kind, "aniso")) {
			s[0] = 5.0 + 0.5 * (double)(k % 3);
			s[1] = s[2] = 0.7 + 0.01 * i;
			h[0] = 12 + i, h[1] = 200 + i, h[2] = 210 + i;
		} else if (!strcmp(kind, "twoch")) {
			s[0] = s[1] = s[2] = 1;
			h[0] = 50 + i, h[1] = 60 - i, h[2] = 55;
		} else if (!strcmp(kind, "tiny")) {
			s[0] = s[1] = s[2] = 1;
			h[0] = h[1] = h[2] = 16;
		} else if (!strcmp(kind, "huge")) {
			s[0] = s[1] = s[2] = 0.8;
			h[0] = 600 + i, h[1] = 590, h[2] = 610;
		} else if (!strcmp(kind, "labels105")) {
			s[0] = 2.0, s[1] = s[2] = 0.8;
			h[0] = 150 + 10 * i, h[1] = h[2] = 512;
		} else { /* twod */
			s[0] = 999, s[1] = s[2] = 1;
			h[0] = 1, h[1] = 400 + 10 * i, h[2] = 300 + 5 * i;
		}
	}
}

static void check_cfg(const char *what, const struct nnp_plan_config *c, const struct expect_cfg *e, int dim)
{
	for (int i = 0; i < dim; i++)
		if (c->patch[i] != e->patch[i])
			fail_msg("%s: patch[%d] = %lld, want %lld", what, i, c->patch[i], e->patch[i]);
	if (c->batch_size != e->bs)
		fail_msg("%s: batch size %lld, want %lld", what, c->batch_size, e->bs);
	if (c->arch.nstages != e->nstages)
		fail_msg("%s: %d stages, want %d", what, c->arch.nstages, e->nstages);
}

static void test_generated_datasets(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof expects / sizeof expects[0]; k++) {
		const struct expect *e = &expects[k];
		const struct nnp_planner *p = planner(e->planner);
		struct nnp_plan_input in;
		struct nnp_plan pl;
		char what[64];
		gen(e->kind, &in);
		assert_int_equal(nnp_plan_experiment(p, p->default_gb, &in, &pl), 0);
		for (int i = 0; i < 3; i++)
			if (pl.median_t[i] != e->med_t[i])
				fail_msg("%s/%s: median[%d] %g, want %g", e->kind, e->planner, i, pl.median_t[i],
					 e->med_t[i]);
		snprintf(what, sizeof what, "%s/%s 2d", e->kind, e->planner);
		check_cfg(what, &pl.c2d, &e->c2d, 2);
		assert_int_equal(pl.c2d.batch_dice, 1);
		assert_int_equal(pl.have_3d, e->full.bs != 0);
		if (pl.have_3d) {
			snprintf(what, sizeof what, "%s/%s 3d_fullres", e->kind, e->planner);
			check_cfg(what, &pl.fullres, &e->full, 3);
			EQ_D(pl.fullres.spacing[0], e->fs0);
			EQ_D(pl.fullres.spacing[1], e->fs1);
		}
		assert_int_equal(pl.have_lowres, e->low.bs != 0);
		if (pl.have_3d)
			assert_int_equal(pl.fullres.batch_dice, pl.have_lowres);
		if (pl.have_lowres) {
			snprintf(what, sizeof what, "%s/%s 3d_lowres", e->kind, e->planner);
			check_cfg(what, &pl.lowres, &e->low, 3);
			EQ_D(pl.lowres.spacing[0], e->low_sp0);
			EQ_D(pl.lowres.spacing[1], e->low_sp1);
			for (int i = 0; i < 3; i++)
				EQ_D(pl.lowres.median[i], (double)e->low_med[i]);
			assert_int_equal(pl.lowres.batch_dice, 0);
		}
		nnp_plan_input_release(&in);
	}
}

/* ---- dataset.json rules ---- */

static void test_norm_schemes(void **state)
{
	(void)state;
	assert_string_equal(nnp_plan_norm_scheme("CT"), "CTNormalization");
	assert_string_equal(nnp_plan_norm_scheme("ct"), "CTNormalization");
	assert_string_equal(nnp_plan_norm_scheme("cT"), "CTNormalization");
	assert_string_equal(nnp_plan_norm_scheme("CTA"), "ZScoreNormalization");
	assert_string_equal(nnp_plan_norm_scheme("noNorm"), "NoNormalization");
	assert_string_equal(nnp_plan_norm_scheme("zscore"), "ZScoreNormalization");
	assert_string_equal(nnp_plan_norm_scheme("Rescale_To_0_1"), "RescaleTo01Normalization");
	assert_string_equal(nnp_plan_norm_scheme("re\xc5\xbf" "cale_to_0_1"), "RescaleTo01Normalization");
	assert_string_equal(nnp_plan_norm_scheme("rgb_to_0_1"), "RGBTo01Normalization");
	assert_string_equal(nnp_plan_norm_scheme("T2"), "ZScoreNormalization");
	assert_string_equal(nnp_plan_norm_scheme(""), "ZScoreNormalization");
}

static const char *reader_of(const char *json, int *ignored)
{
	json_t *j = json_loads(json, 0, NULL);
	const char *r;
	assert_non_null(j);
	r = nnp_plan_reader_writer(j, ignored);
	json_decref(j);
	return r;
}

static void test_reader_writer(void **state)
{
	int ig;
	(void)state;
	assert_string_equal(reader_of("{\"file_ending\": \".nii.gz\"}", &ig), "SimpleITKIO");
	assert_int_equal(ig, 0);
	assert_string_equal(reader_of("{\"file_ending\": \".NII.GZ\"}", &ig), "SimpleITKIO");
	assert_string_equal(reader_of("{\"file_ending\": \".nii\"}", &ig), "NibabelIO");
	assert_string_equal(reader_of("{\"file_ending\": \".png\"}", &ig), "NaturalImage2DIO");
	assert_string_equal(reader_of("{\"file_ending\": \".tif\"}", &ig), "NaturalImage2DIO");
	assert_string_equal(reader_of("{\"file_ending\": \".tiff\"}", &ig), "Tiff3DIO");
	assert_string_equal(reader_of("{\"file_ending\": \".mha\"}", &ig), "SimpleITKIO");
	assert_string_equal(reader_of("{\"file_ending\": \".nrrd\"}", &ig), "SimpleITKIO");
	assert_null(reader_of("{\"file_ending\": \".jpg\"}", &ig));
	assert_string_equal(reader_of("{\"file_ending\": \".nii.gz\", \"overwrite_image_reader_writer\": "
				      "\"NibabelIOWithReorient\"}", &ig), "NibabelIOWithReorient");
	assert_string_equal(reader_of("{\"file_ending\": \".nii.gz\", \"overwrite_image_reader_writer\": "
				      "\"None\"}", &ig), "SimpleITKIO");
	assert_int_equal(ig, 0);
	assert_string_equal(reader_of("{\"file_ending\": \".nii\", \"overwrite_image_reader_writer\": "
				      "\"MyIO\"}", &ig), "NibabelIO");
	assert_int_equal(ig, 1);
}

/* ---- the JSON plans ---- */

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

static json_t *load(const char *ds, const char *file)
{
	char p[256];
	json_t *j;
	snprintf(p, sizeof p, "tests/fixtures/%s/%s", ds, file);
	assert_int_equal(nnp_json_load(p, &j), 0);
	return j;
}

static json_t *build(const char *ds, const char *pl, const char *plans_name)
{
	json_t *dj = load(ds, "dataset.json"), *fp = load(ds, "dataset_fingerprint.json"), *out;
	struct nnp_plan_names names = { ds, plans_name };
	const struct nnp_planner *p = planner(pl);
	assert_int_equal(nnp_plan_build(p, p->default_gb, dj, fp, "fp", &names, &out), 0);
	json_decref(dj);
	json_decref(fp);
	return out;
}

static void test_fixture_plans_identical(void **state)
{
	static const char *ds[] = { "Dataset901_Spheres", "Dataset903_MultiChannel" };
	(void)state;
	for (int i = 0; i < 2; i++) {
		char p[256], *ours, *theirs;
		json_t *plans = build(ds[i], "default", NULL);
		snprintf(p, sizeof p, "tests/fixtures/%s/nnUNetPlans.json", ds[i]);
		theirs = slurp(p);
		assert_int_equal(nnp_json_dumps(plans, 4, 0, &ours), 0);
		if (strcmp(ours, theirs)) {
			size_t k = 0;
			while (ours[k] == theirs[k])
				k++;
			fail_msg("%s differs at byte %zu: ours '%.60s' nnU-Net '%.60s'", ds[i], k, ours + k,
				 theirs + k);
		}
		free(ours);
		free(theirs);
		json_decref(plans);
	}
}

static const char *sget(const json_t *j, const char *path)
{
	char buf[256], *tok, *save;
	snprintf(buf, sizeof buf, "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save))
		j = json_object_get(j, tok);
	return json_string_value(j);
}

static void test_preset_plans(void **state)
{
	static const char *const keys[] = { "resenc-m", "resenc-l", "resenc-xl" };
	static const char *const names[] = { "nnUNetResEncUNetMPlans", "nnUNetResEncUNetLPlans",
					     "nnUNetResEncUNetXLPlans" };
	static const char *const classes[] = { "nnUNetPlannerResEncM", "nnUNetPlannerResEncL",
					       "nnUNetPlannerResEncXL" };
	(void)state;
	for (int i = 0; i < 3; i++) {
		json_t *p = build("Dataset901_Spheres", keys[i], NULL);
		const json_t *kw = json_object_get(json_object_get(json_object_get(json_object_get(
			json_object_get(p, "configurations"), "3d_fullres"), "architecture"), "arch_kwargs"),
			"n_blocks_per_stage");
		assert_string_equal(sget(p, "plans_name"), names[i]);
		assert_string_equal(sget(p, "experiment_planner_used"), classes[i]);
		assert_string_equal(sget(p, "configurations.3d_fullres.architecture.network_class_name"),
				    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet");
		assert_string_equal(sget(p, "configurations.3d_fullres.data_identifier"), "nnUNetPlans_3d_fullres");
		assert_string_equal(sget(p, "configurations.2d.data_identifier"), "nnUNetPlans_2d");
		assert_non_null(kw);
		assert_int_equal(json_integer_value(json_array_get(kw, 0)), 1);
		assert_int_equal(json_integer_value(json_array_get(kw, 1)), 3);
		assert_int_equal(json_integer_value(json_array_get(kw, 2)), 4);
		assert_null(json_object_get(json_object_get(json_object_get(json_object_get(
			json_object_get(p, "configurations"), "3d_fullres"), "architecture"), "arch_kwargs"),
			"n_conv_per_stage"));
		json_decref(p);
	}
	{
		json_t *p = build("Dataset901_Spheres", "default", "myPlans");
		assert_string_equal(sget(p, "plans_name"), "myPlans");
		assert_string_equal(sget(p, "configurations.3d_fullres.data_identifier"), "myPlans_3d_fullres");
		json_decref(p);
	}
}

static void test_keep_old_configurations(void **state)
{
	json_t *p = build("Dataset901_Spheres", "default", NULL);
	json_t *old = json_loads("{\"configurations\": {\"3d_fullres\": {\"batch_size\": 99}, "
				 "\"3d_custom\": {\"inherits_from\": \"3d_fullres\"}}}", 0, NULL);
	json_t *c = json_object_get(p, "configurations");
	const char *k;
	json_t *v;
	const char *order[3];
	int n = 0;
	(void)state;
	assert_int_equal(nnp_plan_keep_old_configurations(p, old), 1);
	json_object_foreach(c, k, v) {
		assert_true(n < 3);
		order[n++] = k;
	}
	assert_int_equal(n, 3);
	assert_string_equal(order[0], "2d");
	assert_string_equal(order[1], "3d_fullres");
	assert_string_equal(order[2], "3d_custom");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(c, "3d_fullres"), "batch_size")), 2);
	json_decref(old);
	old = json_loads("{\"plans_name\": \"x\"}", 0, NULL);
	assert_int_equal(nnp_plan_keep_old_configurations(p, old), NNP_EDATA);
	nnp_err_clear();
	json_decref(old);
	json_decref(p);
}

static void test_bad_inputs(void **state)
{
	static const char *const bad_fp[] = {
		"{\"spacings\": [[1,1,1]], \"shapes_after_crop\": [[10,10,10],[10,10,10]], "
		"\"median_relative_size_after_cropping\": 1, \"foreground_intensity_properties_per_channel\": {}}",
		"{\"spacings\": [[1,0,1]], \"shapes_after_crop\": [[10,10,10]], "
		"\"median_relative_size_after_cropping\": 1, \"foreground_intensity_properties_per_channel\": {}}",
		"{\"spacings\": [[1,1]], \"shapes_after_crop\": [[10,10,10]], "
		"\"median_relative_size_after_cropping\": 1, \"foreground_intensity_properties_per_channel\": {}}",
		"{\"spacings\": [[1,1,1]], \"shapes_after_crop\": [[10,10.5,10]], "
		"\"median_relative_size_after_cropping\": 1, \"foreground_intensity_properties_per_channel\": {}}",
		"{\"spacings\": [], \"shapes_after_crop\": [], "
		"\"median_relative_size_after_cropping\": 1, \"foreground_intensity_properties_per_channel\": {}}",
		"{\"spacings\": [[1,1,1]], \"shapes_after_crop\": [[10,10,10]], "
		"\"foreground_intensity_properties_per_channel\": {}}",
		"{\"spacings\": [[1,1,1]], \"shapes_after_crop\": [[10,10,10]], "
		"\"median_relative_size_after_cropping\": 1}",
		"[1, 2]",
	};
	json_t *dj = json_loads("{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0, \"a\": 1}, "
				"\"numTraining\": 1, \"file_ending\": \".nii.gz\"}", 0, NULL), *out;
	struct nnp_plan_names names = { "D", NULL };
	(void)state;
	for (size_t i = 0; i < sizeof bad_fp / sizeof bad_fp[0]; i++) {
		json_t *fp = json_loads(bad_fp[i], 0, NULL);
		assert_non_null(fp);
		if (nnp_plan_build(planner("default"), 8, dj, fp, "fp.json", &names, &out) != NNP_EDATA)
			fail_msg("fingerprint %zu accepted", i);
		assert_non_null(strstr(nnp_err_msg(), "fp.json"));
		json_decref(fp);
	}
	{
		json_t *fp = json_loads(bad_fp[0], 0, NULL);
		assert_int_equal(nnp_plan_build(planner("default"), 0, dj, fp, "fp.json", &names, &out),
				 NNP_EUSAGE);
		json_decref(fp);
	}
	nnp_err_clear();
	json_decref(dj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_half_even),
		cmocka_unit_test(test_percentile_numpy),
		cmocka_unit_test(test_fullres_spacing_anisotropic),
		cmocka_unit_test(test_transpose_and_new_shape),
		cmocka_unit_test(test_topology_worked_example),
		cmocka_unit_test(test_topology_fractional_patch),
		cmocka_unit_test(test_vram_vectors),
		cmocka_unit_test(test_arch_stage_limits),
		cmocka_unit_test(test_feature_overrides),
		cmocka_unit_test(test_ct_like_reference),
		cmocka_unit_test(test_hippocampus_reference),
		cmocka_unit_test(test_shrink_ties_last_axis),
		cmocka_unit_test(test_batch_size_caps),
		cmocka_unit_test(test_generated_datasets),
		cmocka_unit_test(test_norm_schemes),
		cmocka_unit_test(test_reader_writer),
		cmocka_unit_test(test_fixture_plans_identical),
		cmocka_unit_test(test_preset_plans),
		cmocka_unit_test(test_keep_old_configurations),
		cmocka_unit_test(test_bad_inputs),
	};
	return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
