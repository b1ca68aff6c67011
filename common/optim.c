/* optim.c — PolyLR, gradient-norm clipping, SGD (PyTorch semantics). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "optim.h"

#define NORM_BLOCK 65536        /* elements per partial sum of squares */
#define PAR_MIN 32768           /* entries smaller than this run on one thread */

double nnp_polylr(double initial_lr, int64_t epoch, int64_t max_epochs, double exponent)
{
	return initial_lr * pow(1.0 - (double)epoch / (double)max_epochs, exponent);
}

static int check_list(const struct nnp_param *p, int64_t np)
{
	if (np < 0)
		return nnp_err(NNP_EDATA, "optimizer: %lld parameter entries", (long long)np);
	for (int64_t i = 0; i < np; i++)
		if (p[i].n < 0 || (p[i].n > 0 && !p[i].w))
			return nnp_err(NNP_EDATA, "optimizer: parameter entry %lld has %lld elements%s", (long long)i,
				       (long long)p[i].n, p[i].n > 0 ? " and no weights" : "");
	return NNP_OK;
}

/* Sum of squares of g[0..n) in double over fixed blocks (blocks summed in
 * order), part holding ceil(n / NORM_BLOCK) doubles. */
static double sum_squares(const float *g, int64_t n, double *part)
{
	int64_t nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
	double s = 0;
	#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (int64_t k = 0; k < nb; k++) {
		int64_t lo = k * NORM_BLOCK, hi = lo + NORM_BLOCK < n ? lo + NORM_BLOCK : n;
		double a = 0;
		for (int64_t i = lo; i < hi; i++)
			a += (double)g[i] * (double)g[i];
		part[k] = a;
	}
	for (int64_t k = 0; k < nb; k++)
		s += part[k];
	return s;
}

int nnp_clip_grad_norm(const struct nnp_param *p, int64_t np, double max_norm, double *total_norm)
{
	int64_t maxn = 0;
	double ss = 0, *part;
	int rc = check_list(p, np);
	if (rc < 0)
		return rc;
	for (int64_t i = 0; i < np; i++)
		if (p[i].g && p[i].n > maxn)
			maxn = p[i].n;
	if (!(part = malloc(sizeof(double) * (size_t)((maxn + NORM_BLOCK - 1) / NORM_BLOCK + 1))))
		return nnp_err(NNP_ENOMEM, "optimizer: out of memory");
	for (int64_t i = 0; i < np; i++)
		if (p[i].g)
			ss += sum_squares(p[i].g, p[i].n, part);
	free(part);
	double total = sqrt(ss), coef = max_norm / (total + 1e-6);
	if (total_norm)
		*total_norm = total;
	if (!isfinite(total) || !(coef < 1.0))
		return NNP_OK;
	float cf = (float)coef;
	for (int64_t i = 0; i < np; i++) {
		float *g = p[i].g;
		if (!g)
			continue;
		#pragma omp parallel for schedule(static) if (p[i].n >= PAR_MIN)
		for (int64_t j = 0; j < p[i].n; j++)
			g[j] *= cf;
	}
	return NNP_OK;
}

void nnp_sgd_zero(struct nnp_sgd *o)
{
	memset(o, 0, sizeof *o);
}

void nnp_sgd_release(struct nnp_sgd *o)
{
	if (o->buf)
		for (int64_t i = 0; i < o->np; i++)
			free(o->buf[i]);
	free(o->buf);
	free(o->n);
	free(o->has_buf);
	nnp_sgd_zero(o);
}

int nnp_sgd_init(struct nnp_sgd *o, const struct nnp_param *p, int64_t np, double momentum,
		 double weight_decay, int nesterov)
{
	int rc;
	nnp_sgd_zero(o);
	if ((rc = check_list(p, np)) < 0)
		return rc;
	if (!(momentum >= 0 && momentum < 1) || !(weight_decay >= 0) || (nesterov && momentum <= 0))
		return nnp_err(NNP_EDATA, "optimizer: bad SGD settings (momentum %g, weight decay %g, nesterov %d)",
			       momentum, weight_decay, nesterov);
	o->momentum = momentum;
	o->weight_decay = weight_decay;
	o->nesterov = nesterov != 0;
	o->np = np;
	o->n = malloc(sizeof(int64_t) * (size_t)(np + 1));
	o->buf = calloc((size_t)(np + 1), sizeof(float *));
	o->has_buf = calloc((size_t)(np + 1), 1);
	if (!o->n || !o->buf || !o->has_buf)
		goto oom;
	for (int64_t i = 0; i < np; i++) {
		o->n[i] = p[i].n;
		if (!(o->buf[i] = calloc((size_t)(p[i].n + 1), sizeof(float))))
			goto oom;
	}
	return NNP_OK;
oom:
	nnp_sgd_release(o);
	return nnp_err(NNP_ENOMEM, "optimizer: out of memory for the momentum buffers");
}

/* The update loop has an FMA clone (fmaf then is one instruction; without
 * FMA hardware it is libm's exact fmaf), picked at run time.  Only the
 * explicit fmaf calls fuse: ISO C mode (-std=c11) keeps GCC from contracting
 * buf * mom + d. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NNP_NO_CLONES)
#define FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FMA_CLONES
#endif

struct sgd_k {
	float wd, mom, nlr;
	int nesterov, use_mom, first;
};

FMA_CLONES
static void sgd_range(const struct sgd_k *k, float *w, const float *g, float *buf, int64_t lo, int64_t hi)
{
	for (int64_t i = lo; i < hi; i++) {
		float d = k->wd != 0 ? fmaf(k->wd, w[i], g[i]) : g[i];    /* grad.add(param, alpha=wd) */
		if (k->use_mom) {
			float b = k->first ? d : buf[i] * k->mom + d;     /* buf.mul_(mom).add_(d) */
			buf[i] = b;
			d = k->nesterov ? fmaf(k->mom, b, d) : b;         /* d.add(buf, alpha=mom) */
		}
		w[i] = fmaf(k->nlr, d, w[i]);                             /* param.add_(d, alpha=-lr) */
	}
}

/* One entry's update in float32, in blocks; first: the buffer is d itself. */
static void sgd_entry(const struct nnp_sgd *o, float *w, const float *g, float *buf, int64_t n, int first, float lr)
{
	enum { BLK = 16384 };
	const struct sgd_k k = { (float)o->weight_decay, (float)o->momentum, -lr, o->nesterov, o->momentum != 0,
				 first };
	int64_t nb = (n + BLK - 1) / BLK;
	#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (int64_t q = 0; q < nb; q++)
		sgd_range(&k, w, g, buf, q * BLK, q * BLK + BLK < n ? q * BLK + BLK : n);
}

static int check_same(const struct nnp_sgd *o, const struct nnp_param *p, int64_t np)
{
	int rc = check_list(p, np);
	if (rc < 0)
		return rc;
	if (np != o->np)
		return nnp_err(NNP_EDATA, "optimizer: %lld parameter entries, the optimizer has %lld", (long long)np,
			       (long long)o->np);
	for (int64_t i = 0; i < np; i++)
		if (p[i].n != o->n[i])
			return nnp_err(NNP_EDATA, "optimizer: parameter entry %lld has %lld elements, not %lld",
				       (long long)i, (long long)p[i].n, (long long)o->n[i]);
	return NNP_OK;
}

int nnp_sgd_step(struct nnp_sgd *o, const struct nnp_param *p, int64_t np, double lr)
{
	int rc = check_same(o, p, np);
	if (rc < 0)
		return rc;
	for (int64_t i = 0; i < np; i++) {
		if (!p[i].g)
			continue;
		sgd_entry(o, p[i].w, p[i].g, o->buf[i], p[i].n, !o->has_buf[i], (float)lr);
		o->has_buf[i] = o->momentum != 0;
	}
	o->steps++;
	return NNP_OK;
}

int64_t nnp_sgd_state_len(const struct nnp_sgd *o)
{
	int64_t s = 0;
	for (int64_t i = 0; i < o->np; i++)
		s += o->n[i];
	return s;
}

const float *nnp_sgd_buffer(const struct nnp_sgd *o, int64_t i)
{
	return i >= 0 && i < o->np && o->has_buf[i] ? o->buf[i] : NULL;
}

void nnp_sgd_export(const struct nnp_sgd *o, float *flat, uint8_t *has)
{
	for (int64_t i = 0; i < o->np; i++) {
		if (o->has_buf[i])
			memcpy(flat, o->buf[i], sizeof(float) * (size_t)o->n[i]);
		else
			memset(flat, 0, sizeof(float) * (size_t)o->n[i]);
		flat += o->n[i];
		if (has)
			has[i] = o->has_buf[i];
	}
}

int nnp_sgd_import(struct nnp_sgd *o, const float *flat, const uint8_t *has, int64_t len)
{
	if (len != nnp_sgd_state_len(o))
		return nnp_err(NNP_EDATA, "optimizer: state of %lld values, the parameters have %lld", (long long)len,
			       (long long)nnp_sgd_state_len(o));
	for (int64_t i = 0; i < o->np; i++) {
		o->has_buf[i] = has ? has[i] != 0 : 1;
		if (o->has_buf[i])
			memcpy(o->buf[i], flat, sizeof(float) * (size_t)o->n[i]);
		else
			memset(o->buf[i], 0, sizeof(float) * (size_t)o->n[i]);
		flat += o->n[i];
	}
	return NNP_OK;
}
