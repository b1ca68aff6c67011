/* postprocess.h — nnU-Net's connected-component postprocessing
 * (remove_all_but_largest_component_from_segmentation, nnunet-facts §10.1).
 *
 * A segmentation is a label map of n0 x n1 x n2 voxels (x = axis 2
 * fastest), int16 or uint8 values.  For a set of labels, the mask is the
 * union of the voxels holding one of them; its connected components under
 * full connectivity (26 neighbours in 3D; a 2D image is 1 x H x W, so 8
 * within the slice) are found, every component whose size equals the
 * largest size is kept (ties keep all) and the other mask voxels are set
 * to 0 (background).  Voxels outside the mask are never changed.
 *
 * Memory: one int32 per voxel (the component labels) besides the map.
 * Ownership: the functions work in place on the caller's array and keep no
 * pointer to it.  No global state.
 */
#ifndef NNP_POSTPROCESS_H
#define NNP_POSTPROCESS_H

#include <stddef.h>
#include <stdint.h>

/* Apply the rule to seg (int16 values) for the nlabels labels in labels.
 * *removed (may be NULL) receives the number of voxels set to 0.
 * NNP_ENOMEM when the component table cannot be allocated. */
int nnp_pp_keep_largest_i16(int16_t *seg, const int64_t n[3], const int *labels, int nlabels, int64_t *removed);
/* The same for uint8 maps. */
int nnp_pp_keep_largest_u8(uint8_t *seg, const int64_t n[3], const int *labels, int nlabels, int64_t *removed);
/* The core on a given mask (bytes 0/1): keep[i] = 1 for the mask voxels in
 * a component of the largest size, 0 elsewhere (all 0 for an empty mask).
 * Memory: one int32 per voxel. */
int nnp_pp_largest_components(const uint8_t *mask, const int64_t n[3], uint8_t *keep);

#endif
