/* test_evaluate.c — common/evaluate.c: nnU-Net's metrics and NaN rule on
 * hand-computed counts, the joint-histogram counting with an ignore label
 * and regions, label/region keys from dataset.json, numpy's reductions
 * (pairwise sum, nanmean; the percentile HD95 uses), the EDT, HD95/NSD on masks with
 * known distances, aggregation and the summary.json text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "err.h"
#include "evaluate.h"
#include "plan.h"

static void test_metrics_hand(void **state)
{
	struct nnp_eval_counts c = { 3, 1, 2, 10 };
	double m[NNP_EM_COUNT];
	(void)state;
	nnp_eval_metrics(&c, m);
	assert_true(m[NNP_EM_DICE] == 6.0 / 9.0);
	assert_true(m[NNP_EM_IOU] == 0.5);
	assert_true(m[NNP_EM_TP] == 3 && m[NNP_EM_FP] == 1 && m[NNP_EM_FN] == 2 && m[NNP_EM_TN] == 10);
	assert_true(m[NNP_EM_N_PRED] == 4 && m[NNP_EM_N_REF] == 5);
	assert_true(isnan(m[NNP_EM_HD95]) && isnan(m[NNP_EM_NSD]));
}

static void test_metrics_nan_rule(void **state)
{
	struct nnp_eval_counts empty = { 0, 0, 0, 7 }, nopred = { 0, 0, 4, 3 };
	double m[NNP_EM_COUNT];
	(void)state;
	nnp_eval_metrics(&empty, m);
	assert_true(isnan(m[NNP_EM_DICE]) && isnan(m[NNP_EM_IOU]));
	assert_true(m[NNP_EM_TN] == 7 && m[NNP_EM_N_PRED] == 0 && m[NNP_EM_N_REF] == 0);
	nnp_eval_metrics(&nopred, m);
	assert_true(m[NNP_EM_DICE] == 0.0 && m[NNP_EM_IOU] == 0.0);
}

static void test_metric_names(void **state)
{
	(void)state;
	/* the enum is summary.json's (Python's sorted) key order */
	for (int m = 0; m + 1 < NNP_EM_COUNT; m++)
		assert_true(strcmp(nnp_eval_metric_name(m), nnp_eval_metric_name(m + 1)) < 0);
	assert_string_equal(nnp_eval_metric_name(NNP_EM_N_REF), "n_ref");
	assert_true(nnp_eval_metric_is_count(NNP_EM_TN) && !nnp_eval_metric_is_count(NNP_EM_IOU));
}

/* Labels 1, 2 with ignore 3 on 8 voxels:
 *   ref  = 0 1 1 2 3 3 0 2
 *   pred = 1 1 0 2 1 2 7 0
 * valid = ref != 3 (6 voxels).  Label 1: TP 1 (v1), FP 1 (v0; v4 ignored),
 * FN 1 (v2), TN 3.  Label 2: TP 1 (v3), FP 0 (v5 ignored), FN 1 (v7), TN 4. */
static void test_counts_ignore(void **state)
{
	const uint8_t ref[8] = { 0, 1, 1, 2, 3, 3, 0, 2 };
	const int16_t pred[8] = { 1, 1, 0, 2, 1, 2, 7, 0 };
	const int64_t labels[2] = { 1, 2 }, ign = 3, shape[3] = { 1, 2, 4 };
	const double sp[3] = { 1, 1, 1 };
	struct nnp_eval_spec *s;
	struct nnp_eval_result r;
	(void)state;
	assert_int_equal(nnp_eval_spec_from_labels(labels, 2, &ign, &s), NNP_OK);
	assert_int_equal(nnp_eval_arrays(s, shape, sp, NNP_I16, pred, NNP_U8, ref, &r), NNP_OK);
	assert_true(r.counts[0].tp == 1 && r.counts[0].fp == 1 && r.counts[0].fn == 1 && r.counts[0].tn == 3);
	assert_true(r.counts[1].tp == 1 && r.counts[1].fp == 0 && r.counts[1].fn == 1 && r.counts[1].tn == 4);
	assert_true(r.m[NNP_EM_DICE] == 0.5);
	assert_true(r.m[NNP_EM_COUNT + NNP_EM_DICE] == 2.0 / 3.0);
	nnp_eval_result_release(&r);
	nnp_eval_spec_free(s);
}

static json_t *ds_of(const char *txt)
{
	json_error_t e;
	json_t *j = json_loads(txt, 0, &e);
	assert_non_null(j);
	return j;
}

/* Regions (1, 2), 2 and (2,) on ref = 0 1 2 2, pred = 1 2 2 0. */
static void test_regions(void **state)
{
	json_t *ds = ds_of("{\"labels\": {\"background\": 0, \"wt\": [1, 2], \"core\": 2, \"c2\": [2], "
			   "\"ignore\": 3}, \"regions_class_order\": [1, 2, 2], \"file_ending\": \".nii.gz\"}");
	const uint8_t ref[4] = { 0, 1, 2, 2 }, pred[4] = { 1, 2, 2, 0 };
	const int64_t shape[3] = { 1, 1, 4 };
	const double sp[3] = { 1, 1, 1 };
	struct nnp_eval_spec *s;
	struct nnp_eval_result r;
	(void)state;
	assert_int_equal(nnp_eval_spec_from_dataset(ds, "d.json", &s), NNP_OK);
	json_decref(ds);
	assert_int_equal(s->nclasses, 3);
	assert_string_equal(s->classes[0].key, "(1, 2)");
	assert_string_equal(s->classes[1].key, "2");
	assert_string_equal(s->classes[2].key, "(2,)");
	assert_string_equal(s->classes[0].name, "wt");
	assert_true(s->has_ignore && s->ignore == 3);
	assert_string_equal(s->file_ending, ".nii.gz");
	assert_int_equal(nnp_eval_arrays(s, shape, sp, NNP_U8, pred, NNP_U8, ref, &r), NNP_OK);
	/* (1, 2): pred 1 1 1 0, ref 0 1 1 1 -> TP 2, FP 1, FN 1, TN 0 */
	assert_true(r.counts[0].tp == 2 && r.counts[0].fp == 1 && r.counts[0].fn == 1 && r.counts[0].tn == 0);
	/* 2: pred 0 1 1 0, ref 0 0 1 1 -> TP 1, FP 1, FN 1, TN 1 */
	assert_true(r.counts[1].tp == 1 && r.counts[1].fp == 1 && r.counts[1].fn == 1 && r.counts[1].tn == 1);
	assert_memory_equal(&r.counts[1], &r.counts[2], sizeof r.counts[1]);
	nnp_eval_result_release(&r);
	nnp_eval_spec_free(s);
}

static void test_labels_from_dataset(void **state)
{
	json_t *ds = ds_of("{\"labels\": {\"background\": 0, \"b\": 2, \"a\": 1, \"a_again\": [1], \"c\": 10}, "
			   "\"file_ending\": \".nii\"}");
	struct nnp_eval_spec *s;
	(void)state;
	assert_int_equal(nnp_eval_spec_from_dataset(ds, "d.json", &s), NNP_OK);
	json_decref(ds);
	/* all_labels sorted, background dropped; keys str(int) */
	assert_int_equal(s->nclasses, 3);
	assert_string_equal(s->classes[0].key, "1");
	assert_string_equal(s->classes[1].key, "2");
	assert_string_equal(s->classes[2].key, "10");
	assert_string_equal(s->classes[0].name, "a");
	assert_false(s->has_ignore);
	nnp_eval_spec_free(s);
}

static void expect_bad(const char *txt, const char *word)
{
	json_t *ds = ds_of(txt);
	struct nnp_eval_spec *s = NULL;
	assert_int_equal(nnp_eval_spec_from_dataset(ds, "d.json", &s), NNP_EDATA);
	assert_null(s);
	assert_non_null(strstr(nnp_err_msg(), word));
	json_decref(ds);
}

static void test_bad_datasets(void **state)
{
	(void)state;
	expect_bad("{\"file_ending\": \".nii.gz\"}", "labels");
	expect_bad("{\"labels\": {\"x\": 1}, \"file_ending\": \".nii.gz\"}", "background");
	expect_bad("{\"labels\": {\"background\": [0], \"x\": 1}, \"file_ending\": \".nii.gz\"}", "background");
	expect_bad("{\"labels\": {\"background\": 0, \"x\": 1, \"ignore\": 3}, \"file_ending\": \".nii.gz\"}", "max");
	expect_bad("{\"labels\": {\"background\": 0, \"x\": 1, \"ignore\": [2]}, \"file_ending\": \".nii.gz\"}", "ignore");
	expect_bad("{\"labels\": {\"background\": 0, \"x\": [1, 2]}, \"file_ending\": \".nii.gz\"}", "regions_class_order");
	expect_bad("{\"labels\": {\"background\": 0, \"x\": [1, 2]}, \"regions_class_order\": [1, 2], "
		   "\"file_ending\": \".nii.gz\"}", "regions_class_order");
	expect_bad("{\"labels\": {\"background\": 0, \"x\": 1.5}, \"file_ending\": \".nii.gz\"}", "integer");
	expect_bad("{\"labels\": {\"background\": 0, \"x\": []}, \"file_ending\": \".nii.gz\"}", "empty");
	expect_bad("{\"labels\": {\"background\": 0}, \"file_ending\": \".nii.gz\"}", "no foreground");
	expect_bad("{\"labels\": {\"background\": 0, \"x\": 1}}", "file_ending");
}

static void test_simple_labels(void **state)
{
	const int64_t l[4] = { 2, 1, 2, 0 };
	struct nnp_eval_spec *s;
	(void)state;
	assert_int_equal(nnp_eval_spec_from_labels(l, 4, NULL, &s), NNP_OK);
	assert_int_equal(s->nclasses, 3);   /* the duplicate 2 dropped, order kept */
	assert_string_equal(s->classes[0].key, "2");
	assert_string_equal(s->classes[2].key, "0");
	assert_null(s->file_ending);
	assert_int_equal(nnp_eval_spec_set_distances(s, 1, 1, 0), NNP_EUSAGE);
	assert_int_equal(nnp_eval_spec_set_distances(s, 1, 1, 2.5), NNP_OK);
	assert_true(s->hd95 && s->nsd && s->nsd_tol_mm == 2.5);
	nnp_eval_spec_free(s);
	assert_int_equal(nnp_eval_spec_from_labels(l, 0, NULL, &s), NNP_EUSAGE);
}

static void test_bad_values(void **state)
{
	const int64_t l[1] = { 1 }, shape[3] = { 1, 2, 2 };
	const double sp[3] = { 1, 1, 1 };
	const float pred[4] = { 0, 1, 0.5f, 1 }, ok[4] = { 0, 1, 1, 0 };
	const double ref[4] = { 0, NAN, 0, 1 };
	struct nnp_eval_spec *s;
	struct nnp_eval_result r;
	(void)state;
	assert_int_equal(nnp_eval_spec_from_labels(l, 1, NULL, &s), NNP_OK);
	assert_int_equal(nnp_eval_arrays(s, shape, sp, NNP_F32, pred, NNP_F32, ok, &r), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "prediction: voxel (0, 1, 0) holds 0.5"));
	assert_int_equal(nnp_eval_arrays(s, shape, sp, NNP_F32, ok, NNP_F64, ref, &r), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "reference: voxel (1, 0, 0) holds nan"));
	assert_int_equal(nnp_eval_arrays(s, shape, sp, NNP_F32, ok, NNP_F32, ok, &r), NNP_OK);
	assert_true(r.m[NNP_EM_DICE] == 1.0);
	nnp_eval_result_release(&r);
	nnp_eval_spec_free(s);
}

static void test_numpy_reductions(void **state)
{
	double a[11], p[4] = { 4, 1, 3, 2 }, q[3] = { 0.7, 0.1, 0.2 }, one = 5;
	(void)state;
	for (int i = 0; i < 10; i++)
		a[i] = 0.1;
	a[10] = NAN;
	/* np.sum(np.full(10, 0.1)) == 1.0 (8 accumulators), a naive loop gives 0.9999999999999999 */
	assert_true(nnp_np_sum_f64(a, 10) == 1.0);
	assert_true(nnp_np_nanmean_f64(a, 11) == 0.1);
	assert_true(isnan(nnp_np_nanmean_f64(a + 10, 1)));
	/* np.percentile([4, 1, 3, 2], 95) == 3.8499999999999996, ([.1, .2, .7], 95) == 0.6499999999999999 */
	assert_true(nnp_np_percentile(p, 4, 95) == 3.8499999999999996);
	assert_true(nnp_np_percentile(q, 3, 95) == 0.6499999999999999);
	assert_true(nnp_np_percentile(&one, 1, 95) == 5);
}

static void test_edt(void **state)
{
	double line[5] = { 0, INFINITY, INFINITY, INFINITY, INFINITY }, cube[27], none[4];
	const int64_t s1[3] = { 1, 1, 5 }, s3[3] = { 3, 3, 3 }, s0[3] = { 1, 2, 2 };
	const double sp1[3] = { 1, 1, 2 }, sp3[3] = { 1, 2, 3 };
	(void)state;
	assert_int_equal(nnp_eval_edt_sq(line, s1, sp1), NNP_OK);
	for (int i = 0; i < 5; i++)
		assert_true(line[i] == 4.0 * i * i);
	for (int i = 0; i < 27; i++)
		cube[i] = i == 13 ? 0 : INFINITY;
	assert_int_equal(nnp_eval_edt_sq(cube, s3, sp3), NNP_OK);
	assert_true(cube[0] == 1 + 4 + 9);       /* a corner: (1*1)^2 + (1*2)^2 + (1*3)^2 */
	assert_true(cube[12] == 9 && cube[10] == 4 && cube[4] == 1);
	for (int i = 0; i < 4; i++)
		none[i] = INFINITY;
	assert_int_equal(nnp_eval_edt_sq(none, s0, sp1), NNP_OK);
	assert_true(isinf(none[3]));
}

static void test_distances(void **state)
{
	unsigned char p[5] = { 1, 0, 0, 0, 0 }, r[5] = { 0, 0, 0, 1, 0 }, z[5] = { 0 };
	unsigned char cp[64] = { 0 }, cr[64] = { 0 };
	const int64_t s2[3] = { 1, 1, 5 }, s3[3] = { 4, 4, 4 };
	const double sp[3] = { 1, 1, 0.5 }, sp3[3] = { 1, 1, 1 };
	double hd, nsd;
	(void)state;
	/* 2D: one voxel each, 3 voxels of 0.5 mm apart */
	assert_int_equal(nnp_eval_distances(p, r, s2, sp, 1.0, &hd, &nsd), NNP_OK);
	assert_true(hd == 1.5 && nsd == 0.0);
	assert_int_equal(nnp_eval_distances(p, r, s2, sp, 1.5, &hd, &nsd), NNP_OK);
	assert_true(nsd == 1.0);
	assert_int_equal(nnp_eval_distances(p, p, s2, sp, 1.0, &hd, &nsd), NNP_OK);
	assert_true(hd == 0 && nsd == 1.0);
	assert_int_equal(nnp_eval_distances(z, z, s2, sp, 1.0, &hd, &nsd), NNP_OK);
	assert_true(isnan(hd) && isnan(nsd));
	assert_int_equal(nnp_eval_distances(p, z, s2, sp, 1.0, &hd, &nsd), NNP_OK);
	assert_true(isinf(hd) && hd > 0 && nsd == 0.0);
	/* 3D: a 2x2x2 cube (all border voxels) and the same cube moved by one
	 * voxel along x: half of each surface coincides, the rest is 1 mm away */
	for (int z_ = 1; z_ < 3; z_++)
		for (int y = 1; y < 3; y++)
			for (int x = 0; x < 2; x++) {
				cp[(z_ * 4 + y) * 4 + x] = 1;
				cr[(z_ * 4 + y) * 4 + x + 1] = 1;
			}
	assert_int_equal(nnp_eval_distances(cp, cr, s3, sp3, 0.5, &hd, &nsd), NNP_OK);
	assert_true(hd == 1.0 && nsd == 0.5);
}

static void test_summary(void **state)
{
	static const char want[] =
	"{\n"
	"    \"foreground_mean\": {\n"
	"        \"Dice\": 0.6666666666666666,\n"
	"        \"FN\": 1.0,\n"
	"        \"FP\": 0.0,\n"
	"        \"IoU\": 0.5,\n"
	"        \"TN\": 2.0,\n"
	"        \"TP\": 1.0,\n"
	"        \"n_pred\": 1.0,\n"
	"        \"n_ref\": 2.0\n"
	"    },\n"
	"    \"mean\": {\n"
	"        \"1\": {\n"
	"            \"Dice\": 0.6666666666666666,\n"
	"            \"FN\": 1.0,\n"
	"            \"FP\": 0.0,\n"
	"            \"IoU\": 0.5,\n"
	"            \"TN\": 2.0,\n"
	"            \"TP\": 1.0,\n"
	"            \"n_pred\": 1.0,\n"
	"            \"n_ref\": 2.0\n"
	"        }\n"
	"    },\n"
	"    \"metric_per_case\": [\n"
	"        {\n"
	"            \"metrics\": {\n"
	"                \"1\": {\n"
	"                    \"Dice\": 0.6666666666666666,\n"
	"                    \"FN\": 1,\n"
	"                    \"FP\": 0,\n"
	"                    \"IoU\": 0.5,\n"
	"                    \"TN\": 2,\n"
	"                    \"TP\": 1,\n"
	"                    \"n_pred\": 1,\n"
	"                    \"n_ref\": 2\n"
	"                }\n"
	"            },\n"
	"            \"prediction_file\": \"p.nii.gz\",\n"
	"            \"reference_file\": \"r\\u00e9.nii.gz\"\n"
	"        }\n"
	"    ]\n"
	"}";
	const int64_t l[1] = { 1 };
	const uint8_t ref[4] = { 1, 1, 0, 0 }, pred[4] = { 1, 0, 0, 0 };
	const int64_t shape[3] = { 1, 1, 4 };
	const double sp[3] = { 1, 1, 1 };
	struct nnp_eval_spec *s;
	struct nnp_eval_summary *sum;
	char *txt;
	(void)state;
	assert_int_equal(nnp_eval_spec_from_labels(l, 1, NULL, &s), NNP_OK);
	assert_int_equal(nnp_eval_summary_new(s, 1, &sum), NNP_OK);
	assert_int_equal(nnp_eval_arrays(s, shape, sp, NNP_U8, pred, NNP_U8, ref, &sum->cases[0]), NNP_OK);
	sum->cases[0].pred_file = strdup("p.nii.gz");
	sum->cases[0].ref_file = strdup("r\xc3\xa9.nii.gz");
	assert_int_equal(nnp_eval_summary_aggregate(s, sum), NNP_OK);
	assert_int_equal(nnp_eval_summary_dumps(s, sum, &txt), NNP_OK);
	assert_string_equal(txt, want);
	free(txt);
	nnp_eval_summary_free(sum);
	nnp_eval_spec_free(s);
}

/* mean = nanmean over cases; foreground_mean skips key "0" and is NaN when
 * a class mean is NaN. */
static void test_aggregate(void **state)
{
	const int64_t l[3] = { 0, 1, 2 };
	struct nnp_eval_spec *s;
	struct nnp_eval_summary *sum;
	const struct nnp_eval_counts c[2][3] = {
		{ { 5, 0, 0, 1 }, { 1, 1, 0, 4 }, { 0, 0, 0, 6 } },
		{ { 2, 2, 2, 0 }, { 1, 0, 1, 4 }, { 0, 0, 0, 6 } },
	};
	(void)state;
	assert_int_equal(nnp_eval_spec_from_labels(l, 3, NULL, &s), NNP_OK);
	assert_int_equal(nnp_eval_summary_new(s, 2, &sum), NNP_OK);
	for (int i = 0; i < 2; i++) {
		struct nnp_eval_result *r = &sum->cases[i];
		r->nclasses = 3;
		r->counts = calloc(3, sizeof *r->counts);
		r->m = malloc(3 * NNP_EM_COUNT * sizeof *r->m);
		assert_non_null(r->counts);
		assert_non_null(r->m);
		for (int k = 0; k < 3; k++) {
			r->counts[k] = c[i][k];
			nnp_eval_metrics(&c[i][k], r->m + k * NNP_EM_COUNT);
		}
	}
	assert_int_equal(nnp_eval_summary_aggregate(s, sum), NNP_OK);
	/* label 1: Dice 2/3 and 2/3 */
	assert_true(sum->mean[NNP_EM_COUNT + NNP_EM_DICE] == 2.0 / 3.0);
	assert_true(sum->mean[NNP_EM_COUNT + NNP_EM_TP] == 1.0);
	assert_true(isnan(sum->mean[2 * NNP_EM_COUNT + NNP_EM_DICE]));
	assert_true(sum->mean[2 * NNP_EM_COUNT + NNP_EM_TN] == 6.0);
	assert_true(isnan(sum->fg_mean[NNP_EM_DICE]));
	/* TP: (1 + 0) / 2, label 0 skipped */
	assert_true(sum->fg_mean[NNP_EM_TP] == 0.5);
	assert_true(sum->fg_mean[NNP_EM_TN] == 5.0);
	nnp_eval_summary_free(sum);
	nnp_eval_spec_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics_hand),
		cmocka_unit_test(test_metrics_nan_rule),
		cmocka_unit_test(test_metric_names),
		cmocka_unit_test(test_counts_ignore),
		cmocka_unit_test(test_regions),
		cmocka_unit_test(test_labels_from_dataset),
		cmocka_unit_test(test_bad_datasets),
		cmocka_unit_test(test_simple_labels),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_numpy_reductions),
		cmocka_unit_test(test_edt),
		cmocka_unit_test(test_distances),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_aggregate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
