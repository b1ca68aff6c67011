/* frame.h — the nnpipe frame stream (specified in schemas/frame.md).
 *
 * A stream is a sequence of top-level msgpack objects.  A frame is one header
 * map followed by nchunks bin objects.  Chunk i holds slices
 * [i*chunk_slices, min((i+1)*chunk_slices, z)) of all channels, laid out
 * (c, zs, y, x) with x fastest, in the header's dtype.
 *
 * Ownership: struct nnp_frame owns case_id, scale, nifti[] and props;
 * nnp_frame_release() frees them, nnp_frame_copy() deep-copies.  struct
 * nnp_vol owns its frame and its data (zeroed, at least 16-byte aligned).  Functions never
 * take ownership of const pointers; *_free(NULL) is a no-op.
 *
 * Readers validate every size against the caps below before allocating,
 * ignore unknown keys, reject unknown major versions and report truncation
 * with the stream name, case and byte offset.
 */
#ifndef NNP_FRAME_H
#define NNP_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "dtype.h"

#define NNP_FRAME_MAJOR 1
#define NNP_FRAME_MINOR 0
#define NNP_HEADER_MAX ((size_t)16 << 20)      /* header map bytes */
#define NNP_CHUNK_MAX ((uint64_t)64 << 20)     /* one chunk's bytes */
#define NNP_CHUNK_TARGET ((uint64_t)8 << 20)   /* default chunk size */
#define NNP_DIM_MAX ((int64_t)1 << 20)         /* any axis length */
#define NNP_CHANNELS_MAX 65536
#define NNP_NBYTES_MAX ((uint64_t)1 << 42)     /* one frame's payload */
#define NNP_NIFTI_EXT_MAX ((size_t)4 << 20)

/* One carried NIfTI header (from one source file). */
struct nnp_nifti_hdr {
	int version;            /* 1 or 2 */
	unsigned char *raw;     /* host-order header bytes: 348 (v1) or 540 (v2) */
	size_t raw_len;
	unsigned char *ext;     /* NIfTI extensions as stored after the header
	                           (esize/ecode records, host order), may be NULL */
	size_t ext_len;
};

struct nnp_frame {
	int vmajor, vminor;
	char role[32];          /* image, label, logits, probabilities, seg, mask */
	char *case_id;          /* may be NULL */
	enum nnp_dtype dtype;
	int64_t shape[4];       /* c, z, y, x */
	double spacing[3];      /* z, y, x (mm) */
	double affine[4][4];    /* NIfTI voxel (i,j,k)=(x,y,z) -> world (RAS mm) */
	int has_affine;
	int64_t chunk_slices;   /* 0: writer chooses (NNP_CHUNK_TARGET) */
	double *scale;          /* NULL or c pairs {slope, inter} (2*c doubles);
	                           slope 0 = that channel is unscaled */
	struct nnp_nifti_hdr *nifti;
	size_t n_nifti;
	json_t *props;          /* JSON object or NULL */
};

struct nnp_vol {
	struct nnp_frame f;
	void *data;             /* c*z*y*x elements of f.dtype */
};

void nnp_frame_init(struct nnp_frame *f);
void nnp_frame_release(struct nnp_frame *f);
int nnp_frame_copy(struct nnp_frame *dst, const struct nnp_frame *src);
int nnp_frame_set_case(struct nnp_frame *f, const char *case_id);
uint64_t nnp_frame_nvox(const struct nnp_frame *f);      /* z*y*x */
uint64_t nnp_frame_nbytes(const struct nnp_frame *f);    /* c*z*y*x*esize */
uint64_t nnp_frame_slice_bytes(const struct nnp_frame *f); /* c*y*x*esize */
int64_t nnp_frame_nchunks(const struct nnp_frame *f);
/* Check shape, dtype, caps; fills chunk_slices if 0. */
int nnp_frame_validate(struct nnp_frame *f);
/* Diagonal affine from spacing when none is known. */
void nnp_frame_default_affine(struct nnp_frame *f);
/* Props helpers: props is created on first set. */
json_t *nnp_frame_props(struct nnp_frame *f);

void nnp_vol_init(struct nnp_vol *v);
/* Allocate data for v->f (validated); zero-filled. */
int nnp_vol_alloc(struct nnp_vol *v);
void nnp_vol_release(struct nnp_vol *v);
void *nnp_aligned_alloc(size_t n);   /* zeroed, >= 16-byte aligned; free with free() */

/* ---- reading ---- */
struct nnp_reader;
/* fd is not closed by nnp_reader_free. name appears in messages. */
struct nnp_reader *nnp_reader_fd(int fd, const char *name);
struct nnp_reader *nnp_reader_mem(const void *buf, size_t len, const char *name);
/* path "-" is stdin. Returns NULL with nnp_err set. */
struct nnp_reader *nnp_reader_open(const char *path);
void nnp_reader_free(struct nnp_reader *r);
const char *nnp_reader_name(const struct nnp_reader *r);
uint64_t nnp_reader_offset(const struct nnp_reader *r);

/* Read the next frame header into f (initialised by the call).
 * Returns 1 for a frame, 0 at a clean end of stream, <0 on error.
 * The previous frame's chunks must have been consumed (or are skipped). */
int nnp_reader_next(struct nnp_reader *r, struct nnp_frame *f);
/* Next chunk of the current frame into dst (layout c, zs, y, x).
 * *z0 and *zs receive its slab.  Returns 1, 0 if no chunk is left, <0 error. */
int nnp_reader_chunk(struct nnp_reader *r, void *dst, size_t cap, int64_t *z0, int64_t *zs);
/* Next chunk straight into its place in a whole volume v (whose frame
 * matches the current one). Same returns. */
int nnp_reader_chunk_into(struct nnp_reader *r, struct nnp_vol *v);
/* Zero-copy variant for single-channel frames: move the next chunk's
 * payload to dst_fd (splice from a pipe, else read/write).  Only for frames
 * whose payload needs no byte swapping (see nnp_reader_swaps).  *nbytes
 * receives the payload size.  Same returns as nnp_reader_chunk. */
int nnp_reader_chunk_fd(struct nnp_reader *r, int dst_fd, const char *dst_name, uint64_t *nbytes);
int nnp_reader_swaps(const struct nnp_reader *r);
/* Read the current frame's payload into v, whose frame v->f the caller has
 * set (typically moved from nnp_reader_next's output); allocates v->data. */
int nnp_reader_payload(struct nnp_reader *r, struct nnp_vol *v);
/* For a reader on a seekable file opened at its start: record the file
 * offset of every chunk payload of the current frame (nnp_frame_nchunks
 * entries) and seek past the payloads without reading them. */
int nnp_reader_index(struct nnp_reader *r, uint64_t *offsets);
/* Skip the remaining chunks of the current frame. */
int nnp_reader_skip(struct nnp_reader *r);
/* Next whole frame: header + all chunks.  1, 0 at end, <0 error. */
int nnp_reader_volume(struct nnp_reader *r, struct nnp_vol *v);
/* Largest chunk of the current frame in bytes. */
uint64_t nnp_reader_chunk_bytes(const struct nnp_reader *r);

/* ---- writing ---- */
struct nnp_writer;
struct nnp_writer *nnp_writer_fd(int fd, const char *name);
void nnp_writer_free(struct nnp_writer *w);
/* Start a frame: writes the header. f->chunk_slices 0 is chosen here
 * (and stored back). */
int nnp_writer_begin(struct nnp_writer *w, struct nnp_frame *f);
/* Write the next chunk: zs slices, layout (c, zs, y, x). */
int nnp_writer_chunk(struct nnp_writer *w, const void *data, int64_t zs);
/* Write the next chunk (zs slices) from a file: segment i (one channel's
 * slab of seglen bytes) starts at offs[i] in src_fd.  Uses sendfile, falls
 * back to pread/write. */
int nnp_writer_chunk_file(struct nnp_writer *w, int src_fd, const uint64_t *offs, int64_t nseg,
			  uint64_t seglen, int64_t zs, const char *src_name);
/* Write the next chunk gathered from a whole volume (no copy). */
int nnp_writer_chunk_from(struct nnp_writer *w, const struct nnp_vol *v);
/* Whole frame: begin + all chunks. */
int nnp_writer_volume(struct nnp_writer *w, struct nnp_vol *v);
int nnp_writer_flush(struct nnp_writer *w);

/* Zero-copy transfers (sendfile/splice) are used unless NNP_ZERO_COPY=0. */
int nnp_zero_copy_enabled(void);

/* Encode a header map into a malloc'ed buffer (for tests and tools). */
int nnp_frame_encode_header(const struct nnp_frame *f, unsigned char **buf, size_t *len);

#endif
