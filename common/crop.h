/* crop.h — nnU-Net's crop_to_nonzero (nnunet-facts §5.2).
 *
 * mask = OR over channels of (value != 0), with scl_slope/inter applied;
 * holes filled like scipy.ndimage.binary_fill_holes (background voxels not
 * 6-connected to the array border become foreground; so a z = 1 volume is
 * never filled); bbox per axis of the mask, half-open, full extent when
 * the mask is empty.
 * Ownership: outputs are caller-provided; nnp_crop_* allocate into
 * caller-initialised volumes released with nnp_vol_release.
 */
#ifndef NNP_CROP_H
#define NNP_CROP_H

#include <stdint.h>
#include "frame.h"

/* mask[z*y*x] = 1 where any channel is nonzero (scaled). */
void nnp_nonzero_mask(const struct nnp_vol *img, uint8_t *mask);
/* Fill holes in place (6-connectivity). Returns NNP_ENOMEM on failure. */
int nnp_fill_holes(uint8_t *mask, const int64_t shape[3]);
/* Bounding box [lo, hi) per axis (z, y, x) of mask. */
void nnp_mask_bbox(const uint8_t *mask, const int64_t shape[3], int64_t bbox[3][2]);
/* Copy the bbox region of every channel of src into dst (frame copied,
 * shape changed, affine origin moved to the box corner). */
int nnp_crop_box(const struct nnp_vol *src, const int64_t bbox[3][2], struct nnp_vol *dst);
/* The whole operation: image -> cropped image; seg (may be NULL) ->
 * cropped int8/int16 seg with -1 where seg == 0 outside the mask (or
 * mask ? 0 : -1 without a seg). bbox receives the box. */
int nnp_crop_to_nonzero(const struct nnp_vol *img, const struct nnp_vol *seg, struct nnp_vol *img_out,
			struct nnp_vol *seg_out, int64_t bbox[3][2]);

/* Record nnU-Net's crop bookkeeping in f->props: shape_before_cropping,
 * bbox_used_for_cropping, shape_after_cropping_and_before_resampling. */
int nnp_crop_set_props(struct nnp_frame *f, const int64_t before[3], const int64_t bbox[3][2]);
/* Read the record back without comparing it with the frame's shape (for
 * frames resampled after the crop): bbox inside before, non-empty. */
int nnp_crop_get_record(const struct nnp_frame *f, int64_t before[3], int64_t bbox[3][2]);
/* Read them back (NNP_EDATA naming the case when absent or malformed, or
 * when the box does not match the frame's shape). */
int nnp_crop_get_props(const struct nnp_frame *f, int64_t before[3], int64_t bbox[3][2]);
/* Inverse of the crop: place src into a volume of shape `before` at bbox,
 * filling the rest with `fill`; the affine origin moves back.  The crop
 * props are removed from the result. */
int nnp_uncrop(const struct nnp_vol *src, const int64_t before[3], const int64_t bbox[3][2], double fill,
	       struct nnp_vol *dst);
/* The frame part of nnp_uncrop: dst (initialised by the call) is a copy of
 * src with shape `before`, the origin moved back and the crop props
 * removed. */
int nnp_uncrop_frame(const struct nnp_frame *src, const int64_t before[3], const int64_t bbox[3][2],
		     struct nnp_frame *dst);

#endif
