/* casefile.h — random access to a saved stream (.nnp file): the frames'
 * headers and chunk offsets are indexed once, then any box of any frame is
 * read with pread, touching only the chunks it covers (how the training
 * sampler reads patches without loading whole cases).
 * Ownership: nnp_casefile_open returns an object freed by
 * nnp_casefile_close; frames returned are borrowed from it. */
#ifndef NNP_CASEFILE_H
#define NNP_CASEFILE_H

#include "frame.h"

struct nnp_casefile;

int nnp_casefile_open(const char *path, struct nnp_casefile **out);
void nnp_casefile_close(struct nnp_casefile *cf);
size_t nnp_casefile_nframes(const struct nnp_casefile *cf);
const struct nnp_frame *nnp_casefile_frame(const struct nnp_casefile *cf, size_t i);
/* Index of the first frame with this role, or -1. */
long nnp_casefile_find(const struct nnp_casefile *cf, const char *role);
/* Box [lo, hi) (z, y, x; inside the volume) of all channels of frame i into
 * dst, laid out (c, hi0-lo0, hi1-lo1, hi2-lo2), host byte order. */
int nnp_casefile_read_box(const struct nnp_casefile *cf, size_t i, const int64_t lo[3], const int64_t hi[3],
			  void *dst);
/* Whole frame i into v (initialised by the call). */
int nnp_casefile_read_frame(const struct nnp_casefile *cf, size_t i, struct nnp_vol *v);

#endif
