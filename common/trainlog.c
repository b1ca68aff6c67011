/* trainlog.c — the per-epoch training log: records, the flat checkpoint form
 * and training_log.tsv (see trainlog.h; the plot is in trainlog_png.c). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atomic.h"
#include "err.h"
#include "trainlog.h"

#define TSV_MAX_BYTES ((size_t)1 << 30)   /* a formatted log larger than this: ENOMEM */
#define LINE_MAX_BYTES ((size_t)1 << 20)  /* longest accepted TSV line */

static const char *const fixed_head[] = { "epoch", "train_loss", "val_loss" };
static const char *const fixed_tail[] = { "mean_fg_dice", "ema_fg_dice", "lr", "epoch_time_s",
					  "timestamp" };
#define NHEAD 3
#define NTAIL 5

/* ---- records ---- */

static char *sanitised_name(const char *s)
{
	size_t n = strlen(s);
	char *t;
	if (n > NNP_TRAINLOG_NAME_MAX)
		n = NNP_TRAINLOG_NAME_MAX;
	if (!(t = malloc(n + 1))) {
		nnp_err(NNP_ENOMEM, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			 c == '.' || c == '_' || c == '+' || c == '-';
		t[i] = ok ? c : '_';
	}
	t[n] = '\0';
	return t;
}

static int set_names(struct nnp_trainlog *log, const char *const *names)
{
	if (!names || !log->nclasses)
		return NNP_OK;
	if (!(log->names = calloc(log->nclasses, sizeof *log->names)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t c = 0; c < log->nclasses; c++) {
		if (!names[c] || !names[c][0])
			return nnp_err(NNP_EINTERNAL, "training log: class %zu has no name", c + 1);
		if (!(log->names[c] = sanitised_name(names[c])))
			return NNP_ENOMEM;
	}
	return NNP_OK;
}

int nnp_trainlog_init(struct nnp_trainlog *log, size_t nclasses, const char *const *names)
{
	int rc;
	memset(log, 0, sizeof *log);
	if (nclasses > NNP_TRAINLOG_MAX_CLASSES)
		return nnp_err(NNP_EDATA, "training log: %zu classes (at most %d)", nclasses,
			       NNP_TRAINLOG_MAX_CLASSES);
	log->nclasses = nclasses;
	if ((rc = set_names(log, names)))
		nnp_trainlog_release(log);
	return rc;
}

void nnp_trainlog_release(struct nnp_trainlog *log)
{
	if (log->names)
		for (size_t c = 0; c < log->nclasses; c++)
			free(log->names[c]);
	free(log->names);
	free(log->rec);
	free(log->dice);
	memset(log, 0, sizeof *log);
}

static int reserve(struct nnp_trainlog *log, size_t want)
{
	size_t cap = log->cap ? log->cap : 64, k = log->nclasses ? log->nclasses : 1;
	struct nnp_trainlog_rec *rec;
	double *dice;
	if (want <= log->cap)
		return NNP_OK;
	if (want > NNP_TRAINLOG_MAX_EPOCHS)
		return nnp_err(NNP_ENOMEM, "training log: more than %d epochs", NNP_TRAINLOG_MAX_EPOCHS);
	while (cap < want)
		cap *= 2;
	if (!(rec = realloc(log->rec, cap * sizeof *rec)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	log->rec = rec;
	if (!(dice = realloc(log->dice, cap * k * sizeof *dice)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	log->dice = dice;
	log->cap = cap;
	return NNP_OK;
}

int nnp_trainlog_append(struct nnp_trainlog *log, const struct nnp_trainlog_rec *r,
			const double *dice)
{
	size_t i;
	int rc;
	if (r->epoch < 0 || (size_t)r->epoch > log->n)
		return nnp_err(NNP_EINTERNAL, "training log: epoch %d logged after %zu epochs",
			       r->epoch, log->n);
	if (log->nclasses && !dice)
		return nnp_err(NNP_EINTERNAL, "training log: epoch %d without Dice values", r->epoch);
	i = (size_t)r->epoch;
	if ((rc = reserve(log, i + 1)))
		return rc;
	log->rec[i] = *r;
	if (log->nclasses)
		memcpy(log->dice + i * log->nclasses, dice, log->nclasses * sizeof *dice);
	log->n = i + 1;
	return NNP_OK;
}

void nnp_trainlog_truncate(struct nnp_trainlog *log, size_t n)
{
	if (n < log->n)
		log->n = n;
}

const double *nnp_trainlog_dice(const struct nnp_trainlog *log, size_t i)
{
	return log->dice + i * log->nclasses;
}

double nnp_trainlog_nanmean(const double *v, size_t n)
{
	double s = 0;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!isnan(v[i])) {
			s += v[i];
			k++;
		}
	return k ? s / (double)k : NAN;
}

void nnp_trainlog_fill_dice(const struct nnp_trainlog *log, struct nnp_trainlog_rec *r,
			    const double *dice)
{
	double mean = nnp_trainlog_nanmean(dice, log->nclasses);
	r->mean_fg_dice = mean;
	if (r->epoch <= 0 || (size_t)r->epoch > log->n)
		r->ema_fg_dice = mean;
	else
		r->ema_fg_dice = NNP_TRAINLOG_EMA_KEEP * log->rec[r->epoch - 1].ema_fg_dice +
				 (1 - NNP_TRAINLOG_EMA_KEEP) * mean;
}

/* ---- flat form ---- */

size_t nnp_trainlog_flat_count(const struct nnp_trainlog *log)
{
	return NNP_TRAINLOG_FLAT_HEAD + log->n * (NNP_TRAINLOG_FLAT_FIXED + log->nclasses);
}

void nnp_trainlog_to_flat(const struct nnp_trainlog *log, double *out)
{
	out[0] = NNP_TRAINLOG_FLAT_MAGIC;
	out[1] = NNP_TRAINLOG_FLAT_VERSION;
	out[2] = (double)log->nclasses;
	out[3] = (double)log->n;
	out += NNP_TRAINLOG_FLAT_HEAD;
	for (size_t i = 0; i < log->n; i++) {
		const struct nnp_trainlog_rec *r = &log->rec[i];
		double row[NNP_TRAINLOG_FLAT_FIXED] = { r->epoch, r->train_loss, r->val_loss,
			r->mean_fg_dice, r->ema_fg_dice, r->lr, r->epoch_time_s, r->timestamp };
		memcpy(out, row, sizeof row);
		memcpy(out + NNP_TRAINLOG_FLAT_FIXED, nnp_trainlog_dice(log, i),
		       log->nclasses * sizeof *out);
		out += NNP_TRAINLOG_FLAT_FIXED + log->nclasses;
	}
}

/* v is a whole number in [0, max]. */
static int flat_int(double v, double max)
{
	return v >= 0 && v <= max && v == floor(v);
}

static int flat_rows(struct nnp_trainlog *log, const double *v, size_t n)
{
	size_t w = NNP_TRAINLOG_FLAT_FIXED + log->nclasses;
	for (size_t i = 0; i < n; i++, v += w) {
		struct nnp_trainlog_rec r = { 0, v[1], v[2], v[3], v[4], v[5], v[6], v[7] };
		int rc;
		if (v[0] != (double)i)
			return nnp_err(NNP_EDATA, "checkpoint training log: row %zu has epoch %g", i,
				       v[0]);
		r.epoch = (int)i;
		if ((rc = nnp_trainlog_append(log, &r, v + NNP_TRAINLOG_FLAT_FIXED)))
			return rc;
	}
	return NNP_OK;
}

int nnp_trainlog_from_flat(struct nnp_trainlog *log, const double *v, size_t count,
			   const char *const *names)
{
	size_t k, n;
	int rc;
	memset(log, 0, sizeof *log);
	if (count < NNP_TRAINLOG_FLAT_HEAD || v[0] != NNP_TRAINLOG_FLAT_MAGIC)
		return nnp_err(NNP_EDATA, "checkpoint training log: not a training log");
	if (v[1] != NNP_TRAINLOG_FLAT_VERSION)
		return nnp_err(NNP_EDATA, "checkpoint training log: version %g (this is %g)", v[1],
			       NNP_TRAINLOG_FLAT_VERSION);
	if (!flat_int(v[2], NNP_TRAINLOG_MAX_CLASSES) || !flat_int(v[3], NNP_TRAINLOG_MAX_EPOCHS))
		return nnp_err(NNP_EDATA, "checkpoint training log: bad sizes (%g classes, %g epochs)",
			       v[2], v[3]);
	k = (size_t)v[2];
	n = (size_t)v[3];
	if (count != NNP_TRAINLOG_FLAT_HEAD + n * (NNP_TRAINLOG_FLAT_FIXED + k))
		return nnp_err(NNP_EDATA, "checkpoint training log: %zu values for %zu epochs of "
			       "%zu classes", count, n, k);
	if ((rc = nnp_trainlog_init(log, k, names)))
		return rc;
	if ((rc = reserve(log, n)) || (rc = flat_rows(log, v + NNP_TRAINLOG_FLAT_HEAD, n)))
		nnp_trainlog_release(log);
	return rc;
}

/* ---- TSV writer ---- */

struct sbuf {
	char *p;
	size_t n, cap;
	int rc;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int k;
	if (b->rc)
		return;
	for (;;) {
		size_t room = b->cap - b->n;
		va_start(ap, fmt);
		k = vsnprintf(b->p + b->n, room, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->rc = nnp_err(NNP_EINTERNAL, "cannot format the training log");
			return;
		}
		if ((size_t)k < room) {
			b->n += (size_t)k;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 4096;
		char *p;
		while (cap - b->n <= (size_t)k)
			cap *= 2;
		if (cap > TSV_MAX_BYTES || !(p = realloc(b->p, cap))) {
			b->rc = nnp_err(NNP_ENOMEM, "training log: out of memory (or over 1 GiB)");
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* A tab and v: "%.9g" (a timestamp "%.6f"), nan/inf spelled the same on every libc. */
static void sb_num(struct sbuf *b, double v, int timestamp)
{
	if (isnan(v))
		sb_printf(b, "\tnan");
	else if (isinf(v))
		sb_printf(b, "\t%s", v > 0 ? "inf" : "-inf");
	else if (timestamp)
		sb_printf(b, "\t%.6f", v);
	else
		sb_printf(b, "\t%.9g", v);
}

static void tsv_header(struct sbuf *b, const struct nnp_trainlog *log)
{
	sb_printf(b, "%s\t%s\t%s", fixed_head[0], fixed_head[1], fixed_head[2]);
	for (size_t c = 0; c < log->nclasses; c++) {
		if (log->names)
			sb_printf(b, "\tdice_%s", log->names[c]);
		else
			sb_printf(b, "\tdice_%zu", c + 1);
	}
	for (int i = 0; i < NTAIL; i++)
		sb_printf(b, "\t%s", fixed_tail[i]);
	sb_printf(b, "\n");
}

static void tsv_row(struct sbuf *b, const struct nnp_trainlog *log, size_t i)
{
	const struct nnp_trainlog_rec *r = &log->rec[i];
	const double *d = nnp_trainlog_dice(log, i);
	sb_printf(b, "%d", r->epoch);
	sb_num(b, r->train_loss, 0);
	sb_num(b, r->val_loss, 0);
	for (size_t c = 0; c < log->nclasses; c++)
		sb_num(b, d[c], 0);
	sb_num(b, r->mean_fg_dice, 0);
	sb_num(b, r->ema_fg_dice, 0);
	sb_num(b, r->lr, 0);
	sb_num(b, r->epoch_time_s, 0);
	sb_num(b, r->timestamp, 1);
	sb_printf(b, "\n");
}

int nnp_trainlog_format_tsv(const struct nnp_trainlog *log, char **out, size_t *len)
{
	struct sbuf b = { NULL, 0, 0, NNP_OK };
	tsv_header(&b, log);
	for (size_t i = 0; i < log->n; i++)
		tsv_row(&b, log, i);
	if (b.rc) {
		free(b.p);
		return b.rc;
	}
	*out = b.p;
	*len = b.n;
	return NNP_OK;
}

int nnp_trainlog_write_tsv(const struct nnp_trainlog *log, const char *path, int force)
{
	struct nnp_atomic a;
	char *s;
	size_t n;
	int rc;
	if ((rc = nnp_trainlog_format_tsv(log, &s, &n)))
		return rc;
	if ((rc = nnp_atomic_open(&a, path, force))) {
		free(s);
		return rc;
	}
	rc = nnp_write_all(a.fd, s, n, path);
	free(s);
	if (rc) {
		nnp_atomic_abort(&a);
		return rc;
	}
	return nnp_atomic_commit(&a);
}

/* ---- TSV reader ---- */

struct tsv_in {
	FILE *f;
	const char *name;
	size_t line;           /* number of the line in buf */
	char *buf;             /* LINE_MAX_BYTES + 1 */
	size_t nf;             /* fields of the header */
	char **field;          /* nf + 1 pointers into buf */
};

/* Next line into in->buf without its newline (and a CR before it).
 * 1: a line, 0: end of file, < 0: error. */
static int read_line(struct tsv_in *in)
{
	size_t n = 0;
	int c;
	while ((c = getc(in->f)) != EOF && c != '\n') {
		if (n == LINE_MAX_BYTES)
			return nnp_err(NNP_EDATA, "'%s' line %zu: longer than %zu bytes", in->name,
				       in->line + 1, LINE_MAX_BYTES);
		in->buf[n++] = (char)c;
	}
	if (ferror(in->f))
		return nnp_err(NNP_EIO, "cannot read '%s': %s", in->name, strerror(errno));
	if (c == EOF && n == 0)
		return 0;
	if (n && in->buf[n - 1] == '\r')
		n--;
	in->buf[n] = '\0';
	in->line++;
	if (memchr(in->buf, '\0', n))
		return nnp_err(NNP_EDATA, "'%s' line %zu: NUL byte (not a text file)", in->name,
			       in->line);
	return 1;
}

/* Split in->buf at tabs into at most max fields; returns the count. */
static size_t split_tabs(char *s, char **field, size_t max)
{
	size_t n = 0;
	for (;;) {
		char *t = strchr(s, '\t');
		if (n < max)
			field[n] = s;
		n++;
		if (!t)
			return n;
		*t = '\0';
		s = t + 1;
	}
}

static int header_error(const struct tsv_in *in, const char *what)
{
	return nnp_err(NNP_EDATA, "'%s' line 1: not a training log header (%s); expected "
		       "epoch, train_loss, val_loss, dice_*..., mean_fg_dice, ema_fg_dice, lr, "
		       "epoch_time_s, timestamp", in->name, what);
}

/* The header fixes the number of fields; the dice_ names become class names. */
static int parse_header(struct tsv_in *in, struct nnp_trainlog *log)
{
	char *f[NHEAD + NTAIL + NNP_TRAINLOG_MAX_CLASSES];
	size_t max = sizeof f / sizeof *f, n, k;
	int rc = read_line(in);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return nnp_err(NNP_EDATA, "'%s': empty file, not a training log", in->name);
	if ((n = split_tabs(in->buf, f, max)) > max)
		return header_error(in, "too many columns");
	if (n < NHEAD + NTAIL)
		return header_error(in, "too few columns");
	for (size_t i = 0; i < NHEAD; i++)
		if (strcmp(f[i], fixed_head[i]))
			return header_error(in, f[i]);
	k = n - NHEAD - NTAIL;
	for (size_t i = 0; i < NTAIL; i++)
		if (strcmp(f[NHEAD + k + i], fixed_tail[i]))
			return header_error(in, f[NHEAD + k + i]);
	for (size_t c = 0; c < k; c++)
		if (strncmp(f[NHEAD + c], "dice_", 5) || !f[NHEAD + c][5])
			return header_error(in, f[NHEAD + c]);
	for (size_t c = 0; c < k; c++)
		f[NHEAD + c] += 5;
	in->nf = n;
	return nnp_trainlog_init(log, k, (const char *const *)(f + NHEAD));
}

static const char *column_name(const struct nnp_trainlog *log, size_t j, char *buf, size_t len)
{
	size_t k = log->nclasses;
	if (j < NHEAD)
		return fixed_head[j];
	if (j >= NHEAD + k)
		return fixed_tail[j - NHEAD - k];
	snprintf(buf, len, "dice_%s", log->names[j - NHEAD]);
	return buf;
}

static int parse_number(const struct tsv_in *in, const struct nnp_trainlog *log, size_t j,
			double *v)
{
	char *end, name[NNP_TRAINLOG_NAME_MAX + 8];
	const char *s = in->field[j];
	errno = 0;
	*v = strtod(s, &end);
	if (!*s || *end || (errno == ERANGE && isinf(*v)))
		return nnp_err(NNP_EDATA, "'%s' line %zu: column '%s': '%.40s' is not a number",
			       in->name, in->line, column_name(log, j, name, sizeof name), s);
	return NNP_OK;
}

static int parse_row(struct tsv_in *in, struct nnp_trainlog *log, double *v)
{
	size_t n = split_tabs(in->buf, in->field, in->nf + 1);
	int rc;
	if (n != in->nf)
		return nnp_err(NNP_EDATA, "'%s' line %zu: %zu fields, the header has %zu", in->name,
			       in->line, n, in->nf);
	for (size_t j = 0; j < n; j++)
		if ((rc = parse_number(in, log, j, &v[j])))
			return rc;
	if (v[0] != (double)log->n)
		return nnp_err(NNP_EDATA, "'%s' line %zu: epoch '%s' where %zu was expected (epochs "
			       "are 0, 1, 2, ... in order)", in->name, in->line, in->field[0], log->n);
	return NNP_OK;
}

static int append_row(struct nnp_trainlog *log, const double *v)
{
	const double *t = v + NHEAD + log->nclasses;
	struct nnp_trainlog_rec r = { (int)v[0], v[1], v[2], t[0], t[1], t[2], t[3], t[4] };
	return nnp_trainlog_append(log, &r, v + NHEAD);
}

static int parse_rows(struct tsv_in *in, struct nnp_trainlog *log)
{
	double *v = malloc(in->nf * sizeof *v);
	int rc = NNP_OK, got;
	if (!v || !(in->field = malloc((in->nf + 1) * sizeof *in->field))) {
		free(v);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	while (!rc && (got = read_line(in)) != 0) {
		if (got < 0)
			rc = got;
		else if (log->n == NNP_TRAINLOG_MAX_EPOCHS)
			rc = nnp_err(NNP_EDATA, "'%s' line %zu: more than %d epochs", in->name,
				     in->line, NNP_TRAINLOG_MAX_EPOCHS);
		else if (!(rc = parse_row(in, log, v)))
			rc = append_row(log, v);
	}
	free(v);
	return rc;
}

static int read_stream(struct tsv_in *in, struct nnp_trainlog *log)
{
	int rc;
	memset(log, 0, sizeof *log);
	if (!(in->buf = malloc(LINE_MAX_BYTES + 1)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	if (!(rc = parse_header(in, log)) && (rc = parse_rows(in, log)))
		nnp_trainlog_release(log);
	free(in->buf);
	free(in->field);
	return rc;
}

int nnp_trainlog_read_tsv(struct nnp_trainlog *log, const char *path)
{
	int is_stdin = !strcmp(path, "-");
	struct tsv_in in = { NULL, is_stdin ? "<stdin>" : path, 0, NULL, 0, NULL };
	int rc;
	memset(log, 0, sizeof *log);
	in.f = is_stdin ? stdin : fopen(path, "rb");
	if (!in.f)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", path, strerror(errno));
	rc = read_stream(&in, log);
	if (!is_stdin)
		fclose(in.f);
	return rc;
}
