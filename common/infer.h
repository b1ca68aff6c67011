/* infer.h — the sliding-window prediction driver (nnU-Net 2.8.1
 * predict_sliding_window_return_logits + _internal_maybe_mirror_and_predict +
 * the fold average of predict_logits_from_preprocessed_data;
 * nnunet-facts §9.3-9.5, docs/sliding-window.md "The prediction driver").
 * The network is a callback: this file knows nothing about its layers.
 *
 * Invariants:
 * - The image is float32 (C, Z, Y, X), C order, host memory, unpadded; it is
 *   zero-padded (nnp_sw_pad) virtually, never copied whole.  3D tiles pad and
 *   tile all three axes; 2D tiles (ndim_tile 2) pad and tile axes Y, X and run
 *   on every slice z of axis 0 (the network sees data[:, z, y:y+p0, x:x+p1]).
 * - Tiles are visited in nnU-Net's order (nnp_sw_tile: axis 0 outermost; for
 *   2D, slice z outermost) and added to the accumulator in that order, every
 *   model (fold) in turn for each z-row of tiles.  Per tile the prediction is
 *   net(x) + sum over the non-empty subsets S of the mirror axes, in
 *   itertools.combinations order, of flip(net(flip(x, S)), S), divided by the
 *   number of terms, all float32, summed in that order.
 * - The output is delivered through emit() in increasing z, every image slice
 *   exactly once, as soon as no later tile touches it: the accumulator is a ring
 *   of tile_z padded slices (1 for 2D tiles), not the volume.
 * - Float32 mode (fp16_compat 0): acc += pred * G and cnt += G in float32 (G the
 *   float16-valued Gaussian as float32, or 1); one accumulator for all models,
 *   cnt counted once; value = acc / (cnt * nmodels).
 * - fp16_compat: nnU-Net's float16 roundings bit for bit: per model a float16
 *   accumulator, acc = half(float(acc) + pred * G), cnt = half(float(cnt) + G),
 *   per model r = half(acc / cnt) (an inf aborts, as nnU-Net does), models
 *   summed in float16 in order (each add rounded), then half(sum / nmodels).
 *   Values are delivered as the exactly equal float32.
 * - Any non-finite tile prediction or output value is NNP_EDATA with the model,
 *   tile or slice named.  Only the unpadded region of each slice is checked
 *   (nnU-Net checks the padding too).
 *
 * Ownership: functions never take ownership of their pointer arguments; the
 * slab passed to emit() and the buffers passed to forward() belong to the
 * driver and are valid only during the call.  Callbacks are called from the
 * calling thread, never concurrently, and return NNP_OK or a negative NNP_E*
 * code after recording a message (nnp_err); the driver returns that code
 * (forward errors get the model and tile as context).  No global state.
 */
#ifndef NNP_INFER_H
#define NNP_INFER_H

#include <stdint.h>

/* One network (one fold).  forward() runs it on n inputs: in is n x
 * in_channels x tile floats, out (driver-allocated) receives n x out_channels x
 * tile floats, tile = prod(opts.tile[0..ndim_tile)), C order. */
struct nnp_infer_model {
	int in_channels, out_channels;
	void *ctx;
	int (*forward)(void *ctx, int n, const float *in, float *out);
};

struct nnp_infer_opts {
	int ndim_tile;          /* 2 or 3 */
	int64_t tile[3];        /* patch size, ndim_tile entries (z, y, x) or (y, x) */
	double step;            /* tile_step_size, 0 < step <= 1 (0.5) */
	int use_gaussian;       /* 1: Gaussian weights (sigma 1/8, scale 10); 0: weight 1 */
	int mirror_axes[3];     /* axes of the TILE (0 .. ndim_tile-1), distinct */
	int n_mirror_axes;      /* 0 = no test-time mirroring */
	int fp16_compat;        /* 1: reproduce nnU-Net's float16 accumulation */
	int max_batch;          /* network inputs per forward() call (mirrored copies count), >= 1 */
};

/* Slab of K x zs x Y x X floats, image z in [z0, z0 + zs), unpadded. */
typedef int (*nnp_infer_emit_fn)(void *ctx, int64_t z0, int64_t zs, const float *slab);

/* Defaults: 3D, tile 0 (must be set), step 0.5, Gaussian on, no mirroring,
 * float32 mode, max_batch 8. */
void nnp_infer_opts_init(struct nnp_infer_opts *o);

/* Predict one case: image (shape = C, Z, Y, X) with the nmodels >= 1 models
 * (same in/out channels; in_channels == C), slabs to emit(emit_ctx, ...).
 * NNP_EUSAGE for bad options/arguments, NNP_ENOMEM if a buffer cannot be
 * allocated, NNP_EDATA for non-finite values, or a callback's code. */
int nnp_infer_run(const struct nnp_infer_opts *o, const struct nnp_infer_model *models,
		  int nmodels, const float *image, const int64_t shape[4], nnp_infer_emit_fn emit,
		  void *emit_ctx);

/* Peak bytes nnp_infer_run allocates for such a case, plus the input image
 * itself (C x Z x Y x X floats): accumulator ring, emitted slab, forward
 * in/out buffers of max_batch tiles, one tile prediction, the Gaussian.  The
 * network's own memory is not included.  Beyond the input term it does not
 * depend on Z.  NNP_EUSAGE as nnp_infer_run for bad options. */
int nnp_infer_estimate(const struct nnp_infer_opts *o, int out_channels, int nmodels,
		       const int64_t shape[4], int64_t *bytes);

#endif
