/* fingerprint.c — dataset fingerprint, numpy-exact (see fingerprint.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "crop.h"
#include "err.h"
#include "fingerprint.h"
#include "ingest.h"
#include "nifti.h"
#include "prog.h"
#include "rng.h"

#define NP_BUFSIZE 8192   /* numpy's reduction buffer (NPY_BUFSIZE) */
#define PW_BLOCK 128      /* numpy's pairwise block */
#define FP_SEED 1234

/* ---- numpy float32 summation ---- */

float nnp_np_pairwise_f32(const float *a, uint64_t n)
{
	if (n < 8) {
		float r = 0.0f;
		for (uint64_t i = 0; i < n; i++)
			r += a[i];
		return r;
	}
	if (n <= PW_BLOCK) {
		float r[8], res;
		uint64_t i;
		for (int j = 0; j < 8; j++)
			r[j] = a[j];
		for (i = 8; i < n - (n % 8); i += 8)
			for (int j = 0; j < 8; j++)
				r[j] += a[i + (uint64_t)j];
		res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++)
			res += a[i];
		return res;
	}
	uint64_t n2 = n / 2;
	n2 -= n2 % 8;
	return nnp_np_pairwise_f32(a, n2) + nnp_np_pairwise_f32(a + n2, n - n2);
}

float nnp_np_sum_f32(const float *a, uint64_t n)
{
	float s = 0.0f;
	for (uint64_t i = 0; i < n; i += NP_BUFSIZE)
		s += nnp_np_pairwise_f32(a + i, n - i < NP_BUFSIZE ? n - i : NP_BUFSIZE);
	return s;
}

/* ---- per case data ---- */

struct vc {            /* a foreground value and how often it was drawn */
	float v;
	uint64_t n;
};

struct piece {         /* raw samples of a buffer block this case only partly fills */
	uint64_t block, len;
	float *vals;
};

struct fcase {
	const struct nnp_case *c;
	int rc;
	char err[512];
	int64_t shape[3];
	double spacing[3], relsize;
	uint64_t nfg;
	float *fg;             /* nchan * nfg values (cached), or NULL */
	int cached;
	uint64_t start;        /* global sample offset (cases with foreground only) */
	struct vc *vcs;        /* per channel: unique drawn values with counts */
	uint64_t *nvcs;
	struct piece *pieces;  /* per channel: at most 2 (or 1) raw pieces */
	int *npieces;
};

struct fpctx {
	const struct nnp_dataset *d;
	struct fcase *cases;
	size_t ncases;
	int64_t nchan;
	uint64_t nsamples;     /* per case and channel */
	uint64_t total;        /* samples per channel over the dataset */
	float *blocksum;       /* nchan * nblocks */
	uint64_t nblocks;
	uint64_t cache_left;
	float *mu;             /* per channel mean, for the squares pass */
};

static void case_error(struct fcase *fc)
{
	snprintf(fc->err, sizeof fc->err, "%s", nnp_err_msg());
}

/* Read, crop and extract foreground values (all channels) of one case. */
static int load_case(struct fpctx *x, struct fcase *fc, float **fgout)
{
	struct nnp_ingest *g = NULL;
	struct nnp_vol img, seg, ci, cs;
	int64_t bbox[3][2];
	int rc;
	nnp_vol_init(&img); nnp_vol_init(&seg); nnp_vol_init(&ci); nnp_vol_init(&cs);
	if (!fc->c->label)
		return nnp_err(NNP_EDATA, "case '%s': no label file in labelsTr", fc->c->id);
	rc = nnp_ingest_open((const char *const *)fc->c->images, fc->c->nimages, "image", fc->c->id, &g);
	if (!rc && nnp_ingest_frame(g)->shape[0] != x->nchan)
		rc = nnp_err(NNP_EDATA, "case '%s': %lld channels, dataset.json declares %lld", fc->c->id,
			     (long long)nnp_ingest_frame(g)->shape[0], (long long)x->nchan);
	if (!rc)
		rc = nnp_ingest_read_volume(g, &img);
	if (!rc)
		rc = nnp_nifti_read_volume(fc->c->label, &seg);
	if (!rc && (seg.f.shape[0] != 1 || seg.f.shape[1] != img.f.shape[1] || seg.f.shape[2] != img.f.shape[2] ||
		    seg.f.shape[3] != img.f.shape[3]))
		rc = nnp_err(NNP_EDATA, "'%s': label shape differs from the image of case '%s'", fc->c->label,
			     fc->c->id);
	if (!rc)
		rc = nnp_crop_to_nonzero(&img, &seg, &ci, &cs, bbox);
	if (!rc) {
		uint64_t nv = nnp_frame_nvox(&cs.f), k = 0, before = nnp_frame_nvox(&img.f);
		memcpy(fc->spacing, img.f.spacing, sizeof fc->spacing);
		for (int a = 0; a < 3; a++)
			fc->shape[a] = ci.f.shape[a + 1];
		fc->relsize = (double)nv / (double)before;
		fc->nfg = 0;
		for (uint64_t i = 0; i < nv; i++)
			fc->nfg += cs.f.dtype == NNP_I8 ? ((int8_t *)cs.data)[i] > 0 : ((int16_t *)cs.data)[i] > 0;
		*fgout = malloc((size_t)(fc->nfg * (uint64_t)x->nchan + 1) * sizeof(float));
		if (!*fgout)
			rc = nnp_err(NNP_ENOMEM, "case '%s': out of memory for foreground values", fc->c->id);
		for (int64_t c = 0; !rc && c < x->nchan; c++) {
			double slope = 1, inter = 0, v;
			const char *p = (const char *)ci.data + (uint64_t)c * nv * nnp_dtype_size(ci.f.dtype);
			if (ci.f.scale && ci.f.scale[2 * c] != 0) {
				slope = ci.f.scale[2 * c];
				inter = ci.f.scale[2 * c + 1];
			}
			k = 0;
			for (uint64_t i = 0; i < nv; i++) {
				int fgv = cs.f.dtype == NNP_I8 ? ((int8_t *)cs.data)[i] > 0 : ((int16_t *)cs.data)[i] > 0;
				if (!fgv)
					continue;
				nnp_to_f64(ci.f.dtype, p + i * nnp_dtype_size(ci.f.dtype), &v, 1);
				(*fgout)[(uint64_t)c * fc->nfg + k++] = (float)(v * slope + inter);
			}
		}
	}
	nnp_ingest_free(g);
	nnp_vol_release(&img); nnp_vol_release(&seg); nnp_vol_release(&ci); nnp_vol_release(&cs);
	return rc;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

static int cmp_vc(const void *a, const void *b)
{
	return cmp_float(&((const struct vc *)a)->v, &((const struct vc *)b)->v);
}

/* Counts of one channel's draws -> its sorted unique (value, n) list. */
static void counts_to_vcs(struct fpctx *x, struct fcase *fc, const float *fg, int64_t c, const uint32_t *cnt)
{
	struct vc *out = fc->vcs + (uint64_t)c * fc->nfg;
	uint64_t m = 0, w = 0;
	(void)x;
	for (uint64_t i = 0; i < fc->nfg; i++)
		if (cnt[i]) {
			out[m].v = fg[(uint64_t)c * fc->nfg + i];
			out[m++].n = cnt[i];
		}
	qsort(out, (size_t)m, sizeof *out, cmp_vc);
	for (uint64_t i = 0; i < m; i++) {
		if (w && out[w - 1].v == out[i].v)
			out[w - 1].n += out[i].n;
		else
			out[w++] = out[i];
	}
	fc->nvcs[c] = w;
}

static void pass1_case(struct fpctx *x, struct fcase *fc)
{
	float *fg = NULL;
	int rc = load_case(x, fc, &fg);
	if (rc) {
		fc->rc = rc;
		case_error(fc);
		free(fg);
		return;
	}
	#pragma omp critical(nnp_fp_cache)
	{
		uint64_t need = fc->nfg * (uint64_t)x->nchan * sizeof(float);
		if (need <= x->cache_left) {
			x->cache_left -= need;
			fc->fg = fg;
			fc->cached = 1;
		}
	}
	if (!fc->cached)
		free(fg);
}

/* ---- pass 2/3: numpy-ordered float32 block sums ---- */

/* One channel's draws of a case into buffer blocks aligned to the global
 * sample position; squares = 0: values (and counts), 1: (v - mu)^2. */
static int channel_blocks(struct fpctx *x, struct fcase *fc, const float *fg, int64_t ch, int squares,
			  struct nnp_rs *rs, uint32_t *cnt, float *buf)
{
	uint64_t p = fc->start, end = fc->start + x->nsamples, m = fc->nfg - 1;
	const float *vals = fg + (uint64_t)ch * fc->nfg;
	float *sums = x->blocksum + (uint64_t)ch * x->nblocks, mu = x->mu[ch];
	struct piece *pc = fc->pieces + (uint64_t)ch * 2;
	fc->npieces[ch] = 0;
	while (p < end) {
		uint64_t b = p / NP_BUFSIZE, bstart = b * NP_BUFSIZE;
		uint64_t bend = bstart + NP_BUFSIZE < x->total ? bstart + NP_BUFSIZE : x->total;
		uint64_t hi = bend < end ? bend : end, n = hi - p;
		if (squares) {
			for (uint64_t k = 0; k < n; k++) {
				float dv = vals[nnp_rs_bounded(rs, m)] - mu;
				buf[k] = dv * dv;
			}
		} else {
			for (uint64_t k = 0; k < n; k++) {
				uint64_t i = nnp_rs_bounded(rs, m);
				cnt[i]++;
				buf[k] = vals[i];
			}
		}
		if (p == bstart && hi == bend) {
			sums[b] = nnp_np_pairwise_f32(buf, n);
		} else {
			struct piece *q = &pc[fc->npieces[ch]++];
			q->block = b;
			q->len = n;
			if (!(q->vals = malloc((size_t)n * sizeof(float))))
				return nnp_err(NNP_ENOMEM, "out of memory");
			memcpy(q->vals, buf, (size_t)n * sizeof(float));
		}
		p = hi;
	}
	return NNP_OK;
}

/* All channels of a case in the generator's order (channel 0's draws,
 * then channel 1's, ...): one RandomState(1234) run per pass. */
static int block_sums(struct fpctx *x, struct fcase *fc, const float *fg, int squares)
{
	struct nnp_rs rs;
	float *buf = malloc(NP_BUFSIZE * sizeof *buf);
	uint32_t *cnt = squares ? NULL : calloc((size_t)fc->nfg, sizeof *cnt);
	int rc = NNP_OK;
	if (!buf || (!squares && !cnt))
		rc = nnp_err(NNP_ENOMEM, "out of memory");
	if (!rc && !squares) {
		fc->vcs = calloc((size_t)(fc->nfg * (uint64_t)x->nchan), sizeof *fc->vcs);
		fc->nvcs = calloc((size_t)x->nchan, sizeof *fc->nvcs);
		if (!fc->vcs || !fc->nvcs)
			rc = nnp_err(NNP_ENOMEM, "out of memory");
	}
	nnp_rs_seed(&rs, FP_SEED);
	for (int64_t c = 0; !rc && c < x->nchan; c++) {
		if (cnt)
			memset(cnt, 0, (size_t)fc->nfg * sizeof *cnt);
		rc = channel_blocks(x, fc, fg, c, squares, &rs, cnt, buf);
		if (!rc && cnt)
			counts_to_vcs(x, fc, fg, c, cnt);
	}
	free(buf);
	free(cnt);
	return rc;
}

static void free_pieces(struct fpctx *x, int64_t ch)
{
	for (size_t i = 0; i < x->ncases; i++) {
		struct fcase *fc = &x->cases[i];
		for (int k = 0; fc->npieces && k < fc->npieces[ch]; k++) {
			free(fc->pieces[(uint64_t)ch * 2 + (uint64_t)k].vals);
			fc->pieces[(uint64_t)ch * 2 + (uint64_t)k].vals = NULL;
		}
		if (fc->npieces)
			fc->npieces[ch] = 0;
	}
}

/* Blocks made of pieces of consecutive cases: concatenate in order. */
static int assemble_pieces(struct fpctx *x, int64_t ch)
{
	float *buf = malloc(NP_BUFSIZE * sizeof *buf);
	float *sums = x->blocksum + (uint64_t)ch * x->nblocks;
	uint64_t cur = UINT64_MAX, fill = 0;
	if (!buf)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < x->ncases; i++) {
		struct fcase *fc = &x->cases[i];
		for (int k = 0; fc->nfg && k < fc->npieces[ch]; k++) {
			struct piece *q = &fc->pieces[(uint64_t)ch * 2 + (uint64_t)k];
			if (q->block != cur) {
				if (cur != UINT64_MAX)
					sums[cur] = nnp_np_pairwise_f32(buf, fill);
				cur = q->block;
				fill = 0;
			}
			memcpy(buf + fill, q->vals, (size_t)q->len * sizeof(float));
			fill += q->len;
		}
	}
	if (cur != UINT64_MAX)
		sums[cur] = nnp_np_pairwise_f32(buf, fill);
	free(buf);
	return NNP_OK;
}

/* One pass over every case: per channel, the numpy-ordered float32 sum. */
static int sum_pass(struct fpctx *x, int squares, float *result)
{
	int rc = NNP_OK;
	#pragma omp parallel for schedule(dynamic, 1)
	for (size_t i = 0; i < x->ncases; i++) {
		struct fcase *fc = &x->cases[i];
		float *fg = fc->fg;
		int r = NNP_OK;
		if (fc->rc || !fc->nfg)
			continue;
		if (!fc->cached)
			r = load_case(x, fc, &fg);
		if (!r)
			r = block_sums(x, fc, fg, squares);
		if (!fc->cached)
			free(fg);
		if (r) {
			fc->rc = r;
			case_error(fc);
		}
	}
	for (size_t i = 0; i < x->ncases; i++)
		if (x->cases[i].rc && !rc) {
			rc = x->cases[i].rc;
			nnp_err(rc, "%s", x->cases[i].err);
		}
	for (int64_t c = 0; c < x->nchan; c++) {
		float s = 0.0f;
		if (!rc)
			rc = assemble_pieces(x, c);
		free_pieces(x, c);
		for (uint64_t b = 0; !rc && b < x->nblocks; b++)
			s += x->blocksum[(uint64_t)c * x->nblocks + b];
		result[c] = s;
	}
	return rc;
}

/* ---- order statistics over the drawn values ---- */

struct ranks {
	struct vc *all;
	uint64_t n;
};

static int gather(struct fpctx *x, int64_t ch, struct ranks *r)
{
	uint64_t tot = 0, k = 0;
	for (size_t i = 0; i < x->ncases; i++)
		if (x->cases[i].nfg)
			tot += x->cases[i].nvcs[ch];
	r->all = malloc((size_t)(tot + 1) * sizeof *r->all);
	if (!r->all)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < x->ncases; i++) {
		struct fcase *fc = &x->cases[i];
		if (!fc->nfg)
			continue;
		memcpy(r->all + k, fc->vcs + (uint64_t)ch * fc->nfg, (size_t)fc->nvcs[ch] * sizeof *r->all);
		k += fc->nvcs[ch];
	}
	qsort(r->all, (size_t)k, sizeof *r->all, cmp_vc);
	r->n = k;
	return NNP_OK;
}

/* Value of the sample with 0-based rank k in sorted order. */
static float at_rank(const struct ranks *r, uint64_t k)
{
	uint64_t cum = 0;
	for (uint64_t i = 0; i < r->n; i++) {
		cum += r->all[i].n;
		if (k < cum)
			return r->all[i].v;
	}
	return r->n ? r->all[r->n - 1].v : NAN;
}

/* np.percentile(a, q) with the default linear method on float32 data. */
static double percentile(const struct ranks *r, uint64_t n, double q)
{
	double qq = q / 100.0, vi = ((double)n * qq + (1.0 - qq)) - 1.0, prev = floor(vi), gamma;
	uint64_t ip = prev < 0 ? 0 : (uint64_t)prev, in = ip + 1 < n ? ip + 1 : n - 1;
	float a = at_rank(r, ip), b = at_rank(r, in), diff = b - a;
	gamma = vi - prev;
	if (gamma >= 0.5)
		return (double)b - (double)diff * (1.0 - gamma);
	return (double)a + (double)diff * gamma;
}

static int channel_stats(struct fpctx *x, int64_t ch, float s, float s2, json_t *props)
{
	struct ranks r = { 0 };
	float mean, var, med;
	uint64_t n = x->total;
	json_t *o;
	int rc;
	mean = (float)((double)s / (double)n);
	var = (float)((double)s2 / (double)n);
	if ((rc = gather(x, ch, &r)))
		return rc;
	if (n % 2)
		med = at_rank(&r, n / 2);
	else
		med = (at_rank(&r, n / 2 - 1) + at_rank(&r, n / 2)) / 2.0f;
	o = json_object();
	json_object_set_new(o, "max", json_real(at_rank(&r, n - 1)));
	json_object_set_new(o, "mean", json_real(mean));
	json_object_set_new(o, "median", json_real(med));
	json_object_set_new(o, "min", json_real(at_rank(&r, 0)));
	json_object_set_new(o, "percentile_00_5", json_real(percentile(&r, n, 0.5)));
	json_object_set_new(o, "percentile_99_5", json_real(percentile(&r, n, 99.5)));
	json_object_set_new(o, "std", json_real(sqrtf(var)));
	{
		char key[24];
		snprintf(key, sizeof key, "%lld", (long long)ch);
		json_object_set_new(props, key, o);
	}
	free(r.all);
	return NNP_OK;
}

/* mean pass (also counts), then the squared-deviation pass. */
static int stats_all(struct fpctx *x, json_t *props)
{
	float *s = calloc((size_t)x->nchan * 2, sizeof *s);
	int rc = s && (x->mu = calloc((size_t)x->nchan, sizeof *x->mu)) ? NNP_OK
		 : nnp_err(NNP_ENOMEM, "out of memory");
	if (!rc)
		rc = sum_pass(x, 0, s);
	for (int64_t c = 0; !rc && c < x->nchan; c++)
		x->mu[c] = s[c] / (float)x->total;   /* numpy: float32 division */
	if (!rc)
		rc = sum_pass(x, 1, s + x->nchan);
	for (int64_t c = 0; !rc && c < x->nchan; c++)
		rc = channel_stats(x, c, s[c], s[x->nchan + c], props);
	free(s);
	return rc;
}

/* ---- driver ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median_of(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	if (!n)
		return NAN;
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static int run_pass1(struct fpctx *x, int progress)
{
	struct nnp_progress pr;
	int rc = NNP_OK;
	nnp_progress_begin(&pr, "fingerprint", (long long)x->ncases);
	if (!progress)
		pr.active = 0;
	#pragma omp parallel for schedule(dynamic, 1)
	for (size_t i = 0; i < x->ncases; i++) {
		pass1_case(x, &x->cases[i]);
		#pragma omp critical(nnp_fp_progress)
		nnp_progress_add(&pr, 1);
	}
	nnp_progress_end(&pr);
	for (size_t i = 0; i < x->ncases; i++)
		if (x->cases[i].rc) {
			rc = nnp_err(x->cases[i].rc, "%s", x->cases[i].err);
			break;
		}
	return rc;
}

static json_t *shapes_json(const struct fpctx *x, int spacing)
{
	json_t *a = json_array();
	for (size_t i = 0; i < x->ncases; i++) {
		const struct fcase *fc = &x->cases[i];
		json_t *e = json_array();
		for (int k = 0; k < 3; k++)
			json_array_append_new(e, spacing ? json_real(fc->spacing[k]) : json_integer(fc->shape[k]));
		json_array_append_new(a, e);
	}
	return a;
}

static int assign_offsets(struct fpctx *x)
{
	uint64_t fgcases = 0;
	for (size_t i = 0; i < x->ncases; i++) {
		struct fcase *fc = &x->cases[i];
		fc->start = fgcases * x->nsamples;
		if (fc->nfg)
			fgcases++;
		fc->pieces = calloc((size_t)x->nchan * 2, sizeof *fc->pieces);
		fc->npieces = calloc((size_t)x->nchan, sizeof *fc->npieces);
		if (!fc->pieces || !fc->npieces)
			return nnp_err(NNP_ENOMEM, "out of memory");
	}
	if (!fgcases)
		return nnp_err(NNP_EDATA, "'%s': no case has foreground (label > 0) voxels: nothing to fingerprint",
			       x->d->dir);
	x->total = fgcases * x->nsamples;
	x->nblocks = (x->total + NP_BUFSIZE - 1) / NP_BUFSIZE;
	x->blocksum = calloc((size_t)(x->nblocks * (uint64_t)x->nchan), sizeof(float));
	return x->blocksum ? NNP_OK : nnp_err(NNP_ENOMEM, "out of memory");
}

static void free_ctx(struct fpctx *x, struct nnp_case *cases, size_t n)
{
	for (size_t i = 0; x->cases && i < x->ncases; i++) {
		struct fcase *fc = &x->cases[i];
		free(fc->fg);
		free(fc->vcs);
		free(fc->nvcs);
		free(fc->pieces);
		free(fc->npieces);
	}
	free(x->cases);
	free(x->blocksum);
	free(x->mu);
	nnp_cases_free(cases, n);
}

int nnp_fingerprint(const struct nnp_dataset *d, const struct nnp_fp_opts *o, json_t **out)
{
	struct fpctx x = { 0 };
	struct nnp_case *cases = NULL;
	size_t n = 0;
	double *rel = NULL;
	json_t *fp = NULL, *props = NULL;
	int rc = nnp_dataset_cases(d, "Tr", &cases, &n);
	*out = NULL;
	if (rc)
		return rc;
	if (n == 0) {
		nnp_cases_free(cases, n);
		return nnp_err(NNP_EDATA, "'%s': no training cases", d->dir);
	}
	x.d = d;
	x.ncases = n;
	x.nchan = (int64_t)d->nchannels;
	x.nsamples = (uint64_t)floor((o && o->total_samples > 0 ? o->total_samples : 1e8) / (double)n);
	x.cache_left = o ? o->cache_bytes : ((uint64_t)2 << 30);
	x.cases = calloc(n, sizeof *x.cases);
	if (!x.cases)
		rc = nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; !rc && i < n; i++)
		x.cases[i].c = &cases[i];
	if (!rc)
		rc = run_pass1(&x, o ? o->progress : 0);
	if (!rc)
		rc = assign_offsets(&x);
	if (!rc && !(props = json_object()))
		rc = nnp_err(NNP_ENOMEM, "out of memory");
	if (!rc)
		rc = stats_all(&x, props);
	if (!rc && !(rel = malloc(n * sizeof *rel)))
		rc = nnp_err(NNP_ENOMEM, "out of memory");
	if (!rc) {
		for (size_t i = 0; i < n; i++)
			rel[i] = x.cases[i].relsize;
		fp = json_object();
		json_object_set_new(fp, "foreground_intensity_properties_per_channel", props);
		props = NULL;
		json_object_set_new(fp, "median_relative_size_after_cropping", json_real(median_of(rel, n)));
		json_object_set_new(fp, "shapes_after_crop", shapes_json(&x, 0));
		json_object_set_new(fp, "spacings", shapes_json(&x, 1));
	}
	json_decref(props);
	free(rel);
	free_ctx(&x, cases, n);
	*out = fp;
	return rc;
}
