/* loss.c — nnU-Net's DC_and_CE / DC_and_BCE losses with gradients, deep
 * supervision targets and weights, validation pseudo-Dice counts.
 *
 * Both losses run two passes over fixed chunks of NNP_LOSS_CHUNK voxels of
 * one sample: pass 1 stores per-chunk partial sums (Dice I/Sp/Sg per channel,
 * the CE/BCE numerator, the mask count), combined in chunk order, and parks
 * the probabilities (float32) in the gradient array; pass 2 turns them into
 * the gradient in place.  Chunks are fixed,
 * so the results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "loss.h"

#define CH NNP_LOSS_CHUNK
#define DICE_CLIP 1e-8

int64_t nnp_loss_nvox(const struct nnp_loss_shape *s)
{
	int64_t v = 1;
	if (s->dim != 2 && s->dim != 3)
		return -1;
	for (int a = 0; a < s->dim; a++) {
		if (s->n[a] < 1 || v > INT64_MAX / 4 / s->n[a])
			return -1;
		v *= s->n[a];
	}
	return v;
}

/* Voxels per plane, checked against b and c so that b*c*nvox fits. */
static int64_t check_shape(const struct nnp_loss_shape *s, int64_t cmin)
{
	int64_t nv = nnp_loss_nvox(s);
	if (nv < 0)
		return nnp_err(NNP_EDATA, "loss: bad spatial shape (rank %d)", s->dim), -1;
	if (s->b < 1 || s->c < cmin || s->c > INT32_MAX || s->b > INT64_MAX / s->c / nv)
		return nnp_err(NNP_EDATA, "loss: bad tensor shape (B %lld, C %lld)", (long long)s->b,
			       (long long)s->c), -1;
	return nv;
}

/* ---- chunked partial sums ---- */

/* Per chunk: I[k], Sp[k], Sg[k] (k < K), then the CE numerator and the mask
 * count. */
struct acc {
	int64_t b, nq, k;   /* samples, chunks per sample, Dice channels */
	int64_t stride;     /* doubles per chunk: 3k + 2 */
	double *part;       /* b * nq chunks */
};

static int acc_alloc(struct acc *a, int64_t b, int64_t nvox, int64_t k)
{
	a->b = b;
	a->nq = (nvox + CH - 1) / CH;
	a->k = k;
	a->stride = 3 * k + 2;
	a->part = calloc((size_t)(b * a->nq * a->stride), sizeof(double));
	return a->part ? NNP_OK : nnp_err(NNP_ENOMEM, "loss: out of memory");
}

/* The Dice/CE terms from the partial sums: dc entries (K, or B*K without
 * batch dice), coefficients of dL/dprob (coefA for y = 1, coefB for all
 * masked-in voxels), the CE numerator and mask count. */
struct terms {
	int64_t ndc;          /* dc entries */
	double dice;          /* -mean(dc) */
	double ce_sum, mask_sum;
	double *coefA, *coefB;   /* ndc each */
};

static void sum_sample(const struct acc *a, int64_t b, double *out)
{
	memset(out, 0, sizeof(double) * (size_t)a->stride);
	for (int64_t q = 0; q < a->nq; q++) {
		const double *p = a->part + (b * a->nq + q) * a->stride;
		for (int64_t i = 0; i < a->stride; i++)
			out[i] += p[i];
	}
}

/* dc = (2I + smooth) / max(Sg + Sp + smooth, 1e-8); d(-mean dc)/dp =
 * -(2y/den - num/den^2)/ndc where den is not clipped, -(2y/den)/ndc where it is. */
static double dice_entry(const double *isg, int64_t k, int64_t K, double ndc, double *A, double *B)
{
	double I = isg[k], Sp = isg[K + k], Sg = isg[2 * K + k];
	double num = 2 * I + NNP_LOSS_SMOOTH, den = Sg + Sp + NNP_LOSS_SMOOTH;
	int clipped = den < DICE_CLIP;
	if (clipped)
		den = DICE_CLIP;
	*A = -2.0 / (den * ndc);
	*B = clipped ? 0.0 : num / (den * den * ndc);
	return num / den;
}

static int terms_compute(const struct acc *a, int batch_dice, struct terms *t)
{
	int64_t K = a->k, nb = batch_dice ? 1 : a->b;
	double *all = calloc((size_t)((a->b + 1) * a->stride), sizeof(double));
	t->ndc = nb * K;
	t->coefA = malloc(sizeof(double) * (size_t)(t->ndc ? t->ndc : 1));
	t->coefB = malloc(sizeof(double) * (size_t)(t->ndc ? t->ndc : 1));
	if (!all || !t->coefA || !t->coefB) {
		free(all);
		return nnp_err(NNP_ENOMEM, "loss: out of memory");
	}
	double *tot = all + a->b * a->stride;   /* sums over the batch, in sample order */
	for (int64_t b = 0; b < a->b; b++) {
		double *sb = all + b * a->stride;
		sum_sample(a, b, sb);
		for (int64_t i = 0; i < a->stride; i++)
			tot[i] += sb[i];
	}
	double dcsum = 0;
	for (int64_t b = 0; b < nb; b++) {
		const double *src = batch_dice ? tot : all + b * a->stride;
		for (int64_t k = 0; k < K; k++)
			dcsum += dice_entry(src, k, K, (double)t->ndc, &t->coefA[b * K + k], &t->coefB[b * K + k]);
	}
	t->dice = t->ndc ? -dcsum / (double)t->ndc : NAN;
	t->ce_sum = tot[3 * K];
	t->mask_sum = tot[3 * K + 1];
	free(all);
	return NNP_OK;
}

static void terms_release(struct terms *t)
{
	free(t->coefA);
	free(t->coefB);
	t->coefA = t->coefB = NULL;
}

/* ---- labels: softmax ---- */

/* The label of each voxel of a chunk with the mask folded in: -1 = ignored. */
static void chunk_labels(const int16_t *t, int64_t len, const struct nnp_loss_opts *o, int *lab)
{
	for (int64_t v = 0; v < len; v++)
		lab[v] = o->has_ignore && t[v] == o->ignore_label ? -1 : t[v];
}

/* p[c*CH + v] = softmax over c of z (planes nvox apart), lse[v] =
 * max + log(sum exp(z - max)). */
static void softmax_chunk(const float *z, int64_t C, int64_t nvox, int64_t len, double *p, double *lse)
{
	double *mx = lse;
	for (int64_t v = 0; v < len; v++)
		mx[v] = z[v];
	for (int64_t c = 1; c < C; c++)
		for (int64_t v = 0; v < len; v++)
			mx[v] = z[c * nvox + v] > mx[v] ? z[c * nvox + v] : mx[v];
	double *sum = p + C * CH;
	for (int64_t v = 0; v < len; v++)
		sum[v] = 0;
	for (int64_t c = 0; c < C; c++)
		for (int64_t v = 0; v < len; v++) {
			double e = exp((double)z[c * nvox + v] - mx[v]);
			p[c * CH + v] = e;
			sum[v] += e;
		}
	for (int64_t c = 0; c < C; c++)
		for (int64_t v = 0; v < len; v++)
			p[c * CH + v] /= sum[v];
	for (int64_t v = 0; v < len; v++)
		lse[v] = mx[v] + log(sum[v]);
}

struct lab_ctx {
	const struct nnp_loss_shape *s;
	const float *z;
	const int16_t *t;
	const struct nnp_loss_opts *o;
	int64_t nvox;
};

/* Scratch of one thread: p (C+1 planes of CH), lse, labels. */
struct scratch {
	double *p, *lse;
	int *lab;
};

static int scratch_alloc(struct scratch *w, int64_t planes)
{
	w->p = malloc(sizeof(double) * (size_t)(planes * CH));
	w->lse = malloc(sizeof(double) * CH);
	w->lab = malloc(sizeof(int) * CH);
	return w->p && w->lse && w->lab;
}

static void scratch_release(struct scratch *w)
{
	free(w->p);
	free(w->lse);
	free(w->lab);
}

static void lab_pass1_chunk(const struct lab_ctx *x, struct scratch *w, int64_t b, int64_t v0, int64_t len,
			    double *part, float *park)
{
	int64_t C = x->s->c, K = C - 1;
	const float *z = x->z + b * C * x->nvox + v0;
	chunk_labels(x->t + b * x->nvox + v0, len, x->o, w->lab);
	softmax_chunk(z, C, x->nvox, len, w->p, w->lse);
	for (int64_t c = 1; c < C; c++) {
		double I = 0, Sp = 0, Sg = 0;
		const double *pc = w->p + c * CH;
		for (int64_t v = 0; v < len; v++) {
			if (w->lab[v] < 0)
				continue;
			Sp += pc[v];
			if (w->lab[v] == c) {
				I += pc[v];
				Sg += 1;
			}
		}
		part[c - 1] = I;
		part[K + c - 1] = Sp;
		part[2 * K + c - 1] = Sg;
	}
	double ce = 0, m = 0;
	for (int64_t v = 0; v < len; v++) {
		if (w->lab[v] < 0)
			continue;
		ce += w->lse[v] - (double)z[(int64_t)w->lab[v] * x->nvox + v];
		m += 1;
	}
	part[3 * K] = ce;
	part[3 * K + 1] = m;
	if (park)
		for (int64_t c = 0; c < C; c++)
			for (int64_t v = 0; v < len; v++)
				park[b * C * x->nvox + c * x->nvox + v0 + v] = (float)w->p[c * CH + v];
}

static void lab_pass2_chunk(const struct lab_ctx *x, struct scratch *w, const struct terms *t, double scale,
			    int64_t b, int64_t v0, int64_t len, float *grad)
{
	int64_t C = x->s->c, K = C - 1;
	float *g = grad + b * C * x->nvox + v0;
	const double *A = t->coefA + (x->o->batch_dice ? 0 : b * K), *B = t->coefB + (x->o->batch_dice ? 0 : b * K);
	double ce_w = t->mask_sum > 0 ? 1.0 / t->mask_sum : 0.0;
	double *dot = w->p + C * CH;
	chunk_labels(x->t + b * x->nvox + v0, len, x->o, w->lab);
	for (int64_t c = 0; c < C; c++)
		for (int64_t v = 0; v < len; v++)
			w->p[c * CH + v] = g[c * x->nvox + v];   /* parked by pass 1 */
	for (int64_t v = 0; v < len; v++)
		dot[v] = 0;
	for (int64_t c = 1; c < C; c++)
		for (int64_t v = 0; v < len; v++)
			if (w->lab[v] >= 0)
				dot[v] += w->p[c * CH + v] * ((w->lab[v] == c ? A[c - 1] : 0.0) + B[c - 1]);
	for (int64_t c = 0; c < C; c++)
		for (int64_t v = 0; v < len; v++) {
			double p = w->p[c * CH + v], d = 0;
			int l = w->lab[v];
			if (l >= 0) {
				double gc = c == 0 ? 0.0 : (l == c ? A[c - 1] : 0.0) + B[c - 1];
				d = ce_w * (p - (l == c)) + p * (gc - dot[v]);
			}
			g[c * x->nvox + v] = (float)(scale * d);
		}
}

static int check_labels(const struct nnp_loss_shape *s, const int16_t *t, int64_t nvox,
			const struct nnp_loss_opts *o)
{
	int64_t n = s->b * nvox, bad = n;
	if (o->has_ignore && o->ignore_label >= 0 && o->ignore_label < s->c)
		return nnp_err(NNP_EDATA, "loss: ignore label %d is also a class (C = %lld)", o->ignore_label,
			       (long long)s->c);
	#pragma omp parallel for schedule(static) reduction(min:bad)
	for (int64_t i = 0; i < n; i++)
		if (i < bad && (t[i] < 0 || t[i] >= s->c) && !(o->has_ignore && t[i] == o->ignore_label))
			bad = i;
	if (bad < n)
		return nnp_err(NNP_EDATA, "loss: target value %d at sample %lld voxel %lld is not a label 0..%lld%s",
			       t[bad], (long long)(bad / nvox), (long long)(bad % nvox), (long long)s->c - 1,
			       o->has_ignore ? " nor the ignore label" : "");
	return NNP_OK;
}

/* Run pass 1 (the sums; the probabilities parked in grad unless it is NULL)
 * or pass 2 (the gradient from the parked probabilities) over every chunk. */
enum pass { PASS_STATS, PASS_GRAD };

static int lab_run(const struct lab_ctx *x, struct acc *a, const struct terms *t, double scale, float *grad,
		   enum pass ps)
{
	int64_t nchunks = x->s->b * a->nq;
	int fail = 0;
	#pragma omp parallel reduction(|:fail)
	{
		struct scratch w;
		if (!scratch_alloc(&w, x->s->c + 1))
			fail = 1;
		#pragma omp for schedule(static)
		for (int64_t q = 0; q < nchunks; q++) {
			int64_t b = q / a->nq, v0 = (q % a->nq) * CH;
			int64_t len = x->nvox - v0 < CH ? x->nvox - v0 : CH;
			if (fail)
				continue;
			if (ps == PASS_STATS)
				lab_pass1_chunk(x, &w, b, v0, len, a->part + q * a->stride, grad);
			else
				lab_pass2_chunk(x, &w, t, scale, b, v0, len, grad);
		}
		scratch_release(&w);
	}
	return fail ? nnp_err(NNP_ENOMEM, "loss: out of memory") : NNP_OK;
}

int nnp_loss_dc_ce(const struct nnp_loss_shape *s, const float *logits, const int16_t *target,
		   const struct nnp_loss_opts *o, double grad_scale, float *grad, struct nnp_loss_value *v)
{
	int64_t nvox = check_shape(s, 2);
	struct acc a = { 0 };
	struct terms t = { 0 };
	int rc;
	if (nvox < 0)
		return NNP_EDATA;
	if ((rc = check_labels(s, target, nvox, o)) < 0 || (rc = acc_alloc(&a, s->b, nvox, s->c - 1)) < 0)
		return rc;
	struct lab_ctx x = { s, logits, target, o, nvox };
	if ((rc = lab_run(&x, &a, NULL, 0, grad, PASS_STATS)) < 0 || (rc = terms_compute(&a, o->batch_dice, &t)) < 0)
		goto out;
	if (grad && (rc = lab_run(&x, &a, &t, grad_scale, grad, PASS_GRAD)) < 0)
		goto out;
	if (v) {
		v->ce = t.mask_sum > 0 ? t.ce_sum / t.mask_sum : 0.0;
		v->dice = t.dice;
		v->total = v->ce + v->dice;
	}
out:
	terms_release(&t);
	free(a.part);
	return rc;
}

/* ---- regions: sigmoid ---- */

struct reg_ctx {
	const struct nnp_loss_shape *s;
	const float *z;
	const uint8_t *t;
	const struct nnp_loss_opts *o;
	int64_t nvox, tch;     /* target channels: R (+1) */
};

static double sigmoid(double z)
{
	if (z >= 0)
		return 1.0 / (1.0 + exp(-z));
	double e = exp(z);
	return e / (1.0 + e);
}

/* max(z, 0) - z y + log(1 + exp(-|z|)) */
static double bce(double z, double y)
{
	return fmax(z, 0.0) - z * y + log1p(exp(-fabs(z)));
}

/* Mask of a chunk into w->lab (1 = counted). */
static void chunk_mask(const struct reg_ctx *x, int64_t b, int64_t v0, int64_t len, int *m)
{
	const uint8_t *ig = x->t + (b * x->tch + x->tch - 1) * x->nvox + v0;
	for (int64_t v = 0; v < len; v++)
		m[v] = x->o->has_ignore ? !ig[v] : 1;
}

static void reg_pass1_chunk(const struct reg_ctx *x, struct scratch *w, int64_t b, int64_t v0, int64_t len,
			    double *part, float *park)
{
	int64_t R = x->s->c;
	double l = 0, msum = 0;
	chunk_mask(x, b, v0, len, w->lab);
	for (int64_t r = 0; r < R; r++) {
		const float *z = x->z + (b * R + r) * x->nvox + v0;
		const uint8_t *y = x->t + (b * x->tch + r) * x->nvox + v0;
		float *pk = park ? park + (b * R + r) * x->nvox + v0 : NULL;
		double I = 0, Sp = 0, Sg = 0;
		for (int64_t v = 0; v < len; v++) {
			if (!w->lab[v])
				continue;
			double p = sigmoid(z[v]);
			l += bce(z[v], y[v]);
			if (pk)
				pk[v] = (float)p;   /* after the last read of z[v]: grad may be z */
			Sp += p;
			if (y[v]) {
				I += p;
				Sg += 1;
			}
		}
		part[r] = I;
		part[R + r] = Sp;
		part[2 * R + r] = Sg;
	}
	for (int64_t v = 0; v < len; v++)
		msum += w->lab[v];
	part[3 * R] = l;
	part[3 * R + 1] = msum;
}

static void reg_pass2_chunk(const struct reg_ctx *x, struct scratch *w, const struct terms *t, double scale,
			    double bce_w, int64_t b, int64_t v0, int64_t len, float *grad)
{
	int64_t R = x->s->c;
	const double *A = t->coefA + (x->o->batch_dice ? 0 : b * R), *B = t->coefB + (x->o->batch_dice ? 0 : b * R);
	chunk_mask(x, b, v0, len, w->lab);
	for (int64_t r = 0; r < R; r++) {
		const uint8_t *y = x->t + (b * x->tch + r) * x->nvox + v0;
		float *g = grad + (b * R + r) * x->nvox + v0;
		for (int64_t v = 0; v < len; v++) {
			double d = 0;
			if (w->lab[v]) {
				double p = g[v];   /* parked by pass 1 */
				double dp = (y[v] ? A[r] : 0.0) + B[r];
				d = bce_w * (p - y[v]) + dp * p * (1.0 - p);
			}
			g[v] = (float)(scale * d);
		}
	}
}

static int check_regions(const struct reg_ctx *x)
{
	int64_t n = x->s->b * x->tch * x->nvox, bad = n;
	#pragma omp parallel for schedule(static) reduction(min:bad)
	for (int64_t i = 0; i < n; i++)
		if (i < bad && x->t[i] > 1)
			bad = i;
	if (bad < n)
		return nnp_err(NNP_EDATA, "loss: region target value %d at sample %lld channel %lld voxel %lld is not 0 or 1",
			       x->t[bad], (long long)(bad / x->nvox / x->tch), (long long)(bad / x->nvox % x->tch),
			       (long long)(bad % x->nvox));
	return NNP_OK;
}

static int reg_run(const struct reg_ctx *x, struct acc *a, const struct terms *t, double scale, double bce_w,
		   float *grad, enum pass ps)
{
	int64_t nchunks = x->s->b * a->nq;
	int fail = 0;
	#pragma omp parallel reduction(|:fail)
	{
		struct scratch w = { 0 };
		w.lab = malloc(sizeof(int) * CH);
		if (!w.lab)
			fail = 1;
		#pragma omp for schedule(static)
		for (int64_t q = 0; q < nchunks; q++) {
			int64_t b = q / a->nq, v0 = (q % a->nq) * CH;
			int64_t len = x->nvox - v0 < CH ? x->nvox - v0 : CH;
			if (fail)
				continue;
			if (ps == PASS_STATS)
				reg_pass1_chunk(x, &w, b, v0, len, a->part + q * a->stride, grad);
			else
				reg_pass2_chunk(x, &w, t, scale, bce_w, b, v0, len, grad);
		}
		free(w.lab);
	}
	return fail ? nnp_err(NNP_ENOMEM, "loss: out of memory") : NNP_OK;
}

int nnp_loss_dc_bce(const struct nnp_loss_shape *s, const float *logits, const uint8_t *target,
		    const struct nnp_loss_opts *o, double grad_scale, float *grad, struct nnp_loss_value *v)
{
	int64_t nvox = check_shape(s, 1);
	struct acc a = { 0 };
	struct terms t = { 0 };
	int rc;
	if (nvox < 0)
		return NNP_EDATA;
	struct reg_ctx x = { s, logits, target, o, nvox, s->c + (o->has_ignore ? 1 : 0) };
	if ((rc = check_regions(&x)) < 0 || (rc = acc_alloc(&a, s->b, nvox, s->c)) < 0)
		return rc;
	if ((rc = reg_run(&x, &a, NULL, 0, 0, grad, PASS_STATS)) < 0 || (rc = terms_compute(&a, o->batch_dice, &t)) < 0)
		goto out;
	/* BCE denominator: every element, or the masked-in voxels once */
	double den = o->has_ignore ? fmax(t.mask_sum, 1e-8) : (double)(s->b * s->c * nvox);
	if (grad && (rc = reg_run(&x, &a, &t, grad_scale, 1.0 / den, grad, PASS_GRAD)) < 0)
		goto out;
	if (v) {
		v->ce = t.ce_sum / den;
		v->dice = t.dice;
		v->total = v->ce + v->dice;
	}
out:
	terms_release(&t);
	free(a.part);
	return rc;
}

/* ---- deep supervision ---- */

int nnp_ds_scales(const int64_t *strides, int n_stages, int dim, double *scales)
{
	double cum[3] = { 1, 1, 1 };
	if (n_stages < 1 || n_stages > NNP_DS_MAX + 1 || dim < 1 || dim > 3)
		return nnp_err(NNP_EDATA, "deep supervision: bad strides (%d stages, rank %d)", n_stages, dim);
	for (int i = 0; i < n_stages - 1; i++)
		for (int a = 0; a < dim; a++) {
			if (strides[i * dim + a] < 1)
				return nnp_err(NNP_EDATA, "deep supervision: stride %lld of stage %d is < 1",
					       (long long)strides[i * dim + a], i);
			cum[a] *= (double)strides[i * dim + a];
			scales[i * dim + a] = 1.0 / cum[a];
		}
	return n_stages - 1;
}

int nnp_ds_weights(int n_outputs, double *w)
{
	double sum = 0;
	if (n_outputs < 2 || n_outputs > NNP_DS_MAX)
		return nnp_err(NNP_EDATA, "deep supervision: %d outputs (2..%d needed: the last weight is 0)", n_outputs,
			       NNP_DS_MAX);
	for (int i = 0; i < n_outputs; i++)
		w[i] = i == n_outputs - 1 ? 0.0 : 1.0 / ldexp(1.0, i);
	for (int i = 0; i < n_outputs; i++)
		sum += w[i];
	for (int i = 0; i < n_outputs; i++)
		w[i] /= sum;
	return NNP_OK;
}

int nnp_ds_shape(int dim, const int64_t *n, const double *scale, int64_t *out_n)
{
	if (dim < 1 || dim > 3)
		return nnp_err(NNP_EDATA, "deep supervision: bad rank %d", dim);
	for (int a = 0; a < dim; a++) {
		double v = nearbyint((double)n[a] * scale[a]);
		if (!(v >= 1 && v <= 1e9))
			return nnp_err(NNP_EDATA, "deep supervision: extent %lld at scale %g gives %g voxels",
				       (long long)n[a], scale[a], v);
		out_n[a] = (int64_t)v;
	}
	return NNP_OK;
}

/* ATen's nearest-exact source index (float32 scale, product rounded to float). */
static int64_t *nearest_exact_index(int64_t in, int64_t out)
{
	int64_t *ix = malloc(sizeof(int64_t) * (size_t)out);
	float f = (float)in / (float)out;
	if (!ix)
		return NULL;
	for (int64_t o = 0; o < out; o++) {
		int64_t s = (int64_t)floorf((float)(((double)o + 0.5) * (double)f));
		ix[o] = s < in - 1 ? s : in - 1;
	}
	return ix;
}

static void downsample_planes(const int16_t *in, int64_t nplanes, const int64_t n[3], const int64_t on[3],
			      int64_t *const ix[3], int16_t *out)
{
	int64_t inv = n[0] * n[1] * n[2], onv = on[0] * on[1] * on[2];
	#pragma omp parallel for schedule(static) collapse(2)
	for (int64_t p = 0; p < nplanes; p++)
		for (int64_t i = 0; i < on[0]; i++) {
			const int16_t *src = in + p * inv + ix[0][i] * n[1] * n[2];
			int16_t *dst = out + p * onv + i * on[1] * on[2];
			for (int64_t j = 0; j < on[1]; j++)
				for (int64_t k = 0; k < on[2]; k++)
					dst[j * on[2] + k] = src[ix[1][j] * n[2] + ix[2][k]];
		}
}

int nnp_ds_downsample_seg(const int16_t *in, int64_t nplanes, int dim, const int64_t *n,
			  const double *scale, int16_t *out, int64_t *out_n)
{
	int64_t n3[3] = { 1, 1, 1 }, o3[3] = { 1, 1, 1 }, *ix[3] = { NULL, NULL, NULL };
	int rc, ident = 1;
	if (nplanes < 1)
		return nnp_err(NNP_EDATA, "deep supervision: %lld planes", (long long)nplanes);
	if ((rc = nnp_ds_shape(dim, n, scale, o3 + 3 - dim)) < 0)
		return rc;
	for (int a = 0; a < dim; a++) {
		n3[3 - dim + a] = n[a];
		ident &= scale[a] == 1.0;
		if (out_n)
			out_n[a] = o3[3 - dim + a];
	}
	if (ident) {
		memcpy(out, in, sizeof(int16_t) * (size_t)(nplanes * n3[0] * n3[1] * n3[2]));
		return NNP_OK;
	}
	for (int a = 0; a < 3; a++)
		if (!(ix[a] = nearest_exact_index(n3[a], o3[a]))) {
			rc = nnp_err(NNP_ENOMEM, "deep supervision: out of memory");
			goto out;
		}
	downsample_planes(in, nplanes, n3, o3, ix, out);
out:
	for (int a = 0; a < 3; a++)
		free(ix[a]);
	return rc;
}

int nnp_loss_ds(int n_outputs, const struct nnp_loss_shape *s, const float *const *logits,
		const int16_t *const *targets16, const uint8_t *const *targets8,
		const struct nnp_loss_opts *o, const double *w, float *const *grad, double *total)
{
	double sum = 0;
	if (n_outputs < 1 || !targets16 == !targets8)
		return nnp_err(NNP_EDATA, "deep supervision: %d outputs, %s targets", n_outputs,
			       targets16 ? "two kinds of" : "no");
	for (int i = 0; i < n_outputs; i++) {
		struct nnp_loss_value v;
		float *g = grad ? grad[i] : NULL;
		int rc;
		if (w[i] == 0.0) {
			int64_t nv = nnp_loss_nvox(&s[i]);
			if (g && nv > 0)
				memset(g, 0, sizeof(float) * (size_t)(s[i].b * s[i].c * nv));
			continue;
		}
		rc = targets16 ? nnp_loss_dc_ce(&s[i], logits[i], targets16[i], o, w[i], g, &v)
			       : nnp_loss_dc_bce(&s[i], logits[i], targets8[i], o, w[i], g, &v);
		if (rc < 0)
			return nnp_err_ctx(rc, "deep supervision output %d", i);
		sum += w[i] * v.total;
	}
	*total = sum;
	return NNP_OK;
}

/* ---- regions from label maps ---- */

int nnp_regions_from_seg(const int16_t *seg, int64_t b, int64_t nvox, const struct nnp_regions *r,
			 int has_ignore, int ignore_label, uint8_t *target)
{
	int64_t T = r->n + (has_ignore ? 1 : 0);
	int off = 0;
	if (r->n < 1 || b < 1 || nvox < 1)
		return nnp_err(NNP_EDATA, "regions: bad shape (%d regions, B %lld)", r->n, (long long)b);
	for (int k = 0; k < r->n; k++) {
		if (r->len[k] < 1)
			return nnp_err(NNP_EDATA, "regions: region %d has no labels", k);
		for (int64_t s = 0; s < b; s++) {
			const int16_t *sg = seg + s * nvox;
			uint8_t *dst = target + (s * T + k) * nvox;
			#pragma omp parallel for schedule(static)
			for (int64_t v = 0; v < nvox; v++) {
				uint8_t in = 0;
				for (int j = 0; j < r->len[k]; j++)
					in |= sg[v] == r->labels[off + j];
				dst[v] = in;
			}
		}
		off += r->len[k];
	}
	if (has_ignore)
		for (int64_t s = 0; s < b; s++) {
			const int16_t *sg = seg + s * nvox;
			uint8_t *dst = target + (s * T + T - 1) * nvox;
			for (int64_t v = 0; v < nvox; v++)
				dst[v] = sg[v] == ignore_label;
		}
	return NNP_OK;
}

/* ---- pseudo-Dice ---- */

void nnp_pdice_init(struct nnp_pdice *d)
{
	d->n = 0;
	d->tp = d->fp = d->fn = NULL;
}

int nnp_pdice_alloc(struct nnp_pdice *d, int64_t n)
{
	nnp_pdice_init(d);
	if (n < 0 || n > INT32_MAX)
		return nnp_err(NNP_EDATA, "pseudo dice: bad class count %lld", (long long)n);
	d->tp = calloc((size_t)(3 * n + 1), sizeof(int64_t));
	if (!d->tp)
		return nnp_err(NNP_ENOMEM, "pseudo dice: out of memory");
	d->n = n;
	d->fp = d->tp + n;
	d->fn = d->tp + 2 * n;
	return NNP_OK;
}

void nnp_pdice_clear(struct nnp_pdice *d)
{
	if (d->tp)
		memset(d->tp, 0, sizeof(int64_t) * (size_t)(3 * d->n));
}

void nnp_pdice_release(struct nnp_pdice *d)
{
	free(d->tp);
	nnp_pdice_init(d);
}

/* torch.argmax over the channels of voxel v: first maximum, NaN wins. */
static int64_t argmax_voxel(const float *z, int64_t C, int64_t nvox)
{
	int64_t best = 0;
	float bv = z[0];
	if (isnan(bv))
		return 0;
	for (int64_t c = 1; c < C; c++) {
		float x = z[c * nvox];
		if (isnan(x))
			return c;
		if (x > bv) {
			bv = x;
			best = c;
		}
	}
	return best;
}

/* Add thread-local counts (3n) into d. */
static void pdice_merge(struct nnp_pdice *d, const int64_t *loc)
{
	#pragma omp critical(nnp_pdice)
	for (int64_t k = 0; k < 3 * d->n; k++)
		d->tp[k] += loc[k];
}

int nnp_pdice_add_labels(struct nnp_pdice *d, const struct nnp_loss_shape *s, const float *logits,
			 const int16_t *target, const struct nnp_loss_opts *o)
{
	int64_t nvox = check_shape(s, 2), n = d->n;
	int rc, fail = 0;
	if (nvox < 0)
		return NNP_EDATA;
	if (n != s->c - 1)
		return nnp_err(NNP_EDATA, "pseudo dice: %lld classes counted, logits have %lld channels", (long long)n,
			       (long long)s->c);
	if ((rc = check_labels(s, target, nvox, o)) < 0)
		return rc;
	#pragma omp parallel reduction(|:fail)
	{
		int64_t *loc = calloc((size_t)(3 * n + 1), sizeof(int64_t));
		fail = !loc;
		#pragma omp for schedule(static) collapse(2)
		for (int64_t b = 0; b < s->b; b++)
			for (int64_t v = 0; v < nvox; v++) {
				int t = target[b * nvox + v];
				if (!loc || (o->has_ignore && t == o->ignore_label))
					continue;
				int64_t p = argmax_voxel(logits + b * s->c * nvox + v, s->c, nvox);
				if (p == t) {
					if (p > 0)
						loc[p - 1]++;
					continue;
				}
				if (p > 0)
					loc[n + p - 1]++;
				if (t > 0)
					loc[2 * n + t - 1]++;
			}
		if (loc)
			pdice_merge(d, loc);
		free(loc);
	}
	return fail ? nnp_err(NNP_ENOMEM, "pseudo dice: out of memory") : NNP_OK;
}

int nnp_pdice_add_regions(struct nnp_pdice *d, const struct nnp_loss_shape *s, const float *logits,
			  const uint8_t *target, const struct nnp_loss_opts *o)
{
	int64_t nvox = check_shape(s, 1), R = d->n;
	int rc, fail = 0;
	if (nvox < 0)
		return NNP_EDATA;
	if (R != s->c)
		return nnp_err(NNP_EDATA, "pseudo dice: %lld regions counted, logits have %lld channels", (long long)R,
			       (long long)s->c);
	struct reg_ctx x = { s, logits, target, o, nvox, R + (o->has_ignore ? 1 : 0) };
	if ((rc = check_regions(&x)) < 0)
		return rc;
	#pragma omp parallel reduction(|:fail)
	{
		int64_t *loc = calloc((size_t)(3 * R + 1), sizeof(int64_t));
		fail = !loc;
		#pragma omp for schedule(static) collapse(2)
		for (int64_t b = 0; b < s->b; b++)
			for (int64_t v = 0; v < nvox; v++) {
				if (!loc || (o->has_ignore && target[(b * x.tch + R) * nvox + v]))
					continue;
				for (int64_t r = 0; r < R; r++) {
					float z = logits[(b * R + r) * nvox + v];
					int p = 1.0f / (1.0f + expf(-z)) > 0.5f, y = target[(b * x.tch + r) * nvox + v];
					loc[r] += p && y;
					loc[R + r] += p && !y;
					loc[2 * R + r] += !p && y;
				}
			}
		if (loc)
			pdice_merge(d, loc);
		free(loc);
	}
	return fail ? nnp_err(NNP_ENOMEM, "pseudo dice: out of memory") : NNP_OK;
}

double nnp_pdice_result(const struct nnp_pdice *d, double *dice)
{
	double sum = 0;
	int64_t cnt = 0;
	for (int64_t k = 0; k < d->n; k++) {
		double den = 2.0 * (double)d->tp[k] + (double)d->fp[k] + (double)d->fn[k];
		dice[k] = den > 0 ? 2.0 * (double)d->tp[k] / den : NAN;
		if (!isnan(dice[k])) {
			sum += dice[k];
			cnt++;
		}
	}
	return cnt ? sum / (double)cnt : NAN;
}
