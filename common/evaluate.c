/* evaluate.c — nnU-Net's compute_metrics_on_folder, HD95 and NSD (see
 * evaluate.h, docs/evaluation.md).
 *
 * Counting: every voxel value is mapped to a value id (the distinct values
 * the spec names, plus one id for "any other value"); a case is a joint
 * histogram hist[pred id][ref id], from which TP/FP/FN/TN of every label
 * and region follow exactly, whatever the number of classes.  HD95/NSD keep
 * the two id volumes of the case and work per class on the bounding box of
 * the class, padded by one background voxel.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "evaluate.h"
#include "json.h"
#include "nifti.h"
#include "plan.h"
#include "prog.h"
#include "pyjson.h"

#define NP_BUFSIZE 8192                 /* numpy's reduction buffer */
#define PW_BLOCK 128                    /* numpy's pairwise block */
#define LUT_SPAN_MAX ((uint64_t)1 << 20) /* dense value table entries */
#define SLAB_BYTES ((size_t)4 << 20)    /* voxel bytes read per side at a time */

static int oom(void)
{
	return nnp_err(NNP_ENOMEM, "out of memory");
}

/* ---- metric names ---- */

static const char *const metric_names[NNP_EM_COUNT] = {
	"Dice", "FN", "FP", "HD95", "IoU", "NSD", "TN", "TP", "n_pred", "n_ref",
};

const char *nnp_eval_metric_name(int m)
{
	return m >= 0 && m < NNP_EM_COUNT ? metric_names[m] : "?";
}

int nnp_eval_metric_is_count(int m)
{
	return m == NNP_EM_FN || m == NNP_EM_FP || m == NNP_EM_TN || m == NNP_EM_TP ||
	       m == NNP_EM_N_PRED || m == NNP_EM_N_REF;
}

/* Is metric m written for this spec? */
static int metric_on(const struct nnp_eval_spec *s, int m)
{
	return (m != NNP_EM_HD95 || s->hd95) && (m != NNP_EM_NSD || s->nsd);
}

/* ---- numpy reductions ---- */

static double pairwise_f64(const double *a, size_t n)
{
	if (n < 8) {
		double r = -0.0;
		for (size_t i = 0; i < n; i++)
			r += a[i];
		return r;
	}
	if (n <= PW_BLOCK) {
		double r[8], res;
		size_t i;
		for (int j = 0; j < 8; j++)
			r[j] = a[j];
		for (i = 8; i < n - (n % 8); i += 8)
			for (int j = 0; j < 8; j++)
				r[j] += a[i + (size_t)j];
		res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++)
			res += a[i];
		return res;
	}
	size_t n2 = n / 2;
	n2 -= n2 % 8;
	return pairwise_f64(a, n2) + pairwise_f64(a + n2, n - n2);
}

double nnp_np_sum_f64(const double *a, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i += NP_BUFSIZE)
		s += pairwise_f64(a + i, n - i < NP_BUFSIZE ? n - i : NP_BUFSIZE);
	return s;
}

/* np.nanmean: NaNs replaced by 0 in place of the sum, divided by the count
 * of the others.  Summed in NP_BUFSIZE blocks without a copy of a. */
double nnp_np_nanmean_f64(const double *a, size_t n)
{
	double buf[NP_BUFSIZE], s = 0.0;
	size_t cnt = 0;
	for (size_t i = 0; i < n; i += NP_BUFSIZE) {
		size_t k = n - i < NP_BUFSIZE ? n - i : NP_BUFSIZE;
		for (size_t j = 0; j < k; j++) {
			int nan = isnan(a[i + j]);
			buf[j] = nan ? 0.0 : a[i + j];
			cnt += !nan;
		}
		s += pairwise_f64(buf, k);
	}
	return cnt ? s / (double)cnt : NAN;
}

/* ---- the spec ---- */

struct nnp_eval_lut {
	int64_t *vals;           /* sorted distinct values named (classes + ignore) */
	size_t nvals;            /* K; id K = any other value */
	uint16_t *dense;         /* value vmin + i -> id, or NULL: binary search */
	uint64_t span;
	int64_t vmin;
	unsigned char *member;   /* nclasses x (K + 1) */
	uint16_t **ids;          /* per class: its distinct value ids */
	size_t *nids;
	int ign_id;              /* -1: none */
};

static void lut_free(struct nnp_eval_lut *L, size_t nclasses)
{
	if (!L)
		return;
	if (L->ids)
		for (size_t c = 0; c < nclasses; c++)
			free(L->ids[c]);
	free(L->ids);
	free(L->nids);
	free(L->vals);
	free(L->dense);
	free(L->member);
	free(L);
}

void nnp_eval_spec_free(struct nnp_eval_spec *s)
{
	if (!s)
		return;
	lut_free(s->lut, s->nclasses);
	for (size_t c = 0; c < s->nclasses; c++) {
		free(s->classes[c].key);
		free(s->classes[c].name);
		free(s->classes[c].values);
	}
	free(s->classes);
	free(s->file_ending);
	free(s);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int lut_id(const struct nnp_eval_lut *L, int64_t v)
{
	size_t lo = 0, hi = L->nvals;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (L->vals[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < L->nvals && L->vals[lo] == v ? (int)lo : (int)L->nvals;
}

/* The distinct values of the classes and the ignore label, sorted. */
static int lut_values(const struct nnp_eval_spec *s, struct nnp_eval_lut *L)
{
	size_t n = s->has_ignore ? 1 : 0, k = 0;
	for (size_t c = 0; c < s->nclasses; c++)
		n += s->classes[c].nvalues;
	if (!(L->vals = malloc((n ? n : 1) * sizeof *L->vals)))
		return oom();
	for (size_t c = 0; c < s->nclasses; c++)
		for (size_t i = 0; i < s->classes[c].nvalues; i++)
			L->vals[k++] = s->classes[c].values[i];
	if (s->has_ignore)
		L->vals[k++] = s->ignore;
	qsort(L->vals, k, sizeof *L->vals, cmp_i64);
	n = 0;
	for (size_t i = 0; i < k; i++)
		if (!n || L->vals[n - 1] != L->vals[i])
			L->vals[n++] = L->vals[i];
	if (n > NNP_EVAL_VALUES_MAX)
		return nnp_err(NNP_ENOMEM, "%zu distinct label values: at most %d are supported", n,
			       NNP_EVAL_VALUES_MAX);
	L->nvals = n;
	return NNP_OK;
}

static int lut_dense(struct nnp_eval_lut *L)
{
	uint64_t span;
	if (!L->nvals)
		return NNP_OK;
	span = (uint64_t)L->vals[L->nvals - 1] - (uint64_t)L->vals[0] + 1;
	if (span == 0 || span > LUT_SPAN_MAX)
		return NNP_OK;
	if (!(L->dense = malloc(span * sizeof *L->dense)))
		return oom();
	L->span = span;
	L->vmin = L->vals[0];
	for (uint64_t i = 0; i < span; i++)
		L->dense[i] = (uint16_t)L->nvals;
	for (size_t i = 0; i < L->nvals; i++)
		L->dense[(uint64_t)L->vals[i] - (uint64_t)L->vmin] = (uint16_t)i;
	return NNP_OK;
}

static int lut_members(const struct nnp_eval_spec *s, struct nnp_eval_lut *L)
{
	size_t K1 = L->nvals + 1;
	if (!(L->member = calloc(s->nclasses * K1, 1)) || !(L->ids = calloc(s->nclasses, sizeof *L->ids)) ||
	    !(L->nids = calloc(s->nclasses, sizeof *L->nids)))
		return oom();
	for (size_t c = 0; c < s->nclasses; c++) {
		const struct nnp_eval_class *k = &s->classes[c];
		if (!(L->ids[c] = malloc((k->nvalues ? k->nvalues : 1) * sizeof **L->ids)))
			return oom();
		for (size_t i = 0; i < k->nvalues; i++) {
			int id = lut_id(L, k->values[i]);
			if (!L->member[c * K1 + (size_t)id]) {
				L->member[c * K1 + (size_t)id] = 1;
				L->ids[c][L->nids[c]++] = (uint16_t)id;
			}
		}
	}
	L->ign_id = s->has_ignore ? lut_id(L, s->ignore) : -1;
	return NNP_OK;
}

static int spec_finish(struct nnp_eval_spec *s)
{
	struct nnp_eval_lut *L = calloc(1, sizeof *L);
	int rc;
	if (!L)
		return oom();
	s->lut = L;
	if ((rc = lut_values(s, L)) || (rc = lut_dense(L)) || (rc = lut_members(s, L)))
		return rc;
	return NNP_OK;
}

static struct nnp_eval_spec *spec_alloc(size_t nmax)
{
	struct nnp_eval_spec *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	if (!(s->classes = calloc(nmax ? nmax : 1, sizeof *s->classes))) {
		free(s);
		return NULL;
	}
	return s;
}

/* Python's str() of a label (int) or region (tuple). */
static char *class_key(const int64_t *v, size_t n, int region)
{
	size_t cap = 8 + n * 24, len = 0;
	char *k = malloc(cap);
	if (!k)
		return NULL;
	if (!region) {
		snprintf(k, cap, "%lld", (long long)v[0]);
		return k;
	}
	len += (size_t)snprintf(k + len, cap - len, "(");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(k + len, cap - len, "%s%lld", i ? ", " : "", (long long)v[i]);
	snprintf(k + len, cap - len, n == 1 ? ",)" : ")");
	return k;
}

/* Append a class unless its key is already there (nnU-Net's dict keys). */
static int spec_add(struct nnp_eval_spec *s, const int64_t *v, size_t n, int region, const char *name)
{
	struct nnp_eval_class *c = &s->classes[s->nclasses];
	char *key = class_key(v, n, region);
	if (!key)
		return oom();
	for (size_t i = 0; i < s->nclasses; i++)
		if (!strcmp(s->classes[i].key, key)) {
			free(key);
			return NNP_OK;
		}
	if (s->nclasses >= NNP_EVAL_CLASSES_MAX) {
		free(key);
		return nnp_err(NNP_ENOMEM, "more than %d labels or regions", NNP_EVAL_CLASSES_MAX);
	}
	c->key = key;
	c->is_region = region;
	c->nvalues = n;
	if (!(c->values = malloc(n * sizeof *c->values)) || (name && !(c->name = strdup(name))))
		return oom();
	memcpy(c->values, v, n * sizeof *v);
	s->nclasses++;
	return NNP_OK;
}

int nnp_eval_spec_from_labels(const int64_t *labels, size_t n, const int64_t *ignore,
			      struct nnp_eval_spec **out)
{
	struct nnp_eval_spec *s;
	int rc = NNP_OK;
	*out = NULL;
	if (n == 0)
		return nnp_err(NNP_EUSAGE, "no labels to evaluate");
	if (n > NNP_EVAL_CLASSES_MAX)
		return nnp_err(NNP_EUSAGE, "more than %d labels", NNP_EVAL_CLASSES_MAX);
	if (!(s = spec_alloc(n)))
		return oom();
	for (size_t i = 0; i < n && !rc; i++)
		rc = spec_add(s, &labels[i], 1, 0, NULL);
	if (!rc && ignore) {
		s->has_ignore = 1;
		s->ignore = *ignore;
	}
	if (!rc)
		rc = spec_finish(s);
	if (rc) {
		nnp_eval_spec_free(s);
		return rc;
	}
	*out = s;
	return NNP_OK;
}

int nnp_eval_spec_set_distances(struct nnp_eval_spec *s, int hd95, int nsd, double nsd_tol_mm)
{
	if (nsd && !(isfinite(nsd_tol_mm) && nsd_tol_mm > 0))
		return nnp_err(NNP_EUSAGE, "the NSD tolerance must be a positive number of mm, not %g", nsd_tol_mm);
	s->hd95 = !!hd95;
	s->nsd = !!nsd;
	s->nsd_tol_mm = nsd ? nsd_tol_mm : 0;
	return NNP_OK;
}

/* ---- spec from dataset.json (LabelManager) ---- */

struct dsvals {
	int64_t *v;
	size_t n, cap;
};

static int dsv_push(struct dsvals *d, int64_t x)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		int64_t *p;
		if (cap > (size_t)NNP_EVAL_CLASSES_MAX * 64)
			return nnp_err(NNP_EDATA, "too many label values");
		if (!(p = realloc(d->v, cap * sizeof *p)))
			return oom();
		d->v = p;
		d->cap = cap;
	}
	d->v[d->n++] = x;
	return NNP_OK;
}

static int json_label_value(const json_t *v, const char *what, const char *key, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return NNP_OK;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d == floor(d) && fabs(d) < 9.0e18) {
			*out = (int64_t)d;
			return NNP_OK;
		}
	}
	return nnp_err(NNP_EDATA, "'%s': labels.%s: label values must be integers or lists of integers",
		       what, key);
}

/* The values of one "labels" entry (a scalar or a non-empty list). */
static int entry_values(const json_t *v, const char *what, const char *key, struct dsvals *d)
{
	int rc;
	d->n = 0;
	if (!json_is_array(v)) {
		int64_t x = 0;
		return (rc = json_label_value(v, what, key, &x)) ? rc : dsv_push(d, x);
	}
	if (json_array_size(v) == 0)
		return nnp_err(NNP_EDATA, "'%s': labels.%s: an empty list is not a label or region", what, key);
	for (size_t i = 0; i < json_array_size(v); i++) {
		int64_t x = 0;
		if ((rc = json_label_value(json_array_get(v, i), what, key, &x)) || (rc = dsv_push(d, x)))
			return rc;
	}
	return NNP_OK;
}

static int check_background(const json_t *labels, const char *what)
{
	const json_t *bg = json_object_get(labels, "background");
	int64_t v = 0;
	if (!bg)
		return nnp_err(NNP_EDATA, "'%s': labels: \"background\": 0 is missing", what);
	if (json_is_array(bg) || json_label_value(bg, what, "background", &v) || v != 0)
		return nnp_err(NNP_EDATA, "'%s': labels.background must be 0", what);
	return NNP_OK;
}

/* Every value except "ignore" (all_labels, unsorted) and whether any entry
 * is a list of more than one value (a region dataset). */
static int all_label_values(const json_t *labels, const char *what, struct dsvals *all, int *regions)
{
	struct dsvals e = { 0 };
	const char *k;
	json_t *v;
	int rc = NNP_OK;
	*regions = 0;
	json_object_foreach((json_t *)labels, k, v) {
		if (!strcmp(k, "ignore"))
			continue;
		if ((rc = entry_values(v, what, k, &e)))
			break;
		if (json_is_array(v) && json_array_size(v) > 1)
			*regions = 1;
		for (size_t i = 0; i < e.n && !rc; i++)
			rc = dsv_push(all, e.v[i]);
		if (rc)
			break;
	}
	free(e.v);
	return rc;
}

static int check_ignore(struct nnp_eval_spec *s, const json_t *labels, const char *what, const struct dsvals *all)
{
	const json_t *ig = json_object_get(labels, "ignore");
	int64_t mx = 0;
	if (!ig)
		return NNP_OK;
	if (!json_is_integer(ig))
		return nnp_err(NNP_EDATA, "'%s': labels.ignore must be an integer", what);
	for (size_t i = 0; i < all->n; i++)
		if (!i || all->v[i] > mx)
			mx = all->v[i];
	if ((int64_t)json_integer_value(ig) != mx + 1)
		return nnp_err(NNP_EDATA, "'%s': labels.ignore is %lld but must be max(labels) + 1 = %lld", what,
			       (long long)json_integer_value(ig), (long long)mx + 1);
	s->has_ignore = 1;
	s->ignore = (int64_t)json_integer_value(ig);
	return NNP_OK;
}

/* The name of the first entry whose value is exactly the label v. */
static const char *label_name(const json_t *labels, int64_t v)
{
	const char *k;
	json_t *e;
	json_object_foreach((json_t *)labels, k, e) {
		int64_t x = 0;
		const json_t *one = json_is_array(e) && json_array_size(e) == 1 ? json_array_get(e, 0) : e;
		if (strcmp(k, "ignore") && !json_is_array(one) && json_is_integer(one) &&
		    (x = (int64_t)json_integer_value(one)) == v)
			return k;
	}
	return NULL;
}

static int spec_labels(struct nnp_eval_spec *s, const json_t *labels, struct dsvals *all)
{
	int rc = NNP_OK;
	qsort(all->v, all->n, sizeof *all->v, cmp_i64);
	for (size_t i = 0; i < all->n && !rc; i++)
		if (all->v[i] != 0 && (!i || all->v[i] != all->v[i - 1]))
			rc = spec_add(s, &all->v[i], 1, 0, label_name(labels, all->v[i]));
	return rc;
}

static int all_zero(const struct dsvals *e)
{
	for (size_t i = 0; i < e->n; i++)
		if (e->v[i] != 0)
			return 0;
	return 1;
}

static int spec_regions(struct nnp_eval_spec *s, const json_t *ds, const json_t *labels, const char *what)
{
	struct dsvals e = { 0 };
	const json_t *rco = json_object_get(ds, "regions_class_order");
	const char *k;
	json_t *v;
	int rc = NNP_OK;
	size_t nreg = 0;
	json_object_foreach((json_t *)labels, k, v) {
		if (!strcmp(k, "ignore"))
			continue;
		if ((rc = entry_values(v, what, k, &e)))
			break;
		if (all_zero(&e))
			continue;
		nreg++;
		if ((rc = spec_add(s, e.v, e.n, json_is_array(v), k)))
			break;
	}
	free(e.v);
	if (rc)
		return rc;
	if (!json_is_array(rco))
		return nnp_err(NNP_EDATA, "'%s': labels define regions but regions_class_order is missing", what);
	if (json_array_size(rco) != nreg)
		return nnp_err(NNP_EDATA, "'%s': regions_class_order has %zu entries but labels define %zu regions",
			       what, json_array_size(rco), nreg);
	return NNP_OK;
}

static int spec_file_ending(struct nnp_eval_spec *s, const json_t *ds, const char *what)
{
	const json_t *fe = json_object_get(ds, "file_ending");
	if (!json_is_string(fe) || !json_string_length(fe))
		return nnp_err(NNP_EDATA, "'%s': file_ending is missing (e.g. \".nii.gz\")", what);
	return (s->file_ending = strdup(json_string_value(fe))) ? NNP_OK : oom();
}

static int spec_dataset(struct nnp_eval_spec *s, const json_t *ds, const char *what)
{
	const json_t *labels = json_object_get(ds, "labels");
	struct dsvals all = { 0 };
	int regions, rc;
	if (!json_is_object(ds))
		return nnp_err(NNP_EDATA, "'%s': not a JSON object", what);
	if (!json_is_object(labels) || !json_object_size(labels))
		return nnp_err(NNP_EDATA, "'%s': \"labels\" is missing or not a dict {name: value}", what);
	if ((rc = check_background(labels, what)) || (rc = all_label_values(labels, what, &all, &regions)) ||
	    (rc = check_ignore(s, labels, what, &all)))
		goto out;
	rc = regions ? spec_regions(s, ds, labels, what) : spec_labels(s, labels, &all);
	if (!rc && !s->nclasses)
		rc = nnp_err(NNP_EDATA, "'%s': no foreground label or region to evaluate", what);
	if (!rc)
		rc = spec_file_ending(s, ds, what);
out:
	free(all.v);
	return rc;
}

int nnp_eval_spec_from_dataset(const json_t *dataset_json, const char *what, struct nnp_eval_spec **out)
{
	const json_t *labels = json_object_get(dataset_json, "labels");
	size_t nmax = 1;
	struct nnp_eval_spec *s;
	int rc;
	const char *k;
	json_t *v;
	*out = NULL;
	if (json_is_object(labels)) {
		json_object_foreach((json_t *)labels, k, v)
			nmax += json_is_array(v) ? json_array_size(v) : 1;
	}
	if (nmax > NNP_EVAL_CLASSES_MAX * 64)
		return nnp_err(NNP_EDATA, "'%s': too many labels", what);
	if (!(s = spec_alloc(nmax)))
		return oom();
	rc = spec_dataset(s, dataset_json, what);
	if (!rc)
		rc = spec_finish(s);
	if (rc) {
		nnp_eval_spec_free(s);
		return rc;
	}
	*out = s;
	return NNP_OK;
}

/* ---- metrics ---- */

void nnp_eval_metrics(const struct nnp_eval_counts *c, double m[NNP_EM_COUNT])
{
	uint64_t d = c->tp + c->fp + c->fn;
	m[NNP_EM_DICE] = d ? (double)(2 * c->tp) / (double)(2 * c->tp + c->fp + c->fn) : NAN;
	m[NNP_EM_IOU] = d ? (double)c->tp / (double)d : NAN;
	m[NNP_EM_TP] = (double)c->tp;
	m[NNP_EM_FP] = (double)c->fp;
	m[NNP_EM_FN] = (double)c->fn;
	m[NNP_EM_TN] = (double)c->tn;
	m[NNP_EM_N_PRED] = (double)(c->tp + c->fp);
	m[NNP_EM_N_REF] = (double)(c->tp + c->fn);
	m[NNP_EM_HD95] = NAN;
	m[NNP_EM_NSD] = NAN;
}

void nnp_eval_result_release(struct nnp_eval_result *r)
{
	if (!r)
		return;
	free(r->pred_file);
	free(r->ref_file);
	free(r->counts);
	free(r->m);
	memset(r, 0, sizeof *r);
}

static int result_alloc(struct nnp_eval_result *r, size_t nclasses)
{
	r->nclasses = nclasses;
	r->counts = calloc(nclasses ? nclasses : 1, sizeof *r->counts);
	r->m = malloc((nclasses ? nclasses : 1) * NNP_EM_COUNT * sizeof *r->m);
	if (!r->counts || !r->m)
		return oom();
	for (size_t i = 0; i < nclasses * NNP_EM_COUNT; i++)
		r->m[i] = NAN;
	return NNP_OK;
}

/* ---- value ids ---- */

static inline uint16_t id_int(const struct nnp_eval_lut *L, int64_t v)
{
	if (L->dense) {
		uint64_t k = (uint64_t)v - (uint64_t)L->vmin;
		return k < L->span ? L->dense[k] : (uint16_t)L->nvals;
	}
	return (uint16_t)lut_id(L, v);
}

/* A float label: 1 and *id, or 0 when it is not an integer. */
static inline int id_float(const struct nnp_eval_lut *L, double v, uint16_t *id)
{
	if (!isfinite(v) || v != floor(v))
		return 0;
	*id = fabs(v) < 9.2e18 ? id_int(L, (int64_t)v) : (uint16_t)L->nvals;
	return 1;
}

#define IDS_INT(T)                                       \
	do {                                             \
		const T *p_ = src;                       \
		for (size_t i = 0; i < n; i++)           \
			ids[i] = id_int(L, (int64_t)p_[i]); \
	} while (0)

/* Voxels to ids; *bad receives the index of a non-integer value or n. */
static void to_ids(const struct nnp_eval_lut *L, enum nnp_dtype dt, const void *src, const double *scale,
		   size_t n, uint16_t *ids, size_t *bad, double *badv)
{
	int scaled = scale && scale[0] != 0 && !(scale[0] == 1 && scale[1] == 0);
	*bad = n;
	if (!scaled && dt == NNP_U8) {
		IDS_INT(uint8_t);
	} else if (!scaled && dt == NNP_I8) {
		IDS_INT(int8_t);
	} else if (!scaled && dt == NNP_I16) {
		IDS_INT(int16_t);
	} else if (!scaled && dt == NNP_U16) {
		IDS_INT(uint16_t);
	} else if (!scaled && dt == NNP_I32) {
		IDS_INT(int32_t);
	} else if (!scaled && dt == NNP_U32) {
		IDS_INT(uint32_t);
	} else if (!scaled && dt == NNP_I64) {
		IDS_INT(int64_t);
	} else if (!scaled && dt == NNP_U64) {
		const uint64_t *p = src;
		for (size_t i = 0; i < n; i++)
			ids[i] = p[i] > (uint64_t)INT64_MAX ? (uint16_t)L->nvals : id_int(L, (int64_t)p[i]);
	} else {
		double buf[1024];
		size_t es = nnp_dtype_size(dt);
		for (size_t i = 0; i < n; i += 1024) {
			size_t k = n - i < 1024 ? n - i : 1024;
			nnp_to_f64(dt, (const char *)src + i * es, buf, k);
			for (size_t j = 0; j < k; j++) {
				double v = scaled ? buf[j] * scale[0] + scale[1] : buf[j];
				if (!id_float(L, v, &ids[i + j])) {
					*bad = i + j;
					*badv = v;
					return;
				}
			}
		}
	}
}

/* ---- one case ---- */

struct nnp_eval_case {
	const struct nnp_eval_spec *s;
	int64_t shape[3];
	double spacing[3];
	uint64_t nvox, seen;
	size_t K1;
	uint64_t *hist;          /* K1 x K1: [pred id][ref id] */
	uint16_t *pid, *rid;     /* whole volumes (distances) or slab scratch */
	size_t cap;              /* scratch capacity (voxels); 0: whole volumes */
	int bad_side;            /* 0 prediction, 1 reference: which had a bad value */
};

void nnp_eval_case_free(struct nnp_eval_case *c)
{
	if (!c)
		return;
	free(c->hist);
	free(c->pid);
	free(c->rid);
	free(c);
}

int nnp_eval_case_new(const struct nnp_eval_spec *s, const int64_t shape[3], const double spacing[3],
		      struct nnp_eval_case **out)
{
	struct nnp_eval_case *c;
	*out = NULL;
	for (int i = 0; i < 3; i++)
		if (shape[i] < 1 || shape[i] > (int64_t)1 << 20)
			return nnp_err(NNP_EDATA, "bad shape %lld x %lld x %lld", (long long)shape[0],
				       (long long)shape[1], (long long)shape[2]);
	if (!(c = calloc(1, sizeof *c)))
		return oom();
	c->s = s;
	memcpy(c->shape, shape, sizeof c->shape);
	memcpy(c->spacing, spacing, sizeof c->spacing);
	c->nvox = (uint64_t)shape[0] * (uint64_t)shape[1] * (uint64_t)shape[2];
	c->K1 = s->lut->nvals + 1;
	if (!(c->hist = calloc(c->K1 * c->K1, sizeof *c->hist)))
		goto fail;
	if (s->hd95 || s->nsd) {
		if (c->nvox > SIZE_MAX / 2 || !(c->pid = malloc(c->nvox * 2)) || !(c->rid = malloc(c->nvox * 2))) {
			nnp_eval_case_free(c);
			return nnp_err(NNP_ENOMEM, "out of memory: HD95/NSD keep 4 bytes per voxel (%llu voxels)",
				       (unsigned long long)c->nvox);
		}
	}
	*out = c;
	return NNP_OK;
fail:
	nnp_eval_case_free(c);
	return oom();
}

static int scratch(struct nnp_eval_case *c, size_t n)
{
	uint16_t *p, *r;
	if (n <= c->cap)
		return NNP_OK;
	if (!(p = realloc(c->pid, n * 2)))
		return oom();
	c->pid = p;
	if (!(r = realloc(c->rid, n * 2)))
		return oom();
	c->rid = r;
	c->cap = n;
	return NNP_OK;
}

static int bad_value(const struct nnp_eval_case *c, uint64_t idx, double v)
{
	uint64_t X = (uint64_t)c->shape[2], Y = (uint64_t)c->shape[1];
	return nnp_err(NNP_EDATA, "voxel (%llu, %llu, %llu) holds %.17g: a segmentation must hold integer labels",
		       (unsigned long long)(idx % X), (unsigned long long)(idx / X % Y),
		       (unsigned long long)(idx / X / Y), v);
}

int nnp_eval_case_add(struct nnp_eval_case *c, size_t n, enum nnp_dtype pdt, const void *pred,
		      const double *pscale, enum nnp_dtype rdt, const void *ref, const double *rscale)
{
	const struct nnp_eval_lut *L = c->s->lut;
	uint16_t *pi, *ri;
	size_t bad;
	double bv = 0;
	int whole = c->s->hd95 || c->s->nsd, rc;
	if (n > c->nvox - c->seen)
		return nnp_err(NNP_EINTERNAL, "more voxels than the shape holds");
	if (!whole && (rc = scratch(c, n)))
		return rc;
	pi = whole ? c->pid + c->seen : c->pid;
	ri = whole ? c->rid + c->seen : c->rid;
	to_ids(L, pdt, pred, pscale, n, pi, &bad, &bv);
	if (bad < n) {
		c->bad_side = 0;
		return bad_value(c, c->seen + bad, bv);
	}
	to_ids(L, rdt, ref, rscale, n, ri, &bad, &bv);
	if (bad < n) {
		c->bad_side = 1;
		return bad_value(c, c->seen + bad, bv);
	}
	for (size_t i = 0; i < n; i++)
		c->hist[(size_t)pi[i] * c->K1 + ri[i]]++;
	c->seen += n;
	return NNP_OK;
}

static int valid_id(const struct nnp_eval_lut *L, size_t r)
{
	return L->ign_id < 0 || r != (size_t)L->ign_id;
}

static void class_counts(const struct nnp_eval_case *c, size_t k, const uint64_t *col,
			 const uint64_t *rowvalid, uint64_t nvalid, struct nnp_eval_counts *out)
{
	const struct nnp_eval_lut *L = c->s->lut;
	const uint16_t *ids = L->ids[k];
	size_t n = L->nids[k];
	uint64_t tp = 0, np = 0, nr = 0;
	for (size_t i = 0; i < n; i++) {
		np += rowvalid[ids[i]];
		if (valid_id(L, ids[i]))
			nr += col[ids[i]];
		for (size_t j = 0; j < n; j++)
			if (valid_id(L, ids[j]))
				tp += c->hist[(size_t)ids[i] * c->K1 + ids[j]];
	}
	out->tp = tp;
	out->fp = np - tp;
	out->fn = nr - tp;
	out->tn = nvalid - tp - out->fp - out->fn;
}

static int distances_of_class(const struct nnp_eval_case *c, size_t k, double *hd95, double *nsd);

int nnp_eval_case_finish(struct nnp_eval_case *c, struct nnp_eval_result *r)
{
	const struct nnp_eval_spec *s = c->s;
	uint64_t *col, *rowvalid, nvalid = 0;
	int rc;
	memset(r, 0, sizeof *r);
	if (c->seen != c->nvox)
		return nnp_err(NNP_EINTERNAL, "case finished after %llu of %llu voxels",
			       (unsigned long long)c->seen, (unsigned long long)c->nvox);
	if ((rc = result_alloc(r, s->nclasses)))
		return rc;
	col = calloc(c->K1, sizeof *col);
	rowvalid = calloc(c->K1, sizeof *rowvalid);
	if (!col || !rowvalid) {
		free(col);
		free(rowvalid);
		nnp_eval_result_release(r);
		return oom();
	}
	for (size_t p = 0; p < c->K1; p++)
		for (size_t q = 0; q < c->K1; q++) {
			uint64_t h = c->hist[p * c->K1 + q];
			col[q] += h;
			if (valid_id(s->lut, q))
				rowvalid[p] += h;
		}
	for (size_t q = 0; q < c->K1; q++)
		if (valid_id(s->lut, q))
			nvalid += col[q];
	for (size_t k = 0; k < s->nclasses && !rc; k++) {
		double *m = r->m + k * NNP_EM_COUNT;
		class_counts(c, k, col, rowvalid, nvalid, &r->counts[k]);
		nnp_eval_metrics(&r->counts[k], m);
		if (s->hd95 || s->nsd)
			rc = distances_of_class(c, k, &m[NNP_EM_HD95], &m[NNP_EM_NSD]);
		if (!s->hd95)
			m[NNP_EM_HD95] = NAN;
		if (!s->nsd)
			m[NNP_EM_NSD] = NAN;
	}
	free(col);
	free(rowvalid);
	if (rc)
		nnp_eval_result_release(r);
	return rc;
}

int nnp_eval_arrays(const struct nnp_eval_spec *s, const int64_t shape[3], const double spacing[3],
		    enum nnp_dtype pdt, const void *pred, enum nnp_dtype rdt, const void *ref,
		    struct nnp_eval_result *r)
{
	struct nnp_eval_case *c;
	size_t pe = nnp_dtype_size(pdt), re = nnp_dtype_size(rdt), chunk = (size_t)1 << 20;
	int rc;
	memset(r, 0, sizeof *r);
	if (!pe || !re)
		return nnp_err(NNP_EUSAGE, "bad dtype");
	if ((rc = nnp_eval_case_new(s, shape, spacing, &c)))
		return rc;
	for (uint64_t off = 0; off < c->nvox && !rc; off += chunk) {
		size_t n = c->nvox - off < chunk ? (size_t)(c->nvox - off) : chunk;
		rc = nnp_eval_case_add(c, n, pdt, (const char *)pred + off * pe, NULL, rdt,
				       (const char *)ref + off * re, NULL);
		if (rc)
			nnp_err_ctx(rc, "%s", c->bad_side ? "reference" : "prediction");
	}
	if (!rc)
		rc = nnp_eval_case_finish(c, r);
	nnp_eval_case_free(c);
	return rc;
}

/* ---- two files ---- */

static int one_channel(const struct nnp_nifti_in *in)
{
	const struct nnp_frame *f = nnp_nifti_frame(in);
	if (f->shape[0] != 1)
		return nnp_err(NNP_EDATA, "'%s': 4D file with %lld volumes: a segmentation has one",
			       nnp_nifti_path(in), (long long)f->shape[0]);
	return NNP_OK;
}

static int same_shape(const struct nnp_nifti_in *p, const struct nnp_nifti_in *r)
{
	const struct nnp_frame *a = nnp_nifti_frame(p), *b = nnp_nifti_frame(r);
	if (a->shape[1] == b->shape[1] && a->shape[2] == b->shape[2] && a->shape[3] == b->shape[3])
		return NNP_OK;
	return nnp_err(NNP_EDATA, "'%s' and '%s' differ in shape: (%lld, %lld, %lld) vs (%lld, %lld, %lld)",
		       nnp_nifti_path(p), nnp_nifti_path(r), (long long)a->shape[3], (long long)a->shape[2],
		       (long long)a->shape[1], (long long)b->shape[3], (long long)b->shape[2],
		       (long long)b->shape[1]);
}

static int spacing_differs(const struct nnp_frame *a, const struct nnp_frame *b)
{
	for (int i = 0; i < 3; i++) {
		double x = a->spacing[i], y = b->spacing[i];
		if (fabs(x - y) > 1e-5 * fmax(fabs(x), fabs(y)))
			return 1;
	}
	return 0;
}

struct filepair {
	struct nnp_nifti_in *p, *r;
	void *pb, *rb;
	int64_t zs;
};

static int read_pair(struct filepair *fp, struct nnp_eval_case *c)
{
	const struct nnp_frame *pf = nnp_nifti_frame(fp->p), *rf = nnp_nifti_frame(fp->r);
	uint64_t plane = (uint64_t)pf->shape[2] * (uint64_t)pf->shape[3];
	int rc = NNP_OK;
	for (int64_t z0 = 0; z0 < pf->shape[1] && !rc; z0 += fp->zs) {
		int64_t k = pf->shape[1] - z0 < fp->zs ? pf->shape[1] - z0 : fp->zs;
		if ((rc = nnp_nifti_read_slab(fp->p, 0, z0, k, fp->pb)) ||
		    (rc = nnp_nifti_read_slab(fp->r, 0, z0, k, fp->rb)))
			break;
		rc = nnp_eval_case_add(c, (size_t)(plane * (uint64_t)k), pf->dtype, fp->pb, pf->scale, rf->dtype,
				       fp->rb, rf->scale);
		if (rc)
			nnp_err_ctx(rc, "'%s'", nnp_nifti_path(c->bad_side ? fp->r : fp->p));
	}
	return rc;
}

static int eval_open(struct filepair *fp, const char *pred, const char *ref)
{
	const struct nnp_frame *pf, *rf;
	uint64_t plane;
	size_t es;
	int rc;
	if ((rc = nnp_nifti_open(pred, &fp->p)) || (rc = nnp_nifti_open(ref, &fp->r)) || (rc = one_channel(fp->p)) ||
	    (rc = one_channel(fp->r)) || (rc = same_shape(fp->p, fp->r)))
		return rc;
	pf = nnp_nifti_frame(fp->p);
	rf = nnp_nifti_frame(fp->r);
	plane = (uint64_t)pf->shape[2] * (uint64_t)pf->shape[3];
	es = nnp_dtype_size(pf->dtype) > nnp_dtype_size(rf->dtype) ? nnp_dtype_size(pf->dtype)
								    : nnp_dtype_size(rf->dtype);
	fp->zs = (int64_t)(SLAB_BYTES / (plane * es));
	if (fp->zs < 1)
		fp->zs = 1;
	if (fp->zs > pf->shape[1])
		fp->zs = pf->shape[1];
	fp->pb = malloc((size_t)((uint64_t)fp->zs * plane * nnp_dtype_size(pf->dtype)));
	fp->rb = malloc((size_t)((uint64_t)fp->zs * plane * nnp_dtype_size(rf->dtype)));
	return fp->pb && fp->rb ? NNP_OK : oom();
}

int nnp_eval_files(const struct nnp_eval_spec *s, const char *pred, const char *ref,
		   struct nnp_eval_result *r)
{
	struct filepair fp = { 0 };
	struct nnp_eval_case *c = NULL;
	int rc;
	memset(r, 0, sizeof *r);
	rc = eval_open(&fp, pred, ref);
	if (!rc) {
		const struct nnp_frame *pf = nnp_nifti_frame(fp.p), *rf = nnp_nifti_frame(fp.r);
		int64_t shape[3] = { pf->shape[1], pf->shape[2], pf->shape[3] };
		if (!(rc = nnp_eval_case_new(s, shape, rf->spacing, &c)) && !(rc = read_pair(&fp, c)) &&
		    !(rc = nnp_eval_case_finish(c, r))) {
			r->spacing_differs = spacing_differs(pf, rf);
			if (!(r->pred_file = strdup(pred)) || !(r->ref_file = strdup(ref))) {
				nnp_eval_result_release(r);
				rc = oom();
			}
		}
	}
	nnp_eval_case_free(c);
	nnp_nifti_close(fp.p);
	nnp_nifti_close(fp.r);
	free(fp.pb);
	free(fp.rb);
	return rc;
}

/* ---- surfaces and distances ---- */

/* A class (or two masks) cropped to its bounding box, padded by one
 * background voxel on every side (not along z in 2D). */
struct crop {
	int64_t d[3];             /* padded dims */
	unsigned char *P, *R;     /* masks, then borders (bit 1) */
	int is2d;
};

static void crop_free(struct crop *k)
{
	free(k->P);
	free(k->R);
}

static int crop_alloc(struct crop *k, const int64_t lo[3], const int64_t hi[3], int is2d)
{
	uint64_t n;
	k->is2d = is2d;
	for (int i = 0; i < 3; i++)
		k->d[i] = hi[i] - lo[i] + 1 + ((i || !is2d) ? 2 : 0);
	n = (uint64_t)k->d[0] * (uint64_t)k->d[1] * (uint64_t)k->d[2];
	k->P = calloc((size_t)n, 1);
	k->R = calloc((size_t)n, 1);
	return k->P && k->R ? NNP_OK : oom();
}

/* Padded index of the voxel (z, y, x) of the box starting at lo. */
static inline size_t crop_at(const struct crop *k, const int64_t lo[3], int64_t z, int64_t y, int64_t x)
{
	int64_t pz = z - lo[0] + (k->is2d ? 0 : 1), py = y - lo[1] + 1, px = x - lo[2] + 1;
	return ((size_t)pz * (size_t)k->d[1] + (size_t)py) * (size_t)k->d[2] + (size_t)px;
}

static void bbox_grow(int64_t lo[3], int64_t hi[3], int64_t z, int64_t y, int64_t x)
{
	int64_t v[3] = { z, y, x };
	for (int i = 0; i < 3; i++) {
		if (v[i] < lo[i])
			lo[i] = v[i];
		if (v[i] > hi[i])
			hi[i] = v[i];
	}
}

/* Voxel membership for a class: from the id volumes, or from two masks. */
struct masksrc {
	const uint16_t *pid, *rid;
	const unsigned char *member;   /* K + 1 entries */
	int ign_id;
	const unsigned char *pm, *rm;  /* or plain masks */
};

static inline void src_at(const struct masksrc *m, size_t i, int *p, int *r)
{
	if (m->pm) {
		*p = m->pm[i] != 0;
		*r = m->rm[i] != 0;
		return;
	}
	int valid = m->ign_id < 0 || m->rid[i] != (uint16_t)m->ign_id;
	*p = valid && m->member[m->pid[i]];
	*r = valid && m->member[m->rid[i]];
}

/* Bounding box of pred | ref; *np, *nr: voxel counts. */
static void src_bbox(const struct masksrc *m, const int64_t sh[3], int64_t lo[3], int64_t hi[3], uint64_t *np,
		     uint64_t *nr)
{
	size_t i = 0;
	*np = *nr = 0;
	for (int a = 0; a < 3; a++) {
		lo[a] = sh[a];
		hi[a] = -1;
	}
	for (int64_t z = 0; z < sh[0]; z++)
		for (int64_t y = 0; y < sh[1]; y++)
			for (int64_t x = 0; x < sh[2]; x++, i++) {
				int p, r;
				src_at(m, i, &p, &r);
				*np += (uint64_t)p;
				*nr += (uint64_t)r;
				if (p || r)
					bbox_grow(lo, hi, z, y, x);
			}
}

static void src_crop(const struct masksrc *m, const int64_t sh[3], const int64_t lo[3], const int64_t hi[3],
		     struct crop *k)
{
	for (int64_t z = lo[0]; z <= hi[0]; z++)
		for (int64_t y = lo[1]; y <= hi[1]; y++) {
			size_t i = ((size_t)z * (size_t)sh[1] + (size_t)y) * (size_t)sh[2] + (size_t)lo[2];
			for (int64_t x = lo[2]; x <= hi[2]; x++, i++) {
				int p, r;
				size_t j = crop_at(k, lo, z, y, x);
				src_at(m, i, &p, &r);
				k->P[j] = (unsigned char)p;
				k->R[j] = (unsigned char)r;
			}
		}
}

/* Mark border voxels (a mask voxel with a background 26/8-neighbour) with
 * bit 1; returns their number.  The padding makes every neighbour exist. */
static uint64_t mark_border(unsigned char *M, const struct crop *k)
{
	int64_t Z = k->d[0], Y = k->d[1], X = k->d[2], zr = k->is2d ? 0 : 1;
	uint64_t n = 0;
	for (int64_t z = zr; z < Z - zr; z++)
		for (int64_t y = 1; y < Y - 1; y++)
			for (int64_t x = 1; x < X - 1; x++) {
				size_t i = ((size_t)z * (size_t)Y + (size_t)y) * (size_t)X + (size_t)x;
				int edge = 0;
				if (!(M[i] & 1))
					continue;
				for (int64_t dz = -zr; dz <= zr && !edge; dz++)
					for (int64_t dy = -1; dy <= 1 && !edge; dy++)
						for (int64_t dx = -1; dx <= 1 && !edge; dx++) {
							size_t j = ((size_t)(z + dz) * (size_t)Y + (size_t)(y + dy)) *
									   (size_t)X +
								   (size_t)(x + dx);
							edge = !(M[j] & 1);
						}
				if (edge) {
					M[i] |= 2;
					n++;
				}
			}
	return n;
}

/* One line of the lower envelope of parabolas (Felzenszwalb-Huttenlocher):
 * f in, d out (may alias f: f is copied to ff first). */
static void edt_line(double *f, int64_t n, int64_t stride, double s2, double *ff, int64_t *v, double *zb)
{
	int64_t k = -1;
	for (int64_t q = 0; q < n; q++)
		ff[q] = f[q * stride];
	for (int64_t q = 0; q < n; q++) {
		double s;
		if (ff[q] == INFINITY)
			continue;
		if (k < 0) {
			k = 0;
			v[0] = q;
			zb[0] = -INFINITY;
			zb[1] = INFINITY;
			continue;
		}
		for (;;) {
			int64_t p = v[k];
			s = ((ff[q] + s2 * (double)q * (double)q) - (ff[p] + s2 * (double)p * (double)p)) /
			    (2 * s2 * (double)(q - p));
			if (s > zb[k])
				break;
			k--;
		}
		k++;
		v[k] = q;
		zb[k] = s;
		zb[k + 1] = INFINITY;
	}
	if (k < 0)
		return;   /* no feature on the line: stays INFINITY */
	k = 0;
	for (int64_t q = 0; q < n; q++) {
		double dq;
		while (zb[k + 1] < (double)q)
			k++;
		dq = (double)(q - v[k]);
		f[q * stride] = s2 * dq * dq + ff[v[k]];
	}
}

int nnp_eval_edt_sq(double *g, const int64_t sh[3], const double sp[3])
{
	int64_t nmax = sh[0] > sh[1] ? sh[0] : sh[1];
	double *ff, *zb;
	int64_t *v;
	if (sh[2] > nmax)
		nmax = sh[2];
	ff = malloc((size_t)nmax * sizeof *ff);
	zb = malloc((size_t)(nmax + 1) * sizeof *zb);
	v = malloc((size_t)nmax * sizeof *v);
	if (!ff || !zb || !v) {
		free(ff);
		free(zb);
		free(v);
		return oom();
	}
	for (int64_t z = 0; z < sh[0]; z++)
		for (int64_t y = 0; y < sh[1]; y++)
			edt_line(g + ((size_t)z * (size_t)sh[1] + (size_t)y) * (size_t)sh[2], sh[2], 1,
				 sp[2] * sp[2], ff, v, zb);
	for (int64_t z = 0; z < sh[0]; z++)
		for (int64_t x = 0; x < sh[2]; x++)
			edt_line(g + (size_t)z * (size_t)sh[1] * (size_t)sh[2] + (size_t)x, sh[1], sh[2],
				 sp[1] * sp[1], ff, v, zb);
	if (sh[0] > 1)
		for (int64_t i = 0; i < sh[1] * sh[2]; i++)
			edt_line(g + i, sh[0], sh[1] * sh[2], sp[0] * sp[0], ff, v, zb);
	free(ff);
	free(zb);
	free(v);
	return NNP_OK;
}

/* Distances (mm) from the border voxels of `from` to the nearest border
 * voxel of `to`: out gets nfrom values. */
static int directed(const struct crop *k, const unsigned char *from, const unsigned char *to, const double sp[3],
		    double *out, double *g)
{
	size_t n = (size_t)k->d[0] * (size_t)k->d[1] * (size_t)k->d[2], j = 0;
	int rc;
	for (size_t i = 0; i < n; i++)
		g[i] = (to[i] & 2) ? 0.0 : INFINITY;
	if ((rc = nnp_eval_edt_sq(g, k->d, sp)))
		return rc;
	for (size_t i = 0; i < n; i++)
		if (from[i] & 2)
			out[j++] = sqrt(g[i]);
	return NNP_OK;
}

static void surface_scores(double *dpr, uint64_t np, double *drp, uint64_t nr, double tol, double *hd95,
			   double *nsd)
{
	uint64_t ok = 0;
	for (uint64_t i = 0; i < np; i++)
		ok += dpr[i] <= tol;
	for (uint64_t i = 0; i < nr; i++)
		ok += drp[i] <= tol;
	*nsd = (double)ok / (double)(np + nr);
	*hd95 = fmax(nnp_np_percentile(dpr, np, 95), nnp_np_percentile(drp, nr, 95));
}

/* HD95 and NSD of the cropped masks (both non-empty). */
static int crop_scores(struct crop *k, const double sp[3], double tol, double *hd95, double *nsd)
{
	uint64_t np = mark_border(k->P, k), nr = mark_border(k->R, k);
	size_t n = (size_t)k->d[0] * (size_t)k->d[1] * (size_t)k->d[2];
	double *g = malloc(n * sizeof *g), *dpr = malloc((size_t)np * sizeof *dpr),
	       *drp = malloc((size_t)nr * sizeof *drp);
	int rc = g && dpr && drp ? NNP_OK : oom();
	if (!rc)
		rc = directed(k, k->P, k->R, sp, dpr, g);
	if (!rc)
		rc = directed(k, k->R, k->P, sp, drp, g);
	if (!rc)
		surface_scores(dpr, np, drp, nr, tol, hd95, nsd);
	free(g);
	free(dpr);
	free(drp);
	return rc;
}

static int src_scores(const struct masksrc *m, const int64_t sh[3], const double sp[3], double tol,
		      double *hd95, double *nsd)
{
	int64_t lo[3], hi[3];
	uint64_t np, nr;
	struct crop k = { { 0 }, NULL, NULL, 0 };
	double h, d;
	int rc;
	src_bbox(m, sh, lo, hi, &np, &nr);
	if (!np || !nr) {
		h = np || nr ? INFINITY : NAN;
		d = np || nr ? 0.0 : NAN;
		rc = NNP_OK;
	} else if (!(rc = crop_alloc(&k, lo, hi, sh[0] == 1))) {
		src_crop(m, sh, lo, hi, &k);
		rc = crop_scores(&k, sp, tol, &h, &d);
	}
	crop_free(&k);
	if (!rc) {
		if (hd95)
			*hd95 = h;
		if (nsd)
			*nsd = d;
	}
	return rc;
}

static int distances_of_class(const struct nnp_eval_case *c, size_t k, double *hd95, double *nsd)
{
	const struct nnp_eval_lut *L = c->s->lut;
	struct masksrc m = { c->pid, c->rid, L->member + k * c->K1, L->ign_id, NULL, NULL };
	return src_scores(&m, c->shape, c->spacing, c->s->nsd ? c->s->nsd_tol_mm : 0, hd95, nsd);
}

int nnp_eval_distances(const unsigned char *pred, const unsigned char *ref, const int64_t shape[3],
		       const double spacing[3], double tol_mm, double *hd95, double *nsd)
{
	struct masksrc m = { NULL, NULL, NULL, -1, pred, ref };
	for (int i = 0; i < 3; i++)
		if (shape[i] < 1)
			return nnp_err(NNP_EUSAGE, "bad shape");
	return src_scores(&m, shape, spacing, tol_mm, hd95, nsd);
}

/* ---- folders ---- */

/* os.path.join(dir, name) */
static char *py_join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	if (!n)
		return strdup(name);
	return nnp_strprintf("%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", name);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* subfiles(dir, suffix=ending, join=False): regular files (links followed), sorted. */
/* The segmentations of dir (CASE_probabilities files are not). */
static int list_files(const char *dir, const char *ending, char ***out, size_t *nout)
{
	return nnp_list_dir(dir, ending, NNP_LIST_NO_PROBABILITIES, out, nout);
}

void nnp_eval_pairs_release(struct nnp_eval_pairs *p)
{
	if (!p)
		return;
	free_names(p->pred, p->n);
	free_names(p->ref, p->n);
	memset(p, 0, sizeof *p);
}

/* Unless chill: every reference file has a prediction of the same name. */
static int check_refs_predicted(const char *pred_dir, const char *ref_dir, const char *ending, char **names,
				size_t n)
{
	char **refs;
	size_t nr;
	int rc = list_files(ref_dir, ending, &refs, &nr);
	for (size_t i = 0; i < nr && !rc; i++)
		if (!bsearch(&refs[i], names, n, sizeof *names, cmp_str))
			rc = nnp_err(NNP_EDATA, "reference '%s' has no prediction in '%s' (--chill evaluates the "
				     "predictions present only)", refs[i], pred_dir);
	free_names(refs, nr);
	return rc;
}

static int pair_paths(const char *pred_dir, const char *ref_dir, char **names, size_t n, struct nnp_eval_pairs *p)
{
	if (!(p->pred = calloc(n, sizeof *p->pred)) || !(p->ref = calloc(n, sizeof *p->ref)))
		return oom();
	p->n = n;
	for (size_t i = 0; i < n; i++) {
		if (!(p->pred[i] = py_join(pred_dir, names[i])) || !(p->ref[i] = py_join(ref_dir, names[i])))
			return oom();
		if (!nnp_is_file(p->ref[i]))
			return nnp_err(NNP_EDATA, "prediction '%s' has no reference: '%s' %s", p->pred[i], p->ref[i],
				       access(p->ref[i], F_OK) ? "does not exist" : "is not a regular file");
	}
	return NNP_OK;
}

int nnp_eval_pairs_list(const char *pred_dir, const char *ref_dir, const char *ending, int chill,
			struct nnp_eval_pairs *p)
{
	char **names;
	size_t n;
	int rc;
	memset(p, 0, sizeof *p);
	if (!nnp_is_dir(ref_dir))
		return nnp_err(NNP_EDATA, "reference folder '%s' is not a folder", ref_dir);
	if ((rc = list_files(pred_dir, ending, &names, &n)))
		return rc;
	if (!n)
		rc = nnp_err(NNP_EDATA, "no prediction files ending in '%s' in '%s'", ending, pred_dir);
	if (!rc && !chill)
		rc = check_refs_predicted(pred_dir, ref_dir, ending, names, n);
	if (!rc)
		rc = pair_paths(pred_dir, ref_dir, names, n, p);
	free_names(names, n);
	if (rc)
		nnp_eval_pairs_release(p);
	return rc;
}

/* ---- summary ---- */

int nnp_eval_summary_new(const struct nnp_eval_spec *s, size_t ncases, struct nnp_eval_summary **out)
{
	struct nnp_eval_summary *sum = calloc(1, sizeof *sum);
	*out = NULL;
	if (!sum)
		return oom();
	sum->ncases = ncases;
	sum->nclasses = s->nclasses;
	sum->cases = calloc(ncases ? ncases : 1, sizeof *sum->cases);
	sum->mean = malloc((s->nclasses ? s->nclasses : 1) * NNP_EM_COUNT * sizeof *sum->mean);
	if (!sum->cases || !sum->mean) {
		nnp_eval_summary_free(sum);
		return oom();
	}
	for (size_t i = 0; i < s->nclasses * NNP_EM_COUNT; i++)
		sum->mean[i] = NAN;
	for (int m = 0; m < NNP_EM_COUNT; m++)
		sum->fg_mean[m] = NAN;
	*out = sum;
	return NNP_OK;
}

void nnp_eval_summary_free(struct nnp_eval_summary *sum)
{
	if (!sum)
		return;
	if (sum->cases)
		for (size_t i = 0; i < sum->ncases; i++)
			nnp_eval_result_release(&sum->cases[i]);
	free(sum->cases);
	free(sum->mean);
	free(sum);
}

int nnp_eval_summary_aggregate(const struct nnp_eval_spec *s, struct nnp_eval_summary *sum)
{
	size_t n = sum->ncases, nc = s->nclasses;
	double *x = malloc((n > nc ? n : nc) * sizeof *x + sizeof *x);
	if (!x)
		return oom();
	for (size_t c = 0; c < nc; c++)
		for (int m = 0; m < NNP_EM_COUNT; m++) {
			for (size_t i = 0; i < n; i++)
				x[i] = sum->cases[i].m ? sum->cases[i].m[c * NNP_EM_COUNT + (size_t)m] : NAN;
			sum->mean[c * NNP_EM_COUNT + (size_t)m] = nnp_np_nanmean_f64(x, n);
		}
	for (int m = 0; m < NNP_EM_COUNT; m++) {
		size_t k = 0;
		for (size_t c = 0; c < nc; c++)
			if (strcmp(s->classes[c].key, "0"))
				x[k++] = sum->mean[c * NNP_EM_COUNT + (size_t)m];
		sum->fg_mean[m] = k ? nnp_np_sum_f64(x, k) / (double)k : NAN;
	}
	free(x);
	return NNP_OK;
}

struct folder_run {
	const struct nnp_eval_spec *s;
	const struct nnp_eval_pairs *p;
	struct nnp_eval_summary *sum;
	struct nnp_first_fail ff;
};

static void run_case(struct folder_run *F, size_t i, struct nnp_progress *pr)
{
	int rc;
	if (nnp_first_fail_skip(&F->ff, i))
		return;
	rc = nnp_eval_files(F->s, F->p->pred[i], F->p->ref[i], &F->sum->cases[i]);
	nnp_first_fail_done(&F->ff, i, rc, pr);
}

int nnp_eval_folder(const struct nnp_eval_spec *s, const struct nnp_eval_pairs *p, int threads,
		    struct nnp_eval_summary **out)
{
	struct folder_run F = { s, p, NULL, { 0, 0, "" } };
	struct nnp_progress pr;
	int nt = threads > 0 ? threads : nnp_threads(), rc;
	*out = NULL;
	if ((rc = nnp_eval_summary_new(s, p->n, &F.sum)))
		return rc;
	if ((size_t)nt > p->n)
		nt = p->n ? (int)p->n : 1;
	nnp_first_fail_init(&F.ff, p->n);
	nnp_progress_begin(&pr, "evaluate", (long long)p->n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
	for (size_t i = 0; i < p->n; i++)
		run_case(&F, i, &pr);
	nnp_progress_end(&pr);
	if ((rc = nnp_first_fail_result(&F.ff))) {
		nnp_eval_summary_free(F.sum);
		return rc;
	}
	if ((rc = nnp_eval_summary_aggregate(s, F.sum))) {
		nnp_eval_summary_free(F.sum);
		return rc;
	}
	*out = F.sum;
	return NNP_OK;
}

/* ---- summary.json ---- */

/* One {metric: value} dict; counts (per case) as integers. */
static json_t *metrics_json(const struct nnp_eval_spec *s, const double *m, const struct nnp_eval_counts *c)
{
	json_t *d = json_object();
	for (int k = 0; d && k < NNP_EM_COUNT; k++) {
		if (!metric_on(s, k))
			continue;
		if (json_object_set_new(d, metric_names[k], c && nnp_eval_metric_is_count(k)
								? json_integer((json_int_t)m[k])
								: nnp_pyjson_real(m[k]))) {
			json_decref(d);
			return NULL;
		}
	}
	return d;
}

/* {class key: metrics}. */
static json_t *classes_json(const struct nnp_eval_spec *s, const double *m, const struct nnp_eval_counts *c)
{
	json_t *d = json_object();
	for (size_t k = 0; d && k < s->nclasses; k++)
		if (json_object_set_new(d, s->classes[k].key, metrics_json(s, m + k * NNP_EM_COUNT, c ? c + k : NULL))) {
			json_decref(d);
			return NULL;
		}
	return d;
}

static json_t *case_json(const struct nnp_eval_spec *s, const struct nnp_eval_result *r)
{
	json_t *d = json_object();
	if (d && !json_object_set_new(d, "metrics", classes_json(s, r->m, r->counts)) &&
	    !json_object_set_new(d, "prediction_file", json_stringn_nocheck(r->pred_file ? r->pred_file : "", r->pred_file ? strlen(r->pred_file) : 0)) &&
	    !json_object_set_new(d, "reference_file", json_stringn_nocheck(r->ref_file ? r->ref_file : "", r->ref_file ? strlen(r->ref_file) : 0)))
		return d;
	json_decref(d);
	return NULL;
}

/* The summary as a tree (NaN as pyjson markers); NULL when out of memory. */
static json_t *summary_json(const struct nnp_eval_spec *s, const struct nnp_eval_summary *sum)
{
	json_t *d = json_object(), *cases = json_array();
	for (size_t i = 0; cases && i < sum->ncases; i++)
		if (json_array_append_new(cases, case_json(s, &sum->cases[i]))) {
			json_decref(cases);
			cases = NULL;
		}
	if (d && !json_object_set_new(d, "foreground_mean", metrics_json(s, sum->fg_mean, NULL)) &&
	    !json_object_set_new(d, "mean", classes_json(s, sum->mean, NULL)) &&
	    !json_object_set_new(d, "metric_per_case", cases))
		return d;
	json_decref(d);
	return NULL;
}

int nnp_eval_summary_dumps(const struct nnp_eval_spec *s, const struct nnp_eval_summary *sum, char **out)
{
	json_t *j = summary_json(s, sum);
	int rc;
	*out = NULL;
	if (!j)
		return oom();
	rc = nnp_pyjson_dumps(j, 4, NNP_JSON_SORT_KEYS, out);
	json_decref(j);
	return rc;
}

int nnp_eval_summary_write(const struct nnp_eval_spec *s, const struct nnp_eval_summary *sum,
			   const char *path, int force)
{
	char *txt;
	int rc = nnp_eval_summary_dumps(s, sum, &txt);
	if (rc)
		return rc;
	rc = nnp_write_text_file(path, txt, force);
	free(txt);
	return rc;
}
