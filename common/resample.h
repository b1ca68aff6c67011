/* resample.h — nnU-Net 2.8.1's default resampling, exactly
 * (resample_data_or_seg_to_shape; nnunet-facts §5.4, §9.6, Appendix C;
 * docs/resampling.md states every rule and deviation).
 *
 * Semantics:
 *  - new shape: round_half_even(old_spacing / new_spacing * old_shape) per
 *    axis, in float64 in that order (compute_new_shape).
 *  - separate z: anisotropy max/min > 3 of the current spacing, else of the
 *    target spacing; the low-res axis is the one with the largest spacing; a
 *    tie for the largest spacing disables it; force on = axis from the
 *    current spacing (a tie still disables it), force off = never.
 *  - data: skimage resize(order, mode 'edge', anti_aliasing False, clip True)
 *    = scipy zoom(grid_mode=True, mode 'nearest') on float64: half-pixel
 *    centres, 12-voxel edge padding + B-spline prefilter for order >= 2,
 *    clipped to the min/max of that call's input (the whole channel, or the
 *    slice with separate z).  Separate z: every slice along the low-res axis
 *    resized in-plane with `order`, then that axis with map_coordinates
 *    (order_z, mode 'nearest', no clip).  Float64 inside.
 *  - segmentation: per label in ascending order (incl. -1) the one-hot mask
 *    resized with order 1, >= 0.5 wins, later (larger) labels overwrite,
 *    default 0 — evaluated only for the distinct labels among the (at most
 *    8, in 2D 4) neighbours of each output voxel, with scipy's exact float
 *    operations, so the result is identical and the cost does not depend on
 *    the number of labels.  Separate z: the same per slice in-plane, then
 *    nearest (order_z 0) along the axis on the label values.
 *  - an unchanged shape is a copy (converted to the output dtype).
 *
 * Dtypes: data in any dtype (NIfTI scale applied), out float32 by default,
 * float16 in -> float16 out (the export path of logits), float64 -> float64;
 * the float16 rounding is done once, from float64 (like numpy's astype).
 * Labels: int8, uint8, int16, uint16, int32 in and out (same dtype).
 *
 * Memory (per channel, channels one after another, each with OpenMP over
 * slices or column blocks): order >= 2 without separate z keeps the float64
 * results of the first two axis passes (the input is read in its dtype),
 * order 1 one float64 copy of the channel, separate z (order_z 0) a few
 * float64 planes per thread; a label map is never expanded to one-hot nor
 * to float64 (one int32 copy, or int32 planes with separate z).
 * docs/resampling.md has the table.
 *
 * Streaming (slab-friendly use).  With separate z along axis 0 (nnU-Net's
 * case for anisotropic data) and order_z 0, output slice o depends on the
 * single input slice nnp_resample_nearest(n_in, n_out, o), so a caller can
 * read input slices in order, resize each with nnp_resample_plane /
 * nnp_resample_plane_labels, and emit the output slices that map to it
 * (nnp_resample_nearest is non-decreasing in o): one input slice and one
 * output plane in memory.  With order 1 and no separate z (probabilities,
 * logits, label maps), output slice o needs input slices
 * nnp_resample_src_range(...) (two neighbours) only.  Order >= 2 without
 * separate z is global along every axis (IIR prefilter): hold the channel.
 *
 * Ownership: nnp_resample_vol/_to_shape initialise `out` (release it with
 * nnp_vol_release); nothing takes ownership of its inputs; plane functions
 * write caller-provided buffers.
 */
#ifndef NNP_RESAMPLE_H
#define NNP_RESAMPLE_H

#include <stdint.h>
#include "frame.h"

#define NNP_ANISO_THRESHOLD 3.0

/* force_separate_z: nnU-Net's None / False / True. */
enum { NNP_SEPZ_AUTO = -1, NNP_SEPZ_OFF = 0, NNP_SEPZ_ON = 1 };

/* compute_new_shape.  NNP_EDATA for non-positive or non-finite spacings or
 * a result outside [1, NNP_DIM_MAX]. */
int nnp_resample_shape(const int64_t old_shape[3], const double old_spacing[3], const double new_spacing[3],
		       int64_t new_shape[3]);

/* determine_do_sep_z_and_axis: returns 1 (separate z, *axis = 0..2) or 0
 * (*axis = -1).  force is NNP_SEPZ_AUTO, _OFF or _ON. */
int nnp_resample_separate_z(int force, const double current_spacing[3], const double new_spacing[3], int *axis);

struct nnp_resample_opts {
	int is_seg;              /* label map (resize_segmentation rule) */
	int order;               /* data 0..5 (nnU-Net 3; 1 for logits), seg 0..1 (1) */
	int order_z;             /* along the low-res axis: data 0..5, seg 0..1 (nnU-Net 0) */
	int separate_z;          /* from nnp_resample_separate_z */
	int axis;                /* low-res axis 0..2 when separate_z */
	enum nnp_dtype out_dtype;/* data only: NNP_DT_NONE = the rule above; else F16/F32/F64 */
	uint64_t *label_evals;   /* test hook, may be NULL: += number of (voxel, label)
	                            interpolations of the label path */
};

/* nnU-Net's defaults for data: order 3, order_z 0, no separate z. */
void nnp_resample_opts_init(struct nnp_resample_opts *o);

/* Resample every channel of in to new_shape (z, y, x).  out's frame is a
 * copy of in's with the new shape and dtype, spacing = new_spacing (or the
 * exact in/out ratio when NULL), the affine scaled about half-pixel centres,
 * no scale.  Errors: NNP_EUSAGE (bad options/dtypes), NNP_ENOMEM. */
int nnp_resample_vol(const struct nnp_vol *in, const int64_t new_shape[3], const double new_spacing[3],
		     const struct nnp_resample_opts *o, struct nnp_vol *out);

/* The preprocessing step on a frame: nnp_resample_to_shape from the frame's
 * own spacing to new_spacing, then the output spacing set exactly to
 * new_spacing and props.spacing_before_resampling recorded (first
 * resampling only), which 'nnp resample --to-original' reads back. */
int nnp_resample_step(const struct nnp_vol *in, const int64_t new_shape[3], const double new_spacing[3], int is_seg,
		      int order, int order_z, int force_separate_z, struct nnp_vol *out);

/* resample_data_or_seg_to_shape(data, new_shape, current_spacing,
 * new_spacing, is_seg, order, order_z, force_separate_z). */
int nnp_resample_to_shape(const struct nnp_vol *in, const int64_t new_shape[3], const double current_spacing[3],
			  const double new_spacing[3], int is_seg, int order, int order_z, int force_separate_z,
			  struct nnp_vol *out);

/* The frame of a resampled volume: a copy of f with shape new_shape,
 * dtype dt, no scale, spacing new_spacing (or the exact ratio when NULL),
 * the affine scaled about half-pixel centres (what nnp_resample_vol
 * writes).  out is initialised by the call. */
int nnp_resample_frame(const struct nnp_frame *f, const int64_t new_shape[3], const double new_spacing[3],
		       enum nnp_dtype dt, struct nnp_frame *out);

/* One channel: src (shape in[3], dtype st, value*slope+inter when slope != 0)
 * -> dst (shape out[3], dtype dt). */
int nnp_resample_channel(enum nnp_dtype st, const void *src, double slope, double inter, const int64_t in[3],
			 enum nnp_dtype dt, void *dst, const int64_t out[3], const struct nnp_resample_opts *o);

/* ---- building blocks for streaming callers ---- */

/* One 2D data plane a x b -> a2 x b2 (row-major), order 0..5, clipped to the
 * plane's own min/max: the in-plane step of separate z.  Serial. */
int nnp_resample_plane(const double *src, int64_t a, int64_t b, double *dst, int64_t a2, int64_t b2, int order);
/* The same for a label plane (order 0 or 1). label_evals may be NULL. */
int nnp_resample_plane_labels(const int32_t *src, int64_t a, int64_t b, int32_t *dst, int64_t a2, int64_t b2,
			      int order, uint64_t *label_evals);
/* map_coordinates order 0, mode 'nearest': the input index of output o. */
int64_t nnp_resample_nearest(int64_t n_in, int64_t n_out, int64_t o);
/* Order-1 taps of output o: input indices idx[0..1] (clamped) and
 * weights w[0..1], exactly those of nnp_resample_channel, whose 3D order-1
 * result is t = 0.0; t += ((v * wz) * wy) * wx over the taps (z, y) in
 * the order (0,0) (0,1) (1,0) (1,1), x innermost, then clipped to the
 * channel's min/max. */
void nnp_resample_linear_taps(int64_t n_in, int64_t n_out, int64_t o, int64_t idx[2], double w[2]);
/* Input indices [*lo, *hi) along an axis that output indices [o0, o1)
 * read for `order` (0 or 1: the interpolation neighbours; >= 2: all). */
void nnp_resample_src_range(int64_t n_in, int64_t n_out, int order, int64_t o0, int64_t o1, int64_t *lo,
			    int64_t *hi);

#endif
