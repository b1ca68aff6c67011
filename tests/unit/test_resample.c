/* test_resample.c — nnU-Net's default resampling against nnU-Net's own
 * outputs (tests/fixtures/ops/resampling: index.json cases, made by
 * resample_data_or_seg_to_shape; resample_decisions.json, made by
 * compute_new_shape / determine_do_sep_z_and_axis), extra branches against
 * scipy (extra_scipy.json, tests/tools/resample_reference.py), and the
 * label path against a naive per-label loop. */
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
#include "resample.h"
#include "nifti.h"
#include "err.h"

#define FX "tests/fixtures/ops/resampling/"

static void load(const char *path, struct nnp_vol *v)
{
	int rc = nnp_nifti_read_volume(path, v);
	if (rc)
		print_error("%s: %s\n", path, nnp_err_msg());
	assert_int_equal(rc, 0);
}

static json_t *load_json(const char *path)
{
	json_error_t e;
	json_t *j = json_load_file(path, 0, &e);
	if (!j)
		print_error("%s:%d: %s\n", path, e.line, e.text);
	assert_non_null(j);
	return j;
}

static void get3d(const json_t *a, double v[3])
{
	for (int i = 0; i < 3; i++)
		v[i] = json_number_value(json_array_get(a, (size_t)i));
}

static void get3i(const json_t *a, int64_t v[3], size_t first)
{
	for (size_t i = 0; i < 3; i++)
		v[i] = json_integer_value(json_array_get(a, i + first));
}

static int force_of(const json_t *j)
{
	return json_is_null(j) || !j ? NNP_SEPZ_AUTO : (json_is_true(j) ? NNP_SEPZ_ON : NNP_SEPZ_OFF);
}

static void check_fixture_decision(json_t *c, const double cur[3], const double nsp[3])
{
	json_t *dz = json_object_get(c, "do_separate_z_and_axis");
	int axis, sep;
	sep = nnp_resample_separate_z(force_of(json_object_get(c, "force_separate_z")), cur, nsp, &axis);
	assert_int_equal(sep, json_is_true(json_array_get(dz, 0)));
	if (sep)
		assert_int_equal(axis, json_integer_value(json_array_get(dz, 1)));
	else
		assert_int_equal(axis, -1);
}

/* ---- decisions ---------------------------------------------------- */

static void test_decisions(void **state)
{
	json_t *j = load_json(FX "resample_decisions.json"), *rows = json_object_get(j, "rows"), *r;
	size_t i;
	(void)state;
	assert_true(json_array_size(rows) >= 20);
	json_array_foreach(rows, i, r) {
		int64_t old[3], want[3], got[3];
		double cur[3], nsp[3];
		int axis, sep;
		get3i(json_object_get(r, "old_shape"), old, 0);
		get3i(json_object_get(r, "new_shape"), want, 0);
		get3d(json_object_get(r, "current_spacing"), cur);
		get3d(json_object_get(r, "new_spacing"), nsp);
		assert_int_equal(nnp_resample_shape(old, cur, nsp, got), 0);
		assert_memory_equal(got, want, sizeof want);
		sep = nnp_resample_separate_z(force_of(json_object_get(r, "force_separate_z")), cur, nsp, &axis);
		assert_int_equal(sep, json_is_true(json_object_get(r, "do_separate_z")));
		if (sep)
			assert_int_equal(axis, json_integer_value(json_object_get(r, "axis")));
		else
			assert_int_equal(axis, -1);
	}
	json_decref(j);
}

static void test_decision_branches(void **state)
{
	int axis;
	const double iso[3] = { 1, 1, 1 }, zaniso[3] = { 3.5, 1, 1 }, tie[3] = { 3, 3, 0.8 };
	const double tie3[3] = { 2, 2, 2 }, xaniso[3] = { 0.9, 0.9, 4 }, edge[3] = { 3, 1, 1 };
	(void)state;
	assert_int_equal(nnp_resample_separate_z(NNP_SEPZ_AUTO, zaniso, iso, &axis), 1);
	assert_int_equal(axis, 0);
	assert_int_equal(nnp_resample_separate_z(NNP_SEPZ_AUTO, iso, xaniso, &axis), 1);  /* from the target */
	assert_int_equal(axis, 2);
	assert_int_equal(nnp_resample_separate_z(NNP_SEPZ_AUTO, edge, iso, &axis), 0);    /* 3 is not > 3 */
	assert_int_equal(axis, -1);
	assert_int_equal(nnp_resample_separate_z(NNP_SEPZ_AUTO, tie, iso, &axis), 0);     /* tie of 2 */
	assert_int_equal(nnp_resample_separate_z(NNP_SEPZ_ON, tie3, iso, &axis), 0);      /* tie of 3 */
	assert_int_equal(nnp_resample_separate_z(NNP_SEPZ_ON, edge, iso, &axis), 1);      /* forced */
	assert_int_equal(axis, 0);
	assert_int_equal(nnp_resample_separate_z(NNP_SEPZ_OFF, zaniso, iso, &axis), 0);
	assert_int_equal(axis, -1);
	{
		const int64_t old[3] = { 5, 5, 5 };
		const double bad[3] = { 1, 0, 1 };
		int64_t ns[3];
		assert_int_equal(nnp_resample_shape(old, bad, iso, ns), NNP_EDATA);
		assert_int_equal(nnp_resample_shape(old, iso, (const double[3]){ 1, 1, 20 }, ns), NNP_EDATA);
	}
}

/* ---- nnU-Net fixtures -------------------------------------------- */

static double ulp_half(float ref)
{
	/* spacing of float16 values at |ref| */
	double a = fabs((double)ref);
	int e;
	if (a < ldexp(1, -14))
		return ldexp(1, -24);
	frexp(a, &e);
	return ldexp(1, e - 11);
}

struct errs {
	double rel_l2, max_abs;
	uint64_t n_diff;
	double max_ulp;
};

static void measure(const float *got, const float *ref, size_t n, struct errs *e)
{
	double num = 0, den = 0;
	memset(e, 0, sizeof *e);
	for (size_t i = 0; i < n; i++) {
		double d = (double)got[i] - (double)ref[i];
		num += d * d;
		den += (double)ref[i] * ref[i];
		if (fabs(d) > e->max_abs)
			e->max_abs = fabs(d);
		if (got[i] != ref[i]) {
			double u = fabs(d) / ulp_half(ref[i]);
			e->n_diff++;
			if (u > e->max_ulp)
				e->max_ulp = u;
		}
	}
	e->rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
}

static void run_fixture_case(json_t *c)
{
	const char *name = json_string_value(json_object_get(c, "name"));
	char path[512];
	struct nnp_vol din, sin, ref, out, h16;
	double cur[3], nsp[3];
	int64_t ns[3], ns2[3];
	int force = force_of(json_object_get(c, "force_separate_z"));
	struct errs e;
	size_t n;

	get3d(json_object_get(c, "current_spacing"), cur);
	get3d(json_object_get(c, "new_spacing"), nsp);
	get3i(json_object_get(c, "new_shape"), ns, 0);
	check_fixture_decision(c, cur, nsp);

	snprintf(path, sizeof path, FX "%s/in_data.nii.gz", name);
	load(path, &din);
	snprintf(path, sizeof path, FX "%s/in_seg.nii.gz", name);
	load(path, &sin);
	/* the shape nnU-Net got from compute_new_shape is what we compute */
	{
		int64_t ish[3];
		get3i(json_object_get(c, "input_shape"), ish, 1);
		assert_memory_equal(ish, din.f.shape + 1, sizeof ish);
		assert_int_equal(nnp_resample_shape(ish, cur, nsp, ns2), 0);
		assert_memory_equal(ns2, ns, sizeof ns);
	}

	/* data, order 3 (float32 in and out) */
	assert_int_equal(din.f.dtype, NNP_F32);
	assert_int_equal(nnp_resample_to_shape(&din, ns, cur, nsp, 0, 3, 0, force, &out), 0);
	snprintf(path, sizeof path, FX "%s/out_data_order3.nii.gz", name);
	load(path, &ref);
	assert_int_equal(out.f.dtype, NNP_F32);
	assert_memory_equal(out.f.shape, ref.f.shape, sizeof out.f.shape);
	n = (size_t)(nnp_frame_nvox(&ref.f) * (uint64_t)ref.f.shape[0]);
	measure(out.data, ref.data, n, &e);
	print_message("  %-26s data_order3: rel-L2 %.3g max-abs %.3g (%llu of %zu voxels differ)\n", name,
		      e.rel_l2, e.max_abs, (unsigned long long)e.n_diff, n);
	assert_true(e.rel_l2 <= 1e-5);
	assert_true(e.max_abs <= 1e-4);
	if (ns[0] == din.f.shape[1] && ns[1] == din.f.shape[2] && ns[2] == din.f.shape[3])
		assert_memory_equal(out.data, din.data, nnp_frame_nbytes(&din.f));  /* no-op */
	nnp_vol_release(&out);
	nnp_vol_release(&ref);

	/* segmentation, order 1 (int8 in and out) */
	assert_int_equal(nnp_resample_to_shape(&sin, ns, cur, nsp, 1, 1, 0, force, &out), 0);
	snprintf(path, sizeof path, FX "%s/out_seg_order1.nii.gz", name);
	load(path, &ref);
	assert_int_equal(out.f.dtype, NNP_I8);
	assert_memory_equal(out.f.shape, ref.f.shape, sizeof out.f.shape);
	assert_memory_equal(out.data, ref.data, nnp_frame_nbytes(&ref.f));
	nnp_vol_release(&out);
	nnp_vol_release(&ref);

	/* float16 logits, order 1 (export): input rounded to float16 */
	nnp_vol_init(&h16);
	assert_int_equal(nnp_frame_copy(&h16.f, &din.f), 0);
	h16.f.dtype = NNP_F16;
	h16.f.chunk_slices = 0;
	assert_int_equal(nnp_vol_alloc(&h16), 0);
	n = (size_t)(nnp_frame_nvox(&din.f) * (uint64_t)din.f.shape[0]);
	for (size_t i = 0; i < n; i++)
		((uint16_t *)h16.data)[i] = nnp_float_to_half(((float *)din.data)[i]);
	assert_int_equal(nnp_resample_to_shape(&h16, ns, cur, nsp, 0, 1, 0, force, &out), 0);
	assert_int_equal(out.f.dtype, NNP_F16);
	snprintf(path, sizeof path, FX "%s/out_fp16_order1.nii.gz", name);
	load(path, &ref);
	assert_memory_equal(out.f.shape, ref.f.shape, sizeof out.f.shape);
	n = (size_t)(nnp_frame_nvox(&ref.f) * (uint64_t)ref.f.shape[0]);
	{
		float *g = malloc(n * sizeof *g);
		assert_non_null(g);
		for (size_t i = 0; i < n; i++)
			g[i] = nnp_half_to_float(((uint16_t *)out.data)[i]);
		measure(g, ref.data, n, &e);
		free(g);
	}
	print_message("  %-26s fp16_order1: %llu of %zu voxels differ (max %.0f float16 ulp)\n", name,
		      (unsigned long long)e.n_diff, n, e.max_ulp);
	assert_int_equal(e.n_diff, 0);
	nnp_vol_release(&out);
	nnp_vol_release(&ref);
	nnp_vol_release(&h16);
	nnp_vol_release(&din);
	nnp_vol_release(&sin);
}

static void test_nnunet_fixtures(void **state)
{
	json_t *j = load_json(FX "index.json"), *cases = json_object_get(j, "cases"), *c;
	size_t i;
	(void)state;
	assert_int_equal(json_array_size(cases), 8);
	json_array_foreach(cases, i, c)
		run_fixture_case(c);
	json_decref(j);
}

/* ---- scipy replay of the other branches ---------------------------- */

static void run_extra_case(json_t *c)
{
	const char *name = json_string_value(json_object_get(c, "name"));
	struct nnp_resample_opts o;
	int64_t in[3], out[3], nin, nout;
	json_t *ji = json_object_get(c, "input"), *jo = json_object_get(c, "output");
	uint64_t evals = 0;
	get3i(json_object_get(c, "in_shape"), in, 0);
	get3i(json_object_get(c, "out_shape"), out, 0);
	nin = in[0] * in[1] * in[2];
	nout = out[0] * out[1] * out[2];
	assert_int_equal((int64_t)json_array_size(ji), nin);
	assert_int_equal((int64_t)json_array_size(jo), nout);
	nnp_resample_opts_init(&o);
	o.is_seg = json_is_true(json_object_get(c, "is_seg"));
	o.order = (int)json_integer_value(json_object_get(c, "order"));
	o.order_z = (int)json_integer_value(json_object_get(c, "order_z"));
	o.separate_z = json_is_true(json_object_get(c, "separate_z"));
	o.axis = (int)json_integer_value(json_object_get(c, "axis"));
	o.label_evals = &evals;
	if (o.is_seg) {
		int8_t *s = malloc((size_t)nin), *d = malloc((size_t)nout);
		int64_t nd = 0;
		assert_non_null(s);
		assert_non_null(d);
		for (int64_t i = 0; i < nin; i++)
			s[i] = (int8_t)json_integer_value(json_array_get(ji, (size_t)i));
		assert_int_equal(nnp_resample_channel(NNP_I8, s, 0, 0, in, NNP_I8, d, out, &o), 0);
		for (int64_t i = 0; i < nout; i++)
			nd += d[i] != json_integer_value(json_array_get(jo, (size_t)i));
		print_message("  %-32s %lld of %lld labels differ\n", name, (long long)nd, (long long)nout);
		assert_int_equal(nd, 0);
		free(s);
		free(d);
	} else {
		double *s = malloc((size_t)nin * sizeof *s), *d = malloc((size_t)nout * sizeof *d), mx = 0, num = 0,
		       den = 0;
		assert_non_null(s);
		assert_non_null(d);
		for (int64_t i = 0; i < nin; i++)
			s[i] = json_number_value(json_array_get(ji, (size_t)i));
		assert_int_equal(nnp_resample_channel(NNP_F64, s, 0, 0, in, NNP_F64, d, out, &o), 0);
		for (int64_t i = 0; i < nout; i++) {
			double r = json_number_value(json_array_get(jo, (size_t)i)), e = fabs(d[i] - r);
			mx = e > mx ? e : mx;
			num += e * e;
			den += r * r;
		}
		print_message("  %-32s float64: max-abs %.3g rel-L2 %.3g\n", name, mx, sqrt(num / den));
		/* orders 0 and 1 replay scipy's arithmetic exactly */
		if (o.order <= 1 && (!o.separate_z || o.order_z <= 1))
			assert_true(mx == 0);
		else
			assert_true(mx <= 1e-11 && sqrt(num / den) <= 1e-14);  /* values ~100 */
		free(s);
		free(d);
	}
}

static void test_scipy_branches(void **state)
{
	json_t *j = load_json(FX "extra_scipy.json"), *cases = json_object_get(j, "cases"), *c;
	size_t i;
	(void)state;
	assert_true(json_array_size(cases) >= 15);
	json_array_foreach(cases, i, c)
		run_extra_case(c);
	json_decref(j);
}

/* ---- the label path vs a naive per-label loop ---------------------- */

/* Naive resize_segmentation(order 1) of batchgenerators, written
 * independently: for every label in ascending order the one-hot mask is
 * interpolated (scipy zoom, grid_mode, mode nearest: 2^3 taps summed z-, y-,
 * x-major with ((v * wz) * wy) * wx) and >= 0.5 overwrites. */
struct ax1 {
	int64_t i0, i1;
	double w0, w1;
};

static struct ax1 naive_axis(int64_t n, int64_t m, int64_t o)
{
	/* scipy 1.10, mode 'nearest': the coordinate is not clamped, the taps are */
	struct ax1 a;
	double zoom = (double)n / (double)m, cc = ((double)o + 0.5) * zoom - 0.5, x;
	int64_t f = (int64_t)floor(cc);
	a.i0 = f < 0 ? 0 : (f > n - 1 ? n - 1 : f);
	a.i1 = f + 1 < 0 ? 0 : (f + 1 > n - 1 ? n - 1 : f + 1);
	x = cc - floor(cc);
	a.w0 = 1.0 - x;
	a.w1 = 1.0 - a.w0;
	return a;
}

static void naive_seg3(const int16_t *s, const int64_t in[3], int16_t *d, const int64_t out[3])
{
	int16_t labels[65536];
	int nl = 0;
	static uint8_t seen[65536];
	int64_t n = in[0] * in[1] * in[2];
	memset(seen, 0, sizeof seen);
	for (int64_t i = 0; i < n; i++)
		seen[(uint16_t)(s[i] + 32768)] = 1;
	for (int v = 0; v < 65536; v++)
		if (seen[v])
			labels[nl++] = (int16_t)(v - 32768);
	memset(d, 0, (size_t)(out[0] * out[1] * out[2]) * sizeof *d);
	for (int l = 0; l < nl; l++)
		for (int64_t z = 0; z < out[0]; z++)
			for (int64_t y = 0; y < out[1]; y++)
				for (int64_t x = 0; x < out[2]; x++) {
					struct ax1 az = naive_axis(in[0], out[0], z), ay = naive_axis(in[1], out[1], y),
						   ax = naive_axis(in[2], out[2], x);
					int64_t zi[2] = { az.i0, az.i1 }, yi[2] = { ay.i0, ay.i1 }, xi[2] = { ax.i0, ax.i1 };
					double zw[2] = { az.w0, az.w1 }, yw[2] = { ay.w0, ay.w1 }, xw[2] = { ax.w0, ax.w1 };
					double t = 0.0;
					for (int a = 0; a < 2; a++)
						for (int b = 0; b < 2; b++)
							for (int c = 0; c < 2; c++) {
								double v = s[(zi[a] * in[1] + yi[b]) * in[2] + xi[c]] ==
										   labels[l] ? 1.0 : 0.0;
								v *= zw[a];
								v *= yw[b];
								v *= xw[c];
								t += v;
							}
					if (t >= 0.5)
						d[(z * out[1] + y) * out[2] + x] = labels[l];
				}
}

static uint64_t lcg(uint64_t *st)
{
	*st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
	return *st >> 33;
}

static void test_many_labels(void **state)
{
	/* 200 labels (-1..198), blobs plus noise, upsampled by 2 (exact 0.5
	 * ties) and by odd factors */
	const int64_t in[3] = { 9, 14, 13 };
	const int64_t outs[3][3] = { { 18, 28, 26 }, { 13, 9, 20 }, { 9, 14, 26 } };
	int64_t n = in[0] * in[1] * in[2];
	int16_t *s = malloc((size_t)n * sizeof *s);
	uint64_t st = 42;
	(void)state;
	assert_non_null(s);
	for (int64_t i = 0; i < n; i++)
		s[i] = (int16_t)((lcg(&st) % 7 == 0) ? (int64_t)(lcg(&st) % 200) - 1 : (i / 23) % 200 - 1);
	for (int k = 0; k < 3; k++) {
		const int64_t *out = outs[k];
		int64_t m = out[0] * out[1] * out[2];
		int16_t *d = malloc((size_t)m * sizeof *d), *r = malloc((size_t)m * sizeof *r);
		struct nnp_resample_opts o;
		uint64_t evals = 0;
		assert_non_null(d);
		assert_non_null(r);
		nnp_resample_opts_init(&o);
		o.is_seg = 1;
		o.order = 1;
		o.label_evals = &evals;
		assert_int_equal(nnp_resample_channel(NNP_I16, s, 0, 0, in, NNP_I16, d, out, &o), 0);
		naive_seg3(s, in, r, out);
		assert_memory_equal(d, r, (size_t)m * sizeof *d);
		/* work: at most one evaluation per distinct neighbour label (8 taps),
		 * whereas the per-label loop does 200 per voxel */
		print_message("  200 labels -> %lldx%lldx%lld: %.2f label interpolations per voxel (naive: 200)\n",
			      (long long)out[0], (long long)out[1], (long long)out[2], (double)evals / (double)m);
		assert_true(evals >= (uint64_t)m);
		assert_true(evals <= 8 * (uint64_t)m);
		free(d);
		free(r);
	}
	/* the same count with 2 labels and with 200: independent of the label
	 * count for the same neighbourhood structure */
	{
		const int64_t out[3] = { 18, 28, 26 };
		int64_t m = out[0] * out[1] * out[2];
		int16_t *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b), *d = malloc((size_t)m * 2);
		struct nnp_resample_opts o;
		uint64_t ea = 0, eb = 0;
		assert_non_null(a);
		assert_non_null(b);
		assert_non_null(d);
		for (int64_t i = 0; i < n; i++) {
			a[i] = (int16_t)(((i % in[2]) / 3 + (i / (in[1] * in[2]))) % 2);            /* 2 labels */
			b[i] = (int16_t)(a[i] ? 100 + ((i % in[2]) / 3 + 5 * (i / (in[1] * in[2]))) % 99 : -1);
		}
		/* b has the same boundaries as a but ~100 distinct labels where a has 1 */
		nnp_resample_opts_init(&o);
		o.is_seg = 1;
		o.order = 1;
		o.label_evals = &ea;
		assert_int_equal(nnp_resample_channel(NNP_I16, a, 0, 0, in, NNP_I16, d, out, &o), 0);
		o.label_evals = &eb;
		assert_int_equal(nnp_resample_channel(NNP_I16, b, 0, 0, in, NNP_I16, d, out, &o), 0);
		print_message("  label interpolations: 2 labels %llu, ~100 labels %llu (%lld voxels)\n",
			      (unsigned long long)ea, (unsigned long long)eb, (long long)m);
		assert_true(eb <= 8 * (uint64_t)m);
		assert_true(eb <= ea + ea / 2);
		free(a);
		free(b);
		free(d);
	}
	free(s);
}

/* Separate z: per slice in-plane per label, then nearest along z. */
static void test_many_labels_separate_z(void **state)
{
	const int64_t in[3] = { 5, 17, 15 }, out[3] = { 12, 25, 11 };
	int64_t n = in[0] * in[1] * in[2], m = out[0] * out[1] * out[2], plane = in[1] * in[2];
	int16_t *s = malloc((size_t)n * 2), *d = malloc((size_t)m * 2), *r = malloc((size_t)m * 2);
	int16_t *ps = malloc((size_t)(out[1] * out[2]) * 2);
	struct nnp_resample_opts o;
	uint64_t st = 7, evals = 0;
	(void)state;
	assert_non_null(s);
	assert_non_null(d);
	assert_non_null(r);
	assert_non_null(ps);
	for (int64_t i = 0; i < n; i++)
		s[i] = (int16_t)(lcg(&st) % 3 ? (int64_t)((i / 4) % 200) - 1 : (int64_t)(lcg(&st) % 200) - 1);
	nnp_resample_opts_init(&o);
	o.is_seg = 1;
	o.order = 1;
	o.separate_z = 1;
	o.axis = 0;
	o.label_evals = &evals;
	assert_int_equal(nnp_resample_channel(NNP_I16, s, 0, 0, in, NNP_I16, d, out, &o), 0);
	for (int64_t z = 0; z < out[0]; z++) {
		/* the 2D naive loop is the 3D one on a 1-slice volume */
		int64_t zs = nnp_resample_nearest(in[0], out[0], z);
		const int64_t in1[3] = { 1, in[1], in[2] }, out1[3] = { 1, out[1], out[2] };
		naive_seg3(s + zs * plane, in1, ps, out1);
		memcpy(r + z * out[1] * out[2], ps, (size_t)(out[1] * out[2]) * 2);
		/* nnU-Net's order-0 map_coordinates: floor(x + 0.5), clamped */
		assert_int_equal(zs, (int64_t)fmin(fmax(floor(((double)z + 0.5) * 5.0 / 12.0 - 0.5 + 0.5), 0), 4));
	}
	assert_memory_equal(d, r, (size_t)m * 2);
	assert_true(evals <= 4 * (uint64_t)(in[0] * out[1] * out[2]));
	free(s);
	free(d);
	free(r);
	free(ps);
}

/* ---- other branches ------------------------------------------------ */

static void test_noop_and_dtypes(void **state)
{
	struct nnp_vol v, o;
	const int64_t same[3] = { 3, 4, 5 };
	const double sp[3] = { 1, 1, 1 };
	(void)state;
	nnp_vol_init(&v);
	v.f.dtype = NNP_I16;
	v.f.shape[0] = 2;
	v.f.shape[1] = 3;
	v.f.shape[2] = 4;
	v.f.shape[3] = 5;
	v.f.spacing[0] = v.f.spacing[1] = v.f.spacing[2] = 1;
	nnp_frame_default_affine(&v.f);
	assert_int_equal(nnp_vol_alloc(&v), 0);
	for (int i = 0; i < 120; i++)
		((int16_t *)v.data)[i] = (int16_t)(i * 7 - 300);
	/* data: int16 in -> float32 out, values unchanged */
	assert_int_equal(nnp_resample_to_shape(&v, same, sp, sp, 0, 3, 0, NNP_SEPZ_AUTO, &o), 0);
	assert_int_equal(o.f.dtype, NNP_F32);
	for (int i = 0; i < 120; i++)
		assert_true(((float *)o.data)[i] == (float)(i * 7 - 300));
	nnp_vol_release(&o);
	/* labels: a plain copy in the same dtype */
	assert_int_equal(nnp_resample_to_shape(&v, same, sp, sp, 1, 1, 0, NNP_SEPZ_AUTO, &o), 0);
	assert_int_equal(o.f.dtype, NNP_I16);
	assert_memory_equal(o.data, v.data, 240);
	nnp_vol_release(&o);
	/* unsupported: float labels, label order 3, data order 6 */
	{
		struct nnp_resample_opts opt;
		const int64_t ns[3] = { 6, 4, 5 };
		nnp_resample_opts_init(&opt);
		opt.is_seg = 1;
		opt.order = 3;
		assert_int_equal(nnp_resample_vol(&v, ns, NULL, &opt, &o), NNP_EUSAGE);
		nnp_vol_release(&o);
		opt.is_seg = 0;
		opt.order = 6;
		assert_int_equal(nnp_resample_vol(&v, ns, NULL, &opt, &o), NNP_EUSAGE);
		nnp_vol_release(&o);
		/* geometry of a real resample: spacing and half-pixel affine */
		opt.order = 0;
		assert_int_equal(nnp_resample_vol(&v, ns, NULL, &opt, &o), 0);
		assert_true(fabs(o.f.spacing[0] - 0.5) < 1e-15);
		assert_true(fabs(o.f.affine[2][2] - 0.5) < 1e-15);
		assert_true(fabs(o.f.affine[2][3] - (-0.25)) < 1e-15);
		assert_true(o.f.affine[0][0] == 1 && o.f.affine[0][3] == 0);
		/* order 0 = nearest of each channel */
		for (int64_t c = 0; c < 2; c++)
			for (int64_t z = 0; z < 6; z++)
				for (int64_t i = 0; i < 20; i++)
					assert_true(((float *)o.data)[c * 120 + z * 20 + i] ==
						    (float)((int16_t *)v.data)[c * 60 + (z / 2) * 20 + i]);
		nnp_vol_release(&o);
	}
	nnp_vol_release(&v);
}

/* NIfTI scale is applied to data (the output carries none). */
static void test_scale_applied(void **state)
{
	struct nnp_vol v, o;
	struct nnp_resample_opts opt;
	const int64_t ns[3] = { 4, 2, 2 };
	(void)state;
	nnp_vol_init(&v);
	v.f.dtype = NNP_U8;
	v.f.shape[0] = 1;
	v.f.shape[1] = 2;
	v.f.shape[2] = 2;
	v.f.shape[3] = 2;
	v.f.spacing[0] = v.f.spacing[1] = v.f.spacing[2] = 1;
	assert_int_equal(nnp_vol_alloc(&v), 0);
	v.f.scale = malloc(2 * sizeof(double));
	assert_non_null(v.f.scale);
	v.f.scale[0] = 2;
	v.f.scale[1] = -1;
	memset(v.data, 3, 8);
	nnp_resample_opts_init(&opt);
	assert_int_equal(nnp_resample_vol(&v, ns, NULL, &opt, &o), 0);
	assert_null(o.f.scale);
	for (int i = 0; i < 16; i++)
		assert_true(((float *)o.data)[i] == 5.0f);   /* constant 2*3-1, clipped */
	nnp_vol_release(&o);
	nnp_vol_release(&v);
}

/* float16 output is rounded once from float64 (numpy's astype), also where
 * float32 rounding first would land on a float16 tie. */
static void test_half_rounding(void **state)
{
	const int64_t sh[3] = { 1, 1, 8 };
	struct nnp_resample_opts o;
	double in[8];
	uint16_t out[8];
	const double one = 1.0, ulp = ldexp(1, -10);
	(void)state;
	nnp_resample_opts_init(&o);
	in[0] = one + ulp / 2;                   /* tie -> even (1.0) */
	in[1] = one + 1.5 * ulp;                 /* tie -> even (1 + 2 ulp) */
	in[2] = one + ulp / 2 + ldexp(1, -40);   /* above the tie; float32 would round to the tie */
	in[3] = one + ulp / 2 - ldexp(1, -40);   /* below */
	in[4] = 65520.0;                         /* overflows to inf */
	in[5] = ldexp(1, -25);                   /* half the smallest subnormal: tie -> 0 */
	in[6] = ldexp(1, -25) * (1 + ldexp(1, -30));  /* just above: smallest subnormal */
	in[7] = -ldexp(3, -26);                  /* 0.75 subnormal ulp -> -1 subnormal */
	assert_int_equal(nnp_resample_channel(NNP_F64, in, 0, 0, sh, NNP_F16, out, sh, &o), 0);
	assert_int_equal(out[0], 0x3c00);
	assert_int_equal(out[1], 0x3c02);
	assert_int_equal(out[2], 0x3c01);
	assert_int_equal(out[3], 0x3c00);
	assert_int_equal(out[4], 0x7c00);
	assert_int_equal(out[5], 0x0000);
	assert_int_equal(out[6], 0x0001);
	assert_int_equal(out[7], 0x8001);
}

/* Building blocks for streaming callers agree with the volume path. */
static void test_plane_api(void **state)
{
	const int64_t a = 11, b = 9, a2 = 7, b2 = 16;
	double src[11 * 9], dst[7 * 16], vol[7 * 16];
	int32_t ls[11 * 9], ld[7 * 16];
	int16_t lsv[11 * 9], ldv[7 * 16];
	struct nnp_resample_opts o;
	const int64_t in[3] = { 1, 11, 9 }, out[3] = { 1, 7, 16 };
	int64_t lo, hi;
	(void)state;
	for (int i = 0; i < a * b; i++) {
		src[i] = sin(i * 0.7) * 10;
		ls[i] = lsv[i] = (int16_t)((i / 5) % 4 - 1);
	}
	nnp_resample_opts_init(&o);
	for (int order = 0; order <= 5; order++) {
		o.order = order;
		assert_int_equal(nnp_resample_plane(src, a, b, dst, a2, b2, order), 0);
		assert_int_equal(nnp_resample_channel(NNP_F64, src, 0, 0, in, NNP_F64, vol, out, &o), 0);
		for (int i = 0; i < a2 * b2; i++)
			assert_true(fabs(dst[i] - vol[i]) <= 1e-12);
	}
	o.is_seg = 1;
	o.order = 1;
	assert_int_equal(nnp_resample_plane_labels(ls, a, b, ld, a2, b2, 1, NULL), 0);
	assert_int_equal(nnp_resample_channel(NNP_I16, lsv, 0, 0, in, NNP_I16, ldv, out, &o), 0);
	for (int i = 0; i < a2 * b2; i++)
		assert_int_equal(ld[i], ldv[i]);
	assert_int_equal(nnp_resample_plane(src, 0, b, dst, a2, b2, 3), NNP_EUSAGE);
	nnp_resample_src_range(10, 20, 1, 0, 20, &lo, &hi);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, 10);
	nnp_resample_src_range(10, 20, 1, 6, 8, &lo, &hi);   /* x = 2.75, 3.25 */
	assert_int_equal(lo, 2);
	assert_int_equal(hi, 5);
	nnp_resample_src_range(10, 20, 0, 6, 8, &lo, &hi);
	assert_int_equal(lo, 3);
	assert_int_equal(hi, 4);
	nnp_resample_src_range(10, 20, 3, 6, 8, &lo, &hi);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decisions),
		cmocka_unit_test(test_decision_branches),
		cmocka_unit_test(test_nnunet_fixtures),
		cmocka_unit_test(test_scipy_branches),
		cmocka_unit_test(test_many_labels),
		cmocka_unit_test(test_many_labels_separate_z),
		cmocka_unit_test(test_noop_and_dtypes),
		cmocka_unit_test(test_scale_applied),
		cmocka_unit_test(test_half_rounding),
		cmocka_unit_test(test_plane_api),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
