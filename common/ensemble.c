/* ensemble.c — nnUNetv2_ensemble: mean of probability files, then the
 * segmentation rule of export.h, streamed channel by channel (see
 * ensemble.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "atomic.h"
#include "dataset.h"
#include "ensemble.h"
#include "err.h"
#include "nifti.h"
#include "prog.h"

#define SLAB_VOXELS ((int64_t)1 << 18)    /* voxels per slab buffer (1 MiB float32) */
#define TOL 1e-4                          /* geometry: relative tolerance */

void nnp_ensemble_opts_init(struct nnp_ensemble_opts *o)
{
	memset(o, 0, sizeof *o);
	o->file_ending = ".nii.gz";
	o->gzip_level = -1;
}

/* ------------------------------------------------------------------ */
/* listing                                                             */

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

void nnp_ensemble_cases_release(struct nnp_ensemble_cases *c)
{
	if (!c)
		return;
	free_strv(c->ids, c->n);
	memset(c, 0, sizeof *c);
}

static int ending_ok(const char *e)
{
	size_t n = strlen(e);
	if (n == 4 && !strcmp(e, ".nii"))
		return 1;
	return n == 7 && !strcmp(e, ".nii.gz");
}

/* The sorted ids of dir's ID<suffix> files (hidden names skipped: they
 * are temporary files). */
static int list_dir(const char *dir, const char *suffix, char ***out, size_t *nout)
{
	int rc = nnp_list_dir(dir, suffix, NNP_LIST_SKIP_HIDDEN | NNP_LIST_STRIP_SUFFIX, out, nout);
	for (size_t i = 0; !rc && i < *nout; i++)
		if (strlen((*out)[i]) > NNP_CASE_ID_MAX)
			rc = nnp_err(NNP_EDATA, "'%s/%s%s': case id longer than %d bytes", dir, (*out)[i], suffix,
				     NNP_CASE_ID_MAX);
	if (rc && *out) {
		free_strv(*out, *nout);
		*out = NULL;
		*nout = 0;
	}
	return rc;
}

static int has_id(char *const *ids, size_t n, const char *id)
{
	return n && bsearch(&id, ids, n, sizeof *ids, cmp_str) != NULL;
}

/* Sorted union of the folders' lists (each sorted). */
static int union_ids(char ***lists, const size_t *ns, size_t nd, struct nnp_ensemble_cases *out)
{
	size_t total = 0, n = 0;
	char **all;
	for (size_t i = 0; i < nd; i++)
		total += ns[i];
	if (!(all = malloc((total ? total : 1) * sizeof *all)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < nd; i++)
		for (size_t k = 0; k < ns[i]; k++)
			all[n++] = lists[i][k];
	qsort(all, n, sizeof *all, cmp_str);
	out->n = 0;
	if (!(out->ids = calloc(n ? n : 1, sizeof *out->ids))) {
		free(all);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	for (size_t k = 0; k < n; k++) {
		if (out->n && !strcmp(out->ids[out->n - 1], all[k]))
			continue;
		if (!(out->ids[out->n] = strdup(all[k]))) {
			free(all);
			nnp_ensemble_cases_release(out);
			return nnp_err(NNP_ENOMEM, "out of memory");
		}
		out->n++;
	}
	free(all);
	return NNP_OK;
}

int nnp_ensemble_list(const char *const *dirs, size_t ndirs, const char *file_ending,
		      struct nnp_ensemble_cases *out)
{
	char suffix[64], ***lists;
	size_t *ns;
	int rc = NNP_OK;

	memset(out, 0, sizeof *out);
	if (!file_ending || !ending_ok(file_ending))
		return nnp_err(NNP_EDATA, "file ending '%s': only NIfTI probabilities (.nii.gz, .nii) can be ensembled",
			       file_ending ? file_ending : "");
	if (ndirs < 1 || ndirs > NNP_ENSEMBLE_INPUTS_MAX)
		return nnp_err(NNP_EUSAGE, "1 to %d input folders, not %zu", NNP_ENSEMBLE_INPUTS_MAX, ndirs);
	snprintf(suffix, sizeof suffix, "%s%s", NNP_ENSEMBLE_SUFFIX, file_ending);
	lists = calloc(ndirs, sizeof *lists);
	ns = calloc(ndirs, sizeof *ns);
	if (!lists || !ns) {
		free(lists);
		free(ns);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < ndirs && !rc; i++) {
		if (!nnp_is_dir(dirs[i])) {
			rc = nnp_err(NNP_EDATA, "input folder '%s': %s", dirs[i],
				     access(dirs[i], F_OK) ? strerror(errno) : "not a folder");
			break;
		}
		if ((rc = list_dir(dirs[i], suffix, &lists[i], &ns[i])))
			break;
		if (!ns[i])
			rc = nnp_err(NNP_EDATA, "input folder '%s': no probability files (CASE%s; write them with "
				     "'nnp predict --save-probabilities')", dirs[i], suffix);
	}
	if (!rc)
		rc = union_ids(lists, ns, ndirs, out);
	for (size_t i = 0; i < ndirs && !rc; i++) {
		if (ns[i] == out->n)
			continue;
		for (size_t k = 0; k < out->n; k++) {
			if (has_id(lists[i], ns[i], out->ids[k]))
				continue;
			size_t j = 0;
			while (j < ndirs && !has_id(lists[j], ns[j], out->ids[k]))
				j++;
			rc = nnp_err(NNP_EDATA, "input folder '%s': case '%s' is missing (no %s%s, which '%s' has): "
				     "every folder must hold the same cases", dirs[i], out->ids[k], out->ids[k],
				     suffix, j < ndirs ? dirs[j] : "another folder");
			break;
		}
	}
	for (size_t i = 0; i < ndirs; i++)
		free_strv(lists[i], ns[i]);
	free(lists);
	free(ns);
	if (rc)
		nnp_ensemble_cases_release(out);
	return rc;
}

/* ------------------------------------------------------------------ */
/* one case                                                            */

static int64_t slab_slices(int64_t Z, int64_t plane)
{
	int64_t zs = plane > 0 ? SLAB_VOXELS / plane : 1;
	return zs < 1 ? 1 : zs > Z ? Z : zs;
}

uint64_t nnp_ensemble_case_memory(const int64_t shape[4], enum nnp_dtype seg_dt, size_t ninputs)
{
	uint64_t plane = (uint64_t)shape[2] * (uint64_t)shape[3], nvox = plane * (uint64_t)shape[1];
	uint64_t slab = (uint64_t)slab_slices(shape[1], (int64_t)plane) * plane;
	/* best (float) + label (int32) + segmentation; per slab: the raw read
	 * buffer (<= 8 bytes), two float buffers and a double one; ~1 MiB of
	 * zlib state and buffers per open file */
	return nvox * (8 + nnp_dtype_size(seg_dt)) + slab * (8 + 4 + 4 + 8) + ((uint64_t)ninputs + 2) * (1u << 20);
}

static int close_rel(double a, double b)
{
	return fabs(a - b) <= TOL * fmax(1.0, fmax(fabs(a), fabs(b)));
}

static int same_geometry(const struct nnp_nifti_in *a, const struct nnp_nifti_in *b)
{
	const struct nnp_frame *fa = nnp_nifti_frame(a), *fb = nnp_nifti_frame(b);
	for (int i = 0; i < 4; i++)
		if (fa->shape[i] != fb->shape[i])
			return nnp_err(NNP_EDATA, "'%s' and '%s' differ in shape: %lld channels of (%lld, %lld, %lld) "
				       "vs %lld of (%lld, %lld, %lld) (z, y, x)", nnp_nifti_path(a), nnp_nifti_path(b),
				       (long long)fa->shape[0], (long long)fa->shape[1], (long long)fa->shape[2],
				       (long long)fa->shape[3], (long long)fb->shape[0], (long long)fb->shape[1],
				       (long long)fb->shape[2], (long long)fb->shape[3]);
	for (int i = 0; i < 3; i++)
		if (!close_rel(fa->spacing[i], fb->spacing[i]))
			return nnp_err(NNP_EDATA, "'%s' and '%s' differ in spacing: %g vs %g mm along axis %d (z, y, x)",
				       nnp_nifti_path(a), nnp_nifti_path(b), fa->spacing[i], fb->spacing[i], i);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 4; j++)
			if (!close_rel(fa->affine[i][j], fb->affine[i][j]))
				return nnp_err(NNP_EDATA, "'%s' and '%s' differ in the affine: [%d][%d] = %g vs %g",
					       nnp_nifti_path(a), nnp_nifti_path(b), i, j, fa->affine[i][j],
					       fb->affine[i][j]);
	return NNP_OK;
}

static int check_first(const struct nnp_nifti_in *in, const struct nnp_export_labels *l)
{
	const struct nnp_frame *f = nnp_nifti_frame(in);
	if (l->nchannels && f->shape[0] != l->nchannels)
		return nnp_err(NNP_EDATA, "'%s': %lld channels, but dataset.json has %lld %s", nnp_nifti_path(in),
			       (long long)f->shape[0], (long long)l->nchannels, l->regions ? "regions" : "labels");
	return NNP_OK;
}

static int check_dtype(const struct nnp_nifti_in *in)
{
	const struct nnp_frame *f = nnp_nifti_frame(in);
	if (f->dtype != NNP_F32 && f->dtype != NNP_F64)
		return nnp_err(NNP_EDATA, "'%s': voxel type %s: probabilities must be float32 or float64",
			       nnp_nifti_path(in), nnp_dtype_name(f->dtype));
	return NNP_OK;
}

/* One input's scaling (scl_slope/inter) when it is not the identity. */
static const double *active_scale(const struct nnp_frame *f)
{
	if (!f->scale || f->scale[0] == 0 || (f->scale[0] == 1 && f->scale[1] == 0))
		return NULL;
	return f->scale;
}

struct ens_case {
	const struct nnp_ensemble_opts *o;
	const char *id;
	size_t n;
	struct nnp_nifti_in **in;
	struct nnp_nifti_out *po, *so;
	struct nnp_frame pf, sf;
	int64_t K, Z, plane, zs;
	float *best, *acc, *tmp;
	int32_t *lab;
	void *raw, *seg;
	double *dbl;
};

static int open_inputs(struct ens_case *e)
{
	int rc = NNP_OK;
	for (size_t i = 0; i < e->n && !rc; i++) {
		char *p = nnp_strprintf("%s/%s%s%s", e->o->inputs[i], e->id, NNP_ENSEMBLE_SUFFIX, e->o->file_ending);
		if (!p)
			return NNP_ENOMEM;
		rc = nnp_nifti_open(p, &e->in[i]);
		free(p);
		if (!rc)
			rc = check_dtype(e->in[i]);
		if (!rc)
			rc = i ? same_geometry(e->in[0], e->in[i]) : check_first(e->in[0], e->o->labels);
	}
	return rc;
}

static int out_frames(struct ens_case *e)
{
	const struct nnp_frame *f0 = nnp_nifti_frame(e->in[0]);
	int rc;
	if ((rc = nnp_frame_copy(&e->sf, f0)) || (rc = nnp_frame_copy(&e->pf, f0)))
		return rc;
	free(e->sf.scale);
	free(e->pf.scale);
	e->sf.scale = e->pf.scale = NULL;
	e->sf.shape[0] = 1;
	e->sf.dtype = nnp_export_seg_dtype(e->o->labels, f0->shape[0]);
	e->pf.dtype = NNP_F32;
	strcpy(e->sf.role, "seg");
	strcpy(e->pf.role, "probabilities");
	e->K = f0->shape[0];
	e->Z = f0->shape[1];
	e->plane = f0->shape[2] * f0->shape[3];
	e->zs = slab_slices(e->Z, e->plane);
	return NNP_OK;
}

static int alloc_buffers(struct ens_case *e)
{
	size_t nvox = (size_t)(e->Z * e->plane), slab = (size_t)(e->zs * e->plane);
	int need_dbl = 0;
	for (size_t i = 0; i < e->n; i++) {
		const struct nnp_frame *f = nnp_nifti_frame(e->in[i]);
		need_dbl |= f->dtype != NNP_F32 || active_scale(f) != NULL;
	}
	e->lab = malloc(nvox * sizeof *e->lab);
	e->seg = malloc(nvox * nnp_dtype_size(e->sf.dtype));
	e->acc = malloc(slab * sizeof *e->acc);
	e->tmp = malloc(slab * sizeof *e->tmp);
	e->raw = malloc(slab * sizeof(double));
	if (!e->o->labels->regions)
		e->best = malloc(nvox * sizeof *e->best);
	if (need_dbl)
		e->dbl = malloc(slab * sizeof *e->dbl);
	if (!e->lab || !e->seg || !e->acc || !e->tmp || !e->raw || (!e->o->labels->regions && !e->best) ||
	    (need_dbl && !e->dbl))
		return nnp_err(NNP_ENOMEM, "out of memory (%.1f MiB for case '%s')",
			       nnp_ensemble_case_memory(e->sf.shape, e->sf.dtype, e->n) / 1048576.0, e->id);
	return NNP_OK;
}

static int not_finite(const struct ens_case *e, size_t i, int64_t c, int64_t z0, size_t at)
{
	int64_t z = z0 + (int64_t)(at / (size_t)e->plane);
	return nnp_err(NNP_EDATA, "'%s': NaN or infinite probability in channel %lld, slice z = %lld (0-based, "
		       "nnU-Net's axis 0)", nnp_nifti_path(e->in[i]), (long long)c, (long long)z);
}

static size_t first_bad_f(const float *v, size_t m)
{
	int bad = 0;
	for (size_t k = 0; k < m; k++)
		bad |= !isfinite(v[k]);
	if (!bad)
		return m;
	for (size_t k = 0; k < m; k++)
		if (!isfinite(v[k]))
			return k;
	return m;
}

static size_t first_bad_d(const double *v, size_t m)
{
	for (size_t k = 0; k < m; k++)
		if (!isfinite(v[k]))
			return k;
	return m;
}

/* avg += value of input i (slab of m voxels), numpy's float32 rules:
 * float32 input: float addition; float64 (or scaled) input: the sum in
 * double, rounded to float32.  i == 0 sets avg (astype(float32)). */
static int add_input(struct ens_case *e, size_t i, int64_t c, int64_t z0, int64_t k)
{
	const struct nnp_frame *f = nnp_nifti_frame(e->in[i]);
	const double *s = active_scale(f);
	size_t m = (size_t)(k * e->plane), bad;
	float *restrict acc = e->acc;
	int rc;

	if (f->dtype == NNP_F32 && !s) {
		float *restrict dst = i ? e->tmp : e->acc;
		if ((rc = nnp_nifti_read_slab(e->in[i], c, z0, k, dst)))
			return rc;
		if ((bad = first_bad_f(dst, m)) < m)
			return not_finite(e, i, c, z0, bad);
		if (i)
			for (size_t v = 0; v < m; v++)
				acc[v] += dst[v];
		return NNP_OK;
	}
	if ((rc = nnp_nifti_read_slab(e->in[i], c, z0, k, e->raw)))
		return rc;
	nnp_to_f64(f->dtype, e->raw, e->dbl, m);
	if (s)
		for (size_t v = 0; v < m; v++)
			e->dbl[v] = e->dbl[v] * s[2 * c] + s[2 * c + 1];
	if ((bad = first_bad_d(e->dbl, m)) < m)
		return not_finite(e, i, c, z0, bad);
	for (size_t v = 0; v < m; v++)
		acc[v] = i ? (float)((double)acc[v] + e->dbl[v]) : (float)e->dbl[v];
	return NNP_OK;
}

/* OUT/ID<suffix><ending> for the channels of f. */
static int create_out(struct ens_case *e, const char *suffix, struct nnp_frame *f, int64_t nc,
		      struct nnp_nifti_out **out)
{
	/* --continue re-runs a case with a missing output: it replaces the other */
	struct nnp_nifti_opts no = { e->o->gzip_level, e->o->force || e->o->skip_existing, 0 };
	char *p = nnp_strprintf("%s/%s%s%s", e->o->output, e->id, suffix, e->o->file_ending);
	int rc;
	if (!p)
		return NNP_ENOMEM;
	if (e->id[0] && (rc = nnp_frame_set_case(f, e->id))) {
		free(p);
		return rc;
	}
	rc = nnp_nifti_create(p, f, 0, nc, 0, &no, out);
	free(p);
	return rc;
}

static int run_channels(struct ens_case *e)
{
	const struct nnp_export_labels *l = e->o->labels;
	const float fn = (float)e->n;
	int rc;
	for (int64_t c = 0; c < e->K; c++) {
		for (int64_t z0 = 0; z0 < e->Z; z0 += e->zs) {
			int64_t k = e->Z - z0 < e->zs ? e->Z - z0 : e->zs;
			size_t m = (size_t)(k * e->plane), off = (size_t)(z0 * e->plane);
			float *restrict acc = e->acc;
			for (size_t i = 0; i < e->n; i++)
				if ((rc = add_input(e, i, c, z0, k)))
					return rc;
			for (size_t v = 0; v < m; v++)
				acc[v] /= fn;
			if (e->po && (rc = nnp_nifti_write(e->po, acc, m * sizeof *acc)))
				return rc;
			if (!l->regions) {
				nnp_export_argmax_channel(acc, e->best + off, e->lab + off, (int32_t)c, (int64_t)m);
			} else {
				if (c == 0)
					memset(e->lab + off, 0, m * sizeof *e->lab);
				nnp_export_region_channel(acc, e->lab + off, l->region_values[c], (int64_t)m);
			}
		}
	}
	return NNP_OK;
}

static void case_release(struct ens_case *e)
{
	for (size_t i = 0; e->in && i < e->n; i++)
		nnp_nifti_close(e->in[i]);
	free(e->in);
	nnp_nifti_abort(e->po);
	nnp_nifti_abort(e->so);
	nnp_frame_release(&e->pf);
	nnp_frame_release(&e->sf);
	free(e->best);
	free(e->lab);
	free(e->seg);
	free(e->acc);
	free(e->tmp);
	free(e->raw);
	free(e->dbl);
}

static int commit(struct nnp_nifti_out **o)
{
	int rc;
	if (!*o)
		return NNP_OK;
	rc = nnp_nifti_commit(*o);
	*o = NULL;
	return rc;
}

int nnp_ensemble_case(const struct nnp_ensemble_opts *o, const char *id)
{
	struct ens_case e;
	int64_t nvox;
	int rc;

	memset(&e, 0, sizeof e);
	nnp_frame_init(&e.pf);
	nnp_frame_init(&e.sf);
	e.o = o;
	e.id = id;
	e.n = o->ninputs;
	if (!o->labels)
		return nnp_err(NNP_EINTERNAL, "nnp_ensemble_case: no labels");
	if (!(e.in = calloc(e.n, sizeof *e.in)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	rc = open_inputs(&e);
	if (!rc)
		rc = out_frames(&e);
	if (!rc)
		rc = alloc_buffers(&e);
	if (!rc && o->save_probabilities)
		rc = create_out(&e, NNP_ENSEMBLE_SUFFIX, &e.pf, e.K, &e.po);
	if (!rc)
		rc = run_channels(&e);
	nvox = e.Z * e.plane;
	if (!rc) {
		nnp_export_store_labels(e.sf.dtype, e.seg, e.lab, nvox);
		rc = create_out(&e, "", &e.sf, 1, &e.so);
	}
	if (!rc)
		rc = nnp_nifti_write(e.so, e.seg, (size_t)nvox * nnp_dtype_size(e.sf.dtype));
	if (!rc)
		rc = commit(&e.po);
	if (!rc)
		rc = commit(&e.so);
	case_release(&e);
	return rc;
}

/* ------------------------------------------------------------------ */
/* all cases                                                           */

static int out_path_exists(const struct nnp_ensemble_opts *o, const char *id, int prob, char **which)
{
	char *p = nnp_strprintf("%s/%s%s%s", o->output, id, prob ? NNP_ENSEMBLE_SUFFIX : "", o->file_ending);
	int ex;
	if (!p)
		return -1;
	ex = access(p, F_OK) == 0;
	if (ex && which && !*which)
		*which = p;
	else
		free(p);
	return ex;
}

/* Which cases to run (indices into c), after the --continue / --force rules. */
static int plan_cases(struct nnp_ensemble_opts *o, const struct nnp_ensemble_cases *c, size_t *pending,
		      size_t *npending)
{
	*npending = 0;
	o->skipped = 0;
	for (size_t k = 0; k < c->n; k++) {
		char *which = NULL;
		int s = out_path_exists(o, c->ids[k], 0, &which);
		int p = o->save_probabilities ? out_path_exists(o, c->ids[k], 1, &which) : 0;
		if (s < 0 || p < 0) {
			free(which);
			return NNP_ENOMEM;
		}
		if (o->skip_existing && s && (!o->save_probabilities || p)) {
			o->skipped++;
			free(which);
			continue;
		}
		if (which && !o->force && !o->skip_existing) {
			int rc = nnp_err(NNP_EUSAGE, "'%s' exists (use --force to replace it or --continue to skip "
					 "finished cases)", which);
			free(which);
			return rc;
		}
		free(which);
		pending[(*npending)++] = k;
	}
	return NNP_OK;
}

/* Memory of every case to run from its first file's header; the largest. */
static int check_memory(const struct nnp_ensemble_opts *o, const struct nnp_ensemble_cases *c,
			const size_t *pending, size_t npending, uint64_t *largest)
{
	*largest = 0;
	for (size_t t = 0; t < npending; t++) {
		const char *id = c->ids[pending[t]];
		char *p = nnp_strprintf("%s/%s%s%s", o->inputs[0], id, NNP_ENSEMBLE_SUFFIX, o->file_ending);
		struct nnp_nifti_in *in;
		uint64_t need;
		int rc;
		if (!p)
			return NNP_ENOMEM;
		rc = nnp_nifti_open(p, &in);
		free(p);
		if (rc)
			return rc;
		need = nnp_ensemble_case_memory(nnp_nifti_frame(in)->shape,
						nnp_export_seg_dtype(o->labels, nnp_nifti_frame(in)->shape[0]),
						o->ninputs);
		nnp_nifti_close(in);
		if (o->max_memory && need > o->max_memory)
			return nnp_err(NNP_ENOMEM, "case '%s' needs %.1f MiB (%llu bytes), more than the memory limit "
				       "of %llu bytes (--max-memory)", id, need / 1048576.0, (unsigned long long)need,
				       (unsigned long long)o->max_memory);
		if (need > *largest)
			*largest = need;
	}
	return NNP_OK;
}

struct run_state {
	const struct nnp_ensemble_opts *o;
	const struct nnp_ensemble_cases *c;
	const size_t *pending;
	size_t npending, done;
	struct nnp_first_fail ff;
};

static void run_one(struct run_state *R, size_t t, struct nnp_progress *pr)
{
	int rc;
	if (nnp_first_fail_skip(&R->ff, t))
		return;
	rc = nnp_ensemble_case(R->o, R->c->ids[R->pending[t]]);
	if (!rc) {
#pragma omp atomic
		R->done++;
	}
	nnp_first_fail_done(&R->ff, t, rc, pr);
}

int nnp_ensemble_run(struct nnp_ensemble_opts *o, const struct nnp_ensemble_cases *c)
{
	struct run_state R;
	struct nnp_progress pr;
	size_t *pending, npending;
	uint64_t largest;
	int jobs, rc;

	o->done = o->skipped = 0;
	o->jobs_used = 0;
	if (!o->labels || !o->output || !o->ninputs)
		return nnp_err(NNP_EINTERNAL, "nnp_ensemble_run: incomplete options");
	if ((rc = nnp_mkdirs(o->output)))
		return rc;
	if (!(pending = malloc((c->n ? c->n : 1) * sizeof *pending)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	if ((rc = plan_cases(o, c, pending, &npending)) || (rc = check_memory(o, c, pending, npending, &largest))) {
		free(pending);
		return rc;
	}
	jobs = o->threads > 0 ? o->threads : nnp_threads();
	if ((size_t)jobs > npending)
		jobs = npending ? (int)npending : 1;
	while (jobs > 1 && o->max_memory && (uint64_t)jobs * largest > o->max_memory)
		jobs--;
	o->jobs_used = jobs;
	memset(&R, 0, sizeof R);
	R.o = o;
	R.c = c;
	R.pending = pending;
	R.npending = npending;
	nnp_first_fail_init(&R.ff, npending);
	nnp_progress_begin(&pr, "ensemble", (long long)npending);
#pragma omp parallel for schedule(dynamic, 1) num_threads(jobs)
	for (size_t t = 0; t < npending; t++)
		run_one(&R, t, &pr);
	nnp_progress_end(&pr);
	free(pending);
	o->done = R.done;
	return nnp_first_fail_result(&R.ff);
}

/* ------------------------------------------------------------------ */
