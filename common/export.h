/* export.h — nnU-Net's export_prediction_from_logits as a stream step
 * (convert_predicted_logits_to_segmentation_with_correct_shape; nnunet-facts
 * §9.6, §1.3, §5.4; docs/export.md).
 *
 * Input: one "logits" frame (K channels, float16/float32/float64, finite
 * values) in the preprocessed geometry, carrying nnp preprocess's props:
 * shape_before_cropping, bbox_used_for_cropping,
 * shape_after_cropping_and_before_resampling, spacing_before_resampling,
 * transpose_forward (when transposed).  Output: a "seg" frame (uint8, or
 * uint16 with >= 255 foreground labels) in the original geometry, and with
 * save_probabilities a "probabilities" frame (float32, K channels) written
 * before it.  The output frames equal, value for value, the composition
 * 'nnp resample --to-original --order 1 --order-z 0' -> argmax (or the
 * regions rule) -> 'nnp uncrop' -> 'nnp transpose --undo'.
 *
 * Invariants:
 *  - the logits are resampled from the frame's spacing (= the
 *    configuration's) to spacing_before_resampling / shape_after_cropping...
 *    with order, order_z and the separate-z rule of nnp_resample_separate_z;
 *    each resampled value is rounded once from float64 to float32, or to
 *    float16 with fp16_compat (nnU-Net's float16 array), before the argmax;
 *  - argmax: the first maximum wins; regions: sigmoid (float32) > 0.5, in
 *    regions_class_order, later regions overwrite;
 *  - probabilities: softmax over channels (sigmoid for regions); outside
 *    the crop box channel 0 = 1 and the others 0 (regions: all 0);
 *  - memory: never K x volume in float64.  With order 1 (no separate z) or
 *    separate z along axis 0 with order_z 0 the input is read chunk by chunk
 *    keeping at most two input slices (all channels, float32) plus, with
 *    separate z, the K resampled planes of one slice; the outputs are held
 *    whole (seg: 1-2 bytes per original voxel); the probabilities frame is
 *    streamed chunk by chunk when no transposition is undone (else held, K x
 *    4 bytes per original voxel).  Other
 *    settings read the whole frame and resample per channel
 *    (nnp_resample_channel); the estimate is checked against max_memory
 *    first (NNP_ENOMEM naming the bytes).
 *
 * Ownership: nnp_export_labels_* fill/release a caller-owned struct; the
 * segmentation-rule functions (nnp_export_argmax_channel, ...) work on the
 * caller's arrays and keep no pointer to them;
 * nnp_export_frame takes ownership of nothing (it consumes the frame's
 * chunks from the reader and writes the output frames to the writer; on an
 * error nothing of that case has been written, except a started streamed
 * probabilities frame, which is then left truncated).
 */
#ifndef NNP_EXPORT_H
#define NNP_EXPORT_H

#include <stdint.h>
#include "dataset.h"
#include "frame.h"

/* What the channels mean (from dataset.json). */
struct nnp_export_labels {
	int64_t nchannels;     /* K expected; 0 = any (plain argmax, label = channel index) */
	int regions;           /* region-based: channel i is region i */
	int *region_values;    /* regions: regions_class_order, K entries */
	int64_t nforeground;   /* foreground labels (decides uint8 / uint16) */
};

/* Labels of dataset.json: K = labels except "ignore" (values 0..K-1), or
 * K = the regions and their regions_class_order. */
int nnp_export_labels_from_dataset(const struct nnp_dataset *d, struct nnp_export_labels *l);
void nnp_export_labels_release(struct nnp_export_labels *l);

/* ---- the segmentation rule (nnU-Net's LabelManager; shared with nnp
 * ensemble, common/ensemble.h) ----
 * Applied one channel at a time, channels in order c = 0..K-1, to the same
 * n voxels; lab holds the decision so far (int32 per voxel). */

/* Labels: argmax over channels, the first maximum wins (numpy's argmax).
 * c == 0 copies v into best and sets lab to 0; c > 0 sets lab = c and
 * best = v where v > best.  No NaN may be passed. */
void nnp_export_argmax_channel(const float *v, float *best, int32_t *lab, int32_t c, int64_t n);
/* Regions: lab = value where p > 0.5 (strict); start lab at 0 and apply
 * the regions in regions_class_order (later ones overwrite).  p are
 * probabilities (the export passes sigmoid(logit) in float32). */
void nnp_export_region_channel(const float *p, int32_t *lab, int32_t value, int64_t n);
/* Segmentation dtype: NNP_U8, or NNP_U16 with >= 255 foreground labels
 * (l NULL: K - 1 foreground labels). */
enum nnp_dtype nnp_export_seg_dtype(const struct nnp_export_labels *l, int64_t K);
/* n decisions into dst of dtype dt (NNP_U8 or NNP_U16). */
void nnp_export_store_labels(enum nnp_dtype dt, void *dst, const int32_t *lab, int64_t n);

struct nnp_export_opts {
	int order, order_z, force_separate_z;  /* resampling_fn_probabilities_kwargs */
	int kwargs_set;          /* 0: props.resampling_fn_probabilities_kwargs when present,
	                            else order 1, order_z 0, auto */
	int fp16_compat;         /* round resampled logits to float16 (nnU-Net's dtype) */
	int save_probabilities;
	uint64_t max_memory;     /* bytes the whole-volume path may use; 0 = no limit */
	const struct nnp_export_labels *labels;   /* NULL: plain argmax */
	int path_used;           /* out: NNP_EXPORT_LINEAR, _SEPZ or _WHOLE (tests) */
};

enum { NNP_EXPORT_LINEAR = 1, NNP_EXPORT_SEPZ = 2, NNP_EXPORT_WHOLE = 3 };

void nnp_export_opts_init(struct nnp_export_opts *o);

/* f: the header just returned by nnp_reader_next on r (role "logits");
 * reads its chunks and writes the output frame(s) to w.  Errors: NNP_EDATA
 * (missing props naming the case and the prop, K mismatch, NaN/inf,
 * truncated stream), NNP_EUSAGE (bad options), NNP_ENOMEM, NNP_EIO. */
int nnp_export_frame(struct nnp_reader *r, const struct nnp_frame *f, struct nnp_export_opts *o,
		     struct nnp_writer *w);

/* Internal, for tests: round n float64 values to float16 (once, nearest
 * even) and back to float, as --fp16-compat does (vector path when the CPU
 * has F16C). */
void nnp__export_round_f16(const double *t, int64_t n, float *out);

#endif
