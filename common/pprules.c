/* pprules.c — postprocessing rule lists (pprules.h). */
#include "pprules.h"

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
#include "nifti.h"
#include "postprocess.h"
#include "prog.h"
#include "pyjson.h"

int nnp_pprules_new(struct nnp_pprules **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? NNP_OK : nnp_err(NNP_ENOMEM, "out of memory");
}

void nnp_pprules_free(struct nnp_pprules *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].labels);
		json_decref(r->v[i].kwarg);
	}
	free(r->v);
	free(r);
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* One integer of labels_or_regions into set. */
static int add_int(const json_t *v, const char *what, int *set, size_t *n)
{
	json_int_t x;
	if (!json_is_integer(v))
		return nnp_err(NNP_EDATA, "%s: want an integer, a list of integers or a list of such lists", what);
	x = json_integer_value(v);
	if (x < INT16_MIN || x > INT16_MAX)
		return nnp_err(NNP_EDATA, "%s: label %lld is outside the int16 range of segmentations", what,
			       (long long)x);
	if (*n == NNP_PPRULE_LABELS_MAX)
		return nnp_err(NNP_EDATA, "%s: more than %d labels", what, NNP_PPRULE_LABELS_MAX);
	set[(*n)++] = (int)x;
	return NNP_OK;
}

int nnp_pprules_add(struct nnp_pprules *r, const json_t *kwarg, const char *what)
{
	int *set = malloc(NNP_PPRULE_LABELS_MAX * sizeof *set);
	size_t n = 0, k = 0;
	int rc = NNP_OK;

	if (!set)
		return nnp_err(NNP_ENOMEM, "out of memory");
	if (json_is_array(kwarg)) {
		for (size_t i = 0; !rc && i < json_array_size(kwarg); i++) {
			const json_t *e = json_array_get(kwarg, i);
			if (json_is_array(e))
				for (size_t j = 0; !rc && j < json_array_size(e); j++)
					rc = add_int(json_array_get(e, j), what, set, &n);
			else
				rc = add_int(e, what, set, &n);
		}
	} else {
		rc = add_int(kwarg, what, set, &n);
	}
	if (!rc && r->n == NNP_PPRULES_MAX)
		rc = nnp_err(NNP_EDATA, "%s: more than %d postprocessing steps", what, NNP_PPRULES_MAX);
	if (!rc && r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 8;
		struct nnp_pprule *q = realloc(r->v, cap * sizeof *q);
		if (!q)
			rc = nnp_err(NNP_ENOMEM, "out of memory");
		else {
			r->v = q;
			r->cap = cap;
		}
	}
	if (rc) {
		free(set);
		return rc;
	}
	if (n)
		qsort(set, n, sizeof *set, cmp_int);
	for (size_t i = 0; i < n; i++)
		if (!k || set[k - 1] != set[i])
			set[k++] = set[i];
	r->v[r->n].labels = set;
	r->v[r->n].nlabels = k;
	r->v[r->n].kwarg = json_incref((json_t *)kwarg);
	r->n++;
	return NNP_OK;
}

static int one_step(struct nnp_pprules *r, const json_t *fn, const json_t *kw, size_t i, const char *what)
{
	char field[128];
	const char *key;
	const json_t *v, *lor = NULL;

	if (!json_is_string(fn))
		return nnp_err(NNP_EDATA, "'%s': postprocessing_fns[%zu]: want a function name (a string)", what, i);
	if (strcmp(json_string_value(fn), NNP_PP_FN_NAME))
		return nnp_err(NNP_EDATA, "'%s': postprocessing_fns[%zu]: unknown function '%s' (nnpipe applies "
			       "only %s)", what, i, json_string_value(fn), NNP_PP_FN_NAME);
	if (!json_is_object(kw))
		return nnp_err(NNP_EDATA, "'%s': postprocessing_kwargs[%zu]: want an object {\"labels_or_regions\": "
			       "...}", what, i);
	json_object_foreach((json_t *)kw, key, v) {
		if (!strcmp(key, "labels_or_regions"))
			lor = v;
		else if (!strcmp(key, "background_label") && json_is_integer(v) && json_integer_value(v) == 0)
			;   /* nnU-Net's default */
		else if (!strcmp(key, "background_label"))
			return nnp_err(NNP_EDATA, "'%s': postprocessing_kwargs[%zu].background_label: only 0 is "
				       "supported", what, i);
		else
			return nnp_err(NNP_EDATA, "'%s': postprocessing_kwargs[%zu]: unknown argument '%s'", what, i,
				       key);
	}
	if (!lor)
		return nnp_err(NNP_EDATA, "'%s': postprocessing_kwargs[%zu]: no labels_or_regions", what, i);
	snprintf(field, sizeof field, "postprocessing_kwargs[%zu].labels_or_regions", i);
	{
		char *w = nnp_strprintf("'%s': %s", what, field);
		int rc;
		if (!w)
			return NNP_ENOMEM;
		rc = nnp_pprules_add(r, lor, w);
		free(w);
		return rc;
	}
}

int nnp_pprules_from_json(const json_t *j, const char *what, struct nnp_pprules **out)
{
	const json_t *fns = json_object_get(j, "postprocessing_fns"), *kws = json_object_get(j, "postprocessing_kwargs");
	struct nnp_pprules *r;
	int rc;

	*out = NULL;
	if (!json_is_object(j))
		return nnp_err(NNP_EDATA, "'%s': not a JSON object (want nnU-Net's postprocessing.json)", what);
	if (!json_is_array(fns))
		return nnp_err(NNP_EDATA, "'%s': postprocessing_fns: %s", what, fns ? "want a list" : "missing");
	if (!json_is_array(kws))
		return nnp_err(NNP_EDATA, "'%s': postprocessing_kwargs: %s", what, kws ? "want a list" : "missing");
	if (json_array_size(fns) != json_array_size(kws))
		return nnp_err(NNP_EDATA, "'%s': postprocessing_fns has %zu entries, postprocessing_kwargs %zu", what,
			       json_array_size(fns), json_array_size(kws));
	if ((rc = nnp_pprules_new(&r)))
		return rc;
	for (size_t i = 0; !rc && i < json_array_size(fns); i++)
		rc = one_step(r, json_array_get(fns, i), json_array_get(kws, i), i, what);
	if (rc) {
		nnp_pprules_free(r);
		return rc;
	}
	*out = r;
	return NNP_OK;
}

int nnp_pprules_load(const char *path, struct nnp_pprules **out)
{
	json_t *j;
	int rc;
	*out = NULL;
	if ((rc = nnp_pyjson_load(path, &j)))
		return rc;
	rc = nnp_pprules_from_json(j, path, out);
	json_decref(j);
	return rc;
}

int nnp_pprules_to_json(const struct nnp_pprules *r, json_t *obj)
{
	json_t *fns = json_array(), *kws = json_array();
	int bad = !fns || !kws;
	for (size_t i = 0; !bad && i < r->n; i++) {
		json_t *kw = json_object();
		bad = !kw || json_array_append_new(fns, json_string(NNP_PP_FN_NAME)) ||
		      json_object_set(kw, "labels_or_regions", r->v[i].kwarg) || json_array_append_new(kws, kw);
	}
	if (bad || json_object_set_new(obj, "postprocessing_fns", fns) ||
	    json_object_set_new(obj, "postprocessing_kwargs", kws))
		return nnp_err(NNP_ENOMEM, "out of memory");
	return NNP_OK;
}

int nnp_pprules_apply(const struct nnp_pprules *r, enum nnp_dtype dt, void *seg, const int64_t n[3],
		      int64_t *removed)
{
	if (dt != NNP_U8 && dt != NNP_I16)
		return nnp_err(NNP_EDATA, "a segmentation of dtype %s (want uint8 or int16)", nnp_dtype_name(dt));
	for (size_t i = 0; i < r->n; i++) {
		int64_t rem = 0;
		int rc = dt == NNP_U8 ? nnp_pp_keep_largest_u8(seg, n, r->v[i].labels, (int)r->v[i].nlabels, &rem)
				      : nnp_pp_keep_largest_i16(seg, n, r->v[i].labels, (int)r->v[i].nlabels, &rem);
		if (rc)
			return rc;
		if (removed)
			removed[i] = rem;
	}
	return NNP_OK;
}

/* ---- files ---- */

static int scaled(const struct nnp_frame *f)
{
	return f->scale && f->scale[0] != 0 && !(f->scale[0] == 1 && f->scale[1] == 0);
}

int nnp__pp_check_seg(const char *path, const struct nnp_frame *f)
{
	if (f->shape[0] != 1)
		return nnp_err(NNP_EDATA, "'%s': 4D file with %lld volumes: a segmentation has one", path,
			       (long long)f->shape[0]);
	if (f->dtype != NNP_U8 && f->dtype != NNP_I16)
		return nnp_err(NNP_EDATA, "'%s': a segmentation of dtype %s (want uint8 or int16)", path,
			       nnp_dtype_name(f->dtype));
	if (scaled(f))
		return nnp_err(NNP_EDATA, "'%s': a scaled segmentation (scl_slope %g, scl_inter %g) is not supported",
			       path, f->scale[0], f->scale[1]);
	return NNP_OK;
}


void nnp__pp_remove_tree(const char *p)
{
	if (nnp_rmtree(p)) /* best effort: a cleanup after an error already reported */
		nnp_err_clear();
}

int nnp__pp_exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

int nnp__pp_rename_fail(const char *a, const char *b)
{
	return nnp_err(NNP_EIO, "cannot rename '%s' to '%s': %s", a, b, strerror(errno));
}

int nnp__pp_move(const char *src, const char *dst, int replace, int is_dir)
{
	if (!nnp__pp_exists(dst)) {
		if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) == 0)
			return NNP_OK;
		if (errno == EEXIST)
			return nnp_err(NNP_EUSAGE, "'%s' exists (use --force to replace it)", dst);
		if (errno != EINVAL && errno != ENOSYS)
			return nnp__pp_rename_fail(src, dst);
		return rename(src, dst) == 0 ? NNP_OK : nnp__pp_rename_fail(src, dst);
	}
	if (!replace)
		return nnp_err(NNP_EUSAGE, "'%s' exists (use --force to replace it)", dst);
	if (!is_dir)
		return rename(src, dst) == 0 ? NNP_OK : nnp__pp_rename_fail(src, dst);
	if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_EXCHANGE) == 0)
		return NNP_OK;
	if (errno != EINVAL && errno != ENOSYS)
		return nnp__pp_rename_fail(src, dst);
	{
		char old[PATH_MAX + 8];
		snprintf(old, sizeof old, "%s.old", src);
		if (rename(dst, old) != 0)
			return nnp__pp_rename_fail(dst, old);
		if (rename(src, dst) != 0) {
			int e = errno;
			rename(old, dst);
			errno = e;
			return nnp__pp_rename_fail(src, dst);
		}
		return rename(old, src) == 0 ? NNP_OK : nnp__pp_rename_fail(old, src);
	}
}


int nnp_pprules_apply_file(const struct nnp_pprules *r, const char *src, const char *dst, int force,
			   int64_t *removed)
{
	struct nnp_nifti_in *in;
	struct nnp_nifti_out *out = NULL;
	struct nnp_nifti_opts no = { -1, force, 0 };
	struct nnp_vol v;
	int64_t *rem = calloc(r->n ? r->n : 1, sizeof *rem), total = 0;
	int rc;

	if (removed)
		*removed = 0;
	if (!rem)
		return nnp_err(NNP_ENOMEM, "out of memory");
	nnp_vol_init(&v);
	if ((rc = nnp_nifti_open(src, &in))) {
		free(rem);
		return rc;
	}
	if (!(rc = nnp__pp_check_seg(src, nnp_nifti_frame(in))) && !(rc = nnp_frame_copy(&v.f, nnp_nifti_frame(in))) &&
	    !(rc = nnp_vol_alloc(&v)))
		rc = nnp_nifti_read_slab(in, 0, 0, v.f.shape[1], v.data);
	nnp_nifti_close(in);
	if (!rc) {
		int64_t n[3] = { v.f.shape[1], v.f.shape[2], v.f.shape[3] };
		if ((rc = nnp_pprules_apply(r, v.f.dtype, v.data, n, rem)))
			nnp_err_ctx(rc, "'%s'", src);
	}
	for (size_t i = 0; !rc && i < r->n; i++)
		total += rem[i];
	free(rem);
	if (!rc && !total) {   /* unchanged: the input's bytes */
		nnp_vol_release(&v);
		return nnp_copy_file(src, dst, force, 0);
	}
	if (!rc)
		rc = nnp_nifti_create(dst, &v.f, 0, 1, 0, &no, &out);
	if (!rc && (rc = nnp_nifti_write(out, v.data, (size_t)nnp_frame_nbytes(&v.f))))
		nnp_nifti_abort(out);
	else if (!rc)
		rc = nnp_nifti_commit(out);
	nnp_vol_release(&v);
	if (!rc && removed)
		*removed = total;
	return rc;
}

/* ---- a folder ---- */

struct apply_run {
	const struct nnp_ppapply_opts *o;
	char **names;
	size_t n;
	char tmp[PATH_MAX];
	int64_t *removed;
	struct nnp_first_fail ff;
};

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* subfiles(dir, suffix=ending): regular files (links followed), sorted;
 * without nnp predict's CASE_probabilities<ending> (nnU-Net writes .npz). */
static int list_cases(const char *dir, const char *ending, char ***out, size_t *nout)
{
	return nnp_list_dir(dir, ending, NNP_LIST_NO_PROBABILITIES, out, nout);
}

static void apply_one(struct apply_run *A, size_t i, struct nnp_progress *pr)
{
	char src[PATH_MAX], dst[PATH_MAX];
	int rc;
	if (nnp_first_fail_skip(&A->ff, i))
		return;
	if (A->o->stop && *A->o->stop)
		rc = nnp_err(NNP_EIO, "interrupted by a signal: nothing was written");
	else if (!(rc = nnp_path_join(src, sizeof src, A->o->in_dir, A->names[i])) &&
		 !(rc = nnp_path_join(dst, sizeof dst, A->tmp, A->names[i])))
		rc = nnp_pprules_apply_file(A->o->rules, src, dst, 0, &A->removed[i]);
	nnp_first_fail_done(&A->ff, i, rc, pr);
}

/* dataset.json's file_ending (a NIfTI ending). */
static int file_ending(const char *path, char *ending, size_t n)
{
	json_t *ds, *fe;
	char name[PATH_MAX];
	int rc;
	if (!nnp_is_file(path))
		return nnp_err(NNP_EDATA, "'%s' does not exist (give --dataset-json; nnp predict and "
			       "nnUNetv2_predict copy it into their output folder)", path);
	if ((rc = nnp_json_load(path, &ds)))
		return rc;
	fe = json_object_get(ds, "file_ending");
	if (!json_is_string(fe) || !json_string_length(fe) || json_string_length(fe) >= n - 1)
		rc = nnp_err(NNP_EDATA, "'%s': file_ending: missing or not a string", path);
	else
		snprintf(ending, n, "%s", json_string_value(fe));
	json_decref(ds);
	if (rc)
		return rc;
	snprintf(name, sizeof name, "x%s", ending);
	if (!nnp_nifti_name_ok(name))
		return nnp_err(NNP_EDATA, "'%s': file ending '%s': only NIfTI files (.nii.gz, .nii) are supported",
			       path, ending);
	return NNP_OK;
}

static int same_folder(const char *a, const char *b)
{
	struct stat x, y;
	return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

int nnp_pprules_apply_folder(const struct nnp_ppapply_opts *o, struct nnp_ppapply_result *res)
{
	struct apply_run A;
	struct nnp_progress pr;
	char ds[PATH_MAX], plans[PATH_MAX], ending[256], p[PATH_MAX], q[PATH_MAX];
	const char *extra[2] = { "dataset.json", "plans.json" };
	const char *extra_src[2] = { ds, NULL };
	int rc, made_out = 0, nt;

	memset(res, 0, sizeof *res);
	memset(&A, 0, sizeof A);
	A.o = o;
	if (!nnp_is_dir(o->in_dir))
		return nnp_err(NNP_EDATA, "input folder '%s': %s", o->in_dir,
			       nnp__pp_exists(o->in_dir) ? "not a folder" : "does not exist");
	if (o->dataset_json)
		snprintf(ds, sizeof ds, "%s", o->dataset_json);
	else if ((rc = nnp_path_join(ds, sizeof ds, o->in_dir, "dataset.json")))
		return rc;
	if ((rc = file_ending(ds, ending, sizeof ending)))
		return rc;
	if (o->plans_json) {
		if (!nnp_is_file(o->plans_json))
			return nnp_err(NNP_EDATA, "'%s' does not exist", o->plans_json);
		snprintf(plans, sizeof plans, "%s", o->plans_json);
		extra_src[1] = plans;
	} else if (!(rc = nnp_path_join(plans, sizeof plans, o->in_dir, "plans.json")) && nnp_is_file(plans)) {
		extra_src[1] = plans;
	} else if (rc) {
		return rc;
	}
	if (nnp_is_dir(o->out_dir) && same_folder(o->in_dir, o->out_dir))
		return nnp_err(NNP_EUSAGE, "the output folder '%s' is the input folder", o->out_dir);
	if ((rc = list_cases(o->in_dir, ending, &A.names, &A.n)))
		return rc;
	if (!A.n) {
		free_names(A.names, A.n);
		return nnp_err(NNP_EDATA, "no files ending in '%s' in '%s'", ending, o->in_dir);
	}
	/* every output is checked before anything is written */
	for (size_t i = 0; !o->force && i < A.n + 2 && !rc; i++) {
		if (i >= A.n && !extra_src[i - A.n])
			continue;
		if (!(rc = nnp_path_join(p, sizeof p, o->out_dir, i < A.n ? A.names[i] : extra[i - A.n])) &&
		    nnp__pp_exists(p))
			rc = nnp_err(NNP_EUSAGE, "'%s' exists (use --force to replace it)", p);
	}
	if (!rc && !nnp_is_dir(o->out_dir)) {
		if (nnp__pp_exists(o->out_dir))
			rc = nnp_err(NNP_EUSAGE, "output '%s' exists and is not a folder", o->out_dir);
		else if (!(rc = nnp_mkdirs(o->out_dir)))
			made_out = 1;
	}
	if (!rc && !(A.removed = calloc(A.n, sizeof *A.removed)))
		rc = nnp_err(NNP_ENOMEM, "out of memory");
	if (!rc && !(rc = nnp_path_join(A.tmp, sizeof A.tmp, o->out_dir, ".nnp-ppapply.XXXXXX")) && !mkdtemp(A.tmp)) {
		rc = nnp_err(NNP_EIO, "cannot create a folder in '%s': %s", o->out_dir, strerror(errno));
		A.tmp[0] = '\0';
	}
	if (!rc) {
		nt = o->threads > 0 ? o->threads : nnp_threads();
		if ((size_t)nt > A.n)
			nt = (int)A.n;
		nnp_first_fail_init(&A.ff, A.n);
		nnp_progress_begin(&pr, "apply-postprocessing", (long long)A.n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
		for (size_t i = 0; i < A.n; i++)
			apply_one(&A, i, &pr);
		nnp_progress_end(&pr);
		rc = nnp_first_fail_result(&A.ff);
	}
	for (int k = 0; !rc && k < 2; k++)
		if (extra_src[k] && !(rc = nnp_path_join(p, sizeof p, A.tmp, extra[k])))
			rc = nnp_copy_file(extra_src[k], p, 0, 0);
	if (!rc && o->stop && *o->stop)
		rc = nnp_err(NNP_EIO, "interrupted by a signal: nothing was written");
	for (size_t i = 0; !rc && i < A.n + 2; i++) {   /* everything staged: into place */
		const char *name = i < A.n ? A.names[i] : extra[i - A.n];
		if (i >= A.n && !extra_src[i - A.n])
			continue;
		if (!(rc = nnp_path_join(p, sizeof p, A.tmp, name)) && !(rc = nnp_path_join(q, sizeof q, o->out_dir, name)))
			rc = nnp__pp_move(p, q, o->force, 0);
		if (!rc && i < A.n) {
			res->changed += A.removed[i] > 0;
			res->removed += A.removed[i];
		}
	}
	if (A.tmp[0])
		nnp__pp_remove_tree(A.tmp);
	if (rc && made_out)
		rmdir(o->out_dir);
	if (!rc)
		res->ncases = A.n;
	free_names(A.names, A.n);
	free(A.removed);
	return rc;
}
