/* ppdecide.c — nnU-Net's determine_postprocessing (ppdecide.h). */
#include "ppdecide.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "err.h"
#include "evaluate.h"
#include "json.h"
#include "nifti.h"
#include "postprocess.h"
#include "prog.h"
#include "pyjson.h"

#define SLAB_BYTES ((uint64_t)16 << 20)
#define LUT_SIZE 65536

/* Removed voxels of one case: sorted, disjoint half-open index runs
 * [v[2k], v[2k+1]). */
struct runs {
	int64_t *v;
	size_t n, cap;
};

struct pcase {
	struct runs acc;     /* removed by the accepted steps */
	struct runs cand;    /* removed by the candidate step (on top of acc) */
	int spacing_differs;
};

struct ctx {
	const struct nnp_ppd_opts *o;
	struct nnp_ppd_result *r;
	struct nnp_eval_spec *spec;
	struct nnp_eval_pairs pairs;
	struct pcase *pc;
	int nt;
	char tmp[PATH_MAX];         /* the hidden staging folder */
	int tmp_made;
	char base_path[PATH_MAX];   /* the baseline summary.json (PRED or staged) */
	json_t *base;               /* its tree */
	int base_computed;
	double src_fg, *src_dice;   /* the current source's foreground / class mean Dice */
	struct nnp_eval_summary *src_sum;   /* NULL: the source is the input */
	struct nnp_first_fail ff;   /* the parallel loop */
};

static int oom(void)
{
	return nnp_err(NNP_ENOMEM, "out of memory");
}

static int interrupted(void)
{
	return nnp_err(NNP_EIO, "interrupted by a signal: nothing was written");
}

static int stopped(const struct ctx *C)
{
	return C->o->stop && *C->o->stop;
}

/* ---- runs ---- */

static int runs_grow(struct runs *r, size_t need)
{
	size_t cap;
	int64_t *q;
	if (need <= r->cap)
		return NNP_OK;
	cap = r->cap ? 2 * r->cap : 64;
	while (cap < need)
		cap *= 2;
	if (!(q = realloc(r->v, 2 * cap * sizeof *q)))
		return oom();
	r->v = q;
	r->cap = cap;
	return NNP_OK;
}

/* Append voxel i (ascending order). */
static int runs_push(struct runs *r, int64_t i)
{
	int rc;
	if (r->n && r->v[2 * r->n - 1] == i) {
		r->v[2 * r->n - 1] = i + 1;
		return NNP_OK;
	}
	if ((rc = runs_grow(r, r->n + 1)))
		return rc;
	r->v[2 * r->n] = i;
	r->v[2 * r->n + 1] = i + 1;
	r->n++;
	return NNP_OK;
}

/* a = a ∪ b (b emptied). */
static int runs_merge(struct runs *a, struct runs *b)
{
	struct runs m = { 0 };
	size_t i = 0, j = 0;
	int rc;
	if (!b->n)
		return NNP_OK;
	if ((rc = runs_grow(&m, a->n + b->n)))
		return rc;
	while (i < a->n || j < b->n) {
		const int64_t *x = j >= b->n || (i < a->n && a->v[2 * i] <= b->v[2 * j]) ? &a->v[2 * i++] : &b->v[2 * j++];
		if (m.n && x[0] <= m.v[2 * m.n - 1]) {
			if (x[1] > m.v[2 * m.n - 1])
				m.v[2 * m.n - 1] = x[1];
		} else {
			m.v[2 * m.n] = x[0];
			m.v[2 * m.n + 1] = x[1];
			m.n++;
		}
	}
	free(a->v);
	*a = m;
	b->n = 0;
	return NNP_OK;
}

static void runs_zero(const struct runs *r, void *data, size_t esize)
{
	for (size_t k = 0; k < r->n; k++)
		memset((char *)data + (size_t)r->v[2 * k] * esize, 0, (size_t)(r->v[2 * k + 1] - r->v[2 * k]) * esize);
}

/* ---- files ---- */

struct pred {
	int16_t *w;          /* the map as int16 */
	int64_t n[3];        /* z, y, x */
	double spacing[3];
};

static int load_pred(const char *path, struct pred *p)
{
	struct nnp_nifti_in *in;
	const struct nnp_frame *f;
	uint64_t nv;
	int rc = nnp_nifti_open(path, &in);
	memset(p, 0, sizeof *p);
	if (rc)
		return rc;
	f = nnp_nifti_frame(in);
	if ((rc = nnp__pp_check_seg(path, f)))
		goto done;
	for (int k = 0; k < 3; k++) {
		p->n[k] = f->shape[k + 1];
		p->spacing[k] = f->spacing[k];
	}
	nv = nnp_frame_nvox(f);
	if (!(p->w = malloc((size_t)nv * sizeof *p->w + 1))) {
		rc = nnp_err(NNP_ENOMEM, "'%s': out of memory (%llu voxels)", path, (unsigned long long)nv);
		goto done;
	}
	if (f->dtype == NNP_I16) {
		rc = nnp_nifti_read_slab(in, 0, 0, p->n[0], p->w);
	} else {
		uint8_t *b = malloc((size_t)nv + 1);
		if (!b) {
			rc = oom();
			goto done;
		}
		rc = nnp_nifti_read_slab(in, 0, 0, p->n[0], b);
		for (uint64_t i = 0; !rc && i < nv; i++)
			p->w[i] = b[i];
		free(b);
	}
done:
	nnp_nifti_close(in);
	if (rc) {
		free(p->w);
		p->w = NULL;
	}
	return rc;
}

static int spacing_differs(const double *a, const double *b)
{
	for (int i = 0; i < 3; i++)
		if (fabs(a[i] - b[i]) > 1e-5 * fmax(fabs(a[i]), fabs(b[i])))
			return 1;
	return 0;
}

/* Score the map p of case i against its reference, streamed. */
static int score(const struct ctx *C, size_t i, const struct pred *p, struct nnp_eval_result *res, int *sp_diff)
{
	const char *ref = C->pairs.ref[i];
	struct nnp_nifti_in *in;
	const struct nnp_frame *f;
	struct nnp_eval_case *c = NULL;
	uint64_t plane = (uint64_t)p->n[1] * (uint64_t)p->n[2];
	int64_t zs;
	void *buf = NULL;
	int rc = nnp_nifti_open(ref, &in);
	if (rc)
		return rc;
	f = nnp_nifti_frame(in);
	if (f->shape[0] != 1) {
		rc = nnp_err(NNP_EDATA, "'%s': 4D file with %lld volumes: a segmentation has one", ref,
			     (long long)f->shape[0]);
		goto done;
	}
	if (f->shape[1] != p->n[0] || f->shape[2] != p->n[1] || f->shape[3] != p->n[2]) {
		rc = nnp_err(NNP_EDATA, "'%s' and '%s' differ in shape: (%lld, %lld, %lld) vs (%lld, %lld, %lld)",
			     C->pairs.pred[i], ref, (long long)p->n[2], (long long)p->n[1], (long long)p->n[0],
			     (long long)f->shape[3], (long long)f->shape[2], (long long)f->shape[1]);
		goto done;
	}
	*sp_diff = spacing_differs(p->spacing, f->spacing);
	zs = (int64_t)(SLAB_BYTES / (plane * nnp_dtype_size(f->dtype)));
	if (zs < 1)
		zs = 1;
	if (zs > p->n[0])
		zs = p->n[0];
	if (!(buf = malloc((size_t)((uint64_t)zs * plane * nnp_dtype_size(f->dtype))))) {
		rc = oom();
		goto done;
	}
	if ((rc = nnp_eval_case_new(C->spec, p->n, f->spacing, &c)))
		goto done;
	for (int64_t z0 = 0; z0 < p->n[0] && !rc; z0 += zs) {
		int64_t k = p->n[0] - z0 < zs ? p->n[0] - z0 : zs;
		if ((rc = nnp_nifti_read_slab(in, 0, z0, k, buf)))
			break;
		rc = nnp_eval_case_add(c, (size_t)(plane * (uint64_t)k), NNP_I16, p->w + (uint64_t)z0 * plane, NULL,
				       f->dtype, buf, f->scale);
		if (rc)
			nnp_err_ctx(rc, "'%s'", ref);
	}
	if (!rc)
		rc = nnp_eval_case_finish(c, res);
done:
	nnp_eval_case_free(c);
	free(buf);
	nnp_nifti_close(in);
	return rc;
}

/* ---- the parallel loop over cases ---- */

typedef int (*case_fn)(struct ctx *C, size_t i, void *arg);

static void run_one(struct ctx *C, size_t i, case_fn fn, void *arg, struct nnp_progress *pr)
{
	int rc;
	if (nnp_first_fail_skip(&C->ff, i))
		return;
	rc = stopped(C) ? interrupted() : fn(C, i, arg);
	nnp_first_fail_done(&C->ff, i, rc, pr);
}

static int for_cases(struct ctx *C, const char *label, case_fn fn, void *arg)
{
	size_t n = C->pairs.n;
	int nt = C->nt > (int)n ? (int)n : C->nt;
	struct nnp_progress pr;
	nnp_first_fail_init(&C->ff, n);
	nnp_progress_begin(&pr, label, (long long)n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
	for (size_t i = 0; i < n; i++)
		run_one(C, i, fn, arg, &pr);
	nnp_progress_end(&pr);
	if (C->ff.rc)
		return nnp_first_fail_result(&C->ff);
	return stopped(C) ? interrupted() : NNP_OK;
}

/* ---- one step ---- */

struct step_arg {
	const uint8_t *lut;      /* value + 32768 -> in the step's label set */
	struct nnp_eval_summary *sum;
	int first;
};

static int step_case(struct ctx *C, size_t i, void *arg)
{
	struct step_arg *A = arg;
	struct pcase *pc = &C->pc[i];
	struct pred p;
	uint8_t *mask = NULL, *keep;
	uint64_t nv;
	int sp = 0, rc = load_pred(C->pairs.pred[i], &p);
	if (rc)
		return rc;
	nv = (uint64_t)p.n[0] * (uint64_t)p.n[1] * (uint64_t)p.n[2];
	runs_zero(&pc->acc, p.w, sizeof *p.w);
	pc->cand.n = 0;
	if (!(mask = malloc(2 * (size_t)nv + 1))) {
		rc = nnp_err(NNP_ENOMEM, "'%s': out of memory (%llu voxels)", C->pairs.pred[i], (unsigned long long)nv);
		goto done;
	}
	keep = mask + nv;
	for (uint64_t j = 0; j < nv; j++)
		mask[j] = A->lut[(int)p.w[j] + 32768];
	if ((rc = nnp_pp_largest_components(mask, p.n, keep)))
		goto done;
	for (uint64_t j = 0; j < nv && !rc; j++)
		if (mask[j] && !keep[j] && p.w[j]) {
			p.w[j] = 0;
			rc = runs_push(&pc->cand, (int64_t)j);
		}
	free(mask);
	mask = NULL;
	if (!rc)
		rc = score(C, i, &p, &A->sum->cases[i], &sp);
	if (!rc && A->first)
		pc->spacing_differs = sp;
done:
	free(mask);
	free(p.w);
	return rc;
}

static char *labels_text(const int *v, size_t n)
{
	size_t cap = 16 + 8 * n, len = 0;
	char *s = malloc(cap);
	if (!s)
		return NULL;
	len += (size_t)snprintf(s, cap, "[");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s%d", i ? ", " : "", v[i]);
	snprintf(s + len, cap - len, "]");
	return s;
}

static int add_step(struct nnp_ppd_result *r, char *what, double before, double after, int accepted, char *why)
{
	struct nnp_ppd_step *q = realloc(r->steps, (r->nsteps + 1) * sizeof *q);
	if (!what || !q) {
		free(what);
		free(why);
		if (q)
			r->steps = q;
		return oom();
	}
	r->steps = q;
	q[r->nsteps++] = (struct nnp_ppd_step){ what, before, after, accepted, why };
	return NNP_OK;
}

/* Evaluate the candidate step kwarg on the current source; *out the summary. */
static int try_step(struct ctx *C, const json_t *kwarg, int first, struct nnp_eval_summary **out)
{
	struct nnp_pprules *one = NULL;
	struct step_arg A = { NULL, NULL, first };
	uint8_t *lut = NULL;
	int rc;
	*out = NULL;
	if ((rc = nnp_pprules_new(&one)) || (rc = nnp_pprules_add(one, kwarg, "labels_or_regions")))
		goto done;
	if (!(lut = calloc(LUT_SIZE, 1))) {
		rc = oom();
		goto done;
	}
	for (size_t k = 0; k < one->v[0].nlabels; k++)
		lut[one->v[0].labels[k] + 32768] = 1;
	A.lut = lut;
	if ((rc = nnp_eval_summary_new(C->spec, C->pairs.n, &A.sum)))
		goto done;
	if ((rc = for_cases(C, "postprocess", step_case, &A)) || (rc = nnp_eval_summary_aggregate(C->spec, A.sum))) {
		nnp_eval_summary_free(A.sum);
		goto done;
	}
	*out = A.sum;
done:
	free(lut);
	nnp_pprules_free(one);
	return rc;
}

/* The step is accepted: its results are the new source. */
static int accept(struct ctx *C, const json_t *kwarg, struct nnp_eval_summary *sum, const char *what)
{
	int rc;
	for (size_t i = 0; i < C->pairs.n; i++)
		if ((rc = runs_merge(&C->pc[i].acc, &C->pc[i].cand)))
			return rc;
	if ((rc = nnp_pprules_add(C->r->rules, kwarg, what)))
		return rc;
	C->src_fg = sum->fg_mean[NNP_EM_DICE];
	for (size_t c = 0; c < C->spec->nclasses; c++)
		C->src_dice[c] = sum->mean[c * NNP_EM_COUNT + NNP_EM_DICE];
	nnp_eval_summary_free(C->src_sum);
	C->src_sum = sum;
	return NNP_OK;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* Step 1: all foreground labels (every non-zero value any class names). */
static int step_all(struct ctx *C)
{
	const struct nnp_eval_spec *s = C->spec;
	int *v = NULL;
	size_t n = 0, cap = 0, k = 0;
	json_t *kw = json_array();
	struct nnp_eval_summary *sum = NULL;
	char *what = NULL, *why = NULL, *lt;
	int rc = kw ? NNP_OK : oom(), ok;

	for (size_t c = 0; c < s->nclasses; c++)
		cap += s->classes[c].nvalues;
	if (!rc && !(v = malloc((cap ? cap : 1) * sizeof *v)))
		rc = oom();
	for (size_t c = 0; !rc && c < s->nclasses; c++)
		for (size_t j = 0; j < s->classes[c].nvalues; j++) {
			int64_t x = s->classes[c].values[j];
			if (x == 0)
				continue;
			if (x < INT16_MIN || x > INT16_MAX) {
				rc = nnp_err(NNP_EDATA, "label %lld is outside the int16 range of segmentations",
					     (long long)x);
				break;
			}
			v[n++] = (int)x;
		}
	if (!rc && n)
		qsort(v, n, sizeof *v, cmp_int);
	for (size_t i = 0; !rc && i < n; i++)   /* sorted, unique */
		if (!k || v[k - 1] != v[i])
			v[k++] = v[i];
	for (size_t i = 0; !rc && i < k; i++)
		if (json_array_append_new(kw, json_integer(v[i])))
			rc = oom();
	if (!rc)
		rc = try_step(C, kw, 1, &sum);
	if (!rc) {
		ok = sum->fg_mean[NNP_EM_DICE] > C->src_fg;   /* NaN on either side: not improved */
		for (size_t c = 0; ok && c < s->nclasses; c++) {
			double a = sum->mean[c * NNP_EM_COUNT + NNP_EM_DICE];
			if (a < C->src_dice[c]) {   /* NaN on either side: not worse */
				ok = 0;
				why = nnp_strprintf("class %s mean Dice %.6g -> %.6g", s->classes[c].key, C->src_dice[c], a);
			}
		}
		lt = labels_text(v, k);
		what = lt ? nnp_strprintf("all foreground labels %s as one object", lt) : NULL;
		free(lt);
		rc = add_step(C->r, what, C->src_fg, sum->fg_mean[NNP_EM_DICE], ok, why);
		if (!rc && ok) {
			rc = accept(C, kw, sum, "step 1");
			if (!rc)
				sum = NULL;
		}
	}
	nnp_eval_summary_free(sum);
	json_decref(kw);
	free(v);
	return rc;
}

/* Step 2: class c alone (a label: its int; a region: its list). */
static int step_class(struct ctx *C, size_t c)
{
	const struct nnp_eval_class *k = &C->spec->classes[c];
	json_t *kw = k->is_region ? json_array() : json_integer(k->values[0]);
	struct nnp_eval_summary *sum = NULL;
	double before = C->src_dice[c], after;
	int rc = kw ? NNP_OK : oom(), ok;
	for (size_t j = 0; !rc && k->is_region && j < k->nvalues; j++)
		if (json_array_append_new(kw, json_integer(k->values[j])))
			rc = oom();
	if (!rc)
		rc = try_step(C, kw, 0, &sum);
	if (!rc) {
		after = sum->mean[c * NNP_EM_COUNT + NNP_EM_DICE];
		ok = after > before;   /* NaN on either side: not improved */
		int regions = 0;
		for (size_t j = 0; j < C->spec->nclasses; j++)
			regions |= C->spec->classes[j].is_region;
		rc = add_step(C->r, nnp_strprintf("%s %s", regions ? "region" : "label", k->key), before, after, ok,
			      NULL);
		if (!rc && ok) {
			rc = accept(C, kw, sum, "step 2");
			if (!rc)
				sum = NULL;
		}
	}
	nnp_eval_summary_free(sum);
	json_decref(kw);
	return rc;
}

/* ---- baseline ---- */

static int summary_dice(const json_t *sum, const char *what, const struct nnp_eval_spec *s, double *fg, double *dice)
{
	const json_t *fgo = json_object_get(sum, "foreground_mean"), *mean = json_object_get(sum, "mean");
	if (!json_is_object(fgo) || !json_is_object(mean))
		return nnp_err(NNP_EDATA, "'%s': no foreground_mean/mean: not a summary.json of nnp evaluate or nnU-Net",
			       what);
	if (!nnp_pyjson_number(json_object_get(fgo, "Dice"), fg))
		return nnp_err(NNP_EDATA, "'%s': foreground_mean.Dice: missing or not a number", what);
	for (size_t c = 0; c < s->nclasses; c++)
		if (!nnp_pyjson_number(json_object_get(json_object_get(mean, s->classes[c].key), "Dice"), &dice[c]))
			return nnp_err(NNP_EDATA, "'%s': mean[\"%s\"].Dice: missing or not a number (made for other "
				       "classes? remove it and it is evaluated again)", what, s->classes[c].key);
	return NNP_OK;
}

static int write_text(const char *path, const char *text)
{
	struct nnp_atomic a;
	int rc = nnp_atomic_open(&a, path, 0);
	if (rc)
		return rc;
	if ((rc = nnp_write_all(a.fd, text, strlen(text), path))) {
		nnp_atomic_abort(&a);
		return rc;
	}
	return nnp_atomic_commit(&a);
}

static int baseline(struct ctx *C)
{
	char path[PATH_MAX];
	int rc;
	if ((rc = nnp_path_join(path, sizeof path, C->o->pred_dir, "summary.json")))
		return rc;
	if (nnp_is_file(path)) {
		snprintf(C->base_path, sizeof C->base_path, "%s", path);
		rc = nnp_pyjson_load(path, &C->base);
	} else {
		struct nnp_eval_summary *sum;
		char *text;
		if ((rc = nnp_eval_folder(C->spec, &C->pairs, C->nt, &sum)))
			return rc;
		for (size_t i = 0; i < sum->ncases; i++)
			C->pc[i].spacing_differs = sum->cases[i].spacing_differs;
		rc = nnp_eval_summary_dumps(C->spec, sum, &text);
		nnp_eval_summary_free(sum);
		if (rc)
			return rc;
		if (!(rc = nnp_path_join(C->base_path, sizeof C->base_path, C->tmp, "summary.json")) &&
		    !(rc = write_text(C->base_path, text)))
			rc = nnp_pyjson_loads(text, strlen(text), path, &C->base);
		free(text);
		C->base_computed = 1;
		C->r->summary_written = 1;
	}
	if (!rc)
		rc = summary_dice(C->base, path, C->spec, &C->src_fg, C->src_dice);
	C->r->fg_before = C->src_fg;
	return rc;
}

/* ---- outputs ---- */

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* postprocessed/CASE: the input bytes when no step changed it, else the
 * input with the removed voxels set to 0 (same header, dtype, geometry). */
static int write_case(struct ctx *C, size_t i, void *arg)
{
	const struct pcase *pc = &C->pc[i];
	const char *src = C->pairs.pred[i];
	char dst[PATH_MAX];
	struct nnp_nifti_in *in;
	struct nnp_nifti_out *out = NULL;
	struct nnp_vol v;
	struct nnp_nifti_opts no = { -1, 0, 0 };
	int rc;
	(void)arg;
	if (snprintf(dst, sizeof dst, "%s/postprocessed/%s", C->tmp, base_name(src)) >= (int)sizeof dst)
		return nnp_err(NNP_EUSAGE, "path too long: '%s/postprocessed/%s'", C->tmp, base_name(src));
	if (!pc->acc.n)
		return nnp_copy_file(src, dst, 0, 0);
	nnp_vol_init(&v);
	if ((rc = nnp_nifti_open(src, &in)))
		return rc;
	if (!(rc = nnp__pp_check_seg(src, nnp_nifti_frame(in))) && !(rc = nnp_frame_copy(&v.f, nnp_nifti_frame(in))) &&
	    !(rc = nnp_vol_alloc(&v)))
		rc = nnp_nifti_read_slab(in, 0, 0, v.f.shape[1], v.data);
	nnp_nifti_close(in);
	if (!rc) {
		runs_zero(&pc->acc, v.data, nnp_dtype_size(v.f.dtype));
		rc = nnp_nifti_create(dst, &v.f, 0, 1, 0, &no, &out);
	}
	if (!rc && (rc = nnp_nifti_write(out, v.data, (size_t)nnp_frame_nbytes(&v.f))))
		nnp_nifti_abort(out);
	else if (!rc)
		rc = nnp_nifti_commit(out);
	nnp_vol_release(&v);
	return rc;
}

/* The final summary tree (and postprocessed/summary.json when kept). */
static int final_summary(struct ctx *C, json_t **out)
{
	char path[PATH_MAX], ppdir[PATH_MAX], *text = NULL;
	int rc, keep = !C->o->remove_postprocessed;
	size_t n = strlen(C->o->pred_dir);
	*out = NULL;
	if ((rc = nnp_path_join(path, sizeof path, C->tmp, "postprocessed/summary.json")))
		return rc;
	/* os.path.join(pred_dir, "postprocessed") */
	if (snprintf(ppdir, sizeof ppdir, "%s%spostprocessed", C->o->pred_dir,
		     n && C->o->pred_dir[n - 1] == '/' ? "" : "/") >= (int)sizeof ppdir)
		return nnp_err(NNP_EUSAGE, "path too long: '%s'", C->o->pred_dir);
	if (!C->src_sum) {   /* nothing accepted: nnU-Net copies the input's summary.json */
		if (keep && (rc = nnp_copy_file(C->base_path, path, 0, 0)))
			return rc;
		*out = json_incref(C->base);
		return NNP_OK;
	}
	for (size_t i = 0; i < C->pairs.n; i++) {
		struct nnp_eval_result *res = &C->src_sum->cases[i];
		free(res->pred_file);
		free(res->ref_file);
		res->pred_file = nnp_strprintf("%s/%s", ppdir, base_name(C->pairs.pred[i]));
		res->ref_file = nnp_strdup(C->pairs.ref[i]);
		if (!res->pred_file || !res->ref_file)
			return oom();
	}
	if ((rc = nnp_eval_summary_dumps(C->spec, C->src_sum, &text)))
		return rc;
	if (keep)
		rc = write_text(path, text);
	if (!rc)
		rc = nnp_pyjson_loads(text, strlen(text), path, out);
	free(text);
	return rc;
}

static int pp_json(struct ctx *C, const json_t *fin, const char *path)
{
	json_t *o = json_object(), *in = json_object(), *pp = json_object();
	int rc = NNP_OK;
	double fg;
	if (!o || !in || !pp || json_object_set(in, "foreground_mean", json_object_get(C->base, "foreground_mean")) ||
	    json_object_set(in, "mean", json_object_get(C->base, "mean")) ||
	    json_object_set(pp, "foreground_mean", json_object_get(fin, "foreground_mean")) ||
	    json_object_set(pp, "mean", json_object_get(fin, "mean")) || json_object_set(o, "input_folder", in) ||
	    json_object_set(o, "postprocessed", pp))
		rc = oom();
	if (!rc)
		rc = nnp_pprules_to_json(C->r->rules, o);
	if (!rc)
		rc = nnp_pyjson_write_file(o, path, 4, NNP_JSON_SORT_KEYS, 0);
	if (nnp_pyjson_number(json_object_get(json_object_get(fin, "foreground_mean"), "Dice"), &fg))
		C->r->fg_after = fg;
	json_decref(in);
	json_decref(pp);
	json_decref(o);
	return rc;
}

static int finish(struct ctx *C)
{
	char staged[PATH_MAX], dst[PATH_MAX], ppj[PATH_MAX];
	json_t *fin = NULL;
	int rc, keep = !C->o->remove_postprocessed;
	if (keep && (rc = for_cases(C, "write", write_case, NULL)))
		return rc;
	if ((rc = final_summary(C, &fin)))
		return rc;
	rc = nnp_path_join(ppj, sizeof ppj, C->tmp, "postprocessing.json");
	if (!rc)
		rc = pp_json(C, fin, ppj);
	json_decref(fin);
	if (rc)
		return rc;
	if (stopped(C))
		return interrupted();
	/* everything is staged: move it into place, the rule file last */
	if (C->base_computed &&
	    ((rc = nnp_path_join(dst, sizeof dst, C->o->pred_dir, "summary.json")) ||
	     (rc = nnp__pp_move(C->base_path, dst, 0, 0))))
		return rc;
	if ((rc = nnp_path_join(staged, sizeof staged, C->tmp, "postprocessed")) ||
	    (rc = nnp_path_join(dst, sizeof dst, C->o->pred_dir, "postprocessed")))
		return rc;
	if (keep && (rc = nnp__pp_move(staged, dst, C->o->force, 1)))
		return rc;
	if (!keep && nnp__pp_exists(dst)) {   /* --force: the old postprocessed/ goes with the staging folder */
		char old[PATH_MAX + 8];
		snprintf(old, sizeof old, "%s/old", C->tmp);
		if (rename(dst, old) != 0)
			return nnp__pp_rename_fail(dst, old);
	}
	if ((rc = nnp_path_join(dst, sizeof dst, C->o->pred_dir, "postprocessing.json")) ||
	    (rc = nnp__pp_move(ppj, dst, C->o->force, 0)))
		return rc;
	C->r->postprocessing_json = nnp_strdup(dst);
	return C->r->postprocessing_json ? NNP_OK : NNP_ENOMEM;
}

/* ---- setup ---- */

/* Reference files with the ending that have no prediction (nnU-Net warns). */
static int count_unpredicted(struct ctx *C, const char *ending)
{
	DIR *d = opendir(C->o->ref_dir);
	struct dirent *e;
	size_t le = strlen(ending);
	int rc = NNP_OK;
	if (!d)
		return nnp_err(NNP_EDATA, "cannot open folder '%s': %s", C->o->ref_dir, strerror(errno));
	while ((e = readdir(d)) && !rc) {
		size_t l = strlen(e->d_name);
		char p[PATH_MAX];
		if (l < le || strcmp(e->d_name + l - le, ending) || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((rc = nnp_path_join(p, sizeof p, C->o->ref_dir, e->d_name)) || !nnp_is_file(p))
			continue;
		if ((rc = nnp_path_join(p, sizeof p, C->o->pred_dir, e->d_name)) || nnp_is_file(p))
			continue;
		if (!C->r->unpredicted++ || strcmp(e->d_name, C->r->first_unpredicted) < 0) {
			free(C->r->first_unpredicted);
			if (!(C->r->first_unpredicted = strdup(e->d_name)))
				rc = oom();
		}
	}
	closedir(d);
	return rc;
}

static int setup(struct ctx *C)
{
	const struct nnp_ppd_opts *o = C->o;
	char ds_path[PATH_MAX], p[PATH_MAX], name[PATH_MAX];
	json_t *ds = NULL, *plans = NULL;
	int rc;

	if (!nnp_is_dir(o->pred_dir))
		return nnp_err(NNP_EDATA, "prediction folder '%s': %s", o->pred_dir,
			       nnp__pp_exists(o->pred_dir) ? "not a folder" : "does not exist");
	if (!nnp_is_dir(o->ref_dir))
		return nnp_err(NNP_EDATA, "reference folder '%s': %s", o->ref_dir,
			       nnp__pp_exists(o->ref_dir) ? "not a folder" : "does not exist");
	if (o->dataset_json)
		snprintf(ds_path, sizeof ds_path, "%s", o->dataset_json);
	else if ((rc = nnp_path_join(ds_path, sizeof ds_path, o->pred_dir, "dataset.json")))
		return rc;
	if (!nnp_is_file(ds_path))
		return nnp_err(NNP_EDATA, "'%s' does not exist (give --dataset-json; nnp predict and "
			       "nnUNetv2_predict copy it into their output folder)", ds_path);
	if ((rc = nnp_json_load(ds_path, &ds)))
		return rc;
	rc = nnp_eval_spec_from_dataset(ds, ds_path, &C->spec);
	json_decref(ds);
	if (rc)
		return rc;
	snprintf(name, sizeof name, "x%s", C->spec->file_ending);
	if (!nnp_nifti_name_ok(name))
		return nnp_err(NNP_EDATA, "'%s': file ending '%s': only NIfTI files (.nii.gz, .nii) are supported",
			       ds_path, C->spec->file_ending);
	if (o->plans_json)
		snprintf(p, sizeof p, "%s", o->plans_json);
	else if ((rc = nnp_path_join(p, sizeof p, o->pred_dir, "plans.json")))
		return rc;
	if ((o->plans_json || nnp_is_file(p)) && (rc = nnp_json_load(p, &plans)))
		return rc;
	json_decref(plans);
	if (!o->force) {
		const char *const outs[2] = { "postprocessing.json", "postprocessed" };
		for (int k = 0; k < 2; k++) {
			if ((rc = nnp_path_join(p, sizeof p, o->pred_dir, outs[k])))
				return rc;
			if (nnp__pp_exists(p))
				return nnp_err(NNP_EUSAGE, "'%s' exists (use --force to replace it)", p);
		}
	}
	if ((rc = nnp_eval_pairs_list(o->pred_dir, o->ref_dir, C->spec->file_ending, 1, &C->pairs)) ||
	    (rc = count_unpredicted(C, C->spec->file_ending)))
		return rc;
	C->r->ncases = C->pairs.n;
	if (!(C->pc = calloc(C->pairs.n, sizeof *C->pc)) ||
	    !(C->src_dice = calloc(C->spec->nclasses ? C->spec->nclasses : 1, sizeof *C->src_dice)))
		return oom();
	if ((rc = nnp_pprules_new(&C->r->rules)))
		return rc;
	if ((rc = nnp_path_join(C->tmp, sizeof C->tmp, o->pred_dir, ".nnp-ppdecide.XXXXXX")))
		return rc;
	if (!mkdtemp(C->tmp))
		return nnp_err(NNP_EIO, "cannot create a folder in '%s': %s", o->pred_dir, strerror(errno));
	C->tmp_made = 1;
	if ((rc = nnp_path_join(p, sizeof p, C->tmp, "postprocessed")))
		return rc;
	if (mkdir(p, 0777) != 0)
		return nnp_err(NNP_EIO, "cannot create folder '%s': %s", p, strerror(errno));
	return NNP_OK;
}

int nnp_ppd_run(const struct nnp_ppd_opts *o, struct nnp_ppd_result *r)
{
	struct ctx C;
	int rc;

	memset(r, 0, sizeof *r);
	memset(&C, 0, sizeof C);
	C.o = o;
	C.r = r;
	C.nt = o->threads > 0 ? o->threads : nnp_threads();
	rc = setup(&C);
	if (!rc)
		rc = baseline(&C);
	if (!rc && stopped(&C))
		rc = interrupted();
	if (!rc)
		rc = step_all(&C);
	for (size_t c = 0; !rc && C.spec->nclasses > 1 && c < C.spec->nclasses; c++)
		rc = step_class(&C, c);
	if (!rc)
		rc = finish(&C);
	for (size_t i = 0; C.pc && i < C.pairs.n; i++) {
		r->spacing_differs += (size_t)C.pc[i].spacing_differs;
		free(C.pc[i].acc.v);
		free(C.pc[i].cand.v);
	}
	if (C.tmp_made)
		nnp__pp_remove_tree(C.tmp);
	free(C.pc);
	free(C.src_dice);
	nnp_eval_summary_free(C.src_sum);
	json_decref(C.base);
	nnp_eval_pairs_release(&C.pairs);
	nnp_eval_spec_free(C.spec);
	if (rc) {
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", nnp_err_msg());
		nnp_ppd_result_release(r);
		nnp_err(rc, "%s", msg);
	}
	return rc;
}

void nnp_ppd_result_release(struct nnp_ppd_result *r)
{
	if (!r)
		return;
	nnp_pprules_free(r->rules);
	for (size_t i = 0; i < r->nsteps; i++) {
		free(r->steps[i].what);
		free(r->steps[i].why);
	}
	free(r->steps);
	free(r->first_unpredicted);
	free(r->postprocessing_json);
	memset(r, 0, sizeof *r);
}
