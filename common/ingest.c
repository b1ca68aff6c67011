/* ingest.c — NIfTI files -> one frame, slab by slab (see ingest.h). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "ingest.h"
#include "nifti.h"
#include "prog.h"

#define SPACING_RTOL 1e-5
#define AFFINE_TOL 1e-4

struct source {
	struct nnp_nifti_in *in;
	void *whole;          /* preloaded data (compressed 4D files), or NULL */
	int64_t nchan;
};

struct nnp_ingest {
	struct source *src;
	size_t nsrc;
	struct nnp_frame f;
	void *tmp;            /* conversion scratch, one slab of one channel */
	size_t tmpcap;
};

static const char *ext_of(const char *base)
{
	static const char *ends[] = { ".nii.gz", ".nii", ".hdr.gz", ".img.gz", ".hdr", ".img" };
	size_t n = strlen(base);
	for (size_t i = 0; i < sizeof ends / sizeof *ends; i++) {
		size_t k = strlen(ends[i]);
		if (n > k && !strcmp(base + n - k, ends[i]))
			return base + n - k;
	}
	return base + n;
}

void nnp_case_from_path(const char *path, char *out, size_t outlen)
{
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	size_t n = (size_t)(ext_of(base) - base);
	if (n > 5 && base[n - 5] == '_' && isdigit((unsigned char)base[n - 4]) &&
	    isdigit((unsigned char)base[n - 3]) && isdigit((unsigned char)base[n - 2]) &&
	    isdigit((unsigned char)base[n - 1]))
		n -= 5;
	snprintf(out, outlen, "%.*s", (int)n, base);
}

void nnp_ingest_free(struct nnp_ingest *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->nsrc; i++) {
		nnp_nifti_close(g->src[i].in);
		free(g->src[i].whole);
	}
	free(g->src);
	nnp_frame_release(&g->f);
	free(g->tmp);
	free(g);
}

struct nnp_frame *nnp_ingest_frame(struct nnp_ingest *g)
{
	return &g->f;
}

static int same_grid(const struct nnp_frame *a, const char *an, const struct nnp_frame *b, const char *bn)
{
	if (a->shape[1] != b->shape[1] || a->shape[2] != b->shape[2] || a->shape[3] != b->shape[3])
		return nnp_err(NNP_EDATA, "'%s': shape (z,y,x) %lldx%lldx%lld differs from '%s' (%lldx%lldx%lld)",
			       bn, (long long)b->shape[1], (long long)b->shape[2], (long long)b->shape[3], an,
			       (long long)a->shape[1], (long long)a->shape[2], (long long)a->shape[3]);
	for (int i = 0; i < 3; i++)
		if (fabs(a->spacing[i] - b->spacing[i]) > SPACING_RTOL * fabs(a->spacing[i]))
			return nnp_err(NNP_EDATA, "'%s': spacing (z,y,x) %g,%g,%g differs from '%s' (%g,%g,%g)", bn,
				       b->spacing[0], b->spacing[1], b->spacing[2], an, a->spacing[0],
				       a->spacing[1], a->spacing[2]);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 4; j++)
			if (fabs(a->affine[i][j] - b->affine[i][j]) > AFFINE_TOL * (1 + fabs(a->affine[i][j])))
				return nnp_err(NNP_EDATA, "'%s': orientation/origin (affine row %d) differs from '%s'",
					       bn, i, an);
	return NNP_OK;
}

int nnp_ingest_check_same_grid(const struct nnp_ingest *ref, const struct nnp_ingest *g)
{
	return same_grid(nnp_nifti_frame(ref->src[0].in), nnp_nifti_path(ref->src[0].in),
			 nnp_nifti_frame(g->src[0].in), nnp_nifti_path(g->src[0].in));
}

static int preload(struct source *s)
{
	const struct nnp_frame *ff = nnp_nifti_frame(s->in);
	uint64_t per = nnp_frame_nvox(ff) * nnp_dtype_size(ff->dtype);
	s->whole = nnp_aligned_alloc((size_t)(per * (uint64_t)s->nchan));
	if (!s->whole)
		return nnp_err(NNP_ENOMEM, "'%s': cannot allocate %.1f MiB to read a compressed 4D file",
			       nnp_nifti_path(s->in), per * (double)s->nchan / 1048576.0);
	for (int64_t c = 0; c < s->nchan; c++) {
		int rc = nnp_nifti_read_slab(s->in, c, 0, ff->shape[1], (char *)s->whole + (uint64_t)c * per);
		if (rc)
			return rc;
	}
	return NNP_OK;
}

/* When channels of different stored types were promoted to one frame
 * dtype, props.channel_dtypes records each channel's source type so that
 * nnp write can store each channel file as it was.  Filters that change
 * voxel values must drop this key. */
static int record_promotion(struct nnp_ingest *g)
{
	json_t *a;
	int promoted = 0;
	for (size_t i = 0; i < g->nsrc; i++)
		promoted |= nnp_nifti_frame(g->src[i].in)->dtype != g->f.dtype;
	if (!promoted)
		return NNP_OK;
	if (!(a = json_array()))
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < g->nsrc; i++)
		for (int64_t k = 0; k < g->src[i].nchan; k++)
			json_array_append_new(a, json_string(nnp_dtype_name(nnp_nifti_frame(g->src[i].in)->dtype)));
	if (!nnp_frame_props(&g->f) || json_object_set_new(g->f.props, "channel_dtypes", a))
		return nnp_err(NNP_ENOMEM, "out of memory");
	return NNP_OK;
}

static int merge_meta(struct nnp_ingest *g)
{
	struct nnp_frame *f = &g->f;
	int64_t c = 0;
	int any_scale = 0;
	f->n_nifti = 0;
	f->nifti = calloc(g->nsrc, sizeof *f->nifti);
	f->scale = calloc(2 * (size_t)f->shape[0], sizeof(double));
	if (!f->nifti || !f->scale)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < g->nsrc; i++) {
		const struct nnp_frame *ff = nnp_nifti_frame(g->src[i].in);
		struct nnp_nifti_hdr *h = &f->nifti[f->n_nifti++];
		*h = ff->nifti[0];
		h->raw = malloc(h->raw_len);
		h->ext = h->ext_len ? malloc(h->ext_len) : NULL;
		if (!h->raw || (h->ext_len && !h->ext))
			return nnp_err(NNP_ENOMEM, "out of memory");
		memcpy(h->raw, ff->nifti[0].raw, h->raw_len);
		if (h->ext_len)
			memcpy(h->ext, ff->nifti[0].ext, h->ext_len);
		for (int64_t k = 0; k < g->src[i].nchan; k++, c++) {
			if (ff->scale) {
				f->scale[2 * c] = ff->scale[2 * k];
				f->scale[2 * c + 1] = ff->scale[2 * k + 1];
				any_scale = 1;
			}
		}
	}
	if (!any_scale) {
		free(f->scale);
		f->scale = NULL;
	}
	return record_promotion(g);
}

static int open_sources(struct nnp_ingest *g, const char *const *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct source *s = &g->src[i];
		const struct nnp_frame *ff;
		int rc = nnp_nifti_open(files[i], &s->in);
		if (rc)
			return rc;
		g->nsrc = i + 1;
		ff = nnp_nifti_frame(s->in);
		s->nchan = ff->shape[0];
		if (i > 0 && (rc = same_grid(nnp_nifti_frame(g->src[0].in), files[0], ff, files[i])))
			return rc;
		if (i == 0) {
			g->f.dtype = ff->dtype;
			memcpy(g->f.shape, ff->shape, sizeof g->f.shape);
			g->f.shape[0] = 0;
			memcpy(g->f.spacing, ff->spacing, sizeof g->f.spacing);
			memcpy(g->f.affine, ff->affine, sizeof g->f.affine);
			g->f.has_affine = 1;
		}
		g->f.dtype = nnp_dtype_promote(g->f.dtype, ff->dtype);
		g->f.shape[0] += ff->shape[0];
		if (g->f.shape[0] > NNP_CHANNELS_MAX)
			return nnp_err(NNP_EDATA, "too many channels (over %d)", NNP_CHANNELS_MAX);
	}
	return NNP_OK;
}

int nnp_ingest_open(const char *const *files, size_t n, const char *role, const char *case_id,
		    struct nnp_ingest **out)
{
	struct nnp_ingest *g;
	int rc;
	*out = NULL;
	if (n == 0)
		return nnp_err(NNP_EUSAGE, "no input files");
	g = calloc(1, sizeof *g);
	if (!g || !(g->src = calloc(n, sizeof *g->src))) {
		free(g);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	nnp_frame_init(&g->f);
	snprintf(g->f.role, sizeof g->f.role, "%s", role);
	rc = open_sources(g, files, n);
	if (!rc)
		rc = nnp_frame_set_case(&g->f, case_id);
	if (!rc)
		rc = merge_meta(g);
	if (!rc)
		rc = nnp_frame_validate(&g->f);
	for (size_t i = 0; !rc && i < g->nsrc; i++) {
		struct source *s = &g->src[i];
		if (s->nchan > 1 && nnp_nifti_is_compressed(s->in))
			rc = preload(s);
	}
	if (rc) {
		nnp_ingest_free(g);
		return rc;
	}
	*out = g;
	return NNP_OK;
}

static int read_channel(struct nnp_ingest *g, struct source *s, int64_t k, int64_t z0, int64_t zs, void *dst)
{
	const struct nnp_frame *ff = nnp_nifti_frame(s->in);
	uint64_t es = nnp_dtype_size(ff->dtype), plane = (uint64_t)ff->shape[2] * (uint64_t)ff->shape[3];
	size_t n = (size_t)((uint64_t)zs * plane);
	void *buf = dst;
	int rc;
	if (ff->dtype != g->f.dtype) {
		if (g->tmpcap < n * es) {
			free(g->tmp);
			g->tmpcap = 0;
			if (!(g->tmp = malloc(n * es)))
				return nnp_err(NNP_ENOMEM, "out of memory");
			g->tmpcap = n * es;
		}
		buf = g->tmp;
	}
	if (s->whole)
		memcpy(buf, (char *)s->whole + ((uint64_t)k * (uint64_t)ff->shape[1] + (uint64_t)z0) * plane * es,
		       n * es);
	else if ((rc = nnp_nifti_read_slab(s->in, k, z0, zs, buf)))
		return rc;
	if (buf != dst)
		nnp_convert(g->f.dtype, dst, ff->dtype, buf, n);
	return NNP_OK;
}

static int read_whole(struct nnp_ingest *g, struct nnp_vol *v)
{
	uint64_t per = nnp_frame_nvox(&g->f) * nnp_dtype_size(g->f.dtype);
	int64_t c = 0;
	for (size_t i = 0; i < g->nsrc; i++)
		for (int64_t k = 0; k < g->src[i].nchan; k++, c++) {
			int rc = read_channel(g, &g->src[i], k, 0, g->f.shape[1], (char *)v->data + (uint64_t)c * per);
			if (rc)
				return rc;
		}
	return NNP_OK;
}

int nnp_ingest_read_slab(struct nnp_ingest *g, int64_t z0, int64_t zs, void *dst)
{
	uint64_t chan = (uint64_t)zs * (uint64_t)g->f.shape[2] * (uint64_t)g->f.shape[3] *
			nnp_dtype_size(g->f.dtype);
	int64_t c = 0;
	for (size_t i = 0; i < g->nsrc; i++) {
		for (int64_t k = 0; k < g->src[i].nchan; k++, c++) {
			int rc = read_channel(g, &g->src[i], k, z0, zs, (char *)dst + (uint64_t)c * chan);
			if (rc)
				return rc;
		}
	}
	return NNP_OK;
}

/* One uncompressed host-order file of the frame's dtype: move the bytes
 * from the page cache to the output without copying them through us. */
static int stream_zero_copy(struct nnp_ingest *g, struct nnp_writer *w, int *done)
{
	struct source *s = &g->src[0];
	int64_t nc = g->f.shape[0];
	uint64_t plane = nnp_frame_slice_bytes(&g->f) / (uint64_t)nc, off;
	uint64_t *offs;
	int fd, rc = NNP_OK;
	*done = 0;
	if (g->nsrc != 1 || s->whole || nnp_nifti_frame(s->in)->dtype != g->f.dtype ||
	    nnp_nifti_raw_fd(s->in, 0, 0, &off) < 0)
		return NNP_OK;
	struct nnp_progress pr;
	if (!(offs = calloc((size_t)nc, sizeof *offs)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	nnp_progress_begin(&pr, g->f.case_id ? g->f.case_id : g->f.role, g->f.shape[1]);
	for (int64_t z0 = 0; !rc && z0 < g->f.shape[1]; z0 += g->f.chunk_slices) {
		int64_t zs = g->f.shape[1] - z0 < g->f.chunk_slices ? g->f.shape[1] - z0 : g->f.chunk_slices;
		fd = -1;
		for (int64_t c = 0; c < nc; c++)
			fd = nnp_nifti_raw_fd(s->in, c, z0, &offs[c]);
		rc = nnp_writer_chunk_file(w, fd, offs, nc, (uint64_t)zs * plane, zs, nnp_nifti_path(s->in));
		nnp_progress_add(&pr, zs);
	}
	nnp_progress_end(&pr);
	free(offs);
	*done = 1;
	return rc;
}

int nnp_ingest_stream(struct nnp_ingest *g, struct nnp_writer *w)
{
	void *buf;
	int done, rc = nnp_writer_begin(w, &g->f);
	if (rc)
		return rc;
	if ((rc = stream_zero_copy(g, w, &done)) || done)
		return rc;
	buf = nnp_aligned_alloc((size_t)((uint64_t)g->f.chunk_slices * nnp_frame_slice_bytes(&g->f)));
	if (!buf)
		return nnp_err(NNP_ENOMEM, "out of memory for one chunk");
	struct nnp_progress pr;
	nnp_progress_begin(&pr, g->f.case_id ? g->f.case_id : g->f.role, g->f.shape[1]);
	for (int64_t z0 = 0; !rc && z0 < g->f.shape[1]; z0 += g->f.chunk_slices) {
		int64_t zs = g->f.shape[1] - z0 < g->f.chunk_slices ? g->f.shape[1] - z0 : g->f.chunk_slices;
		rc = nnp_ingest_read_slab(g, z0, zs, buf);
		if (!rc)
			rc = nnp_writer_chunk(w, buf, zs);
		nnp_progress_add(&pr, zs);
	}
	nnp_progress_end(&pr);
	free(buf);
	return rc;
}

int nnp_ingest_read_volume(struct nnp_ingest *g, struct nnp_vol *v)
{
	int rc;
	nnp_vol_init(v);
	if ((rc = nnp_frame_copy(&v->f, &g->f)) || (rc = nnp_vol_alloc(v)) ||
	    (rc = read_whole(g, v)))
		nnp_vol_release(v);
	return rc;
}
