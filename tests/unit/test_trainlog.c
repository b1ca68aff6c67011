/* test_trainlog.c — common/trainlog.c and trainlog_png.c: records and
 * nnU-Net's EMA, the flat checkpoint form, training_log.tsv written and read
 * back (NaN, inf, names, errors with file and line), and progress.png decoded
 * with libpng: its size and pixels where the documented layout puts them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "bitfont.h"
#include "err.h"
#include "trainlog.h"
#include "test_tmpdir.h"

#define PW NNP_TRAINLOG_PNG_W
#define PH NNP_TRAINLOG_PNG_H

/* ---- helpers ---- */

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	return test_tmpdir(tmpdir, sizeof tmpdir, "trainlog") ? 0 : -1;
}

static int teardown(void **state)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char p[512];
	(void)state;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))) {
			snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
	rmdir(tmpdir);
	return 0;
}

static void path_in(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", tmpdir, name);
}

/* Files in tmpdir whose name starts with ".tmp" (atomic temporaries). */
static int temp_files_left(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)))
		n += !strncmp(e->d_name, ".tmp", 4);
	closedir(d);
	return n;
}

static void write_text(const char *path, const char *s)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(s, 1, strlen(s), f), strlen(s));
	assert_int_equal(fclose(f), 0);
}

/* Same double, NaN equal to NaN. */
static void assert_same(double a, double b)
{
	if (isnan(a) || isnan(b))
		assert_true(isnan(a) && isnan(b));
	else
		assert_true(a == b);
}

static void assert_logs_equal(const struct nnp_trainlog *a, const struct nnp_trainlog *b)
{
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->nclasses, b->nclasses);
	for (size_t i = 0; i < a->n; i++) {
		const struct nnp_trainlog_rec *x = &a->rec[i], *y = &b->rec[i];
		assert_int_equal(x->epoch, y->epoch);
		assert_same(x->train_loss, y->train_loss);
		assert_same(x->val_loss, y->val_loss);
		assert_same(x->mean_fg_dice, y->mean_fg_dice);
		assert_same(x->ema_fg_dice, y->ema_fg_dice);
		assert_same(x->lr, y->lr);
		assert_same(x->epoch_time_s, y->epoch_time_s);
		assert_same(x->timestamp, y->timestamp);
		for (size_t c = 0; c < a->nclasses; c++)
			assert_same(nnp_trainlog_dice(a, i)[c], nnp_trainlog_dice(b, i)[c]);
	}
}

/* v rounded to 9 significant digits (what "%.9g" keeps). */
static double q9(double v)
{
	char b[40];
	snprintf(b, sizeof b, "%.9g", v);
	return strtod(b, NULL);
}

/* A log of n epochs with values of at most 9 significant digits (exact
 * through "%.9g"), some NaN and infinite, the Dice filled like the trainer. */
static void make_log(struct nnp_trainlog *log, size_t n, size_t k, const char *const *names)
{
	double dice[8];
	assert_true(k <= 8);
	assert_int_equal(nnp_trainlog_init(log, k, names), NNP_OK);
	for (size_t i = 0; i < n; i++) {
		struct nnp_trainlog_rec r = { (int)i, -0.125 * (double)i, q9(0.25 - 0.001 * (double)i),
			0, 0, q9(0.01 * (1 - (double)i / 1000)), 120.5 + (double)(i % 7),
			1700000000.123456 + 130.0 * (double)i };
		for (size_t c = 0; c < k; c++)
			dice[c] = (i + c) % 5 == 3 ? NAN : q9(0.5 + 0.01 * (double)c + 0.0001 * (double)i);
		if (i == 4)
			r.val_loss = INFINITY;
		if (i == 5)
			r.train_loss = -INFINITY;
		nnp_trainlog_fill_dice(log, &r, dice);
		r.mean_fg_dice = q9(r.mean_fg_dice);
		r.ema_fg_dice = q9(r.ema_fg_dice);
		assert_int_equal(nnp_trainlog_append(log, &r, dice), NNP_OK);
	}
}

/* ---- records ---- */

static void test_append_ema(void **state)
{
	struct nnp_trainlog log;
	struct nnp_trainlog_rec r = { 0, -0.1, -0.05, 0, 0, 0.01, 100, 1e9 };
	double d0[2] = { 0.5, NAN }, d1[2] = { 0.7, 0.9 }, d2[2] = { NAN, NAN };
	(void)state;
	assert_int_equal(nnp_trainlog_init(&log, 2, NULL), NNP_OK);
	nnp_trainlog_fill_dice(&log, &r, d0);
	assert_true(r.mean_fg_dice == 0.5 && r.ema_fg_dice == 0.5);
	assert_int_equal(nnp_trainlog_append(&log, &r, d0), NNP_OK);
	r.epoch = 1;
	nnp_trainlog_fill_dice(&log, &r, d1);
	assert_float_equal(r.mean_fg_dice, 0.8, 1e-15);
	assert_true(r.ema_fg_dice == 0.9 * 0.5 + 0.1 * (0.7 + 0.9) / 2);
	assert_int_equal(nnp_trainlog_append(&log, &r, d1), NNP_OK);
	r.epoch = 2;
	nnp_trainlog_fill_dice(&log, &r, d2);   /* nanmean of nothing: NaN, and so the EMA */
	assert_true(isnan(r.mean_fg_dice) && isnan(r.ema_fg_dice));
	assert_int_equal(nnp_trainlog_append(&log, &r, d2), NNP_OK);
	assert_int_equal(log.n, 3);
	assert_true(isnan(nnp_trainlog_dice(&log, 0)[1]) && nnp_trainlog_dice(&log, 1)[1] == 0.9);

	/* a gap is a bug; an epoch again replaces it and drops what followed */
	r.epoch = 5;
	assert_int_equal(nnp_trainlog_append(&log, &r, d1), NNP_EINTERNAL);
	assert_non_null(strstr(nnp_err_msg(), "epoch 5"));
	r.epoch = -1;
	assert_int_equal(nnp_trainlog_append(&log, &r, d1), NNP_EINTERNAL);
	r.epoch = 1;
	r.train_loss = -7;
	assert_int_equal(nnp_trainlog_append(&log, &r, d0), NNP_OK);
	assert_int_equal(log.n, 2);
	assert_true(log.rec[1].train_loss == -7 && nnp_trainlog_dice(&log, 1)[0] == 0.5);
	nnp_trainlog_truncate(&log, 5);
	assert_int_equal(log.n, 2);
	nnp_trainlog_truncate(&log, 0);
	assert_int_equal(log.n, 0);
	nnp_trainlog_release(&log);
	nnp_trainlog_release(&log);   /* a released log releases again */
	assert_true(isnan(nnp_trainlog_nanmean(d2, 2)) && isnan(nnp_trainlog_nanmean(NULL, 0)));
}

static void test_many_epochs_no_classes(void **state)
{
	struct nnp_trainlog log;
	(void)state;
	assert_int_equal(nnp_trainlog_init(&log, 0, NULL), NNP_OK);
	for (int i = 0; i < 3000; i++) {
		struct nnp_trainlog_rec r = { i, i, i, 0, 0, 0, 0, 0 };
		nnp_trainlog_fill_dice(&log, &r, NULL);
		assert_true(isnan(r.mean_fg_dice));
		assert_int_equal(nnp_trainlog_append(&log, &r, NULL), NNP_OK);
	}
	assert_int_equal(log.n, 3000);
	assert_true(log.rec[2999].train_loss == 2999);
	nnp_trainlog_release(&log);
	assert_int_equal(nnp_trainlog_init(&log, NNP_TRAINLOG_MAX_CLASSES + 1, NULL), NNP_EDATA);
}

static void test_names_sanitised(void **state)
{
	struct nnp_trainlog log;
	char longname[200];
	const char *names[3] = { "left kidney", "tab\there/ok-1.5+x", longname };
	const char *bad[2] = { "a", "" };
	(void)state;
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	assert_int_equal(nnp_trainlog_init(&log, 3, names), NNP_OK);
	assert_string_equal(log.names[0], "left_kidney");
	assert_string_equal(log.names[1], "tab_here_ok-1.5+x");
	assert_int_equal(strlen(log.names[2]), NNP_TRAINLOG_NAME_MAX);
	nnp_trainlog_release(&log);
	assert_int_equal(nnp_trainlog_init(&log, 2, bad), NNP_EINTERNAL);
	assert_null(log.names);
}

/* ---- flat form ---- */

static void test_flat_roundtrip(void **state)
{
	struct nnp_trainlog a, b;
	const char *names[3] = { "liver", "tumour", "vessel" };
	double *v;
	size_t n;
	(void)state;
	make_log(&a, 57, 3, names);
	a.rec[3].train_loss = 0.1 + 0.2;   /* the flat form is bit-exact, not "%.9g" */
	a.rec[3].timestamp = 1700000000.0 + 1.0 / 3;
	a.dice[7] = -0.0;
	n = nnp_trainlog_flat_count(&a);
	assert_int_equal(n, NNP_TRAINLOG_FLAT_HEAD + 57 * (NNP_TRAINLOG_FLAT_FIXED + 3));
	v = malloc(n * sizeof *v);
	assert_non_null(v);
	nnp_trainlog_to_flat(&a, v);
	assert_true(v[0] == NNP_TRAINLOG_FLAT_MAGIC && v[2] == 3 && v[3] == 57);
	assert_int_equal(nnp_trainlog_from_flat(&b, v, n, names), NNP_OK);
	assert_logs_equal(&a, &b);
	assert_true(b.rec[3].train_loss == 0.1 + 0.2 && signbit(b.dice[7]));
	assert_string_equal(b.names[1], "tumour");
	nnp_trainlog_release(&b);
	assert_int_equal(nnp_trainlog_from_flat(&b, v, n, NULL), NNP_OK);
	assert_null(b.names);
	nnp_trainlog_release(&b);

	/* corrupt forms are data errors and leave an empty log */
	assert_int_equal(nnp_trainlog_from_flat(&b, v, n - 1, NULL), NNP_EDATA);
	assert_int_equal(b.n, 0);
	assert_int_equal(nnp_trainlog_from_flat(&b, v, 2, NULL), NNP_EDATA);
	v[NNP_TRAINLOG_FLAT_HEAD + 2 * (NNP_TRAINLOG_FLAT_FIXED + 3)] = 7;   /* epoch of row 2 */
	assert_int_equal(nnp_trainlog_from_flat(&b, v, n, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "row 2"));
	v[2] = 2.5;
	assert_int_equal(nnp_trainlog_from_flat(&b, v, n, NULL), NNP_EDATA);
	v[1] = 2;
	assert_int_equal(nnp_trainlog_from_flat(&b, v, n, NULL), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "version"));
	v[0] = 0;
	assert_int_equal(nnp_trainlog_from_flat(&b, v, n, NULL), NNP_EDATA);
	free(v);

	/* an empty log */
	nnp_trainlog_release(&a);
	assert_int_equal(nnp_trainlog_init(&a, 2, NULL), NNP_OK);
	double e[NNP_TRAINLOG_FLAT_HEAD];
	assert_int_equal(nnp_trainlog_flat_count(&a), NNP_TRAINLOG_FLAT_HEAD);
	nnp_trainlog_to_flat(&a, e);
	assert_int_equal(nnp_trainlog_from_flat(&b, e, NNP_TRAINLOG_FLAT_HEAD, NULL), NNP_OK);
	assert_int_equal(b.n, 0);
	assert_int_equal(b.nclasses, 2);
	nnp_trainlog_release(&a);
	nnp_trainlog_release(&b);
}

/* ---- TSV ---- */

static void test_tsv_text(void **state)
{
	struct nnp_trainlog log;
	const char *names[2] = { "liver", "tumor" };
	double d[2] = { 0.5, NAN };
	struct nnp_trainlog_rec r = { 0, -0.123456789, INFINITY, 0, 0, 0.01, 117.25,
				      1700000000.5 };
	char *s;
	size_t n;
	(void)state;
	assert_int_equal(nnp_trainlog_init(&log, 2, names), NNP_OK);
	nnp_trainlog_fill_dice(&log, &r, d);
	assert_int_equal(nnp_trainlog_append(&log, &r, d), NNP_OK);
	assert_int_equal(nnp_trainlog_format_tsv(&log, &s, &n), NNP_OK);
	assert_string_equal(s,
		"epoch\ttrain_loss\tval_loss\tdice_liver\tdice_tumor\tmean_fg_dice\tema_fg_dice\t"
		"lr\tepoch_time_s\ttimestamp\n"
		"0\t-0.123456789\tinf\t0.5\tnan\t0.5\t0.5\t0.01\t117.25\t1700000000.500000\n");
	assert_int_equal(n, strlen(s));
	free(s);
	nnp_trainlog_release(&log);

	assert_int_equal(nnp_trainlog_init(&log, 2, NULL), NNP_OK);
	assert_int_equal(nnp_trainlog_format_tsv(&log, &s, &n), NNP_OK);
	assert_string_equal(s, "epoch\ttrain_loss\tval_loss\tdice_1\tdice_2\tmean_fg_dice\t"
			       "ema_fg_dice\tlr\tepoch_time_s\ttimestamp\n");
	free(s);
	nnp_trainlog_release(&log);
}

static void test_tsv_roundtrip(void **state)
{
	struct nnp_trainlog a, b;
	const char *names[3] = { "liver", "left kidney", "vessel" };
	char path[512];
	(void)state;
	path_in(path, sizeof path, NNP_TRAINLOG_TSV);
	make_log(&a, 250, 3, names);
	assert_int_equal(nnp_trainlog_write_tsv(&a, path, 0), NNP_OK);
	assert_int_equal(nnp_trainlog_read_tsv(&b, path), NNP_OK);
	assert_logs_equal(&a, &b);
	assert_string_equal(b.names[1], "left_kidney");
	nnp_trainlog_release(&b);

	/* every epoch rewrites the file whole (force); without force: refused */
	assert_int_equal(nnp_trainlog_write_tsv(&a, path, 0), NNP_EUSAGE);
	struct nnp_trainlog_rec r = a.rec[249];
	r.epoch = 250;
	assert_int_equal(nnp_trainlog_append(&a, &r, nnp_trainlog_dice(&a, 249)), NNP_OK);
	assert_int_equal(nnp_trainlog_write_tsv(&a, path, 1), NNP_OK);
	assert_int_equal(temp_files_left(), 0);
	assert_int_equal(nnp_trainlog_read_tsv(&b, path), NNP_OK);
	assert_int_equal(b.n, 251);
	assert_logs_equal(&a, &b);
	nnp_trainlog_release(&a);
	nnp_trainlog_release(&b);

	/* no classes, no epochs */
	assert_int_equal(nnp_trainlog_init(&a, 0, NULL), NNP_OK);
	assert_int_equal(nnp_trainlog_write_tsv(&a, path, 1), NNP_OK);
	assert_int_equal(nnp_trainlog_read_tsv(&b, path), NNP_OK);
	assert_int_equal(b.n, 0);
	assert_int_equal(b.nclasses, 0);
	nnp_trainlog_release(&a);
	nnp_trainlog_release(&b);

	/* an unwritable place: I/O error, nothing left */
	assert_int_equal(nnp_trainlog_write_tsv(&a, "/nonexistent-dir/x.tsv", 1), NNP_EIO);
}

static void test_tsv_tolerated(void **state)
{
	struct nnp_trainlog log;
	char path[512];
	(void)state;
	path_in(path, sizeof path, "crlf.tsv");
	/* CRLF lines, NaN/Inf in any case, no final newline */
	write_text(path, "epoch\ttrain_loss\tval_loss\tmean_fg_dice\tema_fg_dice\tlr\tepoch_time_s\t"
			 "timestamp\r\n0\tNaN\t-Inf\t1e-3\t0x1p-2\t5\t6\t7\r\n1\t1\t2\t3\t4\t5\t6\t7");
	assert_int_equal(nnp_trainlog_read_tsv(&log, path), NNP_OK);
	assert_int_equal(log.n, 2);
	assert_true(isnan(log.rec[0].train_loss) && isinf(log.rec[0].val_loss));
	assert_true(log.rec[0].mean_fg_dice == 1e-3 && log.rec[0].ema_fg_dice == 0.25);
	assert_true(log.rec[1].timestamp == 7);
	nnp_trainlog_release(&log);
}

/* read_tsv fails with code, and the message names the file and has every word. */
static void expect_tsv_error(const char *name, const char *content, int code, const char *w1,
			     const char *w2)
{
	struct nnp_trainlog log;
	char path[512], quoted[600];
	path_in(path, sizeof path, name);
	write_text(path, content);
	assert_int_equal(nnp_trainlog_read_tsv(&log, path), code);
	assert_int_equal(log.n, 0);
	assert_null(log.rec);
	snprintf(quoted, sizeof quoted, "'%s'", path);
	if (!strstr(nnp_err_msg(), quoted) || (w1 && !strstr(nnp_err_msg(), w1)) ||
	    (w2 && !strstr(nnp_err_msg(), w2)))
		fail_msg("%s: message '%s' lacks the file, '%s' or '%s'", name, nnp_err_msg(),
			 w1 ? w1 : "", w2 ? w2 : "");
}

#define HEAD "epoch\ttrain_loss\tval_loss\tdice_a\tmean_fg_dice\tema_fg_dice\tlr\tepoch_time_s\ttimestamp\n"

static void test_tsv_errors(void **state)
{
	struct nnp_trainlog log;
	(void)state;
	assert_int_equal(nnp_trainlog_read_tsv(&log, "/nonexistent/training_log.tsv"), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "'/nonexistent/training_log.tsv'"));
	expect_tsv_error("empty.tsv", "", NNP_EDATA, "empty", NULL);
	expect_tsv_error("hdr1.tsv", "epoch\ttrain_loss\n", NNP_EDATA, "line 1", "header");
	expect_tsv_error("hdr2.tsv", "epoch\ttrain_loss\tval_loss\tmean_fg_dice\tema_fg_dice\tlr\t"
			 "epoch_time_s\tstamp\n", NNP_EDATA, "line 1", "stamp");
	expect_tsv_error("hdr3.tsv", "epoch\ttrain_loss\tval_loss\tdice\tmean_fg_dice\tema_fg_dice\t"
			 "lr\tepoch_time_s\ttimestamp\n", NNP_EDATA, "line 1", "dice");
	expect_tsv_error("hdr4.tsv", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", NNP_EDATA, "line 1", NULL);
	expect_tsv_error("fields.tsv", HEAD "0\t1\t2\t3\t4\t5\t6\t7\t8\n1\t1\t2\t3\t4\t5\t6\t7\n",
			 NNP_EDATA, "line 3", "8 fields");
	expect_tsv_error("more.tsv", HEAD "0\t1\t2\t3\t4\t5\t6\t7\t8\t9\n", NNP_EDATA, "line 2",
			 "10 fields");
	expect_tsv_error("number.tsv", HEAD "0\t1\t2\t3\t4\t5\t6\t7\t8\n1\t1\t2\t0.5x\t4\t5\t6\t7\t8\n",
			 NNP_EDATA, "line 3", "'dice_a': '0.5x'");
	expect_tsv_error("blank.tsv", HEAD "0\t1\t2\t3\t4\t5\t6\t7\t8\n\n1\t1\t2\t3\t4\t5\t6\t7\t8\n",
			 NNP_EDATA, "line 3", NULL);
	expect_tsv_error("order.tsv", HEAD "0\t1\t2\t3\t4\t5\t6\t7\t8\n2\t1\t2\t3\t4\t5\t6\t7\t8\n",
			 NNP_EDATA, "line 3", "where 1 was expected");
	expect_tsv_error("frac.tsv", HEAD "0.5\t1\t2\t3\t4\t5\t6\t7\t8\n", NNP_EDATA, "line 2",
			 "epoch");
	expect_tsv_error("empty-field.tsv", HEAD "0\t\t2\t3\t4\t5\t6\t7\t8\n", NNP_EDATA, "line 2",
			 "'train_loss'");
	expect_tsv_error("huge.tsv", HEAD "0\t1e999\t2\t3\t4\t5\t6\t7\t8\n", NNP_EDATA, "line 2",
			 "'train_loss'");
}

/* ---- font ---- */

static void test_font(void **state)
{
	(void)state;
	for (int ch = 32; ch < 127; ch++) {
		const char *g = nnp__glyph_rows(ch);
		size_t n = strlen(g), ink = 0;
		if (ch == ' ') {
			assert_int_equal(n, 0);
			continue;
		}
		/* rows of 5 '#'/'.' separated by single spaces, 3 to 8 rows */
		if ((n + 1) % (NNP__GLYPH_W + 1) || n < 17 || n > 47)
			fail_msg("glyph '%c': bad length %zu", ch, n);
		for (size_t i = 0; i < n; i++) {
			int sep = i % (NNP__GLYPH_W + 1) == NNP__GLYPH_W;
			if (sep ? g[i] != ' ' : (g[i] != '#' && g[i] != '.'))
				fail_msg("glyph '%c': bad byte at %zu", ch, i);
			ink += g[i] == '#';
		}
		assert_true(ink > 0);
		for (int c2 = 32; c2 < ch; c2++)
			if (!strcmp(g, nnp__glyph_rows(c2)))
				fail_msg("glyphs '%c' and '%c' are the same", c2, ch);
	}
	assert_true(nnp__glyph_pixel('1', 2, 0) && !nnp__glyph_pixel('1', 0, 0));
	assert_true(nnp__glyph_pixel('_', 0, 7) && !nnp__glyph_pixel('_', 0, 6));
	assert_false(nnp__glyph_pixel('8', 5, 0) || nnp__glyph_pixel('8', 0, 8) ||
		     nnp__glyph_pixel('8', -1, 0));
	assert_string_equal(nnp__glyph_rows(200), nnp__glyph_rows('?'));
}

/* ---- PNG ---- */

struct image {
	unsigned char *px;
	unsigned w, h;
};

static struct image decode_png(const unsigned char *buf, size_t n)
{
	png_image im;
	struct image out;
	memset(&im, 0, sizeof im);
	im.version = PNG_IMAGE_VERSION;
	assert_true(png_image_begin_read_from_memory(&im, buf, n));
	im.format = PNG_FORMAT_RGB;
	out.w = im.width;
	out.h = im.height;
	out.px = malloc(PNG_IMAGE_SIZE(im));
	assert_non_null(out.px);
	assert_true(png_image_finish_read(&im, NULL, out.px, 0, NULL));
	return out;
}

static struct image plot(const struct nnp_trainlog *log)
{
	unsigned char *png;
	size_t n;
	struct image im;
	assert_int_equal(nnp_trainlog_png_encode(log, &png, &n), NNP_OK);
	assert_true(n > 8 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8));
	im = decode_png(png, n);
	free(png);
	assert_int_equal(im.w, PW);
	assert_int_equal(im.h, PH);
	return im;
}

static uint32_t pixel(const struct image *im, int x, int y)
{
	const unsigned char *p = im->px + ((size_t)y * im->w + (size_t)x) * 3;
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static void assert_pixel(const struct image *im, int x, int y, uint32_t want)
{
	uint32_t got = pixel(im, x, y);
	if (got != want)
		fail_msg("pixel (%d, %d) is %06x, expected %06x", x, y, (unsigned)got, (unsigned)want);
}

/* The documented layout (trainlog.h): column of epoch e in a log of n epochs,
 * row of v on the axis [lo, hi] in panel p. */
static int col(double e, size_t n)
{
	double last = n ? (double)(n - 1) : 0, pad = fmax(0.5, 0.02 * last);
	return NNP_TRAINLOG_PLOT_LEFT +
	       (int)lround((e + pad) / (last + 2 * pad) *
			   (NNP_TRAINLOG_PLOT_RIGHT - NNP_TRAINLOG_PLOT_LEFT - 1));
}

static int row(double v, double lo, double hi, int panel)
{
	return panel * NNP_TRAINLOG_PANEL_H + NNP_TRAINLOG_PLOT_BOTTOM - 1 -
	       (int)lround((v - lo) / (hi - lo) *
			   (NNP_TRAINLOG_PLOT_BOTTOM - 1 - NNP_TRAINLOG_PLOT_TOP));
}

/* Pixels of colour c in column x of panel p's plot area. */
static int count_in_column(const struct image *im, int x, int panel, uint32_t c)
{
	int n = 0;
	for (int y = NNP_TRAINLOG_PLOT_TOP; y < NNP_TRAINLOG_PLOT_BOTTOM; y++)
		n += pixel(im, x, panel * NNP_TRAINLOG_PANEL_H + y) == c;
	return n;
}

static void assert_ink_in(const struct image *im, int x0, int y0, int x1, int y1)
{
	int dark = 0;
	for (int y = y0; y < y1; y++)
		for (int x = x0; x < x1; x++)
			dark += pixel(im, x, y) == 0x202020u;
	if (dark == 0)
		fail_msg("no text in [%d, %d) x [%d, %d)", x0, x1, y0, y1);
}

static void test_png_one_epoch(void **state)
{
	struct nnp_trainlog log;
	double d[1] = { 0.5 };
	struct nnp_trainlog_rec r = { 0, -0.1, -0.05, 0, 0, 0.01, 120.5, 1.7e9 };
	struct image im;
	int x = col(0, 1);
	(void)state;
	assert_int_equal(nnp_trainlog_init(&log, 1, NULL), NNP_OK);
	nnp_trainlog_fill_dice(&log, &r, d);
	assert_int_equal(nnp_trainlog_append(&log, &r, d), NNP_OK);
	im = plot(&log);
	assert_int_equal(x, (NNP_TRAINLOG_PLOT_LEFT + NNP_TRAINLOG_PLOT_RIGHT) / 2);
	/* losses [-0.1, -0.05] + 5 %: isolated points are 8x8 squares */
	for (int k = -4; k < 4; k++) {
		assert_pixel(&im, x + k, row(-0.1, -0.1025, -0.0475, 0) + k, NNP_TRAINLOG_C_TRAIN);
		assert_pixel(&im, x + k, row(-0.05, -0.1025, -0.0475, 0) - k - 1, NNP_TRAINLOG_C_VAL);
	}
	/* pseudo Dice and its EMA: constant 0.5 -> [0.45, 0.55]; the EMA drawn last */
	assert_pixel(&im, x, row(0.5, 0.45, 0.55, 0), NNP_TRAINLOG_C_EMA);
	/* epoch time: [0, 1.05 * 120.5]; lr constant 0.01: [0.009, 0.011] */
	assert_pixel(&im, x, row(120.5, 0, 1.05 * 120.5, 1), NNP_TRAINLOG_C_TRAIN);
	assert_pixel(&im, x, row(120.5, 0, 1.05 * 120.5, 1) - 4, NNP_TRAINLOG_C_TRAIN);
	assert_pixel(&im, x + 3, row(0.01, 0.009, 0.011, 2) + 3, NNP_TRAINLOG_C_TRAIN);
	/* background: the plot area away from points and grid, the margins */
	assert_pixel(&im, x - 100, row(-0.065, -0.1025, -0.0475, 0), NNP_TRAINLOG_BG);
	assert_pixel(&im, x + 5, row(-0.1, -0.1025, -0.0475, 0) + 2, NNP_TRAINLOG_BG);
	assert_pixel(&im, 5, 5, NNP_TRAINLOG_BG);
	assert_pixel(&im, PW - 3, PH - 3, NNP_TRAINLOG_BG);
	/* titles, legends and tick labels are there */
	for (int p = 0; p < 3; p++) {
		int y0 = p * NNP_TRAINLOG_PANEL_H;
		assert_ink_in(&im, PW / 2 - 100, y0 + 10, PW / 2 + 100, y0 + 40);
		assert_ink_in(&im, NNP_TRAINLOG_PLOT_LEFT + 50, y0 + 56, NNP_TRAINLOG_PLOT_LEFT + 150,
			      y0 + 74);
		assert_ink_in(&im, NNP_TRAINLOG_PLOT_LEFT - 100, y0 + NNP_TRAINLOG_PLOT_TOP,
			      NNP_TRAINLOG_PLOT_LEFT - 12, y0 + NNP_TRAINLOG_PLOT_BOTTOM);
		assert_ink_in(&im, x - 10, y0 + NNP_TRAINLOG_PLOT_BOTTOM + 12, x + 10,
			      y0 + NNP_TRAINLOG_PLOT_BOTTOM + 32);
	}
	free(im.px);
	nnp_trainlog_release(&log);
}

/* train = e, val = 2 for 11 epochs: axis [-0.5, 10.5]. */
static void test_png_line_positions(void **state)
{
	struct nnp_trainlog log;
	struct image im;
	(void)state;
	assert_int_equal(nnp_trainlog_init(&log, 0, NULL), NNP_OK);
	for (int i = 0; i < 11; i++) {
		struct nnp_trainlog_rec r = { i, i, 2, NAN, NAN, 0.01, 60, 0 };
		assert_int_equal(nnp_trainlog_append(&log, &r, NULL), NNP_OK);
	}
	im = plot(&log);
	for (int e = 0; e <= 10; e++) {
		int x = col(e, 11), y = row(e, -0.5, 10.5, 0);
		assert_pixel(&im, x, row(2, -0.5, 10.5, 0), NNP_TRAINLOG_C_VAL);   /* drawn last */
		if (e == 2)
			continue;
		assert_pixel(&im, x, y, NNP_TRAINLOG_C_TRAIN);
		assert_pixel(&im, x + 1, y + 1, NNP_TRAINLOG_C_TRAIN);
	}
	/* between epochs 5 and 6 (x grid lines only at even epochs) */
	assert_pixel(&im, (col(5, 11) + col(6, 11)) / 2, row(8.7, -0.5, 10.5, 0), NNP_TRAINLOG_BG);
	/* no Dice at all: nothing in the Dice colours */
	for (int x = NNP_TRAINLOG_PLOT_LEFT; x < NNP_TRAINLOG_PLOT_RIGHT; x++)
		assert_int_equal(count_in_column(&im, x, 0, NNP_TRAINLOG_C_EMA) +
				 count_in_column(&im, x, 0, NNP_TRAINLOG_C_DICE), 0);
	free(im.px);
	nnp_trainlog_release(&log);
}

static void test_png_nan_gap(void **state)
{
	struct nnp_trainlog log;
	struct image im;
	char path[512];
	(void)state;
	assert_int_equal(nnp_trainlog_init(&log, 0, NULL), NNP_OK);
	for (int i = 0; i < 100; i++) {
		double t = i >= 40 && i < 60 ? NAN : -0.5 - 0.001 * i;
		struct nnp_trainlog_rec r = { i, t, i == 70 ? INFINITY : -0.4, NAN, NAN, NAN, 100,
					      0 };
		assert_int_equal(nnp_trainlog_append(&log, &r, NULL), NNP_OK);
	}
	im = plot(&log);
	/* the train line stops after epoch 39 and resumes at 60 */
	for (int x = col(39, 100) + 2; x < col(60, 100); x++)
		assert_int_equal(count_in_column(&im, x, 0, NNP_TRAINLOG_C_TRAIN), 0);
	assert_true(count_in_column(&im, col(20, 100), 0, NNP_TRAINLOG_C_TRAIN) >= 2);
	assert_true(count_in_column(&im, col(80, 100), 0, NNP_TRAINLOG_C_TRAIN) >= 2);
	/* the val line has a gap around epoch 70 only */
	for (int x = col(69, 100) + 2; x < col(71, 100); x++)
		assert_int_equal(count_in_column(&im, x, 0, NNP_TRAINLOG_C_VAL), 0);
	assert_true(count_in_column(&im, col(50, 100), 0, NNP_TRAINLOG_C_VAL) >= 2);
	/* an all-NaN learning rate: an empty panel */
	for (int x = NNP_TRAINLOG_PLOT_LEFT; x < NNP_TRAINLOG_PLOT_RIGHT; x++)
		assert_int_equal(count_in_column(&im, x, 2, NNP_TRAINLOG_C_TRAIN), 0);
	free(im.px);

	/* written atomically; an existing file needs force */
	path_in(path, sizeof path, NNP_TRAINLOG_PNG);
	assert_int_equal(nnp_trainlog_write_png(&log, path, 0), NNP_OK);
	assert_int_equal(nnp_trainlog_write_png(&log, path, 0), NNP_EUSAGE);
	assert_int_equal(nnp_trainlog_write_png(&log, path, 1), NNP_OK);
	assert_int_equal(temp_files_left(), 0);
	nnp_trainlog_release(&log);
}

static void test_png_2000_epochs(void **state)
{
	struct nnp_trainlog log;
	struct image im;
	(void)state;
	make_log(&log, 2000, 3, NULL);
	im = plot(&log);
	/* first and last epochs are drawn where the layout says (train is
	 * -0.125 e: the largest loss magnitude at the end, after the -inf) */
	assert_true(count_in_column(&im, col(1999, 2000), 0, NNP_TRAINLOG_C_TRAIN) >= 1);
	assert_true(count_in_column(&im, col(0, 2000), 0, NNP_TRAINLOG_C_VAL) >= 1);
	assert_true(count_in_column(&im, col(1000, 2000), 2, NNP_TRAINLOG_C_TRAIN) >= 1);
	/* nothing is drawn outside the plot area's columns in the lines' colours */
	for (int y = NNP_TRAINLOG_PLOT_TOP; y < NNP_TRAINLOG_PLOT_BOTTOM; y++)
		assert_int_not_equal(pixel(&im, NNP_TRAINLOG_PLOT_RIGHT + 3, y), NNP_TRAINLOG_C_TRAIN);
	free(im.px);
	nnp_trainlog_release(&log);

	/* no epochs at all: empty axes, still a valid image */
	assert_int_equal(nnp_trainlog_init(&log, 2, NULL), NNP_OK);
	im = plot(&log);
	assert_pixel(&im, (NNP_TRAINLOG_PLOT_LEFT + NNP_TRAINLOG_PLOT_RIGHT) / 2 + 7, 300,
		     NNP_TRAINLOG_BG);
	free(im.px);
	nnp_trainlog_release(&log);
}

/* Extreme values: no crash, nothing out of range (the sanitizers watch). */
static void test_png_extremes(void **state)
{
	static const double v[][3] = {
		{ 1e300, -1e300, 5e-324 }, { DBL_MAX, -DBL_MAX, 0 }, { 1e-310, 1e-310, 1e-310 },
		{ 0, 0, 0 }, { -5, -5, -5 }, { 1e15, 1e15 + 1, 2e15 },
	};
	(void)state;
	for (size_t k = 0; k < sizeof v / sizeof *v; k++) {
		struct nnp_trainlog log;
		struct image im;
		assert_int_equal(nnp_trainlog_init(&log, 1, NULL), NNP_OK);
		for (int i = 0; i < 3; i++) {
			struct nnp_trainlog_rec r = { i, v[k][i], v[k][2 - i], v[k][i], v[k][i],
						      v[k][i], v[k][i], 0 };
			assert_int_equal(nnp_trainlog_append(&log, &r, &v[k][i]), NNP_OK);
		}
		im = plot(&log);
		free(im.px);
		nnp_trainlog_release(&log);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_ema),
		cmocka_unit_test(test_many_epochs_no_classes),
		cmocka_unit_test(test_names_sanitised),
		cmocka_unit_test(test_flat_roundtrip),
		cmocka_unit_test(test_tsv_text),
		cmocka_unit_test(test_tsv_roundtrip),
		cmocka_unit_test(test_tsv_tolerated),
		cmocka_unit_test(test_tsv_errors),
		cmocka_unit_test(test_font),
		cmocka_unit_test(test_png_one_epoch),
		cmocka_unit_test(test_png_line_positions),
		cmocka_unit_test(test_png_nan_gap),
		cmocka_unit_test(test_png_2000_epochs),
		cmocka_unit_test(test_png_extremes),
	};
	return cmocka_run_group_tests_name("trainlog", tests, setup, teardown);
}
