/* split.c — splits_final.json like nnU-Net's trainer and planner
 * (nnunet-facts.md §1.5; see split.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "json.h"
#include "rng.h"
#include "split.h"

#define SCAN_MAX NNP_DATASET_FILES_MAX   /* directory entries looked at per folder */

static int oom(void)
{
	return nnp_err(NNP_ENOMEM, "out of memory");
}

static void set_str(char *dst, size_t len, const char *src)
{
	if (dst && len)
		snprintf(dst, len, "%s", src);
}

/* ------------------------------------------------------------------ */
/* KFold and the random fallback                                       */

void nnp_fold_release(struct nnp_fold *f)
{
	if (!f)
		return;
	free(f->train);
	free(f->val);
	memset(f, 0, sizeof *f);
}

void nnp_folds_free(struct nnp_fold *folds, size_t k)
{
	for (size_t i = 0; folds && i < k; i++)
		nnp_fold_release(&folds[i]);
	free(folds);
}

/* Fill f from a membership mask: val = marked indices, train = the rest,
 * both ascending. */
static int fold_from_mask(struct nnp_fold *f, const unsigned char *isval, size_t n, size_t nval)
{
	f->train = malloc((n - nval ? n - nval : 1) * sizeof *f->train);
	f->val = malloc((nval ? nval : 1) * sizeof *f->val);
	if (!f->train || !f->val) {
		nnp_fold_release(f);
		return oom();
	}
	f->ntrain = f->nval = 0;
	for (size_t i = 0; i < n; i++) {
		if (isval[i])
			f->val[f->nval++] = i;
		else
			f->train[f->ntrain++] = i;
	}
	return NNP_OK;
}

int nnp_kfold(size_t n, size_t k, uint32_t seed, struct nnp_fold **out)
{
	struct nnp_rs rs;
	struct nnp_fold *folds;
	int64_t *idx;
	unsigned char *mask;
	size_t start = 0;
	int rc = NNP_OK;

	*out = NULL;
	if (k < 2)
		return nnp_err(NNP_EUSAGE, "the number of folds must be at least 2, not %zu", k);
	if (n < k)
		return nnp_err(NNP_EDATA, "%zu case%s cannot be split into %zu folds (every fold "
			       "needs at least one validation case)", n, n == 1 ? "" : "s", k);
	if (n > NNP_CASES_MAX)
		return nnp_err(NNP_EDATA, "too many cases (%zu, at most %d)", n, NNP_CASES_MAX);
	idx = malloc(n * sizeof *idx);
	mask = malloc(n);
	folds = calloc(k, sizeof *folds);
	if (!idx || !mask || !folds) {
		free(idx);
		free(mask);
		free(folds);
		return oom();
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = (int64_t)i;
	nnp_rs_seed(&rs, seed);
	nnp_rs_shuffle(&rs, idx, n);
	for (size_t f = 0; f < k && !rc; f++) {
		size_t size = n / k + (f < n % k);
		memset(mask, 0, n);
		for (size_t i = start; i < start + size; i++)
			mask[idx[i]] = 1;
		start += size;
		rc = fold_from_mask(&folds[f], mask, n, size);
	}
	free(idx);
	free(mask);
	if (rc) {
		nnp_folds_free(folds, k);
		return rc;
	}
	*out = folds;
	return NNP_OK;
}

int nnp_split_random(size_t n, uint32_t seed, struct nnp_fold *f)
{
	struct nnp_rs rs;
	int64_t *perm;
	unsigned char *mask;
	size_t ntr = (size_t)((double)n * 0.8);   /* Python's int(n * 0.8) */
	int rc;

	memset(f, 0, sizeof *f);
	if (n < 1)
		return nnp_err(NNP_EDATA, "no cases to split");
	if (n > NNP_CASES_MAX)
		return nnp_err(NNP_EDATA, "too many cases (%zu, at most %d)", n, NNP_CASES_MAX);
	perm = malloc(n * sizeof *perm);
	mask = calloc(n, 1);
	if (!perm || !mask) {
		free(perm);
		free(mask);
		return oom();
	}
	/* choice(n, ntr, replace=False) = permutation(n)[:ntr] */
	nnp_rs_seed(&rs, seed);
	nnp_rs_permutation(&rs, perm, n);
	for (size_t i = ntr; i < n; i++)
		mask[perm[i]] = 1;
	rc = fold_from_mask(f, mask, n, n - ntr);
	if (!rc)   /* train in draw order, not ascending */
		for (size_t i = 0; i < ntr; i++)
			f->train[i] = (size_t)perm[i];
	free(perm);
	free(mask);
	return rc;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */

static json_t *id_list(char *const *ids, const size_t *idx, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		if (json_array_append_new(a, json_string(ids[idx[i]]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

json_t *nnp_fold_json(char *const *ids, const struct nnp_fold *f)
{
	json_t *o = json_object(), *tr = id_list(ids, f->train, f->ntrain),
	       *va = id_list(ids, f->val, f->nval);
	if (!o || !tr || !va || json_object_set_new(o, "train", tr)) {
		json_decref(o);
		json_decref(tr);
		json_decref(va);
		return NULL;
	}
	if (json_object_set_new(o, "val", va)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *nnp_splits_json(char *const *ids, const struct nnp_fold *folds, size_t k)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < k; i++) {
		if (json_array_append_new(a, nnp_fold_json(ids, &folds[i]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int known_id(const char *s, char *const *ids, size_t n)
{
	return bsearch(&s, ids, n, sizeof *ids, cmp_strp) != NULL;
}

/* The strings of list (already checked to be strings), sorted. */
static int sorted_strings(const json_t *list, const char ***out)
{
	size_t n = json_array_size(list);
	const char **v = malloc((n ? n : 1) * sizeof *v);
	if (!v)
		return oom();
	for (size_t i = 0; i < n; i++)
		v[i] = json_string_value(json_array_get(list, i));
	qsort(v, n, sizeof *v, cmp_strp);
	*out = v;
	return NNP_OK;
}

static int check_list(const json_t *fold, const char *key, const char *file, size_t fi,
		      char *const *ids, size_t n)
{
	const json_t *l = json_object_get(fold, key);
	const char **v;
	size_t m;
	int rc = NNP_OK;

	if (!l)
		return nnp_err(NNP_EDATA, "'%s': fold %zu: \"%s\" is missing", file, fi, key);
	if (!json_is_array(l))
		return nnp_err(NNP_EDATA, "'%s': fold %zu: \"%s\" must be a list of case ids",
			       file, fi, key);
	if (!(m = json_array_size(l)))
		return nnp_err(NNP_EDATA, "'%s': fold %zu: \"%s\" is empty", file, fi, key);
	if (m > NNP_CASES_MAX)
		return nnp_err(NNP_EDATA, "'%s': fold %zu: %s: too many ids (at most %d)", file,
			       fi, key, NNP_CASES_MAX);
	for (size_t i = 0; i < m; i++) {
		const json_t *s = json_array_get(l, i);
		if (!json_is_string(s) || !*json_string_value(s))
			return nnp_err(NNP_EDATA, "'%s': fold %zu: %s[%zu]: must be a case id "
				       "(a non-empty string)", file, fi, key, i);
		if (ids && !known_id(json_string_value(s), ids, n))
			return nnp_err(NNP_EDATA, "'%s': fold %zu: %s: '%s' is not a case of the "
				       "dataset", file, fi, key, json_string_value(s));
	}
	if ((rc = sorted_strings(l, &v)))
		return rc;
	for (size_t i = 1; i < m && !rc; i++)
		if (!strcmp(v[i - 1], v[i]))
			rc = nnp_err(NNP_EDATA, "'%s': fold %zu: %s: '%s' is listed twice", file,
				     fi, key, v[i]);
	free(v);
	return rc;
}

int nnp_splits_validate(const json_t *splits, const char *file, char *const *ids, size_t n)
{
	size_t k;
	int rc;

	if (!json_is_array(splits) || !(k = json_array_size(splits)))
		return nnp_err(NNP_EDATA, "'%s': must be a non-empty list of folds "
			       "[{\"train\": [...], \"val\": [...]}, ...]", file);
	for (size_t i = 0; i < k; i++) {
		const json_t *f = json_array_get(splits, i);
		if (!json_is_object(f))
			return nnp_err(NNP_EDATA, "'%s': fold %zu: must be a dict {\"train\": [...], "
				       "\"val\": [...]}", file, i);
		if ((rc = check_list(f, "train", file, i, ids, n)) ||
		    (rc = check_list(f, "val", file, i, ids, n)))
			return rc;
	}
	return NNP_OK;
}

/* Same set of strings (both lists validated: strings, no duplicates)? */
static int same_set(const json_t *a, const json_t *b, const char **diff)
{
	const char **x = NULL, **y = NULL;
	size_t na = json_array_size(a), nb = json_array_size(b);
	int same = 1;

	*diff = NULL;
	if (sorted_strings(a, &x) || sorted_strings(b, &y)) {
		free(x);
		return -1;
	}
	for (size_t i = 0, j = 0; i < na || j < nb;) {
		int c = i == na ? 1 : j == nb ? -1 : strcmp(x[i], y[j]);
		if (c) {
			*diff = c < 0 ? x[i] : y[j];
			same = 0;
			break;
		}
		i++;
		j++;
	}
	free(x);
	free(y);
	return same;
}

int nnp_splits_compare(const json_t *src, const char *srcname, const json_t *dst,
		       const char *dstname)
{
	size_t k = json_array_size(src);
	static const char *const keys[2] = { "train", "val" };

	if (json_array_size(dst) < k)
		return nnp_err(NNP_EDATA, "'%s' has %zu folds but '%s' only %zu: the splits differ "
			       "(remove one of them)", srcname, k, dstname, json_array_size(dst));
	for (size_t i = 0; i < k; i++) {
		for (int w = 0; w < 2; w++) {
			const char *d;
			int s = same_set(json_object_get(json_array_get(src, i), keys[w]),
					 json_object_get(json_array_get(dst, i), keys[w]), &d);
			if (s < 0)
				return NNP_ENOMEM;
			if (!s)
				return nnp_err(NNP_EDATA, "'%s' and '%s' differ in fold %zu (%s: '%s'): "
					       "remove one of them", srcname, dstname, i, keys[w], d);
		}
	}
	return NNP_OK;
}

int nnp_splits_load(const char *path, char *const *ids, size_t n, json_t **out)
{
	struct stat st;
	json_t *j;
	int rc;

	*out = NULL;
	if (stat(path, &st) != 0)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return nnp_err(NNP_EDATA, "'%s' is not a regular file", path);
	if ((long long)st.st_size > NNP_SPLIT_JSON_MAX)
		return nnp_err(NNP_EDATA, "'%s': too large (%lld bytes, at most %lld)", path,
			       (long long)st.st_size, NNP_SPLIT_JSON_MAX);
	if ((rc = nnp_json_load(path, &j)))
		return rc;
	if ((rc = nnp_splits_validate(j, path, ids, n))) {
		json_decref(j);
		return rc;
	}
	*out = j;
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* case ids                                                            */

void nnp_strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

int nnp_ids_sort(char **ids, size_t n)
{
	if (n > 1)
		qsort(ids, n, sizeof *ids, cmp_strp);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(ids[i - 1], ids[i]))
			return nnp_err(NNP_EDATA, "case id '%s' occurs twice", ids[i]);
	return NNP_OK;
}

struct strv {
	char **v;
	size_t n, cap;
};

static int strv_add(struct strv *s, const char *p, size_t len, const char *where)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? 2 * s->cap : 64;
		char **nv;
		if (s->n >= NNP_CASES_MAX)
			return nnp_err(NNP_EDATA, "'%s': too many cases (at most %d)", where,
				       NNP_CASES_MAX);
		if (!(nv = realloc(s->v, nc * sizeof *nv)))
			return oom();
		s->v = nv;
		s->cap = nc;
	}
	if (!(s->v[s->n] = strndup(p, len)))
		return oom();
	s->n++;
	return NNP_OK;
}

static int ends_with(const char *s, size_t n, const char *suf)
{
	size_t m = strlen(suf);
	return n > m && !memcmp(s + n - m, suf, m);
}

/* The case id a preprocessed file name stands for; 0 if none. */
static size_t case_file_id(const char *name)
{
	size_t n = strlen(name);
	if (name[0] == '.')
		return 0;
	if (ends_with(name, n, ".b2nd"))
		return ends_with(name, n, "_seg.b2nd") ? 0 : n - 5;
	if (ends_with(name, n, ".nnp"))
		return ends_with(name, n, "_seg.nnp") ? 0 : n - 4;
	if (ends_with(name, n, ".npz"))
		return n - 4;
	return 0;
}

/* Case ids of one data folder, sorted and distinct (a CASE.b2nd next to a
 * CASE.npz is one case). */
static int folder_ids(const char *dir, struct strv *s)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	size_t seen = 0, k = 0;
	int rc = NNP_OK;

	if (!dp)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", dir, strerror(errno));
	while (!rc && (e = readdir(dp))) {
		size_t len = case_file_id(e->d_name);
		if (++seen > SCAN_MAX)
			rc = nnp_err(NNP_EDATA, "'%s': too many files (at most %d)", dir, SCAN_MAX);
		else if (len)
			rc = strv_add(s, e->d_name, len, dir);
	}
	closedir(dp);
	if (rc)
		return rc;
	if (s->n > 1)
		qsort(s->v, s->n, sizeof *s->v, cmp_strp);
	for (size_t i = 0; i < s->n; i++) {
		if (k && !strcmp(s->v[k - 1], s->v[i])) {
			free(s->v[i]);
			continue;
		}
		s->v[k++] = s->v[i];
	}
	s->n = k;
	return NNP_OK;
}

/* First id in one list but not the other (both sorted), NULL if equal. */
static const char *first_difference(const struct strv *a, const struct strv *b)
{
	size_t i = 0, j = 0;
	while (i < a->n || j < b->n) {
		int c = i == a->n ? 1 : j == b->n ? -1 : strcmp(a->v[i], b->v[j]);
		if (c)
			return c < 0 ? a->v[i] : b->v[j];
		i++;
		j++;
	}
	return NULL;
}

static int skip_subfolder(const char *name)
{
	return name[0] == '.' || !strcmp(name, "gt_segmentations");
}

/* Sorted names of the data subfolders of dir. */
static int data_subfolders(const char *dir, struct strv *s)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX];
	size_t seen = 0;
	int rc = NNP_OK;

	if (!dp)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", dir, strerror(errno));
	while (!rc && (e = readdir(dp))) {
		if (skip_subfolder(e->d_name))
			continue;
		if (++seen > 4096) {
			rc = nnp_err(NNP_EDATA, "'%s': too many subfolders", dir);
			break;
		}
		if (!(rc = nnp_path_join(p, sizeof p, dir, e->d_name)) && nnp_is_dir(p))
			rc = strv_add(s, e->d_name, strlen(e->d_name), dir);
	}
	closedir(dp);
	if (!rc && s->n > 1)
		qsort(s->v, s->n, sizeof *s->v, cmp_strp);
	return rc;
}

static void strv_release(struct strv *s)
{
	nnp_strv_free(s->v, s->n);
	memset(s, 0, sizeof *s);
}

static int one_data_folder(const char *dir, const char *data, char ***ids, size_t *n,
			   char *from, size_t fromlen)
{
	struct strv s = { 0 };
	char p[PATH_MAX];
	int rc;

	if ((rc = nnp_path_join(p, sizeof p, dir, data)))
		return rc;
	if (!nnp_is_dir(p))
		return nnp_err(NNP_EDATA, "data folder '%s': %s", p,
			       access(p, F_OK) ? strerror(errno) : "not a folder");
	if ((rc = folder_ids(p, &s)))
		goto fail;
	if (!s.n) {
		rc = nnp_err(NNP_EDATA, "'%s' holds no preprocessed cases (CASE.b2nd, CASE.npz "
			     "or CASE.nnp)", p);
		goto fail;
	}
	set_str(from, fromlen, p);
	*ids = s.v;
	*n = s.n;
	return NNP_OK;
fail:
	strv_release(&s);
	return rc;
}

int nnp_preprocessed_ids(const char *dir, const char *data, char ***ids, size_t *n, char *from,
			 size_t fromlen)
{
	struct strv subs = { 0 }, best = { 0 };
	char p[PATH_MAX], bestname[PATH_MAX] = "";
	int rc = NNP_OK;

	*ids = NULL;
	*n = 0;
	set_str(from, fromlen, "");
	if (data)
		return one_data_folder(dir, data, ids, n, from, fromlen);
	if ((rc = data_subfolders(dir, &subs)))
		return rc;
	for (size_t i = 0; i < subs.n && !rc; i++) {
		struct strv s = { 0 };
		const char *d;
		if ((rc = nnp_path_join(p, sizeof p, dir, subs.v[i])) || (rc = folder_ids(p, &s))) {
			strv_release(&s);
			break;
		}
		if (!s.n) {
			strv_release(&s);
			continue;
		}
		if (!best.n) {
			best = s;
			snprintf(bestname, sizeof bestname, "%s", p);
			continue;
		}
		if ((d = first_difference(&best, &s)))
			rc = nnp_err(NNP_EDATA, "data folders '%s' and '%s' hold different cases "
				     "('%s' is in only one): choose one (nnp split --data NAME)",
				     bestname, p, d);
		strv_release(&s);
	}
	strv_release(&subs);
	if (rc) {
		strv_release(&best);
		return rc;
	}
	set_str(from, fromlen, bestname);
	*ids = best.v;
	*n = best.n;
	return NNP_OK;
}

int nnp_raw_ids(const char *rawdir, char ***ids, size_t *n)
{
	struct nnp_dataset *d;
	struct nnp_case *v;
	size_t nc;
	char **out;
	int rc;

	*ids = NULL;
	*n = 0;
	if ((rc = nnp_dataset_open(rawdir, &d)))
		return rc;
	rc = nnp_dataset_cases(d, "Tr", &v, &nc);
	nnp_dataset_free(d);
	if (rc)
		return rc;
	if (!(out = calloc(nc ? nc : 1, sizeof *out))) {
		nnp_cases_free(v, nc);
		return oom();
	}
	for (size_t i = 0; i < nc; i++) {   /* take the ids over */
		out[i] = v[i].id;
		v[i].id = NULL;
	}
	nnp_cases_free(v, nc);
	if ((rc = nnp_ids_sort(out, nc))) {
		nnp_err_ctx(rc, "'%s'", rawdir);
		nnp_strv_free(out, nc);
		return rc;
	}
	*ids = out;
	*n = nc;
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* the step                                                            */

static const char *base_name(const char *dir, char *buf, size_t len)
{
	size_t n = strlen(dir);
	const char *s;
	while (n > 1 && dir[n - 1] == '/')
		n--;
	snprintf(buf, len, "%.*s", (int)n, dir);
	s = strrchr(buf, '/');
	return s && s[1] ? s + 1 : buf;
}

/* The raw dataset folder: o->raw, else the folder's own name in
 * $nnUNet_raw (looked up there only, never relative to the current
 * directory, which may be $nnUNet_preprocessed itself).  1 found, <0 error. */
static int find_raw(const struct nnp_split_opts *o, char *raw, size_t len)
{
	char buf[PATH_MAX];
	const char *name, *root;
	int rc;

	if (o->raw)
		return (rc = nnp_dataset_resolve(o->raw, "nnUNet_raw", raw, len)) ? rc : 1;
	name = base_name(o->dir, buf, sizeof buf);
	if (strncmp(name, "Dataset", 7))
		return nnp_err(NNP_EDATA, "'%s' is not named DatasetXXX_Name, so its raw dataset "
			       "cannot be looked up in $nnUNet_raw (give it with --raw)", o->dir);
	root = getenv("nnUNet_raw");
	if (!root || !*root)
		return nnp_err(NNP_EUSAGE, "nnUNet_raw is not set: set it (export nnUNet_raw="
			       "/path/to/nnUNet_raw) or give the raw dataset with --raw");
	if ((rc = nnp_path_join(raw, len, root, name)))
		return rc;
	if (!nnp_is_dir(raw))
		return nnp_err(NNP_EDATA, "raw dataset '%s' not found: '%s' is not a folder "
			       "(nnUNet_raw='%s')", name, raw, root);
	return 1;
}

int nnp_split_ids(const struct nnp_split_opts *o, char ***ids, size_t *n, char *from,
		  size_t fromlen)
{
	char raw[PATH_MAX];
	int rc;

	if ((rc = nnp_preprocessed_ids(o->dir, o->data, ids, n, from, fromlen)) || *n)
		return rc;
	if ((rc = find_raw(o, raw, sizeof raw)) < 0)
		return nnp_err_ctx(rc, "no preprocessed cases in '%s' (DATA/CASE.b2nd, .npz or "
				   ".nnp) and no raw dataset to take the case ids from", o->dir);
	if ((rc = nnp_raw_ids(raw, ids, n)))
		return rc;
	set_str(from, fromlen, raw);
	return NNP_OK;
}

/* The raw dataset's splits_final.json into path (""), tolerating a raw
 * dataset that cannot be found unless it was named. */
static int raw_splits_file(const struct nnp_split_opts *o, char *path, size_t len)
{
	char raw[PATH_MAX];
	int rc;

	path[0] = '\0';
	rc = find_raw(o, raw, sizeof raw);
	if (rc < 0 && !o->raw) {
		nnp_err_clear();
		return NNP_OK;
	}
	if (rc < 0)
		return rc;
	if ((rc = nnp_path_join(path, len, raw, NNP_SPLIT_FILE)))
		return rc;
	if (!nnp_is_file(path))
		path[0] = '\0';
	return NNP_OK;
}

void nnp_split_result_release(struct nnp_split_result *r)
{
	if (!r)
		return;
	json_decref(r->splits);
	r->splits = NULL;
}

/* Keep an existing output: validate it (against the ids when they can be
 * found) and check it against the raw dataset's splits file. */
static int keep_existing(const struct nnp_split_opts *o, const char *rawsplits,
			 struct nnp_split_result *r)
{
	char **ids = NULL;
	size_t n = 0;
	json_t *src = NULL;
	int rc;

	if (nnp_split_ids(o, &ids, &n, r->ids_from, sizeof r->ids_from)) {
		nnp_err_clear();   /* the ids are only needed to check the file */
		r->ids_from[0] = '\0';
		ids = NULL;
		n = 0;
	}
	r->ncases = n;
	rc = nnp_splits_load(r->out, ids, n, &r->splits);
	if (rc)
		nnp_err_ctx(rc, "existing splits file (replace it with --force)");
	if (!rc && *rawsplits && !(rc = nnp_splits_load(rawsplits, ids, n, &src)))
		rc = nnp_splits_compare(src, rawsplits, r->splits, r->out);
	json_decref(src);
	nnp_strv_free(ids, n);
	r->action = NNP_SPLIT_EXISTING;
	return rc;
}

static int make_new(const struct nnp_split_opts *o, const char *rawsplits,
		    struct nnp_split_result *r)
{
	char **ids;
	size_t n;
	struct nnp_fold *folds = NULL;
	int rc;

	if ((rc = nnp_split_ids(o, &ids, &n, r->ids_from, sizeof r->ids_from)))
		return rc;
	r->ncases = n;
	if (*rawsplits) {
		r->action = NNP_SPLIT_COPIED;
		set_str(r->copied_from, sizeof r->copied_from, rawsplits);
		rc = nnp_splits_load(rawsplits, ids, n, &r->splits);
		if (!rc && o->write)
			rc = nnp_copy_file(rawsplits, r->out, o->force, 0);
	} else {
		r->action = NNP_SPLIT_CREATED;
		if ((rc = nnp_kfold(n, o->folds, o->seed, &folds)))
			nnp_err_ctx(rc, "case ids from '%s'", r->ids_from);
		else if (!(r->splits = nnp_splits_json(ids, folds, o->folds)))
			rc = oom();
		else if (o->write)
			rc = nnp_json_write_file(r->splits, r->out, 4, NNP_JSON_SORT_KEYS, o->force);
		nnp_folds_free(folds, o->folds);
	}
	nnp_strv_free(ids, n);
	return rc;
}

int nnp_split_make(const struct nnp_split_opts *o, struct nnp_split_result *r)
{
	char rawsplits[PATH_MAX];
	struct stat st;
	int rc;

	memset(r, 0, sizeof *r);
	if (!o->dir || !*o->dir)
		return nnp_err(NNP_EUSAGE, "empty preprocessed dataset folder name");
	if (!nnp_is_dir(o->dir))
		return nnp_err(NNP_EDATA, "preprocessed dataset folder '%s': %s", o->dir,
			       access(o->dir, F_OK) ? strerror(errno) : "not a folder");
	if (o->out)
		set_str(r->out, sizeof r->out, o->out);
	else if ((rc = nnp_path_join(r->out, sizeof r->out, o->dir, NNP_SPLIT_FILE)))
		return rc;
	if ((rc = raw_splits_file(o, rawsplits, sizeof rawsplits)))
		return rc;
	if (stat(r->out, &st) == 0 && !o->force)
		rc = keep_existing(o, rawsplits, r);
	else
		rc = make_new(o, rawsplits, r);
	if (rc)
		nnp_split_result_release(r);
	return rc;
}

/* ---- the case ids of a fold ---- */

/* nnU-Net's trainer for a fold beyond splits_final.json: a seeded random
 * 80:20 split of all (sorted) cases, RandomState(12345 + fold). */
static int random_fold_ids(const char *dir, const char *data, size_t k, int val, char ***ids, size_t *nids)
{
	char **all = NULL;
	size_t n = 0, *pick, npick;
	struct nnp_fold f = { 0 };
	int rc;
	if ((rc = nnp_preprocessed_ids(dir, data, &all, &n, NULL, 0)))
		return rc;
	if (!n) {
		free(all);
		return nnp_err(NNP_EDATA, "'%s/%s': no case files", dir, data);
	}
	if ((rc = nnp_split_random(n, (uint32_t)(12345 + k), &f)))
		goto out;
	pick = val ? f.val : f.train;
	npick = val ? f.nval : f.ntrain;
	if (!(*ids = calloc(npick ? npick : 1, sizeof **ids))) {
		rc = nnp_err(NNP_ENOMEM, "out of memory");
		goto out;
	}
	for (*nids = 0; *nids < npick; (*nids)++)
		if (!((*ids)[*nids] = nnp_strdup(all[pick[*nids]]))) {
			rc = NNP_ENOMEM;
			goto out;
		}
	rc = npick ? nnp_ids_sort(*ids, *nids) :
		     nnp_err(NNP_EDATA, "fold %zu: the random split's %s list is empty", k, val ? "val" : "train");
out:
	nnp_fold_release(&f);
	for (size_t i = 0; i < n; i++)
		free(all[i]);
	free(all);
	return rc;
}

int nnp_fold_ids(const char *dir, const char *data, long fold, int val, char ***ids, size_t *n)
{
	char path[PATH_MAX];
	const json_t *list;
	json_t *splits;
	int rc;
	*ids = NULL;
	*n = 0;
	if (fold < 0) {
		if ((rc = nnp_preprocessed_ids(dir, data, ids, n, NULL, 0)))
			return rc;
		return *n ? NNP_OK : nnp_err(NNP_EDATA, "'%s/%s': no case files", dir, data);
	}
	if (snprintf(path, sizeof path, "%s/%s", dir, NNP_SPLIT_FILE) >= (int)sizeof path)
		return nnp_err(NNP_EUSAGE, "path too long: '%s'", dir);
	if ((rc = nnp_splits_load(path, NULL, 0, &splits)))
		return rc;
	if ((size_t)fold >= json_array_size(splits)) {
		json_decref(splits);
		return random_fold_ids(dir, data, (size_t)fold, val, ids, n);
	}
	list = json_object_get(json_array_get(splits, (size_t)fold), val ? "val" : "train");
	*n = json_array_size(list);
	if (!(*ids = calloc(*n ? *n : 1, sizeof **ids))) {
		rc = nnp_err(NNP_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < *n; i++)
		if (!((*ids)[i] = nnp_strdup(json_string_value(json_array_get(list, i))))) {
			*n = i;
			rc = NNP_ENOMEM;
			goto out;
		}
	rc = nnp_ids_sort(*ids, *n);
out:
	json_decref(splits);
	return rc;
}
