/* resample_bench.c — time nnp_resample_* on nnU-Net's benchmark shapes
 * (/work/shared/nnunet-timings.md), one case per process so that
 * /usr/bin/time -v reports the case's own peak RSS:
 *
 *   make GPU=0 build/libnnp.a
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -Icommon -I/usr/include/nifti -fopenmp \
 *       -o build/resample_bench bench/resample_bench.c build/libnnp.a \
 *       -lnifti2 -lznz -lmsgpackc -ljansson -lz -lm -ldl
 *   /usr/bin/time -v build/resample_bench ct_1mm_data
 *
 * Cases: ct_1mm_data / ct_1mm_seg ([1, 200, 512, 512] at 2.5 x 0.7 x 0.7 mm
 * -> 1 mm: [500, 358, 358], separate z on axis 0, order 3 / labels order 1),
 * ct_fullres_data / ct_fullres_seg (-> the 901 3d_fullres spacing: [168,
 * 447, 447]), ct_1mm_data_nosepz (the same with force_separate_z False:
 * full 3D order 3), export33 ([33, 200, 256, 256] float16 logits, order 1,
 * -> [200, 320, 320]).  Prints the wall time of the resampling call only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "resample.h"
#include "err.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void make_vol(struct nnp_vol *v, enum nnp_dtype dt, int64_t c, int64_t z, int64_t y, int64_t x,
		     const double sp[3])
{
	nnp_vol_init(v);
	v->f.dtype = dt;
	v->f.shape[0] = c;
	v->f.shape[1] = z;
	v->f.shape[2] = y;
	v->f.shape[3] = x;
	memcpy(v->f.spacing, sp, sizeof v->f.spacing);
	nnp_frame_default_affine(&v->f);
	if (nnp_vol_alloc(v)) {
		fprintf(stderr, "resample_bench: %s\n", nnp_err_msg());
		exit(4);
	}
}

/* CT-like intensities: body ellipse with structures, air outside. */
static void fill_ct(struct nnp_vol *v)
{
	int64_t z = v->f.shape[1], y = v->f.shape[2], x = v->f.shape[3];
	float *d = v->data;
	#pragma omp parallel for schedule(static)
	for (int64_t k = 0; k < z; k++)
		for (int64_t j = 0; j < y; j++)
			for (int64_t i = 0; i < x; i++) {
				double u = (i - x / 2.0) / (x * 0.42), w = (j - y / 2.0) / (y * 0.33);
				double r = u * u + w * w, val = -1000;
				if (r < 1)
					val = 40 + 30 * sin(i * 0.05 + k * 0.1) * cos(j * 0.07) +
					      (r < 0.1 ? 300 : 0) + ((i * 7 + j * 13 + k * 3) % 17) - 8;
				d[(k * y + j) * x + i] = (float)val;
			}
}

/* Label map: background 0 and 5 organs (blobs). */
static void fill_seg(struct nnp_vol *v)
{
	int64_t z = v->f.shape[1], y = v->f.shape[2], x = v->f.shape[3];
	int8_t *d = v->data;
	#pragma omp parallel for schedule(static)
	for (int64_t k = 0; k < z; k++)
		for (int64_t j = 0; j < y; j++)
			for (int64_t i = 0; i < x; i++) {
				int8_t l = 0;
				for (int o = 0; o < 5; o++) {
					double cx = x * (0.25 + 0.12 * o), cy = y * (0.4 + 0.05 * o), cz = z * (0.2 + 0.15 * o);
					double dx = (i - cx) / (x * 0.1), dy = (j - cy) / (y * 0.12), dz = (k - cz) / (z * 0.15);
					if (dx * dx + dy * dy + dz * dz < 1)
						l = (int8_t)(o + 1);
				}
				d[(k * y + j) * x + i] = l;
			}
}

static void fill_logits(struct nnp_vol *v)
{
	uint64_t n = nnp_frame_nvox(&v->f) * (uint64_t)v->f.shape[0];
	uint16_t *d = v->data;
	#pragma omp parallel for schedule(static)
	for (uint64_t i = 0; i < n; i++)
		d[i] = nnp_float_to_half((float)(5 * sin((double)i * 1e-3) + (double)(i % 11) * 0.1));
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "ct_1mm_data";
	const double ct_sp[3] = { 2.5, 0.7, 0.7 }, mm1[3] = { 1, 1, 1 };
	const double fullres[3] = { 2.9700000286102295, 0.8019999861717224, 0.8019999861717224 };
	struct nnp_vol in, out;
	int64_t ns[3];
	const double *target = strstr(c, "fullres") ? fullres : mm1;
	int is_seg = strstr(c, "_seg") != NULL, force = strstr(c, "nosepz") ? NNP_SEPZ_OFF : NNP_SEPZ_AUTO;
	int order = is_seg ? 1 : 3, rc;
	double t0, t1;
	if (!strcmp(c, "export33")) {
		const double cur[3] = { 2.5, 1.0, 1.0 }, orig[3] = { 2.5, 0.8, 0.8 };
		make_vol(&in, NNP_F16, 33, 200, 256, 256, cur);
		fill_logits(&in);
		ns[0] = 200;
		ns[1] = 320;
		ns[2] = 320;
		t0 = now();
		rc = nnp_resample_to_shape(&in, ns, cur, orig, 0, 1, 0, NNP_SEPZ_AUTO, &out);
		t1 = now();
	} else {
		make_vol(&in, is_seg ? NNP_I8 : NNP_F32, 1, 200, 512, 512, ct_sp);
		if (is_seg)
			fill_seg(&in);
		else
			fill_ct(&in);
		if (nnp_resample_shape(in.f.shape + 1, ct_sp, target, ns)) {
			fprintf(stderr, "resample_bench: %s\n", nnp_err_msg());
			return 1;
		}
		t0 = now();
		rc = nnp_resample_to_shape(&in, ns, ct_sp, target, is_seg, order, 0, force, &out);
		t1 = now();
	}
	if (rc) {
		fprintf(stderr, "resample_bench: %s\n", nnp_err_msg());
		return 1;
	}
	printf("%s: [%lld, %lld, %lld, %lld] -> [%lld, %lld, %lld] %s: %.3f s\n", c, (long long)in.f.shape[0],
	       (long long)in.f.shape[1], (long long)in.f.shape[2], (long long)in.f.shape[3], (long long)ns[0],
	       (long long)ns[1], (long long)ns[2], nnp_dtype_name(out.f.dtype), t1 - t0);
	nnp_vol_release(&in);
	nnp_vol_release(&out);
	return 0;
}
