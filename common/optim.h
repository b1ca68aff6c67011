/* optim.h — nnU-Net's optimisation step (nnunet-facts §7.1, §7.5;
 * docs/training.md): the PolyLR schedule, global L2-norm gradient clipping
 * and SGD with PyTorch's semantics (momentum, Nesterov, weight decay on all
 * parameters), over lists of flat float32 parameter arrays.
 *
 * A parameter list is an array of struct nnp_param {w, g, n}: the weights and
 * the gradient of one tensor; g == NULL means "no gradient" and the entry is
 * skipped, as PyTorch skips parameters whose .grad is None.  The same list
 * (same count and sizes, in the same order) must be passed to every call on
 * one struct nnp_sgd.
 *
 * Numerics: the SGD update runs in float32 as PyTorch's vectorised kernels do
 * (each add-with-alpha a fused multiply-add, the momentum multiply rounded
 * on its own); norms are accumulated in double over fixed blocks, so every
 * result is bit-identical for any OpenMP thread count.
 *
 * Ownership: struct nnp_sgd owns its momentum buffers (nnp_sgd_release; a
 * released or zeroed struct may be released again).  Functions never take
 * ownership of their arguments and keep no pointer to them.  No global state.
 */
#ifndef NNP_OPTIM_H
#define NNP_OPTIM_H

#include <stdint.h>

#define NNP_SGD_MOMENTUM 0.99
#define NNP_SGD_WEIGHT_DECAY 3e-5
#define NNP_INITIAL_LR 1e-2
#define NNP_CLIP_NORM 12.0
#define NNP_POLY_EXPONENT 0.9

struct nnp_param {
	float *w;       /* n weights, updated in place */
	float *g;       /* n gradient values (NULL: no gradient, entry skipped) */
	int64_t n;      /* elements (>= 0) */
};

/* PolyLRScheduler: initial_lr * (1 - epoch / max_epochs)^exponent in double
 * (nnU-Net: 0.01, epoch 0..999, 1000, 0.9). */
double nnp_polylr(double initial_lr, int64_t epoch, int64_t max_epochs, double exponent);

/* torch.nn.utils.clip_grad_norm_(params, max_norm): total = sqrt(sum of g^2
 * over every gradient), coef = max_norm / (total + 1e-6); when coef < 1
 * (i.e. total > max_norm - 1e-6) every gradient is multiplied by
 * (float)coef.  *total_norm (may be NULL) receives the norm.  A non-finite
 * norm leaves the gradients untouched (the caller decides; nnU-Net's
 * GradScaler skips such steps).  NNP_EDATA for a negative size. */
int nnp_clip_grad_norm(const struct nnp_param *p, int64_t np, double max_norm, double *total_norm);

struct nnp_sgd {
	double momentum, weight_decay;
	int nesterov;
	int64_t np;          /* entries of the parameter list */
	int64_t *n;          /* their sizes */
	float **buf;         /* momentum buffers, n[i] floats each */
	uint8_t *has_buf;    /* 0 until entry i's first step (PyTorch: no momentum_buffer yet) */
	int64_t steps;       /* nnp_sgd_step calls so far (informative; the caller may set it) */
};

/* Zero the struct (nothing allocated). */
void nnp_sgd_zero(struct nnp_sgd *o);
/* Buffers for the list p[0..np-1]; momentum in [0, 1), weight_decay >= 0,
 * nesterov needs momentum > 0 (PyTorch's rules, NNP_EDATA otherwise).  On
 * error *o is left released. */
int nnp_sgd_init(struct nnp_sgd *o, const struct nnp_param *p, int64_t np, double momentum,
		 double weight_decay, int nesterov);
void nnp_sgd_release(struct nnp_sgd *o);

/* One torch.optim.SGD step with learning rate lr, for every entry with a
 * gradient: d = g + wd w; buf = d on the entry's first step, else buf = mom
 * buf + d; d = d + mom buf (Nesterov) or d = buf; w = w - lr d.  g is not
 * modified.  NNP_EDATA if the list does not match the one of nnp_sgd_init. */
int nnp_sgd_step(struct nnp_sgd *o, const struct nnp_param *p, int64_t np, double lr);

/* ---- state for checkpoints (PyTorch: state[i]['momentum_buffer']) ---- */

/* Sum of the entry sizes: the length of the flat state. */
int64_t nnp_sgd_state_len(const struct nnp_sgd *o);
/* Entry i's momentum buffer (n[i] floats), NULL if it has none yet. */
const float *nnp_sgd_buffer(const struct nnp_sgd *o, int64_t i);
/* All buffers concatenated in entry order into flat (state_len floats; an
 * entry without a buffer is written as zeros) and has[i] (np flags). */
void nnp_sgd_export(const struct nnp_sgd *o, float *flat, uint8_t *has);
/* The inverse: len must equal nnp_sgd_state_len (NNP_EDATA otherwise);
 * has == NULL means every entry has a buffer. */
int nnp_sgd_import(struct nnp_sgd *o, const float *flat, const uint8_t *has, int64_t len);

#endif
