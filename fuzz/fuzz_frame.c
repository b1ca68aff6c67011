/* fuzz_frame.c — libFuzzer target for the frame stream reader.
 * Every input must end in a clean return code: no crash, leak, UB or
 * allocation beyond the caps.  Decoded headers are re-encoded and decoded
 * again to check the codec round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHUNK_MAX ((uint64_t)1 << 20)

static void recode(const struct nnp_frame *f)
{
	unsigned char *buf;
	size_t len;
	struct nnp_reader *r;
	struct nnp_frame g;
	if (nnp_frame_encode_header(f, &buf, &len))
		return;
	r = nnp_reader_mem(buf, len, "recode");
	if (r && nnp_reader_next(r, &g) == 1) {
		if (g.shape[0] != f->shape[0] || g.shape[1] != f->shape[1] || g.dtype != f->dtype ||
		    g.chunk_slices != f->chunk_slices)
			abort();
		nnp_frame_release(&g);
	}
	nnp_reader_free(r);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nnp_reader *r = nnp_reader_mem(data, size, "fuzz");
	struct nnp_frame f;
	int rc;
	if (!r)
		return 0;
	while ((rc = nnp_reader_next(r, &f)) == 1) {
		uint64_t cap = nnp_reader_chunk_bytes(r);
		recode(&f);
		if (cap <= FUZZ_CHUNK_MAX) {
			void *buf = malloc(cap ? cap : 1);
			int64_t z0, zs;
			while (buf && (rc = nnp_reader_chunk(r, buf, cap, &z0, &zs)) == 1)
				;
			free(buf);
		} else {
			rc = nnp_reader_skip(r);
		}
		nnp_frame_release(&f);
		if (rc < 0)
			break;
	}
	nnp_reader_free(r);
	return 0;
}
