/* classloc.c — nnU-Net's class_locations (see classloc.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "classloc.h"
#include "err.h"
#include "rng.h"

#define BLK 4096
#define LUT_SPAN_MAX ((uint64_t)1 << 22)   /* label range held in a direct table */
#define SLAB_MIN_VOX 65536
#define SLABS_MAX 256
#define SLAB_CELLS_MAX ((uint64_t)1 << 22) /* slabs x labels counters */

void nnp_classloc_opts_default(struct nnp_classloc_opts *o)
{
	o->seed = NNP_CLASSLOC_SEED;
	o->min_num_samples = NNP_CLASSLOC_MIN_SAMPLES;
	o->min_percent_coverage = NNP_CLASSLOC_MIN_COVERAGE;
}

uint64_t nnp_classloc_num_samples(uint64_t total, const struct nnp_classloc_opts *o)
{
	uint64_t k = total < o->min_num_samples ? total : o->min_num_samples;
	double c = ceil((double)total * o->min_percent_coverage);   /* int(np.ceil(total * 0.01)) */
	if (c > (double)k)
		k = c >= (double)total ? total : (uint64_t)c;
	return k;
}

/* ------------------------------------------------------------------ */
/* label lookup: voxel value -> index into the sorted requested labels */

struct lut {
	const int64_t *lab;     /* sorted unique requested labels */
	int32_t nlab;
	int64_t lo;
	uint64_t span;
	int32_t *idx;           /* span entries, or NULL: binary search */
};

static int32_t find_label(const struct lut *t, int64_t v)
{
	if (t->idx) {
		uint64_t d = (uint64_t)v - (uint64_t)t->lo;
		return v >= t->lo && d < t->span ? t->idx[d] : -1;
	}
	int32_t a = 0, b = t->nlab;
	while (a < b) {
		int32_t m = a + (b - a) / 2;
		if (t->lab[m] < v)
			a = m + 1;
		else
			b = m;
	}
	return a < t->nlab && t->lab[a] == v ? a : -1;
}

static int32_t find_double(const struct lut *t, double v)
{
	int64_t iv;
	if (!(v >= -9.2e18 && v <= 9.2e18))   /* also NaN */
		return -1;
	iv = (int64_t)v;
	return (double)iv == v ? find_label(t, iv) : -1;
}

/* out[i] = label index of voxel i of m voxels at src, or -1. */
static void lookup_block(const struct lut *t, enum nnp_dtype dt, const void *src, size_t m, int32_t *out)
{
#define INT_LOOP(T)                                                     \
	do {                                                            \
		const T *s = src;                                       \
		for (size_t i = 0; i < m; i++)                          \
			out[i] = find_label(t, (int64_t)s[i]);          \
	} while (0)
	switch (dt) {
	case NNP_U8: INT_LOOP(uint8_t); break;
	case NNP_I8: INT_LOOP(int8_t); break;
	case NNP_I16: INT_LOOP(int16_t); break;
	case NNP_U16: INT_LOOP(uint16_t); break;
	case NNP_I32: INT_LOOP(int32_t); break;
	case NNP_U32: INT_LOOP(uint32_t); break;
	case NNP_I64: INT_LOOP(int64_t); break;
	case NNP_U64: {
		const uint64_t *s = src;
		for (size_t i = 0; i < m; i++)
			out[i] = s[i] > (uint64_t)INT64_MAX ? -1 : find_label(t, (int64_t)s[i]);
		break;
	}
	case NNP_F32: {
		const float *s = src;
		for (size_t i = 0; i < m; i++)
			out[i] = find_double(t, s[i]);
		break;
	}
	case NNP_F64: {
		const double *s = src;
		for (size_t i = 0; i < m; i++)
			out[i] = find_double(t, s[i]);
		break;
	}
	case NNP_F16: {
		const uint16_t *s = src;
		for (size_t i = 0; i < m; i++)
			out[i] = find_double(t, nnp_half_to_float(s[i]));
		break;
	}
	default:
		for (size_t i = 0; i < m; i++)
			out[i] = -1;
	}
#undef INT_LOOP
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ */
/* sampling                                                            */

struct pick {                /* one sampled voxel: rank-th voxel of label li */
	uint64_t rank;
	uint64_t slot;       /* location index within its class */
	uint32_t li, cls;
};

static int cmp_pick(const void *a, const void *b)
{
	const struct pick *x = a, *y = b;
	if (x->li != y->li)
		return x->li < y->li ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return (x->cls > y->cls) - (x->cls < y->cls);
}

/* First k entries of permutation(total) (legacy shuffle, i = total-1 .. 1,
 * j = bounded(i)), into off[0..k). */
static int first_of_permutation(struct nnp_rs *rs, uint64_t total, uint64_t k, uint64_t *off)
{
	if (total <= UINT32_MAX) {
		uint32_t *p = malloc((size_t)total * sizeof *p);
		if (!p)
			return nnp_err(NNP_ENOMEM, "cannot allocate %.1f MiB for the permutation of %llu voxels",
				       (double)total * 4 / 1048576.0, (unsigned long long)total);
		for (uint64_t i = 0; i < total; i++)
			p[i] = (uint32_t)i;
		for (uint64_t i = total - 1; i > 0; i--) {
			uint64_t j = nnp_rs_bounded(rs, i);
			uint32_t t = p[i];
			p[i] = p[j];
			p[j] = t;
		}
		for (uint64_t i = 0; i < k; i++)
			off[i] = p[i];
		free(p);
		return NNP_OK;
	}
	if (total > SIZE_MAX / sizeof(uint64_t))
		return nnp_err(NNP_ENOMEM, "%llu voxels in one class: too many to permute",
			       (unsigned long long)total);
	uint64_t *p = malloc((size_t)total * sizeof *p);
	if (!p)
		return nnp_err(NNP_ENOMEM, "cannot allocate %.1f MiB for the permutation of %llu voxels",
			       (double)total * 8 / 1048576.0, (unsigned long long)total);
	for (uint64_t i = 0; i < total; i++)
		p[i] = i;
	for (uint64_t i = total - 1; i > 0; i--) {
		uint64_t j = nnp_rs_bounded(rs, i);
		uint64_t t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	memcpy(off, p, (size_t)k * sizeof *off);
	free(p);
	return NNP_OK;
}

struct ctx {
	const struct nnp_vol *seg;
	enum nnp_dtype dt;
	size_t es;
	uint64_t nvox;
	int64_t Y, X;
	struct lut t;
	uint64_t nslab, slab_len;
	uint64_t *cnt;           /* nslab x nlab: voxels of label li in slab s
	                            (turned into the ranks before slab s) */
	uint64_t *tot;           /* per label */
	struct pick *pk;
	uint64_t npk;
	uint64_t *pstart;        /* per label: first pick, nlab + 1 entries */
};

static void count_slab(struct ctx *x, uint64_t s, int32_t *li)
{
	uint64_t lo = s * x->slab_len, hi = lo + x->slab_len < x->nvox ? lo + x->slab_len : x->nvox;
	uint64_t *c = x->cnt + s * (uint64_t)x->t.nlab;
	for (uint64_t off = lo; off < hi; off += BLK) {
		size_t m = hi - off < BLK ? (size_t)(hi - off) : BLK;
		lookup_block(&x->t, x->dt, (const char *)x->seg->data + off * x->es, m, li);
		for (size_t i = 0; i < m; i++)
			if (li[i] >= 0)
				c[li[i]]++;
	}
}

static uint64_t lower_pick(const struct ctx *x, uint32_t li, uint64_t rank)
{
	uint64_t a = x->pstart[li], b = x->pstart[li + 1];
	while (a < b) {
		uint64_t m = a + (b - a) / 2;
		if (x->pk[m].rank < rank)
			a = m + 1;
		else
			b = m;
	}
	return a;
}

/* Pass 2 over slab s: write the coordinates of the picked voxels.  rank
 * and ptr are per-label scratch arrays. */
static void collect_slab(struct ctx *x, uint64_t s, int32_t *li, uint64_t *rank, uint64_t *ptr,
			 struct nnp_classloc *out)
{
	uint64_t lo = s * x->slab_len, hi = lo + x->slab_len < x->nvox ? lo + x->slab_len : x->nvox;
	const uint64_t *base = x->cnt + s * (uint64_t)x->t.nlab;
	int any = 0;
	for (int32_t l = 0; l < x->t.nlab; l++) {
		uint64_t end = s + 1 < x->nslab ? base[x->t.nlab + l] : x->tot[l];
		rank[l] = base[l];
		ptr[l] = lower_pick(x, (uint32_t)l, base[l]);
		any |= ptr[l] < x->pstart[l + 1] && x->pk[ptr[l]].rank < end;
	}
	if (!any)
		return;
	for (uint64_t off = lo; off < hi; off += BLK) {
		size_t m = hi - off < BLK ? (size_t)(hi - off) : BLK;
		lookup_block(&x->t, x->dt, (const char *)x->seg->data + off * x->es, m, li);
		for (size_t i = 0; i < m; i++) {
			int32_t l = li[i];
			uint64_t r;
			if (l < 0)
				continue;
			r = rank[l]++;
			while (ptr[l] < x->pstart[l + 1] && x->pk[ptr[l]].rank == r) {
				const struct pick *p = &x->pk[ptr[l]++];
				uint64_t v = off + i;
				int32_t *d = out->cls[p->cls].zyx + 3 * p->slot;
				d[0] = (int32_t)(v / (uint64_t)(x->X * x->Y));
				d[1] = (int32_t)(v / (uint64_t)x->X % (uint64_t)x->Y);
				d[2] = (int32_t)(v % (uint64_t)x->X);
			}
		}
	}
}

static int build_lut(struct ctx *x, const struct nnp_classloc_req *req, size_t nreq, int64_t **labs)
{
	size_t n = 0, u = 0;
	int64_t *l;
	for (size_t c = 0; c < nreq; c++)
		n += req[c].nlabels;
	if (!(l = malloc((n ? n : 1) * sizeof *l)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t c = 0; c < nreq; c++)
		for (size_t j = 0; j < req[c].nlabels; j++)
			l[u++] = req[c].labels[j];
	qsort(l, n, sizeof *l, cmp_i64);
	u = 0;
	for (size_t i = 0; i < n; i++)
		if (!u || l[i] != l[u - 1])
			l[u++] = l[i];
	if (u > INT32_MAX) {
		free(l);
		return nnp_err(NNP_EUSAGE, "too many distinct labels requested");
	}
	*labs = l;
	x->t.lab = l;
	x->t.nlab = (int32_t)u;
	x->t.idx = NULL;
	x->t.lo = u ? l[0] : 0;
	x->t.span = 0;
	if (u && (uint64_t)l[u - 1] - (uint64_t)l[0] < LUT_SPAN_MAX) {
		x->t.span = (uint64_t)l[u - 1] - (uint64_t)l[0] + 1;
		if (!(x->t.idx = malloc((size_t)x->t.span * sizeof *x->t.idx)))
			return nnp_err(NNP_ENOMEM, "out of memory");
		for (uint64_t i = 0; i < x->t.span; i++)
			x->t.idx[i] = -1;
		for (size_t i = 0; i < u; i++)
			x->t.idx[(uint64_t)l[i] - (uint64_t)l[0]] = (int32_t)i;
	}
	return NNP_OK;
}

void nnp_classloc_release(struct nnp_classloc *cl)
{
	if (!cl)
		return;
	for (size_t c = 0; c < cl->n; c++) {
		free(cl->cls[c].labels);
		free(cl->cls[c].zyx);
	}
	free(cl->cls);
	cl->cls = NULL;
	cl->n = 0;
}

/* The requested classes' sizes, sample counts and picks (one RandomState
 * for all classes, in request order). */
static int draw(struct ctx *x, const struct nnp_classloc_req *req, size_t nreq,
		const struct nnp_classloc_opts *o, struct nnp_classloc *out)
{
	struct nnp_rs rs;
	uint64_t *off = NULL, *cum = NULL, *grown;
	uint32_t *mli = NULL;
	size_t maxm = 1;
	int rc = NNP_OK;

	for (size_t c = 0; c < nreq; c++)
		maxm = req[c].nlabels > maxm ? req[c].nlabels : maxm;
	cum = malloc(maxm * sizeof *cum);
	mli = malloc(maxm * sizeof *mli);
	if (!cum || !mli) {
		rc = nnp_err(NNP_ENOMEM, "out of memory");
		goto done;
	}
	nnp_rs_seed(&rs, o->seed);
	for (size_t c = 0; c < nreq; c++) {
		struct nnp_classloc_class *k = &out->cls[c];
		uint64_t total = 0, npk;
		for (size_t j = 0; j < req[c].nlabels; j++) {
			mli[j] = (uint32_t)find_label(&x->t, req[c].labels[j]);
			total += x->tot[mli[j]];
			cum[j] = total;
		}
		k->nvox = total;
		if (!total)
			continue;
		k->n = nnp_classloc_num_samples(total, o);
		if (k->n > (uint64_t)SIZE_MAX / (3 * sizeof(int32_t)) ||
		    !(k->zyx = malloc((size_t)k->n * 3 * sizeof(int32_t))) ||
		    !(grown = realloc(off, (size_t)k->n * sizeof *off))) {
			rc = nnp_err(NNP_ENOMEM, "cannot allocate the %llu locations of a class",
				     (unsigned long long)k->n);
			goto done;
		}
		off = grown;
		if ((rc = first_of_permutation(&rs, total, k->n, off)))
			goto done;
		npk = x->npk + k->n;
		{
			struct pick *p = realloc(x->pk, (size_t)npk * sizeof *p);
			if (!p) {
				rc = nnp_err(NNP_ENOMEM, "out of memory for %llu sampled locations",
					     (unsigned long long)npk);
				goto done;
			}
			x->pk = p;
		}
		for (uint64_t s = 0; s < k->n; s++) {
			/* searchsorted(cum, offset, side="right") */
			size_t a = 0, b = req[c].nlabels;
			struct pick *p = &x->pk[x->npk + s];
			while (a < b) {
				size_t m = a + (b - a) / 2;
				if (cum[m] <= off[s])
					a = m + 1;
				else
					b = m;
			}
			p->li = mli[a];
			p->rank = off[s] - (a ? cum[a - 1] : 0);
			p->cls = (uint32_t)c;
			p->slot = s;
		}
		x->npk = npk;
	}
done:
	free(off);
	free(cum);
	free(mli);
	return rc;
}

int nnp_classloc_sample(const struct nnp_vol *seg, const struct nnp_classloc_req *req, size_t nreq,
			const struct nnp_classloc_opts *o, struct nnp_classloc *out)
{
	struct nnp_classloc_opts def;
	struct ctx x;
	int64_t *labs = NULL;
	int rc = NNP_OK;
	const struct nnp_frame *f = &seg->f;

	out->n = 0;
	out->cls = NULL;
	memset(&x, 0, sizeof x);
	if (!o) {
		nnp_classloc_opts_default(&def);
		o = &def;
	}
	if (f->shape[0] != 1 || !nnp_dtype_size(f->dtype))
		return nnp_err(NNP_EDATA, "case '%s': the segmentation must have one channel of a known dtype",
			       f->case_id ? f->case_id : "(no case id)");
	if (f->shape[1] > INT32_MAX || f->shape[2] > INT32_MAX || f->shape[3] > INT32_MAX)
		return nnp_err(NNP_EDATA, "segmentation axis too long");
	if (nreq > UINT32_MAX)
		return nnp_err(NNP_EUSAGE, "too many classes requested");
	if (nreq && !(out->cls = calloc(nreq, sizeof *out->cls)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	out->n = nreq;
	for (size_t c = 0; c < nreq; c++) {
		struct nnp_classloc_class *k = &out->cls[c];
		k->is_region = req[c].is_region;
		k->nlabels = req[c].nlabels;
		if (!(k->labels = malloc((k->nlabels ? k->nlabels : 1) * sizeof *k->labels))) {
			rc = nnp_err(NNP_ENOMEM, "out of memory");
			goto done;
		}
		if (k->nlabels)
			memcpy(k->labels, req[c].labels, k->nlabels * sizeof *k->labels);
	}
	x.seg = seg;
	x.dt = f->dtype;
	x.es = nnp_dtype_size(f->dtype);
	x.nvox = nnp_frame_nvox(f);
	x.Y = f->shape[2];
	x.X = f->shape[3];
	if ((rc = build_lut(&x, req, nreq, &labs)))
		goto done;
	if (!x.t.nlab || !x.nvox)
		goto done;

	/* slabs: contiguous voxel ranges, counted (and later collected) in parallel */
	x.nslab = x.nvox / SLAB_MIN_VOX;
	if (x.nslab > SLABS_MAX)
		x.nslab = SLABS_MAX;
	if (x.nslab * (uint64_t)x.t.nlab > SLAB_CELLS_MAX)
		x.nslab = SLAB_CELLS_MAX / (uint64_t)x.t.nlab;
	if (x.nslab < 1)
		x.nslab = 1;
	x.slab_len = (x.nvox + x.nslab - 1) / x.nslab;
	x.nslab = (x.nvox + x.slab_len - 1) / x.slab_len;
	x.cnt = calloc((size_t)(x.nslab * (uint64_t)x.t.nlab), sizeof *x.cnt);
	x.tot = calloc((size_t)x.t.nlab, sizeof *x.tot);
	x.pstart = calloc((size_t)x.t.nlab + 1, sizeof *x.pstart);
	if (!x.cnt || !x.tot || !x.pstart) {
		rc = nnp_err(NNP_ENOMEM, "out of memory");
		goto done;
	}
	#pragma omp parallel
	{
		int32_t li[BLK];
		#pragma omp for schedule(dynamic, 1)
		for (uint64_t s = 0; s < x.nslab; s++)
			count_slab(&x, s, li);
	}
	for (int32_t l = 0; l < x.t.nlab; l++) {
		uint64_t run = 0;
		for (uint64_t s = 0; s < x.nslab; s++) {
			uint64_t *c = &x.cnt[s * (uint64_t)x.t.nlab + (uint64_t)l];
			uint64_t v = *c;
			*c = run;          /* ranks of label l before slab s */
			run += v;
		}
		x.tot[l] = run;
	}

	if ((rc = draw(&x, req, nreq, o, out)) || !x.npk)
		goto done;
	qsort(x.pk, (size_t)x.npk, sizeof *x.pk, cmp_pick);
	for (uint64_t i = 0; i < x.npk; i++)
		x.pstart[x.pk[i].li + 1]++;
	for (int32_t l = 0; l < x.t.nlab; l++)
		x.pstart[l + 1] += x.pstart[l];

	{
		int fail = 0;
		#pragma omp parallel
		{
			int32_t li[BLK];
			uint64_t *rank = malloc((size_t)x.t.nlab * 2 * sizeof *rank);
			if (!rank) {
				#pragma omp atomic write
				fail = 1;
			}
			#pragma omp for schedule(dynamic, 1)
			for (uint64_t s = 0; s < x.nslab; s++)
				if (rank)
					collect_slab(&x, s, li, rank, rank + x.t.nlab, out);
			free(rank);
		}
		if (fail)
			rc = nnp_err(NNP_ENOMEM, "out of memory");
	}
done:
	free(labs);
	free(x.t.idx);
	free(x.cnt);
	free(x.tot);
	free(x.pk);
	free(x.pstart);
	if (rc)
		nnp_classloc_release(out);
	return rc;
}

/* ------------------------------------------------------------------ */
/* requests from dataset.json labels (LabelManager)                    */

static int label_int(const json_t *v, const char *name, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return NNP_OK;
	}
	if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
	    fabs(json_real_value(v)) < 9e18) {
		*out = (int64_t)json_real_value(v);
		return NNP_OK;
	}
	return nnp_err(NNP_EDATA, "dataset.json: labels.%s: label values must be integers or lists of integers",
		       name);
}

void nnp_classloc_reqs_release(struct nnp_classloc_reqs *r)
{
	if (!r)
		return;
	free(r->req);
	free(r->store);
	r->req = NULL;
	r->store = NULL;
	r->n = 0;
}

/* len(np.unique(v)) == 1 and the value is z_or_nonzero (0: == 0, 1: != 0) */
static int single_unique(const int64_t *v, size_t n, int nonzero)
{
	if (!n)
		return 0;
	for (size_t i = 1; i < n; i++)
		if (v[i] != v[0])
			return 0;
	return nonzero ? v[0] != 0 : v[0] == 0;
}

int nnp_classloc_reqs_from_labels(const json_t *labels, struct nnp_classloc_reqs *out)
{
	const char *k;
	const json_t *v, *bg, *ign;
	size_t nval = 0, nent = 0, pos = 0, nall = 0;
	int has_regions = 0, rc = NNP_OK;
	int64_t *vals = NULL, *all = NULL, ignore = 0;
	size_t *start = NULL, *len = NULL;
	int *isarr = NULL;

	out->req = NULL;
	out->store = NULL;
	out->n = 0;
	if (!json_is_object(labels))
		return nnp_err(NNP_EDATA, "dataset.json: labels: missing or not an object");
	if (!(bg = json_object_get(labels, "background")))
		return nnp_err(NNP_EDATA, "dataset.json: labels: background label not declared (it must be 0)");
	if (!json_is_number(bg) || json_number_value(bg) != 0)
		return nnp_err(NNP_EDATA, "dataset.json: labels.background: must be 0");
	if ((ign = json_object_get(labels, "ignore")) && !json_is_integer(ign))
		return nnp_err(NNP_EDATA, "dataset.json: labels.ignore: the ignore label must be an integer");
	if (ign)
		ignore = (int64_t)json_integer_value(ign);

	json_object_foreach((json_t *)labels, k, v) {
		nent++;
		nval += json_is_array(v) ? json_array_size(v) : 1;
		if (json_is_array(v) && json_array_size(v) > 1)
			has_regions = 1;
	}
	vals = malloc((nval ? nval : 1) * sizeof *vals);
	all = malloc((nval + 1) * sizeof *all);
	start = malloc(nent * sizeof *start);
	len = malloc(nent * sizeof *len);
	isarr = malloc(nent * sizeof *isarr);
	if (!vals || !all || !start || !len || !isarr) {
		rc = nnp_err(NNP_ENOMEM, "out of memory");
		goto done;
	}
	{
		size_t e = 0;
		json_object_foreach((json_t *)labels, k, v) {
			start[e] = pos;
			isarr[e] = json_is_array(v);
			if (isarr[e]) {
				size_t i;
				const json_t *w;
				json_array_foreach(v, i, w)
					if ((rc = label_int(w, k, &vals[pos++])))
						goto done;
			} else if ((rc = label_int(v, k, &vals[pos++]))) {
				goto done;
			}
			len[e] = pos - start[e];
			if (strcmp(k, "ignore"))
				for (size_t i = start[e]; i < pos; i++)
					all[nall++] = vals[i];
			e++;
		}
	}
	qsort(all, nall, sizeof *all, cmp_i64);
	{
		size_t u = 0;
		for (size_t i = 0; i < nall; i++)
			if (!u || all[i] != all[u - 1])
				all[u++] = all[i];
		nall = u;
	}
	/* storage: every value once, plus (-1, *all_labels) */
	if (!(out->store = malloc((pos + nall + 1) * sizeof *out->store)) ||
	    !(out->req = calloc(nent + nall + 1, sizeof *out->req))) {
		rc = nnp_err(NNP_ENOMEM, "out of memory");
		goto done;
	}
	{
		int64_t *st = out->store;
		size_t e = 0;
		if (has_regions) {
			json_object_foreach((json_t *)labels, k, v) {
				const int64_t *r = vals + start[e];
				size_t n = len[e];
				int arr = isarr[e];
				e++;
				if (!strcmp(k, "ignore"))
					continue;
				if ((!arr && r[0] == 0) || (arr && single_unique(r, n, 0)))
					continue;          /* _get_regions: background */
				if (arr && single_unique(r, n, 1))
					continue;          /* filter_background drops (3,), (3, 3) */
				memcpy(st, r, n * sizeof *st);
				out->req[out->n].labels = st;
				out->req[out->n].nlabels = n;
				out->req[out->n].is_region = arr;
				out->n++;
				st += n;
			}
		} else {
			for (size_t i = 0; i < nall; i++) {
				if (all[i] == 0)
					continue;
				*st = all[i];
				out->req[out->n].labels = st++;
				out->req[out->n].nlabels = 1;
				out->n++;
			}
		}
		if (ign) {
			if (nall && ignore != all[nall - 1] + 1) {
				rc = nnp_err(NNP_EDATA, "dataset.json: labels.ignore: the ignore label (%lld) must be the "
					     "highest label + 1 (%lld)", (long long)ignore,
					     (long long)(all[nall - 1] + 1));
				goto done;
			}
			st[0] = -1;
			memcpy(st + 1, all, nall * sizeof *st);
			out->req[out->n].labels = st;
			out->req[out->n].nlabels = nall + 1;
			out->req[out->n].is_region = 1;
			out->n++;
		}
	}
done:
	free(vals);
	free(all);
	free(start);
	free(len);
	free(isarr);
	if (rc)
		nnp_classloc_reqs_release(out);
	return rc;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */

void nnp_classloc_key(const struct nnp_classloc_class *c, char *buf, size_t n)
{
	size_t p = 0;
	if (!n)
		return;
	buf[0] = 0;
	if (!c->is_region) {
		snprintf(buf, n, "%lld", c->nlabels ? (long long)c->labels[0] : 0LL);
		return;
	}
#define ADD(...)                                                                \
	do {                                                                    \
		if (p < n) {                                                    \
			int w = snprintf(buf + p, n - p, __VA_ARGS__);          \
			p += w > 0 ? (size_t)w : 0;                             \
		}                                                               \
	} while (0)
	ADD("(");
	for (size_t i = 0; i < c->nlabels; i++)
		ADD("%s%lld", i ? ", " : "", (long long)c->labels[i]);
	ADD(c->nlabels == 1 ? ",)" : ")");
#undef ADD
}

int nnp_classloc_to_json(const struct nnp_classloc *cl, json_t **out)
{
	json_t *o = json_object();
	char *key = NULL;
	size_t keycap = 0;
	*out = NULL;
	if (!o)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t c = 0; c < cl->n; c++) {
		const struct nnp_classloc_class *k = &cl->cls[c];
		size_t need = 24 * (k->nlabels + 1) + 8;
		json_t *a = json_array();
		if (need > keycap) {
			char *nk = realloc(key, need);
			if (!nk) {
				json_decref(a);
				goto oom;
			}
			key = nk;
			keycap = need;
		}
		nnp_classloc_key(k, key, keycap);
		if (!a)
			goto oom;
		for (uint64_t i = 0; i < k->n; i++) {
			json_t *e = json_pack("[iiii]", 0, (int)k->zyx[3 * i], (int)k->zyx[3 * i + 1],
					      (int)k->zyx[3 * i + 2]);
			if (!e || json_array_append_new(a, e)) {
				json_decref(a);
				goto oom;
			}
		}
		if (json_object_set_new(o, key, a))
			goto oom;
	}
	free(key);
	*out = o;
	return NNP_OK;
oom:
	free(key);
	json_decref(o);
	return nnp_err(NNP_ENOMEM, "out of memory");
}

/* ---- the class_locations frame (schemas/frame.md) ---- */

static int locations_frame(const struct nnp_classloc *cl, const struct nnp_frame *lab, struct nnp_vol *out)
{
	uint64_t k = 0, row = 0;
	json_t *keys = json_array(), *counts = json_array(), *p;
	int rc;
	for (size_t i = 0; i < cl->n; i++)
		k += cl->cls[i].n;
	nnp_vol_init(out);
	snprintf(out->f.role, sizeof out->f.role, "class_locations");
	if ((rc = nnp_frame_set_case(&out->f, lab->case_id)))
		goto fail;
	out->f.dtype = NNP_I32;
	out->f.shape[0] = 1;
	out->f.shape[1] = 1;
	out->f.shape[2] = k ? (int64_t)k : 1;   /* an empty table is one zero row, counts say 0 */
	out->f.shape[3] = 4;
	if ((rc = nnp_vol_alloc(out)))
		goto fail;
	for (size_t i = 0; i < cl->n; i++) {
		char key[256];
		nnp_classloc_key(&cl->cls[i], key, sizeof key);
		json_array_append_new(keys, json_string(key));
		json_array_append_new(counts, json_integer((json_int_t)cl->cls[i].n));
		for (uint64_t j = 0; j < cl->cls[i].n; j++, row++) {
			int32_t *r = (int32_t *)out->data + row * 4;
			r[0] = 0;
			memcpy(r + 1, cl->cls[i].zyx + j * 3, 3 * sizeof *r);
		}
	}
	p = nnp_frame_props(&out->f);
	json_object_set_new(p, "classes", keys);
	json_object_set_new(p, "counts", counts);
	return NNP_OK;
fail:
	json_decref(keys);
	json_decref(counts);
	nnp_vol_release(out);
	return rc;
}

/* Every value of the label map must be declared in labels (or be the -1
 * that crop puts outside the nonzero mask). */
static int check_values(const struct nnp_vol *lab, const json_t *labels)
{
	enum { VMAX = 1 << 16 };
	uint8_t *ok = calloc(VMAX + 1, 1);
	uint64_t n = nnp_frame_nvox(&lab->f) * (uint64_t)lab->f.shape[0];
	size_t es = nnp_dtype_size(lab->f.dtype);
	const char *k;
	json_t *v, *e;
	size_t i;
	int rc = NNP_OK;
	if (!ok)
		return nnp_err(NNP_ENOMEM, "out of memory");
	ok[0] = 1;   /* -1 */
	json_object_foreach((json_t *)labels, k, v) {
		if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < VMAX)
			ok[json_integer_value(v) + 1] = 1;
		json_array_foreach(v, i, e)
			if (json_is_integer(e) && json_integer_value(e) >= 0 && json_integer_value(e) < VMAX)
				ok[json_integer_value(e) + 1] = 1;
	}
	for (uint64_t j = 0; j < n && !rc; j++) {
		double x;
		nnp_to_f64(lab->f.dtype, (const char *)lab->data + j * es, &x, 1);
		if (x != (double)(int64_t)x || x < -1 || x >= VMAX || !ok[(int64_t)x + 1])
			rc = nnp_err(NNP_EDATA, "case '%s': label value %g is not declared in dataset.json's labels "
				     "(check the label map with 'nnp verify')", lab->f.case_id ? lab->f.case_id : "", x);
	}
	free(ok);
	return rc;
}

int nnp_classloc_case(const struct nnp_vol *lab, const json_t *labels, struct nnp_vol *out)
{
	struct nnp_classloc_reqs reqs = { 0 };
	struct nnp_classloc cl = { 0 };
	int rc;
	nnp_vol_init(out);
	if (!labels && lab->f.props)
		labels = json_object_get(lab->f.props, "labels");
	if (!labels)
		return nnp_err(NNP_EUSAGE, "case '%s': no labels to sample: read with 'nnp read --dataset' "
			       "or give --dataset-json", lab->f.case_id ? lab->f.case_id : "");
	if ((rc = check_values(lab, labels)) || (rc = nnp_classloc_reqs_from_labels(labels, &reqs)))
		return rc;
	rc = nnp_classloc_sample(lab, reqs.req, reqs.n, NULL, &cl);
	if (!rc)
		rc = locations_frame(&cl, &lab->f, out);
	nnp_classloc_release(&cl);
	nnp_classloc_reqs_release(&reqs);
	return rc;
}

