/* test_pth_write.c — common/pth_write.c and the state_dict layout of
 * common/model_export.c:
 *  - the pickle writer gives the bytes of Python's pickle.dumps(obj, 2) for a
 *    mixed object (embedded below) and for the batching edges (dicts, lists,
 *    OrderedDicts of 1000 and 1001 items: length and CRC-32 of Python's bytes);
 *  - sticky errors: a wrong element count, the size cap;
 *  - the zip container: libzip (ZIP_CHECKCONS) reads it, members are STORED
 *    at 64-byte aligned offsets under the file stem, the size limit refuses
 *    and leaves no file;
 *  - a checkpoint written here reads back with nnp_pth_load (aliases share
 *    storage, meta);
 *  - nnp_sd_layout_build for Dataset903's network lists exactly the
 *    state_dict that torch wrote (state_dict.json: names, order, shapes,
 *    alias_of). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <zip.h>
#include <zlib.h>
#include "err.h"
#include "model.h"
#include "model_export.h"
#include "pth.h"
#include "pth_write.h"
#include "test_tmpdir.h"

#define RES "tests/fixtures/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres/"
#define SD "tests/fixtures/inference/Dataset903_MultiChannel/state_dict.json"

/* pickle.dumps({'a': 1, 'b': [1, 2.5, None, True, False], 'c': ('x', 'x', 'y', 'z'), '': (),
 *   'big': [2**31, -2**31-1, 2**40, -1, 255, 256, 65535, 65536, -2**63, 2**63-1, -129],
 *   'u': '\u00e9\u4e2d', 't1': (7,), 'od': OrderedDict([('k', {'v': 'x'})])}, protocol=2) */
static const unsigned char want_mixed[] = {
	0x80, 0x02, 0x7d, 0x71, 0x00, 0x28, 0x58, 0x01, 0x00, 0x00, 0x00, 0x61, 0x71, 0x01, 0x4b, 0x01, 0x58, 0x01,
	0x00, 0x00, 0x00, 0x62, 0x71, 0x02, 0x5d, 0x71, 0x03, 0x28, 0x4b, 0x01, 0x47, 0x40, 0x04, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x4e, 0x88, 0x89, 0x65, 0x58, 0x01, 0x00, 0x00, 0x00, 0x63, 0x71, 0x04, 0x28, 0x58, 0x01,
	0x00, 0x00, 0x00, 0x78, 0x71, 0x05, 0x68, 0x05, 0x58, 0x01, 0x00, 0x00, 0x00, 0x79, 0x71, 0x06, 0x58, 0x01,
	0x00, 0x00, 0x00, 0x7a, 0x71, 0x07, 0x74, 0x71, 0x08, 0x58, 0x00, 0x00, 0x00, 0x00, 0x71, 0x09, 0x29, 0x58,
	0x03, 0x00, 0x00, 0x00, 0x62, 0x69, 0x67, 0x71, 0x0a, 0x5d, 0x71, 0x0b, 0x28, 0x8a, 0x05, 0x00, 0x00, 0x00,
	0x80, 0x00, 0x8a, 0x05, 0xff, 0xff, 0xff, 0x7f, 0xff, 0x8a, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x4a,
	0xff, 0xff, 0xff, 0xff, 0x4b, 0xff, 0x4d, 0x00, 0x01, 0x4d, 0xff, 0xff, 0x4a, 0x00, 0x00, 0x01, 0x00, 0x8a,
	0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x8a, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0x7f, 0x4a, 0x7f, 0xff, 0xff, 0xff, 0x65, 0x58, 0x01, 0x00, 0x00, 0x00, 0x75, 0x71, 0x0c, 0x58, 0x05, 0x00,
	0x00, 0x00, 0xc3, 0xa9, 0xe4, 0xb8, 0xad, 0x71, 0x0d, 0x58, 0x02, 0x00, 0x00, 0x00, 0x74, 0x31, 0x71, 0x0e,
	0x4b, 0x07, 0x85, 0x71, 0x0f, 0x58, 0x02, 0x00, 0x00, 0x00, 0x6f, 0x64, 0x71, 0x10, 0x63, 0x63, 0x6f, 0x6c,
	0x6c, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x0a, 0x4f, 0x72, 0x64, 0x65, 0x72, 0x65, 0x64, 0x44, 0x69,
	0x63, 0x74, 0x0a, 0x71, 0x11, 0x29, 0x52, 0x71, 0x12, 0x58, 0x01, 0x00, 0x00, 0x00, 0x6b, 0x71, 0x13, 0x7d,
	0x71, 0x14, 0x58, 0x01, 0x00, 0x00, 0x00, 0x76, 0x71, 0x15, 0x68, 0x05, 0x73, 0x73, 0x75, 0x2e,
};

static void test_mixed(void **state)
{
	static const long long big[] = { 2147483648LL, -2147483649LL, 1LL << 40, -1, 255, 256, 65535, 65536,
					 INT64_MIN, INT64_MAX, -129 };
	struct nnp_pkl *p;
	const unsigned char *b;
	size_t n;
	(void)state;
	assert_int_equal(nnp_pkl_new(0, &p), NNP_OK);
	nnp_pkl_dict(p, 8);
	nnp_pkl_str(p, "a");
	nnp_pkl_int(p, 1);
	nnp_pkl_str(p, "b");
	nnp_pkl_list(p, 5);
	nnp_pkl_int(p, 1);
	nnp_pkl_float(p, 2.5);
	nnp_pkl_none(p);
	nnp_pkl_bool(p, 1);
	nnp_pkl_bool(p, 0);
	nnp_pkl_end(p);
	nnp_pkl_str(p, "c");
	nnp_pkl_tuple(p, 4);
	nnp_pkl_str(p, "x");
	nnp_pkl_str(p, "x");
	nnp_pkl_str(p, "y");
	nnp_pkl_str(p, "z");
	nnp_pkl_end(p);
	nnp_pkl_str(p, "");
	nnp_pkl_tuple(p, 0);
	nnp_pkl_end(p);
	nnp_pkl_str(p, "big");
	nnp_pkl_list(p, sizeof big / sizeof *big);
	for (size_t i = 0; i < sizeof big / sizeof *big; i++)
		nnp_pkl_int(p, big[i]);
	nnp_pkl_end(p);
	nnp_pkl_str(p, "u");
	nnp_pkl_str(p, "\xc3\xa9\xe4\xb8\xad");
	nnp_pkl_str(p, "t1");
	nnp_pkl_tuple(p, 1);
	nnp_pkl_int(p, 7);
	nnp_pkl_end(p);
	nnp_pkl_str(p, "od");
	nnp_pkl_odict(p, 1, 0);
	nnp_pkl_str(p, "k");
	nnp_pkl_dict(p, 1);
	nnp_pkl_str(p, "v");
	nnp_pkl_str(p, "x");
	nnp_pkl_end(p);
	nnp_pkl_end(p);
	nnp_pkl_end(p);
	assert_int_equal(nnp_pkl_finish(p, &b, &n), NNP_OK);
	assert_int_equal(n, sizeof want_mixed);
	assert_memory_equal(b, want_mixed, n);
	nnp_pkl_free(p);
}

/* {str(i): i for i in range(n)}, list(range(n)), OrderedDict of the dict */
static uint32_t batch_crc(int kind, size_t n, size_t *len)
{
	struct nnp_pkl *p;
	const unsigned char *b;
	char key[32];
	uint32_t c;
	assert_int_equal(nnp_pkl_new(0, &p), NNP_OK);
	if (kind == 0)
		nnp_pkl_dict(p, n);
	else if (kind == 1)
		nnp_pkl_list(p, n);
	else
		nnp_pkl_odict(p, n, 0);
	for (size_t i = 0; i < n; i++) {
		if (kind != 1) {
			snprintf(key, sizeof key, "%zu", i);
			nnp_pkl_str(p, key);
		}
		nnp_pkl_int(p, (long long)i);
	}
	nnp_pkl_end(p);
	assert_int_equal(nnp_pkl_finish(p, &b, len), NNP_OK);
	c = (uint32_t)crc32(0, b, (uInt)*len);
	nnp_pkl_free(p);
	return c;
}

static void test_batches(void **state)
{
	static const struct { int kind; size_t n, len; uint32_t crc; } want[] = {
		{ 0, 1000, 14879, 0x1b4917f2 }, { 1, 1000, 2752, 0xe43c8d40 }, { 2, 1000, 14908, 0x1d3cdf63 },
		{ 0, 1001, 14896, 0xcb6fc904 }, { 1, 1001, 2757, 0x356ad1e8 }, { 2, 1001, 14926, 0xeb41d8ca },
	};
	(void)state;
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		size_t len;
		uint32_t c = batch_crc(want[i].kind, want[i].n, &len);
		assert_int_equal(len, want[i].len);
		assert_int_equal(c, want[i].crc);
	}
}

static void test_sticky_errors(void **state)
{
	struct nnp_pkl *p;
	const unsigned char *b;
	size_t n;
	(void)state;
	assert_int_equal(nnp_pkl_new(0, &p), NNP_OK);
	nnp_pkl_list(p, 1);
	nnp_pkl_int(p, 1);
	assert_int_equal(nnp_pkl_int(p, 2), NNP_EUSAGE);   /* one element too many */
	assert_int_equal(nnp_pkl_end(p), NNP_EUSAGE);
	assert_int_equal(nnp_pkl_finish(p, &b, &n), NNP_EUSAGE);
	assert_non_null(strstr(nnp_err_msg(), "more elements"));
	nnp_pkl_free(p);

	assert_int_equal(nnp_pkl_new(0, &p), NNP_OK);
	nnp_pkl_tuple(p, 2);
	nnp_pkl_int(p, 1);
	assert_int_equal(nnp_pkl_end(p), NNP_EUSAGE);       /* one element short */
	nnp_pkl_free(p);

	assert_int_equal(nnp_pkl_new(64, &p), NNP_OK);
	nnp_pkl_list(p, 100);
	for (int i = 0; i < 100; i++)
		nnp_pkl_int(p, 1000);
	nnp_pkl_end(p);
	assert_int_equal(nnp_pkl_finish(p, &b, &n), NNP_ENOMEM);
	nnp_pkl_free(p);
	nnp_pkl_free(NULL);
}

static char tmpbuf[512];
static char *tmpdir;

static int setup(void **state)
{
	(void)state;
	tmpdir = test_tmpdir(tmpbuf, sizeof tmpbuf, "pthw");
	return tmpdir ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[512];
	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_zip(void **state)
{
	char path[512];
	struct nnp_pthw *w;
	unsigned char blob[1000], *file;
	zip_t *za;
	int zerr = 0;
	FILE *f;
	long size;
	(void)state;
	for (int i = 0; i < 1000; i++)
		blob[i] = (unsigned char)(i * 7);
	snprintf(path, sizeof path, "%s/my.ckpt.pth", tmpdir);
	assert_int_equal(nnp_pthw_open(path, 0, &w), NNP_OK);
	assert_string_equal(nnp_pthw_prefix(w), "my.ckpt");
	assert_int_equal(nnp_pthw_add(w, "data.pkl", "abc", 3), NNP_OK);
	assert_int_equal(nnp_pthw_add(w, "data/0", blob, sizeof blob), NNP_OK);
	assert_int_equal(nnp_pthw_add(w, "data/1", blob, 1), NNP_OK);
	assert_int_equal(nnp_pthw_add(w, "version", "3\n", 2), NNP_OK);
	assert_int_equal(nnp_pthw_finish(w), NNP_OK);
	assert_int_equal(access(path, F_OK), -1);            /* not yet in place */
	assert_int_equal(nnp_pthw_commit(w), NNP_OK);

	assert_non_null(za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr));
	assert_int_equal(zip_get_num_entries(za, 0), 4);
	assert_string_equal(zip_get_name(za, 1, 0), "my.ckpt/data/0");
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	file = malloc((size_t)size);
	assert_int_equal(fread(file, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	for (zip_int64_t i = 0; i < 4; i++) {
		zip_stat_t st;
		unsigned char buf[1000];
		zip_file_t *zf;
		uint64_t off;
		assert_int_equal(zip_stat_index(za, (zip_uint64_t)i, 0, &st), 0);
		assert_int_equal(st.comp_method, ZIP_CM_STORE);
		assert_non_null(zf = zip_fopen_index(za, (zip_uint64_t)i, 0));
		assert_int_equal(zip_fread(zf, buf, st.size), (zip_int64_t)st.size);   /* CRC checked */
		zip_fclose(zf);
		/* the data offset from the central directory's local header offset */
		for (off = 0; off + 4 < (uint64_t)size; off++)
			if (!memcmp(file + off, "PK\3\4", 4) && !memcmp(file + off + 30, st.name, strlen(st.name)))
				break;
		off += 30 + (file[off + 26] | file[off + 27] << 8) + (file[off + 28] | file[off + 29] << 8);
		assert_int_equal(off % 64, 0);
		assert_memory_equal(file + off, buf, st.size);
	}
	free(file);
	zip_discard(za);

	/* exists without force; the size limit refuses and leaves nothing */
	assert_int_equal(nnp_pthw_open(path, 0, &w), NNP_EUSAGE);
	snprintf(path, sizeof path, "%s/big.pth", tmpdir);
	assert_int_equal(nnp_pthw_open(path, 0, &w), NNP_OK);
	nnp_pthw_set_limit(w, 512);
	assert_int_equal(nnp_pthw_add(w, "data/0", blob, sizeof blob), NNP_ENOMEM);
	assert_non_null(strstr(nnp_err_msg(), "ZIP64"));
	nnp_pthw_abort(w);
	nnp_pthw_abort(NULL);
	assert_int_equal(access(path, F_OK), -1);
}

/* A small checkpoint: two tensors, one alias, some meta; read back. */
static void test_checkpoint_roundtrip(void **state)
{
	char path[512];
	struct nnp_pkl *p;
	struct nnp_pthw *w;
	struct nnp_pth *r;
	const unsigned char *b;
	size_t n;
	float w0[6] = { 1, 2, 3, 4, 5, 6 }, w1[2] = { -1, 0.5f };
	int64_t s0[2] = { 2, 3 }, s1[1] = { 2 };
	(void)state;
	assert_int_equal(nnp_pkl_new(0, &p), NNP_OK);
	nnp_pkl_dict(p, 3);
	nnp_pkl_str(p, "network_weights");
	nnp_pkl_odict(p, 3, 0);
	nnp_pkl_str(p, "a.weight");
	nnp_pkl_tensor_f32(p, "0", "cpu", 2, s0);
	nnp_pkl_str(p, "a.bias");
	nnp_pkl_tensor_f32(p, "1", "cpu", 1, s1);
	nnp_pkl_str(p, "b.weight");
	nnp_pkl_tensor_f32(p, "0", "cpu", 2, s0);
	nnp_pkl_end(p);
	nnp_pkl_str(p, "trainer_name");
	nnp_pkl_str(p, "nnUNetTrainer");
	nnp_pkl_str(p, "init_args");
	nnp_pkl_dict(p, 2);
	nnp_pkl_str(p, "configuration");
	nnp_pkl_str(p, "2d");
	nnp_pkl_str(p, "device");
	nnp_pkl_torch_device(p, "cpu");
	nnp_pkl_end(p);
	nnp_pkl_end(p);
	assert_int_equal(nnp_pkl_finish(p, &b, &n), NNP_OK);
	snprintf(path, sizeof path, "%s/checkpoint_final.pth", tmpdir);
	assert_int_equal(nnp_pthw_open(path, 0, &w), NNP_OK);
	assert_int_equal(nnp_pthw_add(w, "data.pkl", b, n), NNP_OK);
	assert_int_equal(nnp_pthw_add(w, "byteorder", "little", 6), NNP_OK);
	assert_int_equal(nnp_pthw_add(w, "data/0", w0, sizeof w0), NNP_OK);
	assert_int_equal(nnp_pthw_add(w, "data/1", w1, sizeof w1), NNP_OK);
	assert_int_equal(nnp_pthw_add(w, "version", "3\n", 2), NNP_OK);
	assert_int_equal(nnp_pthw_finish(w), NNP_OK);
	assert_int_equal(nnp_pthw_commit(w), NNP_OK);
	nnp_pkl_free(p);

	assert_int_equal(nnp_pth_load(path, &r), NNP_OK);
	assert_int_equal(r->ntensors, 3);
	assert_int_equal(r->nstorages, 2);
	assert_string_equal(r->tensors[2].name, "b.weight");
	assert_ptr_equal(r->tensors[0].data, r->tensors[2].data);
	assert_int_equal(r->tensors[0].shape[1], 3);
	assert_true(r->tensors[0].data[5] == 6 && r->tensors[1].data[1] == 0.5f);
	assert_string_equal(json_string_value(json_object_get(r->meta, "trainer_name")), "nnUNetTrainer");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r->meta, "init_args"), "configuration")),
			    "2d");
	nnp_pth_free(r);
}

/* The layout of Dataset903's PlainConvUNet against the state_dict torch wrote. */
static void test_layout_903(void **state)
{
	json_t *sd = json_load_file(SD, 0, NULL), *list, *e;
	struct nnp_model_opts mo = { NULL, 0, NULL, NULL, { -1, NNP_PREC_FP32 } };
	const char *const folds[1] = { "0" };
	struct nnp_model *m;
	struct nnp_sd_layout l;
	size_t i;
	(void)state;
	mo.folds = folds;
	mo.nfolds = 1;
	assert_non_null(sd);
	list = json_object_get(json_object_get(json_object_get(sd, "files"), "fold_0"), "state_dict");
	assert_int_equal(nnp_model_open(RES, &mo, &m), NNP_OK);
	assert_int_equal(nnp_sd_layout_build(&m->arch, &l), NNP_OK);
	assert_int_equal(l.n, json_array_size(list));
	assert_int_equal(l.nstorages, 68);
	json_array_foreach(list, i, e) {
		const json_t *shape = json_object_get(e, "shape"), *al = json_object_get(e, "alias_of");
		const struct nnp_sd_entry *x = &l.e[i];
		assert_string_equal(x->name, json_string_value(json_object_get(e, "key")));
		assert_int_equal(x->ndim, json_array_size(shape));
		for (int d = 0; d < x->ndim; d++)
			assert_int_equal(x->shape[d], json_integer_value(json_array_get(shape, (size_t)d)));
		if (json_is_string(al))
			assert_string_equal(l.e[l.canon[x->storage]].name, json_string_value(al));
		else
			assert_int_equal(l.canon[x->storage], i);
	}
	assert_string_equal(l.mod[0].path, "");
	assert_string_equal(l.mod[1].path, "encoder");
	nnp_sd_layout_release(&l);
	nnp_sd_layout_release(&l);
	nnp_model_free(m);
	json_decref(sd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_batches),
		cmocka_unit_test(test_sticky_errors),
		cmocka_unit_test(test_zip),
		cmocka_unit_test(test_checkpoint_roundtrip),
		cmocka_unit_test(test_layout_903),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
