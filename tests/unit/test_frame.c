/* test_frame.c — unit tests of the frame codec, dtypes and volumes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "err.h"
#include "frame.h"

static void make_vol(struct nnp_vol *v, enum nnp_dtype t, int64_t c, int64_t z, int64_t y, int64_t x)
{
	nnp_vol_init(v);
	v->f.dtype = t;
	v->f.shape[0] = c;
	v->f.shape[1] = z;
	v->f.shape[2] = y;
	v->f.shape[3] = x;
	v->f.spacing[0] = 3.0;
	v->f.spacing[1] = 0.5;
	v->f.spacing[2] = 0.25;
	nnp_frame_default_affine(&v->f);
	assert_int_equal(nnp_frame_set_case(&v->f, "case_001"), NNP_OK);
	assert_int_equal(nnp_vol_alloc(v), NNP_OK);
	for (uint64_t i = 0; i < nnp_frame_nbytes(&v->f); i++)
		((unsigned char *)v->data)[i] = (unsigned char)(i * 131 + 7);
}

/* Encode v into a memory stream (tmpfile) and return the bytes. */
static unsigned char *encode_stream(struct nnp_vol *v, size_t *len)
{
	FILE *fp = tmpfile();
	struct nnp_writer *w;
	unsigned char *buf;
	long n;
	assert_non_null(fp);
	w = nnp_writer_fd(fileno(fp), "tmp");
	assert_int_equal(nnp_writer_volume(w, v), NNP_OK);
	nnp_writer_free(w);
	n = lseek(fileno(fp), 0, SEEK_END);
	buf = malloc((size_t)n);
	assert_int_equal(pread(fileno(fp), buf, (size_t)n, 0), n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static void test_dtype_parse(void **state)
{
	int sw;
	(void)state;
	assert_int_equal(nnp_dtype_parse("<i2", &sw), NNP_I16);
	assert_int_equal(sw, 0);
	assert_int_equal(nnp_dtype_parse(">f4", &sw), NNP_F32);
	assert_int_equal(sw, 1);
	assert_int_equal(nnp_dtype_parse("|u1", &sw), NNP_U8);
	assert_int_equal(nnp_dtype_parse(">u1", &sw), NNP_U8);
	assert_int_equal(sw, 0);
	assert_int_equal(nnp_dtype_parse("|i2", &sw), NNP_DT_NONE);
	assert_int_equal(nnp_dtype_parse("<c8", &sw), NNP_DT_NONE);
	assert_int_equal(nnp_dtype_parse("float64", &sw), NNP_F64);
	assert_string_equal(nnp_dtype_str(NNP_U16), "<u2");
	assert_int_equal(nnp_dtype_size(NNP_I64), 8);
}

static void test_dtype_promote(void **state)
{
	(void)state;
	assert_int_equal(nnp_dtype_promote(NNP_I16, NNP_F32), NNP_F32);
	assert_int_equal(nnp_dtype_promote(NNP_I32, NNP_F32), NNP_F64);
	assert_int_equal(nnp_dtype_promote(NNP_U8, NNP_I8), NNP_I16);
	assert_int_equal(nnp_dtype_promote(NNP_U16, NNP_I16), NNP_I32);
	assert_int_equal(nnp_dtype_promote(NNP_U8, NNP_U16), NNP_U16);
	assert_int_equal(nnp_dtype_promote(NNP_I16, NNP_I16), NNP_I16);
}

static void test_half(void **state)
{
	(void)state;
	assert_int_equal(nnp_float_to_half(1.0f), 0x3c00);
	assert_int_equal(nnp_float_to_half(-2.0f), 0xc000);
	assert_int_equal(nnp_float_to_half(65504.0f), 0x7bff);
	assert_int_equal(nnp_float_to_half(1e6f), 0x7c00);
	assert_true(nnp_half_to_float(0x0001) == ldexpf(1, -24));
	/* round half to even: 1 + 2^-11 is halfway between 1 and 1+2^-10 */
	assert_int_equal(nnp_float_to_half(1.0f + ldexpf(1, -11)), 0x3c00);
	assert_int_equal(nnp_float_to_half(1.0f + 3 * ldexpf(1, -11)), 0x3c02);
	for (uint32_t h = 0; h < 0x7c00; h++)
		assert_int_equal(nnp_float_to_half(nnp_half_to_float((uint16_t)h)), h);
}

static void test_convert_exact(void **state)
{
	int16_t s[4] = { -32768, -1, 0, 32767 };
	float f[4];
	int32_t back[4];
	(void)state;
	nnp_convert(NNP_F32, f, NNP_I16, s, 4);
	assert_true(f[0] == -32768.0f && f[3] == 32767.0f);
	nnp_convert(NNP_I32, back, NNP_F32, f, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(back[i], s[i]);
}

static void test_roundtrip_volume(void **state)
{
	struct nnp_vol v, w;
	struct nnp_reader *r;
	unsigned char *buf;
	size_t len;
	(void)state;
	make_vol(&v, NNP_I16, 3, 10, 5, 7);
	v.f.chunk_slices = 3; /* 4 chunks, the last one of 1 slice */
	json_object_set_new(nnp_frame_props(&v.f), "bbox", json_pack("[[i,i],[i,i]]", 1, 9, 2, 4));
	v.f.scale = calloc(6, sizeof(double));
	v.f.scale[0] = 2.0;
	v.f.scale[1] = -1.0;
	buf = encode_stream(&v, &len);
	r = nnp_reader_mem(buf, len, "mem");
	assert_int_equal(nnp_reader_volume(r, &w), 1);
	assert_int_equal(w.f.shape[0], 3);
	assert_int_equal(w.f.chunk_slices, 3);
	assert_int_equal(nnp_frame_nchunks(&w.f), 4);
	assert_string_equal(w.f.case_id, "case_001");
	assert_string_equal(w.f.role, "image");
	assert_true(w.f.spacing[0] == 3.0 && w.f.spacing[2] == 0.25);
	assert_true(w.f.affine[0][0] == 0.25 && w.f.affine[2][2] == 3.0);
	assert_true(w.f.scale[0] == 2.0 && w.f.scale[1] == -1.0);
	assert_int_equal(json_integer_value(json_array_get(json_array_get(json_object_get(w.f.props, "bbox"), 1), 1)), 4);
	assert_memory_equal(v.data, w.data, nnp_frame_nbytes(&v.f));
	nnp_vol_release(&w);
	assert_int_equal(nnp_reader_volume(r, &w), 0); /* clean end */
	nnp_reader_free(r);
	free(buf);
	nnp_vol_release(&v);
}

static void test_slab_reader(void **state)
{
	struct nnp_vol v;
	struct nnp_reader *r;
	struct nnp_frame f;
	unsigned char *buf, *chunk;
	size_t len;
	int64_t z0, zs, seen = 0;
	(void)state;
	make_vol(&v, NNP_F32, 2, 9, 4, 4);
	v.f.chunk_slices = 4;
	buf = encode_stream(&v, &len);
	r = nnp_reader_mem(buf, len, "mem");
	assert_int_equal(nnp_reader_next(r, &f), 1);
	assert_int_equal(nnp_reader_chunk_bytes(r), 2 * 4 * 16 * 4);
	chunk = malloc(nnp_reader_chunk_bytes(r));
	while (nnp_reader_chunk(r, chunk, nnp_reader_chunk_bytes(r), &z0, &zs) == 1) {
		/* channel 1's slab of this chunk equals the volume's */
		size_t plane = 16 * 4;
		assert_int_equal(z0, seen);
		assert_memory_equal(chunk + (size_t)zs * plane,
				    (char *)v.data + (size_t)(1 * 9 + z0) * plane, (size_t)zs * plane);
		seen += zs;
	}
	assert_int_equal(seen, 9);
	free(chunk);
	nnp_frame_release(&f);
	nnp_reader_free(r);
	free(buf);
	nnp_vol_release(&v);
}

static void test_truncated(void **state)
{
	struct nnp_vol v, w;
	unsigned char *buf;
	size_t len;
	(void)state;
	make_vol(&v, NNP_U8, 1, 6, 8, 8);
	v.f.chunk_slices = 2;
	buf = encode_stream(&v, &len);
	for (size_t cut = 1; cut < len; cut += 7) {
		struct nnp_reader *r = nnp_reader_mem(buf, cut, "cut");
		int rc = nnp_reader_volume(r, &w);
		assert_int_equal(rc, NNP_EDATA);
		assert_non_null(strstr(nnp_err_msg(), "truncated"));
		assert_non_null(strstr(nnp_err_msg(), "'cut'"));
		nnp_reader_free(r);
	}
	free(buf);
	nnp_vol_release(&v);
}

/* Build a header map by hand with msgpack-c. */
static unsigned char *raw_header(int major, uint64_t nbytes, int64_t x, size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	unsigned char *out;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 7);
	msgpack_pack_str_with_body(&pk, "nnp", 3); msgpack_pack_str_with_body(&pk, "frame", 5);
	msgpack_pack_str_with_body(&pk, "v", 1);
	msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, major); msgpack_pack_int(&pk, 0);
	msgpack_pack_str_with_body(&pk, "dtype", 5); msgpack_pack_str_with_body(&pk, ">i2", 3);
	msgpack_pack_str_with_body(&pk, "shape", 5);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, 1); msgpack_pack_int(&pk, 1); msgpack_pack_int(&pk, 1); msgpack_pack_int64(&pk, x);
	msgpack_pack_str_with_body(&pk, "chunk", 5); msgpack_pack_int(&pk, 1);
	msgpack_pack_str_with_body(&pk, "nchunks", 7); msgpack_pack_int(&pk, 1);
	msgpack_pack_str_with_body(&pk, "nbytes", 6); msgpack_pack_uint64(&pk, nbytes);
	out = malloc(sb.size + 5 + 4);
	memcpy(out, sb.data, sb.size);
	*len = sb.size;
	msgpack_sbuffer_destroy(&sb);
	return out;
}

static void test_big_endian_payload(void **state)
{
	size_t len;
	unsigned char *h = raw_header(1, 4, 2, &len);
	struct nnp_reader *r;
	struct nnp_vol v;
	unsigned char payload[9] = { 0xc4, 4, 0x01, 0x02, 0xff, 0xfe };
	(void)state;
	memcpy(h + len, payload, 6);
	r = nnp_reader_mem(h, len + 6, "be");
	assert_int_equal(nnp_reader_volume(r, &v), 1);
	assert_int_equal(((int16_t *)v.data)[0], 0x0102);
	assert_int_equal(((int16_t *)v.data)[1], -2);
	nnp_vol_release(&v);
	nnp_reader_free(r);
	free(h);
}

static void expect_header_error(unsigned char *h, size_t len, const char *needle)
{
	struct nnp_reader *r = nnp_reader_mem(h, len, "bad");
	struct nnp_frame f;
	assert_int_equal(nnp_reader_next(r, &f), NNP_EDATA);
	if (!strstr(nnp_err_msg(), needle))
		fail_msg("message '%s' lacks '%s'", nnp_err_msg(), needle);
	nnp_reader_free(r);
}

static void test_header_errors(void **state)
{
	size_t len;
	unsigned char *h;
	unsigned char notmap[] = { 0x93, 1, 2, 3 };
	unsigned char badbyte[] = { 0x81, 0xc1 };
	(void)state;
	h = raw_header(2, 4, 2, &len);
	expect_header_error(h, len, "version 2.0");
	free(h);
	h = raw_header(1, 6, 2, &len);
	expect_header_error(h, len, "wrong byte count");
	free(h);
	h = raw_header(1, 4, (int64_t)1 << 40, &len);
	expect_header_error(h, len, "out of range");
	free(h);
	expect_header_error(notmap, sizeof notmap, "not an nnp frame stream");
	expect_header_error(badbyte, sizeof badbyte, "invalid msgpack byte");
}

static void test_header_cap(void **state)
{
	/* a map whose single string value is 17 MiB: rejected before buffering it */
	size_t n = (size_t)17 << 20;
	unsigned char *h = calloc(1, n + 16);
	(void)state;
	h[0] = 0x81;
	h[1] = 0xa1;
	h[2] = 'x';
	h[3] = 0xdb;
	h[4] = (unsigned char)(n >> 24);
	h[5] = (unsigned char)(n >> 16);
	h[6] = (unsigned char)(n >> 8);
	h[7] = (unsigned char)n;
	expect_header_error(h, n + 8, "too large");
	free(h);
}

static void test_chunk_wrong_length(void **state)
{
	size_t len;
	unsigned char *h = raw_header(1, 4, 2, &len);
	unsigned char payload[] = { 0xc4, 3, 1, 2, 3 };
	struct nnp_reader *r;
	struct nnp_vol v;
	(void)state;
	memcpy(h + len, payload, sizeof payload);
	r = nnp_reader_mem(h, len + sizeof payload, "len");
	assert_int_equal(nnp_reader_volume(r, &v), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "wrong byte count in chunk 1 of 1"));
	nnp_reader_free(r);
	free(h);
}

static void test_unknown_keys_ignored(void **state)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct nnp_vol v;
	unsigned char *h;
	size_t len;
	(void)state;
	h = raw_header(1, 4, 2, &len);
	/* raise the map size by one and append an unknown key */
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_str_with_body(&pk, "future_key", 10);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_int(&pk, 5);
	h = realloc(h, len + sb.size + 6);
	memcpy(h + len, sb.data, sb.size);
	h[0] = 0x88;
	memcpy(h + len + sb.size, "\xc4\x04\x00\x01\x00\x02", 6);
	{
		struct nnp_reader *r = nnp_reader_mem(h, len + sb.size + 6, "future");
		assert_int_equal(nnp_reader_volume(r, &v), 1);
		assert_int_equal(((int16_t *)v.data)[1], 2);
		nnp_vol_release(&v);
		nnp_reader_free(r);
	}
	msgpack_sbuffer_destroy(&sb);
	free(h);
}

static void test_validate_chunking(void **state)
{
	struct nnp_frame f;
	(void)state;
	nnp_frame_init(&f);
	f.dtype = NNP_F32;
	f.shape[0] = 1; f.shape[1] = 300; f.shape[2] = 512; f.shape[3] = 512;
	assert_int_equal(nnp_frame_validate(&f), NNP_OK);
	assert_int_equal(f.chunk_slices, 8);  /* 8 MiB target / 1 MiB per slice */
	f.shape[0] = 100; f.chunk_slices = 0;
	assert_int_equal(nnp_frame_validate(&f), NNP_EDATA); /* 100 MiB slice > 64 MiB cap */
	f.shape[0] = 1; f.spacing[1] = -1; f.chunk_slices = 0;
	assert_int_equal(nnp_frame_validate(&f), NNP_EDATA);
	nnp_frame_release(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtype_parse),
		cmocka_unit_test(test_dtype_promote),
		cmocka_unit_test(test_half),
		cmocka_unit_test(test_convert_exact),
		cmocka_unit_test(test_roundtrip_volume),
		cmocka_unit_test(test_slab_reader),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_big_endian_payload),
		cmocka_unit_test(test_header_errors),
		cmocka_unit_test(test_header_cap),
		cmocka_unit_test(test_chunk_wrong_length),
		cmocka_unit_test(test_unknown_keys_ignored),
		cmocka_unit_test(test_validate_chunking),
	};
	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
