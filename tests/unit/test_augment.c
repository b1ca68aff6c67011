/* test_augment.c — the augmentation transforms (common/augment.h): the
 * pipeline's probabilities and ranges over many draws, exact geometric
 * identities (mirror twice, 90-degree rotation, centre crop), the blur
 * kernel rule, the statistics that Contrast and Gamma preserve, and
 * determinism.  The segmentation rule is checked against a numpy reference
 * in tests/t/t1010-augment.t (tests/tools/spatial_reference.py). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "augment.h"
#include "err.h"

/* A c-channel patch of extents n with smooth-ish random values and labels
 * -1..nlab-1 drawn from seed. */
static void random_patch(struct nnp_patch *p, int64_t c, const int64_t n[3], int nlab, uint32_t seed)
{
	struct nnp_aug_rng r;
	assert_int_equal(nnp_patch_alloc(p, c, n), NNP_OK);
	nnp_aug_rng_seed(&r, seed);
	for (int64_t i = 0; i < c * nnp_patch_nvox(p); i++)
		p->img[i] = (float)nnp_aug_uniform(&r, -2, 3);
	for (int64_t i = 0; i < nnp_patch_nvox(p); i++)
		p->seg[i] = (int16_t)((int)nnp_rs_bounded(&r.rs, (uint64_t)nlab - 1) - 1);
}

static void copy_patch(struct nnp_patch *dst, const struct nnp_patch *src)
{
	assert_int_equal(nnp_patch_alloc(dst, src->c, src->n), NNP_OK);
	memcpy(dst->img, src->img, (size_t)(src->c * nnp_patch_nvox(src)) * sizeof(float));
	memcpy(dst->seg, src->seg, (size_t)nnp_patch_nvox(src) * sizeof(int16_t));
}

static int64_t at(const int64_t n[3], int64_t i, int64_t j, int64_t k)
{
	return (i * n[1] + j) * n[2] + k;
}

/* k successes out of n within 4 binomial sigmas of p. */
static void assert_binomial(const char *what, long k, long n, double p)
{
	double mu = n * p, sd = sqrt(n * p * (1 - p));
	if (fabs(k - mu) > 4 * sd + 1e-9)
		fail_msg("%s: %ld of %ld, expected %.1f +- %.1f (4 sigma)", what, k, n, mu, 4 * sd);
	printf("# %-12s %5ld / %ld  (p %.3f, expected %.0f +- %.0f)\n", what, k, n, p, mu, 4 * sd);
}

static void in_range(const char *what, double v, double lo, double hi)
{
	if (!(v >= lo && v <= hi))
		fail_msg("%s %g outside [%g, %g]", what, v, lo, hi);
}

static void default_config(struct nnp_aug_config *cfg, const int64_t patch[3])
{
	memset(cfg, 0, sizeof *cfg);
	memcpy(cfg->patch, patch, sizeof cfg->patch);
	cfg->rot[0] = -M_PI / 6, cfg->rot[1] = M_PI / 6;
	cfg->mirror_axes[0] = cfg->mirror_axes[1] = cfg->mirror_axes[2] = 1;
	nnp_aug_probs_default(&cfg->probs);
}

static void check_ranges(const struct nnp_aug_config *cfg, const struct nnp_aug_record *rec)
{
	for (int a = 0; a < 3; a++)
		in_range("angle", rec->angle[a], cfg->rot[0], cfg->rot[1]);
	in_range("scale", rec->scale, 0.7, 1.4);
	in_range("noise sigma", rec->noise_sigma, 0, 0.1);
	for (int64_t c = 0; c < rec->c; c++) {
		for (int a = 0; a < 3; a++)
			if (!isnan(rec->blur_sigma[3 * c + a]))
				in_range("blur sigma", rec->blur_sigma[3 * c + a], 0.5, 1.0);
		if (!isnan(rec->brightness[c]))
			in_range("brightness", rec->brightness[c], 0.75, 1.25);
		if (!isnan(rec->contrast[c]))
			in_range("contrast", rec->contrast[c], 0.75, 1.25);
		if (!isnan(rec->lowres[c]))
			in_range("lowres", rec->lowres[c], 0.5, 1.0);
		if (!isnan(rec->gamma[c]))
			in_range("gamma", rec->gamma[c], 0.7, 1.5);
		if (!isnan(rec->gamma_inv[c]))
			in_range("gamma_inv", rec->gamma_inv[c], 0.7, 1.5);
	}
}

/* 2000 small samples through the whole pipeline: how often each step fires,
 * parameter ranges, labels valid after RemoveLabel, shapes. */
static void test_probabilities(void **state)
{
	enum { N = 2000, C = 2 };
	const int64_t n[3] = { 7, 8, 9 }, patch[3] = { 4, 5, 6 };
	struct nnp_aug_config cfg;
	long fired[NNP_AUG_NSTEPS] = { 0 }, blur_ch = 0, blur_n = 0, low_ch = 0, low_n = 0, mir[3] = { 0 };
	long untouched = 0, touched = 0;
	default_config(&cfg, patch);
	for (int s = 0; s < N; s++) {
		struct nnp_patch p, crop;
		struct nnp_aug_rng r;
		struct nnp_aug_record rec;
		random_patch(&p, C, n, 4, 1000u + (uint32_t)s);
		assert_int_equal(nnp_aug_spatial(&p, 3, patch, NULL, &crop), NNP_OK);
		nnp_aug_rng_seed(&r, nnp_aug_sample_seed(7, 0, s));
		assert_int_equal(nnp_aug_run(&cfg, &p, &r, &rec), NNP_OK);
		/* the record tells the truth: nothing recorded = the plain crop;
		 * exactly one intensity/spatial step recorded = the image changed */
		int same = !memcmp(p.img, crop.img, sizeof(float) * C * 120);
		unsigned steps = rec.applied & ~(1u << NNP_AUG_MIRROR);
		int none_ch = 1;   /* blur / lowres fired but chose no channel */
		for (int64_t c = 0; c < C; c++) {   /* (lowres near 1 keeps a small patch's shape: a no-op) */
			int lowres_op = 0;
			for (int a = 0; a < 3 && !isnan(rec.lowres[c]); a++)
				lowres_op |= nearbyint((double)patch[a] * rec.lowres[c]) != (double)patch[a];
			none_ch &= isnan(rec.blur_sigma[3 * c]) && !lowres_op;
		}
		if (steps & (1u << NNP_AUG_BLUR | 1u << NNP_AUG_LOWRES) && none_ch)
			steps = 0;
		if (!rec.applied)
			assert_true(same), untouched++;
		else if (!(steps & (steps - 1)) && steps)
			{ if (same) fail_msg("sample %d: only %s recorded, image unchanged", s, nnp_aug_step_name(__builtin_ctz(steps))); touched++; }
		nnp_patch_release(&crop);
		assert_true(p.n[0] == 4 && p.n[1] == 5 && p.n[2] == 6);
		for (int64_t i = 0; i < nnp_patch_nvox(&p); i++)
			assert_true(p.seg[i] >= 0 && p.seg[i] <= 2);
		for (int64_t i = 0; i < C * nnp_patch_nvox(&p); i++)
			assert_true(isfinite(p.img[i]));
		check_ranges(&cfg, &rec);
		for (int k = 0; k < NNP_AUG_NSTEPS; k++)
			fired[k] += (rec.applied >> k) & 1;
		for (int64_t c = 0; c < C; c++) {
			if (rec.applied & (1u << NNP_AUG_BLUR))
				blur_n++, blur_ch += !isnan(rec.blur_sigma[3 * c]);
			if (rec.applied & (1u << NNP_AUG_LOWRES))
				low_n++, low_ch += !isnan(rec.lowres[c]);
		}
		for (int a = 0; a < 3; a++)
			mir[a] += rec.mirrored[a];
		nnp_aug_record_release(&rec);
		nnp_patch_release(&p);
	}
	for (int k = 0; k < NNP_AUG_NSTEPS; k++)
		if (k != NNP_AUG_MIRROR && k != NNP_AUG_MASK)
			assert_binomial(nnp_aug_step_name(k), fired[k], N, cfg.probs.p[k]);
	assert_binomial("mirror", fired[NNP_AUG_MIRROR], N, 1 - 0.125);
	assert_int_equal(fired[NNP_AUG_MASK], 0);   /* no mask channels configured */
	assert_binomial("blur/ch", blur_ch, blur_n, 0.5);
	assert_binomial("lowres/ch", low_ch, low_n, 0.5);
	for (int a = 0; a < 3; a++)
		assert_binomial("mirror/axis", mir[a], N, 0.5);
	printf("# %ld samples with nothing recorded were untouched, %ld with one step were changed\n",
	       untouched, touched);
	assert_true(untouched > 20 && touched > 400);   /* about 39 and 580 expected */
}

static void test_mirror_twice(void **state)
{
	const int64_t n[3] = { 3, 4, 5 };
	struct nnp_patch p, q;
	random_patch(&p, 2, n, 3, 5);
	copy_patch(&q, &p);
	for (int m = 1; m < 8; m++) {
		int f[3] = { m & 1, (m >> 1) & 1, (m >> 2) & 1 };
		nnp_aug_mirror(&p, f);
		if (m == 1)   /* axis 0 alone: a real flip */
			assert_true(p.img[0] == q.img[at(n, 2, 0, 0)] && p.seg[at(n, 0, 1, 2)] == q.seg[at(n, 2, 1, 2)]);
		nnp_aug_mirror(&p, f);
		assert_memory_equal(p.img, q.img, sizeof(float) * 2 * 60);
		assert_memory_equal(p.seg, q.seg, sizeof(int16_t) * 60);
	}
	nnp_patch_release(&p);
	nnp_patch_release(&q);
}

/* 90 degrees about each axis, scale 1, odd cube: exactly out[k] = in[R g + c]. */
static void test_rotation_90(void **state)
{
	const int64_t n[3] = { 9, 9, 9 }, P[3] = { 5, 5, 5 };
	struct nnp_patch in, out;
	random_patch(&in, 2, n, 4, 11);
	for (int ax = 0; ax < 3; ax++) {
		double ang[3] = { 0, 0, 0 }, A[3][3];
		ang[ax] = M_PI / 2;
		nnp_aug_affine(3, ang, 1.0, A);
		assert_int_equal(nnp_aug_spatial(&in, 3, P, (const double(*)[3])A, &out), NNP_OK);
		long moved = 0;
		for (int64_t i = 0; i < 5; i++)
			for (int64_t j = 0; j < 5; j++)
				for (int64_t k = 0; k < 5; k++) {
					int64_t g[3] = { i - 2, j - 2, k - 2 }, q[3];
					for (int a = 0; a < 3; a++) {
						q[a] = 4;
						for (int b = 0; b < 3; b++)
							q[a] += (int64_t)lround(A[a][b]) * g[b];
					}
					int64_t o = at(P, i, j, k), s = at(n, q[0], q[1], q[2]);
					moved += s != at(n, i + 2, j + 2, k + 2);
					assert_int_equal(out.seg[o], in.seg[s]);
					for (int c = 0; c < 2; c++)
						assert_true(out.img[c * 125 + o] == in.img[c * 729 + s]);
				}
		assert_true(moved > 100);   /* a real rotation, not the identity */
		nnp_patch_release(&out);
	}
	nnp_patch_release(&in);
}

/* Centre crop (no transform) and the identity affine when S - p is even: a
 * plain crop at floor(S/2) - p/2; beyond the input: image 0, seg -1. */
static void test_centre_crop(void **state)
{
	const int64_t n[3] = { 7, 9, 10 }, P[3] = { 3, 5, 6 }, big[3] = { 9, 9, 12 };
	double I[3][3] = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } };
	struct nnp_patch in, out, aff, pad;
	random_patch(&in, 1, n, 3, 3);
	assert_int_equal(nnp_aug_spatial(&in, 3, P, NULL, &out), NNP_OK);
	assert_int_equal(nnp_aug_spatial(&in, 3, P, (const double(*)[3])I, &aff), NNP_OK);
	for (int64_t i = 0; i < 3; i++)
		for (int64_t j = 0; j < 5; j++)
			for (int64_t k = 0; k < 6; k++) {
				int64_t s = at(n, i + 2, j + 2, k + 2), o = at(P, i, j, k);
				assert_true(out.img[o] == in.img[s] && out.seg[o] == in.seg[s]);
				assert_true(aff.img[o] == in.img[s] && aff.seg[o] == in.seg[s]);
			}
	assert_int_equal(nnp_aug_spatial(&in, 3, big, NULL, &pad), NNP_OK);
	assert_true(pad.seg[0] == -1 && pad.img[0] == 0.0f);                   /* z = -1: outside */
	assert_true(pad.img[at(big, 1, 0, 1)] == in.img[at(n, 0, 0, 0)]);     /* start (-1, 0, -1) */
	nnp_patch_release(&in);
	nnp_patch_release(&out);
	nnp_patch_release(&aff);
	nnp_patch_release(&pad);
}

static void test_blur_kernel(void **state)
{
	/* 6 sigma + 0.5 -> round half-even -> odd toward the unrounded value */
	static const struct { double s; int k; } tab[] = {
		{ 0.5, 3 }, { 0.6, 5 }, { 0.75, 5 }, { 0.9, 5 }, { 1.0, 7 }, { 0.95, 7 }, { 2.0, 13 }, { 0.25, 3 },
	};
	for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
		if (nnp_aug_blur_ksize(tab[i].s) != tab[i].k)
			fail_msg("sigma %g: ksize %d, expected %d", tab[i].s, nnp_aug_blur_ksize(tab[i].s), tab[i].k);
	/* a constant stays constant (reflect padding), an impulse spreads symmetrically */
	const int64_t n[3] = { 5, 6, 7 };
	const double sg[3] = { 0.7, 0.9, 1.0 };
	struct nnp_patch p;
	assert_int_equal(nnp_patch_alloc(&p, 1, n), NNP_OK);
	for (int i = 0; i < 210; i++)
		p.img[i] = 2.5f;
	assert_int_equal(nnp_aug_blur(&p, 0, sg), NNP_OK);
	for (int i = 0; i < 210; i++)
		assert_true(fabsf(p.img[i] - 2.5f) < 1e-5f);
	memset(p.img, 0, 210 * sizeof(float));
	p.img[at(n, 2, 3, 3)] = 1;
	assert_int_equal(nnp_aug_blur(&p, 0, sg), NNP_OK);
	assert_true(fabsf(p.img[at(n, 2, 3, 2)] - p.img[at(n, 2, 3, 4)]) < 1e-7f);
	assert_true(p.img[at(n, 2, 3, 3)] < 1 && p.img[at(n, 2, 3, 3)] > p.img[at(n, 2, 3, 2)]);
	nnp_patch_release(&p);
}

static void test_contrast_range(void **state)
{
	const int64_t n[3] = { 4, 5, 6 };
	const double fs[] = { 1.25, 1.1, 0.8 };
	for (size_t t = 0; t < 3; t++) {
		struct nnp_patch p, q;
		float lo = INFINITY, hi = -INFINITY, lo2 = INFINITY, hi2 = -INFINITY;
		random_patch(&p, 1, n, 2, 21 + (uint32_t)t);
		copy_patch(&q, &p);
		nnp_aug_contrast(&p, 0, fs[t]);
		for (int i = 0; i < 120; i++) {
			lo = fminf(lo, q.img[i]), hi = fmaxf(hi, q.img[i]);
			lo2 = fminf(lo2, p.img[i]), hi2 = fmaxf(hi2, p.img[i]);
		}
		assert_true(lo2 >= lo && hi2 <= hi);
		if (fs[t] > 1)   /* expanded and clipped: the range is kept exactly */
			assert_true(lo2 == lo && hi2 == hi);
		nnp_patch_release(&p);
		nnp_patch_release(&q);
	}
}

static void mean_std(const float *x, int n, double *mu, double *sd)
{
	double s = 0, ss = 0;
	for (int i = 0; i < n; i++)
		s += x[i];
	*mu = s / n;
	for (int i = 0; i < n; i++)
		ss += (x[i] - *mu) * (x[i] - *mu);
	*sd = sqrt(ss / (n - 1));
}

static void test_gamma_stats(void **state)
{
	const int64_t n[3] = { 6, 7, 8 };
	const double gs[] = { 0.7, 1.5, 1.2 };
	for (int inv = 0; inv < 2; inv++)
		for (int t = 0; t < 3; t++) {
			struct nnp_patch p, q;
			double m0, s0, m1, s1;
			random_patch(&p, 1, n, 2, 31 + (uint32_t)t);
			copy_patch(&q, &p);
			nnp_aug_gamma(&p, 0, gs[t], inv);
			mean_std(q.img, 336, &m0, &s0);
			mean_std(p.img, 336, &m1, &s1);
			assert_true(fabs(m1 - m0) < 1e-5 * (1 + fabs(m0)));
			assert_true(fabs(s1 - s0) < 1e-5 * s0);
			assert_true(memcmp(p.img, q.img, 336 * sizeof(float)));   /* it changed something */
			nnp_patch_release(&p);
			nnp_patch_release(&q);
		}
}

/* Every single transform, forced, changes the image; identical seeds give
 * identical bytes, different seeds differ. */
static void run_only(unsigned mask, uint32_t seed, struct nnp_patch *out)
{
	const int64_t n[3] = { 9, 10, 11 }, patch[3] = { 5, 6, 7 };
	struct nnp_aug_config cfg;
	struct nnp_aug_rng r;
	struct nnp_aug_record rec;
	unsigned char mask_ch[2] = { 1, 0 };
	default_config(&cfg, patch);
	cfg.mask_ch = mask_ch;
	cfg.n_mask = 2;
	nnp_aug_probs_only(&cfg.probs, mask);
	random_patch(out, 2, n, 3, 99);
	nnp_aug_rng_seed(&r, seed);
	assert_int_equal(nnp_aug_run(&cfg, out, &r, &rec), NNP_OK);
	assert_int_equal(rec.applied, mask);
	nnp_aug_record_release(&rec);
}

static void test_each_transform(void **state)
{
	struct nnp_patch base, p, q;
	run_only(0, 1, &base);
	for (int k = 0; k < NNP_AUG_NSTEPS; k++) {
		run_only(1u << k, 1, &p);
		run_only(1u << k, 1, &q);
		size_t nb = (size_t)(2 * nnp_patch_nvox(&p)) * sizeof(float);
		assert_memory_equal(p.img, q.img, nb);
		if (!memcmp(p.img, base.img, nb))
			fail_msg("%s left the image unchanged", nnp_aug_step_name(k));
		nnp_patch_release(&q);
		if (k != NNP_AUG_MASK && k != NNP_AUG_MIRROR) {   /* mask and forced mirror draw nothing */
			run_only(1u << k, 2, &q);
			if (!memcmp(p.img, q.img, nb))
				fail_msg("%s: seeds 1 and 2 give the same image", nnp_aug_step_name(k));
			nnp_patch_release(&q);
		}
		nnp_patch_release(&p);
	}
	nnp_patch_release(&base);
}

static void test_names_and_seed(void **state)
{
	for (int k = 0; k < NNP_AUG_NSTEPS; k++)
		assert_int_equal(nnp_aug_step_from_name(nnp_aug_step_name(k)), k);
	assert_int_equal(nnp_aug_step_from_name("elastic"), -1);
	assert_true(nnp_aug_sample_seed(1, 0, 0) != nnp_aug_sample_seed(1, 0, 1));
	assert_true(nnp_aug_sample_seed(1, 0, 1) != nnp_aug_sample_seed(1, 1, 0));
	assert_true(nnp_aug_sample_seed(1, 2, 3) == nnp_aug_sample_seed(1, 2, 3));
	/* numpy: RandomState(0).random_sample() = 0.5488135039273248, standard_normal
	 * after reseeding = 1.764052345967664 */
	struct nnp_aug_rng r;
	nnp_aug_rng_seed(&r, 0);
	assert_true(nnp_aug_uniform(&r, 0, 1) == 0.5488135039273248);
	nnp_aug_rng_seed(&r, 0);
	assert_true(fabs(nnp_aug_normal(&r) - 1.764052345967664) < 1e-15);
	assert_true(fabs(nnp_aug_normal(&r) - 0.4001572083672233) < 1e-15);
}

static void test_bad_sample(void **state)
{
	const int64_t n[3] = { 4, 5, 6 }, patch[3] = { 4, 6, 6 };
	struct nnp_aug_config cfg;
	struct nnp_patch p;
	default_config(&cfg, patch);
	random_patch(&p, 1, n, 2, 1);
	assert_int_equal(nnp_aug_check(&cfg, &p), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "does not fit"));
	cfg.patch[1] = 5, cfg.two_d = 1;
	assert_int_equal(nnp_aug_check(&cfg, &p), NNP_EDATA);
	cfg.two_d = 0, cfg.dummy_2d = 1, cfg.patch[0] = 3;
	assert_int_equal(nnp_aug_check(&cfg, &p), NNP_EDATA);
	nnp_patch_release(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_and_seed),
		cmocka_unit_test(test_mirror_twice),
		cmocka_unit_test(test_rotation_90),
		cmocka_unit_test(test_centre_crop),
		cmocka_unit_test(test_blur_kernel),
		cmocka_unit_test(test_contrast_range),
		cmocka_unit_test(test_gamma_stats),
		cmocka_unit_test(test_each_transform),
		cmocka_unit_test(test_bad_sample),
		cmocka_unit_test(test_probabilities),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
