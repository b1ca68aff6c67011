/* transpose.h — nnU-Net's axis transposition (transpose_forward /
 * transpose_backward of the plans, nnunet-facts §4.2, §5.1 step 2).
 * Output array axis m is input axis t[m] (numpy's data.transpose([0] +
 * [t+1 ...])); spacing is permuted the same way and the affine's columns
 * follow, so world coordinates of every voxel are unchanged.
 * Ownership: dst is initialised by the call; the caller releases it. */
#ifndef NNP_TRANSPOSE_H
#define NNP_TRANSPOSE_H

#include <jansson.h>
#include "frame.h"

int nnp_transpose_valid(const int t[3]);           /* a permutation of 0, 1, 2 */
int nnp_transpose_is_identity(const int t[3]);
void nnp_transpose_inverse(const int t[3], int inv[3]);
/* Permute the spatial axes of src into dst; props.transpose_forward records
 * the composition of all transposes applied so far (removed when it becomes
 * the identity). */
int nnp_transpose_vol(const struct nnp_vol *src, const int t[3], struct nnp_vol *dst);
/* The plans' transpose_forward (identity when absent). */
int nnp_transpose_from_plans(const json_t *plans, int t[3]);
/* The transposition a frame carries (identity when props has none). */
void nnp_transpose_of_frame(const struct nnp_frame *f, int t[3]);

/* NNP_EDATA unless frame f carries transposition want (names the fix). */
int nnp_transpose_check(const int want[3], const struct nnp_frame *f);

#endif
