/* predict.c — model + sliding window + streaming frame output. */
#include "predict.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

void nnp_predict_opts_init(struct nnp_predict_opts *o)
{
	memset(o, 0, sizeof *o);
	nnp_infer_opts_init(&o->sw);
	o->sw.max_batch = 1; /* on the CPU a larger batch only costs memory */
	o->tta = 1;
	o->out_dtype = NNP_F32;
}

int nnp_predict_sw_opts(const struct nnp_model *m, const struct nnp_predict_opts *o, struct nnp_infer_opts *sw)
{
	*sw = o->sw;
	sw->ndim_tile = m->patch_ndim;
	for (int d = 0; d < 3; d++)
		sw->tile[d] = d < m->patch_ndim ? m->patch[d] : 0;
	sw->n_mirror_axes = 0;
	if (o->tta && m->n_mirror_axes > 0) {
		sw->n_mirror_axes = m->n_mirror_axes;
		memcpy(sw->mirror_axes, m->mirror_axes, sizeof sw->mirror_axes);
	}
	return NNP_OK;
}

/* Accumulate features?  Never in fp16 mode; AUTO when F x folds < K. */
static int use_features(const struct nnp_model *m, const struct nnp_predict_opts *o, int *F)
{
	int K;
	const float *w, *b;
	if (nnp_engine_head(m->engines[0], F, &K, &w, &b))
		return 0;
	if (o->sw.fp16_compat || o->accumulate == NNP_ACC_LOGITS)
		return 0;
	return o->accumulate == NNP_ACC_FEATURES || (int64_t)*F * m->nfolds < K;
}

int nnp_predict_estimate(const struct nnp_model *m, const struct nnp_predict_opts *o, const int64_t shape[4],
			 uint64_t *bytes)
{
	struct nnp_infer_opts sw;
	int64_t drv;
	int rc;
	uint64_t net;

	int F, feat = use_features(m, o, &F);
	nnp_predict_sw_opts(m, o, &sw);
	if ((rc = nnp_infer_estimate(&sw, feat ? F * m->nfolds : m->arch.num_classes, feat ? 1 : m->nfolds, shape,
				     &drv)))
		return rc;
	net = nnp_engine_mem_estimate(&m->graph, sw.max_batch, m->patch, m->prec, feat);
	*bytes = (uint64_t)drv + net * (uint64_t)m->nfolds;
	if (feat) /* one slice of logits for the heads */
		*bytes += (uint64_t)m->arch.num_classes * (uint64_t)(shape[2] * shape[3]) * 4;
	return NNP_OK;
}

/* ---- the network callback ---- */

struct fold_ctx {
	struct nnp_engine *e;
	const int64_t *tile;
};

static int fold_forward(void *ctx, int n, const float *in, float *out)
{
	struct fold_ctx *f = ctx;
	return nnp_engine_forward(f->e, n, f->tile, in, out);
}

/* All folds' features side by side: out = n x (nfolds * F) x tile. */
struct feat_ctx {
	struct nnp_model *m;
	const int64_t *tile;
	int64_t tvox;
	int F;
	float *tmp;        /* max_batch x F x tile when batches > 1 */
};

static int feat_forward(void *ctx, int n, const float *in, float *out)
{
	struct feat_ctx *c = ctx;
	int nf = c->m->nfolds, rc;
	size_t blk = (size_t)c->F * (size_t)c->tvox;
	for (int f = 0; f < nf; f++) {
		if (n == 1) {
			if ((rc = nnp_engine_forward_features(c->m->engines[f], 1, c->tile, in, out + f * blk)))
				return rc;
			continue;
		}
		if ((rc = nnp_engine_forward_features(c->m->engines[f], n, c->tile, in, c->tmp)))
			return rc;
		for (int s = 0; s < n; s++)
			memcpy(out + ((size_t)s * nf + f) * blk, c->tmp + s * blk, blk * sizeof(float));
	}
	return NNP_OK;
}

/* ---- the output side: slabs -> frame chunks ---- */

struct sink {
	struct nnp_writer *w;
	struct nnp_frame *f;
	enum nnp_dtype dt;
	int64_t K, Z, plane;       /* plane = Y * X */
	int64_t cz0, cn;           /* current chunk: first slice, slices filled */
	void *buf;                 /* K x chunk_slices x plane */
	struct nnp_progress *progress;
};

static int sink_flush(struct sink *s)
{
	int64_t cs = s->f->chunk_slices;
	size_t es = nnp_dtype_size(s->dt);
	int rc;
	if (!s->cn)
		return NNP_OK;
	if (s->cn < cs) /* the last chunk: close the gaps between channels */
		for (int64_t c = 1; c < s->K; c++)
			memmove((char *)s->buf + (size_t)(c * s->cn * s->plane) * es,
				(char *)s->buf + (size_t)(c * cs * s->plane) * es, (size_t)(s->cn * s->plane) * es);
	rc = nnp_writer_chunk(s->w, s->buf, s->cn);
	s->cz0 += s->cn;
	s->cn = 0;
	return rc;
}

static void put_plane(const struct sink *s, const float *src, int64_t c, int64_t zi)
{
	int64_t cs = s->f->chunk_slices;
	if (s->dt == NNP_F32) {
		memcpy((float *)s->buf + (c * cs + zi) * s->plane, src, (size_t)s->plane * sizeof(float));
	} else {
		uint16_t *d = (uint16_t *)s->buf + (c * cs + zi) * s->plane;
		for (int64_t i = 0; i < s->plane; i++)
			d[i] = nnp_float_to_half(src[i]);
	}
}

static int sink_emit(void *ctx, int64_t z0, int64_t zs, const float *slab)
{
	struct sink *s = ctx;
	int rc;
	for (int64_t z = 0; z < zs; z++) {
		if (z0 + z != s->cz0 + s->cn)
			return nnp_err(NNP_EINTERNAL, "logits: slice %lld out of order", (long long)(z0 + z));
		for (int64_t c = 0; c < s->K; c++)
			put_plane(s, slab + (c * zs + z) * s->plane, c, s->cn);
		if (s->progress)
			nnp_progress_add(s->progress, 1);
		if (++s->cn == s->f->chunk_slices && (rc = sink_flush(s)))
			return rc;
	}
	return NNP_OK;
}

/* Features -> logits, one slice at a time: mean over folds of W_f f + b_f. */
struct head_sink {
	struct sink *s;
	int nf, F, K;
	float *w;          /* K x (nf * F), already divided by nf */
	float *b;          /* K: mean bias */
	float *slice;      /* K x plane */
};

static void head_slice(const struct head_sink *h, const float *feat, int64_t stride, int64_t plane)
{
	int C = h->nf * h->F;
#pragma omp parallel for schedule(static)
	for (int64_t p0 = 0; p0 < plane; p0 += 512) {
		int64_t np = plane - p0 < 512 ? plane - p0 : 512;
		for (int k = 0; k < h->K; k++) {
			float *o = h->slice + k * plane + p0;
			const float *wk = h->w + (size_t)k * C;
			for (int64_t p = 0; p < np; p++)
				o[p] = h->b[k];
			for (int c = 0; c < C; c++) {
				const float *x = feat + c * stride + p0;
				float wc = wk[c];
				for (int64_t p = 0; p < np; p++)
					o[p] += wc * x[p];
			}
		}
	}
}

static int head_emit(void *ctx, int64_t z0, int64_t zs, const float *slab)
{
	struct head_sink *h = ctx;
	int64_t plane = h->s->plane;
	int rc;
	for (int64_t z = 0; z < zs; z++) {
		head_slice(h, slab + z * plane, zs * plane, plane);
		if ((rc = sink_emit(h->s, z0 + z, 1, h->slice)))
			return rc;
	}
	return NNP_OK;
}

static int head_init(struct head_sink *h, struct nnp_model *m, struct sink *s)
{
	int C;
	memset(h, 0, sizeof *h);
	h->s = s;
	h->nf = m->nfolds;
	for (int f = 0; f < m->nfolds; f++) {
		const float *w, *b;
		int F, K, rc;
		if ((rc = nnp_engine_head(m->engines[f], &F, &K, &w, &b)))
			return rc;
		if (!f) {
			h->F = F;
			h->K = K;
			C = h->nf * F;
			h->w = calloc((size_t)K * (size_t)C, sizeof *h->w);
			h->b = calloc((size_t)K, sizeof *h->b);
			h->slice = malloc((size_t)(K * s->plane) * sizeof *h->slice);
			if (!h->w || !h->b || !h->slice)
				return nnp_err(NNP_ENOMEM, "logits: out of memory");
		}
		for (int k = 0; k < K; k++) {
			h->b[k] += b[k] / (float)h->nf;
			for (int c = 0; c < F; c++)
				h->w[(size_t)k * C + f * F + c] = w[(size_t)k * F + c] / (float)h->nf;
		}
	}
	return NNP_OK;
}

static void head_release(struct head_sink *h)
{
	free(h->w);
	free(h->b);
	free(h->slice);
}

static int check_input(const struct nnp_vol *img, int channels)
{
	uint64_t n = nnp_frame_nvox(&img->f) * (uint64_t)img->f.shape[0];
	const float *x = img->data;
	int bad = 0;
	if (img->f.dtype != NNP_F32)
		return nnp_err(NNP_EDATA, "case '%s': the network input must be a preprocessed float32 image (got %s)",
			       img->f.case_id ? img->f.case_id : "?", nnp_dtype_name(img->f.dtype));
	if (img->f.shape[0] != channels)
		return nnp_err(NNP_EDATA, "case '%s': %lld channels but the model takes %d",
			       img->f.case_id ? img->f.case_id : "?", (long long)img->f.shape[0], channels);
#pragma omp parallel for reduction(| : bad)
	for (uint64_t i = 0; i < n; i++)
		bad |= !isfinite(x[i]);
	if (bad)
		return nnp_err(NNP_EDATA, "case '%s': the image contains NaN or infinite values",
			       img->f.case_id ? img->f.case_id : "?");
	return NNP_OK;
}

static int begin_frame(const struct nnp_vol *img, int K, enum nnp_dtype dt, struct nnp_frame *f)
{
	int rc;
	if ((rc = nnp_frame_copy(f, &img->f)))
		return rc;
	snprintf(f->role, sizeof f->role, "logits");
	f->dtype = dt;
	f->shape[0] = K;
	f->chunk_slices = 0;
	free(f->scale);
	f->scale = NULL;
	return NNP_OK;
}

int nnp_predict_logits(struct nnp_model *m, const struct nnp_predict_opts *o, const struct nnp_vol *img,
		       struct nnp_writer *w)
{
	struct nnp_infer_opts sw;
	struct nnp_infer_model models[NNP_MODEL_MAX_FOLDS];
	struct fold_ctx ctx[NNP_MODEL_MAX_FOLDS];
	struct nnp_frame f;
	struct sink s = { 0 };
	struct head_sink hs = { 0 };
	struct feat_ctx fc = { 0 };
	uint64_t need;
	int rc, F = 0, feat = use_features(m, o, &F);

	if ((rc = check_input(img, m->arch.in_channels)))
		return rc;
	if ((rc = nnp_predict_estimate(m, o, img->f.shape, &need)))
		return rc;
	if (o->max_memory && need > o->max_memory)
		return nnp_err(NNP_ENOMEM,
			       "case '%s': inference needs about %.0f MiB but the limit is %.0f MiB (fewer folds "
			       "per run, or a smaller --batch, lower it)",
			       img->f.case_id ? img->f.case_id : "?", need / 1048576.0, o->max_memory / 1048576.0);
	nnp_predict_sw_opts(m, o, &sw);
	for (int k = 0; k < m->nfolds; k++) {
		ctx[k].e = m->engines[k];
		ctx[k].tile = m->patch;
		models[k] = (struct nnp_infer_model){ m->arch.in_channels, m->arch.num_classes, &ctx[k], fold_forward };
	}
	nnp_frame_init(&f);
	if ((rc = begin_frame(img, m->arch.num_classes, o->out_dtype, &f)) || (rc = nnp_writer_begin(w, &f)))
		goto out;
	s = (struct sink){ w, &f, o->out_dtype, m->arch.num_classes, f.shape[1], f.shape[2] * f.shape[3], 0, 0, NULL,
			   o->progress };
	if (o->progress)
		nnp_progress_begin(o->progress, img->f.case_id ? img->f.case_id : "logits", f.shape[1]);
	if (!(s.buf = malloc((size_t)(s.K * f.chunk_slices * s.plane) * nnp_dtype_size(s.dt)))) {
		rc = nnp_err(NNP_ENOMEM, "logits: out of memory");
		goto out;
	}
	if (feat) {
		fc = (struct feat_ctx){ m, m->patch, 1, F, NULL };
		for (int d = 0; d < m->patch_ndim; d++)
			fc.tvox *= m->patch[d];
		if (sw.max_batch > 1 && !(fc.tmp = malloc((size_t)sw.max_batch * (size_t)F * (size_t)fc.tvox * 4))) {
			rc = nnp_err(NNP_ENOMEM, "features: out of memory");
			goto out;
		}
		models[0] = (struct nnp_infer_model){ m->arch.in_channels, F * m->nfolds, &fc, feat_forward };
		if ((rc = head_init(&hs, m, &s)))
			goto out;
		rc = nnp_infer_run(&sw, models, 1, img->data, img->f.shape, head_emit, &hs);
	} else {
		rc = nnp_infer_run(&sw, models, m->nfolds, img->data, img->f.shape, sink_emit, &s);
	}
	if (!rc)
		rc = sink_flush(&s);
	if (o->progress)
		nnp_progress_end(o->progress);
	if (rc && img->f.case_id)
		nnp_err_ctx(rc, "case '%s'", img->f.case_id);
out:
	head_release(&hs);
	free(fc.tmp);
	free(s.buf);
	nnp_frame_release(&f);
	return rc;
}
