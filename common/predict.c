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

int nnp_predict_estimate(const struct nnp_model *m, const struct nnp_predict_opts *o, const int64_t shape[4],
			 uint64_t *bytes)
{
	struct nnp_infer_opts sw;
	int64_t drv;
	int rc;
	uint64_t net;

	nnp_predict_sw_opts(m, o, &sw);
	if ((rc = nnp_infer_estimate(&sw, m->arch.num_classes, m->nfolds, shape, &drv)))
		return rc;
	net = nnp_engine_mem_estimate(&m->graph, sw.max_batch, m->patch, m->prec);
	*bytes = (uint64_t)drv + net * (uint64_t)m->nfolds;
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

/* ---- the output side: slabs -> frame chunks ---- */

struct sink {
	struct nnp_writer *w;
	struct nnp_frame *f;
	enum nnp_dtype dt;
	int64_t K, Z, plane;       /* plane = Y * X */
	int64_t cz0, cn;           /* current chunk: first slice, slices filled */
	void *buf;                 /* K x chunk_slices x plane */
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
		if (++s->cn == s->f->chunk_slices && (rc = sink_flush(s)))
			return rc;
	}
	return NNP_OK;
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
	uint64_t need;
	int rc;

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
	s = (struct sink){ w, &f, o->out_dtype, m->arch.num_classes, f.shape[1], f.shape[2] * f.shape[3], 0, 0, NULL };
	if (!(s.buf = malloc((size_t)(s.K * f.chunk_slices * s.plane) * nnp_dtype_size(s.dt)))) {
		rc = nnp_err(NNP_ENOMEM, "logits: out of memory");
		goto out;
	}
	rc = nnp_infer_run(&sw, models, m->nfolds, img->data, img->f.shape, sink_emit, &s);
	if (!rc)
		rc = sink_flush(&s);
	if (rc && img->f.case_id)
		nnp_err_ctx(rc, "case '%s'", img->f.case_id);
out:
	free(s.buf);
	nnp_frame_release(&f);
	return rc;
}
