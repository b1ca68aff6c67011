/* dataset.c — nnU-Net raw datasets: resolving, dataset.json, case lists
 * (nnunet-facts.md §1.1–1.2).
 *
 * Every error names the file or folder it concerns; dataset.json errors
 * also name the JSON path ("'D/dataset.json': labels.background: must be 0").
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dataset.h"
#include "atomic.h"
#include "err.h"
#include "split.h"

#define CHANNELS_MAX 65536
#define LABELS_MAX 65536
#define REGION_VALUES_MAX 65536
#define EXPAND_MAX 65536

static int oom(void)
{
	return nnp_err(NNP_ENOMEM, "out of memory");
}

/* "'FILE': PATH: message" as an NNP_EDATA error. */
static int jerr(const char *file, const char *jpath, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int jerr(const char *file, const char *jpath, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return nnp_err(NNP_EDATA, "'%s': %s: %s", file, jpath, msg);
}

static int has_ctrl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

static int ends_with(const char *s, size_t n, const char *suf, size_t m)
{
	return n >= m && memcmp(s + n - m, suf, m) == 0;
}

/* ------------------------------------------------------------------ */
/* resolving a dataset argument                                        */

static int copy_out(const char *path, char *out, size_t outlen)
{
	if (strlen(path) >= outlen)
		return nnp_err(NNP_EUSAGE, "dataset path too long: '%s'", path);
	strcpy(out, path);
	return NNP_OK;
}

/* Parse a non-negative decimal id (no sign, no spaces), -1 if not one. */
static long parse_id(const char *s)
{
	long v = 0;
	if (!*s || strlen(s) > 6)
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n && v; i++)
		free(v[i]);
	free(v);
}

/* Append a copy of s (at most 4096 entries; where names the folder). */
static int strv_push(char ***v, size_t *n, size_t *cap, const char *s, const char *where)
{
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 4;
		char **nv;
		if (*n >= 4096)
			return nnp_err(NNP_EDATA, "'%s': too many matching folders", where);
		if (!(nv = realloc(*v, nc * sizeof *nv)))
			return oom();
		*v = nv;
		*cap = nc;
	}
	if (!((*v)[*n] = nnp_strdup(s)))
		return NNP_ENOMEM;
	(*n)++;
	return NNP_OK;
}

/* Folders in root named prefix + non-digit + ...; sorted. */
static int find_prefixed(const char *root, const char *envvar, const char *prefix,
			 char ***out, size_t *nout)
{
	DIR *dp = opendir(root);
	struct dirent *e;
	size_t n = 0, cap = 0, plen = strlen(prefix);
	char **v = NULL;
	int rc = NNP_OK;

	*out = NULL;
	*nout = 0;
	if (!dp)
		return nnp_err(NNP_EDATA, "cannot open %s folder '%s': %s", envvar, root,
			       strerror(errno));
	while ((e = readdir(dp))) {
		const char *nm = e->d_name;
		char *full;
		int dir;
		if (strncmp(nm, prefix, plen) || isdigit((unsigned char)nm[plen]))
			continue;
		if (!(full = nnp_strprintf("%s/%s", root, nm))) {
			rc = NNP_ENOMEM;
			break;
		}
		dir = nnp_is_dir(full);
		free(full);
		if (!dir)
			continue;
		if ((rc = strv_push(&v, &n, &cap, nm, root)))
			break;
	}
	closedir(dp);
	if (rc) {
		free_strv(v, n);
		return rc;
	}
	if (n > 1)
		qsort(v, n, sizeof *v, cmp_str);
	*out = v;
	*nout = n;
	return NNP_OK;
}

static int ambiguous(const char *root, const char *envvar, long id, char **v, size_t n)
{
	char list[768] = "";
	size_t len = 0;
	for (size_t i = 0; i < n && len < sizeof list - 8; i++) {
		int k = snprintf(list + len, sizeof list - len, "%s'%s'", i ? ", " : "", v[i]);
		if (k < 0)
			break;
		len += (size_t)k;
	}
	return nnp_err(NNP_EDATA, "dataset id %ld is ambiguous in %s '%s': %zu folders match (%s)",
		       id, envvar, root, n, list);
}

static int resolve_id(const char *root, const char *envvar, long id, char *out, size_t outlen)
{
	char prefix[32], **v, *full;
	size_t n;
	int rc;

	snprintf(prefix, sizeof prefix, "Dataset%03ld", id);
	if ((rc = find_prefixed(root, envvar, prefix, &v, &n)))
		return rc;
	if (n == 0)
		rc = nnp_err(NNP_EDATA, "dataset id %ld not found: no folder '%s_*' in %s '%s'",
			     id, prefix, envvar, root);
	else if (n > 1)
		rc = ambiguous(root, envvar, id, v, n);
	else if (!(full = nnp_strprintf("%s/%s", root, v[0])))
		rc = NNP_ENOMEM;
	else {
		rc = copy_out(full, out, outlen);
		free(full);
	}
	free_strv(v, n);
	return rc;
}

static int resolve_name(const char *root, const char *envvar, const char *arg,
			char *out, size_t outlen)
{
	char *full = nnp_strprintf("%s/%s", root, arg);
	int rc;
	if (!full)
		return NNP_ENOMEM;
	if (nnp_is_dir(full))
		rc = copy_out(full, out, outlen);
	else
		rc = nnp_err(NNP_EDATA, "dataset '%s' not found: '%s' is not a folder (%s='%s')",
			     arg, full, envvar, root);
	free(full);
	return rc;
}

int nnp_dataset_resolve(const char *arg, const char *envvar, char *out, size_t outlen)
{
	const char *root;
	long id;

	if (!envvar)
		envvar = "nnUNet_raw";
	if (!arg || !*arg)
		return nnp_err(NNP_EUSAGE, "empty dataset argument");
	if (nnp_is_dir(arg))
		return copy_out(arg, out, outlen);
	if (strchr(arg, '/'))
		return nnp_err(NNP_EDATA, "dataset folder '%s': %s", arg,
			       access(arg, F_OK) ? strerror(errno) : "not a folder");
	id = strncmp(arg, "Dataset", 7) ? parse_id(arg) : 0;
	if (id < 0)
		return nnp_err(NNP_EUSAGE, "dataset '%s' is not a folder, a DatasetXXX_Name "
			       "or an integer id", arg);
	root = getenv(envvar);
	if (!root || !*root)
		return nnp_err(NNP_EUSAGE, "dataset '%s' is not a folder and %s is not set: "
			       "set %s (export %s=/path/to/%s) or give the dataset folder",
			       arg, envvar, envvar, envvar, envvar);
	if (!strncmp(arg, "Dataset", 7))
		return resolve_name(root, envvar, arg, out, outlen);
	return resolve_id(root, envvar, id, out, outlen);
}

/* ------------------------------------------------------------------ */
/* dataset.json                                                        */

static char *json_path_of(const struct nnp_dataset *d)
{
	return nnp_strprintf("%s/dataset.json", d->dir);
}

static int load_json(const char *path, json_t **out)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	json_error_t je;
	json_t *j;

	*out = NULL;
	if (!f)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", path, strerror(errno));
	if (fstat(fileno(f), &st) == 0 && (long long)st.st_size > NNP_DATASET_JSON_MAX) {
		fclose(f);
		return nnp_err(NNP_EDATA, "'%s': too large (%lld bytes, at most %lld)", path,
			       (long long)st.st_size, NNP_DATASET_JSON_MAX);
	}
	j = json_loadf(f, 0, &je);
	fclose(f);
	if (!j)
		return nnp_err(NNP_EDATA, "'%s': invalid JSON at line %d, column %d: %s", path,
			       je.line, je.column, je.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return nnp_err(NNP_EDATA, "'%s': top level: must be a JSON object", path);
	}
	*out = j;
	return NNP_OK;
}

static int parse_channels(struct nnp_dataset *d, const char *file)
{
	const char *key = "channel_names";
	json_t *o = json_object_get(d->json, key);
	size_t n;

	if (!o && (o = json_object_get(d->json, "modality")))
		key = "modality";
	if (!o)
		return jerr(file, "channel_names", "missing (a dict like {\"0\": \"CT\"})");
	if (!json_is_object(o) || !(n = json_object_size(o)))
		return jerr(file, key, "must be a non-empty dict like {\"0\": \"CT\"}");
	if (n > CHANNELS_MAX)
		return jerr(file, key, "too many channels (%zu, at most %d)", n, CHANNELS_MAX);
	if (!(d->channel_names = calloc(n, sizeof *d->channel_names)))
		return oom();
	d->nchannels = n;
	for (size_t i = 0; i < n; i++) {
		char k[24];
		json_t *v;
		snprintf(k, sizeof k, "%zu", i);
		if (!(v = json_object_get(o, k)))
			return jerr(file, key, "keys must be \"0\"..\"%zu\" (\"%s\" is missing)",
				    n - 1, k);
		if (!json_is_string(v))
			return jerr(file, key, "\"%s\": must be a string", k);
		if (!(d->channel_names[i] = nnp_strdup(json_string_value(v))))
			return NNP_ENOMEM;
	}
	return NNP_OK;
}

static int label_int(const char *file, const char *name, int idx, json_t *v, int *out)
{
	json_int_t x;
	char jp[300];
	if (idx < 0)
		snprintf(jp, sizeof jp, "labels.%s", name);
	else
		snprintf(jp, sizeof jp, "labels.%s[%d]", name, idx);
	if (!json_is_integer(v))
		return jerr(file, jp, "must be an integer%s", idx < 0 ? " or a list of integers" : "");
	x = json_integer_value(v);
	if (x < 0 || x > INT_MAX)
		return jerr(file, jp, "%lld is out of range (0..%d)", (long long)x, INT_MAX);
	*out = (int)x;
	return NNP_OK;
}

static int parse_label(const char *file, const char *name, json_t *v, struct nnp_label *l)
{
	size_t n = json_is_array(v) ? json_array_size(v) : 1;
	int rc;

	if (!(l->name = nnp_strdup(name)))
		return NNP_ENOMEM;
	if (json_is_array(v) && n == 0)
		return jerr(file, "labels", "'%s': the list of values must not be empty", name);
	if (n > REGION_VALUES_MAX)
		return jerr(file, "labels", "'%s': too many values", name);
	if (!(l->values = calloc(n, sizeof *l->values)))
		return oom();
	l->nvalues = n;
	if (!json_is_array(v))
		return label_int(file, name, -1, v, &l->values[0]);
	for (size_t i = 0; i < n; i++)
		if ((rc = label_int(file, name, (int)i, json_array_get(v, i), &l->values[i])))
			return rc;
	return NNP_OK;
}

static int check_background(const char *file, json_t *labels)
{
	json_t *bg = json_object_get(labels, "background");
	if (!bg)
		return jerr(file, "labels.background", "missing (nnU-Net requires \"background\": 0)");
	if (!json_is_integer(bg) || json_integer_value(bg) != 0)
		return jerr(file, "labels.background", "must be 0");
	return NNP_OK;
}

static int parse_labels(struct nnp_dataset *d, const char *file)
{
	json_t *o = json_object_get(d->json, "labels"), *v, *ig;
	const char *k;
	size_t n, i = 0;
	int rc;

	if (!o)
		return jerr(file, "labels", "missing (a dict like {\"background\": 0, \"organ\": 1})");
	if (!json_is_object(o) || !(n = json_object_size(o)))
		return jerr(file, "labels", "must be a non-empty dict like {\"background\": 0}");
	if (n > LABELS_MAX)
		return jerr(file, "labels", "too many labels (%zu, at most %d)", n, LABELS_MAX);
	if ((rc = check_background(file, o)))
		return rc;
	if ((ig = json_object_get(o, "ignore")) && !json_is_integer(ig))
		return jerr(file, "labels.ignore", "must be an integer");
	if (!(d->labels = calloc(n, sizeof *d->labels)))
		return oom();
	json_object_foreach(o, k, v) {
		d->nlabels = i + 1;
		if ((rc = parse_label(file, k, v, &d->labels[i])))
			return rc;
		if (json_is_array(v) && json_array_size(v) > 1)
			d->has_regions = 1;
		i++;
	}
	return NNP_OK;
}

/* Regions: label entries except "ignore" and all-zero (background) ones. */
static size_t count_regions(const struct nnp_dataset *d)
{
	size_t n = 0;
	for (size_t i = 0; i < d->nlabels; i++) {
		const struct nnp_label *l = &d->labels[i];
		int bg = 1;
		if (!strcmp(l->name, "ignore"))
			continue;
		for (size_t k = 0; k < l->nvalues; k++)
			bg &= l->values[k] == 0;
		n += !bg;
	}
	return n;
}

static int parse_regions_order(const struct nnp_dataset *d, const char *file)
{
	json_t *o = json_object_get(d->json, "regions_class_order");
	size_t n, want;
	if (!d->has_regions)
		return NNP_OK;
	if (!o)
		return jerr(file, "regions_class_order", "missing (required because labels "
			    "define regions: one integer per region)");
	if (!json_is_array(o))
		return jerr(file, "regions_class_order", "must be a list of integers");
	n = json_array_size(o);
	for (size_t i = 0; i < n; i++)
		if (!json_is_integer(json_array_get(o, i)))
			return jerr(file, "regions_class_order", "[%zu]: must be an integer", i);
	want = count_regions(d);
	if (n != want)
		return jerr(file, "regions_class_order", "has %zu entries but labels define "
			    "%zu regions", n, want);
	return NNP_OK;
}

static int parse_scalars(struct nnp_dataset *d, const char *file)
{
	json_t *nt = json_object_get(d->json, "numTraining");
	json_t *fe = json_object_get(d->json, "file_ending");
	const char *s;

	if (!nt)
		return jerr(file, "numTraining", "missing (the number of training cases)");
	if (!json_is_integer(nt) || json_integer_value(nt) < 0)
		return jerr(file, "numTraining", "must be a non-negative integer");
	d->num_training = (long)json_integer_value(nt);
	if (!fe)
		return jerr(file, "file_ending", "missing (e.g. \".nii.gz\")");
	if (!json_is_string(fe) || !*(s = json_string_value(fe)))
		return jerr(file, "file_ending", "must be a non-empty string like \".nii.gz\"");
	if (strchr(s, '/') || has_ctrl(s) || strlen(s) > 64)
		return jerr(file, "file_ending", "'%s' is not a file name ending", s);
	if (!(d->file_ending = nnp_strdup(s)))
		return NNP_ENOMEM;
	return NNP_OK;
}

static int check_case_id(const char *file, const char *jp, const char *id)
{
	if (!*id || strlen(id) > NNP_CASE_ID_MAX || strchr(id, '/') || has_ctrl(id))
		return jerr(file, jp, "'%s' is not a valid case id (1..%d bytes, no '/', no "
			    "control characters)", id, NNP_CASE_ID_MAX);
	return NNP_OK;
}

static int check_dict_case(const char *file, const char *id, json_t *c)
{
	char jp[300];
	json_t *im, *lb;
	size_t n;
	int rc;

	snprintf(jp, sizeof jp, "dataset.%s", id);
	if ((rc = check_case_id(file, "dataset", id)))
		return rc;
	if (!json_is_object(c))
		return jerr(file, jp, "must be a dict {\"images\": [...], \"label\": ...}");
	im = json_object_get(c, "images");
	if (!json_is_array(im) || !(n = json_array_size(im)))
		return jerr(file, jp, "images: must be a non-empty list of paths");
	if (n > CHANNELS_MAX)
		return jerr(file, jp, "images: too many files (%zu)", n);
	for (size_t i = 0; i < n; i++) {
		json_t *p = json_array_get(im, i);
		if (!json_is_string(p) || !*json_string_value(p))
			return jerr(file, jp, "images[%zu]: must be a non-empty string", i);
	}
	lb = json_object_get(c, "label");
	if (lb && !json_is_null(lb) && (!json_is_string(lb) || !*json_string_value(lb)))
		return jerr(file, jp, "label: must be a non-empty string (a path)");
	return NNP_OK;
}

static int check_dataset_dict(const struct nnp_dataset *d, const char *file)
{
	json_t *o = json_object_get(d->json, "dataset"), *v;
	const char *k;
	int rc;

	if (!o)
		return NNP_OK;
	if (!json_is_object(o))
		return jerr(file, "dataset", "must be a dict {case: {\"images\": [...], "
			    "\"label\": path}}");
	if (json_object_size(o) > NNP_CASES_MAX)
		return jerr(file, "dataset", "too many cases (%zu, at most %d)",
			    json_object_size(o), NNP_CASES_MAX);
	json_object_foreach(o, k, v)
		if ((rc = check_dict_case(file, k, v)))
			return rc;
	return NNP_OK;
}

/* id = int(name[7:10]) for "DatasetXXX...", else -1. */
static int name_id(const char *name)
{
	if (strncmp(name, "Dataset", 7))
		return -1;
	for (int i = 7; i < 10; i++)
		if (!isdigit((unsigned char)name[i]))
			return -1;
	return (name[7] - '0') * 100 + (name[8] - '0') * 10 + (name[9] - '0');
}

static int set_dir(struct nnp_dataset *d, const char *dir)
{
	size_t n = strlen(dir);
	const char *slash;

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (!(d->dir = strndup(dir, n)))
		return oom();
	slash = strrchr(d->dir, '/');
	if (!(d->name = nnp_strdup(slash && slash[1] ? slash + 1 : d->dir)))
		return NNP_ENOMEM;
	d->id = name_id(d->name);
	return NNP_OK;
}

static int parse_all(struct nnp_dataset *d, const char *file)
{
	int rc;
	if ((rc = load_json(file, &d->json)) || (rc = parse_channels(d, file)) ||
	    (rc = parse_labels(d, file)) || (rc = parse_regions_order(d, file)) ||
	    (rc = parse_scalars(d, file)) || (rc = check_dataset_dict(d, file)))
		return rc;
	return NNP_OK;
}

int nnp_dataset_open(const char *dir, struct nnp_dataset **out)
{
	struct nnp_dataset *d;
	char *file;
	int rc;

	*out = NULL;
	if (!dir || !*dir)
		return nnp_err(NNP_EUSAGE, "empty dataset folder name");
	if (!nnp_is_dir(dir))
		return nnp_err(NNP_EDATA, "dataset folder '%s': %s", dir,
			       access(dir, F_OK) ? strerror(errno) : "not a folder");
	if (!(d = calloc(1, sizeof *d)))
		return oom();
	if ((rc = set_dir(d, dir)) || !(file = json_path_of(d))) {
		nnp_dataset_free(d);
		return rc ? rc : NNP_ENOMEM;
	}
	rc = parse_all(d, file);
	free(file);
	if (rc) {
		nnp_dataset_free(d);
		return rc;
	}
	*out = d;
	return NNP_OK;
}

int nnp_dataset_open_file(const char *path, struct nnp_dataset **out)
{
	struct nnp_dataset *d;
	char *dir;
	const char *slash;
	int rc;

	*out = NULL;
	if (!path || !*path)
		return nnp_err(NNP_EUSAGE, "empty dataset.json name");
	if (nnp_is_dir(path))
		return nnp_dataset_open(path, out);
	if (!nnp_is_file(path))
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", path,
			       access(path, F_OK) ? strerror(errno) : "not a regular file");
	slash = strrchr(path, '/');
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	if (!dir || !(d = calloc(1, sizeof *d))) {
		free(dir);
		return oom();
	}
	rc = set_dir(d, dir);
	free(dir);
	if (!rc)
		rc = parse_all(d, path);
	if (rc) {
		nnp_dataset_free(d);
		return rc;
	}
	*out = d;
	return NNP_OK;
}

void nnp_dataset_free(struct nnp_dataset *d)
{
	if (!d)
		return;
	free(d->dir);
	free(d->name);
	json_decref(d->json);
	free(d->file_ending);
	free_strv(d->channel_names, d->nchannels);
	for (size_t i = 0; i < d->nlabels; i++) {
		free(d->labels[i].name);
		free(d->labels[i].values);
	}
	free(d->labels);
	free(d);
}

/* ------------------------------------------------------------------ */
/* cases                                                               */

void nnp_case_release(struct nnp_case *c)
{
	if (!c)
		return;
	free(c->id);
	free_strv(c->images, c->nimages);
	free(c->label);
	memset(c, 0, sizeof *c);
}

void nnp_cases_free(struct nnp_case *cases, size_t n)
{
	for (size_t i = 0; i < n && cases; i++)
		nnp_case_release(&cases[i]);
	free(cases);
}

/* Growable case array with the NNP_CASES_MAX cap. */
struct caselist {
	struct nnp_case *v;
	size_t n, cap;
};

static int caselist_add(struct caselist *l, const char *where, struct nnp_case **c)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 64;
		struct nnp_case *nv;
		if (l->n >= NNP_CASES_MAX)
			return nnp_err(NNP_EDATA, "'%s': too many cases (at most %d)", where,
				       NNP_CASES_MAX);
		if (!(nv = realloc(l->v, nc * sizeof *nv)))
			return oom();
		l->v = nv;
		l->cap = nc;
	}
	*c = &l->v[l->n++];
	memset(*c, 0, sizeof **c);
	return NNP_OK;
}

/* ---- dict mode: dataset.json "dataset" ---- */

static int var_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Append n bytes to a bounded buffer. */
static int buf_add(char *buf, size_t *len, const char *s, size_t n)
{
	if (*len + n >= EXPAND_MAX)
		return -1;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = '\0';
	return 0;
}

/* Length of the $NAME or ${NAME} reference at s (0 if none); name in *nm. */
static size_t var_ref(const char *s, const char **nm, size_t *nmlen)
{
	size_t k;
	if (s[1] == '{') {
		const char *end = strchr(s + 2, '}');
		if (!end)
			return 0;
		*nm = s + 2;
		*nmlen = (size_t)(end - s - 2);
		return (size_t)(end - s + 1);
	}
	for (k = 1; var_char(s[k]); k++)
		;
	*nm = s + 1;
	*nmlen = k - 1;
	return k > 1 ? k : 0;
}

/* os.path.expandvars: $NAME and ${NAME}; unset variables stay as written. */
static char *expand_vars(const char *s)
{
	char *buf = malloc(EXPAND_MAX), name[256];
	size_t len = 0;

	if (!buf) {
		oom();
		return NULL;
	}
	buf[0] = '\0';
	while (*s) {
		const char *nm, *val = NULL;
		size_t nmlen = 0, ref = *s == '$' ? var_ref(s, &nm, &nmlen) : 0;
		if (ref && nmlen < sizeof name) {
			memcpy(name, nm, nmlen);
			name[nmlen] = '\0';
			val = getenv(name);
		}
		if (val ? buf_add(buf, &len, val, strlen(val))
			: buf_add(buf, &len, s, ref ? ref : 1)) {
			free(buf);
			nnp_err(NNP_EDATA, "path too long after expanding variables: '%.200s'", s);
			return NULL;
		}
		s += ref ? ref : 1;
	}
	return buf;
}

/* Path from dataset.json: variables expanded, relative to the dataset folder. */
static char *dict_path(const struct nnp_dataset *d, const char *p)
{
	char *e = expand_vars(p), *r;
	if (!e || e[0] == '/')
		return e;
	r = nnp_strprintf("%s/%s", d->dir, e);
	free(e);
	return r;
}

static int dict_case(const struct nnp_dataset *d, const char *id, json_t *o, struct nnp_case *c)
{
	json_t *im = json_object_get(o, "images"), *lb = json_object_get(o, "label");
	size_t n = json_array_size(im);

	if (!(c->id = nnp_strdup(id)) || !(c->images = calloc(n, sizeof *c->images)))
		return c->id ? oom() : NNP_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!(c->images[i] = dict_path(d, json_string_value(json_array_get(im, i)))))
			return NNP_ENOMEM;
		c->nimages = i + 1;
	}
	if (json_is_string(lb) && !(c->label = dict_path(d, json_string_value(lb))))
		return NNP_ENOMEM;
	return NNP_OK;
}

static int dict_cases(const struct nnp_dataset *d, json_t *ds, struct caselist *l)
{
	const char *k;
	json_t *v;
	int rc;
	json_object_foreach(ds, k, v) {
		struct nnp_case *c = NULL;
		if ((rc = caselist_add(l, "dataset.json", &c)) || (rc = dict_case(d, k, v, c)))
			return rc;
	}
	return NNP_OK;
}

/* ---- folder mode: imagesXX/CASE_CCCC<ending> ---- */

struct entry {
	char *id;      /* name without _CCCC<ending> */
	char *name;
	int channel;   /* name is exactly id + "_" + 4 digits + ending */
};

struct listing {
	struct entry *v;
	size_t n, cap;
};

static void listing_free(struct listing *L)
{
	for (size_t i = 0; i < L->n; i++) {
		free(L->v[i].id);
		free(L->v[i].name);
	}
	free(L->v);
	memset(L, 0, sizeof *L);
}

static int is_regular(const char *dir, const struct dirent *e, int *reg)
{
	char *p;
	if (e->d_type == DT_REG || e->d_type == DT_DIR) {
		*reg = e->d_type == DT_REG;
		return NNP_OK;
	}
	if (!(p = nnp_strprintf("%s/%s", dir, e->d_name)))
		return NNP_ENOMEM;
	*reg = nnp_is_file(p);
	free(p);
	return NNP_OK;
}

static int is_channel_name(const char *name, size_t idlen)
{
	if (name[idlen] != '_')
		return 0;
	for (size_t i = 1; i <= 4; i++)
		if (!isdigit((unsigned char)name[idlen + i]))
			return 0;
	return 1;
}

static int listing_add(struct listing *L, const char *dir, const char *name, size_t fel)
{
	size_t len = strlen(name), idlen;
	struct entry *e;

	if (len <= fel + 5)
		return nnp_err(NNP_EDATA, "'%s/%s': name too short for CASE_XXXX%s", dir, name,
			       name + len - fel);
	if (has_ctrl(name))
		return nnp_err(NNP_EDATA, "'%s': file name with control characters", dir);
	if (L->n == L->cap) {
		size_t nc = L->cap ? 2 * L->cap : 256;
		struct entry *nv;
		if (L->n >= NNP_DATASET_FILES_MAX)
			return nnp_err(NNP_EDATA, "'%s': too many files (at most %d)", dir,
				       NNP_DATASET_FILES_MAX);
		if (!(nv = realloc(L->v, nc * sizeof *nv)))
			return oom();
		L->v = nv;
		L->cap = nc;
	}
	idlen = len - fel - 5;
	e = &L->v[L->n];
	e->name = strdup(name);
	e->id = strndup(name, idlen);
	e->channel = is_channel_name(name, idlen);
	if (!e->name || !e->id) {
		free(e->name);
		free(e->id);
		return oom();
	}
	L->n++;
	return NNP_OK;
}

/* Files in dir ending with ending (hidden files skipped). */
static int list_dir(const char *dir, const char *ending, struct listing *L)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	size_t fel = strlen(ending);
	int rc = NNP_OK, reg;

	if (!dp)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", dir, strerror(errno));
	while (!rc && (e = readdir(dp))) {
		size_t n = strlen(e->d_name);
		if (e->d_name[0] == '.' || !ends_with(e->d_name, n, ending, fel))
			continue;
		if (!(rc = is_regular(dir, e, &reg)) && reg)
			rc = listing_add(L, dir, e->d_name, fel);
	}
	closedir(dp);
	return rc;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	return c ? c : strcmp(x->name, y->name);
}

/* Fill c from the entries [i, j) that share one id. */
static int folder_case(const struct nnp_dataset *d, const char *imgdir, const char *labdir,
		       const struct entry *v, size_t i, size_t j, struct nnp_case *c)
{
	size_t nch = 0;
	char *lab;

	for (size_t k = i; k < j; k++)
		nch += v[k].channel;
	if (!nch)
		return nnp_err(NNP_EDATA, "case '%s' in '%s' has no channel file '%s_0000%s' "
			       "(is '%s' misnamed?)", v[i].id, imgdir, v[i].id, d->file_ending,
			       v[i].name);
	if (!(c->id = nnp_strdup(v[i].id)) || !(c->images = calloc(nch, sizeof *c->images)))
		return c->id ? oom() : NNP_ENOMEM;
	for (size_t k = i; k < j; k++) {
		if (!v[k].channel)
			continue;
		if (!(c->images[c->nimages] = nnp_strprintf("%s/%s", imgdir, v[k].name)))
			return NNP_ENOMEM;
		c->nimages++;
	}
	if (!labdir)
		return NNP_OK;
	if (!(lab = nnp_strprintf("%s/%s%s", labdir, c->id, d->file_ending)))
		return NNP_ENOMEM;
	if (nnp_is_file(lab))
		c->label = lab;
	else
		free(lab);
	return NNP_OK;
}

static int group_cases(const struct nnp_dataset *d, const char *imgdir, const char *labdir,
		       struct listing *L, struct caselist *l)
{
	size_t i = 0;
	int rc;

	if (L->n > 1)
		qsort(L->v, L->n, sizeof *L->v, cmp_entry);
	while (i < L->n) {
		size_t j = i + 1;
		struct nnp_case *c = NULL;
		while (j < L->n && !strcmp(L->v[j].id, L->v[i].id))
			j++;
		if ((rc = caselist_add(l, imgdir, &c)) ||
		    (rc = folder_case(d, imgdir, labdir, L->v, i, j, c)))
			return rc;
		i = j;
	}
	return NNP_OK;
}

static int folder_cases(const struct nnp_dataset *d, const char *split, struct caselist *l)
{
	char *imgdir = nnp_strprintf("%s/images%s", d->dir, split);
	char *labdir = nnp_strprintf("%s/labels%s", d->dir, split);
	struct listing L = { 0 };
	int rc;

	if (!imgdir || !labdir)
		rc = NNP_ENOMEM;
	else if (!nnp_is_dir(imgdir))
		rc = nnp_err(NNP_EDATA, "dataset '%s' has no images folder '%s'%s", d->name,
			     imgdir, strcmp(split, "Tr") ? "" : " (nor a \"dataset\" list in "
			     "dataset.json)");
	else if (!(rc = list_dir(imgdir, d->file_ending, &L)))
		rc = group_cases(d, imgdir, labdir, &L, l);
	listing_free(&L);
	free(imgdir);
	free(labdir);
	return rc;
}

int nnp_dataset_folder_cases(const struct nnp_dataset *d, const char *imgdir, struct nnp_case **cases,
			     size_t *ncases)
{
	struct caselist l = { 0 };
	struct listing L = { 0 };
	int rc;
	*cases = NULL;
	*ncases = 0;
	if (!nnp_is_dir(imgdir))
		return nnp_err(NNP_EDATA, "images folder '%s' does not exist", imgdir);
	if (!(rc = list_dir(imgdir, d->file_ending, &L)))
		rc = group_cases(d, imgdir, NULL, &L, &l);
	listing_free(&L);
	if (rc) {
		nnp_cases_free(l.v, l.n);
		return rc;
	}
	*cases = l.v;
	*ncases = l.n;
	return NNP_OK;
}

static int check_split(const char *split)
{
	if (!split || (strcmp(split, "Tr") && strcmp(split, "Ts")))
		return nnp_err(NNP_EUSAGE, "split must be 'Tr' or 'Ts', not '%s'",
			       split ? split : "(null)");
	return NNP_OK;
}

static json_t *dataset_dict(const struct nnp_dataset *d, const char *split)
{
	return strcmp(split, "Tr") ? NULL : json_object_get(d->json, "dataset");
}

int nnp_dataset_cases(const struct nnp_dataset *d, const char *split,
		      struct nnp_case **cases, size_t *ncases)
{
	struct caselist l = { 0 };
	json_t *ds;
	int rc;

	*cases = NULL;
	*ncases = 0;
	if ((rc = check_split(split)))
		return rc;
	ds = dataset_dict(d, split);
	rc = ds ? dict_cases(d, ds, &l) : folder_cases(d, split, &l);
	if (rc) {
		nnp_cases_free(l.v, l.n);
		return rc;
	}
	*cases = l.v;
	*ncases = l.n;
	return NNP_OK;
}

/* Move the case named id out of split's list into c; 1 found, 0 not, <0 error. */
static int find_in_split(const struct nnp_dataset *d, const char *split, const char *id,
			 struct nnp_case *c)
{
	struct nnp_case *v;
	size_t n;
	int rc = nnp_dataset_cases(d, split, &v, &n), found = 0;
	if (rc)
		return rc;
	for (size_t i = 0; i < n && !found; i++) {
		if (strcmp(v[i].id, id))
			continue;
		*c = v[i];
		memset(&v[i], 0, sizeof v[i]);
		found = 1;
	}
	nnp_cases_free(v, n);
	return found;
}

static int not_found(const struct nnp_dataset *d, const char *split, const char *id)
{
	if (split && dataset_dict(d, split))
		return nnp_err(NNP_EDATA, "case '%s' not found in '%s/dataset.json' (\"dataset\")",
			       id, d->dir);
	if (split)
		return nnp_err(NNP_EDATA, "case '%s' not found in '%s/images%s'", id, d->dir, split);
	return nnp_err(NNP_EDATA, "case '%s' not found in dataset '%s' (Tr or Ts)", id, d->dir);
}

static int has_split(const struct nnp_dataset *d, const char *split)
{
	char *p = nnp_strprintf("%s/images%s", d->dir, split);
	int r = p && nnp_is_dir(p);
	free(p);
	return r;
}

int nnp_dataset_case(const struct nnp_dataset *d, const char *split, const char *id,
		     struct nnp_case *c)
{
	int rc;

	memset(c, 0, sizeof *c);
	if (split && (rc = check_split(split)))
		return rc;
	if (!id || !*id)
		return nnp_err(NNP_EUSAGE, "empty case id");
	rc = find_in_split(d, split ? split : "Tr", id, c);
	if (rc == 0 && !split && has_split(d, "Ts"))
		rc = find_in_split(d, "Ts", id, c);
	if (rc < 0)
		return rc;
	return rc ? NNP_OK : not_found(d, split, id);
}

/* ------------------------------------------------------------------ */
/* paths of the "dataset" dict, for other modules                      */

char *nnp_dataset_path(const char *dir, const char *path)
{
	char *e = expand_vars(path), *r;
	if (!e || e[0] == '/')
		return e;
	r = nnp_strprintf("%s/%s", dir, e);
	free(e);
	return r;
}

int nnp_is_probabilities_name(const char *name, const char *ending)
{
	size_t n = strlen(name), e = strlen(ending), k = strlen(NNP_PROBABILITIES_SUFFIX);
	return n >= e + k && !strcmp(name + n - e, ending) &&
	       !strncmp(name + n - e - k, NNP_PROBABILITIES_SUFFIX, k);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_wanted(const char *dir, const char *name, const char *suffix, int flags)
{
	size_t n = strlen(name), k = strlen(suffix);
	char path[PATH_MAX];
	if (n <= k || strcmp(name + n - k, suffix) || !strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (((flags & NNP_LIST_SKIP_HIDDEN) && name[0] == '.') ||
	    ((flags & NNP_LIST_NO_PROBABILITIES) && nnp_is_probabilities_name(name, suffix)))
		return 0;
	return !nnp_path_join(path, sizeof path, dir, name) && nnp_is_file(path);
}

int nnp_list_dir(const char *dir, const char *suffix, int flags, char ***names, size_t *nout)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **v = NULL;
	size_t n = 0, cap = 0;
	int rc = NNP_OK;
	*names = NULL;
	*nout = 0;
	if (!d)
		return nnp_err(NNP_EDATA, "cannot open folder '%s': %s", dir, strerror(errno));
	while (!rc && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (!list_wanted(dir, e->d_name, suffix, flags))
			continue;
		if (n == cap) {
			char **t;
			if (cap >= NNP_CASES_MAX) {
				rc = nnp_err(NNP_ENOMEM, "'%s': more than %d files ending in '%s'", dir, NNP_CASES_MAX,
					     suffix);
				break;
			}
			cap = cap ? 2 * cap : 64;
			if (!(t = realloc(v, cap * sizeof *t))) {
				rc = nnp_err(NNP_ENOMEM, "out of memory listing '%s'", dir);
				break;
			}
			v = t;
		}
		if (!(v[n] = strndup(e->d_name, (flags & NNP_LIST_STRIP_SUFFIX) ? len - strlen(suffix) : len)))
			rc = nnp_err(NNP_ENOMEM, "out of memory listing '%s'", dir);
		else
			n++;
	}
	closedir(d);
	if (rc) {
		nnp_strv_free(v, n);
		return rc;
	}
	if (n)
		qsort(v, n, sizeof *v, cmp_name);
	*names = v;
	*nout = n;
	return NNP_OK;
}
