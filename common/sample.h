/* sample.h — nnU-Net's training patch sampler (nnUNetDataLoader,
 * nnunet-facts §7.2-7.3) as pure functions: the initial (enlarged) patch
 * size and rotation/dummy-2D/mirror settings, the forced-foreground rule,
 * get_bbox with its need_to_pad/lb/ub rules and class choice, and the crop
 * with padding (image 0, label -1) read box-wise from a case file.
 *
 * Geometry is always 3-D (z, y, x): a 2-D configuration samples with the
 * patch (1, p0, p1) on the 3-D volume, as nnU-Net's loader does.
 *
 * Random draws (all from one struct nnp_rs the caller owns, numpy legacy
 * RandomState semantics, rng.h) in this order, which is nnU-Net's:
 *   per iteration: B case indices (choice(n, B, replace=True));
 *   then per sample j = 0..B-1, nnp_sample_bbox:
 *     random box: randint(lb_d, ub_d + 1) for d = z, y, x;
 *     forced (or ignore label): choice(#eligible classes) [forced only],
 *       then choice(#locations of that class); no eligible class or no
 *       annotated voxel: the random box draws instead.
 *
 * Ownership: struct nnp_classlocs owns its arrays (nnp_classlocs_release;
 * release on a zeroed struct is a no-op).  Functions never take ownership
 * of const pointers; casefiles are borrowed.
 */
#ifndef NNP_SAMPLE_H
#define NNP_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include "casefile.h"
#include "dtype.h"
#include "rng.h"

#define NNP_SAMPLE_OVERSAMPLE 0.33      /* oversample_foreground_percent */
#define NNP_SAMPLE_MIN_SCALE 0.85       /* min(scale_range) of get_patch_size */
#define NNP_SAMPLE_ANISO 3.0            /* ANISO_THRESHOLD for dummy 2-D */
#define NNP_SAMPLE_PATCH_MAX ((int64_t)1 << 16)   /* any patch axis */

/* configure_rotation_dummyDA_mirroring_and_inital_patch_size (§7.3) for a
 * configuration's patch_size (dim = 2 or 3 entries, each >= 1). */
struct nnp_sample_aug {
	int dim;                /* 2 or 3 */
	int64_t patch[3];       /* final patch (dim entries) */
	int64_t initial[3];     /* enlarged initial patch (dim entries) */
	int dummy_2d;           /* 3-D only: max(patch) / patch[0] > 3 */
	double rot[2];          /* rotation range (radians), rot[0] = -rot[1] */
	int mirror[3];          /* mirror axes 0..dim-1 */
	int nmirror;
};
int nnp_sample_configure(const int64_t *patch, int dim, struct nnp_sample_aug *out);

/* get_patch_size(patch, rot, rot, rot, (0.85, 1.25)) with one rotation
 * bound r (radians) for every axis: r = min(|r|, pi/2), the element-wise
 * max of |patch . R_a(r)| over the single-axis rotations (one for 2-D),
 * divided by min_scale and truncated. */
void nnp_sample_patch_size(const int64_t *patch, int dim, double rot, double min_scale, int64_t *out);

/* Sample j of a batch of B is forced foreground iff
 * j >= round(B * (1 - 0.33)) (Python's round: half to even). */
int nnp_sample_forced(int64_t j, int64_t batch);

/* The 3-D sampling patch P and final patch F for a configuration:
 * 3-D: P = initial (train) or patch (val); 2-D: (1, ...) of those. */
void nnp_sample_patches(const struct nnp_sample_aug *a, int val, int64_t P[3], int64_t F[3]);

/* get_bbox's bounds: need_to_pad = P - F, raised to P - S where S + n < P;
 * lb = floor(-n / 2), ub = S + ceil(n / 2) - P (lb <= ub always). */
void nnp_sample_bounds(const int64_t S[3], const int64_t P[3], const int64_t F[3], int64_t lb[3],
		       int64_t ub[3]);

/* A case's class_locations frame, parsed. */
struct nnp_classlocs {
	size_t n;               /* classes, in the frame's (request) order */
	char **keys;            /* "1", "(1, 2)", "(-1, 0, 1, 2)" */
	uint64_t *count;        /* stored locations per class */
	uint64_t *first;        /* first row of each class */
	int32_t *rows;          /* (0, z, y, x) rows, all classes */
	long annotated;         /* index of the (-1, ...) key (ignore label), or -1 */
};
/* From the case file's "class_locations" frame (props classes/counts). */
int nnp_classlocs_read(const struct nnp_casefile *cf, struct nnp_classlocs *out);
void nnp_classlocs_release(struct nnp_classlocs *cl);

/* What get_bbox chose. */
struct nnp_sample_pick {
	int64_t lo[3], hi[3];   /* box [lo, hi) in case voxels; hi = lo + P */
	long cls;               /* class index in cl, -1 for a random box */
	int64_t voxel[3];       /* the chosen location (cls >= 0) */
};
/* nnU-Net's get_bbox for a case of spatial shape S.  cl may be NULL (no
 * locations: every box is random).  The ignore-label rule applies when cl
 * has an annotated key.  Forced boxes start at max(lb, voxel - P // 2)
 * (no upper clamp). */
void nnp_sample_bbox(struct nnp_rs *rs, const int64_t S[3], const int64_t P[3], const int64_t F[3], int forced,
		     const struct nnp_classlocs *cl, struct nnp_sample_pick *out);

/* crop_and_pad_nd of frame fi of cf for the box [lo, lo + P): all
 * channels, converted to dtype dt, pad outside the volume.  Only the part
 * of the box inside the volume is read (casefile box read).  dst holds
 * c * P0 * P1 * P2 elements of dt. */
int nnp_sample_crop(const struct nnp_casefile *cf, size_t fi, const int64_t lo[3], const int64_t P[3],
		    enum nnp_dtype dt, double pad, void *dst);

#endif
