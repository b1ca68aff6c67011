/* overlay.h — PNG montages of a segmentation over its image, for people to
 * look at (nnUNetv2_plot_overlay_pngs, extended; docs/overlay.md).
 *
 * A montage has one row per chosen slice and the columns image (grey),
 * image + reference (when there is one) and image + prediction.  The rules,
 * all documented in docs/overlay.md and fixed here:
 *  - slices: from the reference if given, else the prediction, foreground =
 *    label > 0; the slice with the most foreground (the first on ties, like
 *    np.argmax) and N - 1 more at (k - 1/2) / (N - 1) of the foreground's
 *    extent (25 % and 75 % for N = 3), moved to the nearest free slice on a
 *    collision (the higher one at equal distance); fewer rows when the
 *    extent has fewer than N slices; without foreground N slices spread
 *    evenly.  Rows are in ascending slice order.
 *  - grey: per image, window [p0.5, p99.5] with numpy's linear percentile
 *    over the finite voxels of the labels' bounding box (reference, else
 *    prediction) grown by an eighth of its extent per side (the whole channel
 *    volume when nothing is labelled);
 *    G = floor(clip((v - lo) / (hi - lo) * 255, 0, 255) + 0.5), 0 when
 *    hi <= lo or v is not finite.
 *  - colour: label l > 0 gets nnp_overlay_colour(l), blended
 *    floor((1 - alpha) * G + alpha * C + 0.5) per channel; labels <= 0 are
 *    transparent.
 *  - geometry: nearest-neighbour upscaling with the in-plane spacing's
 *    aspect ratio (nnp_overlay_panel_size); for slicing axes 1 and 2 the z
 *    axis points up.
 *  - layout: NNP_OVERLAY_GAP pixels around and between panels; with
 *    captions a band of NNP_OVERLAY_BAND pixels above everything (column
 *    titles) and above each row (case id and slice).  Panel (row r, col c)
 *    has its top-left corner at x = G + c (PW + G),
 *    y = G + B + r (B + PH + G) + B (B = 0 without captions).
 *
 * Ownership: nnp_overlay_render returns a malloc'd RGB buffer the caller
 * frees; no function takes ownership of its arguments.  No global state.
 */
#ifndef NNP_OVERLAY_H
#define NNP_OVERLAY_H

#include <stddef.h>
#include <stdint.h>

#define NNP_OVERLAY_SLICES_MAX 64   /* rows */
#define NNP_OVERLAY_PANEL_MAX 4096  /* longest panel edge, pixels */
#define NNP_OVERLAY_GAP 4
#define NNP_OVERLAY_BAND 20         /* caption band height */
#define NNP_OVERLAY_TEXT_SCALE 2

struct nnp_overlay_opts {
	int axis;       /* slicing axis in array order: 0 = z, 1 = y, 2 = x */
	int nslices;    /* rows wanted, 1..NNP_OVERLAY_SLICES_MAX (default 3) */
	double alpha;   /* label opacity, 0..1 (default 0.6) */
	int min_panel;  /* smallest panel edge in pixels (default 256) */
	int captions;   /* column titles and row captions (default 1) */
};

/* The defaults above. */
void nnp_overlay_opts_default(struct nnp_overlay_opts *o);

struct nnp_overlay_input {
	int64_t shape[3];     /* z, y, x */
	double spacing[3];    /* z, y, x */
	const float *image;   /* z*y*x, the channel shown */
	const int32_t *seg;   /* the prediction, z*y*x */
	const int32_t *ref;   /* the reference, or NULL (no reference column) */
	const char *case_id;  /* row captions; NULL: none */
};

struct nnp_overlay_layout {
	int ncols, nrows;
	int panel_w, panel_h, width, height;
	int64_t slices[NNP_OVERLAY_SLICES_MAX];  /* ascending */
	int64_t best;                            /* most foreground; -1 if none */
	double lo, hi;                           /* grey window */
};

/* The colour of label l > 0 (a fixed cycle of 14 distinct colours, l = 1
 * first; nnU-Net's overlay colour cycle without its black). */
void nnp_overlay_colour(int32_t label, unsigned char rgb[3]);

/* np.percentile(finite v, q) (linear), q in [0, 100]; NaN when no value is
 * finite.  Needs a scratch copy: NNP_ENOMEM. */
int nnp_overlay_percentile(const float *v, size_t n, const double *q, size_t nq, double *out);

/* The slices of lab (see above) along axis; returns the number of rows
 * (<= n) written to out, *best the slice with most foreground or -1. */
int nnp_overlay_pick_slices(const int32_t *lab, const int64_t shape[3], int axis, int n,
			    int64_t *out, int64_t *best);

/* Panel size for a rows x cols slice with spacings sp_rows, sp_cols:
 * k = max(min_panel / min(rows sp_rows, cols sp_cols), 1 / min(sp_rows,
 * sp_cols)), lowered so the longer edge is <= NNP_OVERLAY_PANEL_MAX;
 * edges floor(extent k + 0.5), at least 1. */
void nnp_overlay_panel_size(int64_t rows, int64_t cols, double sp_rows, double sp_cols, int min_panel,
			    int *pw, int *ph);

/* The montage: *rgb (width x height x 3, malloc'd) and its layout.
 * NNP_EUSAGE for bad options, NNP_ENOMEM, NNP_EDATA for an empty volume. */
int nnp_overlay_render(const struct nnp_overlay_input *in, const struct nnp_overlay_opts *o,
		       unsigned char **rgb, struct nnp_overlay_layout *lay);

/* One case from NIfTI files: the channels of images[0..nimg) (their
 * concatenation; channel picks one), the prediction seg and the reference
 * ref (or NULL) must share one grid (shape, spacing, affine: NNP_EDATA
 * naming the files otherwise); the montage is written to out as PNG
 * (atomically; an existing out is NNP_EUSAGE unless force).  lay may be
 * NULL.  The case id in the captions is images[0]'s name without the
 * NIfTI ending and the _NNNN channel suffix.  Safe to call from several
 * OpenMP threads at once (nnp_nifti_open and the temp-file registry of
 * atomic.h take their own locks). */
int nnp_overlay_files(const char *const *images, size_t nimg, int channel, const char *seg,
		      const char *ref, const char *out, const struct nnp_overlay_opts *o, int force,
		      struct nnp_overlay_layout *lay);

#endif
