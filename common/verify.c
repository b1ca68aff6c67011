/* verify.c — checking an nnU-Net raw dataset (see verify.h; every check,
 * its severity and nnU-Net's equivalent are listed in docs/verify.md).
 *
 * Three passes, each adding findings in a fixed order:
 *   1. dataset.json (syntax, required keys, labels, regions, ...);
 *   2. the file lists: imagesTr/labelsTr names (or the "dataset" dict),
 *      channels per case, labels per case, numTraining;
 *   3. the contents, one case per thread: every file opened and streamed
 *      slab by slab (one chunk buffer per thread), geometry compared with
 *      the case's first image, NaN/Inf counted, label values collected in
 *      a bitmap + hash set.
 * Per-case findings go to the case's own list, so the merged report does
 * not depend on the thread count or on scheduling.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "dataset.h"
#include "atomic.h"
#include "err.h"
#include "frame.h"
#include "json.h"
#include "nifti.h"
#include "prog.h"
#include "verify.h"

#define FINDINGS_MAX 1000000      /* findings kept per list (more: report truncated) */
#define LIST_SHOW 10              /* values or files named in one message */
#define SPACING_MIN 0.01          /* mm; smaller voxels are "unusual" */
#define SPACING_MAX 50.0          /* mm */
#define RTOL 1e-5                 /* numpy.allclose defaults, as nnU-Net */
#define ATOL 1e-8
#define DIR_ATOL 1e-6             /* direction cosines (unit vectors) */
#define VS_LO (-32768)            /* label values in [VS_LO, VS_HI): bitmap */
#define VS_HI 65536
#define VS_HASH_MAX 65536         /* distinct label values outside the bitmap */
#define HUGE_LABEL 4.0e18         /* |value| beyond this: not an int64 label */

/* ------------------------------------------------------------------ */
/* findings                                                            */

struct flist {
	struct nnp_finding *v;
	size_t n, cap, nerr;
	int oom, full;
};

static void finding_release(struct nnp_finding *f)
{
	free(f->file);
	free(f->case_id);
	free(f->message);
	free(f->fix);
}

static void flist_free(struct flist *l)
{
	for (size_t i = 0; i < l->n; i++)
		finding_release(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof *l);
}

static char *dup_or_null(const char *s, int *oom)
{
	char *t;
	if (!s)
		return NULL;
	if (!(t = strdup(s)))
		*oom = 1;
	return t;
}

static void vfinding(struct flist *l, enum nnp_severity sev, const char *check, const char *file,
		     const char *case_id, const char *fix, const char *fmt, va_list ap)
	__attribute__((format(printf, 7, 0)));
static void vfinding(struct flist *l, enum nnp_severity sev, const char *check, const char *file,
		     const char *case_id, const char *fix, const char *fmt, va_list ap)
{
	struct nnp_finding *f;
	if (l->oom || l->full)
		return;
	if (l->n >= FINDINGS_MAX) {
		l->full = 1;
		return;
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 16;
		struct nnp_finding *nv = realloc(l->v, nc * sizeof *nv);
		if (!nv) {
			l->oom = 1;
			return;
		}
		l->v = nv;
		l->cap = nc;
	}
	f = &l->v[l->n];
	memset(f, 0, sizeof *f);
	f->severity = sev;
	f->check = check;
	f->file = dup_or_null(file, &l->oom);
	f->case_id = dup_or_null(case_id, &l->oom);
	f->fix = dup_or_null(fix, &l->oom);
	if (vasprintf(&f->message, fmt, ap) < 0) {
		f->message = NULL;
		l->oom = 1;
	}
	if (l->oom) {
		finding_release(f);
		return;
	}
	l->n++;
	l->nerr += sev == NNP_SEV_ERROR;
}

static void finding(struct flist *l, enum nnp_severity sev, const char *check, const char *file,
		    const char *case_id, const char *fix, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
static void finding(struct flist *l, enum nnp_severity sev, const char *check, const char *file,
		    const char *case_id, const char *fix, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfinding(l, sev, check, file, case_id, fix, fmt, ap);
	va_end(ap);
}

/* snprintf that returns its buffer (for fixes built from values). */
static const char *sfmt(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const char *sfmt(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return buf;
}

/* Append to a bounded string (silently cut at cap). */
static void bappend(char *buf, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void bappend(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int w;
	if (*len + 1 >= cap)
		return;
	va_start(ap, fmt);
	w = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (w > 0)
		*len = *len + (size_t)w < cap ? *len + (size_t)w : cap - 1;
}

static int oom(void)
{
	return nnp_err(NNP_ENOMEM, "out of memory");
}

static char *pjoin(const char *a, const char *b)
{
	char *s;
	if (asprintf(&s, "%s/%s", a, b) < 0)
		return NULL;
	return s;
}

static int ends_with(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n >= m && !memcmp(s + n - m, suf, m);
}

static int ends_with_ci(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n >= m && !strcasecmp(s + n - m, suf);
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* The library's message for a file without the file's name (the finding
 * names it already): every "'PATH': " and "PATH: " is dropped. */
static const char *err_text(const char *path, char *buf, size_t cap)
{
	const char *m = nnp_err_msg();
	size_t n = strlen(path), len = 0;
	if (!*m)
		return "unknown error";
	while (*m && len + 1 < cap) {
		if (*m == '\'' && !strncmp(m + 1, path, n) && !strncmp(m + 1 + n, "': ", 3))
			m += n + 4;
		else if (!strncmp(m, path, n) && !strncmp(m + n, ": ", 2))
			m += n + 2;
		else
			buf[len++] = *m++;
	}
	buf[len] = '\0';
	return buf;
}

/* A short compact text of a JSON value for messages. */
static void json_text(const json_t *v, char *buf, size_t n)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	snprintf(buf, n, "%s", s ? s : "?");
	if (s && strlen(s) >= n && n > 4)
		memcpy(buf + n - 4, "...", 4);
	free(s);
}

/* ------------------------------------------------------------------ */
/* growable int64 arrays                                               */

struct ivec {
	int64_t *v;
	size_t n, cap;
};

static int ivec_push(struct ivec *a, int64_t x)
{
	if (a->n == a->cap) {
		size_t nc = a->cap ? 2 * a->cap : 16;
		int64_t *nv = realloc(a->v, nc * sizeof *nv);
		if (!nv)
			return oom();
		a->v = nv;
		a->cap = nc;
	}
	a->v[a->n++] = x;
	return NNP_OK;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void ivec_sort_unique(struct ivec *a)
{
	size_t k = 0;
	if (a->n > 1)
		qsort(a->v, a->n, sizeof *a->v, cmp_i64);
	for (size_t i = 0; i < a->n; i++)
		if (!k || a->v[i] != a->v[k - 1])
			a->v[k++] = a->v[i];
	a->n = k;
}

static int ivec_has(const struct ivec *a, int64_t x)
{
	return a->n && bsearch(&x, a->v, a->n, sizeof *a->v, cmp_i64) != NULL;
}

/* "[3, 7, 9]" (at most LIST_SHOW values, then ", ... (N values)"). */
static void ivec_text(const int64_t *v, size_t n, char *buf, size_t cap)
{
	size_t len = 0;
	buf[0] = '\0';
	bappend(buf, cap, &len, "[");
	for (size_t i = 0; i < n && i < LIST_SHOW; i++)
		bappend(buf, cap, &len, "%s%lld", i ? ", " : "", (long long)v[i]);
	if (n > LIST_SHOW)
		bappend(buf, cap, &len, ", ... (%zu values)", n);
	bappend(buf, cap, &len, "]");
}

/* "0..2" for consecutive values from 0, else the list. */
static void declared_text(const struct ivec *d, char *buf, size_t cap)
{
	int consecutive = d->n > 0 && d->v[0] == 0 && d->v[d->n - 1] == (int64_t)d->n - 1;
	if (consecutive && d->n > 1)
		snprintf(buf, cap, "%lld..%lld", 0LL, (long long)d->n - 1);
	else
		ivec_text(d->v, d->n, buf, cap);
}

/* ------------------------------------------------------------------ */
/* dataset.json                                                        */

struct ds {
	const char *dir;
	char *jpath;          /* DIR/dataset.json */
	json_t *j;
	const char *ending;   /* file_ending, NULL when unusable */
	int readable;         /* the ending is NIfTI: contents can be checked */
	long nch;             /* channels declared, -1 unknown */
	int labels_known;     /* declared is the set nnU-Net expects */
	struct ivec declared; /* label values incl. ignore, sorted unique */
	int has_ignore;
	int64_t ignore;
	long num_training;    /* -1 unknown */
	json_t *dict;         /* "dataset" dict, NULL: folder mode */
	int dict_bad;         /* the dict is unusable */
};

/* A finding about dataset.json at a JSON path. */
static void jfind(struct ds *d, struct flist *l, enum nnp_severity sev, const char *check,
		  const char *fix, const char *jp, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
static void jfind(struct ds *d, struct flist *l, enum nnp_severity sev, const char *check,
		  const char *fix, const char *jp, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	finding(l, sev, check, d->jpath, NULL, fix, "%s: %s", jp, msg);
}

static const char *const known_keys[] = {
	"channel_names", "modality", "labels", "numTraining", "file_ending",
	"regions_class_order", "overwrite_image_reader_writer", "dataset", NULL
};

static int is_known_key(const char *k)
{
	for (int i = 0; known_keys[i]; i++)
		if (!strcmp(k, known_keys[i]))
			return 1;
	return 0;
}

/* Edit distance (case-insensitive), capped: small strings only. */
static int edit_distance(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b);
	int row[65], prev;
	if (n > 64 || m > 64)
		return 99;
	for (size_t j = 0; j <= m; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= n; i++) {
		prev = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= m; j++) {
			int cur = row[j];
			int sub = prev + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
			int del = row[j] + 1, ins = row[j - 1] + 1;
			row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
			prev = cur;
		}
	}
	return row[m];
}

/* A present unknown key that looks like a misspelling of want. */
static const char *similar_key(const json_t *j, const char *want)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)j, k, v) {
		if (!is_known_key(k) && edit_distance(k, want) <= 2)
			return k;
	}
	return NULL;
}

static void missing_key(struct ds *d, struct flist *l, const char *key, const char *example)
{
	const char *sim = similar_key(d->j, key);
	char fix[256];
	sfmt(fix, sizeof fix, "add \"%s\": %s", key, example);
	if (sim)
		jfind(d, l, NNP_SEV_ERROR, "required-key", fix, key,
		      "missing required key ('%s' is present: %s)", sim,
		      strcasecmp(sim, key) ? "misspelt?" : "key names are case-sensitive");
	else
		jfind(d, l, NNP_SEV_ERROR, "required-key", fix, key, "missing required key");
}

/* 1: fatal (nothing else can be checked). */
static int load_json(struct ds *d, struct flist *l)
{
	struct stat st;
	json_error_t e;
	json_t *strict;

	if (stat(d->jpath, &st) != 0 || !S_ISREG(st.st_mode)) {
		const char *why = "not a regular file";
		char buf[128];
		if (access(d->jpath, F_OK))
			why = errno == ENOENT ? "missing: every nnU-Net dataset needs a dataset.json"
					      : sfmt(buf, sizeof buf, "cannot open: %s", strerror(errno));
		finding(l, NNP_SEV_ERROR, "dataset-json", d->jpath, NULL,
			"create dataset.json with channel_names, labels, numTraining and file_ending "
			"(nnU-Net's documentation/dataset_format.md)", "%s", why);
		return 1;
	}
	if ((long long)st.st_size > NNP_DATASET_JSON_MAX) {
		finding(l, NNP_SEV_ERROR, "dataset-json", d->jpath, NULL, "shrink it: dataset.json "
			"holds metadata, not data", "too large (%lld bytes, at most %lld)",
			(long long)st.st_size, NNP_DATASET_JSON_MAX);
		return 1;
	}
	if (!(d->j = json_load_file(d->jpath, 0, &e))) {
		finding(l, NNP_SEV_ERROR, "dataset-json", d->jpath, NULL,
			"fix the JSON syntax ('python3 -m json.tool dataset.json' shows the spot)",
			"invalid JSON at line %d, column %d: %s", e.line, e.column, e.text);
		return 1;
	}
	if (!json_is_object(d->j)) {
		finding(l, NNP_SEV_ERROR, "dataset-json", d->jpath, NULL,
			"make the top level a JSON object {\"channel_names\": ..., \"labels\": ..., ...}",
			"top level: must be a JSON object");
		return 1;
	}
	if (!(strict = json_load_file(d->jpath, JSON_REJECT_DUPLICATES, &e)))
		finding(l, NNP_SEV_WARNING, "json-duplicate-key", d->jpath, NULL,
			"remove the duplicate: Python's json (nnU-Net) silently keeps the last value",
			"%s at line %d, column %d", e.text, e.line, e.column);
	json_decref(strict);
	return 0;
}

static int is_index_key(const char *k, long n)
{
	char *end;
	long v;
	if (!isdigit((unsigned char)k[0]) || (k[0] == '0' && k[1]))
		return 0;
	errno = 0;
	v = strtol(k, &end, 10);
	return !*end && !errno && v >= 0 && v < n;
}

static void check_channels(struct ds *d, struct flist *l)
{
	const char *key = "channel_names", *k;
	json_t *o = json_object_get(d->j, key), *v;
	char jp[300];
	long n;

	if (!o && (o = json_object_get(d->j, "modality"))) {
		key = "modality";
		jfind(d, l, NNP_SEV_WARNING, "legacy-modality", "rename it to \"channel_names\"", key,
		      "legacy key of nnU-Net v1 (v2 still accepts it)");
	}
	if (!o) {
		missing_key(d, l, "channel_names", "{\"0\": \"CT\"}");
		return;
	}
	if (!json_is_object(o) || !json_object_size(o)) {
		jfind(d, l, NNP_SEV_ERROR, "channel-names", "write one entry per input channel, e.g. "
		      "{\"0\": \"T1\", \"1\": \"T2\"}", key, "must be a non-empty dict like {\"0\": \"CT\"}");
		return;
	}
	d->nch = n = (long)json_object_size(o);
	json_object_foreach(o, k, v) {
		snprintf(jp, sizeof jp, "%s.%s", key, k);
		if (!is_index_key(k, n))
			jfind(d, l, NNP_SEV_ERROR, "channel-names", "number the channels \"0\", \"1\", ... "
			      "in the order of the _0000, _0001 files", jp,
			      "keys must be channel indices \"0\"..\"%ld\"", n - 1);
		else if (!json_is_string(v))
			jfind(d, l, NNP_SEV_ERROR, "channel-names", "give the channel's name as a string, "
			      "e.g. \"CT\" or \"T2\" (it selects the normalisation)", jp,
			      "must be a string");
	}
}

/* A label value: 1 ok (in *out), 0 bad (finding made). */
static int label_value(struct ds *d, struct flist *l, const char *jp, const json_t *v, int64_t *out)
{
	char t[64], fix[128];
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = json_integer_value(v);
		return 1;
	}
	if (json_is_integer(v)) {
		jfind(d, l, NNP_SEV_ERROR, "label-value", "use values 0, 1, 2, ...", jp,
		      "%lld: label values must be >= 0", (long long)json_integer_value(v));
		return 0;
	}
	if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) < 1e9 &&
	    json_real_value(v) == floor(json_real_value(v))) {
		*out = (int64_t)json_real_value(v);
		jfind(d, l, NNP_SEV_WARNING, "label-value", sfmt(fix, sizeof fix, "write %lld",
		      (long long)*out), jp, "%g is a float: label values are integers", json_real_value(v));
		return 1;
	}
	json_text(v, t, sizeof t);
	jfind(d, l, NNP_SEV_ERROR, "label-value", "use an integer, or a list of integers for a region",
	      jp, "must be an integer or a list of integers, not %s", t);
	return 0;
}

static int looks_v1(const json_t *o)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v) {
		for (const char *s = k; *s; s++)
			if (!isdigit((unsigned char)*s))
				return 0;
		if (!json_is_string(v))
			return 0;
	}
	return 1;
}

struct labinfo {
	struct ivec all;      /* values of every entry but "ignore" */
	int ok, has_regions, has_ignore;
	int64_t ignore;
	size_t nregions;
};

static void check_background(struct ds *d, struct flist *l, const json_t *o, struct labinfo *li)
{
	json_t *bg = json_object_get(o, "background");
	char t[64];
	if (!bg) {
		jfind(d, l, NNP_SEV_ERROR, "background", "add \"background\": 0 (nnU-Net requires it)",
		      "labels.background", "missing");
		li->ok = 0;
	} else if (!(json_is_integer(bg) && json_integer_value(bg) == 0)) {
		json_text(bg, t, sizeof t);
		jfind(d, l, NNP_SEV_ERROR, "background", "set \"background\": 0 and renumber the label "
		      "maps so that background voxels are 0", "labels.background", "must be 0, not %s", t);
		li->ok = 0;
	}
}

static void check_ignore(struct ds *d, struct flist *l, const json_t *v, struct labinfo *li)
{
	char t[64];
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		li->has_ignore = 1;
		li->ignore = json_integer_value(v);
		return;
	}
	json_text(v, t, sizeof t);
	jfind(d, l, NNP_SEV_ERROR, "ignore-label", "make \"ignore\" one integer, max(labels) + 1",
	      "labels.ignore", "must be a non-negative integer, not %s", t);
	li->ok = 0;
}

/* One entry of "labels" (not "ignore"): values into li->all. */
static int label_entry(struct ds *d, struct flist *l, const char *k, const json_t *v, struct labinfo *li)
{
	char jp[300];
	int64_t x;
	int bg = 1, rc;
	snprintf(jp, sizeof jp, "labels.%s", k);
	if (!json_is_array(v)) {
		if (!label_value(d, l, jp, v, &x)) {
			li->ok = 0;
			return NNP_OK;
		}
		li->nregions += x != 0;
		return ivec_push(&li->all, x);
	}
	if (!json_array_size(v)) {
		jfind(d, l, NNP_SEV_ERROR, "label-value", "give the region's label values, e.g. [1, 2]",
		      jp, "empty list");
		li->ok = 0;
		return NNP_OK;
	}
	li->has_regions |= json_array_size(v) > 1;
	for (size_t i = 0; i < json_array_size(v); i++) {
		snprintf(jp, sizeof jp, "labels.%s[%zu]", k, i);
		if (!label_value(d, l, jp, json_array_get(v, i), &x)) {
			li->ok = 0;
			continue;
		}
		bg &= x == 0;
		if ((rc = ivec_push(&li->all, x)))
			return rc;
	}
	li->nregions += !bg;
	return NNP_OK;
}

/* Warn about two plain labels sharing a value (not a region dataset). */
static void check_duplicates(struct ds *d, struct flist *l, const json_t *o)
{
	const char *k, *k2;
	json_t *v, *v2;
	size_t i = 0;
	json_object_foreach((json_t *)o, k, v) {
		size_t j = 0;
		if (i++ >= 4096)
			break;
		if (!strcmp(k, "ignore") || !json_is_integer(v))
			continue;
		json_object_foreach((json_t *)o, k2, v2) {
			if (j++ >= i - 1)
				break;
			if (strcmp(k2, "ignore") && json_is_integer(v2) &&
			    json_integer_value(v2) == json_integer_value(v)) {
				jfind(d, l, NNP_SEV_WARNING, "duplicate-label-value", "give every label "
				      "its own value (or use a list for a region)", "labels",
				      "'%s' and '%s' have the same value %lld", k2, k,
				      (long long)json_integer_value(v));
				break;
			}
		}
	}
}

static void check_consecutive(struct ds *d, struct flist *l, struct labinfo *li)
{
	struct ivec *s = &d->declared;
	struct ivec bad = { 0 };
	char t[256], u[256], fix[128];
	if (li->has_ignore) {
		int64_t want = li->all.n ? li->all.v[li->all.n - 1] + 1 : 1;
		if (li->ignore != want)
			jfind(d, l, NNP_SEV_ERROR, "ignore-label", sfmt(fix, sizeof fix,
			      "set \"ignore\": %lld", (long long)want), "labels.ignore",
			      "is %lld but must be max(labels) + 1 = %lld", (long long)li->ignore,
			      (long long)want);
	}
	for (size_t i = 1; i < s->n; i++)
		if (s->v[i] != s->v[i - 1] + 1 && ivec_push(&bad, s->v[i]))
			break;
	if (bad.n || (s->n && s->v[0] != 0)) {
		ivec_text(bad.v, bad.n, t, sizeof t);
		ivec_text(s->v, s->n, u, sizeof u);
		jfind(d, l, NNP_SEV_ERROR, "consecutive-labels", "renumber the labels 0, 1, 2, ... in "
		      "dataset.json and in the label maps", "labels",
		      "values must be consecutive (0, 1, 2, ...): %s do not satisfy this (declared %s)",
		      t, u);
	}
	free(bad.v);
}

static void check_regions(struct ds *d, struct flist *l, const struct labinfo *li)
{
	json_t *r = json_object_get(d->j, "regions_class_order");
	char fix[160];
	if (!li->has_regions) {
		if (r)
			jfind(d, l, NNP_SEV_WARNING, "regions", "remove it, or define the regions as lists "
			      "of label values", "regions_class_order",
			      "is ignored: no label is a region (a list of several values)");
		return;
	}
	sfmt(fix, sizeof fix, "give one label value per region, in the order of \"labels\" "
	     "(%zu entries, e.g. [1, 2, ...])", li->nregions);
	if (!r) {
		jfind(d, l, NNP_SEV_ERROR, "regions", fix, "regions_class_order",
		      "missing: labels define %zu regions (lists of values)", li->nregions);
		return;
	}
	if (!json_is_array(r)) {
		jfind(d, l, NNP_SEV_ERROR, "regions", fix, "regions_class_order", "must be a list of integers");
		return;
	}
	for (size_t i = 0; i < json_array_size(r); i++)
		if (!json_is_integer(json_array_get(r, i))) {
			jfind(d, l, NNP_SEV_ERROR, "regions", fix, "regions_class_order",
			      "[%zu]: must be an integer", i);
			return;
		}
	if (json_array_size(r) != li->nregions)
		jfind(d, l, NNP_SEV_ERROR, "regions", fix, "regions_class_order",
		      "has %zu entries but labels define %zu regions", json_array_size(r), li->nregions);
}

static int check_labels(struct ds *d, struct flist *l)
{
	json_t *o = json_object_get(d->j, "labels"), *v;
	struct labinfo li = { .ok = 1 };
	const char *k;
	int rc = NNP_OK;

	if (!o) {
		missing_key(d, l, "labels", "{\"background\": 0, \"NAME\": 1}");
		return NNP_OK;
	}
	if (!json_is_object(o) || !json_object_size(o)) {
		jfind(d, l, NNP_SEV_ERROR, "labels", "write {\"background\": 0, \"NAME\": 1, ...}",
		      "labels", "must be a non-empty dict {name: value}");
		return NNP_OK;
	}
	if (looks_v1(o)) {
		jfind(d, l, NNP_SEV_ERROR, "labels", "write {\"background\": 0, \"NAME\": 1, ...} "
		      "(nnUNetv2_convert_old_nnUNet_dataset converts whole v1 datasets)", "labels",
		      "looks like nnU-Net v1's {\"0\": \"background\"}: v2 maps names to values");
		return NNP_OK;
	}
	check_background(d, l, o, &li);
	json_object_foreach(o, k, v) {
		if (!strcmp(k, "ignore"))
			check_ignore(d, l, v, &li);
		else if ((rc = label_entry(d, l, k, v, &li)))
			break;
	}
	if (!rc && !li.has_regions)
		check_duplicates(d, l, o);
	ivec_sort_unique(&li.all);
	for (size_t i = 0; !rc && i < li.all.n; i++)
		rc = ivec_push(&d->declared, li.all.v[i]);
	if (!rc && li.has_ignore)
		rc = ivec_push(&d->declared, li.ignore);
	if (!rc) {
		ivec_sort_unique(&d->declared);
		if (li.ok)
			check_consecutive(d, l, &li);
		check_regions(d, l, &li);
		d->labels_known = li.ok;
		d->has_ignore = li.has_ignore;
		d->ignore = li.ignore;
	}
	free(li.all.v);
	return rc;
}

static void check_num_training(struct ds *d, struct flist *l)
{
	json_t *v = json_object_get(d->j, "numTraining");
	char t[64], fix[64];
	if (!v) {
		missing_key(d, l, "numTraining", "<number of training cases>");
	} else if (json_is_integer(v) && json_integer_value(v) >= 0) {
		d->num_training = (long)json_integer_value(v);
	} else if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) < 1e9 &&
		   json_real_value(v) == floor(json_real_value(v))) {
		d->num_training = (long)json_real_value(v);
		jfind(d, l, NNP_SEV_WARNING, "num-training", sfmt(fix, sizeof fix, "write %ld",
		      d->num_training), "numTraining", "%g is a float: it counts cases", json_real_value(v));
	} else {
		json_text(v, t, sizeof t);
		jfind(d, l, NNP_SEV_ERROR, "num-training", "set it to the number of training cases",
		      "numTraining", "must be a non-negative integer, not %s", t);
	}
}

static void check_file_ending(struct ds *d, struct flist *l)
{
	json_t *v = json_object_get(d->j, "file_ending");
	const char *s;
	char t[80];
	if (!v) {
		missing_key(d, l, "file_ending", "\".nii.gz\"");
		return;
	}
	if (!json_is_string(v) || !*(s = json_string_value(v))) {
		json_text(v, t, sizeof t);
		jfind(d, l, NNP_SEV_ERROR, "file-ending", "set \"file_ending\": \".nii.gz\" (the ending "
		      "of every image and label file)", "file_ending", "must be a non-empty string, not %s", t);
		return;
	}
	if (s[0] != '.' || strchr(s, '/') || strlen(s) > 64) {
		jfind(d, l, NNP_SEV_ERROR, "file-ending", "set \"file_ending\": \".nii.gz\" (with the dot)",
		      "file_ending", "'%.64s' is not a file name ending like \".nii.gz\"", s);
		return;
	}
	d->ending = s;
	d->readable = !strcmp(s, ".nii.gz") || !strcmp(s, ".nii");
	if (!d->readable)
		jfind(d, l, NNP_SEV_ERROR, "file-ending", "convert the images and labels to NIfTI "
		      "(.nii.gz)", "file_ending", "'%s': nnpipe reads NIfTI only (.nii, .nii.gz), so the "
		      "contents of the files are not checked", s);
}

static void check_reader(struct ds *d, struct flist *l)
{
	static const char *const names[] = { "SimpleITKIO", "NibabelIO", "NibabelIOWithReorient",
		"NaturalImage2DIO", "Tiff3DIO", "SimpleITKIOWithReorient", "None", NULL };
	json_t *v = json_object_get(d->j, "overwrite_image_reader_writer");
	char t[80];
	if (!v)
		return;
	for (int i = 0; json_is_string(v) && names[i]; i++)
		if (!strcmp(json_string_value(v), names[i]))
			return;
	json_text(v, t, sizeof t);
	jfind(d, l, NNP_SEV_ERROR, "reader-writer", "use SimpleITKIO, NibabelIO, "
	      "NibabelIOWithReorient, NaturalImage2DIO, Tiff3DIO or SimpleITKIOWithReorient, or remove "
	      "the key", "overwrite_image_reader_writer", "unknown reader/writer %s", t);
}

/* The "dataset" dict: structure only (files are checked with the cases). */
static void check_dict(struct ds *d, struct flist *l)
{
	json_t *o = json_object_get(d->j, "dataset"), *c, *im, *lb;
	const char *k;
	char jp[320];
	const char *fix = "write {CASE: {\"images\": [\"imagesTr/CASE_0000.nii.gz\", ...], "
			  "\"label\": \"labelsTr/CASE.nii.gz\"}}";
	if (!o)
		return;
	d->dict = o;
	if (!json_is_object(o)) {
		jfind(d, l, NNP_SEV_ERROR, "dataset-dict", fix, "dataset", "must be a dict {case: {...}}");
		d->dict_bad = 1;
		return;
	}
	json_object_foreach(o, k, c) {
		snprintf(jp, sizeof jp, "dataset.%.256s", k);
		if (!*k || strchr(k, '/')) {
			jfind(d, l, NNP_SEV_ERROR, "dataset-dict", "use a plain case id", jp,
			      "'%s' is not a valid case id", k);
			continue;
		}
		if (!json_is_object(c)) {
			jfind(d, l, NNP_SEV_ERROR, "dataset-dict", fix, jp, "must be a dict "
			      "{\"images\": [...], \"label\": ...}");
			continue;
		}
		im = json_object_get(c, "images");
		lb = json_object_get(c, "label");
		if (!json_is_array(im) || !json_array_size(im))
			jfind(d, l, NNP_SEV_ERROR, "dataset-dict", fix, jp,
			      "images: must be a non-empty list of paths");
		for (size_t i = 0; json_is_array(im) && i < json_array_size(im); i++)
			if (!json_is_string(json_array_get(im, i)) ||
			    !*json_string_value(json_array_get(im, i)))
				jfind(d, l, NNP_SEV_ERROR, "dataset-dict", fix, jp,
				      "images[%zu]: must be a non-empty string (a path)", i);
		if (lb && !json_is_null(lb) && (!json_is_string(lb) || !*json_string_value(lb)))
			jfind(d, l, NNP_SEV_ERROR, "dataset-dict", fix, jp,
			      "label: must be a non-empty string (a path)");
	}
}

/* Returns <0 on failure to run, 0 ok; *fatal when nothing else can be done. */
static int check_json(struct ds *d, struct flist *l, int *fatal)
{
	int rc;
	*fatal = load_json(d, l);
	if (*fatal)
		return NNP_OK;
	check_channels(d, l);
	if ((rc = check_labels(d, l)))
		return rc;
	check_num_training(d, l);
	check_file_ending(d, l);
	check_reader(d, l);
	check_dict(d, l);
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* the cases and their files                                           */

struct vcase {
	char *id;
	char **images;        /* existing channel files, channel order */
	int *chnum;           /* their 4-digit channel numbers (folder mode), else NULL */
	size_t nimages;
	char *label;          /* existing label file, NULL if none */
	struct flist f;       /* this case's findings */
};

struct cases {
	struct vcase *v;
	size_t n, cap;
	size_t misnamed;      /* image files ignored for bad names */
	size_t nlabels;       /* label files with the dataset's ending */
};

static void vcase_release(struct vcase *c)
{
	free(c->id);
	for (size_t i = 0; i < c->nimages; i++)
		free(c->images[i]);
	free(c->images);
	free(c->chnum);
	free(c->label);
	flist_free(&c->f);
}

static void cases_free(struct cases *cs)
{
	for (size_t i = 0; i < cs->n; i++)
		vcase_release(&cs->v[i]);
	free(cs->v);
	memset(cs, 0, sizeof *cs);
}

static struct vcase *cases_add(struct cases *cs, const char *id, size_t idlen)
{
	struct vcase *c;
	if (cs->n == cs->cap) {
		size_t nc = cs->cap ? 2 * cs->cap : 64;
		struct vcase *nv;
		if (cs->n >= NNP_CASES_MAX || !(nv = realloc(cs->v, nc * sizeof *nv)))
			return NULL;
		cs->v = nv;
		cs->cap = nc;
	}
	c = &cs->v[cs->n];
	memset(c, 0, sizeof *c);
	if (!(c->id = strndup(id, idlen)))
		return NULL;
	cs->n++;
	return c;
}

static int vcase_add_image(struct vcase *c, char *path, int num)
{
	char **ni = realloc(c->images, (c->nimages + 1) * sizeof *ni);
	int *nn;
	if (!ni)
		return oom();
	c->images = ni;
	if (num >= 0) {
		if (!(nn = realloc(c->chnum, (c->nimages + 1) * sizeof *nn)))
			return oom();
		c->chnum = nn;
		nn[c->nimages] = num;
	}
	c->images[c->nimages++] = path;
	return NNP_OK;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Regular files of dir (hidden ones too), sorted (byte order). */
static int list_names(const char *dir, char ***out, size_t *nout)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	char **v = NULL, *p;
	size_t n = 0, cap = 0;
	int rc = NNP_OK;

	*out = NULL;
	*nout = 0;
	if (!dp)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", dir, strerror(errno));
	while ((e = readdir(dp))) {
		int reg = e->d_type == DT_REG;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
			if (!(p = pjoin(dir, e->d_name))) {
				rc = oom();
				break;
			}
			reg = nnp_is_file(p);
			free(p);
		}
		if (!reg)
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 256;
			char **nv;
			if (n >= NNP_DATASET_FILES_MAX) {
				rc = nnp_err(NNP_EDATA, "'%s': too many files (at most %d)", dir,
					     NNP_DATASET_FILES_MAX);
				break;
			}
			if (!(nv = realloc(v, nc * sizeof *nv))) {
				rc = oom();
				break;
			}
			v = nv;
			cap = nc;
		}
		if (!(v[n] = strdup(e->d_name))) {
			rc = oom();
			break;
		}
		n++;
	}
	closedir(dp);
	if (rc) {
		free_names(v, n);
		return rc;
	}
	if (n > 1)
		qsort(v, n, sizeof *v, cmp_str);
	*out = v;
	*nout = n;
	return NNP_OK;
}

/* The ending of a file that is an image of some format (so a wrong
 * ending is a mistake, not a stray README), NULL for other files. */
static const char *image_ending(const char *name)
{
	static const char *const ends[] = { ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd",
		".png", ".bmp", ".tiff", ".tif", ".gipl", ".img.gz", ".hdr.gz", ".img", ".hdr", ".npy",
		".npz", ".dcm", ".jpeg", ".jpg", ".gz", NULL };
	for (int i = 0; ends[i]; i++)
		if (ends_with_ci(name, ends[i]))
			return ends[i];
	return NULL;
}

/* name ends with the dataset's file_ending (and is more than it). */
static int has_ending(const struct ds *d, const char *name)
{
	return ends_with(name, d->ending) && strlen(name) > strlen(d->ending);
}

/* Folder listing for the checks: an unreadable folder is a finding (*ok
 * = 0); hidden files are dropped from the list, but those that end with
 * file_ending are errors: nnU-Net lists them (macOS "._CASE" files). */
static int dataset_names(const struct ds *d, struct flist *l, const char *dir, char ***names, size_t *n,
			 int *ok)
{
	size_t k = 0;
	char *p;
	int rc = list_names(dir, names, n);
	*ok = rc != NNP_EDATA;
	if (rc == NNP_EDATA) {
		char buf[1024];
		finding(l, NNP_SEV_ERROR, "unreadable", dir, NULL, "make the folder readable (check "
			"its permissions)", "cannot list the folder: %s", err_text(dir, buf, sizeof buf));
		return NNP_OK;
	}
	if (rc)
		return rc;
	for (size_t i = 0; i < *n; i++) {
		char *nm = (*names)[i];
		if (nm[0] != '.') {
			(*names)[k++] = nm;
			continue;
		}
		if (has_ending(d, nm)) {
			if (!(p = pjoin(dir, nm)))
				l->oom = 1;
			else
				finding(l, NNP_SEV_ERROR, "hidden-file", p, NULL, "delete it (macOS writes "
					"such ._ files on foreign disks; dot_clean removes them)",
					"hidden file ending with file_ending '%s': nnU-Net takes it for a "
					"case", d->ending);
			free(p);
		}
		free(nm);
	}
	*n = k;
	return NNP_OK;
}

/* Number of trailing digits after a '_' at the end of stem[0..n), 0 if none. */
static size_t channel_digits(const char *stem, size_t n)
{
	size_t k = 0;
	while (k < n && isdigit((unsigned char)stem[n - 1 - k]))
		k++;
	return k && k < n && stem[n - 1 - k] == '_' ? k : 0;
}

/* Files without the dataset's file_ending in imagesTr or labelsTr: image
 * files are errors (one for the folder when none has the ending: then
 * file_ending is the likely mistake), others are stray-file warnings.
 * nmatch: files with the ending.  Returns 1 when the folder error was made. */
static int foreign_files(const struct ds *d, struct flist *l, const char *dir, char **names, size_t n,
			 size_t nmatch)
{
	size_t nimg = 0;
	const char *first = NULL;
	char fix[300], *path;
	for (size_t i = 0; i < n; i++) {
		if (has_ending(d, names[i]) || !image_ending(names[i]))
			continue;
		if (!nimg++)
			first = names[i];
	}
	if (!nmatch && nimg > 1)
		finding(l, NNP_SEV_ERROR, "file-ending", dir, NULL,
			sfmt(fix, sizeof fix, "set \"file_ending\": \"%s\" in dataset.json, or convert the "
			     "files to %s", image_ending(first), d->ending),
			"no file ends with file_ending '%s' of dataset.json: the %zu image files end with "
			"e.g. '%s' ('%s'); nnU-Net finds none of them", d->ending, nimg, image_ending(first),
			first);
	for (size_t i = 0; i < n; i++) {
		int img;
		if (has_ending(d, names[i]))
			continue;
		img = image_ending(names[i]) != NULL;
		if (img && !nmatch && nimg > 1)
			continue;
		if (!(path = pjoin(dir, names[i]))) {
			l->oom = 1;
			return 0;
		}
		if (img)
			finding(l, NNP_SEV_ERROR, "file-ending", path, NULL,
				sfmt(fix, sizeof fix, "convert or rename it to %s, or fix file_ending in "
				     "dataset.json", d->ending),
				"does not end with file_ending '%s' of dataset.json: nnU-Net ignores it",
				d->ending);
		else
			finding(l, NNP_SEV_WARNING, "stray-file", path, NULL, "move it out of the "
				"dataset's image and label folders", "not a dataset file (nnU-Net ignores it)");
		free(path);
	}
	return !nmatch && nimg > 1;
}

struct chent {
	const char *name;
	size_t idlen;
	int num;
};

static int cmp_chent(const void *a, const void *b)
{
	const struct chent *x = a, *y = b;
	size_t n = x->idlen < y->idlen ? x->idlen : y->idlen;
	int c = memcmp(x->name, y->name, n);
	if (c)
		return c;
	if (x->idlen != y->idlen)
		return x->idlen < y->idlen ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Group the channel files of imagesTr into cases (sorted by id). */
static int group_images(struct cases *cs, const char *dir, struct chent *ce, size_t n)
{
	size_t i = 0;
	if (n > 1)
		qsort(ce, n, sizeof *ce, cmp_chent);
	while (i < n) {
		struct vcase *c = cases_add(cs, ce[i].name, ce[i].idlen);
		size_t j = i;
		if (!c)
			return oom();
		for (; j < n && ce[j].idlen == ce[i].idlen && !memcmp(ce[j].name, ce[i].name, ce[i].idlen); j++) {
			char *p = pjoin(dir, ce[j].name);
			int rc;
			if (!p)
				return oom();
			if ((rc = vcase_add_image(c, p, ce[j].num))) {
				free(p);
				return rc;
			}
		}
		i = j;
	}
	return NNP_OK;
}

static struct vcase *find_case(struct cases *cs, const char *id, size_t idlen)
{
	size_t lo = 0, hi = cs->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *m = cs->v[mid].id;
		size_t ml = strlen(m), k = ml < idlen ? ml : idlen;
		int c = memcmp(m, id, k);
		if (!c)
			c = ml == idlen ? 0 : ml < idlen ? -1 : 1;
		if (!c)
			return &cs->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The first channel number a case does not use (0 for no case). */
static int free_channel(const struct vcase *c)
{
	int k = 0;
	for (size_t i = 0; c && i < c->nimages; i++)
		if (c->chnum[i] == k)
			k++;
	return k;
}

/* A file in imagesTr that ends with file_ending but has no 4-digit channel suffix:
 * either the suffix has the wrong number of digits ("case_001_001") or
 * there is none ("case_001", a case id or the name of a label file). */
static void misnamed_image(const struct ds *d, struct cases *cs, struct flist *l, const char *dir,
			   const char *name)
{
	size_t n = strlen(name) - strlen(d->ending), k = channel_digits(name, n);
	struct vcase *base = k ? find_case(cs, name, n - k - 1) : NULL, *self = find_case(cs, name, n);
	char fix[600], *path = pjoin(dir, name), *lab;
	int labelled = 0;
	if (!path || asprintf(&lab, "%s/labelsTr/%s", d->dir, name) < 0) {
		free(path);
		l->oom = 1;
		return;
	}
	labelled = nnp_is_file(lab);
	free(lab);
	if (k && k != 4 && (base || (!self && !labelled))) {
		long num = k < 9 ? strtol(name + n - k, NULL, 10) : 99999;
		if (num < 10000)
			sfmt(fix, sizeof fix, "rename it to '%.*s_%04ld%s'", (int)(n - k - 1), name, num,
			     d->ending);
		else
			sfmt(fix, sizeof fix, "rename it to CASE_XXXX%s with 4 digits", d->ending);
		finding(l, NNP_SEV_ERROR, "file-name", path, NULL, fix, "channel suffix '_%.*s' must "
			"have 4 digits (CASE_XXXX%s); nnU-Net does not find this file", (int)k,
			name + n - k, d->ending);
	} else {
		sfmt(fix, sizeof fix, "rename it to '%.*s_%04d%s' (label maps belong in labelsTr)",
		     (int)n, name, free_channel(self), d->ending);
		finding(l, NNP_SEV_ERROR, "file-name", path, NULL, fix, "no _XXXX channel suffix: image "
			"files are named CASE_XXXX%s; nnU-Net does not find this file", d->ending);
	}
	free(path);
}

/* A channel file name CASE_XXXX<ending>: the id length and the number. */
static int channel_name(const struct ds *d, const char *name, size_t *idlen, int *num)
{
	size_t stem = strlen(name) - strlen(d->ending);
	if (!has_ending(d, name) || stem <= 5 || channel_digits(name, stem) != 4)
		return 0;
	*idlen = stem - 5;
	*num = (int)strtol(name + stem - 4, NULL, 10);
	return 1;
}

static int scan_images(const struct ds *d, struct cases *cs, struct flist *top, const char *dir,
		       int *folder_error)
{
	char **names;
	size_t n, nce = 0;
	struct chent *ce;
	int ok, rc = dataset_names(d, top, dir, &names, &n, &ok);
	*folder_error = !ok;
	if (rc || !ok)
		return rc;
	if (!(ce = calloc(n ? n : 1, sizeof *ce))) {
		free_names(names, n);
		return oom();
	}
	for (size_t i = 0; i < n; i++) {
		if (channel_name(d, names[i], &ce[nce].idlen, &ce[nce].num))
			ce[nce++].name = names[i];
		else if (has_ending(d, names[i]))
			cs->misnamed++;
	}
	*folder_error = foreign_files(d, top, dir, names, n, nce + cs->misnamed);
	rc = group_images(cs, dir, ce, nce);
	for (size_t i = 0; !rc && cs->misnamed && i < n; i++) {
		size_t idlen;
		int num;
		if (has_ending(d, names[i]) && !channel_name(d, names[i], &idlen, &num))
			misnamed_image(d, cs, top, dir, names[i]);
	}
	free(ce);
	free_names(names, n);
	return rc;
}

static void orphan_label(const struct ds *d, struct cases *cs, struct flist *l, const char *dir,
			 const char *name, size_t stem)
{
	char fix[600], *path = pjoin(dir, name);
	struct vcase *c = NULL;
	if (!path) {
		l->oom = 1;
		return;
	}
	if (stem > 5 && channel_digits(name, stem) == 4)
		c = find_case(cs, name, stem - 5);
	if (c && !c->label)
		sfmt(fix, sizeof fix, "rename it to '%s%s': label files have no channel suffix", c->id,
		     d->ending);
	else
		sfmt(fix, sizeof fix, "add its images (imagesTr/%.*s_0000%s, ...) or remove it",
		     (int)stem, name, d->ending);
	finding(l, NNP_SEV_ERROR, "orphan-label", path, NULL, fix,
		"label file without images: imagesTr has no case '%.*s'", (int)stem, name);
	free(path);
}

/* Label files: assigned to their cases; orphans, foreign files reported.
 * *ok = 0 when the folder cannot be listed. */
static int scan_labels(const struct ds *d, struct cases *cs, struct flist *top, const char *dir, int *ok)
{
	char **names;
	size_t n, fel = strlen(d->ending);
	int rc = dataset_names(d, top, dir, &names, &n, ok);
	if (rc || !*ok)
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		struct vcase *c;
		if (!has_ending(d, names[i]))
			continue;
		cs->nlabels++;
		if ((c = find_case(cs, names[i], strlen(names[i]) - fel)) && !(c->label = pjoin(dir, names[i])))
			rc = oom();
	}
	if (!rc)
		foreign_files(d, top, dir, names, n, cs->nlabels);
	/* orphans after all labels are assigned (their fix names a case
	 * that still lacks a label) */
	for (size_t i = 0; i < n && !rc; i++) {
		size_t len = strlen(names[i]);
		if (has_ending(d, names[i]) && !find_case(cs, names[i], len - fel))
			orphan_label(d, cs, top, dir, names[i], len - fel);
	}
	free_names(names, n);
	return rc;
}

static void missing_labels(const struct ds *d, struct cases *cs, const char *dir)
{
	char fix[600];
	for (size_t i = 0; i < cs->n; i++) {
		struct vcase *c = &cs->v[i];
		char *p;
		if (c->label)
			continue;
		if (asprintf(&p, "%s/%s%s", dir, c->id, d->ending) < 0) {
			c->f.oom = 1;
			continue;
		}
		finding(&c->f, NNP_SEV_ERROR, "missing-label", p, c->id,
			sfmt(fix, sizeof fix, "add labelsTr/%s%s, or move the case's images to imagesTs "
			     "if it has no label", c->id, d->ending),
			"missing label file: every training case needs one");
		free(p);
	}
}

/* ---- channel files per case (folder mode) ---- */

static int same_numbers(const struct vcase *a, const struct vcase *b)
{
	return a->nimages == b->nimages && !memcmp(a->chnum, b->chnum, a->nimages * sizeof *a->chnum);
}

static int cmp_numbers(const struct vcase *a, const struct vcase *b)
{
	size_t n = a->nimages < b->nimages ? a->nimages : b->nimages;
	for (size_t i = 0; i < n; i++)
		if (a->chnum[i] != b->chnum[i])
			return a->chnum[i] < b->chnum[i] ? -1 : 1;
	return (a->nimages > b->nimages) - (a->nimages < b->nimages);
}

static int cmp_case_numbers(const void *a, const void *b, void *arg)
{
	const struct vcase *v = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = cmp_numbers(&v[x], &v[y]);
	return c ? c : (x > y) - (x < y);
}

/* The most common channel numbering among cases with the declared count
 * (all cases when it is unknown); ties go to the earliest case.  Returns
 * the index of a case with it, or -1 if none qualifies. */
static long reference_numbering(const struct ds *d, const struct cases *cs)
{
	size_t *ix = malloc((cs->n ? cs->n : 1) * sizeof *ix), m = 0, best = 0, best_at = 0;
	long ref = -1;
	if (!ix)
		return -2;
	for (size_t i = 0; i < cs->n; i++)
		if (d->nch < 0 || (long)cs->v[i].nimages == d->nch)
			ix[m++] = i;
	qsort_r(ix, m, sizeof *ix, cmp_case_numbers, cs->v);
	for (size_t i = 0; i < m;) {
		size_t j = i, first = ix[i];   /* sorted by (numbers, index) */
		while (j < m && same_numbers(&cs->v[ix[j]], &cs->v[ix[i]]))
			j++;
		if (j - i > best || (j - i == best && first < best_at)) {
			best = j - i;
			best_at = first;
		}
		i = j;
	}
	if (best)
		ref = (long)best_at;
	free(ix);
	return ref;
}

/* "CASE_0001.nii.gz, CASE_0002.nii.gz": the channels 0..nch-1 c lacks;
 * *first is the first of them. */
static void missing_channel_names(const struct ds *d, const struct vcase *c, long nch, char *buf,
				  size_t cap, int *first)
{
	size_t len = 0, shown = 0;
	buf[0] = '\0';
	*first = -1;
	for (long k = 0; k < nch; k++) {
		int have = 0;
		for (size_t i = 0; i < c->nimages && !have; i++)
			have = c->chnum[i] == k;
		if (have)
			continue;
		if (*first < 0)
			*first = (int)k;
		if (shown++ < LIST_SHOW)
			bappend(buf, cap, &len, "%s%s_%04ld%s", len ? ", " : "", c->id, k, d->ending);
	}
	if (shown > LIST_SHOW)
		bappend(buf, cap, &len, ", ... (%zu files)", shown);
}

/* "0000, 0001, 0003" */
static void numbers_text(const struct vcase *c, char *buf, size_t cap)
{
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < c->nimages && i < LIST_SHOW; i++)
		bappend(buf, cap, &len, "%s%04d", i ? ", " : "", c->chnum[i]);
	if (c->nimages > LIST_SHOW)
		bappend(buf, cap, &len, ", ...");
}

static void check_case_channels(const struct ds *d, struct vcase *c, const struct vcase *ref,
				const char *imgdir)
{
	char names[1024], fix[600], a[256], b[256], *p;
	int first;
	if (d->nch >= 0 && (long)c->nimages < d->nch) {
		missing_channel_names(d, c, d->nch, names, sizeof names, &first);
		if (asprintf(&p, "%s/%s_%04d%s", imgdir, c->id, first < 0 ? 0 : first, d->ending) < 0) {
			c->f.oom = 1;
			return;
		}
		finding(&c->f, NNP_SEV_ERROR, "missing-channel", p, c->id,
			sfmt(fix, sizeof fix, "add the missing file(s): every case needs one file per "
			     "channel, %s_0000%s .. %s_%04ld%s", c->id, d->ending, c->id, d->nch - 1,
			     d->ending),
			"missing channel file(s) %s: dataset.json declares %ld channels, the case has %zu",
			names, d->nch, c->nimages);
		free(p);
	} else if (d->nch >= 0 && (long)c->nimages > d->nch) {
		size_t k = 0;
		while (k < c->nimages && c->chnum[k] < d->nch)
			k++;
		if (k == c->nimages)
			k = c->nimages - 1;
		numbers_text(c, a, sizeof a);
		finding(&c->f, NNP_SEV_ERROR, "extra-channel", c->images[k], c->id,
			sfmt(fix, sizeof fix, "remove the extra files or add the channels to "
			     "channel_names in dataset.json"),
			"%zu channel files (%s) but dataset.json declares %ld channels", c->nimages, a,
			d->nch);
	} else if (ref && !same_numbers(c, ref)) {
		numbers_text(c, a, sizeof a);
		numbers_text(ref, b, sizeof b);
		finding(&c->f, NNP_SEV_ERROR, "channel-numbering", c->images[0], c->id,
			sfmt(fix, sizeof fix, "number the channel files of every case the same way "
			     "(%s_0000%s, %s_0001%s, ...)", c->id, d->ending, c->id, d->ending),
			"channel files are numbered %s, other cases (e.g. '%s') %s: nnU-Net takes channel "
			"i from the i-th file in sorted order, so channels would be mixed up",
			a, ref->id, b);
	}
}

static int check_channel_files(const struct ds *d, struct cases *cs, struct flist *top, const char *imgdir)
{
	long r = reference_numbering(d, cs);
	const struct vcase *ref;
	int standard = 1;
	char a[256];
	if (r == -2)
		return oom();
	ref = r >= 0 ? &cs->v[r] : NULL;
	for (size_t i = 0; i < cs->n; i++)
		check_case_channels(d, &cs->v[i], ref, imgdir);
	for (size_t k = 0; ref && k < ref->nimages; k++)
		standard &= ref->chnum[k] == (int)k;
	if (ref && !standard) {
		numbers_text(ref, a, sizeof a);
		finding(top, NNP_SEV_WARNING, "channel-numbering", imgdir, NULL,
			"rename the channel files to _0000, _0001, ... (other tools expect that)",
			"channel files are numbered %s instead of 0000.. (nnU-Net goes by sort order, "
			"so this works)", a);
	}
	return NNP_OK;
}

static void check_count(const struct ds *d, const struct cases *cs, struct flist *top)
{
	char fix[160], extra[96] = "";
	if (d->num_training < 0 || (size_t)d->num_training == cs->n)
		return;
	if (cs->misnamed)
		snprintf(extra, sizeof extra, " (and %zu misnamed image file%s)", cs->misnamed,
			 cs->misnamed == 1 ? "" : "s");
	if (cs->n)
		sfmt(fix, sizeof fix, "set \"numTraining\": %zu, or add the missing cases", cs->n);
	else
		sfmt(fix, sizeof fix, "add the training cases (or fix their names: see the other findings)");
	finding(top, NNP_SEV_ERROR, "num-training", d->jpath, NULL, fix,
		"numTraining: is %ld but %zu training case%s found in %s%s", d->num_training, cs->n,
		cs->n == 1 ? " was" : "s were", d->dict ? "the \"dataset\" dict" : "imagesTr", extra);
}

/* ---- folder mode ---- */

static int folder_cases(struct ds *d, struct cases *cs, struct flist *top)
{
	char *img = pjoin(d->dir, "imagesTr"), *lab = pjoin(d->dir, "labelsTr");
	char fix[200];
	int rc = NNP_OK, folder_error = 0, ok;
	if (!img || !lab) {
		rc = oom();
		goto out;
	}
	if (!nnp_is_dir(img)) {
		finding(top, NNP_SEV_ERROR, "images-folder", img, NULL,
			sfmt(fix, sizeof fix, "put the training images in imagesTr/ as CASE_XXXX%s (or "
			     "list them in a \"dataset\" dict in dataset.json)", d->ending),
			"missing: the training images folder");
		goto out;
	}
	if ((rc = scan_images(d, cs, top, img, &folder_error)) ||
	    (rc = check_channel_files(d, cs, top, img)))
		goto out;
	check_count(d, cs, top);
	if (!cs->n && !folder_error)
		finding(top, NNP_SEV_ERROR, "images-folder", img, NULL,
			sfmt(fix, sizeof fix, "add the training images as CASE_XXXX%s", d->ending),
			"no image files CASE_XXXX%s", d->ending);
	if (!nnp_is_dir(lab)) {
		finding(top, NNP_SEV_ERROR, "labels-folder", lab, NULL,
			sfmt(fix, sizeof fix, "put one label map per case in labelsTr/ as CASE%s", d->ending),
			"missing: the training labels folder");
		goto out;
	}
	if ((rc = scan_labels(d, cs, top, lab, &ok)) || !ok)
		goto out;
	missing_labels(d, cs, lab);
	if (cs->nlabels != cs->n)
		finding(top, NNP_SEV_ERROR, "count-mismatch", lab, NULL,
			"every case in imagesTr needs exactly one label file in labelsTr (see the "
			"missing-label and orphan-label findings)",
			"%zu label file%s for %zu case%s in imagesTr", cs->nlabels,
			cs->nlabels == 1 ? "" : "s", cs->n, cs->n == 1 ? "" : "s");
out:
	free(img);
	free(lab);
	return rc;
}

/* ---- dict mode: dataset.json "dataset" ---- */

static int dict_images(struct ds *d, struct vcase *c, const json_t *im, const char *key)
{
	char fix[200];
	for (size_t i = 0; i < json_array_size(im); i++) {
		char *p = nnp_dataset_path(d->dir, json_string_value(json_array_get(im, i)));
		int rc;
		if (!p)
			return NNP_ENOMEM;
		if (!nnp_is_file(p)) {
			finding(&c->f, NNP_SEV_ERROR, "missing-file", p, c->id,
				"fix the path in dataset.json (relative paths start at the dataset "
				"folder) or add the file",
				"missing image file (dataset.json: dataset.%s.images[%zu])", key, i);
			free(p);
			continue;
		}
		if ((rc = vcase_add_image(c, p, -1))) {
			free(p);
			return rc;
		}
	}
	if (d->nch >= 0 && (long)json_array_size(im) != d->nch)
		finding(&c->f, NNP_SEV_ERROR, (long)json_array_size(im) < d->nch ? "missing-channel" :
			"extra-channel", d->jpath, c->id,
			sfmt(fix, sizeof fix, "list exactly %ld image files, one per channel", d->nch),
			"dataset.%s.images lists %zu files but dataset.json declares %ld channels", key,
			json_array_size(im), d->nch);
	return NNP_OK;
}

static int dict_label(struct ds *d, struct vcase *c, const json_t *lb, const char *key)
{
	char *p;
	if (!json_is_string(lb)) {
		finding(&c->f, NNP_SEV_ERROR, "missing-label", d->jpath, c->id,
			"add \"label\": \"labelsTr/CASE.nii.gz\" to the case's entry",
			"dataset.%s: no label: every training case needs one", key);
		return NNP_OK;
	}
	if (!(p = nnp_dataset_path(d->dir, json_string_value(lb))))
		return NNP_ENOMEM;
	if (!nnp_is_file(p)) {
		finding(&c->f, NNP_SEV_ERROR, "missing-label", p, c->id,
			"fix the path in dataset.json (relative paths start at the dataset folder) or "
			"add the file", "missing label file (dataset.json: dataset.%s.label)", key);
		free(p);
		return NNP_OK;
	}
	c->label = p;
	return NNP_OK;
}

static int dict_cases(struct ds *d, struct cases *cs)
{
	const char *k;
	json_t *e;
	int rc;
	json_object_foreach(d->dict, k, e) {
		json_t *im = json_object_get(e, "images");
		struct vcase *c;
		int ok = *k && !strchr(k, '/') && json_is_object(e) && json_is_array(im) &&
			 json_array_size(im) > 0;
		for (size_t i = 0; ok && i < json_array_size(im); i++)
			ok = json_is_string(json_array_get(im, i)) && *json_string_value(json_array_get(im, i));
		if (!ok)
			continue;   /* reported by check_dict */
		if (!(c = cases_add(cs, k, strlen(k))))
			return oom();
		if ((rc = dict_images(d, c, im, k)) || (rc = dict_label(d, c, json_object_get(e, "label"), k)))
			return rc;
	}
	return NNP_OK;
}


/* ------------------------------------------------------------------ */
/* contents                                                            */

struct geom {
	const char *path;
	int64_t shape[4];        /* c, z, y, x */
	double spacing[3];       /* z, y, x (nnU-Net's order) */
	double affine[4][4];
	double pixdim[3];        /* the header's pixdim[1..3] (x, y, z) as stored */
	int ndim;
	enum nnp_dtype dtype;
};

/* Label values seen in one file: a bitmap for [VS_LO, VS_HI), a hash set
 * (linear probing, capped) for the rest, counters for bad values. */
struct valset {
	uint64_t bits[(VS_HI - VS_LO) / 64];
	int64_t *hash;
	size_t hcap, hn;
	int overflow, oom;
	uint64_t nnan, ninf, nonint, nhuge;
	double nonint_ex, huge_ex;
};

struct scratch {
	void *buf;               /* one slab of one file */
	size_t cap;
	double tmp[4096];        /* values converted to double */
	struct valset vs;
};

#define VS_EMPTY INT64_MIN

static void scratch_release(struct scratch *s)
{
	free(s->buf);
	free(s->vs.hash);
}

static void vs_reset(struct valset *s)
{
	memset(s->bits, 0, sizeof s->bits);
	for (size_t i = 0; s->hn && i < s->hcap; i++)
		s->hash[i] = VS_EMPTY;
	s->hn = 0;
	s->overflow = s->oom = 0;
	s->nnan = s->ninf = s->nonint = s->nhuge = 0;
	s->nonint_ex = s->huge_ex = 0;
}

static size_t vs_slot(const int64_t *h, size_t cap, int64_t v)
{
	uint64_t x = (uint64_t)v * 0x9e3779b97f4a7c15ull;
	size_t i = (size_t)(x >> 20) & (cap - 1);
	while (h[i] != VS_EMPTY && h[i] != v)
		i = (i + 1) & (cap - 1);
	return i;
}

static void vs_hash_add(struct valset *s, int64_t v)
{
	size_t i;
	if (s->overflow || s->oom)
		return;
	if (2 * (s->hn + 1) > s->hcap) {
		size_t nc = s->hcap ? 2 * s->hcap : 1024;
		int64_t *nh;
		if (s->hn >= VS_HASH_MAX) {
			s->overflow = 1;
			return;
		}
		if (!(nh = malloc(nc * sizeof *nh))) {
			s->oom = 1;
			return;
		}
		for (size_t k = 0; k < nc; k++)
			nh[k] = VS_EMPTY;
		for (size_t k = 0; k < s->hcap; k++)
			if (s->hash[k] != VS_EMPTY)
				nh[vs_slot(nh, nc, s->hash[k])] = s->hash[k];
		free(s->hash);
		s->hash = nh;
		s->hcap = nc;
	}
	i = vs_slot(s->hash, s->hcap, v);
	if (s->hash[i] == VS_EMPTY) {
		s->hash[i] = v;
		s->hn++;
	}
}

static inline void vs_add(struct valset *s, int64_t v)
{
	if (v >= VS_LO && v < VS_HI) {
		uint64_t k = (uint64_t)(v - VS_LO);
		s->bits[k >> 6] |= 1ull << (k & 63);
	} else {
		vs_hash_add(s, v);
	}
}

/* One value as nnU-Net sees it (float); returns the counter it went to,
 * NULL when it was a valid integer. */
static uint64_t *vs_add_double(struct valset *s, double v)
{
	if (isnan(v)) {
		s->nnan++;
		return &s->nnan;
	}
	if (isinf(v)) {
		s->ninf++;
		return &s->ninf;
	}
	if (v != floor(v)) {
		if (!s->nonint++)
			s->nonint_ex = v;
		return &s->nonint;
	}
	if (fabs(v) >= HUGE_LABEL) {
		if (!s->nhuge++)
			s->huge_ex = v;
		return &s->nhuge;
	}
	vs_add(s, (int64_t)v);
	return NULL;
}

#define SCAN_INT(T)                                                     \
	do {                                                            \
		const T *x_ = p;                                        \
		int64_t last_ = VS_EMPTY;                               \
		for (size_t i_ = 0; i_ < n; i_++) {                     \
			int64_t v_ = (int64_t)x_[i_];                   \
			if (v_ != last_) {                              \
				last_ = v_;                             \
				vs_add(&s->vs, v_);                     \
			}                                               \
		}                                                       \
	} while (0)

/* Label voxels: integer types unscaled go straight to the set; floats and
 * scaled files through double (value * slope + inter, like nibabel). */
static void scan_label_slab(struct scratch *s, const void *p, size_t n, enum nnp_dtype t, const double *scale)
{
	size_t es = nnp_dtype_size(t);
	double last = NAN;
	uint64_t *lastc = NULL;
	if (!scale) {
		switch (t) {
		case NNP_U8: SCAN_INT(uint8_t); return;
		case NNP_I8: SCAN_INT(int8_t); return;
		case NNP_U16: SCAN_INT(uint16_t); return;
		case NNP_I16: SCAN_INT(int16_t); return;
		case NNP_U32: SCAN_INT(uint32_t); return;
		case NNP_I32: SCAN_INT(int32_t); return;
		default: break;
		}
	}
	for (size_t off = 0; off < n; off += 4096) {
		size_t k = n - off < 4096 ? n - off : 4096;
		nnp_to_f64(t, (const char *)p + off * es, s->tmp, k);
		for (size_t i = 0; i < k; i++) {
			double v = scale ? s->tmp[i] * scale[0] + scale[1] : s->tmp[i];
			if (v == last) {
				if (lastc)
					(*lastc)++;
				continue;
			}
			last = v;
			lastc = vs_add_double(&s->vs, v);
		}
	}
}

struct imgstat {
	uint64_t nnan, ninf, nover, nvox;
};

static void scan_image_slab(struct imgstat *st, const void *p, size_t n, enum nnp_dtype t)
{
	st->nvox += n;
	if (t == NNP_F32) {
		const float *x = p;
		for (size_t i = 0; i < n; i++)
			if (!isfinite(x[i])) {
				st->nnan += isnan(x[i]) != 0;
				st->ninf += isinf(x[i]) != 0;
			}
	} else if (t == NNP_F64) {
		const double *x = p;
		for (size_t i = 0; i < n; i++) {
			if (!isfinite(x[i])) {
				st->nnan += isnan(x[i]) != 0;
				st->ninf += isinf(x[i]) != 0;
			} else if (fabs(x[i]) > FLT_MAX) {
				st->nover++;
			}
		}
	}
}

/* Stream every voxel of a file, slab by slab (channels in file order). */
static int stream_file(struct nnp_nifti_in *in, struct scratch *s, struct imgstat *st,
		       const double *label_scale, int label)
{
	const struct nnp_frame *f = nnp_nifti_frame(in);
	uint64_t es = nnp_dtype_size(f->dtype), plane = (uint64_t)f->shape[2] * (uint64_t)f->shape[3] * es;
	int64_t zs = plane ? (int64_t)(NNP_CHUNK_TARGET / plane) : 1;
	if (zs < 1)
		zs = 1;
	if (zs > f->shape[1])
		zs = f->shape[1];
	if ((uint64_t)zs * plane > s->cap) {
		free(s->buf);
		s->cap = 0;
		/* a finding, not the end of the run: absurd sizes come from corrupt headers */
		if (!(s->buf = malloc((size_t)((uint64_t)zs * plane))))
			return nnp_err(NNP_EDATA, "one slice (%.1f MiB, %lldx%lld voxels) does not fit in "
				       "memory", (double)plane / 1048576.0, (long long)f->shape[3],
				       (long long)f->shape[2]);
		s->cap = (size_t)((uint64_t)zs * plane);
	}
	for (int64_t c = 0; c < f->shape[0]; c++) {
		for (int64_t z0 = 0; z0 < f->shape[1]; z0 += zs) {
			int64_t k = f->shape[1] - z0 < zs ? f->shape[1] - z0 : zs;
			size_t n = (size_t)((uint64_t)k * plane / es);
			int rc = nnp_nifti_read_slab(in, c, z0, k, s->buf);
			if (rc)
				return rc;
			if (label)
				scan_label_slab(s, s->buf, n, f->dtype, label_scale);
			else
				scan_image_slab(st, s->buf, n, f->dtype);
		}
	}
	return label && s->vs.oom ? nnp_err(NNP_ENOMEM, "out of memory") : NNP_OK;
}

/* NIfTI-1: dim at byte 40 (int16[8]), pixdim at 76 (float[8]);
 * NIfTI-2: dim at 16 (int64[8]), pixdim at 104 (double[8]); host order. */
static void raw_pixdim(const struct nnp_nifti_hdr *h, double pd[3], int *ndim)
{
	if (h->version == 1 && h->raw_len >= 348) {
		int16_t d0;
		float p[4];
		memcpy(&d0, h->raw + 40, sizeof d0);
		memcpy(p, h->raw + 76, sizeof p);
		*ndim = d0;
		for (int i = 0; i < 3; i++)
			pd[i] = p[i + 1];
	} else if (h->raw_len >= 540) {
		int64_t d0;
		double p[4];
		memcpy(&d0, h->raw + 16, sizeof d0);
		memcpy(p, h->raw + 104, sizeof p);
		*ndim = (int)d0;
		for (int i = 0; i < 3; i++)
			pd[i] = p[i + 1];
	}
}

static void fill_geom(struct geom *g, const char *path, const struct nnp_frame *f)
{
	memset(g, 0, sizeof *g);
	g->path = path;
	memcpy(g->shape, f->shape, sizeof g->shape);
	memcpy(g->spacing, f->spacing, sizeof g->spacing);
	memcpy(g->affine, f->affine, sizeof g->affine);
	g->dtype = f->dtype;
	g->ndim = 3;
	for (int i = 0; i < 3; i++)
		g->pixdim[i] = g->spacing[2 - i];
	if (f->n_nifti)
		raw_pixdim(&f->nifti[0], g->pixdim, &g->ndim);
}

static int close_rel(double a, double b, double atol)
{
	return fabs(a - b) <= atol + RTOL * fabs(b);
}

/* Spacing sanity of the header (skipped when the file stores exactly the
 * voxel size of the case's reference file, which was checked). */
static void check_pixdim(struct vcase *c, const struct geom *g, const struct geom *ref)
{
	static const char axis[] = "xyz";
	char bad[200] = "", odd[200] = "";
	size_t nb = 0, no = 0;
	int n = g->ndim < 3 ? (g->ndim < 1 ? 1 : g->ndim) : 3;
	if (ref && !memcmp(ref->pixdim, g->pixdim, sizeof g->pixdim))
		return;
	for (int i = 0; i < n; i++) {
		double p = g->pixdim[i];
		if (!isfinite(p) || p <= 0)
			bappend(bad, sizeof bad, &nb, "%s%c %g", nb ? ", " : "", axis[i], p);
		else if (p < SPACING_MIN || p > SPACING_MAX)
			bappend(odd, sizeof odd, &no, "%s%c %g", no ? ", " : "", axis[i], p);
	}
	if (nb)
		finding(&c->f, NNP_SEV_ERROR, "spacing-invalid", g->path, c->id,
			"write the real voxel size into the header (pixdim; e.g. nibabel's "
			"header.set_zooms)", "voxel size (pixdim) %s: spacing must be a positive number "
			"of mm", bad);
	if (no)
		finding(&c->f, NNP_SEV_WARNING, "spacing-unusual", g->path, c->id,
			"check pixdim and xyzt_units in the header: nnU-Net reads spacing as mm",
			"unusual voxel size %s mm (expected %g..%g mm)", odd, SPACING_MIN, SPACING_MAX);
}

static int affine_close(const struct geom *a, const struct geom *b)
{
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 4; j++)
			if (!close_rel(b->affine[i][j], a->affine[i][j], ATOL))
				return 0;
	return 1;
}

static void direction(const struct geom *g, double d[3][3])
{
	for (int j = 0; j < 3; j++) {
		double n = 0;
		for (int i = 0; i < 3; i++)
			n += g->affine[i][j] * g->affine[i][j];
		n = sqrt(n);
		for (int i = 0; i < 3; i++)
			d[i][j] = n > 0 ? g->affine[i][j] / n : 0;
	}
}

static const char *align_fix =
	"nnU-Net only warns about this: check that image and label are aligned "
	"(nnUNetv2_plot_overlay_pngs) and give the file the image's header (qform/sform)";

/* Orientation/origin: warnings (as nnU-Net), saying which part differs. */
static void compare_affine(struct vcase *c, const struct geom *ref, const struct geom *g,
			   const char *what, int spacing_differs)
{
	double da[3][3], db[3][3], dist = 0, maxd = 0;
	int origin = 0, dir = 0;
	if (affine_close(ref, g))
		return;
	for (int i = 0; i < 3; i++) {
		double e = g->affine[i][3] - ref->affine[i][3];
		origin |= !close_rel(g->affine[i][3], ref->affine[i][3], ATOL);
		dist += e * e;
	}
	direction(ref, da);
	direction(g, db);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++) {
			dir |= fabs(da[i][j] - db[i][j]) > DIR_ATOL;
			for (int k = 0; k < 4; k++)
				maxd = fmax(maxd, fabs(g->affine[i][k] - ref->affine[i][k]));
		}
	if (origin)
		finding(&c->f, NNP_SEV_WARNING, "origin", g->path, c->id, align_fix,
			"origin (%.6g, %.6g, %.6g) differs from %s's (%.6g, %.6g, %.6g) ('%s') by %.3g mm",
			g->affine[0][3], g->affine[1][3], g->affine[2][3], what, ref->affine[0][3],
			ref->affine[1][3], ref->affine[2][3], base_name(ref->path), sqrt(dist));
	if (dir)
		finding(&c->f, NNP_SEV_WARNING, "direction", g->path, c->id, align_fix,
			"orientation (direction cosines of the affine) differs from %s's ('%s'): an axis "
			"is flipped, swapped or rotated", what, base_name(ref->path));
	if (!origin && !dir && !spacing_differs)
		finding(&c->f, NNP_SEV_WARNING, "affine", g->path, c->id, align_fix,
			"affine differs slightly from %s's ('%s'): largest difference %.3g", what,
			base_name(ref->path), maxd);
}

static void compare_geom(struct vcase *c, const struct geom *ref, const struct geom *g, const char *what)
{
	int sp = 0;
	if (g->shape[1] != ref->shape[1] || g->shape[2] != ref->shape[2] || g->shape[3] != ref->shape[3])
		finding(&c->f, NNP_SEV_ERROR, "shape", g->path, c->id,
			"the images and the label of a case must share one voxel grid: resample or crop "
			"the file to the image's grid",
			"shape (z,y,x) %lldx%lldx%lld differs from %s's %lldx%lldx%lld ('%s')",
			(long long)g->shape[1], (long long)g->shape[2], (long long)g->shape[3], what,
			(long long)ref->shape[1], (long long)ref->shape[2], (long long)ref->shape[3],
			base_name(ref->path));
	for (int i = 0; i < 3; i++)
		sp |= !close_rel(g->spacing[i], ref->spacing[i], ATOL);
	if (sp)
		finding(&c->f, NNP_SEV_ERROR, "spacing", g->path, c->id,
			"give the file the image's voxel size (pixdim) or resample it onto the image's grid",
			"spacing (z,y,x) %.7g, %.7g, %.7g differs from %s's %.7g, %.7g, %.7g ('%s')",
			g->spacing[0], g->spacing[1], g->spacing[2], what, ref->spacing[0], ref->spacing[1],
			ref->spacing[2], base_name(ref->path));
	compare_affine(c, ref, g, what, sp);
}

/* ---- one case ---- */

static void unreadable(struct vcase *c, const char *path)
{
	char buf[1024];
	finding(&c->f, NNP_SEV_ERROR, "unreadable", path, c->id,
		"re-export or re-convert the file: nnU-Net cannot read it either",
		"cannot be read: %s", err_text(path, buf, sizeof buf));
}

/* 1: the header was read (g filled; *read_all: the voxels too), 0: not
 * (finding made), <0: failure. */
static int check_image(struct vcase *c, const char *path, struct scratch *s, const struct geom *ref,
		       struct geom *g, int *read_all)
{
	struct nnp_nifti_in *in;
	struct imgstat st = { 0 };
	int rc;
	*read_all = 0;
	if (nnp_nifti_open(path, &in)) {
		unreadable(c, path);
		return 0;
	}
	fill_geom(g, path, nnp_nifti_frame(in));
	check_pixdim(c, g, ref);
	if (ref)
		compare_geom(c, ref, g, "the case's first image");
	if (g->shape[0] > 1)
		finding(&c->f, NNP_SEV_WARNING, "image-4d", path, c->id,
			"save one 3D file per channel (CASE_0000, CASE_0001, ...)",
			"4D image file with %lld volumes: nnU-Net's NibabelIO reads 3D files only "
			"(SimpleITKIO takes the volumes as channels)", (long long)g->shape[0]);
	rc = stream_file(in, s, &st, NULL, 0);
	nnp_nifti_close(in);
	if (rc == NNP_ENOMEM)
		return rc;
	if (rc) {
		unreadable(c, path);
		return 1;
	}
	*read_all = 1;
	if (st.nnan || st.ninf || st.nover) {
		char what[200] = "";
		size_t n = 0;
		if (st.nnan)
			bappend(what, sizeof what, &n, "%llu NaN", (unsigned long long)st.nnan);
		if (st.ninf)
			bappend(what, sizeof what, &n, "%s%llu Inf", n ? " and " : "", (unsigned long long)st.ninf);
		if (st.nover)
			bappend(what, sizeof what, &n, "%s%llu beyond float32 range (Inf once read as float32)",
				n ? " and " : "", (unsigned long long)st.nover);
		finding(&c->f, NNP_SEV_ERROR, "nan-image", path, c->id,
			"replace them with a value that makes sense for the image (e.g. the background "
			"intensity; numpy.nan_to_num)", "image contains %s voxels (of %llu)", what,
			(unsigned long long)st.nvox);
	}
	return 1;
}

/* Distinct values of a label file: all of them, sorted. */
static int vs_values(const struct valset *s, struct ivec *out)
{
	int rc;
	for (size_t w = 0; w < sizeof s->bits / sizeof *s->bits; w++)
		for (uint64_t b = s->bits[w]; b; b &= b - 1)
			if ((rc = ivec_push(out, VS_LO + (int64_t)(w * 64 + (size_t)__builtin_ctzll(b)))))
				return rc;
	for (size_t i = 0; s->hn && i < s->hcap; i++)
		if (s->hash[i] != VS_EMPTY && (rc = ivec_push(out, s->hash[i])))
			return rc;
	ivec_sort_unique(out);
	return NNP_OK;
}

static void label_bad_values(struct vcase *c, const char *path, const struct valset *s)
{
	if (s->nnan || s->ninf)
		finding(&c->f, NNP_SEV_ERROR, "nan-label", path, c->id,
			"label maps hold integers only: replace them with 0 (background) or the right label",
			"label map contains %llu NaN and %llu Inf voxels", (unsigned long long)s->nnan,
			(unsigned long long)s->ninf);
	if (s->nonint)
		finding(&c->f, NNP_SEV_ERROR, "non-integer-labels", path, c->id,
			"label maps hold whole numbers: round them (or re-export the label map as integers; "
			"interpolated labels need nearest-neighbour resampling)",
			"%llu voxels have non-integer label values (e.g. %g)", (unsigned long long)s->nonint,
			s->nonint_ex);
}

/* Classify the values of a label file against dataset.json. */
static int label_values(const struct ds *d, struct vcase *c, const char *path, const struct valset *s)
{
	struct ivec all = { 0 }, neg = { 0 }, unexp = { 0 };
	int fg = 0, rc;
	char a[300], b[300], e[300];

	label_bad_values(c, path, s);
	if ((rc = vs_values(s, &all)))
		goto out;
	for (size_t i = 0; i < all.n && !rc; i++) {
		int64_t v = all.v[i];
		if (v < 0)
			rc = ivec_push(&neg, v);
		else if (d->labels_known && !ivec_has(&d->declared, v))
			rc = ivec_push(&unexp, v);
		fg |= v != 0 && !(d->has_ignore && v == d->ignore);
	}
	if (rc)
		goto out;
	if (neg.n) {
		ivec_text(neg.v, neg.n, a, sizeof a);
		finding(&c->f, NNP_SEV_ERROR, "negative-labels", path, c->id,
			"label values are 0 (background), 1, 2, ...: map these voxels onto declared labels",
			"negative label values %s", a);
	}
	if (d->labels_known && (unexp.n || s->nhuge || s->overflow)) {
		size_t n = 0;
		e[0] = '\0';
		if (unexp.n) {
			ivec_text(unexp.v, unexp.n, a, sizeof a);
			bappend(e, sizeof e, &n, "%s", a);
		}
		if (s->nhuge)
			bappend(e, sizeof e, &n, "%s%llu voxels with huge values (e.g. %g)", n ? " and " : "",
				(unsigned long long)s->nhuge, s->huge_ex);
		if (s->overflow)
			bappend(e, sizeof e, &n, "%smore: over %zu distinct values (an image, not a label "
				"map?)", n ? " and " : "", all.n);
		declared_text(&d->declared, b, sizeof b);
		finding(&c->f, NNP_SEV_ERROR, "unexpected-labels", path, c->id,
			"add the labels to \"labels\" in dataset.json, or correct the label map",
			"unexpected labels %s; dataset.json declares %s", e, b);
	}
	if (!fg && !neg.n && !s->nnan && !s->ninf && !s->nonint && !s->nhuge)
		finding(&c->f, NNP_SEV_WARNING, "empty-label", path, c->id,
			"check that the case is meant to be empty (nnU-Net trains on it as all background)",
			"label map contains only background (0)%s", d->has_ignore ? " (and ignore)" : "");
out:
	free(all.v);
	free(neg.v);
	free(unexp.v);
	return rc;
}

static int check_label(const struct ds *d, struct vcase *c, struct scratch *s, const struct geom *ref)
{
	struct nnp_nifti_in *in;
	struct geom g;
	const struct nnp_frame *f;
	int rc;
	if (nnp_nifti_open(c->label, &in)) {
		unreadable(c, c->label);
		return NNP_OK;
	}
	f = nnp_nifti_frame(in);
	fill_geom(&g, c->label, f);
	check_pixdim(c, &g, ref);
	if (ref)
		compare_geom(c, ref, &g, "the image");
	if (g.shape[0] > 1)
		finding(&c->f, NNP_SEV_ERROR, "label-4d", c->label, c->id,
			"save the label as one 3D integer volume (one label value per voxel)",
			"4D label file (%lld volumes): a label map is one 3D volume", (long long)g.shape[0]);
	if (nnp_dtype_is_float(g.dtype))
		finding(&c->f, NNP_SEV_WARNING, "label-dtype", c->label, c->id,
			"save it as uint8 (uint16 for more than 255 labels)",
			"stored as %s: label maps should be stored as integers", nnp_dtype_name(g.dtype));
	vs_reset(&s->vs);
	/* an identity scale (slope 1, inter 0: nibabel writes that) is none */
	rc = stream_file(in, s, NULL, f->scale && (f->scale[0] != 1 || f->scale[1] != 0) ? f->scale : NULL, 1);
	nnp_nifti_close(in);
	if (rc == NNP_ENOMEM)
		return rc;
	if (rc) {
		unreadable(c, c->label);
		return NNP_OK;
	}
	return label_values(d, c, c->label, &s->vs);
}

static int check_case(const struct ds *d, struct vcase *c, struct scratch *s)
{
	struct geom ref, g;
	int have_ref = 0, all_read = 1, rc, read;
	int64_t nvol = 0;
	for (size_t i = 0; i < c->nimages; i++) {
		rc = check_image(c, c->images[i], s, have_ref ? &ref : NULL, &g, &read);
		if (rc < 0)
			return rc;
		all_read &= rc && read;
		if (!rc)
			continue;
		nvol += g.shape[0];
		if (!have_ref) {
			ref = g;
			have_ref = 1;
		}
	}
	if (d->nch >= 0 && all_read && (long)c->nimages == d->nch && nvol != d->nch)
		finding(&c->f, NNP_SEV_ERROR, "channel-count", c->images[0], c->id,
			"save one 3D file per channel (CASE_0000, CASE_0001, ...)",
			"the case's files hold %lld channels (4D files) but dataset.json declares %ld",
			(long long)nvol, d->nch);
	if (c->label)
		return check_label(d, c, s, have_ref ? &ref : NULL);
	return NNP_OK;
}

/* ---- all cases, in parallel ---- */

struct runner {
	const struct ds *d;
	struct cases *cs;
	struct scratch *sc;
	int nt;
	int rc;
	char msg[512];
};

static int thread_id(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

static void run_batch(struct runner *R, size_t lo, size_t hi, struct nnp_progress *pr)
{
	int fail = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(R->nt)
	for (size_t i = lo; i < hi; i++) {
		int rc, stop;
#pragma omp atomic read
		stop = fail;
		if (stop)
			continue;
		rc = check_case(R->d, &R->cs->v[i], &R->sc[thread_id()]);
		if (rc || R->cs->v[i].f.oom) {
#pragma omp critical(nnp_verify_fail)
			{
				if (!R->rc) {
					R->rc = rc ? rc : NNP_ENOMEM;
					snprintf(R->msg, sizeof R->msg, "%s", rc ? nnp_err_msg() : "out of memory");
				}
			}
#pragma omp atomic write
			fail = 1;
		}
#pragma omp critical(nnp_verify_progress)
		nnp_progress_add(pr, 1);
	}
}

/* Content checks of every case (in batches when errors are capped, so
 * that every case before the cut is checked whatever the scheduling).
 * *checked receives the number of cases checked. */
static int check_contents(const struct ds *d, struct cases *cs, size_t errors, const struct nnp_verify_opts *o,
			  size_t *checked)
{
	struct runner R = { .d = d, .cs = cs };
	struct nnp_progress pr;
	size_t done = 0, batch;
	*checked = 0;
	R.nt = o->threads > 0 ? o->threads : nnp_threads();
	if ((size_t)R.nt > cs->n)
		R.nt = cs->n ? (int)cs->n : 1;
	if (!(R.sc = calloc((size_t)R.nt, sizeof *R.sc)))
		return oom();
	batch = o->max_errors > 0 ? 4 * (size_t)R.nt : cs->n;
	nnp_progress_begin(&pr, "verify", (long long)cs->n);
	while (done < cs->n && !R.rc) {
		size_t hi = done + batch < cs->n ? done + batch : cs->n;
		if (o->max_errors > 0 && errors >= (size_t)o->max_errors)
			break;
		run_batch(&R, done, hi, &pr);
		for (size_t i = done; i < hi; i++)
			errors += cs->v[i].f.nerr;
		done = hi;
	}
	nnp_progress_end(&pr);
	for (int t = 0; t < R.nt; t++)
		scratch_release(&R.sc[t]);
	free(R.sc);
	*checked = done;
	if (R.rc)
		return nnp_err(R.rc, "%s", R.msg);
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* the report                                                          */

/* Move the findings of l into r (in order), stopping at max errors. */
static int take(struct nnp_verify_report *r, struct flist *l, long max, int *dropped)
{
	if (l->oom)
		return oom();
	*dropped |= l->full;
	for (size_t i = 0; i < l->n; i++) {
		struct nnp_finding *f = &l->v[i];
		if (max > 0 && r->nerrors >= (size_t)max) {
			*dropped = 1;
			finding_release(f);
			continue;
		}
		r->findings[r->nfindings++] = *f;
		r->nerrors += f->severity == NNP_SEV_ERROR;
		r->nwarnings += f->severity == NNP_SEV_WARNING;
	}
	free(l->v);
	memset(l, 0, sizeof *l);
	return NNP_OK;
}

static int merge(struct nnp_verify_report *r, struct flist *top, struct cases *cs, long max, size_t checked)
{
	size_t n = top->n;
	int dropped = 0, rc = NNP_OK;
	for (size_t i = 0; i < cs->n; i++)
		n += cs->v[i].f.n;
	if (!(r->findings = calloc(n ? n : 1, sizeof *r->findings)))
		return oom();
	rc = take(r, top, max, &dropped);
	for (size_t i = 0; !rc && i < cs->n; i++)
		rc = take(r, &cs->v[i].f, max, &dropped);
	r->truncated = dropped || (max > 0 && r->nerrors >= (size_t)max && checked < cs->n);
	return rc;
}

void nnp_verify_report_free(struct nnp_verify_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nfindings; i++)
		finding_release(&r->findings[i]);
	free(r->findings);
	free(r->dataset);
	free(r->dir);
	free(r);
}

static struct nnp_verify_report *report_new(const char *dir)
{
	struct nnp_verify_report *r = calloc(1, sizeof *r);
	size_t n = strlen(dir);
	if (!r)
		return NULL;
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (!(r->dir = strndup(dir, n)) || !(r->dataset = strdup(base_name(r->dir)))) {
		nnp_verify_report_free(r);
		return NULL;
	}
	return r;
}

static int discover(struct ds *d, struct cases *cs, struct flist *top)
{
	int rc;
	if (d->dict ? d->dict_bad : !d->ending)
		return NNP_OK;
	if (!d->dict)
		return folder_cases(d, cs, top);
	if (!(rc = dict_cases(d, cs)))
		check_count(d, cs, top);
	return rc;
}

int nnp_verify_dataset(const char *dir, const struct nnp_verify_opts *o, struct nnp_verify_report **out)
{
	static const struct nnp_verify_opts def = { 0, 0 };
	struct nnp_verify_report *r;
	struct ds d = { .nch = -1, .num_training = -1 };
	struct flist top = { 0 };
	struct cases cs = { 0 };
	size_t checked = 0;
	int rc, fatal = 0;

	*out = NULL;
	if (!o)
		o = &def;
	if (!dir || !*dir)
		return nnp_err(NNP_EUSAGE, "empty dataset folder name");
	if (!nnp_is_dir(dir))
		return nnp_err(NNP_EDATA, "dataset folder '%s': %s", dir,
			       access(dir, F_OK) ? strerror(errno) : "not a folder");
	if (!(r = report_new(dir)))
		return oom();
	d.dir = r->dir;
	if (!(d.jpath = pjoin(d.dir, "dataset.json"))) {
		nnp_verify_report_free(r);
		return oom();
	}
	rc = check_json(&d, &top, &fatal);
	if (!rc && !fatal)
		rc = discover(&d, &cs, &top);
	if (!rc && !fatal && (d.dict ? !d.ending || d.readable : d.readable))
		rc = check_contents(&d, &cs, top.nerr, o, &checked);
	if (!rc)
		rc = merge(r, &top, &cs, o->max_errors, checked);
	r->ncases = cs.n;
	flist_free(&top);
	cases_free(&cs);
	json_decref(d.j);
	free(d.jpath);
	free(d.declared.v);
	if (rc) {
		nnp_verify_report_free(r);
		return rc;
	}
	*out = r;
	return NNP_OK;
}

/* ---- output ---- */

void nnp_verify_summary(const struct nnp_verify_report *r, char *buf, size_t n)
{
	char tail[96] = "";
	if (r->truncated)
		snprintf(tail, sizeof tail, " (stopped after %zu errors, --max-errors)", r->nerrors);
	snprintf(buf, n, "%s: %zu case%s, %zu error%s, %zu warning%s: %s%s", r->dataset, r->ncases,
		 r->ncases == 1 ? "" : "s", r->nerrors, r->nerrors == 1 ? "" : "s", r->nwarnings,
		 r->nwarnings == 1 ? "" : "s", r->nerrors ? "FAILED" : "OK", tail);
}

/* A string with control characters shown as '?' (one finding, one line). */
static void put_clean(const char *s, FILE *f)
{
	for (; *s; s++)
		putc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

int nnp_verify_report_print(const struct nnp_verify_report *r, FILE *f)
{
	char sum[512];
	for (size_t i = 0; i < r->nfindings; i++) {
		const struct nnp_finding *x = &r->findings[i];
		fputs(x->severity == NNP_SEV_ERROR ? "error: " : "warning: ", f);
		put_clean(x->file, f);
		fputs(": ", f);
		put_clean(x->message, f);
		fputs(": ", f);
		put_clean(x->fix, f);
		putc('\n', f);
	}
	nnp_verify_summary(r, sum, sizeof sum);
	put_clean(sum, f);
	putc('\n', f);
	if (ferror(f))
		return nnp_err(NNP_EIO, "cannot write the report: %s", strerror(errno));
	return NNP_OK;
}

/* A JSON string of s; bytes that are not UTF-8 become '?'. */
static json_t *jstr(const char *s)
{
	json_t *j = json_string(s);
	char *t;
	if (j || !s || !(t = strdup(s)))
		return j;
	for (unsigned char *p = (unsigned char *)t; *p; p++)
		if (*p >= 0x80)
			*p = '?';
	j = json_string(t);
	free(t);
	return j;
}

static json_t *finding_json(const struct nnp_finding *x)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	if (json_object_set_new(o, "file", jstr(x->file)) ||
	    json_object_set_new(o, "case", x->case_id ? jstr(x->case_id) : json_null()) ||
	    json_object_set_new(o, "check", jstr(x->check)) ||
	    json_object_set_new(o, "message", jstr(x->message)) ||
	    json_object_set_new(o, "fix", jstr(x->fix))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int nnp_verify_report_json(const struct nnp_verify_report *r, json_t **out)
{
	json_t *o = json_object(), *e = json_array(), *w = json_array();
	int bad = !o || !e || !w;
	for (size_t i = 0; !bad && i < r->nfindings; i++) {
		const struct nnp_finding *x = &r->findings[i];
		bad = json_array_append_new(x->severity == NNP_SEV_ERROR ? e : w, finding_json(x));
	}
	if (!bad)
		bad = json_object_set_new(o, "dataset", jstr(r->dataset)) ||
		      json_object_set_new(o, "cases", json_integer((json_int_t)r->ncases)) ||
		      json_object_set(o, "errors", e) || json_object_set(o, "warnings", w) ||
		      json_object_set_new(o, "ok", json_boolean(r->nerrors == 0)) ||
		      json_object_set_new(o, "truncated", json_boolean(r->truncated));
	json_decref(e);
	json_decref(w);
	if (bad) {
		json_decref(o);
		return oom();
	}
	*out = o;
	return NNP_OK;
}
