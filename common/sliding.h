/* sliding.h — nnU-Net's sliding-window geometry and Gaussian importance map
 * (nnunetv2/inference/sliding_window_prediction.py; docs/sliding-window.md).
 *
 * Invariants: every array argument has ndim entries (1 <= ndim <= 3) in
 * nnU-Net's axis order (z, y, x for 3D tiles, y, x for 2D tiles), axis 0
 * slowest.  Tile offsets are those of compute_steps_for_sliding_window on the
 * PADDED image (every axis >= the tile; shorter axes count as padded); tiles are enumerated axis 0
 * outermost, the last axis innermost, as nnU-Net's loops do.  The Gaussian is
 * compute_gaussian bit for bit: float16 values (stored as half bits or as the
 * exactly equal float32), zeros replaced by the smallest nonzero value.
 *
 * Ownership: struct nnp_sw_steps owns its offset arrays; nnp_sw_steps_release
 * frees them (a zeroed or released struct may be released again).  Functions
 * never take ownership of const pointers; outputs are caller-allocated.
 */
#ifndef NNP_SLIDING_H
#define NNP_SLIDING_H

#include <stdint.h>

#define NNP_SW_MAXDIM 3
#define NNP_SW_STEPS_MAX ((int64_t)1 << 21)     /* offsets per axis */
#define NNP_SW_GAUSS_MAX ((int64_t)1 << 30)     /* voxels of one Gaussian map */

struct nnp_sw_steps {
	int ndim;
	int64_t tile[NNP_SW_MAXDIM];
	int64_t n[NNP_SW_MAXDIM];      /* offsets on each axis (>= 1) */
	int64_t *off[NNP_SW_MAXDIM];   /* n[d] offsets, ascending, off[d][0] = 0 */
};

/* pad_nd_image's rule for each axis: diff = max(tile - size, 0), lo = diff/2
 * zeros before, hi = diff - diff/2 after; padded (may be NULL) = size + lo + hi.
 * The inverse crop of the padded array is [lo, lo + size) per axis.
 * NNP_EUSAGE for ndim out of range or sizes < 1. */
int nnp_sw_pad(int ndim, const int64_t *size, const int64_t *tile, int64_t *lo, int64_t *hi,
	       int64_t *padded);

/* compute_steps_for_sliding_window(image_size, tile, step_fraction) into *s
 * (initialised by the call): n = ceil((size - tile) / (tile * step)) + 1 in
 * float64, offsets rint(((size - tile) / (n - 1)) * i) (round half to even),
 * [0] when n == 1.  An axis shorter than the tile counts as padded to the
 * tile (nnp_sw_pad): one offset 0.  Sizes must be >= 1 and
 * 0 < step_fraction <= 1, else NNP_EUSAGE; NNP_ENOMEM past NNP_SW_STEPS_MAX. */
int nnp_sw_steps(int ndim, const int64_t *image, const int64_t *tile, double step_fraction,
		 struct nnp_sw_steps *s);
void nnp_sw_steps_release(struct nnp_sw_steps *s);
/* Number of tiles (product of n[d]); -1 if it would overflow int64. */
int64_t nnp_sw_ntiles(const struct nnp_sw_steps *s);
/* Start of tile idx (0 <= idx < ntiles) in nnU-Net's order into lo[ndim];
 * the tile is [lo[d], lo[d] + tile[d]).  NNP_EUSAGE if idx is out of range. */
int nnp_sw_tile(const struct nnp_sw_steps *s, int64_t idx, int64_t *lo);

/* compute_gaussian(tile, sigma_scale, value_scaling_factor) with float16
 * output: a unit point at tile // 2 filtered by scipy.ndimage.gaussian_filter
 * (sigma = tile * sigma_scale per axis, truncate 4.0, mode 'constant', cval 0;
 * scipy's kernel and correlation order reproduced in float64), divided by its
 * maximum and multiplied by value_scaling_factor, cast to float16 as torch
 * does (double -> float -> half, round to nearest even each time), then every
 * 0 replaced by the minimum of the nonzero values.  out_half has prod(tile)
 * elements in C order.  NNP_EUSAGE for bad arguments (or a map that is all
 * zero in float16), NNP_ENOMEM past NNP_SW_GAUSS_MAX or when allocation fails. */
int nnp_sw_gaussian_half(int ndim, const int64_t *tile, double sigma_scale,
			 double value_scaling_factor, uint16_t *out_half);
/* The same map as float32 values (each exactly a float16 value). */
int nnp_sw_gaussian(int ndim, const int64_t *tile, double sigma_scale, double value_scaling_factor,
		    float *out);

#endif
