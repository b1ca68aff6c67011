/* casefile.c — indexed random access to .nnp files (see casefile.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "casefile.h"
#include "err.h"

#define FRAMES_MAX 4096

struct entry {
	struct nnp_frame f;
	uint64_t *offsets;   /* payload offset of each chunk */
	int swap;
};

struct nnp_casefile {
	char path[4096];
	int fd;
	struct entry *e;
	size_t n;
};

void nnp_casefile_close(struct nnp_casefile *cf)
{
	if (!cf)
		return;
	for (size_t i = 0; i < cf->n; i++) {
		nnp_frame_release(&cf->e[i].f);
		free(cf->e[i].offsets);
	}
	free(cf->e);
	if (cf->fd >= 0)
		close(cf->fd);
	free(cf);
}

static int index_frames(struct nnp_casefile *cf, struct nnp_reader *r)
{
	struct nnp_frame f;
	int rc;
	while ((rc = nnp_reader_next(r, &f)) == 1) {
		struct entry *e;
		if (cf->n == FRAMES_MAX) {
			nnp_frame_release(&f);
			return nnp_err(NNP_EDATA, "'%s': more than %d frames", cf->path, FRAMES_MAX);
		}
		e = &cf->e[cf->n];
		e->f = f;
		e->swap = nnp_reader_swaps(r);
		e->offsets = calloc((size_t)nnp_frame_nchunks(&f), sizeof *e->offsets);
		cf->n++;
		if (!e->offsets)
			return nnp_err(NNP_ENOMEM, "out of memory");
		if ((rc = nnp_reader_index(r, e->offsets)))
			return rc;
	}
	return rc;
}

int nnp_casefile_open(const char *path, struct nnp_casefile **out)
{
	struct nnp_casefile *cf = calloc(1, sizeof *cf);
	struct nnp_reader *r = NULL;
	struct stat st;
	int rc = NNP_OK;
	*out = NULL;
	if (!cf || !(cf->e = calloc(FRAMES_MAX, sizeof *cf->e))) {
		free(cf);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	snprintf(cf->path, sizeof cf->path, "%s", path);
	cf->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (cf->fd < 0)
		rc = nnp_err(NNP_EDATA, "cannot open '%s': %s", path, strerror(errno));
	if (!rc && (fstat(cf->fd, &st) != 0 || !S_ISREG(st.st_mode)))
		rc = nnp_err(NNP_EDATA, "'%s' is not a regular file (random access needs a saved stream)", path);
	if (!rc && !(r = nnp_reader_fd(cf->fd, path)))
		rc = NNP_ENOMEM;
	if (!rc)
		rc = index_frames(cf, r);
	if (!rc && (uint64_t)st.st_size < nnp_reader_offset(r))
		rc = nnp_err(NNP_EDATA, "'%s': truncated: %llu bytes, the frames need %llu", path,
			     (unsigned long long)st.st_size, (unsigned long long)nnp_reader_offset(r));
	nnp_reader_free(r);
	if (rc) {
		nnp_casefile_close(cf);
		return rc;
	}
	*out = cf;
	return NNP_OK;
}

size_t nnp_casefile_nframes(const struct nnp_casefile *cf) { return cf->n; }

const struct nnp_frame *nnp_casefile_frame(const struct nnp_casefile *cf, size_t i)
{
	return i < cf->n ? &cf->e[i].f : NULL;
}

long nnp_casefile_find(const struct nnp_casefile *cf, const char *role)
{
	for (size_t i = 0; i < cf->n; i++)
		if (!strcmp(cf->e[i].f.role, role))
			return (long)i;
	return -1;
}

static int pread_all(const struct nnp_casefile *cf, void *dst, size_t n, uint64_t off)
{
	char *d = dst;
	while (n > 0) {
		ssize_t k = pread(cf->fd, d, n, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return nnp_err(NNP_EDATA, "'%s': read error at byte %llu: %s", cf->path,
				       (unsigned long long)off, k < 0 ? strerror(errno) : "unexpected end of file");
		d += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return NNP_OK;
}

int nnp_casefile_read_box(const struct nnp_casefile *cf, size_t i, const int64_t lo[3], const int64_t hi[3],
			  void *dst)
{
	const struct entry *e;
	const struct nnp_frame *f;
	size_t es;
	int64_t dx;
	char *d = dst;
	if (i >= cf->n)
		return nnp_err(NNP_EINTERNAL, "frame index out of range");
	e = &cf->e[i];
	f = &e->f;
	es = nnp_dtype_size(f->dtype);
	for (int a = 0; a < 3; a++)
		if (lo[a] < 0 || hi[a] > f->shape[a + 1] || lo[a] >= hi[a])
			return nnp_err(NNP_EUSAGE, "box [%lld, %lld) on axis %d is outside the volume (0..%lld)",
				       (long long)lo[a], (long long)hi[a], a, (long long)f->shape[a + 1]);
	dx = hi[2] - lo[2];
	for (int64_t c = 0; c < f->shape[0]; c++)
		for (int64_t z = lo[0]; z < hi[0]; z++) {
			int64_t k = z / f->chunk_slices, zz = z - k * f->chunk_slices;
			int64_t zs = f->shape[1] - k * f->chunk_slices < f->chunk_slices ? f->shape[1] - k * f->chunk_slices
											 : f->chunk_slices;
			for (int64_t y = lo[1]; y < hi[1]; y++) {
				uint64_t off = e->offsets[k] +
					       ((((uint64_t)c * (uint64_t)zs + (uint64_t)zz) * (uint64_t)f->shape[2] +
						 (uint64_t)y) * (uint64_t)f->shape[3] + (uint64_t)lo[2]) * es;
				int rc = pread_all(cf, d, (size_t)dx * es, off);
				if (rc)
					return rc;
				if (e->swap)
					nnp_swap_bytes(d, (size_t)dx, es);
				d += (size_t)dx * es;
			}
		}
	return NNP_OK;
}

int nnp_casefile_read_frame(const struct nnp_casefile *cf, size_t i, struct nnp_vol *v)
{
	int64_t lo[3] = { 0, 0, 0 }, hi[3];
	int rc;
	nnp_vol_init(v);
	if (i >= cf->n)
		return nnp_err(NNP_EINTERNAL, "frame index out of range");
	for (int a = 0; a < 3; a++)
		hi[a] = cf->e[i].f.shape[a + 1];
	if ((rc = nnp_frame_copy(&v->f, &cf->e[i].f)) || (rc = nnp_vol_alloc(v)) ||
	    (rc = nnp_casefile_read_box(cf, i, lo, hi, v->data)))
		nnp_vol_release(v);
	return rc;
}
