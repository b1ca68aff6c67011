/* test_sliding.c — sliding-window steps, padding, tile order and the Gaussian
 * importance map against nnU-Net's own outputs
 * (tests/fixtures/ops/sliding_window: index.json from
 * compute_steps_for_sliding_window / pad_nd_image / compute_gaussian; the
 * three smallest gaussian_*.nii.gz; the sha256 of every map's float16 bytes). */
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
#include "dtype.h"
#include "err.h"
#include "nifti.h"
#include "sliding.h"

#define FX "tests/fixtures/ops/sliding_window/"

static json_t *index_json(void)
{
	json_error_t e;
	json_t *j = json_load_file(FX "index.json", 0, &e);
	if (!j)
		fail_msg("%s:%d: %s", FX "index.json", e.line, e.text);
	return j;
}

static int ints(const json_t *a, int64_t *out)
{
	size_t i;
	json_t *v;
	assert_true(json_is_array(a));
	assert_true(json_array_size(a) <= NNP_SW_MAXDIM);
	json_array_foreach(a, i, v)
		out[i] = json_integer_value(v);
	return (int)json_array_size(a);
}

/* ---- sha256 (FIPS 180-4), enough to check the fixtures' digests ---- */
static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t *h, const unsigned char *p)
{
	uint32_t w[64], s[8];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	memcpy(s, h, sizeof(s));
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = s[7] + (ROR(s[4], 6) ^ ROR(s[4], 11) ^ ROR(s[4], 25)) +
			      ((s[4] & s[5]) ^ (~s[4] & s[6])) + K256[i] + w[i];
		uint32_t t2 = (ROR(s[0], 2) ^ ROR(s[0], 13) ^ ROR(s[0], 22)) +
			      ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
		memmove(s + 1, s, 7 * sizeof(uint32_t));
		s[4] += t1;
		s[0] = t1 + t2;
	}
	for (int i = 0; i < 8; i++)
		h[i] += s[i];
}

static void sha256_hex(const void *data, size_t n, char hex[65])
{
	uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
			  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	const unsigned char *p = data;
	unsigned char tail[128] = { 0 };
	size_t full = n / 64 * 64, rest = n - full, tl;
	uint64_t bits = (uint64_t)n * 8;
	for (size_t i = 0; i < full; i += 64)
		sha256_block(h, p + i);
	memcpy(tail, p + full, rest);
	tail[rest] = 0x80;
	tl = rest + 1 + 8 <= 64 ? 64 : 128;
	for (int i = 0; i < 8; i++)
		tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
	for (size_t i = 0; i < tl; i += 64)
		sha256_block(h, tail + i);
	for (int i = 0; i < 8; i++)
		snprintf(hex + 8 * i, 9, "%08x", h[i]);
}

static void test_sha256_self(void **state)
{
	char hex[65];
	(void)state;
	sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha256_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* ---- steps ---- */

static void test_steps_table(void **state)
{
	json_t *j = index_json(), *row;
	json_t *tab = json_object_get(j, "steps_table");
	size_t r;
	(void)state;
	assert_true(json_array_size(tab) >= 13);
	json_array_foreach(tab, r, row) {
		int64_t img[3], tile[3];
		int nd = ints(json_object_get(row, "image_size"), img);
		assert_int_equal(ints(json_object_get(row, "tile_size"), tile), nd);
		double step = json_number_value(json_object_get(row, "tile_step_size"));
		json_t *want = json_object_get(row, "steps");
		struct nnp_sw_steps s;
		assert_int_equal(nnp_sw_steps(nd, img, tile, step, &s), NNP_OK);
		assert_int_equal(s.ndim, nd);
		assert_int_equal((int)json_array_size(want), nd);
		for (int d = 0; d < nd; d++) {
			json_t *w = json_array_get(want, (size_t)d);
			assert_int_equal(s.n[d], (int64_t)json_array_size(w));
			for (int64_t i = 0; i < s.n[d]; i++)
				assert_int_equal(s.off[d][i],
						 json_integer_value(json_array_get(w, (size_t)i)));
		}
		assert_int_equal(nnp_sw_ntiles(&s),
				 json_integer_value(json_object_get(row, "num_tiles")));
		nnp_sw_steps_release(&s);
	}
	json_decref(j);
}

/* The facts' verified examples (nnunet-facts §9.3). */
static void test_steps_facts(void **state)
{
	static const int64_t img[3] = { 200, 512, 512 }, tile[3] = { 64, 192, 160 };
	static const int64_t w0[] = { 0, 27, 54, 82, 109, 136 }, w1[] = { 0, 80, 160, 240, 320 },
			     w2[] = { 0, 70, 141, 211, 282, 352 };
	const int64_t *w[3] = { w0, w1, w2 };
	const int64_t wn[3] = { 6, 5, 6 };
	struct nnp_sw_steps s;
	(void)state;
	assert_int_equal(nnp_sw_steps(3, img, tile, 0.5, &s), NNP_OK);
	for (int d = 0; d < 3; d++) {
		assert_int_equal(s.n[d], wn[d]);
		assert_memory_equal(s.off[d], w[d], (size_t)wn[d] * sizeof(int64_t));
	}
	assert_int_equal(nnp_sw_ntiles(&s), 180);
	nnp_sw_steps_release(&s);
}

static void test_steps_edges(void **state)
{
	struct nnp_sw_steps s;
	int64_t img, tile;
	(void)state;
	/* image == tile: one step at 0 whatever the step */
	img = 64, tile = 64;
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 0.5, &s), NNP_OK);
	assert_int_equal(s.n[0], 1);
	assert_int_equal(s.off[0][0], 0);
	nnp_sw_steps_release(&s);
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 1.0, &s), NNP_OK);
	assert_int_equal(s.n[0], 1);
	nnp_sw_steps_release(&s);
	/* step 1.0: tiles abut, the last one flush with the end */
	img = 128, tile = 64;
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 1.0, &s), NNP_OK);
	assert_int_equal(s.n[0], 2);
	assert_int_equal(s.off[0][1], 64);
	nnp_sw_steps_release(&s);
	img = 129;
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 1.0, &s), NNP_OK);
	assert_int_equal(s.n[0], 3);
	assert_int_equal(s.off[0][1], 32);   /* 32.5 -> 32 (half to even) */
	assert_int_equal(s.off[0][2], 65);
	nnp_sw_steps_release(&s);
	/* round half to even in the middle: size 7 tile 4 -> 1.5 -> 2, 3 */
	img = 7, tile = 4;
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 0.5, &s), NNP_OK);
	assert_int_equal(s.n[0], 3);
	assert_int_equal(s.off[0][1], 2);
	nnp_sw_steps_release(&s);
	/* image smaller than the tile counts as padded to it: one tile at 0
	 * (nnU-Net's own function gives [0] for 40 vs 48, see the table, but an
	 * empty list once the deficit reaches tile * step) */
	img = 1, tile = 64;
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 0.5, &s), NNP_OK);
	assert_int_equal(s.n[0], 1);
	assert_int_equal(s.off[0][0], 0);
	nnp_sw_steps_release(&s);
	img = 0;
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 0.5, &s), NNP_EUSAGE);
	assert_int_equal(nnp_sw_ntiles(&s), 0);
	nnp_sw_steps_release(&s);
	img = 100;
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 0.0, &s), NNP_EUSAGE);
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 1.5, &s), NNP_EUSAGE);
	assert_int_equal(nnp_sw_steps(0, &img, &tile, 0.5, &s), NNP_EUSAGE);
	assert_int_equal(nnp_sw_steps(4, &img, &tile, 0.5, &s), NNP_EUSAGE);
	/* too many offsets */
	img = (int64_t)1 << 40, tile = 1;
	assert_int_equal(nnp_sw_steps(1, &img, &tile, 0.5, &s), NNP_ENOMEM);
	nnp_sw_steps_release(&s);
	nnp_err_clear();
}

/* ---- padding ---- */

static void check_case(const json_t *c)
{
	int64_t pre[3], patch[3], padded[3], lo[3], hi[3], got[3], img_steps[3];
	int nd = ints(json_object_get(c, "preprocessed_shape"), pre);
	json_t *rev = json_object_get(c, "slicer_revert_padding");
	struct nnp_sw_steps s;
	assert_int_equal(ints(json_object_get(c, "patch_size"), patch), nd);
	assert_int_equal(ints(json_object_get(c, "padded_shape"), padded), nd);
	assert_int_equal(nnp_sw_pad(nd, pre, patch, lo, hi, got), NNP_OK);
	for (int d = 0; d < nd; d++) {
		json_t *r = json_array_get(rev, (size_t)d);
		assert_int_equal(got[d], padded[d]);
		assert_int_equal(lo[d] + pre[d] + hi[d], padded[d]);
		/* the inverse crop [lo, lo + size) */
		assert_int_equal(lo[d], json_integer_value(json_array_get(r, 0)));
		assert_int_equal(lo[d] + pre[d], json_integer_value(json_array_get(r, 1)));
		img_steps[d] = got[d];
	}
	assert_int_equal(nnp_sw_steps(nd, img_steps, patch, 0.5, &s), NNP_OK);
	assert_int_equal(nnp_sw_ntiles(&s), json_integer_value(json_object_get(c, "num_tiles")));
	for (int d = 0; d < nd; d++) {
		json_t *w = json_array_get(json_object_get(c, "steps"), (size_t)d);
		assert_int_equal(s.n[d], (int64_t)json_array_size(w));
		for (int64_t i = 0; i < s.n[d]; i++)
			assert_int_equal(s.off[d][i], json_integer_value(json_array_get(w, (size_t)i)));
	}
	nnp_sw_steps_release(&s);
}

static void test_padding_cases(void **state)
{
	json_t *j = index_json(), *ds, *c;
	const char *k1, *k2;
	int n = 0;
	(void)state;
	json_object_foreach(json_object_get(j, "test_cases"), k1, ds) {
		json_object_foreach(ds, k2, c) {
			check_case(c);
			n++;
		}
	}
	assert_int_equal(n, 5);
	json_decref(j);
}

static void test_padding_edges(void **state)
{
	int64_t size[2] = { 117, 128 }, tile[2] = { 128, 112 }, lo[2], hi[2], p[2];
	(void)state;
	/* odd diff: the extra voxel goes after; no padding when larger */
	assert_int_equal(nnp_sw_pad(2, size, tile, lo, hi, p), NNP_OK);
	assert_int_equal(lo[0], 5);
	assert_int_equal(hi[0], 6);
	assert_int_equal(p[0], 128);
	assert_int_equal(lo[1], 0);
	assert_int_equal(hi[1], 0);
	assert_int_equal(p[1], 128);
	/* image smaller than the tile: padded, then exactly one tile */
	{
		int64_t s1 = 1, t1 = 64, l, h, pp;
		struct nnp_sw_steps s;
		assert_int_equal(nnp_sw_pad(1, &s1, &t1, &l, &h, &pp), NNP_OK);
		assert_int_equal(l, 31);
		assert_int_equal(h, 32);
		assert_int_equal(nnp_sw_steps(1, &pp, &t1, 0.5, &s), NNP_OK);
		assert_int_equal(nnp_sw_ntiles(&s), 1);
		nnp_sw_steps_release(&s);
	}
	size[0] = 0;
	assert_int_equal(nnp_sw_pad(2, size, tile, lo, hi, NULL), NNP_EUSAGE);
	nnp_err_clear();
}

/* ---- tile order ---- */

static void test_tile_order(void **state)
{
	int64_t img[3] = { 99, 97, 95 }, tile[3] = { 17, 20, 23 }, lo[3];
	struct nnp_sw_steps s;
	int64_t idx = 0;
	(void)state;
	assert_int_equal(nnp_sw_steps(3, img, tile, 0.5, &s), NNP_OK);
	assert_int_equal(nnp_sw_ntiles(&s), 792);
	/* for s0 in steps[0]: for s1 in steps[1]: for s2 in steps[2] */
	for (int64_t a = 0; a < s.n[0]; a++)
		for (int64_t b = 0; b < s.n[1]; b++)
			for (int64_t c = 0; c < s.n[2]; c++, idx++) {
				assert_int_equal(nnp_sw_tile(&s, idx, lo), NNP_OK);
				assert_int_equal(lo[0], s.off[0][a]);
				assert_int_equal(lo[1], s.off[1][b]);
				assert_int_equal(lo[2], s.off[2][c]);
				for (int d = 0; d < 3; d++)
					assert_true(lo[d] + tile[d] <= img[d]);
			}
	assert_int_equal(nnp_sw_tile(&s, idx, lo), NNP_EUSAGE);
	assert_int_equal(nnp_sw_tile(&s, -1, lo), NNP_EUSAGE);
	nnp_sw_steps_release(&s);
	/* 2D: axis 0 outer */
	{
		int64_t i2[2] = { 512, 512 }, t2[2] = { 128, 112 }, l2[2];
		assert_int_equal(nnp_sw_steps(2, i2, t2, 0.5, &s), NNP_OK);
		assert_int_equal(nnp_sw_tile(&s, 1, l2), NNP_OK);
		assert_int_equal(l2[0], 0);
		assert_int_equal(l2[1], 50);
		assert_int_equal(nnp_sw_tile(&s, 9, l2), NNP_OK);
		assert_int_equal(l2[0], 64);
		assert_int_equal(l2[1], 0);
		assert_int_equal(nnp_sw_tile(&s, 62, l2), NNP_OK);
		assert_int_equal(l2[0], 384);
		assert_int_equal(l2[1], 400);
		nnp_sw_steps_release(&s);
	}
	nnp_err_clear();
}

/* ---- Gaussian ---- */

static void check_gaussian(const char *name, const json_t *info, int have_file)
{
	int64_t tile[3], nvox = 1;
	int nd = ints(json_object_get(info, "patch_size"), tile);
	uint16_t *h;
	float *f;
	char hex[65];
	for (int d = 0; d < nd; d++)
		nvox *= tile[d];
	h = malloc((size_t)nvox * sizeof(*h));
	f = malloc((size_t)nvox * sizeof(*f));
	assert_non_null(h);
	assert_non_null(f);
	assert_int_equal(nnp_sw_gaussian_half(nd, tile, 1.0 / 8, 10.0, h), NNP_OK);
	assert_int_equal(nnp_sw_gaussian(nd, tile, 1.0 / 8, 10.0, f), NNP_OK);
	sha256_hex(h, (size_t)nvox * sizeof(*h), hex);
	if (strcmp(hex, json_string_value(json_object_get(info, "sha256_float16_c_order"))))
		fail_msg("%s: float16 sha256 %s differs", name, hex);
	/* summary values of the index */
	{
		float mn = f[0], mx = f[0];
		int64_t nmin = 0, center = 0;
		double sum = 0.0;
		for (int64_t i = 0; i < nvox; i++) {
			assert_true(f[i] == nnp_half_to_float(h[i]));
			if (f[i] < mn)
				mn = f[i];
			if (f[i] > mx)
				mx = f[i];
			sum += f[i];
		}
		for (int64_t i = 0; i < nvox; i++)
			nmin += f[i] == mn;
		for (int d = 0; d < nd; d++)
			center = center * tile[d] + tile[d] / 2;
		assert_true((double)mn == json_number_value(json_object_get(info, "min")));
		assert_true((double)mx == json_number_value(json_object_get(info, "max")));
		assert_true((double)f[center] ==
			    json_number_value(json_object_get(info, "value_at_center")));
		assert_int_equal(nmin,
				 json_integer_value(json_object_get(info, "num_voxels_equal_min")));
		assert_true(fabs(sum - json_number_value(json_object_get(info, "sum_float64"))) <
			    1e-6 * sum);
	}
	if (have_file) {
		struct nnp_vol v;
		char path[256];
		snprintf(path, sizeof(path), FX "%s", name);
		assert_int_equal(nnp_nifti_read_volume(path, &v), NNP_OK);
		assert_int_equal(v.f.dtype, NNP_F32);
		assert_int_equal((int64_t)nnp_frame_nbytes(&v.f), nvox * 4);
		/* NIfTI (x, y, z) = nnU-Net (z, y, x): the C-order bytes are equal */
		assert_memory_equal(v.data, f, (size_t)nvox * sizeof(float));
		nnp_vol_release(&v);
	}
	free(h);
	free(f);
}

static void test_gaussian_fixtures(void **state)
{
	json_t *j = index_json(), *info;
	const char *name;
	int n = 0, nfiles = 0;
	(void)state;
	json_object_foreach(json_object_get(j, "gaussian_files"), name, info) {
		char path[256];
		FILE *fp;
		snprintf(path, sizeof(path), FX "%s", name);
		fp = fopen(path, "rb");
		if (fp)
			fclose(fp);
		check_gaussian(name, info, fp != NULL);
		nfiles += fp != NULL;
		n++;
	}
	assert_int_equal(n, 5);
	assert_int_equal(nfiles, 3);
	json_decref(j);
}

/* The facts' examples (§9.5): 128^3 has 8941 zeros replaced by 2^-24, plus
 * 10046 voxels that round to 2^-24 themselves (scipy 1.10.1 + numpy float16
 * via float32 here: 18987 at the minimum); 512^2 has min 1.13e-6. */
static void test_gaussian_facts(void **state)
{
	int64_t t3[3] = { 128, 128, 128 }, t2[2] = { 512, 512 }, n = 0;
	int64_t nv = 128 * 128 * 128;
	uint16_t *h = malloc((size_t)512 * 512 * sizeof(*h));
	uint16_t *h3 = malloc((size_t)nv * sizeof(*h3));
	(void)state;
	assert_non_null(h);
	assert_non_null(h3);
	assert_int_equal(nnp_sw_gaussian_half(3, t3, 1.0 / 8, 10.0, h3), NNP_OK);
	for (int64_t i = 0; i < nv; i++)
		n += h3[i] == 1;   /* 2^-24: the smallest subnormal */
	assert_int_equal(n, 8941 + 10046);
	assert_int_equal(h3[(64 * 128 + 64) * 128 + 64], nnp_float_to_half(10.0f));
	assert_int_equal(nnp_sw_gaussian_half(2, t2, 1.0 / 8, 10.0, h), NNP_OK);
	{
		uint16_t mn = 0xffff;
		for (int64_t i = 0; i < 512 * 512; i++)
			if (h[i] < mn)
				mn = h[i];
		assert_true(fabs(nnp_half_to_float(mn) - 1.13e-6) < 0.01e-6);
	}
	free(h);
	free(h3);
}

static void test_gaussian_edges(void **state)
{
	int64_t t1 = 1, t[3] = { 1, 2, 3 }, bad = 0;
	uint16_t h[6];
	float f[6];
	(void)state;
	/* a 1-voxel tile is 10 */
	assert_int_equal(nnp_sw_gaussian(1, &t1, 1.0 / 8, 10.0, f), NNP_OK);
	assert_true(f[0] == 10.0f);
	assert_int_equal(nnp_sw_gaussian_half(3, t, 1.0 / 8, 10.0, h), NNP_OK);
	for (int i = 0; i < 6; i++)
		assert_true(h[i] != 0);
	assert_int_equal(h[1 * 3 + 1], nnp_float_to_half(10.0f));
	assert_int_equal(nnp_sw_gaussian(1, &bad, 1.0 / 8, 10.0, f), NNP_EUSAGE);
	assert_int_equal(nnp_sw_gaussian(1, &t1, 0.0, 10.0, f), NNP_EUSAGE);
	assert_int_equal(nnp_sw_gaussian(1, &t1, 1.0 / 8, -1.0, f), NNP_EUSAGE);
	assert_int_equal(nnp_sw_gaussian(4, t, 1.0 / 8, 10.0, f), NNP_EUSAGE);
	{
		int64_t huge[2] = { (int64_t)1 << 20, (int64_t)1 << 20 };
		assert_int_equal(nnp_sw_gaussian(2, huge, 1.0 / 8, 10.0, f), NNP_ENOMEM);
	}
	/* every value 0 in float16: nnU-Net's torch.min would fail */
	assert_int_equal(nnp_sw_gaussian(1, &t1, 1.0 / 8, 1e-30, f), NNP_EUSAGE);
	nnp_err_clear();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_self),
		cmocka_unit_test(test_steps_table),
		cmocka_unit_test(test_steps_facts),
		cmocka_unit_test(test_steps_edges),
		cmocka_unit_test(test_padding_cases),
		cmocka_unit_test(test_padding_edges),
		cmocka_unit_test(test_tile_order),
		cmocka_unit_test(test_gaussian_fixtures),
		cmocka_unit_test(test_gaussian_facts),
		cmocka_unit_test(test_gaussian_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
