/* nifti.c — NIfTI-1/2 streaming reader and atomic writer (see nifti.h). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <nifti2_io.h>
#include "atomic.h"
#include "err.h"
#include "nifti.h"

#define N1 348
#define N2 540

struct nnp_nifti_in {
	char path[PATH_MAX];
	char img[PATH_MAX];     /* file holding the voxels (.nii or .img) */
	struct nnp_frame f;
	int gz, fd, swap;
	gzFile gzf;
	uint64_t data_off;      /* voxel offset in img */
	uint64_t pos;           /* bytes of voxel data consumed (sequential) */
	int ndim;
};

static enum nnp_dtype dtype_of_nifti(int dt)
{
	switch (dt) {
	case NIFTI_TYPE_UINT8: return NNP_U8;
	case NIFTI_TYPE_INT8: return NNP_I8;
	case NIFTI_TYPE_INT16: return NNP_I16;
	case NIFTI_TYPE_UINT16: return NNP_U16;
	case NIFTI_TYPE_INT32: return NNP_I32;
	case NIFTI_TYPE_UINT32: return NNP_U32;
	case NIFTI_TYPE_INT64: return NNP_I64;
	case NIFTI_TYPE_UINT64: return NNP_U64;
	case NIFTI_TYPE_FLOAT32: return NNP_F32;
	case NIFTI_TYPE_FLOAT64: return NNP_F64;
	default: return NNP_DT_NONE;
	}
}

static int nifti_of_dtype(enum nnp_dtype t)
{
	switch (t) {
	case NNP_U8: return NIFTI_TYPE_UINT8;
	case NNP_I8: return NIFTI_TYPE_INT8;
	case NNP_I16: return NIFTI_TYPE_INT16;
	case NNP_U16: return NIFTI_TYPE_UINT16;
	case NNP_I32: return NIFTI_TYPE_INT32;
	case NNP_U32: return NIFTI_TYPE_UINT32;
	case NNP_I64: return NIFTI_TYPE_INT64;
	case NNP_U64: return NIFTI_TYPE_UINT64;
	case NNP_F32: return NIFTI_TYPE_FLOAT32;
	case NNP_F64: return NIFTI_TYPE_FLOAT64;
	default: return 0;
	}
}

int nnp_nifti_name_ok(const char *p)
{
	static const char *ends[] = { ".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz" };
	size_t n = strlen(p);
	for (size_t i = 0; i < sizeof ends / sizeof *ends; i++) {
		size_t k = strlen(ends[i]);
		if (n > k && !strcmp(p + n - k, ends[i]))
			return 1;
	}
	return 0;
}

/* ---- raw header bytes ---- */

#define CHECK_DIMS(h)                                                                      \
	do {                                                                               \
		if ((h)->dim[0] < 1 || (h)->dim[0] > 7)                                    \
			return nnp_err(NNP_EDATA, "'%s': corrupt NIfTI header: dim[0] = %lld", \
				       name, (long long)(h)->dim[0]);                      \
		for (int i_ = 1; i_ <= (h)->dim[0]; i_++)                                  \
			if ((h)->dim[i_] < 1)                                              \
				return nnp_err(NNP_EDATA, "'%s': corrupt NIfTI header: dim[%d] = %lld", \
					       name, i_, (long long)(h)->dim[i_]);         \
		for (int i_ = 1; i_ <= 3 && i_ <= (h)->dim[0]; i_++)                       \
			if (!isfinite((double)(h)->pixdim[i_]))                            \
				return nnp_err(NNP_EDATA, "'%s': corrupt NIfTI header: pixdim[%d] is not finite", \
					       name, i_);                                  \
		if ((h)->vox_offset < 0)                                                   \
			return nnp_err(NNP_EDATA, "'%s': corrupt NIfTI header: negative vox_offset", name); \
	} while (0)

/* Checks made before nifticlib sees the header (it would print to stderr). */
static int check_raw(const char *name, const unsigned char *raw, int ver)
{
	if (ver == 1) {
		nifti_1_header h;
		memcpy(&h, raw, N1);
		if (memcmp(h.magic, "n+1", 4) && memcmp(h.magic, "ni1", 4))
			return nnp_err(NNP_EDATA, "'%s': not a NIfTI-1 file (bad magic; Analyze 7.5 is not supported)",
				       name);
		CHECK_DIMS(&h);
	} else {
		nifti_2_header h;
		memcpy(&h, raw, N2);
		if (memcmp(h.magic, "n+2", 4) && memcmp(h.magic, "ni2", 4))
			return nnp_err(NNP_EDATA, "'%s': not a NIfTI-2 file (bad magic)", name);
		CHECK_DIMS(&h);
	}
	return NNP_OK;
}

static int read_raw_header(const char *hname, unsigned char *raw, int *ver, int *swapped)
{
	gzFile g = gzopen(hname, "rb");
	int n, sz;
	if (!g)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", hname, strerror(errno ? errno : EIO));
	n = gzread(g, raw, N2);
	gzclose(g);
	if (n < N1)
		return nnp_err(NNP_EDATA, "'%s': not a NIfTI file (%d-byte header)", hname, n < 0 ? 0 : n);
	memcpy(&sz, raw, 4);
	*swapped = 0;
	if (sz == N1 || sz == N2) {
		*ver = sz == N1 ? 1 : 2;
	} else if (__builtin_bswap32((uint32_t)sz) == N1 || __builtin_bswap32((uint32_t)sz) == N2) {
		*ver = __builtin_bswap32((uint32_t)sz) == N1 ? 1 : 2;
		*swapped = 1;
	} else {
		return nnp_err(NNP_EDATA, "'%s': not a NIfTI file (sizeof_hdr is %d)", hname, sz);
	}
	if (*ver == 2 && n < N2)
		return nnp_err(NNP_EDATA, "'%s': truncated NIfTI-2 header", hname);
	if (*swapped) {
		if (*ver == 1)
			nifti_swap_as_nifti1((nifti_1_header *)raw);
		else
			nifti_swap_as_nifti2((nifti_2_header *)raw);
	}
	return check_raw(hname, raw, *ver);
}

static int collect_ext(const nifti_image *nim, struct nnp_nifti_hdr *h)
{
	size_t total = 0, off = 0;
	for (int i = 0; i < nim->num_ext; i++)
		total += (size_t)nim->ext_list[i].esize;
	if (!total)
		return NNP_OK;
	if (total > NNP_NIFTI_EXT_MAX)
		return nnp_err(NNP_EDATA, "NIfTI extensions of %zu bytes exceed the %zu-byte cap", total,
			       NNP_NIFTI_EXT_MAX);
	h->ext = calloc(1, total);
	if (!h->ext)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (int i = 0; i < nim->num_ext; i++) {
		const nifti1_extension *e = &nim->ext_list[i];
		int32_t es = e->esize, ec = e->ecode;
		memcpy(h->ext + off, &es, 4);
		memcpy(h->ext + off + 4, &ec, 4);
		if (e->edata && es > 8)
			memcpy(h->ext + off + 8, e->edata, (size_t)es - 8);
		off += (size_t)es;
	}
	h->ext_len = total;
	return NNP_OK;
}

/* nibabel's fallback affine for files with qform_code = sform_code = 0. */
static void base_affine(double a[4][4], const int64_t n[3], const double z[3])
{
	memset(a, 0, 16 * sizeof(double));
	a[0][0] = -z[0];
	a[0][3] = (double)(n[0] - 1) / 2.0 * z[0];
	a[1][1] = z[1];
	a[1][3] = -(double)(n[1] - 1) / 2.0 * z[1];
	a[2][2] = z[2];
	a[2][3] = -(double)(n[2] - 1) / 2.0 * z[2];
	a[3][3] = 1;
}

static void frame_geometry(struct nnp_frame *f, const nifti_image *nim)
{
	double zoom[3] = { fabs(nim->dx), fabs(nim->dy), fabs(nim->dz) };
	int64_t n[3] = { nim->nx, nim->ny, nim->nz };
	for (int i = 0; i < 3; i++)
		if (!(zoom[i] > 0) || !isfinite(zoom[i]) || (i >= nim->ndim))
			zoom[i] = zoom[i] > 0 && isfinite(zoom[i]) ? zoom[i] : 1.0;
	f->spacing[0] = zoom[2];
	f->spacing[1] = zoom[1];
	f->spacing[2] = zoom[0];
	if (nim->sform_code > 0) {
		for (int i = 0; i < 4; i++)
			for (int j = 0; j < 4; j++)
				f->affine[i][j] = nim->sto_xyz.m[i][j];
	} else if (nim->qform_code > 0) {
		for (int i = 0; i < 4; i++)
			for (int j = 0; j < 4; j++)
				f->affine[i][j] = nim->qto_xyz.m[i][j];
	} else {
		base_affine(f->affine, n, zoom);
	}
	f->has_affine = 1;
}

static int scale_of(const nifti_image *nim, double s[2])
{
	s[0] = nim->scl_slope;
	s[1] = nim->scl_inter;
	if (!isfinite(s[1]))
		s[1] = 0;
	return isfinite(s[0]) && s[0] != 0;
}

static int check_dims(const char *path, const nifti_image *nim)
{
	if (nim->ndim < 1 || nim->ndim > 7)
		return nnp_err(NNP_EDATA, "'%s': corrupt header: dim[0] = %lld", path, (long long)nim->ndim);
	if (nim->nu > 1 || nim->nv > 1 || nim->nw > 1)
		return nnp_err(NNP_EDATA, "'%s': %lldD image (dims 5-7 = %lld %lld %lld): only 3D and 4D "
			       "(channels) are supported", path, (long long)nim->ndim, (long long)nim->nu,
			       (long long)nim->nv, (long long)nim->nw);
	if (nim->nx < 1 || nim->ny < 1 || nim->nz < 1 || nim->nt < 1)
		return nnp_err(NNP_EDATA, "'%s': corrupt header: non-positive dimension", path);
	if (!dtype_of_nifti(nim->datatype))
		return nnp_err(NNP_EDATA, "'%s': unsupported NIfTI datatype %d (%s); supported: uint8, int8, "
			       "int16, uint16, int32, uint32, int64, uint64, float32, float64", path,
			       nim->datatype, nifti_datatype_string(nim->datatype));
	return NNP_OK;
}

static int fill_frame(struct nnp_nifti_in *in, const nifti_image *nim, const unsigned char *raw, int ver)
{
	struct nnp_frame *f = &in->f;
	struct nnp_nifti_hdr *h;
	double s[2];
	int rc;
	nnp_frame_init(f);
	f->role[0] = '\0';
	f->dtype = dtype_of_nifti(nim->datatype);
	f->shape[0] = nim->nt;
	f->shape[1] = nim->nz;
	f->shape[2] = nim->ny;
	f->shape[3] = nim->nx;
	frame_geometry(f, nim);
	if (scale_of(nim, s)) {
		f->scale = malloc(2 * sizeof(double) * (size_t)f->shape[0]);
		if (!f->scale)
			return nnp_err(NNP_ENOMEM, "out of memory");
		for (int64_t c = 0; c < f->shape[0]; c++) {
			f->scale[2 * c] = s[0];
			f->scale[2 * c + 1] = s[1];
		}
	}
	f->nifti = calloc(1, sizeof *f->nifti);
	if (!f->nifti)
		return nnp_err(NNP_ENOMEM, "out of memory");
	f->n_nifti = 1;
	h = &f->nifti[0];
	h->version = ver;
	h->raw_len = ver == 1 ? N1 : N2;
	h->raw = malloc(h->raw_len);
	if (!h->raw)
		return nnp_err(NNP_ENOMEM, "out of memory");
	memcpy(h->raw, raw, h->raw_len);
	if ((rc = collect_ext(nim, h)))
		return nnp_err_ctx(rc, "'%s'", in->path);
	if ((rc = nnp_frame_validate(f)))
		return nnp_err_ctx(rc, "'%s'", in->path);
	return NNP_OK;
}

static int open_data(struct nnp_nifti_in *in)
{
	struct stat st;
	in->gz = nifti_is_gzfile(in->img);
	if (in->gz) {
		in->gzf = gzopen(in->img, "rb");
		if (!in->gzf)
			return nnp_err(NNP_EDATA, "cannot open '%s': %s", in->img, strerror(errno ? errno : EIO));
		gzbuffer(in->gzf, 1 << 18);
		if (gzseek(in->gzf, (z_off_t)in->data_off, SEEK_SET) != (z_off_t)in->data_off)
			return nnp_err(NNP_EDATA, "'%s': corrupt or truncated gzip data before the voxels",
				       in->img);
		return NNP_OK;
	}
	in->fd = open(in->img, O_RDONLY | O_CLOEXEC);
	if (in->fd < 0)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", in->img, strerror(errno));
	if (fstat(in->fd, &st) == 0 && (uint64_t)st.st_size < in->data_off + nnp_frame_nbytes(&in->f))
		return nnp_err(NNP_EDATA, "'%s': truncated: %llu bytes of voxel data expected, file has %llu",
			       in->img, (unsigned long long)nnp_frame_nbytes(&in->f),
			       (unsigned long long)(st.st_size > (off_t)in->data_off ? (uint64_t)st.st_size - in->data_off : 0));
	return NNP_OK;
}

static int is_pair_name(const char *p)
{
	size_t n = strlen(p);
	return (n > 4 && (!strcmp(p + n - 4, ".hdr") || !strcmp(p + n - 4, ".img"))) ||
	       (n > 7 && (!strcmp(p + n - 7, ".hdr.gz") || !strcmp(p + n - 7, ".img.gz")));
}

static int open_locked(const char *path, struct nnp_nifti_in **out)
{
	unsigned char raw[N2];
	struct nnp_nifti_in *in;
	nifti_image *nim;
	struct stat st;
	int ver, swapped, rc;

	*out = NULL;
	if (stat(path, &st) != 0)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return nnp_err(NNP_EDATA, "'%s' is not a regular file", path);
	if (!nnp_nifti_name_ok(path))
		return nnp_err(NNP_EDATA, "'%s': not a NIfTI file name (expected .nii, .nii.gz or .hdr/.img)", path);
	nifti_set_debug_level(0);
	if (!is_pair_name(path) && (rc = read_raw_header(path, raw, &ver, &swapped)))
		return rc;
	nim = nifti_image_read(path, 0);
	if (!nim)
		return nnp_err(NNP_EDATA, "'%s': corrupt NIfTI header (rejected by nifticlib)", path);
	in = calloc(1, sizeof *in);
	if (!in) {
		nifti_image_free(nim);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	in->fd = -1;
	snprintf(in->path, sizeof in->path, "%s", path);
	snprintf(in->img, sizeof in->img, "%s", nim->iname ? nim->iname : path);
	in->data_off = (uint64_t)nim->iname_offset;
	in->swap = nim->byteorder != nifti_short_order() && nim->nbyper > 1;
	in->ndim = nim->ndim;
	rc = check_dims(path, nim);
	if (!rc)
		rc = read_raw_header(nim->fname ? nim->fname : path, raw, &ver, &swapped);
	if (!rc)
		rc = fill_frame(in, nim, raw, ver);
	nifti_image_free(nim);
	if (!rc)
		rc = open_data(in);
	if (rc) {
		nnp_nifti_close(in);
		return rc;
	}
	*out = in;
	return NNP_OK;
}

int nnp_nifti_open(const char *path, struct nnp_nifti_in **out)
{
	int rc;
	/* nifticlib keeps global state (debug level, error reporting) and its
	 * header parsing is not thread-safe: one open at a time */
#pragma omp critical(nnp_nifti_open)
	rc = open_locked(path, out);
	return rc;
}

void nnp_nifti_close(struct nnp_nifti_in *in)
{
	if (!in)
		return;
	if (in->gzf)
		gzclose(in->gzf);
	if (in->fd >= 0)
		close(in->fd);
	nnp_frame_release(&in->f);
	free(in);
}

const struct nnp_frame *nnp_nifti_frame(const struct nnp_nifti_in *in) { return &in->f; }
const char *nnp_nifti_path(const struct nnp_nifti_in *in) { return in->path; }
int nnp_nifti_is_compressed(const struct nnp_nifti_in *in) { return in->gz; }

static int gz_read_all(struct nnp_nifti_in *in, void *dst, uint64_t n)
{
	unsigned char *d = dst;
	while (n > 0) {
		unsigned k = n > (1u << 30) ? (1u << 30) : (unsigned)n;
		int got = gzread(in->gzf, d, k);
		if (got <= 0) {
			int zerr = Z_OK;
			const char *m = gzerror(in->gzf, &zerr);
			if (got == 0 && zerr == Z_OK)
				return nnp_err(NNP_EDATA, "'%s': truncated: voxel data ends early", in->path);
			return nnp_err(NNP_EDATA, "'%s': corrupt compressed data: %s", in->path,
				       zerr == Z_OK ? "unexpected end" : m);
		}
		d += got;
		n -= (uint64_t)got;
	}
	return NNP_OK;
}

/* After the last voxel: reading on must reach a clean end of the gzip
 * member (CRC and length verified by zlib), not an error. */
static int gz_check_end(struct nnp_nifti_in *in)
{
	unsigned char tmp[4096];
	int zerr = Z_OK, got;
	do {
		got = gzread(in->gzf, tmp, sizeof tmp);
	} while (got > 0);
	gzerror(in->gzf, &zerr);
	if (got < 0 || (zerr != Z_OK && zerr != Z_STREAM_END))
		return nnp_err(NNP_EDATA, "'%s': corrupt compressed data: gzip trailer missing or CRC wrong",
			       in->path);
	return NNP_OK;
}

static int fd_read_at(struct nnp_nifti_in *in, void *dst, uint64_t n, uint64_t off)
{
	unsigned char *d = dst;
	while (n > 0) {
		size_t k = n > (1u << 30) ? (1u << 30) : (size_t)n;
		ssize_t got = pread(in->fd, d, k, (off_t)off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return nnp_err(NNP_EDATA, "cannot read '%s': %s", in->img, strerror(errno));
		if (got == 0)
			return nnp_err(NNP_EDATA, "'%s': truncated: voxel data ends early", in->img);
		d += got;
		n -= (uint64_t)got;
		off += (uint64_t)got;
	}
	return NNP_OK;
}

int nnp_nifti_read_slab(struct nnp_nifti_in *in, int64_t c, int64_t z0, int64_t zs, void *dst)
{
	const struct nnp_frame *f = &in->f;
	uint64_t es = nnp_dtype_size(f->dtype);
	uint64_t plane = (uint64_t)f->shape[2] * (uint64_t)f->shape[3] * es;
	uint64_t off = ((uint64_t)c * (uint64_t)f->shape[1] + (uint64_t)z0) * plane;
	uint64_t n = (uint64_t)zs * plane;
	int rc;
	if (c < 0 || c >= f->shape[0] || z0 < 0 || zs < 0 || z0 + zs > f->shape[1])
		return nnp_err(NNP_EINTERNAL, "slab out of range");
	if (in->gz) {
		if (off != in->pos)
			return nnp_err(NNP_EINTERNAL, "'%s': compressed data must be read in order", in->path);
		rc = gz_read_all(in, dst, n);
		if (!rc && off + n == nnp_frame_nbytes(f))
			rc = gz_check_end(in);
	} else {
		rc = fd_read_at(in, dst, n, in->data_off + off);
	}
	if (rc)
		return rc;
	in->pos = off + n;
	if (in->swap)
		nnp_swap_bytes(dst, (size_t)(n / es), (size_t)es);
	return NNP_OK;
}

int nnp_nifti_raw_fd(const struct nnp_nifti_in *in, int64_t c, int64_t z, uint64_t *off)
{
	const struct nnp_frame *f = &in->f;
	uint64_t plane = (uint64_t)f->shape[2] * (uint64_t)f->shape[3] * nnp_dtype_size(f->dtype);
	if (in->gz || in->swap || in->fd < 0)
		return -1;
	*off = in->data_off + ((uint64_t)c * (uint64_t)f->shape[1] + (uint64_t)z) * plane;
	return in->fd;
}

int nnp_nifti_read_volume(const char *path, struct nnp_vol *v)
{
	struct nnp_nifti_in *in;
	int rc = nnp_nifti_open(path, &in);
	nnp_vol_init(v);
	if (rc)
		return rc;
	rc = nnp_frame_copy(&v->f, &in->f);
	if (!rc)
		rc = nnp_vol_alloc(v);
	for (int64_t c = 0; !rc && c < v->f.shape[0]; c++)
		rc = nnp_nifti_read_slab(in, c, 0, v->f.shape[1],
					 (char *)v->data + (uint64_t)c * nnp_frame_nvox(&v->f) *
							   nnp_dtype_size(v->f.dtype));
	nnp_nifti_close(in);
	if (rc)
		nnp_vol_release(v);
	return rc;
}

/* ---- writing ---- */

struct nnp_nifti_out {
	struct nnp_atomic a;
	gzFile gz;
	uint64_t expect, written;
	char path[PATH_MAX];
};

/* Affine of a parsed header by the rule in nifti.h. */
static void header_affine(const nifti_image *nim, double a[4][4])
{
	struct nnp_frame tmp;
	nnp_frame_init(&tmp);
	frame_geometry(&tmp, nim);
	memcpy(a, tmp.affine, sizeof tmp.affine);
}

static nifti_image *parse_raw(const struct nnp_nifti_hdr *h)
{
	if (h->version == 1) {
		nifti_1_header n1;
		memcpy(&n1, h->raw, N1);
		return nifti_convert_n1hdr2nim(n1, NULL);
	}
	nifti_2_header n2;
	memcpy(&n2, h->raw, N2);
	return nifti_convert_n2hdr2nim(n2, NULL);
}

static int geometry_matches(const struct nnp_frame *f, const nifti_image *nim)
{
	double a[4][4];
	header_affine(nim, a);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 4; j++)
			if (fabs(a[i][j] - f->affine[i][j]) > 1e-6 * (1 + fabs(a[i][j])))
				return 0;
	return fabs(fabs(nim->dx) - f->spacing[2]) <= 1e-6 * f->spacing[2] &&
	       fabs(fabs(nim->dy) - f->spacing[1]) <= 1e-6 * f->spacing[1] &&
	       fabs(fabs(nim->dz) - f->spacing[0]) <= 1e-6 * f->spacing[0];
}

/* Header-independent description of what goes into the file. */
struct hdr_fields {
	int ndim;
	int64_t dim[8];
	int datatype, bitpix;
	int set_geometry;            /* overwrite pixdim/qform/sform from the frame */
	double pixdim[4];
	double srow[3][4];
	double qb, qc, qd, qx, qy, qz, qfac;
	int qform_code, sform_code;
	int set_scale;
	double slope, inter;
	int64_t vox_offset;
};

static void geometry_fields(struct hdr_fields *o, const struct nnp_frame *f, int qcode, int scode)
{
	nifti_dmat44 R;
	double dx, dy, dz;
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			R.m[i][j] = f->affine[i][j];
	nifti_dmat44_to_quatern(R, &o->qb, &o->qc, &o->qd, &o->qx, &o->qy, &o->qz, &dx, &dy, &dz, &o->qfac);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 4; j++)
			o->srow[i][j] = f->affine[i][j];
	o->pixdim[1] = f->spacing[2];
	o->pixdim[2] = f->spacing[1];
	o->pixdim[3] = f->spacing[0];
	o->qform_code = qcode > 0 ? qcode : NIFTI_XFORM_SCANNER_ANAT;
	o->sform_code = scode > 0 ? scode : NIFTI_XFORM_SCANNER_ANAT;
	o->set_geometry = 1;
}

#define PATCH_HEADER(h, o)                                                               \
	do {                                                                             \
		(h)->dim[0] = (o)->ndim;                                                 \
		for (int i_ = 1; i_ < 8; i_++)                                           \
			(h)->dim[i_] = i_ <= (o)->ndim ? (o)->dim[i_] : 1;               \
		(h)->datatype = (o)->datatype;                                           \
		(h)->bitpix = (o)->bitpix;                                               \
		(h)->vox_offset = (o)->vox_offset;                                       \
		if ((o)->set_scale) {                                                    \
			(h)->scl_slope = (o)->slope;                                     \
			(h)->scl_inter = (o)->inter;                                     \
		}                                                                        \
		if ((o)->set_geometry) {                                                 \
			(h)->pixdim[0] = (o)->qfac;                                      \
			for (int i_ = 1; i_ < 4; i_++)                                   \
				(h)->pixdim[i_] = (o)->pixdim[i_];                       \
			(h)->quatern_b = (o)->qb;                                        \
			(h)->quatern_c = (o)->qc;                                        \
			(h)->quatern_d = (o)->qd;                                        \
			(h)->qoffset_x = (o)->qx;                                        \
			(h)->qoffset_y = (o)->qy;                                        \
			(h)->qoffset_z = (o)->qz;                                        \
			for (int j_ = 0; j_ < 4; j_++) {                                 \
				(h)->srow_x[j_] = (o)->srow[0][j_];                      \
				(h)->srow_y[j_] = (o)->srow[1][j_];                      \
				(h)->srow_z[j_] = (o)->srow[2][j_];                      \
			}                                                                \
			(h)->qform_code = (o)->qform_code;                               \
			(h)->sform_code = (o)->sform_code;                               \
		}                                                                        \
	} while (0)

static void patch_v1(unsigned char *raw, const struct hdr_fields *o)
{
	nifti_1_header h;
	memcpy(&h, raw, N1);
	h.sizeof_hdr = N1;
	PATCH_HEADER(&h, o);
	memcpy(h.magic, "n+1\0", 4);
	memcpy(raw, &h, N1);
}

static void patch_v2(unsigned char *raw, const struct hdr_fields *o)
{
	nifti_2_header h;
	static const char magic[8] = { 'n', '+', '2', '\0', '\r', '\n', '\032', '\n' };
	memcpy(&h, raw, N2);
	h.sizeof_hdr = N2;
	PATCH_HEADER(&h, o);
	memcpy(h.magic, magic, 8);
	memcpy(raw, &h, N2);
}

static int fresh_header(unsigned char *raw, int version, const struct nnp_frame *f)
{
	int64_t dims[8] = { 3, f->shape[3], f->shape[2], f->shape[1], 1, 1, 1, 1 };
	nifti_image *nim = nifti_make_new_nim(dims, NIFTI_TYPE_UINT8, 0);
	if (!nim)
		return nnp_err(NNP_ENOMEM, "cannot make a NIfTI header");
	nim->xyz_units = NIFTI_UNITS_MM;
	nim->qform_code = nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
	if (version == 1) {
		nifti_1_header h;
		nifti_convert_nim2n1hdr(nim, &h);
		memcpy(raw, &h, N1);
	} else {
		nifti_2_header h;
		nifti_convert_nim2n2hdr(nim, &h);
		memcpy(raw, &h, N2);
	}
	nifti_image_free(nim);
	return NNP_OK;
}

/* Decide the output header bytes. */
static int build_header(unsigned char *raw, int *version, const struct nnp_frame *f, int64_t c0,
			int64_t nc, size_t hi, int want_version)
{
	const struct nnp_nifti_hdr *src = hi < f->n_nifti ? &f->nifti[hi] : NULL;
	struct hdr_fields o;
	nifti_image *nim = NULL;
	int src_ndim = 3;

	memset(&o, 0, sizeof o);
	*version = want_version ? want_version : src ? src->version : 1;
	if (src && src->version == *version) {
		memcpy(raw, src->raw, src->raw_len);
	} else {
		int rc = fresh_header(raw, *version, f);
		if (rc)
			return rc;
		src = NULL;
	}
	if (src)
		nim = parse_raw(src);
	if (nim)
		src_ndim = nim->ndim;
	if (nc > 1 || (src_ndim == 4 && nim && nim->nt == nc))
		o.ndim = 4;   /* keeps a 4D file with one volume 4D */
	else
		o.ndim = src_ndim == 2 && f->shape[1] == 1 ? 2 : 3;
	o.dim[1] = f->shape[3];
	o.dim[2] = f->shape[2];
	o.dim[3] = f->shape[1];
	o.dim[4] = nc;
	o.datatype = nifti_of_dtype(f->dtype);
	o.bitpix = (int)(8 * nnp_dtype_size(f->dtype));
	if (!nim || !geometry_matches(f, nim))
		geometry_fields(&o, f, nim ? nim->qform_code : 0, nim ? nim->sform_code : 0);
	if (f->scale && f->scale[2 * c0] != 0) {
		o.set_scale = 1;
		o.slope = f->scale[2 * c0];
		o.inter = f->scale[2 * c0 + 1];
	} else if (!nim || (isfinite(nim->scl_slope) && nim->scl_slope != 0)) {
		/* no scaling in the frame (or applied upstream): none in the file;
		 * an inactive slope (0 or NaN) in the carried header is kept as is */
		o.set_scale = 1;
	}
	nifti_image_free(nim);
	o.vox_offset = 0; /* set by the caller */
	if (*version == 1)
		patch_v1(raw, &o);
	else
		patch_v2(raw, &o);
	return NNP_OK;
}

static void set_vox_offset(unsigned char *raw, int version, int64_t off)
{
	if (version == 1) {
		nifti_1_header h;
		memcpy(&h, raw, N1);
		h.vox_offset = (float)off;
		memcpy(raw, &h, N1);
	} else {
		nifti_2_header h;
		memcpy(&h, raw, N2);
		h.vox_offset = off;
		memcpy(raw, &h, N2);
	}
}

static int out_write(struct nnp_nifti_out *o, const void *data, size_t n)
{
	const unsigned char *p = data;
	if (!o->gz)
		return nnp_write_all(o->a.fd, data, n, o->path);
	while (n > 0) {
		unsigned k = n > (1u << 30) ? (1u << 30) : (unsigned)n;
		int w = gzwrite(o->gz, p, k);
		if (w <= 0) {
			int zerr;
			const char *m = gzerror(o->gz, &zerr);
			return nnp_err(NNP_EIO, "cannot write '%s': %s", o->path,
				       zerr == Z_ERRNO ? strerror(errno) : m);
		}
		p += w;
		n -= (size_t)w;
	}
	return NNP_OK;
}

static int gz_name(const char *p)
{
	size_t n = strlen(p);
	return n > 3 && !strcmp(p + n - 3, ".gz");
}

static int write_preamble(struct nnp_nifti_out *o, const struct nnp_frame *f, int64_t c0, int64_t nc,
			  size_t hi, int want_version)
{
	unsigned char raw[N2], ext4[4] = { 0 }, pad[16] = { 0 };
	const struct nnp_nifti_hdr *src = hi < f->n_nifti ? &f->nifti[hi] : NULL;
	size_t ext_len = src && src->ext_len ? src->ext_len : 0;
	int version, rc;
	int64_t hdr_len, off;

	if ((rc = build_header(raw, &version, f, c0, nc, hi, want_version)))
		return rc;
	hdr_len = version == 1 ? N1 : N2;
	off = hdr_len + 4 + (int64_t)ext_len;
	off = (off + 15) / 16 * 16;
	set_vox_offset(raw, version, off);
	if (ext_len)
		ext4[0] = 1;
	if ((rc = out_write(o, raw, (size_t)hdr_len)) || (rc = out_write(o, ext4, 4)))
		return rc;
	if (ext_len && (rc = out_write(o, src->ext, ext_len)))
		return rc;
	if (off > hdr_len + 4 + (int64_t)ext_len)
		rc = out_write(o, pad, (size_t)(off - hdr_len - 4 - (int64_t)ext_len));
	return rc;
}

int nnp_nifti_create(const char *path, const struct nnp_frame *f, int64_t c0, int64_t nc, size_t hdr_index,
		     const struct nnp_nifti_opts *opts, struct nnp_nifti_out **out)
{
	struct nnp_nifti_opts def = { -1, 0, 0 };
	struct nnp_nifti_out *o;
	int rc;
	size_t n = strlen(path);

	*out = NULL;
	if (!opts)
		opts = &def;
	if (!(n > 4 && !strcmp(path + n - 4, ".nii")) && !(n > 7 && !strcmp(path + n - 7, ".nii.gz")))
		return nnp_err(NNP_EUSAGE, "output '%s' must end with .nii or .nii.gz", path);
	if (c0 < 0 || nc < 1 || c0 + nc > f->shape[0])
		return nnp_err(NNP_EINTERNAL, "channel range out of bounds");
	if (!nifti_of_dtype(f->dtype))
		return nnp_err(NNP_EDATA, "dtype %s cannot be stored in NIfTI", nnp_dtype_name(f->dtype));
	o = calloc(1, sizeof *o);
	if (!o)
		return nnp_err(NNP_ENOMEM, "out of memory");
	snprintf(o->path, sizeof o->path, "%s", path);
	if ((rc = nnp_atomic_open(&o->a, path, opts->force))) {
		free(o);
		return rc;
	}
	if (gz_name(path)) {
		char mode[16];
		int lvl = opts->gzip_level < 0 ? 1 : opts->gzip_level > 9 ? 9 : opts->gzip_level;
		snprintf(mode, sizeof mode, "wb%d", lvl);
		o->gz = gzdopen(o->a.fd, mode);
		if (!o->gz) {
			nnp_atomic_abort(&o->a);
			free(o);
			return nnp_err(NNP_ENOMEM, "cannot start gzip stream for '%s'", path);
		}
		o->a.fd = -1;   /* now owned by the gzFile */
		gzbuffer(o->gz, 1 << 18);
	}
	o->expect = (uint64_t)nc * nnp_frame_nvox(f) * nnp_dtype_size(f->dtype);
	if ((rc = write_preamble(o, f, c0, nc, hdr_index, opts->version))) {
		nnp_nifti_abort(o);
		return rc;
	}
	*out = o;
	return NNP_OK;
}

int nnp_nifti_write(struct nnp_nifti_out *o, const void *data, size_t nbytes)
{
	if (o->written + nbytes > o->expect)
		return nnp_err(NNP_EINTERNAL, "'%s': more voxel data than the header declares", o->path);
	o->written += nbytes;
	return out_write(o, data, nbytes);
}

int nnp_nifti_out_fd(const struct nnp_nifti_out *o)
{
	return o->gz ? -1 : o->a.fd;
}

uint64_t nnp_nifti_expected(const struct nnp_nifti_out *o)
{
	return o->expect;
}

int nnp_nifti_wrote(struct nnp_nifti_out *o, uint64_t nbytes)
{
	if (o->written + nbytes > o->expect)
		return nnp_err(NNP_EINTERNAL, "'%s': more voxel data than the header declares", o->path);
	o->written += nbytes;
	return NNP_OK;
}

int nnp_nifti_commit(struct nnp_nifti_out *o)
{
	int rc = NNP_OK;
	if (o->written != o->expect) {
		rc = nnp_err(NNP_EINTERNAL, "'%s': %llu of %llu voxel bytes written", o->path,
			     (unsigned long long)o->written, (unsigned long long)o->expect);
		nnp_nifti_abort(o);
		return rc;
	}
	if (o->gz) {
		int zr = gzclose(o->gz);
		o->gz = NULL;
		if (zr != Z_OK) {
			rc = nnp_err(NNP_EIO, "cannot write '%s': %s", o->path,
				     zr == Z_ERRNO ? strerror(errno) : "compression failed");
			nnp_atomic_abort(&o->a);
			free(o);
			return rc;
		}
	}
	rc = nnp_atomic_commit(&o->a);
	free(o);
	return rc;
}

void nnp_nifti_abort(struct nnp_nifti_out *o)
{
	if (!o)
		return;
	if (o->gz)
		gzclose(o->gz);
	o->gz = NULL;
	nnp_atomic_abort(&o->a);
	free(o);
}

int nnp_nifti_write_volume(const char *path, const struct nnp_vol *v, int64_t c0, int64_t nc, size_t hdr_index,
			   const struct nnp_nifti_opts *opts)
{
	struct nnp_nifti_out *o;
	uint64_t per = nnp_frame_nvox(&v->f) * nnp_dtype_size(v->f.dtype);
	int rc = nnp_nifti_create(path, &v->f, c0, nc, hdr_index, opts, &o);
	if (rc)
		return rc;
	for (int64_t c = c0; c < c0 + nc && !rc; c++)
		rc = nnp_nifti_write(o, (const char *)v->data + (uint64_t)c * per, (size_t)per);
	if (rc) {
		nnp_nifti_abort(o);
		return rc;
	}
	return nnp_nifti_commit(o);
}
