/* augment.h — nnU-Net's training augmentation (nnunet-facts §8), one sample
 * at a time, each transform usable on its own (docs/augmentation.md).
 *
 * A sample is a struct nnp_patch: the image (c, n0, n1, n2) float32 and its
 * one-channel int16 segmentation (n0, n1, n2), x = axis 2 fastest.  2D
 * configurations use n0 == 1 and work on axes 1-2 ("spatial rank" 2);
 * dummy-2D 3D samples also use rank 2 for the spatial transform, applied to
 * every axis-0 slice alike.
 *
 * Randomness: every draw comes from one struct nnp_aug_rng (numpy's legacy
 * RandomState, rng.h, plus its cached Gaussian), so a sample's result
 * depends only on the seed it was given.  Transforms take the parameters
 * they use explicitly (nnp_aug_<name>); nnp_aug_run draws them with
 * nnU-Net's probabilities and ranges and records them.
 *
 * Ownership: struct nnp_patch owns img and seg (malloc'ed, released with
 * nnp_patch_release); transforms that change the shape replace them.  struct
 * nnp_aug_record owns its per-channel arrays (nnp_aug_record_release).  No
 * function keeps a pointer to its arguments; no global state: functions are
 * safe to call from several threads on different samples.
 */
#ifndef NNP_AUGMENT_H
#define NNP_AUGMENT_H

#include <stdint.h>
#include <jansson.h>
#include "rng.h"

struct nnp_patch {
	int64_t c;          /* image channels (>= 1) */
	int64_t n[3];       /* spatial extent; 2D samples have n[0] == 1 */
	float *img;         /* c*n0*n1*n2 */
	int16_t *seg;       /* n0*n1*n2; -1 = outside/padded */
};

void nnp_patch_init(struct nnp_patch *p);
/* Allocate img and seg for c x n (zeroed). */
int nnp_patch_alloc(struct nnp_patch *p, int64_t c, const int64_t n[3]);
void nnp_patch_release(struct nnp_patch *p);
int64_t nnp_patch_nvox(const struct nnp_patch *p);

/* ---- random numbers ---- */
struct nnp_aug_rng {
	struct nnp_rs rs;
	int has_gauss;
	double gauss;
};
/* The per-sample seed: a mix of (seed, iteration, index), so results do not
 * depend on the order or the thread a sample is processed in. */
uint32_t nnp_aug_sample_seed(uint64_t seed, int64_t iteration, int64_t index);
void nnp_aug_rng_seed(struct nnp_aug_rng *r, uint32_t seed);
double nnp_aug_uniform(struct nnp_aug_rng *r, double lo, double hi);
/* numpy legacy standard_normal (polar method, second value cached). */
double nnp_aug_normal(struct nnp_aug_rng *r);
/* BGContrast((a, b)): p 0.5 uniform(a, 1) (if a < 1), else uniform(max(a,1), b). */
double nnp_aug_bgcontrast(struct nnp_aug_rng *r, double a, double b);

/* ---- the transforms (deterministic given their parameters) ---- */
/* A = Rz(t2) Ry(t1) Rx(t0) diag(s) for rank 3, R(t2) diag(s) for rank 2
 * (in A[0..1][0..1]); angles in radians. */
void nnp_aug_affine(int rank, const double angle[3], double scale, double A[3][3]);
/* Spatial transform to the out extent (rank 3: out[0..2]; rank 2: axes 1-2,
 * out[0] must equal in->n[0]).  A == NULL: centre crop at floor(S/2) - p/2
 * (image padded 0, seg -1).  Otherwise output grid g = k - (p-1)/2, input
 * position q = A g + S/2 - 0.5; image (bi/tri)linear with zero padding; seg by
 * the one-hot x1000 float16 rule, -1 where q leaves [0, S-1].  Fills *out
 * (initialised by the call). */
int nnp_aug_spatial(const struct nnp_patch *in, int rank, const int64_t out_n[3], const double (*A)[3],
		    struct nnp_patch *out);
/* x += N(0, sigma^2) on every voxel of channel ch. */
void nnp_aug_noise(struct nnp_patch *p, int64_t ch, double sigma, struct nnp_aug_rng *r);
/* ksize = nearest odd of round(6 sigma + 0.5) (half-even, then toward the
 * unrounded value); the kernel is exp(-x^2 / 2 sigma^2) normalised. */
int nnp_aug_blur_ksize(double sigma);
/* Separable blur of channel ch with sigma[a] per axis (sigma[a] <= 0 or an
 * axis of extent 1: that axis untouched), reflect padding. */
int nnp_aug_blur(struct nnp_patch *p, int64_t ch, const double sigma[3]);
void nnp_aug_brightness(struct nnp_patch *p, int64_t ch, double m);
/* x = clip((x - mean) f + mean, min, max). */
void nnp_aug_contrast(struct nnp_patch *p, int64_t ch, double f);
/* nearest-exact down to round(n s[a]) then linear (align_corners False) up. */
int nnp_aug_lowres(struct nnp_patch *p, int64_t ch, const double s[3]);
/* Gamma with retained mean and unbiased std; invert: negate before and after. */
void nnp_aug_gamma(struct nnp_patch *p, int64_t ch, double gamma, int invert);
/* Flip the axes with flip[a] != 0 (image and seg). */
void nnp_aug_mirror(struct nnp_patch *p, const int flip[3]);
/* image channel ch = 0 where seg < 0. */
void nnp_aug_mask(struct nnp_patch *p, int64_t ch);
/* seg -1 -> 0. */
void nnp_aug_remove_label(struct nnp_patch *p);

/* ---- the pipeline ---- */
enum nnp_aug_step {
	NNP_AUG_ROTATION, NNP_AUG_SCALING, NNP_AUG_NOISE, NNP_AUG_BLUR, NNP_AUG_BRIGHTNESS,
	NNP_AUG_CONTRAST, NNP_AUG_LOWRES, NNP_AUG_GAMMA_INV, NNP_AUG_GAMMA, NNP_AUG_MIRROR,
	NNP_AUG_MASK, NNP_AUG_NSTEPS
};
/* "rotation", "scaling", "noise", "blur", "brightness", "contrast", "lowres",
 * "gamma_inv", "gamma", "mirror", "mask". */
const char *nnp_aug_step_name(int step);
int nnp_aug_step_from_name(const char *name);   /* -1 if unknown */

/* Probabilities: p[step] for the sample, p_ch[step] per channel (blur,
 * lowres) or per axis (mirror). */
struct nnp_aug_probs {
	double p[NNP_AUG_NSTEPS];
	double p_ch[NNP_AUG_NSTEPS];
};
void nnp_aug_probs_default(struct nnp_aug_probs *pr);
/* Only the steps in the bit mask (1 << step), each with probability 1. */
void nnp_aug_probs_only(struct nnp_aug_probs *pr, unsigned mask);
/* Nothing but the centre crop and RemoveLabel (validation). */
void nnp_aug_probs_none(struct nnp_aug_probs *pr);

struct nnp_aug_config {
	int64_t patch[3];      /* final patch (2D: {1, p0, p1}) */
	int two_d;             /* a 2D configuration (n0 == 1) */
	int dummy_2d;
	double rot[2];         /* rotation range (radians) */
	int mirror_axes[3];    /* allowed, in patch axes */
	const unsigned char *mask_ch;   /* NULL or n_mask flags: MaskImage channels */
	int64_t n_mask;                 /* entries of mask_ch (channels beyond: not masked) */
	struct nnp_aug_probs probs;
};

/* What was drawn; per-channel arrays hold NaN where a channel was skipped. */
struct nnp_aug_record {
	unsigned applied;          /* bits 1 << step */
	int order[NNP_AUG_NSTEPS]; /* steps in the order applied */
	int napplied;
	double angle[3];           /* used angles (rank 2: angle[2] only) */
	double scale;
	double noise_sigma;
	int mirrored[3];
	int64_t c;
	double *blur_sigma;        /* c*3 */
	double *brightness, *contrast, *lowres, *gamma_inv, *gamma;   /* c each */
};
void nnp_aug_record_init(struct nnp_aug_record *rec);
void nnp_aug_record_release(struct nnp_aug_record *rec);

/* Check a sample against cfg (extents, dummy-2D rules); NNP_EDATA if not. */
int nnp_aug_check(const struct nnp_aug_config *cfg, const struct nnp_patch *p);
/* The whole §8 pipeline on *p (replaced by the final-patch result, RemoveLabel
 * applied); the draws and decisions go to *rec (initialised by the call). */
int nnp_aug_run(const struct nnp_aug_config *cfg, struct nnp_patch *p, struct nnp_aug_rng *r,
		struct nnp_aug_record *rec);

/* ---- the sample props of the stream (docs/augmentation.md) ---- */
struct nnp_aug_sample {
	int64_t iteration, index;
	int nd;                /* entries of final_patch: 2 (2D configuration) or 3 */
};
/* props.sample -> the geometry part of cfg (patch, two_d, dummy_2d, rot,
 * mirror_axes) and its iteration/index; cfg->probs and cfg->mask_ch are left
 * alone.  NNP_EDATA naming the key when something is missing or wrong. */
int nnp_aug_config_from_sample(const json_t *sample, struct nnp_aug_config *cfg, struct nnp_aug_sample *s);
/* The "augment" props object: applied steps in order (with the dummy-2D
 * conversions, center_crop or the affine, remove_label) and every drawn
 * parameter.  New reference, NULL with NNP_ENOMEM.  Not thread-safe with
 * respect to jansson's hash seeding: call it from one thread. */
json_t *nnp_aug_record_json(const struct nnp_aug_config *cfg, const struct nnp_aug_sample *s,
			    const struct nnp_aug_record *rec, uint32_t seed);

#endif
