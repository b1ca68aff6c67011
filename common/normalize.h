/* normalize.h — nnU-Net's intensity normalisation schemes, per channel
 * (nnunet-facts §5.3; scheme choice §4.9), bit-exact with numpy float32.
 *
 * Every channel is first converted to float32 the way nnU-Net's reader does
 * it (a channel with a frame scale other than slope 1 / inter 0 becomes
 * (float)(v * slope + inter) computed in double; others are rounded straight
 * to float32), then normalised in place with the same float32 operations
 * numpy performs (docs/normalization.md gives the exact formulas):
 *
 *   CTNormalization      x = clip(x, (float)p00_5, (float)p99_5)
 *                        x = x - (float)mean;  x = x / (float)max(std, 1e-8)
 *                        (mean, std, percentiles: the fingerprint's
 *                        foreground_intensity_properties_per_channel)
 *   ZScoreNormalization  mu = (float)((double)S / n), S = numpy's float32
 *                        pairwise sum; var likewise over (x - mu)^2;
 *                        sd = sqrtf(var); x = (x - mu) / max(sd, 1e-8),
 *                        over the whole channel, or with use_mask over the
 *                        voxels where seg >= 0 only (the others keep their
 *                        value, which is 0 after crop_to_nonzero)
 *   RescaleTo01          x = x - min(x);  x = x / max(max(x), 1e-8)
 *   RGBTo01              requires 0 <= x <= 255;  x = x / 255
 *   NoNormalization      the float32 conversion only
 *
 * Deviations from nnU-Net (it would silently produce NaN): NaN input is
 * refused with NNP_EDATA for every scheme, +-Inf where it would poison the
 * statistics (z-score inside its region, rescale anywhere), and a z-score
 * whose float32 mean or std overflows.  Errors name the case and channel.
 *
 * Ownership: struct nnp_norm_plan owns its channel array
 * (nnp_norm_plan_release frees it); functions never take ownership of
 * const or json_t pointers (no references are kept or stolen).
 */
#ifndef NNP_NORMALIZE_H
#define NNP_NORMALIZE_H

#include <stdint.h>
#include <jansson.h>
#include "frame.h"

enum nnp_norm_scheme {
	NNP_NORM_UNKNOWN = 0,
	NNP_NORM_CT,            /* "CTNormalization" */
	NNP_NORM_ZSCORE,        /* "ZScoreNormalization" */
	NNP_NORM_RESCALE01,     /* "RescaleTo01Normalization" */
	NNP_NORM_RGB01,         /* "RGBTo01Normalization" */
	NNP_NORM_NONE           /* "NoNormalization" */
};

/* One entry of foreground_intensity_properties_per_channel (keys absent
 * from the JSON are NaN). */
struct nnp_norm_props {
	int present;            /* the channel's entry exists */
	double mean, std, median, min, max, p00_5, p99_5;
};

struct nnp_norm_channel {
	enum nnp_norm_scheme scheme;
	int use_mask;           /* use_mask_for_norm (null in the plans = 0) */
	struct nnp_norm_props props;
};

struct nnp_norm_plan {
	int64_t nch;
	struct nnp_norm_channel *ch;
};

/* What one channel's normalisation used (float32 values widened). */
struct nnp_norm_result {
	double a, b;            /* z-score: mean, std; CT: the float32 mean and
	                           divisor; rescale: min and divisor; RGB: 0, 255;
	                           NaN for NoNormalization and an empty mask */
	uint64_t n;             /* voxels that were changed (region size) */
};

/* ---- names and rules ---- */
/* The plans' class name ("CTNormalization", case-sensitive like nnU-Net's
 * class lookup) -> scheme; NNP_EDATA for an unknown name. */
int nnp_norm_scheme_parse(const char *name, enum nnp_norm_scheme *out);
const char *nnp_norm_scheme_name(enum nnp_norm_scheme s);   /* "?" if unknown */
/* dataset.json channel name -> scheme (§4.9): casefold lookup of "ct",
 * "nonorm", "zscore", "rescale_to_0_1", "rgb_to_0_1"; anything else z-score. */
enum nnp_norm_scheme nnp_norm_scheme_for_channel(const char *channel_name);
/* The planner's use_mask_for_norm for a channel: z-score (the only scheme that
 * leaves pixels outside the mask at zero) and median relative size after
 * cropping < 0.75. */
int nnp_norm_use_mask_for_norm(enum nnp_norm_scheme s, double median_relative_size_after_cropping);

/* ---- plans ---- */
/* Channel c of a foreground_intensity_properties_per_channel object (may be
 * NULL: nothing present).  NNP_EDATA for a non-number value. */
int nnp_norm_props_from_json(const json_t *fg_props, int64_t c, struct nnp_norm_props *out);
/* From a plans configuration object (normalization_schemes,
 * use_mask_for_norm) and the plans' foreground_intensity_properties_per_channel.
 * CT channels must have finite mean, std and percentiles. */
int nnp_norm_plan_from_config(const json_t *config, const json_t *fg_props, struct nnp_norm_plan *out);
/* From a whole nnUNetPlans.json object and a configuration name, following
 * inherits_from like nnU-Net's PlansManager. */
int nnp_norm_plan_from_plans(const json_t *plans, const char *configuration, struct nnp_norm_plan *out);
/* What the planner would choose: dataset.json channel_names (or the legacy
 * "modality"), in their JSON order, and the fingerprint's
 * median_relative_size_after_cropping; fg_props may be NULL. */
int nnp_norm_plan_from_dataset(const json_t *dataset_json, double median_relative_size_after_cropping,
			       const json_t *fg_props, struct nnp_norm_plan *out);
void nnp_norm_plan_release(struct nnp_norm_plan *p);

/* ---- applying ---- */
/* mask[i] = seg[i] >= 0 for every voxel of a one-channel seg volume. */
int nnp_norm_mask_from_seg(const struct nnp_vol *seg, uint8_t *mask);
/* Normalise n float32 values in place.  mask (may be NULL) is used only by a
 * z-score channel with use_mask.  res may be NULL. */
int nnp_norm_channel_f32(const struct nnp_norm_channel *ch, float *x, uint64_t n, const uint8_t *mask,
			 struct nnp_norm_result *res);
/* Whole volume: img (any dtype, scale applied as above) -> out, a new float32
 * volume with img's frame (scale dropped, props.channel_dtypes removed).  seg
 * (may be NULL) is the cropped label map that supplies the mask; with
 * seg NULL every channel is normalised as if use_mask were 0 (nnU-Net's rule).
 * res (may be NULL) receives plan->nch results. */
int nnp_normalize(const struct nnp_norm_plan *plan, const struct nnp_vol *img, const struct nnp_vol *seg,
		  struct nnp_vol *out, struct nnp_norm_result *res);
/* The same in place: v becomes float32 (its buffer is reused when it
 * already is float32).  On error v is float32 with unspecified values;
 * nnp_normalize leaves out released. */
int nnp_normalize_inplace(const struct nnp_norm_plan *plan, struct nnp_vol *v, const struct nnp_vol *seg,
			  struct nnp_norm_result *res);

#endif
