/* caseio.h — reading a frame stream case by case.
 *
 * Preprocessing filters work on an image frame together with the label (or
 * generated mask) frame of the same case that may follow it.  The case
 * reader yields either such a pair or any other single frame, looking one
 * header ahead.  Ownership: nnp_case_next fills caller-initialised volumes
 * that the caller releases; the reader is freed with nnp_case_reader_free
 * (the underlying nnp_reader stays the caller's).
 */
#ifndef NNP_CASEIO_H
#define NNP_CASEIO_H

#include "frame.h"

struct nnp_case_reader;

struct nnp_case_reader *nnp_case_reader_new(struct nnp_reader *r);
void nnp_case_reader_free(struct nnp_case_reader *cr);
/* Yield a label/mask frame without a preceding image as NNP_ITEM_OTHER
 * instead of failing (resample works on a lone segmentation). */
void nnp_case_reader_allow_orphans(struct nnp_case_reader *cr, int allow);

enum { NNP_ITEM_END = 0, NNP_ITEM_CASE = 1, NNP_ITEM_OTHER = 2 };
/* Next item: NNP_ITEM_CASE (img = the image, seg = its label/mask or
 * *has_seg = 0), NNP_ITEM_OTHER (img = some other frame, e.g. logits),
 * NNP_ITEM_END, or <0 on error.  A label/mask frame that does not follow
 * the image of its case is an NNP_EDATA error unless orphans are allowed. */
int nnp_case_next(struct nnp_case_reader *cr, struct nnp_vol *img, struct nnp_vol *seg, int *has_seg);

/* The I/O of a case-by-case filter: a stream in (path or "-"), cases read
 * from it, frames written to stdout. */
struct nnp_case_io {
	struct nnp_reader *r;
	struct nnp_case_reader *cr;
	struct nnp_writer *w;
};
int nnp_case_io_open(struct nnp_case_io *io, const char *in, int allow_orphans);
void nnp_case_io_close(struct nnp_case_io *io);

/* True for the roles that mark voxels of a case: "label", "mask". */
int nnp_role_is_seg(const char *role);

#endif
