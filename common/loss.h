/* loss.h — nnU-Net's training loss with its gradient, the deep-supervision
 * targets and weights, and the validation pseudo-Dice counts (nnunet-facts
 * §7.4, §7.6, §8 step 15; docs/training.md).  Pure computation, no I/O.
 *
 * Tensor layout: float32, C order (B, C, *spatial) with 2 or 3 spatial axes,
 * i.e. one contiguous plane of nvox = prod(n) values per (b, c).  Label
 * targets are int16 (B, *spatial) maps with values 0..C-1 or the ignore label
 * (RemoveLabel has run: -1 is an error like any other value out of range).
 * Region targets are uint8 0/1 channels (B, T, *spatial): T = R region
 * channels, plus a last channel that is the ignore mask when has_ignore.
 *
 * Numerics: softmax/sigmoid, sums and the loss in double; every sum over
 * voxels is taken over fixed chunks of NNP_LOSS_CHUNK voxels (per-chunk
 * partial sums combined in chunk order), so results are bit-identical for
 * any OpenMP thread count.  Gradients are written as float32.
 *
 * Errors: NNP_EDATA (message recorded) for bad shapes, a target value out of
 * range, an ignore label that is also a class; NNP_ENOMEM.
 *
 * Ownership: functions never take ownership of their arguments and keep no
 * pointer to them; outputs are caller-allocated except struct nnp_pdice,
 * which owns its count arrays (nnp_pdice_release; a released or zeroed one
 * may be released again).  No global state.
 */
#ifndef NNP_LOSS_H
#define NNP_LOSS_H

#include <stdint.h>

#define NNP_LOSS_CHUNK 2048                 /* voxels per partial sum */
#define NNP_LOSS_SMOOTH 1e-5                /* MemoryEfficientSoftDiceLoss smooth */
#define NNP_DS_MAX 16                       /* deep-supervision outputs */

struct nnp_loss_shape {
	int64_t b;      /* batch size >= 1 */
	int64_t c;      /* logit channels: classes (>= 2) or regions (>= 1) */
	int dim;        /* spatial rank, 2 or 3 */
	int64_t n[3];   /* spatial extent n[0..dim-1], axis 0 slowest */
};

struct nnp_loss_opts {
	int batch_dice;     /* Dice sums over the batch before the ratio */
	int has_ignore;     /* labels: ignore_label is used; regions: last target channel is the mask */
	int ignore_label;   /* labels only: must not be in 0..C-1 */
};

struct nnp_loss_value {
	double total;       /* ce + dice (weights 1, 1) */
	double ce;          /* softmax CE (labels) or BCE-with-logits (regions) */
	double dice;        /* -mean(dc) */
};

/* Voxels per (b, c) plane; -1 for a bad shape (rank, extent, overflow). */
int64_t nnp_loss_nvox(const struct nnp_loss_shape *s);

/* DC_and_CE_loss (labels): CE = softmax cross-entropy averaged over the
 * non-ignored voxels (0 when there are none); Dice =
 * MemoryEfficientSoftDiceLoss(softmax, batch_dice, do_bg False, smooth 1e-5)
 * with the non-ignore mask, ignore voxels counted as label 0 before the
 * one-hot: per (b, c >= 1) I = sum p y m, Sp = sum p m, Sg = sum y m (summed
 * over b if batch_dice), dc = (2I + smooth) / max(Sg + Sp + smooth, 1e-8),
 * dice = -mean(dc).  grad (may be NULL) receives grad_scale * dL/dlogits,
 * same shape as logits (overwritten; it may be the logits array itself, the
 * gradient then replaces them).  *v may be NULL. */
int nnp_loss_dc_ce(const struct nnp_loss_shape *s, const float *logits, const int16_t *target,
		   const struct nnp_loss_opts *o, double grad_scale, float *grad, struct nnp_loss_value *v);

/* DC_and_BCE_loss (regions): BCE-with-logits, the plain mean over all
 * B*R*nvox elements, or with the ignore mask m (= 1 - last target channel)
 * sum(bce * m) / max(sum m, 1e-8) with sum m counted once per voxel; Dice =
 * MemoryEfficientSoftDiceLoss(sigmoid, batch_dice, do_bg True, smooth 1e-5,
 * loss mask m).  s->c = R logit channels; target has R (+1 when has_ignore)
 * channels of 0/1.  grad, grad_scale and *v as for nnp_loss_dc_ce. */
int nnp_loss_dc_bce(const struct nnp_loss_shape *s, const float *logits, const uint8_t *target,
		    const struct nnp_loss_opts *o, double grad_scale, float *grad, struct nnp_loss_value *v);

/* ---- deep supervision ---- */

/* nnU-Net's deep-supervision scales: 1 / cumprod(strides, axis 0) without the
 * last row.  strides: n_stages x dim (pool_op_kernel_sizes / conv strides,
 * row 0 usually all ones); scales: (n_stages - 1) x dim.  Returns the number
 * of scales (= DS outputs of the network) or NNP_EDATA. */
int nnp_ds_scales(const int64_t *strides, int n_stages, int dim, double *scales);

/* Weights for n_outputs DS outputs (n_outputs = n_stages - 1, 2..NNP_DS_MAX):
 * w_i = 1/2^i, w_last = 0, normalised to sum 1.  E.g. 5 outputs: 0.5333,
 * 0.2667, 0.1333, 0.0667, 0.  n_outputs == 1 is NNP_EDATA (nnU-Net's weights
 * would be 0/0). */
int nnp_ds_weights(int n_outputs, double *w);

/* The downsampled extent: round-half-even(n[a] * scale[a]) (Python round of a
 * float64 product), NNP_EDATA if an extent is < 1. */
int nnp_ds_shape(int dim, const int64_t *n, const double *scale, int64_t *out_n);

/* DownsampleSegForDS for one scale: nplanes int16 planes of extent n (B label
 * maps, or B*T region channels) resized with torch's 'nearest-exact' to
 * out_n = nnp_ds_shape(n, scale): per axis src = min(floor((o + 0.5) * f),
 * in - 1) with f = float(in) / out in float32 and the product rounded to
 * float32 before the floor, as ATen does.  An all-ones scale is the identity
 * copy.  Nearest sampling commutes with the region conversion, so region
 * targets may be converted after downsampling the label map.  out holds
 * nplanes * prod(out_n) values; out_n may be NULL. */
int nnp_ds_downsample_seg(const int16_t *in, int64_t nplanes, int dim, const int64_t *n,
			  const double *scale, int16_t *out, int64_t *out_n);

/* The weighted deep-supervision sum total = sum over w_i != 0 of
 * w_i * loss_i (DeepSupervisionWrapper); grad[i] (NULL entries allowed) gets
 * w_i * dloss_i/dlogits_i, zeros for w_i == 0 (that loss is not evaluated).
 * Labels when targets16 is given, regions when targets8 is given (the other
 * NULL). */
int nnp_loss_ds(int n_outputs, const struct nnp_loss_shape *s, const float *const *logits,
		const int16_t *const *targets16, const uint8_t *const *targets8,
		const struct nnp_loss_opts *o, const double *w, float *const *grad, double *total);

/* ---- regions ---- */

/* One region = a set of labels (ConvertSegmentationToRegions: channel r is
 * seg in region r). */
struct nnp_regions {
	int n;                  /* regions R */
	const int *len;         /* labels per region, n entries */
	const int16_t *labels;  /* all regions' labels, concatenated */
};

/* Region target (B, R (+1), nvox) from label maps (B, nvox): channel r =
 * seg in region r; with has_ignore a last channel seg == ignore_label. */
int nnp_regions_from_seg(const int16_t *seg, int64_t b, int64_t nvox, const struct nnp_regions *r,
			 int has_ignore, int ignore_label, uint8_t *target);

/* ---- validation pseudo-Dice (nnUNetTrainer.validation_step) ---- */

struct nnp_pdice {
	int64_t n;              /* foreground classes (C - 1) or regions R */
	int64_t *tp, *fp, *fn;  /* n counts each, summed over batches */
};

void nnp_pdice_init(struct nnp_pdice *d);
/* Allocate zeroed counts for n classes/regions. */
int nnp_pdice_alloc(struct nnp_pdice *d, int64_t n);
void nnp_pdice_clear(struct nnp_pdice *d);
void nnp_pdice_release(struct nnp_pdice *d);
/* Labels: prediction = argmax over channels (first maximum, NaN counts as
 * the maximum, as torch.argmax), one-hot vs the target; ignore voxels
 * (o->has_ignore) are masked out; background dropped: d->n must be s->c - 1. */
int nnp_pdice_add_labels(struct nnp_pdice *d, const struct nnp_loss_shape *s, const float *logits,
			 const int16_t *target, const struct nnp_loss_opts *o);
/* Regions: prediction = sigmoid(z) > 0.5 in float32; target as for
 * nnp_loss_dc_bce (the mask channel when has_ignore); d->n must be s->c. */
int nnp_pdice_add_regions(struct nnp_pdice *d, const struct nnp_loss_shape *s, const float *logits,
			  const uint8_t *target, const struct nnp_loss_opts *o);
/* dice[k] = 2TP / (2TP + FP + FN) (NaN when the denominator is 0); returns
 * mean_fg_dice = nanmean(dice) (NaN when every entry is NaN or n == 0). */
double nnp_pdice_result(const struct nnp_pdice *d, double *dice);

#endif
