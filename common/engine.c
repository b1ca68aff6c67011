/* engine.c — the CPU backend: oneDNN convolutions, OpenMP norms (engine.h);
 * with NNP_HAVE_CUDA, engines for a CUDA device dispatch to engine_cuda.h. */
#include "engine.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "dnnl_check.h"
#include "err.h"
#include "gpu.h"
#ifdef NNP_HAVE_CUDA
#include "engine_cuda.h"
#endif

#define MAXARGS 6

/* Weights of one operator in PyTorch layout (owned copies). */
struct opw {
	float *w, *w2;          /* conv: w2 = the in2 block of input channels */
	float *b;               /* conv/deconv bias, or NULL */
	float *gamma, *beta;    /* NORM_ACT affine (NULL = identity) */
};

enum step_kind { ST_DNNL, ST_NORM, ST_ADD };

struct step {
	enum step_kind kind;
	int op;                 /* graph op */
	dnnl_primitive_t prim;
	int nargs;
	dnnl_exec_arg_t args[MAXARGS];
};

struct plan {
	int valid, n;
	int features;             /* output = the head's input (head skipped) */
	int64_t sp[3];
	int nsteps, cap;
	struct step *steps;
	int nmem;
	dnnl_memory_t mem[1024];  /* every memory object the plan created */
	void *bufs[1024];         /* owned buffers */
	int nbufs;
	dnnl_memory_t *tmem;      /* per tensor */
	dnnl_memory_t in_user, out_user;
	dnnl_memory_t scratch_users[256];  /* run-time reorder outputs sharing one buffer */
	int nscratch;
	size_t scratch_bytes;
	int64_t tsp[NNP_NET_MAX_STAGES + 1][3];
};

struct nnp_engine {
	struct nnp_net_graph g;
	struct opw *w;
	enum nnp_precision prec;
	int block;              /* fp32: channel block of nCdhw16c / nCdhw8c */
	int nxc;                /* bf16: channels-last activations (what AMX kernels take) */
	int profile;            /* NNP_ENGINE_PROFILE set: time every step on stderr */
	dnnl_engine_t eng;
	dnnl_stream_t stream;
	struct plan plan;
	struct nnp_cuda_engine *cuda;  /* non-NULL: a CUDA engine, nothing else is used */
};


static int cpu_block(void)
{
	return dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx512_core ? 16 : 8;
}

const char *nnp_engine_cpu_info(void)
{
	static __thread char buf[96];
	const dnnl_version_t *v = dnnl_version();
	dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
	const char *name = isa >= dnnl_cpu_isa_avx512_core_amx ? "avx512_core_amx" :
			   isa >= dnnl_cpu_isa_avx512_core_bf16 ? "avx512_core_bf16" :
			   isa >= dnnl_cpu_isa_avx512_core ? "avx512_core" : "avx2 or older";
	snprintf(buf, sizeof buf, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch, name);
	return buf;
}

/* ---- weights ---- */

static float *dup_param(const struct nnp_param_src *src, const char *name, int ndim, const int64_t *shape)
{
	const float *p = src->get(src->ctx, name, ndim, shape);
	size_t n = 1;
	float *c;
	if (!p)
		return NULL;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	if (!(c = malloc(n * sizeof *c))) {
		nnp_err(NNP_ENOMEM, "network weights: out of memory");
		return NULL;
	}
	memcpy(c, p, n * sizeof *c);
	return c;
}

/* Split a conv weight (out, c1 + c2, k) into (out, c1, k) and (out, c2, k). */
static int split_weight(const float *w, int64_t cout, int64_t c1, int64_t c2, int64_t kvol, float **a, float **b)
{
	*a = malloc((size_t)(cout * c1 * kvol) * sizeof(float));
	*b = malloc((size_t)(cout * c2 * kvol) * sizeof(float));
	if (!*a || !*b)
		return nnp_err(NNP_ENOMEM, "network weights: out of memory");
	for (int64_t o = 0; o < cout; o++) {
		memcpy(*a + o * c1 * kvol, w + o * (c1 + c2) * kvol, (size_t)(c1 * kvol) * sizeof(float));
		memcpy(*b + o * c2 * kvol, w + (o * (c1 + c2) + c1) * kvol, (size_t)(c2 * kvol) * sizeof(float));
	}
	return NNP_OK;
}

static int load_op(const struct nnp_net_graph *g, const struct nnp_op *op, const struct nnp_param_src *src,
		   struct opw *w)
{
	char name[NNP_NET_NAME + 16];
	int64_t shape[5];
	int nd;

	if (op->kind == NNP_OP_ADD_ACT || op->kind == NNP_OP_AVGPOOL)
		return NNP_OK;
	if (op->kind == NNP_OP_NORM_ACT) {
		if (!g->arch.norm_affine)
			return NNP_OK;
		nd = nnp_net_param_shape(g, op, "weight", shape);
		snprintf(name, sizeof name, "%s.weight", op->w);
		if (!(w->gamma = dup_param(src, name, nd, shape)))
			return NNP_EDATA;
		snprintf(name, sizeof name, "%s.bias", op->w);
		return (w->beta = dup_param(src, name, nd, shape)) ? NNP_OK : NNP_EDATA;
	}
	nd = nnp_net_param_shape(g, op, "weight", shape);
	snprintf(name, sizeof name, "%s.weight", op->w);
	if (!(w->w = dup_param(src, name, nd, shape)))
		return NNP_EDATA;
	if (op->kind == NNP_OP_CONV && op->in2 >= 0) {
		int64_t kvol = 1, c1 = g->tensors[op->in].channels;
		float *full = w->w;
		int rc;
		for (int d = 2; d < nd; d++)
			kvol *= shape[d];
		rc = split_weight(full, shape[0], c1, shape[1] - c1, kvol, &w->w, &w->w2);
		free(full);
		if (rc)
			return rc;
	}
	if (op->has_bias) {
		nd = nnp_net_param_shape(g, op, "bias", shape);
		snprintf(name, sizeof name, "%s.bias", op->w);
		if (!(w->b = dup_param(src, name, nd, shape)))
			return NNP_EDATA;
	}
	return NNP_OK;
}

/* ---- plan: primitives and memory for one input shape ---- */

static void plan_release(struct plan *p)
{
	for (int i = 0; i < p->nsteps; i++)
		if (p->steps[i].prim)
			dnnl_primitive_destroy(p->steps[i].prim);
	for (int i = 0; i < p->nmem; i++)
		dnnl_memory_destroy(p->mem[i]);
	for (int i = 0; i < p->nbufs; i++)
		free(p->bufs[i]);
	free(p->steps);
	free(p->tmem);
	memset(p, 0, sizeof *p);
}

static void *plan_alloc(struct plan *p, size_t bytes)
{
	void *b;
	if (p->nbufs == (int)(sizeof p->bufs / sizeof p->bufs[0])) {
		nnp_err(NNP_EINTERNAL, "network plan: too many buffers");
		return NULL;
	}
	if (posix_memalign(&b, 64, bytes ? bytes : 64)) {
		nnp_err(NNP_ENOMEM, "network activations: cannot allocate %zu bytes", bytes);
		return NULL;
	}
	memset(b, 0, bytes);
	p->bufs[p->nbufs++] = b;
	return b;
}

static int plan_mem(struct plan *p, struct nnp_engine *e, const dnnl_memory_desc_t *md, void *handle,
		    dnnl_memory_t *out)
{
	if (p->nmem == (int)(sizeof p->mem / sizeof p->mem[0]))
		return nnp_err(NNP_EINTERNAL, "network plan: too many memory objects");
	DN(dnnl_memory_create(out, md, e->eng, handle), "memory_create");
	p->mem[p->nmem++] = *out;
	return NNP_OK;
}

static struct step *plan_step(struct plan *p, enum step_kind kind, int op)
{
	if (p->nsteps == p->cap) {
		int cap = p->cap ? 2 * p->cap : 64;
		void *s = realloc(p->steps, (size_t)cap * sizeof *p->steps);
		if (!s) {
			nnp_err(NNP_ENOMEM, "network plan: out of memory");
			return NULL;
		}
		p->steps = s;
		p->cap = cap;
	}
	memset(&p->steps[p->nsteps], 0, sizeof p->steps[0]);
	p->steps[p->nsteps].kind = kind;
	p->steps[p->nsteps].op = op;
	return &p->steps[p->nsteps++];
}

static dnnl_format_tag_t plain_tag(int nd)
{
	return nd == 3 ? dnnl_ncdhw : dnnl_nchw;
}

static dnnl_format_tag_t blocked_tag(int nd, int block)
{
	if (nd == 3)
		return block == 16 ? dnnl_nCdhw16c : dnnl_nCdhw8c;
	return block == 16 ? dnnl_nChw16c : dnnl_nChw8c;
}

static void act_dims(const struct nnp_engine *e, const struct plan *p, int t, dnnl_dims_t dims)
{
	const struct nnp_net_graph *g = &e->g;
	int lvl = g->tensors[t].level;
	dims[0] = p->n;
	dims[1] = g->tensors[t].channels;
	for (int d = 0; d < g->arch.ndim; d++)
		dims[2 + d] = p->tsp[lvl][d];
}

static int act_md(const struct nnp_engine *e, const struct plan *p, int t, dnnl_data_type_t dt,
		  dnnl_format_tag_t tag, dnnl_memory_desc_t *md)
{
	dnnl_dims_t dims = { 0 };
	act_dims(e, p, t, dims);
	DN(dnnl_memory_desc_init_by_tag(md, 2 + e->g.arch.ndim, dims, dt, tag), "memory_desc_init");
	return NNP_OK;
}

static int is_output(const struct nnp_net_graph *g, int t)
{
	if (t == g->out)
		return 1;
	for (int k = 0; k < g->n_ds; k++)
		if (g->ds_out[k] == t)
			return 1;
	return 0;
}

/* Activations are bfloat16 in a bf16 run, except the input and the logits. */
static int t_bf16(const struct nnp_engine *e, int t)
{
	return e->prec == NNP_PREC_BF16 && t != 0 && !is_output(&e->g, t);
}

static dnnl_data_type_t t_dt(const struct nnp_engine *e, int t)
{
	return t_bf16(e, t) ? dnnl_bf16 : dnnl_f32;
}

static dnnl_format_tag_t t_tag(const struct nnp_engine *e, int t)
{
	int nd = e->g.arch.ndim;
	if (t == 0)
		return plain_tag(nd);
	if (e->nxc)
		return nd == 3 ? dnnl_ndhwc : dnnl_nhwc;
	return blocked_tag(nd, e->block);
}

static int t_md(const struct nnp_engine *e, const struct plan *p, int t, dnnl_memory_desc_t *md)
{
	return act_md(e, p, t, t_dt(e, t), t_tag(e, t), md);
}

/* Lanes B and channel blocks Cb of a tensor: element (n, c, s) sits at
 * ((n * Cb + c / B) * S + s) * B + c % B (nCdhw16c: B = 16; channels-last:
 * B = C, Cb = 1). */
static void t_lanes(const struct nnp_engine *e, int t, int *B, int *Cb)
{
	int C = e->g.tensors[t].channels;
	*B = e->nxc ? C : e->block;
	*Cb = (C + *B - 1) / *B;
}

/* Liveness-based buffer reuse: tensor t gets buffer buf[t]; sizes[] grow
 * to the largest tensor assigned.  Shared by the plan and the estimate. */
struct bufplan {
	int *buf;           /* per tensor, -1 = none (input) */
	size_t *size;
	int nbuf;
};

static int last_uses(const struct nnp_net_graph *g, int *last)
{
	for (int t = 0; t < g->ntensors; t++)
		last[t] = -1;
	for (int i = 0; i < g->nops; i++) {
		const struct nnp_op *op = &g->ops[i];
		last[op->in] = i;
		if (op->in2 >= 0)
			last[op->in2] = i;
		last[op->out] = last[op->out] > i ? last[op->out] : i;
	}
	last[g->out] = g->nops;
	for (int k = 0; k < g->n_ds; k++)
		last[g->ds_out[k]] = g->nops;
	return NNP_OK;
}

static int assign_buffers(const struct nnp_net_graph *g, const size_t *tbytes, struct bufplan *bp)
{
	int *last = malloc((size_t)g->ntensors * sizeof *last);
	int *owner = malloc((size_t)g->ntensors * sizeof *owner); /* buffer -> tensor using it, -1 free */
	bp->buf = malloc((size_t)g->ntensors * sizeof *bp->buf);
	bp->size = calloc((size_t)g->ntensors, sizeof *bp->size);
	bp->nbuf = 0;
	if (!last || !owner || !bp->buf || !bp->size) {
		free(last);
		free(owner);
		return nnp_err(NNP_ENOMEM, "network plan: out of memory");
	}
	last_uses(g, last);
	for (int t = 0; t < g->ntensors; t++)
		bp->buf[t] = -1;
	for (int i = 0; i < g->nops; i++) {
		const struct nnp_op *op = &g->ops[i];
		int t = op->out, best = -1;
		if (!tbytes[t])
			continue; /* not materialised */
		if (op->kind == NNP_OP_NORM_ACT || op->kind == NNP_OP_ADD_ACT || bp->buf[t] >= 0)
			continue;
		for (int b = 0; b < bp->nbuf; b++) {
			int u = owner[b];
			if (u >= 0 && last[u] >= i)
				continue;
			/* best fit: the smallest free buffer that holds it, else the largest free one */
			if (best < 0 || (bp->size[b] >= tbytes[t] && (bp->size[best] < tbytes[t] ||
								      bp->size[b] < bp->size[best])) ||
			    (bp->size[best] < tbytes[t] && bp->size[b] > bp->size[best]))
				best = b;
		}
		if (best < 0)
			best = bp->nbuf++;
		if (bp->size[best] < tbytes[t])
			bp->size[best] = tbytes[t];
		owner[best] = t;
		bp->buf[t] = best;
	}
	free(last);
	free(owner);
	return NNP_OK;
}

static size_t tensor_bytes(const struct nnp_net_graph *g, int t, int n, const int64_t tsp[][3], int block,
			   size_t esize)
{
	size_t c = (size_t)((g->tensors[t].channels + block - 1) / block * block), v = 1;
	for (int d = 0; d < g->arch.ndim; d++)
		v *= (size_t)tsp[g->tensors[t].level][d];
	return (size_t)n * c * v * esize;
}

static void level_shapes(const struct nnp_net_arch *a, const int64_t *sp, int64_t tsp[][3])
{
	for (int l = 0; l < a->n_stages; l++)
		for (int d = 0; d < 3; d++)
			tsp[l][d] = d < a->ndim ? sp[d] / nnp_net_level_div(a, l, d) : 1;
}

uint64_t nnp_engine_mem_estimate(const struct nnp_net_graph *g, int n, const int64_t *spatial,
				 enum nnp_precision prec, int features)
{
	int64_t tsp[NNP_NET_MAX_STAGES + 1][3];
	size_t *tb = calloc((size_t)g->ntensors, sizeof *tb);
	struct bufplan bp = { 0 };
	uint64_t total = 0;
	if (!tb)
		return UINT64_MAX;
	level_shapes(&g->arch, spatial, tsp);
	for (int t = 1; t < g->ntensors; t++) {
		int bf = prec == NNP_PREC_BF16 && !is_output(g, t);
		tb[t] = tensor_bytes(g, t, n, tsp, bf ? 1 : 16, bf ? 2 : sizeof(float));
	}
	if (features)
		tb[g->out] = 0;
	if (assign_buffers(g, tb, &bp) == NNP_OK)
		for (int b = 0; b < bp.nbuf; b++)
			total += bp.size[b];
	else
		total = UINT64_MAX;
	free(bp.buf);
	free(bp.size);
	free(tb);
	return total;
}

/* Reorder src memory into a new buffer with md dst; returns the memory. */
static int reorder_now(struct nnp_engine *e, struct plan *p, dnnl_memory_t src, const dnnl_memory_desc_t *dst_md,
		       dnnl_memory_t *out)
{
	const dnnl_memory_desc_t *smd;
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t prim;
	dnnl_status_t st;
	void *buf;
	int rc;

	DN(dnnl_memory_get_memory_desc(src, &smd), "memory_get_memory_desc");
	if (!(buf = plan_alloc(p, dnnl_memory_desc_get_size(dst_md))))
		return NNP_ENOMEM;
	if ((rc = plan_mem(p, e, dst_md, buf, out)))
		return rc;
	DN(dnnl_reorder_primitive_desc_create(&pd, smd, e->eng, dst_md, e->eng, NULL), "reorder");
	st = dnnl_primitive_create(&prim, pd);
	dnnl_primitive_desc_destroy(pd);
	DN(st, "reorder primitive");
	{
		dnnl_exec_arg_t args[2] = { { DNNL_ARG_FROM, src }, { DNNL_ARG_TO, *out } };
		st = dnnl_primitive_execute(prim, e->stream, 2, args);
		if (st == dnnl_success)
			st = dnnl_stream_wait(e->stream);
	}
	dnnl_primitive_destroy(prim);
	DN(st, "reorder execute");
	return NNP_OK;
}

/* A user weight array (PyTorch layout) reordered to what the primitive wants. */
static int weight_mem(struct nnp_engine *e, struct plan *p, const float *w, const dnnl_dims_t dims, int nd,
		      dnnl_format_tag_t tag, const dnnl_memory_desc_t *want, dnnl_memory_t *out)
{
	dnnl_memory_desc_t umd;
	dnnl_memory_t um;
	int rc;
	DN(dnnl_memory_desc_init_by_tag(&umd, nd, dims, dnnl_f32, tag), "weights desc");
	if ((rc = plan_mem(p, e, &umd, (void *)w, &um)))
		return rc;
	return reorder_now(e, p, um, want, out);
}

static int bias_mem(struct nnp_engine *e, struct plan *p, const float *b, int64_t c, dnnl_memory_t *out)
{
	dnnl_memory_desc_t md;
	dnnl_dims_t d = { c };
	DN(dnnl_memory_desc_init_by_tag(&md, 1, d, dnnl_f32, dnnl_x), "bias desc");
	return plan_mem(p, e, &md, (void *)b, out);
}

static int create_prim(const void *desc, const dnnl_primitive_attr_t attr, struct nnp_engine *e,
		       dnnl_primitive_desc_t *pd)
{
	DN(dnnl_primitive_desc_create(pd, desc, attr, e->eng, NULL), "primitive_desc_create");
	return NNP_OK;
}

static int finish_step(struct plan *p, int opi, dnnl_primitive_desc_t pd, const dnnl_exec_arg_t *args, int nargs)
{
	struct step *s = plan_step(p, ST_DNNL, opi);
	dnnl_status_t st;
	if (!s) {
		dnnl_primitive_desc_destroy(pd);
		return NNP_ENOMEM;
	}
	st = dnnl_primitive_create(&s->prim, pd);
	dnnl_primitive_desc_destroy(pd);
	DN(st, "primitive_create");
	s->nargs = nargs;
	memcpy(s->args, args, (size_t)nargs * sizeof *args);
	return NNP_OK;
}

/* A run-time reorder of srcm into the shared scratch buffer (steps run one
 * after another and each reorder output is consumed by the next primitive). */
static int reorder_step(struct nnp_engine *e, struct plan *p, int opi, dnnl_memory_t srcm,
			const dnnl_memory_desc_t *want, dnnl_memory_t *out)
{
	const dnnl_memory_desc_t *smd;
	dnnl_primitive_desc_t pd;
	dnnl_exec_arg_t args[2];
	size_t bytes = dnnl_memory_desc_get_size(want);
	int rc;

	if (p->nscratch == (int)(sizeof p->scratch_users / sizeof p->scratch_users[0]))
		return nnp_err(NNP_EINTERNAL, "network plan: too many reorders");
	DN(dnnl_memory_get_memory_desc(srcm, &smd), "memory_get_memory_desc");
	if ((rc = plan_mem(p, e, want, DNNL_MEMORY_NONE, out)))
		return rc;
	p->scratch_users[p->nscratch++] = *out;
	if (bytes > p->scratch_bytes)
		p->scratch_bytes = bytes;
	DN(dnnl_reorder_primitive_desc_create(&pd, smd, e->eng, want, e->eng, NULL), "reorder");
	args[0] = (dnnl_exec_arg_t){ DNNL_ARG_FROM, srcm };
	args[1] = (dnnl_exec_arg_t){ DNNL_ARG_TO, *out };
	return finish_step(p, opi, pd, args, 2);
}

static dnnl_data_type_t conv_dt(const struct nnp_engine *e)
{
	return e->prec == NNP_PREC_BF16 ? dnnl_bf16 : dnnl_f32;
}

/* The common tail of a (transposed) convolution primitive pd: reorder the
 * source when the primitive wants another layout, reorder the weights (user
 * layout tag), bind the bias and the output tensor, add the step.  Takes pd. */
static int bind_conv(struct nnp_engine *e, struct plan *p, int opi, dnnl_primitive_desc_t pd, dnnl_memory_t srcm,
		     const float *w, const dnnl_dims_t wd, dnnl_format_tag_t wtag, const float *b, int64_t cout)
{
	dnnl_memory_desc_t src = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
	dnnl_memory_desc_t wei = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	const dnnl_memory_desc_t *have;
	dnnl_memory_t wm, bm = NULL;
	dnnl_exec_arg_t args[MAXARGS];
	int na = 0, rc;

	dnnl_memory_get_memory_desc(srcm, &have);
	/* only the network input (plain) or a bf16 run needs a reorder */
	if ((!dnnl_memory_desc_equal(have, &src) && (rc = reorder_step(e, p, opi, srcm, &src, &srcm))) ||
	    (rc = weight_mem(e, p, w, wd, 2 + e->g.arch.ndim, wtag, &wei, &wm)) ||
	    (b && (rc = bias_mem(e, p, b, cout, &bm)))) {
		dnnl_primitive_desc_destroy(pd);
		return rc;
	}
	args[na++] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, srcm };
	args[na++] = (dnnl_exec_arg_t){ DNNL_ARG_WEIGHTS, wm };
	if (bm)
		args[na++] = (dnnl_exec_arg_t){ DNNL_ARG_BIAS, bm };
	args[na++] = (dnnl_exec_arg_t){ DNNL_ARG_DST, p->tmem[e->g.ops[opi].out] };
	return finish_step(p, opi, pd, args, na);
}

/* One convolution primitive: dst (+)= conv(src, w) (+ bias). */
static int conv_prim(struct nnp_engine *e, struct plan *p, int opi, int src_t, const float *w, const float *b,
		     int sum)
{
	const struct nnp_op *op = &e->g.ops[opi];
	int nd = e->g.arch.ndim, rc;
	dnnl_memory_desc_t bia, dst, any_src, any_wei;
	dnnl_convolution_desc_t cd;
	dnnl_primitive_desc_t pd;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_dims_t wd, strides, pad;
	dnnl_memory_t srcm = p->tmem[src_t];
	int64_t cin = e->g.tensors[src_t].channels, cout = e->g.tensors[op->out].channels;

	if ((rc = act_md(e, p, src_t, conv_dt(e), dnnl_format_tag_any, &any_src)) || (rc = t_md(e, p, op->out, &dst)))
		return rc;
	wd[0] = cout;
	wd[1] = cin;
	for (int d = 0; d < nd; d++) {
		wd[2 + d] = op->kernel[d];
		strides[d] = op->stride[d];
		pad[d] = (op->kernel[d] - 1) / 2;
	}
	DN(dnnl_memory_desc_init_by_tag(&any_wei, 2 + nd, wd, conv_dt(e), dnnl_format_tag_any), "weights desc");
	if (b) {
		dnnl_dims_t bd = { cout };
		DN(dnnl_memory_desc_init_by_tag(&bia, 1, bd, dnnl_f32, dnnl_x), "bias desc");
	}
	DN(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &any_src,
					      &any_wei, b ? &bia : NULL, &dst, strides, pad, pad),
	   "convolution desc");
	if (sum) {
		dnnl_post_ops_t po;
		DN(dnnl_primitive_attr_create(&attr), "attr");
		DN(dnnl_post_ops_create(&po), "post_ops");
		dnnl_post_ops_append_sum(po, 1.0f);
		dnnl_primitive_attr_set_post_ops(attr, po);
		dnnl_post_ops_destroy(po);
	}
	rc = create_prim(&cd, attr, e, &pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	if (rc)
		return rc;
	return bind_conv(e, p, opi, pd, srcm, w, wd, nd == 3 ? dnnl_oidhw : dnnl_oihw, b, cout);
}

/* Transposed convolution, kernel = stride, no padding (PyTorch weight (in, out, k)). */
static int deconv_prim(struct nnp_engine *e, struct plan *p, int opi)
{
	const struct nnp_op *op = &e->g.ops[opi];
	const struct opw *w = &e->w[opi];
	int nd = e->g.arch.ndim, rc;
	dnnl_memory_desc_t any_src, any_wei, bia, dst;
	dnnl_deconvolution_desc_t dd;
	dnnl_primitive_desc_t pd;
	dnnl_dims_t wd, strides, pad = { 0 };
	dnnl_memory_t srcm = p->tmem[op->in];
	int64_t cin = e->g.tensors[op->in].channels, cout = e->g.tensors[op->out].channels;

	if ((rc = act_md(e, p, op->in, conv_dt(e), dnnl_format_tag_any, &any_src)) || (rc = t_md(e, p, op->out, &dst)))
		return rc;
	/* oneDNN's logical weight dims are (out, in, k); the user array is (in, out, k) = iodhw */
	wd[0] = cout;
	wd[1] = cin;
	for (int d = 0; d < nd; d++) {
		wd[2 + d] = op->kernel[d];
		strides[d] = op->stride[d];
		pad[d] = 0;
	}
	DN(dnnl_memory_desc_init_by_tag(&any_wei, 2 + nd, wd, conv_dt(e), dnnl_format_tag_any), "weights desc");
	if (w->b) {
		dnnl_dims_t bd = { cout };
		DN(dnnl_memory_desc_init_by_tag(&bia, 1, bd, dnnl_f32, dnnl_x), "bias desc");
	}
	DN(dnnl_deconvolution_forward_desc_init(&dd, dnnl_forward_inference, dnnl_deconvolution_direct, &any_src,
						&any_wei, w->b ? &bia : NULL, &dst, strides, pad, pad),
	   "deconvolution desc");
	if ((rc = create_prim(&dd, NULL, e, &pd)))
		return rc;
	return bind_conv(e, p, opi, pd, srcm, w->w, wd, nd == 3 ? dnnl_iodhw : dnnl_iohw, w->b, cout);
}

static int pool_prim(struct nnp_engine *e, struct plan *p, int opi)
{
	const struct nnp_op *op = &e->g.ops[opi];
	int nd = e->g.arch.ndim, rc;
	dnnl_memory_desc_t src, dst;
	dnnl_pooling_desc_t pdsc;
	dnnl_primitive_desc_t pd;
	dnnl_dims_t k, st, pad = { 0 };
	dnnl_exec_arg_t args[2];

	if ((rc = t_md(e, p, op->in, &src)) || (rc = t_md(e, p, op->out, &dst)))
		return rc;
	for (int d = 0; d < nd; d++) {
		k[d] = op->kernel[d];
		st[d] = op->stride[d];
		pad[d] = 0;
	}
	DN(dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_inference, dnnl_pooling_avg_exclude_padding, &src, &dst,
					  st, k, pad, pad),
	   "pooling desc");
	if ((rc = create_prim(&pdsc, NULL, e, &pd)))
		return rc;
	args[0] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, p->tmem[op->in] };
	args[1] = (dnnl_exec_arg_t){ DNNL_ARG_DST, p->tmem[op->out] };
	return finish_step(p, opi, pd, args, 2);
}

/* ---- OpenMP kernels on the blocked layout (n, C/B, spatial, B) ---- */

#define NORM_CHUNK 8192

static inline float bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static inline uint16_t f32_to_bf16(float f)
{
	union { float f; uint32_t u; } v = { f };
	uint32_t r = v.u + 0x7fffu + ((v.u >> 16) & 1u); /* round to nearest even */
	return (uint16_t)(((v.u & 0x7fffffffu) > 0x7f800000u ? v.u | 0x400000u : r) >> 16); /* NaN stays NaN */
}

/* The elements of one (sample, channel block) chunk: len voxels x B lanes. */
struct lanes {
	void *x;        /* float or uint16_t (bf16) */
	int bf16;
	int64_t len;
	int B, nvalid;  /* lanes, of which the first nvalid are real channels */
};

/* Hot loops are compiled for AVX-512 and AVX2 too and picked at run time
 * (the rest of the build targets the baseline x86-64). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NNP_NO_CLONES)
#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT
#endif

/* Sums over len voxels of 16 lanes starting at x (voxel stride B), in
 * registers; the generic tail handles nb < 16 lanes. */
#define SUMS_BODY(LOAD)                                                         \
	for (int b0 = 0; b0 < nv; b0 += 16) {                                   \
		int nb = nv - b0 < 16 ? nv - b0 : 16;                           \
		if (nb == 16) {                                                 \
			double ls[16] = { 0 }, lq[16] = { 0 };                  \
			for (int64_t v = 0; v < len; v++)                       \
				for (int b = 0; b < 16; b++) {                  \
					double t = LOAD(x[v * B + b0 + b]);     \
					ls[b] += t;                             \
					lq[b] += t * t;                         \
				}                                               \
			memcpy(s + b0, ls, sizeof ls);                          \
			memcpy(q + b0, lq, sizeof lq);                          \
		} else {                                                        \
			for (int64_t v = 0; v < len; v++)                       \
				for (int b = 0; b < nb; b++) {                  \
					double t = LOAD(x[v * B + b0 + b]);     \
					s[b0 + b] += t;                         \
					q[b0 + b] += t * t;                     \
				}                                               \
		}                                                               \
	}

#define LOAD_F32(e) (e)
#define LOAD_BF16(e) bf16_to_f32(e)

HOT static void sums_f32(const float *restrict x, int64_t len, int B, int nv, double *restrict s,
			 double *restrict q)
{
	SUMS_BODY(LOAD_F32)
}

HOT static void sums_bf16(const uint16_t *restrict x, int64_t len, int B, int nv, double *restrict s,
			  double *restrict q)
{
	SUMS_BODY(LOAD_BF16)
}

/* Per-lane sum and sum of squares in float64. */
static void lane_sums(const struct lanes *l, double *s, double *q)
{
	for (int b = 0; b < l->nvalid; b++)
		s[b] = q[b] = 0;
	if (l->bf16)
		sums_bf16(l->x, l->len, l->B, l->nvalid, s, q);
	else
		sums_f32(l->x, l->len, l->B, l->nvalid, s, q);
}

/* Written so that GCC vectorises them: max() for the LeakyReLU (slope in
 * [0, 1]: max(y, slope * y) is y for y >= 0 and slope * y below), bit
 * copies for bfloat16 (round to nearest even; finite values only). */
HOT static void apply_f32(float *restrict x, int64_t len, int B, int nv, const float *restrict a,
			  const float *restrict c, int act, float slope)
{
	float sl = act ? slope : 1.0f;
	for (int64_t v = 0; v < len; v++) {
		float *restrict row = x + v * B;
		for (int b = 0; b < nv; b++) {
			float y = row[b] * a[b] + c[b], m = y * sl;
			row[b] = y > m ? y : m;
		}
	}
}

HOT static void apply_bf16(uint16_t *restrict x, int64_t len, int B, int nv, const float *restrict a,
			   const float *restrict c, int act, float slope)
{
	float sl = act ? slope : 1.0f;
	for (int64_t v = 0; v < len; v++) {
		uint16_t *restrict row = x + v * B;
		for (int b = 0; b < nv; b++) {
			uint32_t u = (uint32_t)row[b] << 16, w;
			float y, m;
			memcpy(&y, &u, sizeof y);
			y = y * a[b] + c[b];
			m = y * sl;
			y = y > m ? y : m;
			memcpy(&w, &y, sizeof w);
			row[b] = (uint16_t)((w + 0x7fffu + ((w >> 16) & 1u)) >> 16);
		}
	}
}

/* y = x * a + c per lane, then LeakyReLU when act. */
static void lane_apply(const struct lanes *l, const float *a, const float *c, int act, float slope)
{
	if (l->bf16)
		apply_bf16(l->x, l->len, l->B, l->nvalid, a, c, act, slope);
	else
		apply_f32(l->x, l->len, l->B, l->nvalid, a, c, act, slope);
}

struct normp {
	int n, C, B, Cb, bf16;
	int64_t S;
	const float *gamma, *beta;
	double eps;
	float slope;
	int act;
};

static struct lanes norm_chunk(void *x, const struct normp *np, int64_t it, int64_t nch)
{
	int64_t blk = it / nch, c0 = (it % nch) * NORM_CHUNK;
	int cb = (int)(blk % np->Cb);
	size_t es = np->bf16 ? 2 : 4;
	struct lanes l = { (char *)x + (size_t)((blk * np->S + c0) * np->B) * es, np->bf16,
			   np->S - c0 < NORM_CHUNK ? np->S - c0 : NORM_CHUNK, np->B,
			   np->C - cb * np->B < np->B ? np->C - cb * np->B : np->B };
	return l;
}

/* Per-lane scale and shift of one (sample, channel block) from its partial sums. */
static void norm_coeffs(const struct normp *np, const double *part, int64_t blk, int64_t nch, float *ac)
{
	int B = np->B, cb = (int)(blk % np->Cb);
	for (int b = 0; b < B; b++) {
		int c = cb * B + b;
		double s = 0, q = 0, mean, var, rstd, g, be;
		for (int64_t k = 0; k < nch; k++) {
			s += part[(blk * nch + k) * 2 * B + b];
			q += part[(blk * nch + k) * 2 * B + B + b];
		}
		mean = s / (double)np->S;
		var = q / (double)np->S - mean * mean;
		rstd = 1.0 / sqrt((var > 0 ? var : 0) + np->eps);
		g = c < np->C && np->gamma ? np->gamma[c] : 1.0;
		be = c < np->C && np->beta ? np->beta[c] : 0.0;
		ac[b] = (float)(g * rstd);
		ac[B + b] = (float)(be - mean * g * rstd);
	}
}

/* InstanceNorm (+ LeakyReLU) in place: statistics per sample and channel
 * over all voxels in float64, biased variance (PyTorch's definition). */
static int norm_act(void *x, const struct normp *np)
{
	int B = np->B;
	int64_t nch = (np->S + NORM_CHUNK - 1) / NORM_CHUNK, nblk = (int64_t)np->n * np->Cb, nit = nblk * nch;
	double *part = calloc((size_t)nit * 2 * (size_t)B, sizeof *part);
	float *ac = malloc((size_t)nblk * 2 * (size_t)B * sizeof *ac);

	if (!part || !ac) {
		free(part);
		free(ac);
		return nnp_err(NNP_ENOMEM, "instance norm: out of memory");
	}
#pragma omp parallel for schedule(static)
	for (int64_t it = 0; it < nit; it++) {
		struct lanes l = norm_chunk(x, np, it, nch);
		lane_sums(&l, part + it * 2 * B, part + it * 2 * B + B);
	}
	for (int64_t blk = 0; blk < nblk; blk++)
		norm_coeffs(np, part, blk, nch, ac + blk * 2 * B);
#pragma omp parallel for schedule(static)
	for (int64_t it = 0; it < nit; it++) {
		struct lanes l = norm_chunk(x, np, it, nch);
		int64_t blk = it / nch;
		lane_apply(&l, ac + blk * 2 * B, ac + blk * 2 * B + B, np->act, np->slope);
	}
	free(part);
	free(ac);
	return NNP_OK;
}

/* x = LeakyReLU(x + y) over n elements of the same layout. */
HOT static void add_act(void *x, const void *y, size_t n, int bf16, float slope)
{
	if (!bf16) {
		float *a = x;
		const float *b = y;
#pragma omp parallel for schedule(static)
		for (size_t i = 0; i < n; i++) {
			float v = a[i] + b[i], m = v * slope;
			a[i] = v > m ? v : m;
		}
		return;
	}
	{
		uint16_t *a = x;
		const uint16_t *b = y;
#pragma omp parallel for schedule(static)
		for (size_t i = 0; i < n; i++) {
			float v = bf16_to_f32(a[i]) + bf16_to_f32(b[i]), m = v * slope;
			a[i] = f32_to_bf16(v > m ? v : m);
		}
	}
}

/* ---- plan building ---- */

static int tensor_mems(struct nnp_engine *e, struct plan *p)
{
	const struct nnp_net_graph *g = &e->g;
	int rc;
	size_t *tb = calloc((size_t)g->ntensors, sizeof *tb);
	struct bufplan bp = { 0 };
	void **bufs = NULL;

	if (!tb || !(p->tmem = calloc((size_t)g->ntensors, sizeof *p->tmem))) {
		free(tb);
		return nnp_err(NNP_ENOMEM, "network plan: out of memory");
	}
	for (int t = 1; t < g->ntensors; t++)
		tb[t] = tensor_bytes(g, t, p->n, (const int64_t(*)[3])p->tsp, t_bf16(e, t) ? 1 : e->block,
				     t_bf16(e, t) ? 2 : sizeof(float));
	if (p->features)
		tb[g->out] = 0; /* the head is not run: no logits tensor */
	if ((rc = assign_buffers(g, tb, &bp)))
		goto out;
	if (!(bufs = calloc((size_t)bp.nbuf + 1, sizeof *bufs))) {
		rc = nnp_err(NNP_ENOMEM, "network plan: out of memory");
		goto out;
	}
	for (int b = 0; b < bp.nbuf; b++)
		if (!(bufs[b] = plan_alloc(p, bp.size[b]))) {
			rc = NNP_ENOMEM;
			goto out;
		}
	for (int t = 0; t < g->ntensors && !rc; t++) {
		dnnl_memory_desc_t md;
		rc = t_md(e, p, t, &md);
		if (!rc)
			rc = plan_mem(p, e, &md, bp.buf[t] < 0 ? DNNL_MEMORY_NONE : bufs[bp.buf[t]], &p->tmem[t]);
	}
out:
	free(bufs);
	free(bp.buf);
	free(bp.size);
	free(tb);
	return rc;
}

static int op_steps(struct nnp_engine *e, struct plan *p, int i)
{
	const struct nnp_op *op = &e->g.ops[i];
	int rc;
	switch (op->kind) {
	case NNP_OP_CONV:
		if ((rc = conv_prim(e, p, i, op->in, e->w[i].w, e->w[i].b, 0)))
			return rc;
		return op->in2 >= 0 ? conv_prim(e, p, i, op->in2, e->w[i].w2, NULL, 1) : NNP_OK;
	case NNP_OP_DECONV:
		return deconv_prim(e, p, i);
	case NNP_OP_AVGPOOL:
		return pool_prim(e, p, i);
	case NNP_OP_NORM_ACT:
		return plan_step(p, ST_NORM, i) ? NNP_OK : NNP_ENOMEM;
	case NNP_OP_ADD_ACT:
		return plan_step(p, ST_ADD, i) ? NNP_OK : NNP_ENOMEM;
	}
	return nnp_err(NNP_EINTERNAL, "network plan: unknown operator %d", (int)op->kind);
}

/* The operator that computes the full-resolution logits (the seg head). */
static int head_op(const struct nnp_net_graph *g)
{
	for (int i = 0; i < g->nops; i++)
		if (g->ops[i].out == g->out)
			return i;
	return -1;
}

static int output_step(struct nnp_engine *e, struct plan *p)
{
	int src_t = p->features ? e->g.ops[head_op(&e->g)].in : e->g.out;
	dnnl_memory_desc_t md;
	dnnl_primitive_desc_t pd;
	const dnnl_memory_desc_t *src;
	dnnl_exec_arg_t args[2];
	int rc;

	if ((rc = act_md(e, p, src_t, dnnl_f32, plain_tag(e->g.arch.ndim), &md)) ||
	    (rc = plan_mem(p, e, &md, DNNL_MEMORY_NONE, &p->out_user)))
		return rc;
	DN(dnnl_memory_get_memory_desc(p->tmem[src_t], &src), "memory_get_memory_desc");
	DN(dnnl_reorder_primitive_desc_create(&pd, src, e->eng, &md, e->eng, NULL), "reorder");
	args[0] = (dnnl_exec_arg_t){ DNNL_ARG_FROM, p->tmem[src_t] };
	args[1] = (dnnl_exec_arg_t){ DNNL_ARG_TO, p->out_user };
	return finish_step(p, -1, pd, args, 2);
}

static int plan_build(struct nnp_engine *e, int n, const int64_t *sp, int features)
{
	struct plan *p = &e->plan;
	int rc;

	plan_release(p);
	p->n = n;
	p->features = features;
	for (int d = 0; d < 3; d++)
		p->sp[d] = d < e->g.arch.ndim ? sp[d] : 1;
	level_shapes(&e->g.arch, sp, p->tsp);
	if ((rc = tensor_mems(e, p)))
		goto fail;
	p->in_user = p->tmem[0];
	for (int i = 0; i < e->g.nops; i++)
		if ((!features || i != head_op(&e->g)) && (rc = op_steps(e, p, i)))
			goto fail;
	if ((rc = output_step(e, p)))
		goto fail;
	if (p->nscratch) {
		void *s = plan_alloc(p, p->scratch_bytes);
		if (!s) {
			rc = NNP_ENOMEM;
			goto fail;
		}
		for (int i = 0; i < p->nscratch; i++)
			dnnl_memory_set_data_handle(p->scratch_users[i], s);
	}
	p->valid = 1;
	return NNP_OK;
fail:
	plan_release(p);
	return rc;
}

static size_t tensor_elems(const struct nnp_engine *e, int t)
{
	const dnnl_memory_desc_t *md;
	dnnl_memory_get_memory_desc(e->plan.tmem[t], &md);
	return dnnl_memory_desc_get_size(md) / (t_bf16(e, t) ? 2 : sizeof(float));
}

static int run_step(struct nnp_engine *e, const struct step *s)
{
	const struct nnp_op *op = s->op >= 0 ? &e->g.ops[s->op] : NULL;
	void *x, *y;
	switch (s->kind) {
	case ST_DNNL:
		DN(dnnl_primitive_execute(s->prim, e->stream, s->nargs, s->args), "execute");
		return NNP_OK;
	case ST_NORM: {
		struct normp np = { e->plan.n, e->g.tensors[op->out].channels, 0, 0, t_bf16(e, op->out), 1,
				    e->w[s->op].gamma, e->w[s->op].beta, e->g.arch.norm_eps, (float)e->g.arch.slope,
				    op->act };
		int lvl = e->g.tensors[op->out].level;
		t_lanes(e, op->out, &np.B, &np.Cb);
		for (int d = 0; d < e->g.arch.ndim; d++)
			np.S *= e->plan.tsp[lvl][d];
		dnnl_memory_get_data_handle(e->plan.tmem[op->out], &x);
		return norm_act(x, &np);
	}
	case ST_ADD:
		dnnl_memory_get_data_handle(e->plan.tmem[op->out], &x);
		dnnl_memory_get_data_handle(e->plan.tmem[op->in2], &y);
		add_act(x, y, tensor_elems(e, op->out), t_bf16(e, op->out), (float)e->g.arch.slope);
		return NNP_OK;
	}
	return nnp_err(NNP_EINTERNAL, "network: unknown step");
}

static int forward(struct nnp_engine *e, int n, const int64_t *spatial, const float *in, float *out, int features)
{
	struct plan *p = &e->plan;
	int rc, same = p->valid && p->n == n && p->features == features;

#ifdef NNP_HAVE_CUDA
	if (e->cuda)
		return nnp_cuda_engine_forward(e->cuda, n, spatial, in, out, features);
#endif
	if (n < 1)
		return nnp_err(NNP_EUSAGE, "network: batch size %d", n);
	if ((rc = nnp_net_check_shape(&e->g.arch, spatial)))
		return rc;
	for (int d = 0; d < e->g.arch.ndim && same; d++)
		same = p->sp[d] == spatial[d];
	if (!same) {
		double t0 = omp_get_wtime();
		if ((rc = plan_build(e, n, spatial, features)))
			return rc;
		if (e->profile)
			fprintf(stderr, "nnp-engine: plan for batch %d built in %.1f ms\n", n, 1e3 * (omp_get_wtime() - t0));
	}
	dnnl_memory_set_data_handle(p->in_user, (void *)in);
	dnnl_memory_set_data_handle(p->out_user, out);
	for (int i = 0; i < p->nsteps; i++) {
		double t0 = e->profile ? omp_get_wtime() : 0;
		if ((rc = run_step(e, &p->steps[i])))
			return rc;
		if (e->profile) {
			const struct step *st = &p->steps[i];
			const char *k = st->kind == ST_NORM ? "norm" : st->kind == ST_ADD ? "add" :
					st->op < 0 ? "output" : e->g.ops[st->op].kind == NNP_OP_DECONV ? "deconv" :
					e->g.ops[st->op].kind == NNP_OP_AVGPOOL ? "pool" : "conv";
			fprintf(stderr, "nnp-engine: step %d %s (%s) %.2f ms\n", i, k, st->op >= 0 ? e->g.ops[st->op].w : "",
				1e3 * (omp_get_wtime() - t0));
		}
	}
	DN(dnnl_stream_wait(e->stream), "stream_wait");
	return NNP_OK;
}

int nnp_engine_forward(struct nnp_engine *e, int n, const int64_t *spatial, const float *in, float *out)
{
	return forward(e, n, spatial, in, out, 0);
}

int nnp_engine_forward_features(struct nnp_engine *e, int n, const int64_t *spatial, const float *in, float *out)
{
	return forward(e, n, spatial, in, out, 1);
}

int nnp_engine_head(const struct nnp_engine *e, int *features, int *classes, const float **w, const float **b)
{
	int h = head_op(&e->g);
	if (h < 0)
		return nnp_err(NNP_EINTERNAL, "network: no segmentation head");
	*features = e->g.tensors[e->g.ops[h].in].channels;
	*classes = e->g.tensors[e->g.out].channels;
	*w = e->w[h].w;
	*b = e->w[h].b;
	return NNP_OK;
}

/* ---- lifecycle ---- */

int nnp_engine_create(const struct nnp_net_graph *g, const struct nnp_param_src *params,
		      const struct nnp_engine_opts *o, struct nnp_engine **out)
{
	struct nnp_engine *e;
	int rc = NNP_OK;

	*out = NULL;
#ifndef NNP_HAVE_CUDA
	if (o && o->device >= 0)
		return nnp_err(NNP_EUSAGE, "device cuda:%d: %s", o->device, NNP_NO_CUDA_MSG);
#endif
	if (!(e = calloc(1, sizeof *e)))
		return nnp_err(NNP_ENOMEM, "network: out of memory");
	e->prec = o ? o->prec : NNP_PREC_FP32;
	e->block = cpu_block();
	e->nxc = e->prec == NNP_PREC_BF16;
	e->profile = getenv("NNP_ENGINE_PROFILE") != NULL;
	if ((rc = nnp_net_graph_copy(g, &e->g)) || !(e->w = calloc((size_t)g->nops, sizeof *e->w))) {
		nnp_engine_free(e);
		return rc ? rc : nnp_err(NNP_ENOMEM, "network: out of memory");
	}
	for (int i = 0; i < g->nops && !rc; i++)
		rc = load_op(g, &g->ops[i], params, &e->w[i]);
#ifdef NNP_HAVE_CUDA
	/* a CUDA engine: the graph and host weights (the heads, nnp_engine_head)
	   stay here, the network runs on the device */
	if (!rc && o && o->device >= 0) {
		if (!(rc = nnp_cuda_engine_create(g, params, o, &e->cuda))) {
			*out = e;
			return NNP_OK;
		}
		nnp_engine_free(e);
		return rc;
	}
#endif
	if (!rc && e->prec == NNP_PREC_BF16 && dnnl_get_effective_cpu_isa() < dnnl_cpu_isa_avx512_core_bf16)
		rc = nnp_err(NNP_EUSAGE, "bf16: this CPU has no AVX-512 BF16 (use fp32)");
	if (!rc && dnnl_engine_create(&e->eng, dnnl_cpu, 0) != dnnl_success)
		rc = nnp_err(NNP_EINTERNAL, "oneDNN: cannot create the CPU engine");
	if (!rc && dnnl_stream_create(&e->stream, e->eng, dnnl_stream_default_flags) != dnnl_success)
		rc = nnp_err(NNP_EINTERNAL, "oneDNN: cannot create a stream");
	if (rc) {
		nnp_engine_free(e);
		return rc;
	}
	*out = e;
	return NNP_OK;
}

void nnp_engine_free(struct nnp_engine *e)
{
	if (!e)
		return;
#ifdef NNP_HAVE_CUDA
	nnp_cuda_engine_free(e->cuda);
#endif
	plan_release(&e->plan);
	if (e->w)
		for (int i = 0; i < e->g.nops; i++) {
			free(e->w[i].w);
			free(e->w[i].w2);
			free(e->w[i].b);
			free(e->w[i].gamma);
			free(e->w[i].beta);
		}
	free(e->w);
	free(e->g.ops);
	free(e->g.tensors);
	if (e->stream)
		dnnl_stream_destroy(e->stream);
	if (e->eng)
		dnnl_engine_destroy(e->eng);
	free(e);
}
