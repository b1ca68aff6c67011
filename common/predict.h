/* predict.h — one preprocessed case through a model: the logits frame.
 *
 * nnp_predict_logits runs the sliding-window driver (infer.h) with every fold
 * engine of a model (model.h) over one preprocessed image volume and writes
 * the logits as one frame (role "logits", K channels, the input's geometry
 * and props, dtype float32 or float16) to a frame writer while the window
 * moves: slabs are written as soon as they are final, so memory holds the
 * input, the accumulator window and the network's activations, never the
 * K x volume logits.  Before anything runs, the peak memory is estimated and a
 * run that would exceed opts.max_memory is refused with NNP_ENOMEM and a
 * message naming the bytes needed and what lowers them.
 *
 * Ownership: nothing is taken over; the writer stays the caller's.
 */
#ifndef NNP_PREDICT_H
#define NNP_PREDICT_H

#include <stdint.h>

#include "dtype.h"
#include "frame.h"
#include "infer.h"
#include "model.h"
#include "prog.h"

/* What the sliding window accumulates: the K logits, or the F features
 * before the (linear) segmentation head of every fold, with the heads applied
 * slice by slice afterwards — identical up to float32 rounding and much
 * smaller when F x folds < K (many classes).  AUTO picks the smaller;
 * --fp16-compat always accumulates logits (nnU-Net's roundings). */
enum nnp_accumulate { NNP_ACC_AUTO = 0, NNP_ACC_LOGITS, NNP_ACC_FEATURES };

struct nnp_predict_opts {
	enum nnp_accumulate accumulate;
	struct nnp_infer_opts sw;       /* tile / mirror axes are filled from the model */
	int tta;                        /* mirror on the model's allowed axes */
	enum nnp_dtype out_dtype;       /* NNP_F32 (default) or NNP_F16 */
	uint64_t max_memory;            /* bytes; 0 = no limit */
	struct nnp_progress *progress;  /* NULL, or advanced by one per finished slice
	                                   (begun with the case's slice count) */
};

void nnp_predict_opts_init(struct nnp_predict_opts *o);
/* The sliding-window options for model m (patch size, mirror axes). */
int nnp_predict_sw_opts(const struct nnp_model *m, const struct nnp_predict_opts *o, struct nnp_infer_opts *sw);
/* Peak bytes of nnp_predict_logits for an image of shape (C, Z, Y, X). */
int nnp_predict_estimate(const struct nnp_model *m, const struct nnp_predict_opts *o, const int64_t shape[4],
			 uint64_t *bytes);
int nnp_predict_logits(struct nnp_model *m, const struct nnp_predict_opts *o, const struct nnp_vol *img,
		       struct nnp_writer *w);

#endif
