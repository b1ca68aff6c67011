/* test_pth.c — common/pth.c: the two Dataset903 checkpoints against
 * tests/fixtures/inference/Dataset903_MultiChannel/state_dict.json (names,
 * shapes, dtypes, means, aliases sharing storage, trainer/epoch), and
 * crafted archives (built here with libzip) that must be refused with
 * NNP_EDATA: a truncated zip, a forbidden global, an unknown opcode, a
 * missing data/KEY entry, a tensor larger than its storage, strides. */
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
#include <jansson.h>
#include <zip.h>
#include "err.h"
#include "pth.h"
#include "test_tmpdir.h"

#define RES "tests/fixtures/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres/"
#define SD "tests/fixtures/inference/Dataset903_MultiChannel/state_dict.json"

static void check_fold(const char *fold)
{
	char path[512];
	json_t *sd = json_load_file(SD, 0, NULL), *f, *list, *e;
	struct nnp_pth *p = NULL;
	size_t i;
	assert_non_null(sd);
	f = json_object_get(json_object_get(sd, "files"), fold);
	list = json_object_get(f, "state_dict");
	assert_non_null(list);
	snprintf(path, sizeof path, RES "%s/checkpoint_final.pth", fold);
	assert_int_equal(nnp_pth_load(path, &p), NNP_OK);
	assert_int_equal(p->ntensors, json_array_size(list));
	json_array_foreach(list, i, e) {
		const struct nnp_pth_tensor *t = &p->tensors[i];
		json_t *shape = json_object_get(e, "shape"), *al = json_object_get(e, "alias_of");
		double sum = 0, mean = json_real_value(json_object_get(e, "mean"));
		assert_string_equal(t->name, json_string_value(json_object_get(e, "key")));
		assert_string_equal(t->torch_dtype, json_string_value(json_object_get(e, "dtype")));
		assert_int_equal(t->dtype, NNP_F32);
		assert_int_equal(t->ndim, json_array_size(shape));
		for (int d = 0; d < t->ndim; d++)
			assert_int_equal(t->shape[d], json_integer_value(json_array_get(shape, (size_t)d)));
		for (int64_t k = 0; k < t->numel; k++) {
			float r;
			memcpy(&r, (const char *)t->raw + 4 * k, 4);
			assert_true(r == t->data[k]);
			sum += t->data[k];
		}
		assert_true(fabs(sum / (double)t->numel - mean) <= 1e-6 * (1 + fabs(mean)));
		if (json_is_string(al)) {
			const struct nnp_pth_tensor *o = nnp_pth_find(p, json_string_value(al));
			assert_non_null(o);
			assert_int_equal(o->storage, t->storage);
			assert_ptr_equal(o->data, t->data);
		}
	}
	assert_int_equal(p->nstorages, 68);
	assert_string_equal(json_string_value(json_object_get(p->meta, "trainer_name")), "nnUNetTrainer");
	assert_int_equal(json_integer_value(json_object_get(p->meta, "current_epoch")),
			 json_integer_value(json_object_get(f, "current_epoch")));
	assert_true(json_equal(json_object_get(p->meta, "inference_allowed_mirroring_axes"),
			       json_object_get(f, "inference_allowed_mirroring_axes")));
	e = json_object_get(json_object_get(p->meta, "init_args"), "plans");
	assert_string_equal(json_string_value(json_object_get(e, "plans_name")), "nnUNetPlans_tiny");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(p->meta, "init_args"), "fold")),
			 json_integer_value(json_object_get(json_object_get(f, "init_args"), "fold")));
	nnp_pth_free(p);
	json_decref(sd);
}

static void test_fold0(void **state) { (void)state; check_fold("fold_0"); }
static void test_fold1(void **state) { (void)state; check_fold("fold_1"); }

/* fold_1's logging holds numpy float64 scalars (numpy.core.multiarray.scalar
 * over numpy.dtype and _codecs.encode'd bytes). */
static void test_numpy_scalars(void **state)
{
	struct nnp_pth *p;
	json_t *lg;
	(void)state;
	assert_int_equal(nnp_pth_load(RES "fold_1/checkpoint_final.pth", &p), NNP_OK);
	lg = json_object_get(p->meta, "logging");
	assert_true(json_real_value(json_array_get(json_object_get(lg, "mean_fg_dice"), 0)) == 0.5);
	assert_true(json_real_value(json_array_get(json_object_get(lg, "train_losses"), 0)) == -0.25);
	assert_true(json_real_value(json_array_get(json_array_get(json_object_get(lg, "dice_per_class_or_region"), 0), 1)) == 0.625);
	assert_true(json_real_value(json_array_get(json_object_get(lg, "epoch_end_timestamps"), 0)) == 1700000100.0);
	nnp_pth_free(p);
}

/* ---- crafted checkpoints ---- */
struct buf { unsigned char b[4096]; size_t n; };

static void op(struct buf *b, int c) { b->b[b->n++] = (unsigned char)c; }
static void raw(struct buf *b, const char *s) { size_t n = strlen(s); memcpy(b->b + b->n, s, n); b->n += n; }
static void ustr(struct buf *b, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);
	op(b, 'X');
	for (int i = 0; i < 4; i++)
		op(b, (int)(n >> (8 * i) & 0xff));
	raw(b, s);
}
static void glob(struct buf *b, const char *mod, const char *name)
{
	op(b, 'c'); raw(b, mod); op(b, '\n'); raw(b, name); op(b, '\n');
}

/* {'network_weights': OrderedDict(w=tensor(size, stride) on a 4-float storage '0')} */
static void ckpt_pickle(struct buf *b, int d0, int d1, int s0, int s1)
{
	b->n = 0;
	op(b, 0x80); op(b, 2);
	op(b, '}'); op(b, '(');
	ustr(b, "network_weights");
	glob(b, "collections", "OrderedDict"); op(b, ')'); op(b, 'R');
	op(b, '('); ustr(b, "w");
	glob(b, "torch._utils", "_rebuild_tensor_v2");
	op(b, '(');
	op(b, '('); ustr(b, "storage"); glob(b, "torch", "FloatStorage"); ustr(b, "0"); ustr(b, "cpu");
	op(b, 'K'); op(b, 4); op(b, 't'); op(b, 'Q');
	op(b, 'K'); op(b, 0);
	op(b, 'K'); op(b, d0); op(b, 'K'); op(b, d1); op(b, 0x86);
	op(b, 'K'); op(b, s0); op(b, 'K'); op(b, s1); op(b, 0x86);
	op(b, 0x89);
	glob(b, "collections", "OrderedDict"); op(b, ')'); op(b, 'R');
	op(b, 't'); op(b, 'R');
	op(b, 'u');
	ustr(b, "trainer_name"); ustr(b, "T");
	op(b, 'u'); op(b, '.');
}

static char tmpbuf[512];
static char *tmpdir;

static const char *byteorder;   /* a PREFIX/byteorder entry when set */

static void write_zip(const char *path, const struct buf *pkl, int with_data)
{
	static const float vals[4] = { 1, 2, 3, 4 };
	int err;
	zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
	zip_source_t *s;
	assert_non_null(z);
	s = zip_source_buffer(z, pkl->b, pkl->n, 0);
	assert_true(zip_file_add(z, "mymodel/data.pkl", s, 0) >= 0);
	if (with_data) {
		s = zip_source_buffer(z, vals, sizeof vals, 0);
		assert_true(zip_file_add(z, "mymodel/data/0", s, 0) >= 0);
	}
	if (byteorder) {
		s = zip_source_buffer(z, byteorder, strlen(byteorder), 0);
		assert_true(zip_file_add(z, "mymodel/byteorder", s, 0) >= 0);
	}
	assert_int_equal(zip_close(z), 0);
}

static void expect_refused(const struct buf *pkl, int with_data, const char *needle)
{
	char path[256];
	struct nnp_pth *p = (struct nnp_pth *)1;
	snprintf(path, sizeof path, "%s/x.pth", tmpdir);
	write_zip(path, pkl, with_data);
	assert_int_equal(nnp_pth_load(path, &p), NNP_EDATA);
	assert_null(p);
	if (!strstr(nnp_err_msg(), needle))
		fail_msg("message '%s' lacks '%s'", nnp_err_msg(), needle);
	assert_non_null(strstr(nnp_err_msg(), "x.pth"));
}

static void test_crafted_ok(void **state)
{
	struct buf b;
	char path[256];
	struct nnp_pth *p;
	(void)state;
	ckpt_pickle(&b, 2, 2, 2, 1);
	snprintf(path, sizeof path, "%s/ok.pth", tmpdir);
	write_zip(path, &b, 1);
	assert_int_equal(nnp_pth_load(path, &p), NNP_OK);
	assert_int_equal(p->ntensors, 1);
	assert_string_equal(p->tensors[0].name, "w");
	assert_int_equal(p->tensors[0].ndim, 2);
	assert_true(p->tensors[0].data[3] == 4.0f);
	assert_string_equal(json_string_value(json_object_get(p->meta, "trainer_name")), "T");
	nnp_pth_free(p);
	byteorder = "little";
	write_zip(path, &b, 1);
	assert_int_equal(nnp_pth_load(path, &p), NNP_OK);
	nnp_pth_free(p);
	byteorder = "big";
	expect_refused(&b, 1, "not little-endian");
	byteorder = NULL;
}

static void test_forbidden_global(void **state)
{
	struct buf b = { .n = 0 };
	(void)state;
	op(&b, 0x80); op(&b, 2);
	glob(&b, "os", "system"); ustr(&b, "echo pwned"); op(&b, 0x85); op(&b, 'R'); op(&b, '.');
	expect_refused(&b, 0, "refusing pickle global 'os.system': a checkpoint can never execute code");
	b.n = 0;
	op(&b, 0x80); op(&b, 2);
	glob(&b, "builtins", "eval"); op(&b, '.');
	expect_refused(&b, 0, "'builtins.eval'");
}

static void test_unknown_opcode(void **state)
{
	struct buf b = { .n = 0 };
	(void)state;
	op(&b, 0x80); op(&b, 2); op(&b, '}'); raw(&b, "I1\n"); op(&b, '.');
	expect_refused(&b, 0, "unsupported pickle opcode 0x49 ('I')");
	b.n = 0;
	op(&b, 0x80); op(&b, 2); op(&b, '}'); op(&b, 'i'); op(&b, '.');   /* INST */
	expect_refused(&b, 0, "opcode 0x69");
}

static void test_missing_entry(void **state)
{
	struct buf b;
	(void)state;
	ckpt_pickle(&b, 2, 2, 2, 1);
	expect_refused(&b, 0, "missing storage entry 'mymodel/data/0'");
}

static void test_tensor_too_large(void **state)
{
	struct buf b;
	(void)state;
	ckpt_pickle(&b, 4, 2, 2, 1);
	expect_refused(&b, 1, "larger than its storage");
	ckpt_pickle(&b, 2, 2, 1, 2);
	expect_refused(&b, 1, "non-contiguous");
}

static void test_truncated(void **state)
{
	char path[256];
	FILE *in = fopen(RES "fold_0/checkpoint_final.pth", "rb"), *out;
	static unsigned char data[200000];
	struct nnp_pth *p;
	size_t n;
	(void)state;
	assert_non_null(in);
	n = fread(data, 1, sizeof data, in);
	fclose(in);
	assert_int_equal(n, sizeof data);
	snprintf(path, sizeof path, "%s/trunc.pth", tmpdir);
	assert_non_null(out = fopen(path, "wb"));
	assert_int_equal(fwrite(data, 1, n, out), n);
	fclose(out);
	assert_int_equal(nnp_pth_load(path, &p), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "trunc.pth"));
	assert_non_null(strstr(nnp_err_msg(), "zip"));
	/* not a zip at all */
	assert_int_equal(nnp_pth_load(SD, &p), NNP_EDATA);
	assert_int_equal(nnp_pth_load("/nonexistent/x.pth", &p), NNP_EDATA);
}

/* The fold_0 checkpoint with data.pkl replaced by pkl[0..n) in tmpdir/m.pth. */
static void replace_pickle(const char *path, const unsigned char *pkl, size_t n)
{
	static unsigned char file[500000];
	FILE *f = fopen(RES "fold_0/checkpoint_final.pth", "rb");
	size_t len;
	int err;
	zip_t *z;
	zip_int64_t idx;
	assert_non_null(f);
	len = fread(file, 1, sizeof file, f);
	fclose(f);
	assert_non_null(f = fopen(path, "wb"));
	assert_int_equal(fwrite(file, 1, len, f), len);
	fclose(f);
	assert_non_null(z = zip_open(path, 0, &err));
	idx = zip_name_locate(z, "checkpoint_final/data.pkl", 0);
	assert_true(idx >= 0);
	assert_int_equal(zip_file_replace(z, (zip_uint64_t)idx, zip_source_buffer(z, pkl, n, 0), 0), 0);
	assert_int_equal(zip_close(z), 0);
}

/* Every truncation of the real pickle is refused; random byte flips never
 * crash (run under ASan) and end in OK, EDATA or ENOMEM. */
static void test_mutations(void **state)
{
	static unsigned char pkl[65536], mut[65536];
	char path[256];
	struct nnp_pth *p;
	zip_t *z;
	zip_file_t *zf;
	zip_int64_t n;
	int err, rc;
	uint64_t x = 88172645463325252ull;
	(void)state;
	assert_non_null(z = zip_open(RES "fold_0/checkpoint_final.pth", ZIP_RDONLY, &err));
	assert_non_null(zf = zip_fopen(z, "checkpoint_final/data.pkl", 0));
	n = zip_fread(zf, pkl, sizeof pkl);
	zip_fclose(zf);
	zip_discard(z);
	assert_true(n > 1000 && n < (zip_int64_t)sizeof pkl);
	snprintf(path, sizeof path, "%s/m.pth", tmpdir);
	for (zip_int64_t cut = 0; cut < n; cut += 1999) {
		replace_pickle(path, pkl, (size_t)cut);
		assert_int_equal(nnp_pth_load(path, &p), NNP_EDATA);
	}
	for (int it = 0; it < 300; it++) {
		memcpy(mut, pkl, (size_t)n);
		for (int k = 0; k < 4; k++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			mut[x % (uint64_t)n] ^= (unsigned char)(1u << (x >> 60 & 7));
		}
		replace_pickle(path, mut, (size_t)n);
		rc = nnp_pth_load(path, &p);
		assert_true(rc == NNP_OK || rc == NNP_EDATA || rc == NNP_ENOMEM);
		if (rc == NNP_OK)
			nnp_pth_free(p);
	}
}

static int setup(void **state)
{
	(void)state;
	tmpdir = test_tmpdir(tmpbuf, sizeof tmpbuf, "pth");
	return tmpdir ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fold0),
		cmocka_unit_test(test_fold1),
		cmocka_unit_test(test_numpy_scalars),
		cmocka_unit_test(test_crafted_ok),
		cmocka_unit_test(test_forbidden_global),
		cmocka_unit_test(test_unknown_opcode),
		cmocka_unit_test(test_missing_entry),
		cmocka_unit_test(test_tensor_too_large),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_mutations),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
