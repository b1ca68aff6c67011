/* import.c — loose image/label folders and MSD task folders -> an nnU-Net
 * raw dataset (see import.h, docs/import.md). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <nifti1.h>
#include <nifti2.h>
#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "frame.h"
#include "import.h"
#include "json.h"
#include "nifti.h"

#define COPY_CHUNK ((size_t)8 << 20)   /* bytes per copy / conversion step */
#define LABELS_MAX 65536
#define CHANNELS_MAX 9999              /* _XXXX suffixes */
#define UNPAIRED_SHOWN 4               /* unpaired files named in the message */

static int oom(void)
{
	return nnp_err(NNP_ENOMEM, "out of memory");
}

static int has_ctrl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* option values                                                       */

void nnp_import_names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

int nnp_import_parse_channels(const char *spec, char ***names, size_t *n)
{
	char **v = NULL;
	size_t k = 0;
	const char *p = spec;

	*names = NULL;
	*n = 0;
	if (!spec || !*spec)
		return nnp_err(NNP_EUSAGE, "--channels needs at least one name (like CT or T1,T2)");
	for (;;) {
		size_t len = strcspn(p, ",");
		char **nv;
		if (!len || has_ctrl(p) || k >= CHANNELS_MAX) {
			nnp_import_names_free(v, k);
			return nnp_err(NNP_EUSAGE, "--channels '%s': %s", spec, !len ?
				       "empty channel name" : k >= CHANNELS_MAX ? "too many channels" :
				       "control characters in a name");
		}
		if (!(nv = realloc(v, (k + 1) * sizeof *v)) || !(nv[k] = strndup(p, len))) {
			nnp_import_names_free(nv ? nv : v, k);
			return oom();
		}
		v = nv;
		k++;
		if (!p[len])
			break;
		p += len + 1;
	}
	*names = v;
	*n = k;
	return NNP_OK;
}

/* Values distinct and exactly 0..n-1 (nnU-Net's consecutive labels). */
static int check_label_values(const json_t *map, const char *what)
{
	size_t n = json_object_size(map);
	unsigned char *seen = calloc(n ? n : 1, 1);
	const char *k;
	json_t *v;
	int rc = NNP_OK;

	if (!seen)
		return oom();
	json_object_foreach((json_t *)map, k, v) {
		json_int_t x = json_integer_value(v);
		if (x < 0 || (size_t)x >= n) {
			rc = nnp_err(NNP_EUSAGE, "%s: '%s' = %lld: label values must be consecutive "
				     "0..%zu (one per label)", what, k, (long long)x, n - 1);
			break;
		}
		if (seen[x]++) {
			rc = nnp_err(NNP_EUSAGE, "%s: value %lld is used twice", what, (long long)x);
			break;
		}
	}
	free(seen);
	if (!rc) {
		json_t *bg = json_object_get(map, "background");
		if (!bg || json_integer_value(bg) != 0)
			rc = nnp_err(NNP_EUSAGE, "%s: nnU-Net needs background=0", what);
	}
	return rc;
}

static int parse_label_item(const char *spec, const char *p, size_t len, json_t *map)
{
	const char *eq = memchr(p, '=', len);
	char name[256], num[32], *end;
	long long v;

	if (!eq || eq == p || (size_t)(eq - p) >= sizeof name || len - (size_t)(eq - p) - 1 == 0 ||
	    len - (size_t)(eq - p) - 1 >= sizeof num)
		return nnp_err(NNP_EUSAGE, "--labels-map '%s': '%.*s' is not NAME=VALUE", spec,
			       (int)len, p);
	memcpy(name, p, (size_t)(eq - p));
	name[eq - p] = '\0';
	memcpy(num, eq + 1, len - (size_t)(eq - p) - 1);
	num[len - (size_t)(eq - p) - 1] = '\0';
	errno = 0;
	v = strtoll(num, &end, 10);
	if (*end || errno || v < 0 || v > LABELS_MAX || !isdigit((unsigned char)num[0]))
		return nnp_err(NNP_EUSAGE, "--labels-map '%s': '%s' is not a label value "
			       "(0..%d)", spec, num, LABELS_MAX);
	if (has_ctrl(name))
		return nnp_err(NNP_EUSAGE, "--labels-map: control characters in a name");
	if (json_object_get(map, name))
		return nnp_err(NNP_EUSAGE, "--labels-map '%s': '%s' is given twice", spec, name);
	if (json_object_set_new(map, name, json_integer(v)))
		return oom();
	return NNP_OK;
}

int nnp_import_parse_labels(const char *spec, json_t **out)
{
	json_t *map;
	const char *p = spec;
	int rc = NNP_OK;

	*out = NULL;
	if (!spec || !*spec)
		return nnp_err(NNP_EUSAGE, "--labels-map needs NAME=VALUE pairs like "
			       "background=0,liver=1");
	if (!(map = json_object()))
		return oom();
	for (;;) {
		size_t len = strcspn(p, ",");
		if (json_object_size(map) >= LABELS_MAX)
			rc = nnp_err(NNP_EUSAGE, "--labels-map: too many labels");
		else
			rc = parse_label_item(spec, p, len, map);
		if (rc || !p[len])
			break;
		p += len + 1;
	}
	if (!rc)
		rc = check_label_values(map, "--labels-map");
	if (rc) {
		json_decref(map);
		return rc;
	}
	*out = map;
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* the import state                                                    */

struct src {               /* a NIfTI file in an input folder */
	char *path;
	char *stem;            /* file name without its ending */
	const char *ending;    /* ".nii.gz", ".nii" or ".hdr" */
};

struct srclist {
	struct src *v;
	size_t n, cap;
	const char *dir;
};

struct kase {
	char *id;
	size_t *src;           /* indices into the image list, channel order */
	size_t nsrc;           /* nchannels (channel files) or 1 (one file, all channels) */
	long label;            /* index into the label list, -1 for none */
};

struct caselist {
	struct kase *v;
	size_t n;
	int whole;             /* one file per case holding every channel */
	char why[512];         /* why the files are not channel files ("" if they are) */
};

struct job {               /* one source file -> dataset files */
	const char *src;
	char **dst;            /* relative to the dataset folder; one per volume */
	size_t ndst;
	int convert;           /* re-encode (other ending, .hdr, 4D) */
};

struct imp {
	const struct nnp_import_opts *o;
	struct nnp_import_result *r;
	const char *fe;        /* file ending written */
	char *const *ch;       /* channel names */
	size_t nch;
	char **msd_ch;         /* owned channel names (MSD) */
	json_t *labels;        /* label map (new reference) */
	json_t *msd_json;      /* the MSD dataset.json */
	const char *images, *labelsdir, *test;
	char *msd_paths[3];
	struct srclist tr, lb, ts;
	struct caselist ctr, cts;
	struct job *jobs;
	size_t njobs, capjobs;
	int id;                /* the dataset id */
	char root[PATH_MAX], tmp[PATH_MAX], target[PATH_MAX];
	int tmp_made;
};

static void warnf(struct imp *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(struct imp *m, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	if (!m->o->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	m->o->warn(m->o->ctx, msg);
}

static int stopped(const struct imp *m)
{
	return m->o->stop && *m->o->stop;
}

static int interrupted(void)
{
	return nnp_err(NNP_EIO, "interrupted by a signal: nothing was imported");
}

static void srclist_release(struct srclist *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].path);
		free(s->v[i].stem);
	}
	free(s->v);
	memset(s, 0, sizeof *s);
}

static void caselist_release(struct caselist *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].id);
		free(c->v[i].src);
	}
	free(c->v);
	c->v = NULL;
	c->n = 0;
	c->whole = 0;
}

static void imp_release(struct imp *m)
{
	srclist_release(&m->tr);
	srclist_release(&m->lb);
	srclist_release(&m->ts);
	caselist_release(&m->ctr);
	caselist_release(&m->cts);
	for (size_t i = 0; i < m->njobs; i++)
		nnp_import_names_free(m->jobs[i].dst, m->jobs[i].ndst);
	free(m->jobs);
	json_decref(m->labels);
	json_decref(m->msd_json);
	nnp_import_names_free(m->msd_ch, m->nch);
	for (int i = 0; i < 3; i++)
		free(m->msd_paths[i]);
}

/* ------------------------------------------------------------------ */
/* listing input folders                                               */

static const char *const endings[] = { ".nii.gz", ".nii", ".hdr" };

/* The NIfTI ending of name (NULL if none); *stem the length before it. */
static const char *nifti_ending(const char *name, size_t *stem)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof endings / sizeof *endings; i++) {
		size_t k = strlen(endings[i]);
		if (n > k && !strcmp(name + n - k, endings[i])) {
			*stem = n - k;
			return endings[i];
		}
	}
	return NULL;
}

/* The .img of an .hdr/.img pair: skipped quietly when its .hdr exists. */
static int is_pair_image(const char *dir, const char *name)
{
	size_t n = strlen(name);
	char *hdr;
	int r;
	if (n <= 4 || strcmp(name + n - 4, ".img"))
		return 0;
	if (!(hdr = nnp_strprintf("%s/%.*s.hdr", dir, (int)(n - 4), name)))
		return 0;
	r = nnp_is_file(hdr);
	free(hdr);
	return r;
}

static int src_add(struct srclist *s, const char *dir, const char *name, size_t stem,
		   const char *ending)
{
	struct src *e;
	if (s->n == s->cap) {
		size_t nc = s->cap ? 2 * s->cap : 64;
		struct src *nv;
		if (s->n >= NNP_CASES_MAX)
			return nnp_err(NNP_EDATA, "'%s': too many files (at most %d)", dir,
				       NNP_CASES_MAX);
		if (!(nv = realloc(s->v, nc * sizeof *nv)))
			return oom();
		s->v = nv;
		s->cap = nc;
	}
	e = &s->v[s->n];
	e->path = nnp_strprintf("%s/%s", dir, name);
	e->stem = strndup(name, stem);
	e->ending = ending;
	if (!e->path || !e->stem) {
		free(e->path);
		free(e->stem);
		return oom();
	}
	s->n++;
	return NNP_OK;
}

static int cmp_src(const void *a, const void *b)
{
	const struct src *x = a, *y = b;
	int c = strcmp(x->stem, y->stem);
	return c ? c : strcmp(x->path, y->path);
}

/* The NIfTI files of dir, sorted by stem.  Hidden files (and, for MSD
 * folders, names starting with '_') are skipped; other files are named in a
 * warning. */
static int list_folder(struct imp *m, const char *dir, int skip_underscore, struct srclist *s)
{
	DIR *dp;
	struct dirent *e;
	size_t seen = 0;
	int rc = NNP_OK;

	s->dir = dir;
	if (!(dp = opendir(dir)))
		return nnp_err(NNP_EDATA, "cannot open folder '%s': %s", dir, strerror(errno));
	while (!rc && (e = readdir(dp))) {
		const char *nm = e->d_name, *end;
		size_t stem;
		char *p;
		int reg;
		if (nm[0] == '.' || (skip_underscore && nm[0] == '_'))
			continue;
		if (++seen > NNP_DATASET_FILES_MAX) {
			rc = nnp_err(NNP_EDATA, "'%s': too many files (at most %d)", dir,
				     NNP_DATASET_FILES_MAX);
			break;
		}
		if (!(p = nnp_strprintf("%s/%s", dir, nm))) {
			rc = NNP_ENOMEM;
			break;
		}
		reg = nnp_is_file(p);
		if (!reg && !nnp_is_dir(p))
			warnf(m, "ignoring '%s': not a regular file", p);
		free(p);
		if (!reg)
			continue;
		if (has_ctrl(nm)) {
			rc = nnp_err(NNP_EDATA, "'%s': a file name with control characters", dir);
			break;
		}
		if (!(end = nifti_ending(nm, &stem))) {
			if (!is_pair_image(dir, nm))
				warnf(m, "ignoring '%s/%s': not a NIfTI file (.nii.gz, .nii, .hdr)",
				      dir, nm);
			continue;
		}
		rc = src_add(s, dir, nm, stem, end);
	}
	closedir(dp);
	if (!rc && s->n > 1)
		qsort(s->v, s->n, sizeof *s->v, cmp_src);
	return rc;
}

/* ------------------------------------------------------------------ */
/* grouping files into cases                                           */

/* stem = CASE_XXXX: *caselen = strlen(CASE), *num = XXXX. */
static int channel_suffix(const char *stem, size_t *caselen, int *num)
{
	size_t n = strlen(stem);
	if (n < 6 || stem[n - 5] != '_')
		return 0;
	for (size_t i = n - 4; i < n; i++)
		if (!isdigit((unsigned char)stem[i]))
			return 0;
	*caselen = n - 5;
	*num = atoi(stem + n - 4);
	return 1;
}

static int check_id(const char *id, const char *file)
{
	if (!*id)
		return nnp_err(NNP_EDATA, "'%s': the case id would be empty", file);
	if (strlen(id) > NNP_CASE_ID_MAX)
		return nnp_err(NNP_EDATA, "'%s': case id longer than %d bytes", file,
			       NNP_CASE_ID_MAX);
	return NNP_OK;
}

static int case_alloc(struct caselist *c, size_t n)
{
	if (!(c->v = calloc(n ? n : 1, sizeof *c->v)))
		return oom();
	return NNP_OK;
}

static int case_set(struct kase *k, const char *id, size_t idlen, size_t nsrc)
{
	k->label = -1;
	k->id = strndup(id, idlen);
	k->src = calloc(nsrc, sizeof *k->src);
	if (!k->id || !k->src) {
		free(k->id);
		free(k->src);
		memset(k, 0, sizeof *k);
		return oom();
	}
	k->nsrc = nsrc;
	return NNP_OK;
}

/* Every file its own case holding all channels. */
static int group_whole(const struct srclist *s, struct caselist *c)
{
	int rc;
	c->whole = 1;
	if ((rc = case_alloc(c, s->n)))
		return rc;
	for (size_t i = 0; i < s->n; i++) {
		if ((rc = check_id(s->v[i].stem, s->v[i].path)) ||
		    (rc = case_set(&c->v[i], s->v[i].stem, strlen(s->v[i].stem), 1)))
			return rc;
		c->n = i + 1;
		c->v[i].src[0] = i;
	}
	return NNP_OK;
}

struct chfile {
	const char *stem;
	size_t caselen, idx;
	int num;
};

static int cmp_chfile(const void *a, const void *b)
{
	const struct chfile *x = a, *y = b;
	size_t n = x->caselen < y->caselen ? x->caselen : y->caselen;
	int c = memcmp(x->stem, y->stem, n);
	if (c)
		return c;
	if (x->caselen != y->caselen)
		return x->caselen < y->caselen ? -1 : 1;
	return x->num - y->num;
}

static int same_case(const struct chfile *a, const struct chfile *b)
{
	return a->caselen == b->caselen && !memcmp(a->stem, b->stem, a->caselen);
}

/* Channel numbers of one case's files (sorted) are exactly 0..nch-1? */
static int channels_ok(const struct chfile *f, size_t n, size_t nch)
{
	if (n != nch)
		return 0;
	for (size_t k = 0; k < n; k++)
		if (f[k].num != (int)k)
			return 0;
	return 1;
}

/* Files named CASE_0000 .. CASE_{nch-1}: 1 and the cases filled, or 0 with
 * the reason in c->why, or <0. */
static int group_channels(struct imp *m, const struct srclist *s, struct caselist *c)
{
	struct chfile *f;
	size_t i = 0;
	int ok = 1, rc = NNP_OK;

	if (!s->n)
		return 0;
	if (!(f = calloc(s->n, sizeof *f)))
		return oom();
	for (size_t k = 0; k < s->n; k++) {
		f[k].stem = s->v[k].stem;
		f[k].idx = k;
		if (!channel_suffix(s->v[k].stem, &f[k].caselen, &f[k].num)) {
			snprintf(c->why, sizeof c->why, "'%s' has no _XXXX channel suffix",
				 s->v[k].path);
			free(f);
			return 0;
		}
	}
	qsort(f, s->n, sizeof *f, cmp_chfile);
	if ((rc = case_alloc(c, s->n))) {
		free(f);
		return rc;
	}
	while (i < s->n && ok && !rc) {
		size_t j = i + 1;
		struct kase *k;
		while (j < s->n && same_case(&f[i], &f[j]))
			j++;
		if (!channels_ok(f + i, j - i, m->nch)) {
			snprintf(c->why, sizeof c->why, "case '%.*s' has %zu channel file%s "
				 "starting at _%04d, not _0000.._%04zu", (int)f[i].caselen, f[i].stem,
				 j - i, j - i == 1 ? "" : "s", f[i].num, m->nch - 1);
			ok = 0;
			break;
		}
		k = &c->v[c->n];
		if (!(rc = case_set(k, f[i].stem, f[i].caselen, m->nch))) {
			c->n++;
			for (size_t q = 0; q < m->nch; q++)
				k->src[q] = f[i + q].idx;
			rc = check_id(k->id, s->v[f[i].idx].path);
		}
		i = j;
	}
	free(f);
	if (rc || !ok)
		caselist_release(c);
	return rc ? rc : ok;
}

static int cmp_case(const void *a, const void *b)
{
	return strcmp(((const struct kase *)a)->id, ((const struct kase *)b)->id);
}

static int check_unique(const struct srclist *s, struct caselist *c)
{
	if (c->n > 1)
		qsort(c->v, c->n, sizeof *c->v, cmp_case);
	for (size_t i = 1; i < c->n; i++)
		if (!strcmp(c->v[i - 1].id, c->v[i].id))
			return nnp_err(NNP_EDATA, "'%s' and '%s' are both case '%s'",
				       s->v[c->v[i - 1].src[0]].path, s->v[c->v[i].src[0]].path,
				       c->v[i].id);
	return NNP_OK;
}

/* Some label named exactly like an image file (without the ending)? */
static int label_named_like_image(const struct srclist *s, const struct srclist *lb)
{
	for (size_t i = 0; lb && i < lb->n; i++)
		for (size_t k = 0; k < s->n; k++)
			if (!strcmp(lb->v[i].stem, s->v[k].stem))
				return 1;
	return 0;
}

/* Cases of a folder: channel files if they are named like that (with one
 * channel: all end in _0000 and no label is named like a whole image name),
 * else one file per case. */
static int group(struct imp *m, const struct srclist *s, const struct srclist *lb, int whole,
		 struct caselist *c)
{
	int rc = 0;
	c->why[0] = '\0';
	if (!whole && !(m->nch == 1 && label_named_like_image(s, lb)))
		rc = group_channels(m, s, c);
	if (rc < 0)
		return rc;
	if (rc == 0 && (rc = group_whole(s, c)))
		return rc;
	return check_unique(s, c);
}

static int unpaired_note(char *buf, size_t len, size_t *shown, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int unpaired_note(char *buf, size_t len, size_t *shown, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;
	if ((*shown)++ >= UNPAIRED_SHOWN || used + 8 >= len)
		return 1;
	if (used)
		snprintf(buf + used, len - used, "; ");
	used = strlen(buf);
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
	return 1;
}

/* Match each training case with labelsTr/CASE: every case needs a label
 * and every label a case. */
static int pair_labels(struct imp *m)
{
	struct srclist *lb = &m->lb;
	struct caselist *c = &m->ctr;
	char msg[900] = "";
	size_t i = 0, j = 0, bad = 0, shown = 0;

	for (size_t k = 1; k < lb->n; k++)
		if (!strcmp(lb->v[k - 1].stem, lb->v[k].stem))
			return nnp_err(NNP_EDATA, "'%s' and '%s' are both the label of case '%s'",
				       lb->v[k - 1].path, lb->v[k].path, lb->v[k].stem);
	while (i < c->n || j < lb->n) {
		int d = i == c->n ? 1 : j == lb->n ? -1 : strcmp(c->v[i].id, lb->v[j].stem);
		if (d == 0) {
			c->v[i++].label = (long)j++;
			continue;
		}
		bad++;
		if (d < 0) {
			unpaired_note(msg, sizeof msg, &shown, "image '%s' (case '%s') has no label "
				      "'%s/%s%s'", m->tr.v[c->v[i].src[0]].path, c->v[i].id,
				      lb->dir, c->v[i].id, m->tr.v[c->v[i].src[0]].ending);
			i++;
		} else {
			unpaired_note(msg, sizeof msg, &shown, "label '%s' has no image",
				      lb->v[j].path);
			j++;
		}
	}
	if (!bad)
		return NNP_OK;
	return nnp_err(NNP_EDATA, "%zu unpaired file%s: %s%s", bad, bad == 1 ? "" : "s", msg,
		       bad > UNPAIRED_SHOWN ? "; ..." : "");
}

/* ------------------------------------------------------------------ */
/* checking headers                                                    */

struct hinfo {
	int64_t shape[4];   /* c, z, y, x */
	int ndim;           /* dim[0] of the file */
};

static int header_ndim(const struct nnp_frame *f)
{
	const struct nnp_nifti_hdr *h = f->n_nifti ? &f->nifti[0] : NULL;
	if (h && h->version == 1 && h->raw_len >= sizeof(nifti_1_header)) {
		nifti_1_header x;
		memcpy(&x, h->raw, sizeof x);
		return x.dim[0];
	}
	if (h && h->version == 2 && h->raw_len >= sizeof(nifti_2_header)) {
		nifti_2_header x;
		memcpy(&x, h->raw, sizeof x);
		return (int)x.dim[0];
	}
	return f->shape[0] > 1 ? 4 : 3;
}

/* Make carried 4D headers 3D (for writing single volumes of a 4D file). */
static void headers_to_3d(struct nnp_frame *f)
{
	for (size_t i = 0; i < f->n_nifti; i++) {
		struct nnp_nifti_hdr *h = &f->nifti[i];
		if (h->version == 1 && h->raw_len >= sizeof(nifti_1_header)) {
			nifti_1_header x;
			memcpy(&x, h->raw, sizeof x);
			if (x.dim[0] > 3) {
				x.dim[0] = 3;
				for (int k = 4; k < 8; k++)
					x.dim[k] = 1;
			}
			memcpy(h->raw, &x, sizeof x);
		} else if (h->version == 2 && h->raw_len >= sizeof(nifti_2_header)) {
			nifti_2_header x;
			memcpy(&x, h->raw, sizeof x);
			if (x.dim[0] > 3) {
				x.dim[0] = 3;
				for (int k = 4; k < 8; k++)
					x.dim[k] = 1;
			}
			memcpy(h->raw, &x, sizeof x);
		}
	}
}

static int probe(const char *path, struct hinfo *h)
{
	struct nnp_nifti_in *in;
	const struct nnp_frame *f;
	int rc = nnp_nifti_open(path, &in);
	if (rc)
		return rc;
	f = nnp_nifti_frame(in);
	memcpy(h->shape, f->shape, sizeof h->shape);
	h->ndim = header_ndim(f);
	nnp_nifti_close(in);
	return NNP_OK;
}

static void shape_str(const struct hinfo *h, char *buf, size_t len)
{
	snprintf(buf, len, "%lldx%lldx%lld", (long long)h->shape[3], (long long)h->shape[2],
		 (long long)h->shape[1]);
}

static int same_grid(const struct hinfo *a, const struct hinfo *b)
{
	return a->shape[1] == b->shape[1] && a->shape[2] == b->shape[2] &&
	       a->shape[3] == b->shape[3];
}

static int grid_error(const char *what, const char *p, const struct hinfo *h, const char *ref,
		      const struct hinfo *r)
{
	char a[80], b[80];
	shape_str(h, a, sizeof a);
	shape_str(r, b, sizeof b);
	return nnp_err(NNP_EDATA, "'%s': shape %s (x,y,z) differs from %s '%s' (%s)", p, a, what,
		       ref, b);
}

/* ------------------------------------------------------------------ */
/* the plan: one job per source file                                   */

static int job_add(struct imp *m, const struct src *s, size_t ndst, int convert, struct job **out)
{
	struct job *j;
	if (m->njobs == m->capjobs) {
		size_t nc = m->capjobs ? 2 * m->capjobs : 64;
		struct job *nv = realloc(m->jobs, nc * sizeof *nv);
		if (!nv)
			return oom();
		m->jobs = nv;
		m->capjobs = nc;
	}
	j = &m->jobs[m->njobs];
	memset(j, 0, sizeof *j);
	if (!(j->dst = calloc(ndst, sizeof *j->dst)))
		return oom();
	m->njobs++;
	j->src = s->path;
	j->ndst = ndst;
	j->convert = convert || strcmp(s->ending, m->fe) != 0;
	*out = j;
	return NNP_OK;
}

static const char *channels_origin(const struct imp *m)
{
	return m->o->msd ? "dataset.json's \"modality\" lists" : "--channels gives";
}

/* Check a case's image files and plan their copies into DIR/. */
static int plan_images(struct imp *m, const struct srclist *s, const struct caselist *c,
		       const struct kase *k, const char *dir, struct hinfo *grid)
{
	struct job *j;
	int rc;

	for (size_t q = 0; q < k->nsrc; q++) {
		const struct src *f = &s->v[k->src[q]];
		struct hinfo h;
		if ((rc = probe(f->path, &h)))
			return rc;
		if (c->whole && h.shape[0] != (int64_t)m->nch)
			return nnp_err(NNP_EDATA, "'%s' has %lld volume%s, but %s %zu channel%s%s%s%s",
				       f->path, (long long)h.shape[0], h.shape[0] == 1 ? "" : "s",
				       channels_origin(m), m->nch, m->nch == 1 ? "" : "s",
				       c->why[0] ? " (and the files are not channel files: " : "",
				       c->why, c->why[0] ? ")" : "");
		if (!c->whole && h.shape[0] != 1)
			return nnp_err(NNP_EDATA, "'%s' has %lld volumes, but a channel file "
				       "(CASE_XXXX) must hold one", f->path, (long long)h.shape[0]);
		if (q == 0)
			*grid = h;
		else if (!same_grid(&h, grid))
			return grid_error("the first channel file", f->path, &h,
					  s->v[k->src[0]].path, grid);
		if ((rc = job_add(m, f, c->whole ? m->nch : 1, h.ndim > 3, &j)))
			return rc;
		for (size_t d = 0; d < j->ndst; d++)
			if (!(j->dst[d] = nnp_strprintf("%s/%s_%04zu%s", dir, k->id, c->whole ? d : q,
						  m->fe)))
				return NNP_ENOMEM;
		if (j->ndst > 1)
			j->convert = 1;
	}
	return NNP_OK;
}

static int plan_label(struct imp *m, const struct kase *k, const struct hinfo *grid)
{
	const struct src *f = &m->lb.v[k->label];
	struct hinfo h;
	struct job *j;
	int rc;

	if ((rc = probe(f->path, &h)))
		return rc;
	if (h.shape[0] != 1)
		return nnp_err(NNP_EDATA, "'%s': a label map must be one volume, not %lld",
			       f->path, (long long)h.shape[0]);
	if (!same_grid(&h, grid))
		return grid_error("its image", f->path, &h, m->tr.v[k->src[0]].path, grid);
	if ((rc = job_add(m, f, 1, h.ndim > 3, &j)))
		return rc;
	if (!(j->dst[0] = nnp_strprintf("labelsTr/%s%s", k->id, m->fe)))
		return NNP_ENOMEM;
	return NNP_OK;
}

static int make_plan(struct imp *m)
{
	struct hinfo grid;
	int rc;

	for (size_t i = 0; i < m->ctr.n; i++) {
		if (stopped(m))
			return interrupted();
		if ((rc = plan_images(m, &m->tr, &m->ctr, &m->ctr.v[i], "imagesTr", &grid)) ||
		    (rc = plan_label(m, &m->ctr.v[i], &grid)))
			return rc;
	}
	for (size_t i = 0; i < m->cts.n; i++) {
		if (stopped(m))
			return interrupted();
		if ((rc = plan_images(m, &m->ts, &m->cts, &m->cts.v[i], "imagesTs", &grid)))
			return rc;
	}
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* copying and converting                                              */

static int write_err(const char *dst)
{
	return nnp_err(NNP_EIO, "cannot write '%s': %s", dst, strerror(errno));
}

/* Bytes src -> a new file dst. */
static int copy_bytes(struct imp *m, const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out, rc = NNP_OK, plain = 0;
	char *buf = NULL;

	if (in < 0)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", src, strerror(errno));
	if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666)) < 0) {
		close(in);
		return write_err(dst);
	}
	for (;;) {
		ssize_t k;
		if (stopped(m)) {
			rc = interrupted();
			break;
		}
		if (!plain) {
			k = copy_file_range(in, NULL, out, NULL, COPY_CHUNK, 0);
			if (k < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
				      errno == EOPNOTSUPP || errno == EBADF)) {
				plain = 1;
				continue;
			}
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				rc = errno == EIO ? nnp_err(NNP_EDATA, "cannot read '%s': %s", src,
							    strerror(errno)) : write_err(dst);
				break;
			}
			if (k == 0)
				break;
			continue;
		}
		if (!buf && !(buf = malloc(COPY_CHUNK))) {
			rc = oom();
			break;
		}
		k = read(in, buf, COPY_CHUNK);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rc = nnp_err(NNP_EDATA, "cannot read '%s': %s", src, strerror(errno));
			break;
		}
		if (k == 0)
			break;
		if ((rc = nnp_write_all(out, buf, (size_t)k, dst)))
			break;
	}
	free(buf);
	close(in);
	if (close(out) != 0 && !rc)
		rc = write_err(dst);
	return rc;
}

/* Hard link, or a copy where links cannot be made (another file system). */
static int link_or_copy(struct imp *m, const char *src, const char *dst)
{
	if (m->o->link) {
		if (linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) == 0) {
			m->r->linked++;
			return NNP_OK;
		}
		if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != EOPNOTSUPP &&
		    errno != ENOSYS)
			return nnp_err(NNP_EIO, "cannot link '%s' to '%s': %s", src, dst,
				       strerror(errno));
		m->r->link_fallbacks++;
	}
	m->r->copied++;
	return copy_bytes(m, src, dst);
}

/* Re-encode src: volume d of it into dst[d] (one 3D file each), slab by
 * slab, in file order (4D .nii.gz files must be read sequentially). */
static int convert(struct imp *m, const struct job *j)
{
	struct nnp_nifti_in *in;
	struct nnp_nifti_opts opts = { -1, 0, 0 };
	struct nnp_frame f;
	uint64_t slice;
	int64_t zs, nz;
	void *buf = NULL;
	int rc;

	if ((rc = nnp_nifti_open(j->src, &in)))
		return rc;
	nnp_frame_init(&f);
	if ((rc = nnp_frame_copy(&f, nnp_nifti_frame(in))))
		goto out;
	if (f.shape[0] != (int64_t)j->ndst) {
		rc = nnp_err(NNP_EINTERNAL, "'%s': %lld volumes, %zu outputs planned", j->src,
			     (long long)f.shape[0], j->ndst);
		goto out;
	}
	headers_to_3d(&f);
	slice = (uint64_t)f.shape[2] * (uint64_t)f.shape[3] * nnp_dtype_size(f.dtype);
	nz = f.shape[1];
	zs = slice >= COPY_CHUNK ? 1 : (int64_t)(COPY_CHUNK / slice);
	if (zs > nz)
		zs = nz;
	if (!(buf = malloc((size_t)(slice * (uint64_t)zs)))) {
		rc = oom();
		goto out;
	}
	for (size_t d = 0; d < j->ndst && !rc; d++) {
		struct nnp_nifti_out *o;
		char *dst = nnp_strprintf("%s/%s", m->tmp, j->dst[d]);
		if (!dst) {
			rc = NNP_ENOMEM;
			break;
		}
		rc = nnp_nifti_create(dst, &f, (int64_t)d, 1, 0, &opts, &o);
		free(dst);
		for (int64_t z0 = 0; !rc && z0 < nz; z0 += zs) {
			int64_t k = z0 + zs > nz ? nz - z0 : zs;
			if (stopped(m))
				rc = interrupted();
			else if (!(rc = nnp_nifti_read_slab(in, (int64_t)d, z0, k, buf)))
				rc = nnp_nifti_write(o, buf, (size_t)(slice * (uint64_t)k));
			if (rc)
				nnp_nifti_abort(o);
		}
		if (!rc)
			rc = nnp_nifti_commit(o);
	}
out:
	free(buf);
	nnp_frame_release(&f);
	nnp_nifti_close(in);
	return rc;
}

static int run_job(struct imp *m, const struct job *j)
{
	char *dst;
	int rc;

	if (j->convert) {
		if ((rc = convert(m, j)))
			return rc;
		if (j->ndst > 1)
			m->r->split++;
		else
			m->r->converted++;
		return NNP_OK;
	}
	if (!(dst = nnp_strprintf("%s/%s", m->tmp, j->dst[0])))
		return NNP_ENOMEM;
	rc = link_or_copy(m, j->src, dst);
	free(dst);
	return rc;
}

/* ------------------------------------------------------------------ */
/* dataset.json                                                        */

static json_t *channel_json(char *const *ch, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < n; i++) {
		char k[24];
		snprintf(k, sizeof k, "%zu", i);
		if (json_object_set_new(o, k, json_string(ch[i]))) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* Loose folders: nnU-Net's generate_dataset_json key order. */
static json_t *loose_json(const struct imp *m)
{
	json_t *j = json_object();
	if (!j || json_object_set_new(j, "channel_names", channel_json(m->ch, m->nch)) ||
	    json_object_set(j, "labels", m->labels) ||
	    json_object_set_new(j, "numTraining", json_integer((json_int_t)m->ctr.n)) ||
	    json_object_set_new(j, "file_ending", json_string(m->fe)) ||
	    json_object_set_new(j, "name", json_string(m->r->name)) ||
	    json_object_set_new(j, "description", json_string("imported by nnp import-dataset"))) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* MSD: like nnU-Net's convert_msd_dataset: the task's dataset.json without
 * "modality", "training" and "test", labels inverted to {name: value},
 * "file_ending" and "channel_names" added, numTraining = the cases found. */
static json_t *msd_json(const struct imp *m)
{
	json_t *j = json_deep_copy(m->msd_json);
	if (!j)
		return NULL;
	json_object_del(j, "modality");
	json_object_del(j, "training");
	json_object_del(j, "test");
	if (json_object_set(j, "labels", m->labels) ||
	    json_object_set_new(j, "numTraining", json_integer((json_int_t)m->ctr.n)) ||
	    json_object_set_new(j, "file_ending", json_string(m->fe)) ||
	    json_object_set_new(j, "channel_names", channel_json(m->ch, m->nch))) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static int write_dataset_json(struct imp *m)
{
	json_t *j = m->o->msd ? msd_json(m) : loose_json(m);
	char *p;
	int rc;
	if (!j)
		return oom();
	if (!(p = nnp_strprintf("%s/dataset.json", m->tmp))) {
		json_decref(j);
		return NNP_ENOMEM;
	}
	rc = nnp_json_write_file(j, p, 4, 0, 0);
	free(p);
	json_decref(j);
	return rc;
}

/* ------------------------------------------------------------------ */
/* the output folder                                                   */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p) != 0 && errno != ENOENT ? -1 : 0;
}

static void remove_tree(const char *p)
{
	nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Another folder with the same dataset id in root? */
static int check_id_free(struct imp *m)
{
	char prefix[16];
	DIR *dp = opendir(m->root);
	struct dirent *e;
	size_t plen;
	int rc = NNP_OK;

	if (!dp)
		return NNP_OK;   /* created later */
	plen = (size_t)snprintf(prefix, sizeof prefix, "Dataset%03d", m->id);
	while ((e = readdir(dp))) {
		if (strncmp(e->d_name, prefix, plen) || isdigit((unsigned char)e->d_name[plen]) ||
		    !strcmp(e->d_name, m->r->name))
			continue;
		rc = nnp_err(NNP_EUSAGE, "dataset id %03d is already used by '%s/%s': choose "
			     "another id (-d)", m->id, m->root, e->d_name);
		break;
	}
	closedir(dp);
	return rc;
}

static int make_tmp(struct imp *m)
{
	static const char *const sub[] = { "imagesTr", "labelsTr", "imagesTs" };
	int k = snprintf(m->tmp, sizeof m->tmp, "%s/.%s.tmp%ld", m->root, m->r->name,
			 (long)getpid());
	int rc;

	if (k < 0 || (size_t)k >= sizeof m->tmp)
		return nnp_err(NNP_EUSAGE, "output path too long: '%s'", m->root);
	if ((rc = nnp_mkdirs(m->root)))
		return rc;
	remove_tree(m->tmp);   /* left by an earlier process with our pid */
	if (mkdir(m->tmp, 0777) != 0)
		return nnp_err(NNP_EIO, "cannot create folder '%s': %s", m->tmp, strerror(errno));
	m->tmp_made = 1;
	for (int i = 0; i < 3; i++) {
		char *p;
		if (i == 2 && !m->cts.n)
			break;
		if (!(p = nnp_strprintf("%s/%s", m->tmp, sub[i])))
			return NNP_ENOMEM;
		rc = mkdir(p, 0777) ? nnp_err(NNP_EIO, "cannot create folder '%s': %s", p,
					      strerror(errno)) : NNP_OK;
		free(p);
		if (rc)
			return rc;
	}
	return NNP_OK;
}

static int exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

static int exists_error(const char *p)
{
	return nnp_err(NNP_EUSAGE, "'%s' exists (use --force to replace it)", p);
}

/* Rename the finished folder into place (replacing the old one with force). */
static int install(struct imp *m)
{
	char old[PATH_MAX];
	int k;

	if (!exists(m->target)) {
		if (renameat2(AT_FDCWD, m->tmp, AT_FDCWD, m->target, RENAME_NOREPLACE) == 0)
			goto done;
		if (errno == EEXIST)
			return exists_error(m->target);
		if (errno != EINVAL && errno != ENOSYS)
			goto fail;
		if (rename(m->tmp, m->target) == 0)
			goto done;
		goto fail;
	}
	if (!m->o->force)
		return exists_error(m->target);
	if (renameat2(AT_FDCWD, m->tmp, AT_FDCWD, m->target, RENAME_EXCHANGE) == 0) {
		remove_tree(m->tmp);   /* the old dataset */
		goto done;
	}
	if (errno != EINVAL && errno != ENOSYS)
		goto fail;
	k = snprintf(old, sizeof old, "%s/.%s.old%ld", m->root, m->r->name, (long)getpid());
	if (k < 0 || (size_t)k >= sizeof old)
		return nnp_err(NNP_EUSAGE, "output path too long: '%s'", m->root);
	if (rename(m->target, old) != 0)
		goto fail;
	if (rename(m->tmp, m->target) != 0) {
		int e = errno;
		rename(old, m->target);
		errno = e;
		goto fail;
	}
	remove_tree(old);
done:
	m->tmp_made = 0;
	return NNP_OK;
fail:
	return nnp_err(NNP_EIO, "cannot rename '%s' to '%s': %s", m->tmp, m->target,
		       strerror(errno));
}

/* ------------------------------------------------------------------ */
/* options and inputs                                                  */

static int check_name(const char *name)
{
	if (!name || !*name)
		return nnp_err(NNP_EUSAGE, "the dataset needs a name (-n NAME, like Liver)");
	if (strlen(name) > NNP_IMPORT_NAME_MAX)
		return nnp_err(NNP_EUSAGE, "dataset name longer than %d bytes",
			       NNP_IMPORT_NAME_MAX);
	if (name[0] == '.' || strchr(name, '/') || has_ctrl(name) || strpbrk(name, " \t"))
		return nnp_err(NNP_EUSAGE, "dataset name '%s': must not start with '.' nor "
			       "contain '/' or blanks", name);
	return NNP_OK;
}

/* "Task03_Liver" -> 3, "Liver" (nnU-Net's convert_MSD_dataset). */
static int task_name(const char *dir, int *id, char *name, size_t len)
{
	size_t n = strlen(dir);
	const char *b, *us;
	char *end;
	long v;

	while (n > 1 && dir[n - 1] == '/')
		n--;
	b = dir + n;
	while (b > dir && b[-1] != '/')
		b--;
	us = memchr(b, '_', (size_t)(dir + n - b));
	if (strncmp(b, "Task", 4) || !us || us == b + 4 || us + 1 >= dir + n)
		return 0;
	errno = 0;
	v = strtol(b + 4, &end, 10);
	if (end != us || errno || v < 0 || v > NNP_IMPORT_ID_MAX || !isdigit((unsigned char)b[4]))
		return 0;
	*id = (int)v;
	snprintf(name, len, "%.*s", (int)(dir + n - us - 1), us + 1);
	return 1;
}

static int msd_channels(struct imp *m, const char *file)
{
	const char *key = json_object_get(m->msd_json, "modality") ? "modality" : "channel_names";
	json_t *o = json_object_get(m->msd_json, key);
	size_t n;

	if (!json_is_object(o) || !(n = json_object_size(o)) || n > CHANNELS_MAX)
		return nnp_err(NNP_EDATA, "'%s': modality: must be a non-empty dict like "
			       "{\"0\": \"CT\"}", file);
	if (!(m->msd_ch = calloc(n, sizeof *m->msd_ch)))
		return oom();
	m->nch = n;
	for (size_t i = 0; i < n; i++) {
		char k[24];
		json_t *v;
		snprintf(k, sizeof k, "%zu", i);
		v = json_object_get(o, k);
		if (!json_is_string(v))
			return nnp_err(NNP_EDATA, "'%s': %s: \"%s\" is missing or not a string "
				       "(keys must be \"0\"..\"%zu\")", file, key, k, n - 1);
		if (!(m->msd_ch[i] = strdup(json_string_value(v))))
			return oom();
	}
	m->ch = m->msd_ch;
	return NNP_OK;
}

/* MSD labels {"0": "background", "1": "liver"} -> {"background": 0, ...}. */
static int msd_labels(struct imp *m, const char *file)
{
	json_t *o = json_object_get(m->msd_json, "labels"), *v;
	const char *k;
	int rc;

	if (!json_is_object(o) || !json_object_size(o) || json_object_size(o) > LABELS_MAX)
		return nnp_err(NNP_EDATA, "'%s': labels: must be a non-empty dict like "
			       "{\"0\": \"background\", \"1\": \"liver\"}", file);
	if (!(m->labels = json_object()))
		return oom();
	json_object_foreach(o, k, v) {
		char *end;
		long x;
		errno = 0;
		x = strtol(k, &end, 10);
		if (!isdigit((unsigned char)k[0]) || *end || errno || x > LABELS_MAX)
			return nnp_err(NNP_EDATA, "'%s': labels: key \"%s\" is not a label value",
				       file, k);
		if (!json_is_string(v) || !*json_string_value(v))
			return nnp_err(NNP_EDATA, "'%s': labels: \"%s\": must be a name", file, k);
		if (json_object_get(m->labels, json_string_value(v)))
			return nnp_err(NNP_EDATA, "'%s': labels: '%s' is used twice", file,
				       json_string_value(v));
		if (json_object_set_new(m->labels, json_string_value(v), json_integer(x)))
			return oom();
	}
	if ((rc = check_label_values(m->labels, "labels")))
		return nnp_err_ctx(NNP_EDATA, "'%s'", file);
	return NNP_OK;
}

static int setup_msd(struct imp *m, char *name, size_t len, int *id)
{
	char *file;
	int rc, tid = -1;

	if (!nnp_is_dir(m->o->msd))
		return nnp_err(NNP_EDATA, "MSD task folder '%s': %s", m->o->msd,
			       access(m->o->msd, F_OK) ? strerror(errno) : "not a folder");
	if (!task_name(m->o->msd, &tid, name, len) && (m->o->id < 0 || !m->o->name))
		return nnp_err(NNP_EUSAGE, "'%s' is not named TaskNN_Name: give the dataset id "
			       "and name with -d and -n", m->o->msd);
	if (m->o->name)
		snprintf(name, len, "%s", m->o->name);
	*id = m->o->id >= 0 ? m->o->id : tid;
	if (!(file = nnp_strprintf("%s/dataset.json", m->o->msd)))
		return NNP_ENOMEM;
	rc = nnp_json_load(file, &m->msd_json);
	if (!rc && !json_is_object(m->msd_json))
		rc = nnp_err(NNP_EDATA, "'%s': must be a JSON object", file);
	if (!rc)
		rc = msd_channels(m, file);
	if (!rc)
		rc = msd_labels(m, file);
	free(file);
	if (rc)
		return rc;
	if (!(m->msd_paths[0] = nnp_strprintf("%s/imagesTr", m->o->msd)) ||
	    !(m->msd_paths[1] = nnp_strprintf("%s/labelsTr", m->o->msd)) ||
	    !(m->msd_paths[2] = nnp_strprintf("%s/imagesTs", m->o->msd)))
		return NNP_ENOMEM;
	m->images = m->msd_paths[0];
	m->labelsdir = m->msd_paths[1];
	m->test = nnp_is_dir(m->msd_paths[2]) ? m->msd_paths[2] : NULL;
	return NNP_OK;
}

static int setup_loose(struct imp *m, char *name, size_t len, int *id)
{
	int rc;
	if (!m->o->images || !m->o->labels)
		return nnp_err(NNP_EUSAGE, "give --images DIR and --labels DIR (or --msd TASK)");
	if (!m->o->channels || !m->o->nchannels)
		return nnp_err(NNP_EUSAGE, "give the channel names (--channels CT or T1,T2)");
	if (m->o->nchannels > CHANNELS_MAX)
		return nnp_err(NNP_EUSAGE, "too many channels (at most %d)", CHANNELS_MAX);
	if (!m->o->labels_map)
		return nnp_err(NNP_EUSAGE, "give the labels (--labels-map background=0,NAME=1)");
	if ((rc = check_label_values(m->o->labels_map, "labels")))
		return rc;
	if (m->o->id < 0)
		return nnp_err(NNP_EUSAGE, "give the dataset id (-d N, 0..%d)", NNP_IMPORT_ID_MAX);
	if (!(m->labels = json_deep_copy(m->o->labels_map)))
		return oom();
	m->ch = m->o->channels;
	m->nch = m->o->nchannels;
	m->images = m->o->images;
	m->labelsdir = m->o->labels;
	m->test = m->o->test_images;
	snprintf(name, len, "%s", m->o->name ? m->o->name : "");
	*id = m->o->id;
	return NNP_OK;
}

/* The MSD "training" list should name the cases found. */
static void msd_crosscheck(struct imp *m)
{
	json_t *t = json_object_get(m->msd_json, "training"),
	       *nt = json_object_get(m->msd_json, "numTraining");
	if (json_is_array(t) && json_array_size(t) != m->ctr.n)
		warnf(m, "'%s/dataset.json' lists %zu training cases, but '%s' holds %zu",
		      m->o->msd, json_array_size(t), m->images, m->ctr.n);
	else if (json_is_integer(nt) && json_integer_value(nt) != (json_int_t)m->ctr.n)
		warnf(m, "'%s/dataset.json' says numTraining %lld, but '%s' holds %zu cases "
		      "(numTraining is set to %zu)", m->o->msd, (long long)json_integer_value(nt),
		      m->images, m->ctr.n, m->ctr.n);
}

static int find_cases(struct imp *m)
{
	int msd = m->o->msd != NULL, rc;

	if ((rc = list_folder(m, m->images, msd, &m->tr)) ||
	    (rc = list_folder(m, m->labelsdir, msd, &m->lb)))
		return rc;
	if (!m->tr.n)
		return nnp_err(NNP_EDATA, "no NIfTI images (.nii.gz, .nii, .hdr) in '%s'",
			       m->images);
	if ((rc = group(m, &m->tr, &m->lb, msd, &m->ctr)) || (rc = pair_labels(m)))
		return rc;
	if (m->test) {
		if ((rc = list_folder(m, m->test, msd, &m->ts)) ||
		    (rc = group(m, &m->ts, NULL, msd, &m->cts)))
			return rc;
	}
	if (msd)
		msd_crosscheck(m);
	return NNP_OK;
}

static int setup(struct imp *m)
{
	const char *fe = m->o->file_ending ? m->o->file_ending : ".nii.gz";
	int id = -1, rc, k;
	char name[NNP_IMPORT_NAME_MAX + 1] = "";

	if (strcmp(fe, ".nii.gz") && strcmp(fe, ".nii"))
		return nnp_err(NNP_EUSAGE, "--file-ending must be .nii.gz or .nii, not '%s'", fe);
	m->fe = fe;
	if (!m->o->out || !*m->o->out)
		return nnp_err(NNP_EUSAGE, "no output folder: give --out DIR or set nnUNet_raw");
	if (m->o->msd && (m->o->images || m->o->labels || m->o->test_images || m->o->channels ||
			  m->o->labels_map))
		return nnp_err(NNP_EUSAGE, "--msd takes the images, labels, channels and labels "
			       "from the task folder: no --images, --labels, --test-images, "
			       "--channels or --labels-map");
	if (m->o->msd)
		rc = setup_msd(m, name, sizeof name, &id);
	else
		rc = setup_loose(m, name, sizeof name, &id);
	if (rc || (rc = check_name(name)))
		return rc;
	if (id < 0 || id > NNP_IMPORT_ID_MAX)
		return nnp_err(NNP_EUSAGE, "dataset id %d is out of range (0..%d)", id,
			       NNP_IMPORT_ID_MAX);
	m->id = id;
	snprintf(m->r->name, sizeof m->r->name, "Dataset%03d_%s", id, name);
	k = snprintf(m->root, sizeof m->root, "%s", m->o->out);
	while (k > 1 && m->root[k - 1] == '/')
		m->root[--k] = '\0';
	k = snprintf(m->target, sizeof m->target, "%s/%s", m->root, m->r->name);
	if (k < 0 || (size_t)k >= sizeof m->target - 64)
		return nnp_err(NNP_EUSAGE, "output path too long: '%s'", m->root);
	if (exists(m->target) && !m->o->force)
		return exists_error(m->target);
	return check_id_free(m);
}

int nnp_import(const struct nnp_import_opts *o, struct nnp_import_result *r)
{
	struct imp m;
	int rc;

	memset(r, 0, sizeof *r);
	memset(&m, 0, sizeof m);
	m.o = o;
	m.r = r;
	/* everything is checked before anything is written */
	if (!(rc = setup(&m)) && !(rc = find_cases(&m)))
		rc = make_plan(&m);
	if (!rc)
		rc = make_tmp(&m);
	for (size_t i = 0; !rc && i < m.njobs; i++) {
		if (stopped(&m))
			rc = interrupted();
		else
			rc = run_job(&m, &m.jobs[i]);
		if (!rc && o->progress)
			o->progress(o->ctx, i + 1, m.njobs);
	}
	if (!rc)
		rc = write_dataset_json(&m);
	if (!rc && stopped(&m))
		rc = interrupted();
	if (!rc)
		rc = install(&m);
	if (m.tmp_made)
		remove_tree(m.tmp);
	if (!rc) {
		snprintf(r->dir, sizeof r->dir, "%s", m.target);
		r->ntrain = m.ctr.n;
		r->ntest = m.cts.n;
	}
	imp_release(&m);
	return rc;
}
