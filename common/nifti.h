/* nifti.h — NIfTI-1/2 input and output (.nii, .nii.gz, .hdr/.img).
 *
 * Headers are parsed with nifticlib; voxel data is streamed slab by slab
 * through zlib so a volume never has to be held whole.
 *
 * Geometry rules (docs/nifti.md):
 *  - affine: sform if sform_code > 0, else qform if qform_code > 0, else
 *    diag(pixdim[1..3]) (nibabel's rule, which nnU-Net's NibabelIO uses).
 *  - spacing (z, y, x) = |pixdim[3]|, |pixdim[2]|, |pixdim[1]|.
 *  - scl_slope/scl_inter are CARRIED, not applied: voxel values stay in the
 *    stored dtype so round trips are bit-exact; frames carry "scale" and the
 *    float conversions in common/ apply it.
 *  - 3D file: one channel; 4D file: dim[4] channels; dim[5..7] must be 1.
 *
 * Ownership: nnp_nifti_open returns a handle freed by nnp_nifti_close.
 */
#ifndef NNP_NIFTI_H
#define NNP_NIFTI_H

#include "frame.h"

struct nnp_nifti_in;

/* Open, parse and validate a NIfTI file; positioned at the first voxel.
 * Thread-safe: the header parsing (nifticlib) runs under a lock. */
int nnp_nifti_open(const char *path, struct nnp_nifti_in **out);
void nnp_nifti_close(struct nnp_nifti_in *in);
/* Geometry and header of the file as a frame (no props, role empty). */
const struct nnp_frame *nnp_nifti_frame(const struct nnp_nifti_in *in);
const char *nnp_nifti_path(const struct nnp_nifti_in *in);
/* True for gzip-compressed voxel data (reads must then be sequential). */
int nnp_nifti_is_compressed(const struct nnp_nifti_in *in);
/* Read the next zs slices of channel c into dst (host order, file dtype).
 * Reads must be sequential in file order: for 4D files that is channel by
 * channel (c = 0 fully first), for 3D files the channel is 0. */
int nnp_nifti_read_slab(struct nnp_nifti_in *in, int64_t c, int64_t z0, int64_t zs, void *dst);

/* For uncompressed files without byte swapping: the fd and the byte offset
 * of voxel (c, z) so data can be moved without copies; -1 otherwise. */
int nnp_nifti_raw_fd(const struct nnp_nifti_in *in, int64_t c, int64_t z, uint64_t *off);

/* Whole-file read into a new volume (frame from the file). */
int nnp_nifti_read_volume(const char *path, struct nnp_vol *v);

/* ---- writing ---- */
struct nnp_nifti_out;
struct nnp_nifti_opts {
	int gzip_level;     /* 0..9, -1 = default (1); ignored for .nii */
	int force;          /* overwrite existing files */
	int version;        /* 0: from the carried header (else 1), 1 or 2 */
};
/* Create path (atomically: a temp file renamed on commit) for channels
 * [c0, c0+nc) of frame f.  nc > 1 makes a 4D file.  The carried header
 * nifti[hdr_index] (if present) supplies every field the frame does not
 * determine; the frame's dtype, shape, spacing, affine and scale win. */
int nnp_nifti_create(const char *path, const struct nnp_frame *f, int64_t c0, int64_t nc,
		     size_t hdr_index, const struct nnp_nifti_opts *o, struct nnp_nifti_out **out);
/* Append voxel bytes in file order. */
int nnp_nifti_write(struct nnp_nifti_out *o, const void *data, size_t nbytes);
/* The fd of an uncompressed output (-1 for .nii.gz), and accounting for
 * bytes written to it directly. */
int nnp_nifti_out_fd(const struct nnp_nifti_out *o);
int nnp_nifti_wrote(struct nnp_nifti_out *o, uint64_t nbytes);
uint64_t nnp_nifti_expected(const struct nnp_nifti_out *o);   /* voxel bytes due */
/* Finish: close, check, rename into place. */
int nnp_nifti_commit(struct nnp_nifti_out *o);
/* Abandon: remove the temp file. NULL is a no-op. */
void nnp_nifti_abort(struct nnp_nifti_out *o);
/* Whole-volume write of channels [c0, c0+nc). */
int nnp_nifti_write_volume(const char *path, const struct nnp_vol *v, int64_t c0, int64_t nc,
			   size_t hdr_index, const struct nnp_nifti_opts *o);

/* True if the name ends with .nii, .nii.gz, .hdr, .img(.gz). */
int nnp_nifti_name_ok(const char *path);

#endif
