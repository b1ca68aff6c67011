/* ingest.h — turning NIfTI files into frames (used by nnp-read and the
 * preprocessing filters).
 *
 * An nnp_ingest groups the files of one frame: several files are channels
 * (concatenated in order), a 4D file contributes all its channels.  All
 * files must share shape, spacing and affine (tolerances in docs/nifti.md).
 * Ownership: nnp_ingest_open returns an object freed by nnp_ingest_free.
 */
#ifndef NNP_INGEST_H
#define NNP_INGEST_H

#include "frame.h"

struct nnp_ingest;

/* Open files[0..n) as the channels of one frame with the given role and
 * case id.  Geometry mismatches are NNP_EDATA naming the file. */
int nnp_ingest_open(const char *const *files, size_t n, const char *role, const char *case_id,
		    struct nnp_ingest **out);
void nnp_ingest_free(struct nnp_ingest *g);
/* The frame that will be produced (edit props, chunk_slices before
 * streaming). */
struct nnp_frame *nnp_ingest_frame(struct nnp_ingest *g);
/* Check that another ingest (e.g. the label) matches this one's geometry. */
int nnp_ingest_check_same_grid(const struct nnp_ingest *ref, const struct nnp_ingest *g);
/* Read slices [z0, z0+zs) of all channels into dst, layout (c, zs, y, x). */
int nnp_ingest_read_slab(struct nnp_ingest *g, int64_t z0, int64_t zs, void *dst);
/* Read the whole frame into v (initialised by the call). */
int nnp_ingest_read_volume(struct nnp_ingest *g, struct nnp_vol *v);
/* Stream the frame to a writer chunk by chunk (bounded memory). */
int nnp_ingest_stream(struct nnp_ingest *g, struct nnp_writer *w);

/* Case id from a file name: basename without the NIfTI extension and
 * without a trailing _NNNN channel suffix. */
void nnp_case_from_path(const char *path, char *out, size_t outlen);

#endif
