/* trainnet.c — forward and backward of a network graph on the CPU
 * (trainnet.h): oneDNN primitives on channels-last float32 activations,
 * OpenMP loops for InstanceNorm, LeakyReLU and residual adds. */
#include "trainnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "augment.h"
#include "dnnl_check.h"
#include "err.h"
#include "trainnet_cuda.h"

#define CHUNK 4096            /* voxels per reduction chunk (fixed: thread-count independent sums) */
#define MAXMEM 4096
#define MAXPRIM 2048

/* A weight seen by a primitive: the plain PyTorch-layout view (possibly a
 * strided block of a concatenated weight) and the primitive's own format;
 * r reorders plain -> fmt (or fmt -> plain for diff weights), NULL when the
 * formats agree (fmt == plain). */
struct wview {
	dnnl_memory_t plain, fmt;
	dnnl_primitive_t r;
};

struct tval {
	int64_t c;
	int level;
	size_t elems;
	float *x, *g;
	dnnl_memory_t mx, mg, ms;   /* activation, gradient, gradient-sized scratch */
	int consumers;
	int written;                /* runtime: the gradient holds a contribution */
};

struct tstep {
	int op;
	int vin[2], vout;           /* vin[1]: a conv's second input (-1) */
	int pw, pb, pg, pbeta;      /* parameter indices or -1 */
	int nparts;
	dnnl_primitive_t fwd[2], bwdd[2], bwdw[2];
	struct wview wf[2], wb[2], wd[2];
	dnnl_memory_t mb, mdb;      /* bias, bias gradient */
	double *mean, *rstd;        /* NORM_ACT: n * c */
};

struct tplan {
	int valid, n;
	int64_t sp[3];
	int64_t lsp[NNP_NET_MAX_STAGES + 1][3];
	int nv;
	struct tval *v;
	struct tstep *s;
	float *scratch;
	dnnl_memory_t in_user;
	dnnl_primitive_t in_reorder;
	dnnl_memory_t head_user[NNP_NET_MAX_STAGES];
	dnnl_primitive_t head_out[NNP_NET_MAX_STAGES], head_in[NNP_NET_MAX_STAGES];
	dnnl_memory_t head_guser[NNP_NET_MAX_STAGES];
	int headv[NNP_NET_MAX_STAGES];   /* value ids of the heads */
	dnnl_memory_t mems[MAXMEM];
	int nmem;
	dnnl_primitive_t prims[MAXPRIM];
	int nprim;
	void *bufs[MAXMEM];
	int nbuf;
};

struct nnp_tnet {
	struct nnp_net_graph g;
	int np;
	struct nnp_tparam *p;
	int *pidx;                         /* per op: weight (or norm gamma), bias (or beta) */
	int nheads;
	int heads[NNP_NET_MAX_STAGES];     /* tensor ids, full resolution first */
	dnnl_engine_t eng;
	dnnl_stream_t stream;
	struct tplan plan;
	struct nnp_cuda_tnet *cuda;        /* non-NULL: steps run on a CUDA device (parameters stay here) */
	int profile;                       /* NNP_ENGINE_PROFILE set: per-kind times on stderr */
	double ptime[2][NNP_OP_AVGPOOL + 1];
};


static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- parameters ---- */

static int add_param(struct nnp_tnet *t, const struct nnp_op *op, const char *suffix)
{
	struct nnp_tparam *p = &t->p[t->np];
	p->ndim = nnp_net_param_shape(&t->g, op, suffix, p->shape);
	snprintf(p->name, sizeof p->name, "%s.%s", op->w, suffix);
	p->n = 1;
	for (int d = 0; d < p->ndim; d++)
		p->n *= p->shape[d];
	p->w = malloc((size_t)p->n * sizeof(float));
	p->g = calloc((size_t)p->n, sizeof(float));
	if (!p->w || !p->g)
		return nnp_err(NNP_ENOMEM, "network parameters: out of memory");
	return t->np++;
}

/* kaiming_normal_(a = 0.01, fan_in, leaky_relu) for weights, zeros for biases,
 * ones for norm weights. */
static void he_init(struct nnp_tparam *p, int kind, struct nnp_aug_rng *r)
{
	int64_t kvol = 1, fan_in;
	double std;
	int is_bias = strstr(p->name, ".bias") != NULL;

	if (kind == NNP_OP_NORM_ACT || is_bias) {
		for (int64_t i = 0; i < p->n; i++)
			p->w[i] = kind == NNP_OP_NORM_ACT && !is_bias ? 1.0f : 0.0f;
		return;
	}
	for (int d = 2; d < p->ndim; d++)
		kvol *= p->shape[d];
	fan_in = p->shape[1] * kvol;   /* PyTorch: size(1) * receptive field, for both conv kinds */
	std = sqrt(2.0 / (1.0 + 1e-4)) / sqrt((double)fan_in);
	for (int64_t i = 0; i < p->n; i++)
		p->w[i] = (float)(std * nnp_aug_normal(r));
}

static int load_param(struct nnp_tparam *p, const struct nnp_param_src *src)
{
	const float *v = src->get(src->ctx, p->name, p->ndim, p->shape);
	if (!v)
		return NNP_EDATA;
	memcpy(p->w, v, (size_t)p->n * sizeof(float));
	return NNP_OK;
}

static int op_params(struct nnp_tnet *t, int i, const struct nnp_param_src *init, struct nnp_aug_rng *r,
		     int idx[2])
{
	const struct nnp_op *op = &t->g.ops[i];
	const char *suf[2] = { "weight", "bias" };
	int want[2];

	idx[0] = idx[1] = -1;
	if (op->kind == NNP_OP_ADD_ACT || op->kind == NNP_OP_AVGPOOL)
		return NNP_OK;
	want[0] = op->kind != NNP_OP_NORM_ACT || t->g.arch.norm_affine;
	want[1] = op->kind == NNP_OP_NORM_ACT ? t->g.arch.norm_affine : op->has_bias;
	for (int k = 0; k < 2; k++) {
		int rc;
		if (!want[k])
			continue;
		if ((idx[k] = add_param(t, op, suf[k])) < 0)
			return idx[k];
		if (init && (rc = load_param(&t->p[idx[k]], init)))
			return rc;
		if (!init)
			he_init(&t->p[idx[k]], op->kind, r);
	}
	return NNP_OK;
}

static const float *tnet_get(void *ctx, const char *name, int ndim, const int64_t *shape)
{
	struct nnp_tnet *t = ctx;
	for (int i = 0; i < t->np; i++) {
		const struct nnp_tparam *p = &t->p[i];
		if (strcmp(p->name, name))
			continue;
		if (p->ndim != ndim || memcmp(p->shape, shape, (size_t)ndim * sizeof *shape)) {
			nnp_err(NNP_EDATA, "parameter '%s': shape differs from the network's", name);
			return NULL;
		}
		return p->w;
	}
	nnp_err(NNP_EDATA, "parameter '%s': not in the network", name);
	return NULL;
}

struct nnp_param_src nnp_tnet_param_src(struct nnp_tnet *t)
{
	struct nnp_param_src s = { t, tnet_get };
	return s;
}

int nnp_tnet_nparams(const struct nnp_tnet *t)
{
	return t->np;
}

struct nnp_tparam *nnp_tnet_param(struct nnp_tnet *t, int i)
{
	return i >= 0 && i < t->np ? &t->p[i] : NULL;
}

int64_t nnp_tnet_param_count(const struct nnp_tnet *t)
{
	int64_t n = 0;
	for (int i = 0; i < t->np; i++)
		n += t->p[i].n;
	return n;
}

const struct nnp_net_graph *nnp_tnet_graph(const struct nnp_tnet *t)
{
	return &t->g;
}

int nnp_tnet_nheads(const struct nnp_tnet *t)
{
	return t->nheads;
}

/* ---- plan ---- */

static void plan_release(struct tplan *p)
{
	for (int i = 0; i < p->nprim; i++)
		dnnl_primitive_destroy(p->prims[i]);
	for (int i = 0; i < p->nmem; i++)
		dnnl_memory_destroy(p->mems[i]);
	for (int i = 0; i < p->nbuf; i++)
		free(p->bufs[i]);
	if (p->s)
		for (int i = 0; i < p->nv; i++) {
			free(p->s[i].mean);
			free(p->s[i].rstd);
		}
	free(p->v);
	free(p->s);
	memset(p, 0, sizeof *p);
}

static void *plan_alloc(struct tplan *p, size_t bytes)
{
	void *b;
	if (p->nbuf == MAXMEM || !(b = aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64))) {
		nnp_err(NNP_ENOMEM, "training network: out of memory (%zu bytes)", bytes);
		return NULL;
	}
	p->bufs[p->nbuf++] = b;
	return b;
}

static int plan_mem(struct nnp_tnet *t, const dnnl_memory_desc_t *md, void *handle, dnnl_memory_t *out)
{
	struct tplan *p = &t->plan;
	if (p->nmem == MAXMEM)
		return nnp_err(NNP_EINTERNAL, "training network: too many memory objects");
	if (!handle && !(handle = plan_alloc(p, dnnl_memory_desc_get_size(md))))
		return NNP_ENOMEM;
	DN(dnnl_memory_create(out, md, t->eng, handle), "memory");
	p->mems[p->nmem++] = *out;
	return NNP_OK;
}

static int plan_prim(struct nnp_tnet *t, dnnl_primitive_desc_t pd, dnnl_primitive_t *out)
{
	struct tplan *p = &t->plan;
	dnnl_status_t st;
	if (p->nprim == MAXPRIM) {
		dnnl_primitive_desc_destroy(pd);
		return nnp_err(NNP_EINTERNAL, "training network: too many primitives");
	}
	st = dnnl_primitive_create(out, pd);
	dnnl_primitive_desc_destroy(pd);
	if (st != dnnl_success)
		return dnnl_fail(st, "primitive");
	p->prims[p->nprim++] = *out;
	return NNP_OK;
}

static int pd_create(struct nnp_tnet *t, const void *desc, const dnnl_primitive_attr_t attr,
		     const_dnnl_primitive_desc_t hint, dnnl_primitive_desc_t *pd)
{
	DN(dnnl_primitive_desc_create(pd, desc, attr, t->eng, hint), "primitive descriptor");
	return NNP_OK;
}

static int ndims(const struct nnp_tnet *t)
{
	return 2 + t->g.arch.ndim;
}

static void act_dims(const struct nnp_tnet *t, int64_t c, int level, dnnl_dims_t dims)
{
	dims[0] = t->plan.n;
	dims[1] = c;
	for (int d = 0; d < t->g.arch.ndim; d++)
		dims[2 + d] = t->plan.lsp[level][d];
}

static int act_md(const struct nnp_tnet *t, int64_t c, int level, int planar, dnnl_memory_desc_t *md)
{
	dnnl_dims_t dims = { 0 };
	int nd = ndims(t);
	dnnl_format_tag_t tag = planar ? (nd == 5 ? dnnl_ncdhw : dnnl_nchw) : (nd == 5 ? dnnl_ndhwc : dnnl_nhwc);
	act_dims(t, c, level, dims);
	DN(dnnl_memory_desc_init_by_tag(md, nd, dims, dnnl_f32, tag), "activation desc");
	return NNP_OK;
}

static int64_t level_vox(const struct nnp_tnet *t, int level)
{
	int64_t v = 1;
	for (int d = 0; d < t->g.arch.ndim; d++)
		v *= t->plan.lsp[level][d];
	return v;
}

/* Values: one per operator output (in-place operators get a new one). */
static int plan_values(struct nnp_tnet *t, int *tval)
{
	struct tplan *p = &t->plan;
	const struct nnp_net_graph *g = &t->g;

	p->nv = 1;
	tval[0] = 0;
	p->v = calloc((size_t)g->nops + 1, sizeof *p->v);
	p->s = calloc((size_t)g->nops + 1, sizeof *p->s);
	if (!p->v || !p->s)
		return nnp_err(NNP_ENOMEM, "training network: out of memory");
	p->v[0].c = g->tensors[0].channels;
	for (int i = 0; i < g->nops; i++) {
		const struct nnp_op *op = &g->ops[i];
		struct tstep *s = &p->s[i];
		struct tval *v = &p->v[p->nv];
		s->op = i;
		s->vin[0] = tval[op->in];
		s->vin[1] = op->in2 >= 0 ? tval[op->in2] : -1;
		p->v[s->vin[0]].consumers++;
		if (s->vin[1] >= 0)
			p->v[s->vin[1]].consumers++;
		v->c = g->tensors[op->out].channels;
		v->level = g->tensors[op->out].level;
		s->vout = p->nv;
		tval[op->out] = p->nv++;
	}
	return NNP_OK;
}

static int plan_buffers(struct nnp_tnet *t)
{
	struct tplan *p = &t->plan;
	size_t maxs = 0;
	for (int i = 0; i < p->nv; i++) {
		struct tval *v = &p->v[i];
		dnnl_memory_desc_t md;
		int rc;
		v->elems = (size_t)(p->n * v->c * level_vox(t, v->level));
		if ((rc = act_md(t, v->c, v->level, 0, &md)) || (rc = plan_mem(t, &md, NULL, &v->mx)))
			return rc;
		dnnl_memory_get_data_handle(v->mx, (void **)&v->x);
		if (i == 0)
			continue;
		if ((rc = plan_mem(t, &md, NULL, &v->mg)))
			return rc;
		dnnl_memory_get_data_handle(v->mg, (void **)&v->g);
		if (v->consumers > 1 && v->elems > maxs)
			maxs = v->elems;
	}
	if (maxs && !(p->scratch = plan_alloc(p, maxs * sizeof(float))))
		return NNP_ENOMEM;
	for (int i = 1; i < p->nv; i++) {
		struct tval *v = &p->v[i];
		dnnl_memory_desc_t md;
		int rc;
		if (v->consumers > 1 && ((rc = act_md(t, v->c, v->level, 0, &md)) || (rc = plan_mem(t, &md, p->scratch, &v->ms))))
			return rc;
	}
	return NNP_OK;
}

/* The plain view of part k of a (possibly concatenated) weight array w. */
static int weight_view_md(const struct nnp_tnet *t, const struct nnp_op *op, int k, const struct nnp_tparam *pw,
			  dnnl_memory_desc_t *md, size_t *offset)
{
	const struct nnp_net_graph *g = &t->g;
	int nd = ndims(t);
	dnnl_dims_t dims = { 0 }, strides = { 0 };
	int64_t kvol = 1, cin_total = pw->shape[1];
	int64_t c1 = g->tensors[op->in].channels;

	for (int d = 2; d < nd; d++) {
		kvol *= pw->shape[d];
		dims[d] = pw->shape[d];
	}
	strides[nd - 1] = 1;
	for (int d = nd - 2; d >= 2; d--)
		strides[d] = strides[d + 1] * dims[d + 1];
	if (op->kind == NNP_OP_DECONV) {
		/* logical (out, in, k) over the PyTorch (in, out, k) array */
		dims[0] = pw->shape[1];
		dims[1] = pw->shape[0];
		strides[0] = kvol;
		strides[1] = pw->shape[1] * kvol;
		*offset = 0;
	} else {
		dims[0] = pw->shape[0];
		dims[1] = k == 0 ? (op->in2 >= 0 ? c1 : cin_total) : cin_total - c1;
		strides[0] = cin_total * kvol;
		strides[1] = kvol;
		*offset = k == 0 ? 0 : (size_t)(c1 * kvol);
	}
	DN(dnnl_memory_desc_init_by_strides(md, nd, dims, dnnl_f32, strides), "weight view");
	return NNP_OK;
}

/* to_fmt: reorder plain -> fmt; else fmt -> plain. */
static int make_wview(struct nnp_tnet *t, const dnnl_memory_desc_t *plain_md, float *base,
		      const dnnl_memory_desc_t *fmt_md, int to_fmt, struct wview *w)
{
	dnnl_primitive_desc_t pd;
	int rc;
	if ((rc = plan_mem(t, plain_md, base, &w->plain)))
		return rc;
	if (dnnl_memory_desc_equal(plain_md, fmt_md)) {
		w->fmt = w->plain;
		w->r = NULL;
		return NNP_OK;
	}
	if ((rc = plan_mem(t, fmt_md, NULL, &w->fmt)))
		return rc;
	if (to_fmt)
		DN(dnnl_reorder_primitive_desc_create(&pd, plain_md, t->eng, fmt_md, t->eng, NULL), "weight reorder");
	else
		DN(dnnl_reorder_primitive_desc_create(&pd, fmt_md, t->eng, plain_md, t->eng, NULL), "weight reorder");
	return plan_prim(t, pd, &w->r);
}

static int run_wview(struct nnp_tnet *t, const struct wview *w, int to_fmt)
{
	dnnl_exec_arg_t a[2] = { { DNNL_ARG_FROM, to_fmt ? w->plain : w->fmt }, { DNNL_ARG_TO, to_fmt ? w->fmt : w->plain } };
	if (!w->r)
		return NNP_OK;
	DN(dnnl_primitive_execute(w->r, t->stream, 2, a), "weight reorder");
	return NNP_OK;
}

struct convgeo {
	dnnl_dims_t strides, padl, padr;
	dnnl_memory_desc_t src, wany, bias, dst;
};

static int conv_geo(struct nnp_tnet *t, const struct tstep *s, int k, struct convgeo *cg)
{
	const struct nnp_op *op = &t->g.ops[s->op];
	const struct tval *vi = &t->plan.v[s->vin[k]], *vo = &t->plan.v[s->vout];
	int nd = t->g.arch.ndim, rc;
	dnnl_dims_t wd = { vo->c, vi->c }, bd = { vo->c };

	for (int d = 0; d < nd; d++) {
		wd[2 + d] = op->kernel[d];
		cg->strides[d] = op->stride[d];
		cg->padl[d] = cg->padr[d] = op->kind == NNP_OP_DECONV ? 0 : (op->kernel[d] - 1) / 2;
	}
	if ((rc = act_md(t, vi->c, vi->level, 0, &cg->src)) || (rc = act_md(t, vo->c, vo->level, 0, &cg->dst)))
		return rc;
	DN(dnnl_memory_desc_init_by_tag(&cg->wany, nd + 2, wd, dnnl_f32, dnnl_format_tag_any), "weights desc");
	DN(dnnl_memory_desc_init_by_tag(&cg->bias, 1, bd, dnnl_f32, dnnl_x), "bias desc");
	return NNP_OK;
}

static int conv_fwd_pd(struct nnp_tnet *t, const struct tstep *s, int k, struct convgeo *cg, int bias,
		       dnnl_primitive_desc_t *pd)
{
	const struct nnp_op *op = &t->g.ops[s->op];
	dnnl_primitive_attr_t attr = NULL;
	int rc;
	if (op->kind == NNP_OP_DECONV) {
		dnnl_deconvolution_desc_t dd;
		DN(dnnl_deconvolution_forward_desc_init(&dd, dnnl_forward_training, dnnl_deconvolution_direct, &cg->src,
							&cg->wany, bias ? &cg->bias : NULL, &cg->dst, cg->strides,
							cg->padl, cg->padr),
		   "deconvolution desc");
		return pd_create(t, &dd, NULL, NULL, pd);
	}
	dnnl_convolution_desc_t cd;
	DN(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &cg->src, &cg->wany,
					      bias ? &cg->bias : NULL, &cg->dst, cg->strides, cg->padl, cg->padr),
	   "convolution desc");
	if (k == 1) {
		dnnl_post_ops_t po;
		DN(dnnl_primitive_attr_create(&attr), "attr");
		DN(dnnl_post_ops_create(&po), "post ops");
		dnnl_post_ops_append_sum(po, 1.0f);
		dnnl_primitive_attr_set_post_ops(attr, po);
		dnnl_post_ops_destroy(po);
	}
	rc = pd_create(t, &cd, attr, NULL, pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return rc;
}

static int conv_bwd_pds(struct nnp_tnet *t, const struct tstep *s, struct convgeo *cg, int bias,
			const_dnnl_primitive_desc_t hint, dnnl_primitive_desc_t *bd, dnnl_primitive_desc_t *bw)
{
	const struct nnp_op *op = &t->g.ops[s->op];
	int rc;
	if (op->kind == NNP_OP_DECONV) {
		dnnl_deconvolution_desc_t d1, d2;
		DN(dnnl_deconvolution_backward_data_desc_init(&d1, dnnl_deconvolution_direct, &cg->src, &cg->wany,
							      &cg->dst, cg->strides, cg->padl, cg->padr),
		   "deconvolution backward desc");
		DN(dnnl_deconvolution_backward_weights_desc_init(&d2, dnnl_deconvolution_direct, &cg->src, &cg->wany,
								 bias ? &cg->bias : NULL, &cg->dst, cg->strides,
								 cg->padl, cg->padr),
		   "deconvolution backward desc");
		if ((rc = pd_create(t, &d1, NULL, hint, bd)))
			return rc;
		return pd_create(t, &d2, NULL, hint, bw);
	}
	dnnl_convolution_desc_t c1, c2;
	DN(dnnl_convolution_backward_data_desc_init(&c1, dnnl_convolution_direct, &cg->src, &cg->wany, &cg->dst,
						    cg->strides, cg->padl, cg->padr),
	   "convolution backward desc");
	DN(dnnl_convolution_backward_weights_desc_init(&c2, dnnl_convolution_direct, &cg->src, &cg->wany,
						       bias ? &cg->bias : NULL, &cg->dst, cg->strides, cg->padl,
						       cg->padr),
	   "convolution backward desc");
	if ((rc = pd_create(t, &c1, NULL, hint, bd)))
		return rc;
	return pd_create(t, &c2, NULL, hint, bw);
}

/* Part k of a conv/deconv step: forward, backward-data, backward-weights
 * primitives and the weight views they use. */
static int plan_conv_part(struct nnp_tnet *t, struct tstep *s, int k)
{
	struct nnp_tparam *pw = &t->p[s->pw];
	int bias = k == 0 && s->pb >= 0, rc;
	struct convgeo cg;
	dnnl_primitive_desc_t fpd, bdpd = NULL, bwpd = NULL;
	dnnl_memory_desc_t view;
	size_t off;

	if ((rc = conv_geo(t, s, k, &cg)) || (rc = weight_view_md(t, &t->g.ops[s->op], k, pw, &view, &off)) ||
	    (rc = conv_fwd_pd(t, s, k, &cg, bias, &fpd)))
		return rc;
	if ((rc = conv_bwd_pds(t, s, &cg, bias, fpd, &bdpd, &bwpd)) ||
	    (rc = make_wview(t, &view, pw->w + off, dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0), 1,
			     &s->wf[k])) ||
	    (rc = make_wview(t, &view, pw->w + off, dnnl_primitive_desc_query_md(bdpd, dnnl_query_weights_md, 0), 1,
			     &s->wb[k])) ||
	    (rc = make_wview(t, &view, pw->g + off,
			     dnnl_primitive_desc_query_md(bwpd, dnnl_query_diff_weights_md, 0), 0, &s->wd[k]))) {
		dnnl_primitive_desc_destroy(fpd);
		if (bdpd)
			dnnl_primitive_desc_destroy(bdpd);
		if (bwpd)
			dnnl_primitive_desc_destroy(bwpd);
		return rc;
	}
	if (bias && ((rc = plan_mem(t, &cg.bias, t->p[s->pb].w, &s->mb)) ||
		     (rc = plan_mem(t, &cg.bias, t->p[s->pb].g, &s->mdb)))) {
		dnnl_primitive_desc_destroy(fpd);
		dnnl_primitive_desc_destroy(bdpd);
		dnnl_primitive_desc_destroy(bwpd);
		return rc;
	}
	if ((rc = plan_prim(t, fpd, &s->fwd[k])))
		goto fail2;
	if ((rc = plan_prim(t, bdpd, &s->bwdd[k])))
		goto fail1;
	return plan_prim(t, bwpd, &s->bwdw[k]);
fail2:
	dnnl_primitive_desc_destroy(bdpd);
fail1:
	dnnl_primitive_desc_destroy(bwpd);
	return rc;
}

static int plan_pool(struct nnp_tnet *t, struct tstep *s)
{
	const struct nnp_op *op = &t->g.ops[s->op];
	const struct tval *vi = &t->plan.v[s->vin[0]], *vo = &t->plan.v[s->vout];
	dnnl_memory_desc_t src, dst;
	dnnl_pooling_desc_t fd, bd;
	dnnl_primitive_desc_t fpd, bpd;
	dnnl_dims_t k, st, pad;
	int rc;

	if ((rc = act_md(t, vi->c, vi->level, 0, &src)) || (rc = act_md(t, vo->c, vo->level, 0, &dst)))
		return rc;
	for (int d = 0; d < t->g.arch.ndim; d++) {
		k[d] = op->kernel[d];
		st[d] = op->stride[d];
		pad[d] = 0;
	}
	DN(dnnl_pooling_forward_desc_init(&fd, dnnl_forward_training, dnnl_pooling_avg_exclude_padding, &src, &dst, st,
					  k, pad, pad),
	   "pooling desc");
	DN(dnnl_pooling_backward_desc_init(&bd, dnnl_pooling_avg_exclude_padding, &src, &dst, st, k, pad, pad),
	   "pooling backward desc");
	if ((rc = pd_create(t, &fd, NULL, NULL, &fpd)))
		return rc;
	if ((rc = pd_create(t, &bd, NULL, fpd, &bpd))) {
		dnnl_primitive_desc_destroy(fpd);
		return rc;
	}
	if ((rc = plan_prim(t, fpd, &s->fwd[0]))) {
		dnnl_primitive_desc_destroy(bpd);
		return rc;
	}
	return plan_prim(t, bpd, &s->bwdd[0]);
}

static int plan_reorder(struct nnp_tnet *t, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
			dnnl_primitive_t *out)
{
	dnnl_primitive_desc_t pd;
	DN(dnnl_reorder_primitive_desc_create(&pd, from, t->eng, to, t->eng, NULL), "reorder");
	return plan_prim(t, pd, out);
}

static int plan_io(struct nnp_tnet *t, const int *tval)
{
	struct tplan *p = &t->plan;
	dnnl_memory_desc_t plain, nxc;
	int rc;

	if ((rc = act_md(t, p->v[0].c, 0, 1, &plain)) || (rc = act_md(t, p->v[0].c, 0, 0, &nxc)))
		return rc;
	DN(dnnl_memory_create(&p->in_user, &plain, t->eng, DNNL_MEMORY_NONE), "memory");
	p->mems[p->nmem++] = p->in_user;
	if ((rc = plan_reorder(t, &plain, &nxc, &p->in_reorder)))
		return rc;
	for (int h = 0; h < t->nheads; h++) {
		const struct tval *v = &p->v[tval[t->heads[h]]];
		if ((rc = act_md(t, v->c, v->level, 1, &plain)) || (rc = act_md(t, v->c, v->level, 0, &nxc)))
			return rc;
		DN(dnnl_memory_create(&p->head_user[h], &plain, t->eng, DNNL_MEMORY_NONE), "memory");
		p->mems[p->nmem++] = p->head_user[h];
		DN(dnnl_memory_create(&p->head_guser[h], &plain, t->eng, DNNL_MEMORY_NONE), "memory");
		p->mems[p->nmem++] = p->head_guser[h];
		if ((rc = plan_reorder(t, &nxc, &plain, &p->head_out[h])) ||
		    (rc = plan_reorder(t, &plain, &nxc, &p->head_in[h])))
			return rc;
	}
	return NNP_OK;
}

static int plan_steps(struct nnp_tnet *t, const int *pidx)
{
	struct tplan *p = &t->plan;
	for (int i = 0; i < t->g.nops; i++) {
		const struct nnp_op *op = &t->g.ops[i];
		struct tstep *s = &p->s[i];
		int rc = NNP_OK;
		s->pw = pidx[2 * i];
		s->pb = pidx[2 * i + 1];
		s->pg = s->pbeta = -1;
		switch (op->kind) {
		case NNP_OP_CONV:
		case NNP_OP_DECONV:
			s->nparts = op->in2 >= 0 ? 2 : 1;
			for (int k = 0; k < s->nparts && !rc; k++)
				rc = plan_conv_part(t, s, k);
			break;
		case NNP_OP_AVGPOOL:
			rc = plan_pool(t, s);
			break;
		case NNP_OP_NORM_ACT:
			s->pg = s->pw;
			s->pbeta = s->pb;
			s->pw = s->pb = -1;
			s->mean = malloc((size_t)(p->n * p->v[s->vout].c) * sizeof(double));
			s->rstd = malloc((size_t)(p->n * p->v[s->vout].c) * sizeof(double));
			if (!s->mean || !s->rstd)
				rc = nnp_err(NNP_ENOMEM, "training network: out of memory");
			break;
		case NNP_OP_ADD_ACT:
			break;
		}
		if (rc)
			return rc;
	}
	return NNP_OK;
}


static int plan_build(struct nnp_tnet *t, int n, const int64_t *sp)
{
	struct tplan *p = &t->plan;
	const struct nnp_net_arch *a = &t->g.arch;
	int *tval, rc;

	if (p->valid && p->n == n && !memcmp(p->sp, sp, (size_t)a->ndim * sizeof *sp))
		return NNP_OK;
	if ((rc = nnp_net_check_shape(a, sp)))
		return rc;
	plan_release(p);
	p->n = n;
	memcpy(p->sp, sp, (size_t)a->ndim * sizeof *sp);
	for (int l = 0; l < a->n_stages; l++)
		for (int d = 0; d < a->ndim; d++)
			p->lsp[l][d] = sp[d] / nnp_net_level_div(a, l, d);
	if (!(tval = malloc((size_t)t->g.ntensors * sizeof *tval)))
		return nnp_err(NNP_ENOMEM, "training network: out of memory");
	if (!(rc = plan_values(t, tval)) && !(rc = plan_buffers(t)) && !(rc = plan_steps(t, t->pidx)) &&
	    !(rc = plan_io(t, tval)))
		for (int h = 0; h < t->nheads; h++)
			p->headv[h] = tval[t->heads[h]];
	free(tval);
	if (rc) {
		plan_release(p);
		return rc;
	}
	p->valid = 1;
	return NNP_OK;
}

/* ---- OpenMP kernels on channels-last rows (vox rows of c floats) ---- */

static double *chunk_parts(int64_t vox, int64_t c, int64_t *nch)
{
	*nch = (vox + CHUNK - 1) / CHUNK;
	return calloc((size_t)(*nch * 2 * c), sizeof(double));
}

/* s[k] = sum over chunks of part[ch][k], q[k] likewise (second half), in chunk order. */
static void combine_parts(const double *part, int64_t nch, int64_t c, double *s, double *q)
{
	for (int64_t k = 0; k < c; k++)
		s[k] = q[k] = 0;
	for (int64_t ch = 0; ch < nch; ch++)
		for (int64_t k = 0; k < c; k++) {
			s[k] += part[ch * 2 * c + k];
			q[k] += part[ch * 2 * c + c + k];
		}
}

static void moments(const float *x, int64_t vox, int64_t c, double *part, int64_t nch)
{
#pragma omp parallel for schedule(static)
	for (int64_t ch = 0; ch < nch; ch++) {
		double *ps = part + ch * 2 * c, *pq = ps + c;
		int64_t v1 = (ch + 1) * CHUNK < vox ? (ch + 1) * CHUNK : vox;
		for (int64_t v = ch * CHUNK; v < v1; v++) {
			const float *r = x + v * c;
			for (int64_t k = 0; k < c; k++) {
				ps[k] += r[k];
				pq[k] += (double)r[k] * r[k];
			}
		}
	}
}

static void affine_act(const float *x, float *y, int64_t vox, int64_t c, const float *a, const float *b, int act,
		       float slope)
{
#pragma omp parallel for schedule(static)
	for (int64_t v = 0; v < vox; v++) {
		const float *r = x + v * c;
		float *o = y + v * c;
		for (int64_t k = 0; k < c; k++) {
			float z = r[k] * a[k] + b[k];
			o[k] = act && z < 0 ? z * slope : z;
		}
	}
}

struct normctx {
	int64_t vox, c;
	int act;
	float slope;
	double eps;
	const float *gamma, *beta;
};

static int norm_forward(const struct normctx *nc, const float *x, float *y, double *mean, double *rstd)
{
	int64_t nch, c = nc->c;
	double *part = chunk_parts(nc->vox, c, &nch), *s = malloc((size_t)c * 2 * sizeof(double));
	float *ab = malloc((size_t)c * 2 * sizeof(float));
	if (!part || !s || !ab) {
		free(part);
		free(s);
		free(ab);
		return nnp_err(NNP_ENOMEM, "instance norm: out of memory");
	}
	moments(x, nc->vox, c, part, nch);
	combine_parts(part, nch, c, s, s + c);
	for (int64_t k = 0; k < c; k++) {
		double m = s[k] / (double)nc->vox, var = s[c + k] / (double)nc->vox - m * m;
		double g = nc->gamma ? nc->gamma[k] : 1.0, be = nc->beta ? nc->beta[k] : 0.0;
		mean[k] = m;
		rstd[k] = 1.0 / sqrt((var > 0 ? var : 0) + nc->eps);
		ab[k] = (float)(g * rstd[k]);
		ab[c + k] = (float)(be - m * g * rstd[k]);
	}
	affine_act(x, y, nc->vox, c, ab, ab + c, nc->act, nc->slope);
	free(part);
	free(s);
	free(ab);
	return NNP_OK;
}

static inline float act_grad(float dy, float y, int act, float slope)
{
	return act && y <= 0 ? dy * slope : dy;
}

/* Chunked sums of dz and dz * xhat per channel. */
static void norm_bsums(const struct normctx *nc, const float *x, const float *y, const float *dy, const double *mean,
		       const double *rstd, double *part, int64_t nch)
{
	int64_t c = nc->c;
#pragma omp parallel for schedule(static)
	for (int64_t ch = 0; ch < nch; ch++) {
		double *pa = part + ch * 2 * c, *pb = pa + c;
		int64_t v1 = (ch + 1) * CHUNK < nc->vox ? (ch + 1) * CHUNK : nc->vox;
		for (int64_t v = ch * CHUNK; v < v1; v++)
			for (int64_t k = 0; k < c; k++) {
				int64_t i = v * c + k;
				double dz = act_grad(dy[i], y[i], nc->act, nc->slope);
				pa[k] += dz;
				pb[k] += dz * ((x[i] - mean[k]) * rstd[k]);
			}
	}
}

/* dx (=, or += when accumulate; dx NULL: parameter gradients only). */
static int norm_backward(const struct normctx *nc, const float *x, const float *y, const float *dy, const double *mean,
			 const double *rstd, float *dx, int accumulate, float *dgamma, float *dbeta)
{
	int64_t nch, c = nc->c;
	double *part = chunk_parts(nc->vox, c, &nch), *s = malloc((size_t)c * 5 * sizeof(double));
	if (!part || !s) {
		free(part);
		free(s);
		return nnp_err(NNP_ENOMEM, "instance norm: out of memory");
	}
	norm_bsums(nc, x, y, dy, mean, rstd, part, nch);
	combine_parts(part, nch, c, s, s + c);
	for (int64_t k = 0; k < c; k++) {
		if (dgamma)
			dgamma[k] += (float)s[c + k];
		if (dbeta)
			dbeta[k] += (float)s[k];
		s[2 * c + k] = (nc->gamma ? nc->gamma[k] : 1.0) * rstd[k];
		s[3 * c + k] = s[k] / (double)nc->vox;
		s[4 * c + k] = s[c + k] / (double)nc->vox;
	}
	if (dx) {
		const double *gr = s + 2 * c, *c1 = s + 3 * c, *c2 = s + 4 * c;
#pragma omp parallel for schedule(static)
		for (int64_t v = 0; v < nc->vox; v++)
			for (int64_t k = 0; k < c; k++) {
				int64_t i = v * c + k;
				double dz = act_grad(dy[i], y[i], nc->act, nc->slope);
				double xh = (x[i] - mean[k]) * rstd[k];
				float d = (float)(gr[k] * (dz - c1[k] - xh * c2[k]));
				dx[i] = accumulate ? dx[i] + d : d;
			}
	}
	free(part);
	free(s);
	return NNP_OK;
}

static void add_into(float *dst, const float *src, size_t n)
{
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < n; i++)
		dst[i] += src[i];
}

/* ---- forward ---- */

static int exec(struct nnp_tnet *t, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args, const char *what)
{
	DN(dnnl_primitive_execute(prim, t->stream, nargs, args), what);
	DN(dnnl_stream_wait(t->stream), what);
	return NNP_OK;
}

static struct normctx norm_ctx(struct nnp_tnet *t, const struct tstep *s)
{
	const struct tval *v = &t->plan.v[s->vout];
	struct normctx nc = { level_vox(t, v->level), v->c, t->g.ops[s->op].act, (float)t->g.arch.slope,
			      t->g.arch.norm_eps, s->pg >= 0 ? t->p[s->pg].w : NULL,
			      s->pbeta >= 0 ? t->p[s->pbeta].w : NULL };
	return nc;
}

static int fwd_norm(struct nnp_tnet *t, const struct tstep *s)
{
	struct tval *vi = &t->plan.v[s->vin[0]], *vo = &t->plan.v[s->vout];
	struct normctx nc = norm_ctx(t, s);
	size_t per = (size_t)(nc.vox * nc.c);
	for (int b = 0; b < t->plan.n; b++) {
		int rc = norm_forward(&nc, vi->x + b * per, vo->x + b * per, s->mean + b * nc.c, s->rstd + b * nc.c);
		if (rc)
			return rc;
	}
	return NNP_OK;
}

static void fwd_add(struct nnp_tnet *t, const struct tstep *s)
{
	const float *a = t->plan.v[s->vin[0]].x, *b = t->plan.v[s->vin[1]].x;
	struct tval *vo = &t->plan.v[s->vout];
	float slope = (float)t->g.arch.slope;
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < vo->elems; i++) {
		float z = a[i] + b[i];
		vo->x[i] = z < 0 ? z * slope : z;
	}
}

static int fwd_conv(struct nnp_tnet *t, const struct tstep *s)
{
	struct tplan *p = &t->plan;
	for (int k = 0; k < s->nparts; k++) {
		dnnl_exec_arg_t a[4];
		int na = 0, rc;
		if ((rc = run_wview(t, &s->wf[k], 1)))
			return rc;
		a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, p->v[s->vin[k]].mx };
		a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_WEIGHTS, s->wf[k].fmt };
		if (k == 0 && s->pb >= 0)
			a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_BIAS, s->mb };
		a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_DST, p->v[s->vout].mx };
		if ((rc = exec(t, s->fwd[k], na, a, "convolution")))
			return rc;
	}
	return NNP_OK;
}

static int fwd_step(struct nnp_tnet *t, const struct tstep *s)
{
	struct tplan *p = &t->plan;
	switch (t->g.ops[s->op].kind) {
	case NNP_OP_CONV:
	case NNP_OP_DECONV:
		return fwd_conv(t, s);
	case NNP_OP_AVGPOOL: {
		dnnl_exec_arg_t a[2] = { { DNNL_ARG_SRC, p->v[s->vin[0]].mx }, { DNNL_ARG_DST, p->v[s->vout].mx } };
		return exec(t, s->fwd[0], 2, a, "pooling");
	}
	case NNP_OP_NORM_ACT:
		return fwd_norm(t, s);
	case NNP_OP_ADD_ACT:
		fwd_add(t, s);
		return NNP_OK;
	}
	return nnp_err(NNP_EINTERNAL, "training network: unknown operator");
}

int nnp_tnet_forward(struct nnp_tnet *t, int n, const int64_t *spatial, const float *in)
{
	struct tplan *p = &t->plan;
	dnnl_exec_arg_t a[2];
	int rc;

	if (n < 1)
		return nnp_err(NNP_EUSAGE, "training network: batch size %d", n);
	if (t->cuda) {
		if ((rc = nnp_cuda_tnet_upload_params(t->cuda, t->p, t->np)))
			return rc;
		return nnp_cuda_tnet_forward(t->cuda, n, spatial, in);
	}
	if ((rc = plan_build(t, n, spatial)))
		return rc;
	DN(dnnl_memory_set_data_handle(p->in_user, (void *)in), "input");
	a[0] = (dnnl_exec_arg_t){ DNNL_ARG_FROM, p->in_user };
	a[1] = (dnnl_exec_arg_t){ DNNL_ARG_TO, p->v[0].mx };
	if ((rc = exec(t, p->in_reorder, 2, a, "input reorder")))
		return rc;
	for (int i = 0; i < t->g.nops; i++) {
		double t0 = t->profile ? now_s() : 0;
		if ((rc = fwd_step(t, &p->s[i])))
			return rc;
		if (t->profile)
			t->ptime[0][t->g.ops[i].kind] += now_s() - t0;
	}
	return NNP_OK;
}

int nnp_tnet_head_shape(const struct nnp_tnet *t, int h, int64_t shape[5])
{
	const struct tplan *p = &t->plan;
	const struct tval *v;
	if (t->cuda)
		return nnp_cuda_tnet_head_shape(t->cuda, h, shape);
	if (!p->valid || h < 0 || h >= t->nheads)
		return nnp_err(NNP_EUSAGE, "training network: no head %d (run a forward first)", h);
	v = &p->v[p->headv[h]];
	shape[0] = p->n;
	shape[1] = v->c;
	for (int d = 0; d < t->g.arch.ndim; d++)
		shape[2 + d] = p->lsp[v->level][d];
	return 2 + t->g.arch.ndim;
}

int nnp_tnet_output(struct nnp_tnet *t, int h, float *out)
{
	struct tplan *p = &t->plan;
	dnnl_exec_arg_t a[2];
	int64_t shape[5];
	int rc;
	if (t->cuda)
		return nnp_cuda_tnet_output(t->cuda, h, out);
	if ((rc = nnp_tnet_head_shape(t, h, shape)) < 0)
		return rc;
	DN(dnnl_memory_set_data_handle(p->head_user[h], out), "output");
	a[0] = (dnnl_exec_arg_t){ DNNL_ARG_FROM, p->v[p->headv[h]].mx };
	a[1] = (dnnl_exec_arg_t){ DNNL_ARG_TO, p->head_user[h] };
	return exec(t, p->head_out[h], 2, a, "output reorder");
}

/* ---- backward ---- */

/* The memory a backward-data result for value vi goes to: its gradient
 * (first contribution) or the scratch (added afterwards); *add tells. */
static dnnl_memory_t grad_target(struct tval *v, int *add)
{
	*add = v->written;
	v->written = 1;
	return *add ? v->ms : v->mg;
}

static int bwd_data(struct nnp_tnet *t, dnnl_primitive_t prim, int vi, dnnl_memory_t dst_grad, dnnl_memory_t wei)
{
	struct tval *v = &t->plan.v[vi];
	dnnl_exec_arg_t a[3];
	int add, na = 0, rc;
	if (vi == 0)
		return NNP_OK;   /* no gradient for the network input */
	a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_DIFF_DST, dst_grad };
	if (wei)
		a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_WEIGHTS, wei };
	a[na] = (dnnl_exec_arg_t){ DNNL_ARG_DIFF_SRC, grad_target(v, &add) };
	na++;
	if ((rc = exec(t, prim, na, a, "backward data")))
		return rc;
	if (add)
		add_into(v->g, t->plan.scratch, v->elems);
	return NNP_OK;
}

static int bwd_conv(struct nnp_tnet *t, const struct tstep *s)
{
	struct tplan *p = &t->plan;
	dnnl_memory_t dy = p->v[s->vout].mg;
	for (int k = 0; k < s->nparts; k++) {
		dnnl_exec_arg_t a[4];
		int na = 0, rc;
		a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, p->v[s->vin[k]].mx };
		a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_DIFF_DST, dy };
		a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_DIFF_WEIGHTS, s->wd[k].fmt };
		if (k == 0 && s->pb >= 0)
			a[na++] = (dnnl_exec_arg_t){ DNNL_ARG_DIFF_BIAS, s->mdb };
		if ((rc = exec(t, s->bwdw[k], na, a, "backward weights")) || (rc = run_wview(t, &s->wd[k], 0)))
			return rc;
		if (s->vin[k] == 0)
			continue;
		if ((rc = run_wview(t, &s->wb[k], 1)) || (rc = bwd_data(t, s->bwdd[k], s->vin[k], dy, s->wb[k].fmt)))
			return rc;
	}
	return NNP_OK;
}

static int bwd_norm(struct nnp_tnet *t, const struct tstep *s)
{
	struct tval *vi = &t->plan.v[s->vin[0]], *vo = &t->plan.v[s->vout];
	struct normctx nc = norm_ctx(t, s);
	size_t per = (size_t)(nc.vox * nc.c);
	int acc = vi->written, rc;
	float *dx = s->vin[0] == 0 ? NULL : vi->g;
	vi->written = 1;
	for (int b = 0; b < t->plan.n; b++)
		if ((rc = norm_backward(&nc, vi->x + b * per, vo->x + b * per, vo->g + b * per, s->mean + b * nc.c,
					s->rstd + b * nc.c, dx ? dx + b * per : NULL, acc,
					s->pg >= 0 ? t->p[s->pg].g : NULL, s->pbeta >= 0 ? t->p[s->pbeta].g : NULL)))
			return rc;
	return NNP_OK;
}

static void bwd_add(struct nnp_tnet *t, const struct tstep *s)
{
	struct tval *vo = &t->plan.v[s->vout];
	float slope = (float)t->g.arch.slope;
	for (int k = 0; k < 2; k++) {
		struct tval *vi = &t->plan.v[s->vin[k]];
		int acc = vi->written;
		if (s->vin[k] == 0)
			continue;
		vi->written = 1;
#pragma omp parallel for schedule(static)
		for (size_t i = 0; i < vo->elems; i++) {
			float d = act_grad(vo->g[i], vo->x[i], 1, slope);
			vi->g[i] = acc ? vi->g[i] + d : d;
		}
	}
}

static int bwd_step(struct nnp_tnet *t, const struct tstep *s)
{
	struct tplan *p = &t->plan;
	if (!p->v[s->vout].written)
		return NNP_OK;   /* nothing flows back through this operator */
	switch (t->g.ops[s->op].kind) {
	case NNP_OP_CONV:
	case NNP_OP_DECONV:
		return bwd_conv(t, s);
	case NNP_OP_AVGPOOL:
		return bwd_data(t, s->bwdd[0], s->vin[0], p->v[s->vout].mg, NULL);
	case NNP_OP_NORM_ACT:
		return bwd_norm(t, s);
	case NNP_OP_ADD_ACT:
		bwd_add(t, s);
		return NNP_OK;
	}
	return nnp_err(NNP_EINTERNAL, "training network: unknown operator");
}

int nnp_tnet_backward(struct nnp_tnet *t, const float *const *dout)
{
	struct tplan *p = &t->plan;
	int rc;
	if (t->cuda) {
		if ((rc = nnp_cuda_tnet_backward(t->cuda, dout)))
			return rc;
		return nnp_cuda_tnet_download_grads(t->cuda, t->p, t->np);
	}
	if (!p->valid)
		return nnp_err(NNP_EUSAGE, "training network: backward without a forward");
	for (int i = 0; i < t->np; i++)
		memset(t->p[i].g, 0, (size_t)t->p[i].n * sizeof(float));
	for (int i = 0; i < p->nv; i++)
		p->v[i].written = 0;
	for (int h = 0; h < t->nheads; h++) {
		dnnl_exec_arg_t a[2];
		if (!dout[h])
			continue;
		DN(dnnl_memory_set_data_handle(p->head_guser[h], (void *)dout[h]), "gradient");
		a[0] = (dnnl_exec_arg_t){ DNNL_ARG_FROM, p->head_guser[h] };
		a[1] = (dnnl_exec_arg_t){ DNNL_ARG_TO, p->v[p->headv[h]].mg };
		if ((rc = exec(t, p->head_in[h], 2, a, "gradient reorder")))
			return rc;
		p->v[p->headv[h]].written = 1;
	}
	for (int i = t->g.nops - 1; i >= 0; i--) {
		double t0 = t->profile ? now_s() : 0;
		if ((rc = bwd_step(t, &p->s[i])))
			return rc;
		if (t->profile)
			t->ptime[1][t->g.ops[i].kind] += now_s() - t0;
	}
	return NNP_OK;
}

/* ---- lifecycle ---- */

static int create_params(struct nnp_tnet *t, const struct nnp_param_src *init, uint32_t seed)
{
	struct nnp_aug_rng r;
	t->p = calloc((size_t)t->g.nops * 2, sizeof *t->p);
	t->pidx = malloc((size_t)t->g.nops * 2 * sizeof *t->pidx);
	if (!t->p || !t->pidx)
		return nnp_err(NNP_ENOMEM, "training network: out of memory");
	nnp_aug_rng_seed(&r, seed);
	for (int i = 0; i < t->g.nops; i++) {
		int rc = op_params(t, i, init, &r, t->pidx + 2 * i);
		if (rc)
			return rc;
	}
	return NNP_OK;
}

int nnp_tnet_create(const struct nnp_net_graph *g, const struct nnp_param_src *init, uint32_t seed,
		    struct nnp_tnet **out)
{
	struct nnp_tnet *t = calloc(1, sizeof *t);
	int rc;

	*out = NULL;
	if (!t)
		return nnp_err(NNP_ENOMEM, "training network: out of memory");
	if ((rc = nnp_net_graph_copy(g, &t->g))) {
		free(t);
		return rc;
	}
	t->profile = getenv("NNP_ENGINE_PROFILE") != NULL;
	t->nheads = g->n_ds > 0 ? g->n_ds : 1;
	for (int h = 0; h < t->nheads; h++)
		t->heads[h] = g->n_ds > 0 ? g->ds_out[h] : g->out;
	if ((rc = create_params(t, init, seed)))
		goto fail;
	if (dnnl_engine_create(&t->eng, dnnl_cpu, 0) != dnnl_success ||
	    dnnl_stream_create(&t->stream, t->eng, dnnl_stream_default_flags) != dnnl_success) {
		rc = nnp_err(NNP_EINTERNAL, "oneDNN: cannot create a CPU engine");
		goto fail;
	}
	*out = t;
	return NNP_OK;
fail:
	nnp_tnet_free(t);
	return rc;
}

static void print_profile(const struct nnp_tnet *t)
{
	static const char *const names[] = { "", "conv", "norm_act", "deconv", "add_act", "avgpool" };
	for (int k = 1; k <= NNP_OP_AVGPOOL; k++)
		fprintf(stderr, "trainnet profile: %-8s forward %8.3f s backward %8.3f s\n", names[k], t->ptime[0][k],
			t->ptime[1][k]);
}

void nnp_tnet_free(struct nnp_tnet *t)
{
	if (!t)
		return;
	if (t->profile)
		print_profile(t);
	nnp_cuda_tnet_free(t->cuda);
	plan_release(&t->plan);
	if (t->p)
		for (int i = 0; i < t->np; i++) {
			free(t->p[i].w);
			free(t->p[i].g);
		}
	free(t->p);
	free(t->pidx);
	if (t->stream)
		dnnl_stream_destroy(t->stream);
	if (t->eng)
		dnnl_engine_destroy(t->eng);
	nnp_net_graph_release(&t->g);
	free(t);
}

int nnp_tnet_set_device(struct nnp_tnet *t, int device)
{
	if (device < 0) {
		nnp_cuda_tnet_free(t->cuda);
		t->cuda = NULL;
		return NNP_OK;
	}
	if (t->cuda)
		return nnp_err(NNP_EUSAGE, "training network: already on a device");
	return nnp_cuda_tnet_create(&t->g, device, &t->cuda);
}

uint64_t nnp_tnet_mem_estimate(const struct nnp_net_graph *g, int n, const int64_t *spatial)
{
	const struct nnp_net_arch *a = &g->arch;
	uint64_t bytes = 0;
	double vox0 = 1;
	for (int d = 0; d < a->ndim; d++)
		vox0 *= (double)spatial[d];
	bytes += (uint64_t)(vox0 * n * g->tensors[0].channels * 4);
	for (int i = 0; i < g->nops; i++) {
		const struct nnp_op *op = &g->ops[i];
		int c = g->tensors[op->out].channels, l = g->tensors[op->out].level;
		double vox = 1;
		int64_t shape[5];
		for (int d = 0; d < a->ndim; d++)
			vox *= (double)(spatial[d] / nnp_net_level_div(a, l, d));
		bytes += (uint64_t)(vox * n * c * 4) * 2;   /* value and gradient */
		if (op->kind == NNP_OP_NORM_ACT)
			bytes += (uint64_t)n * (uint64_t)c * 16;
		if (op->kind == NNP_OP_CONV || op->kind == NNP_OP_DECONV) {
			int nd = nnp_net_param_shape(g, op, "weight", shape);
			uint64_t e = 1;
			for (int d = 0; d < nd; d++)
				e *= (uint64_t)shape[d];
			bytes += e * 4 * 4;   /* value, gradient, momentum, primitive formats */
		}
	}
	return bytes;
}
