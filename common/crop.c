/* crop.c — crop_to_nonzero: nonzero mask, hole filling, bbox, crop. */
#include <stdlib.h>
#include <string.h>
#include "crop.h"
#include "err.h"

#define NONZERO_LOOP(T)                                              \
	do {                                                         \
		const T *v = src;                                    \
		_Pragma("omp parallel for schedule(static)")         \
		for (uint64_t i = 0; i < n; i++)                     \
			mask[i] |= v[i] != 0;                        \
	} while (0)

/* Unscaled channel: value != 0 straight on the stored type (for floats
 * the same test as on float32: -0.0 == 0, NaN != 0). Returns 0 for types
 * without a fast path. */
static int nonzero_direct(enum nnp_dtype t, const void *src, uint8_t *mask, uint64_t n)
{
	switch (t) {
	case NNP_U8: case NNP_I8: NONZERO_LOOP(uint8_t); return 1;
	case NNP_I16: case NNP_U16: NONZERO_LOOP(uint16_t); return 1;
	case NNP_I32: case NNP_U32: NONZERO_LOOP(uint32_t); return 1;
	case NNP_F32: NONZERO_LOOP(float); return 1;
	default: return 0;
	}
}

void nnp_nonzero_mask(const struct nnp_vol *img, uint8_t *mask)
{
	enum { BLK = 4096 };
	const struct nnp_frame *f = &img->f;
	uint64_t nvox = nnp_frame_nvox(f);
	size_t es = nnp_dtype_size(f->dtype);
	memset(mask, 0, (size_t)nvox);
	for (int64_t c = 0; c < f->shape[0]; c++) {
		double slope = 1, inter = 0;
		const char *p = (const char *)img->data + (uint64_t)c * nvox * es;
		if (f->scale && f->scale[2 * c] != 0) {
			slope = f->scale[2 * c];
			inter = f->scale[2 * c + 1];
		}
		if (slope == 1 && inter == 0 && nonzero_direct(f->dtype, p, mask, nvox))
			continue;
		#pragma omp parallel for schedule(static)
		for (uint64_t off = 0; off < nvox; off += BLK) {
			double tmp[BLK];
			size_t m = nvox - off < BLK ? (size_t)(nvox - off) : BLK;
			nnp_to_f64(f->dtype, p + off * es, tmp, m);
			for (size_t i = 0; i < m; i++)
				if ((float)(tmp[i] * slope + inter) != 0.0f)
					mask[off + i] = 1;
		}
	}
}

/* Growable queue of voxel indices. */
struct queue {
	uint64_t *q;
	size_t head, tail, cap;
};

static int push(struct queue *s, uint64_t v)
{
	if (s->tail == s->cap) {
		if (s->head > s->cap / 2) {
			memmove(s->q, s->q + s->head, (s->tail - s->head) * sizeof *s->q);
			s->tail -= s->head;
			s->head = 0;
		} else {
			size_t cap = s->cap ? s->cap * 2 : 1 << 16;
			uint64_t *n = realloc(s->q, cap * sizeof *n);
			if (!n)
				return NNP_ENOMEM;
			s->q = n;
			s->cap = cap;
		}
	}
	s->q[s->tail++] = v;
	return NNP_OK;
}

/* mask values: 0 background (unvisited), 1 foreground, 2 outside (reached). */
static int seed_border(uint8_t *m, const int64_t *n, struct queue *q)
{
	for (int64_t z = 0; z < n[0]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[2]; x++) {
				uint64_t i;
				if (z && z != n[0] - 1 && y && y != n[1] - 1 && x && x != n[2] - 1) {
					x = n[2] - 2; /* jump to the far x border */
					continue;
				}
				i = ((uint64_t)z * (uint64_t)n[1] + (uint64_t)y) * (uint64_t)n[2] + (uint64_t)x;
				if (m[i] == 0) {
					m[i] = 2;
					if (push(q, i))
						return NNP_ENOMEM;
				}
			}
	return NNP_OK;
}

static int flood(uint8_t *m, const int64_t *n, struct queue *q)
{
	uint64_t sy = (uint64_t)n[2], sz = (uint64_t)n[1] * (uint64_t)n[2];
	while (q->head < q->tail) {
		uint64_t i = q->q[q->head++];
		int64_t z = (int64_t)(i / sz), y = (int64_t)((i / sy) % (uint64_t)n[1]), x = (int64_t)(i % sy);
		uint64_t nb[6];
		int k = 0;
		if (x > 0) nb[k++] = i - 1;
		if (x < n[2] - 1) nb[k++] = i + 1;
		if (y > 0) nb[k++] = i - sy;
		if (y < n[1] - 1) nb[k++] = i + sy;
		if (z > 0) nb[k++] = i - sz;
		if (z < n[0] - 1) nb[k++] = i + sz;
		for (int j = 0; j < k; j++)
			if (m[nb[j]] == 0) {
				m[nb[j]] = 2;
				if (push(q, nb[j]))
					return NNP_ENOMEM;
			}
	}
	return NNP_OK;
}

int nnp_fill_holes(uint8_t *mask, const int64_t shape[3])
{
	struct queue q = { 0 };
	uint64_t nvox = (uint64_t)shape[0] * (uint64_t)shape[1] * (uint64_t)shape[2];
	int rc = seed_border(mask, shape, &q);
	if (!rc)
		rc = flood(mask, shape, &q);
	free(q.q);
	if (rc)
		return nnp_err(NNP_ENOMEM, "out of memory filling holes of the nonzero mask");
	for (uint64_t i = 0; i < nvox; i++)
		mask[i] = mask[i] != 2;   /* unreached background = hole = foreground */
	return NNP_OK;
}

/* First and last nonzero byte of a row (-1, -1 if none). */
static void row_extent(const uint8_t *r, int64_t n, int64_t *first, int64_t *last)
{
	int64_t a = 0, b = n - 1;
	while (a < n && !r[a])
		a++;
	if (a == n) {
		*first = *last = -1;
		return;
	}
	while (!r[b])
		b--;
	*first = a;
	*last = b;
}

void nnp_mask_bbox(const uint8_t *mask, const int64_t shape[3], int64_t bbox[3][2])
{
	int64_t lo[3] = { shape[0], shape[1], shape[2] }, hi[3] = { -1, -1, -1 };
	#pragma omp parallel
	{
		int64_t l[3] = { shape[0], shape[1], shape[2] }, h[3] = { -1, -1, -1 };
		#pragma omp for schedule(static)
		for (int64_t z = 0; z < shape[0]; z++)
			for (int64_t y = 0; y < shape[1]; y++) {
				int64_t a, b;
				row_extent(mask + ((uint64_t)z * (uint64_t)shape[1] + (uint64_t)y) * (uint64_t)shape[2],
					   shape[2], &a, &b);
				if (a < 0)
					continue;
				if (z < l[0]) l[0] = z;
				if (z > h[0]) h[0] = z;
				if (y < l[1]) l[1] = y;
				if (y > h[1]) h[1] = y;
				if (a < l[2]) l[2] = a;
				if (b > h[2]) h[2] = b;
			}
		#pragma omp critical(nnp_bbox)
		for (int k = 0; k < 3; k++) {
			if (l[k] < lo[k]) lo[k] = l[k];
			if (h[k] > hi[k]) hi[k] = h[k];
		}
	}
	for (int a = 0; a < 3; a++) {
		if (hi[a] < 0) {   /* empty: the full extent (nnU-Net's behaviour) */
			bbox[a][0] = 0;
			bbox[a][1] = shape[a];
		} else {
			bbox[a][0] = lo[a];
			bbox[a][1] = hi[a] + 1;
		}
	}
}

/* Move the affine origin to the box corner (sign 1) or back (sign -1):
 * origin += sign * affine[:3,:3] * (x0, y0, z0). */
static void shift_origin(struct nnp_frame *f, const int64_t bbox[3][2], int sign)
{
	for (int r = 0; r < 3; r++)
		f->affine[r][3] += sign * (f->affine[r][0] * (double)bbox[2][0] + f->affine[r][1] * (double)bbox[1][0] +
					   f->affine[r][2] * (double)bbox[0][0]);
}

int nnp_crop_box(const struct nnp_vol *src, const int64_t bbox[3][2], struct nnp_vol *dst)
{
	const struct nnp_frame *f = &src->f;
	size_t es = nnp_dtype_size(f->dtype);
	int64_t nz = bbox[0][1] - bbox[0][0], ny = bbox[1][1] - bbox[1][0], nx = bbox[2][1] - bbox[2][0];
	int rc;
	nnp_vol_init(dst);
	if ((rc = nnp_frame_copy(&dst->f, f)))
		return rc;
	dst->f.shape[1] = nz;
	dst->f.shape[2] = ny;
	dst->f.shape[3] = nx;
	dst->f.chunk_slices = 0;
	shift_origin(&dst->f, bbox, 1);
	if ((rc = nnp_vol_alloc(dst)))
		return rc;
	for (int64_t c = 0; c < f->shape[0]; c++)
		for (int64_t z = 0; z < nz; z++)
			for (int64_t y = 0; y < ny; y++) {
				const char *s = (const char *)src->data +
					(size_t)((((c * f->shape[1] + z + bbox[0][0]) * f->shape[2] + y + bbox[1][0]) *
						  f->shape[3] + bbox[2][0])) * es;
				char *d = (char *)dst->data + (size_t)(((c * nz + z) * ny + y) * nx) * es;
				memcpy(d, s, (size_t)nx * es);
			}
	return NNP_OK;
}

/* Largest label value (0 for NULL). */
static int64_t max_label(const struct nnp_vol *seg)
{
	enum { BLK = 4096 };
	uint64_t n;
	size_t es;
	int64_t m = 0;
	if (!seg)
		return 0;
	n = nnp_frame_nvox(&seg->f);
	es = nnp_dtype_size(seg->f.dtype);
	#pragma omp parallel for schedule(static) reduction(max:m)
	for (uint64_t off = 0; off < n; off += BLK) {
		double tmp[BLK];
		size_t k = n - off < BLK ? (size_t)(n - off) : BLK;
		nnp_to_f64(seg->f.dtype, (const char *)seg->data + off * es, tmp, k);
		for (size_t i = 0; i < k; i++)
			if ((int64_t)tmp[i] > m)
				m = (int64_t)tmp[i];
	}
	return m;
}

/* One cropped row of the output label map: seg value (0 without seg),
 * -1 where it is 0 outside the mask. */
static void seg_row(const struct nnp_vol *seg, const uint8_t *mrow, uint64_t si, int64_t nx, enum nnp_dtype odt,
		    void *dst, double *tmp)
{
	if (seg)
		nnp_to_f64(seg->f.dtype, (const char *)seg->data + si * nnp_dtype_size(seg->f.dtype), tmp, (size_t)nx);
	for (int64_t x = 0; x < nx; x++) {
		int64_t v = seg ? (int64_t)tmp[x] : 0;
		if (v == 0 && !mrow[x])
			v = -1;
		if (odt == NNP_I8)
			((int8_t *)dst)[x] = (int8_t)v;
		else
			((int16_t *)dst)[x] = (int16_t)v;
	}
}

static int make_seg_out(const struct nnp_vol *seg, const uint8_t *mask, const int64_t *shape,
			const int64_t bbox[3][2], struct nnp_vol *out, const struct nnp_frame *imgf)
{
	int64_t nz = bbox[0][1] - bbox[0][0], ny = bbox[1][1] - bbox[1][0], nx = bbox[2][1] - bbox[2][0];
	size_t oes;
	int rc;
	nnp_vol_init(out);
	if ((rc = nnp_frame_copy(&out->f, seg ? &seg->f : imgf)))
		return rc;
	free(out->f.scale);
	out->f.scale = NULL;
	snprintf(out->f.role, sizeof out->f.role, "%s", seg ? "label" : "mask");
	if (out->f.props)
		json_object_del(out->f.props, "channel_dtypes");
	out->f.dtype = max_label(seg) > 127 ? NNP_I16 : NNP_I8;  /* nnU-Net: int8, int16 above 127 labels */
	out->f.shape[0] = 1;
	out->f.shape[1] = nz;
	out->f.shape[2] = ny;
	out->f.shape[3] = nx;
	out->f.chunk_slices = 0;
	memcpy(out->f.affine, imgf->affine, sizeof out->f.affine);
	out->f.has_affine = imgf->has_affine;
	shift_origin(&out->f, bbox, 1);
	if ((rc = nnp_vol_alloc(out)))
		return rc;
	oes = nnp_dtype_size(out->f.dtype);
	int failed = 0;
	#pragma omp parallel reduction(|:failed)
	{
		double *tmp = seg ? malloc((size_t)nx * sizeof *tmp) : NULL;
		failed = seg && !tmp;
		#pragma omp for schedule(static)
		for (int64_t z = 0; z < nz; z++)
			for (int64_t y = 0; y < ny && !failed; y++) {
				uint64_t si = ((uint64_t)(z + bbox[0][0]) * (uint64_t)shape[1] + (uint64_t)(y + bbox[1][0])) *
						      (uint64_t)shape[2] + (uint64_t)bbox[2][0];
				char *d = (char *)out->data + (((uint64_t)z * (uint64_t)ny + (uint64_t)y) * (uint64_t)nx) * oes;
				seg_row(seg, mask + si, si, nx, out->f.dtype, d, tmp);
			}
		free(tmp);
	}
	if (failed) {
		nnp_vol_release(out);
		return nnp_err(NNP_ENOMEM, "out of memory cropping the label map");
	}
	return NNP_OK;
}

int nnp_crop_to_nonzero(const struct nnp_vol *img, const struct nnp_vol *seg, struct nnp_vol *img_out,
			struct nnp_vol *seg_out, int64_t bbox[3][2])
{
	const int64_t *shape = img->f.shape + 1;
	uint8_t *mask = malloc((size_t)nnp_frame_nvox(&img->f));
	int rc;
	if (!mask)
		return nnp_err(NNP_ENOMEM, "out of memory for the nonzero mask");
	if (seg && (seg->f.shape[1] != shape[0] || seg->f.shape[2] != shape[1] || seg->f.shape[3] != shape[2])) {
		free(mask);
		return nnp_err(NNP_EDATA, "case '%s': label shape differs from the image",
			       img->f.case_id ? img->f.case_id : "");
	}
	nnp_nonzero_mask(img, mask);
	rc = nnp_fill_holes(mask, shape);
	if (!rc) {
		nnp_mask_bbox(mask, shape, bbox);
		rc = nnp_crop_box(img, bbox, img_out);
	}
	if (!rc && seg_out)
		rc = make_seg_out(seg, mask, shape, bbox, seg_out, &img->f);
	free(mask);
	return rc;
}

static json_t *ivec3(const int64_t v[3])
{
	return json_pack("[I,I,I]", (json_int_t)v[0], (json_int_t)v[1], (json_int_t)v[2]);
}

int nnp_crop_set_props(struct nnp_frame *f, const int64_t before[3], const int64_t bbox[3][2])
{
	json_t *p = nnp_frame_props(f), *b = json_array();
	int64_t after[3];
	if (!p || !b)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (int a = 0; a < 3; a++) {
		json_array_append_new(b, json_pack("[I,I]", (json_int_t)bbox[a][0], (json_int_t)bbox[a][1]));
		after[a] = bbox[a][1] - bbox[a][0];
	}
	json_object_set_new(p, "shape_before_cropping", ivec3(before));
	json_object_set_new(p, "bbox_used_for_cropping", b);
	json_object_set_new(p, "shape_after_cropping_and_before_resampling", ivec3(after));
	return NNP_OK;
}

int nnp_crop_get_record(const struct nnp_frame *f, int64_t before[3], int64_t bbox[3][2])
{
	json_t *s = f->props ? json_object_get(f->props, "shape_before_cropping") : NULL;
	json_t *b = f->props ? json_object_get(f->props, "bbox_used_for_cropping") : NULL;
	const char *id = f->case_id ? f->case_id : "";
	if (json_array_size(s) != 3 || json_array_size(b) != 3)
		return nnp_err(NNP_EDATA, "case '%s': frame has no crop record (props.shape_before_cropping, "
			       "props.bbox_used_for_cropping): was it made by nnp crop?", id);
	for (int a = 0; a < 3; a++) {
		json_t *r = json_array_get(b, (size_t)a);
		before[a] = json_integer_value(json_array_get(s, (size_t)a));
		bbox[a][0] = json_integer_value(json_array_get(r, 0));
		bbox[a][1] = json_integer_value(json_array_get(r, 1));
		if (json_array_size(r) != 2 || before[a] < 1 || before[a] > NNP_DIM_MAX || bbox[a][0] < 0 ||
		    bbox[a][1] > before[a] || bbox[a][1] <= bbox[a][0])
			return nnp_err(NNP_EDATA, "case '%s': malformed crop record (axis %d)", id, a);
	}
	return NNP_OK;
}

int nnp_crop_get_props(const struct nnp_frame *f, int64_t before[3], int64_t bbox[3][2])
{
	int rc = nnp_crop_get_record(f, before, bbox);
	if (rc)
		return rc;
	for (int a = 0; a < 3; a++)
		if (bbox[a][1] - bbox[a][0] != f->shape[a + 1])
			return nnp_err(NNP_EDATA, "case '%s': crop record does not match the frame's shape (axis %d)",
				       f->case_id ? f->case_id : "", a);
	return NNP_OK;
}

static void fill_value(void *p, enum nnp_dtype t, double v, uint64_t n)
{
	size_t es = nnp_dtype_size(t);
	unsigned char one[8];
	nnp_convert(t, one, NNP_F64, &v, 1);
	for (uint64_t i = 0; i < n; i++)
		memcpy((char *)p + i * es, one, es);
}

int nnp_uncrop_frame(const struct nnp_frame *src, const int64_t before[3], const int64_t bbox[3][2],
		     struct nnp_frame *dst)
{
	int rc;
	nnp_frame_init(dst);
	if ((rc = nnp_frame_copy(dst, src)))
		return rc;
	for (int a = 0; a < 3; a++)
		dst->shape[a + 1] = before[a];
	dst->chunk_slices = 0;
	shift_origin(dst, bbox, -1);
	if (dst->props) {
		json_object_del(dst->props, "shape_before_cropping");
		json_object_del(dst->props, "bbox_used_for_cropping");
		json_object_del(dst->props, "shape_after_cropping_and_before_resampling");
	}
	return NNP_OK;
}

int nnp_uncrop(const struct nnp_vol *src, const int64_t before[3], const int64_t bbox[3][2], double fill,
	       struct nnp_vol *dst)
{
	const struct nnp_frame *f = &src->f;
	size_t es = nnp_dtype_size(f->dtype);
	int64_t nz = f->shape[1], ny = f->shape[2], nx = f->shape[3];
	int rc;
	nnp_vol_init(dst);
	if ((rc = nnp_uncrop_frame(f, before, bbox, &dst->f)))
		return rc;
	if ((rc = nnp_vol_alloc(dst)))
		return rc;
	if (fill != 0)
		fill_value(dst->data, f->dtype, fill, nnp_frame_nbytes(&dst->f) / es);
	for (int64_t c = 0; c < f->shape[0]; c++)
		for (int64_t z = 0; z < nz; z++)
			for (int64_t y = 0; y < ny; y++) {
				char *d = (char *)dst->data +
					  (size_t)((((c * before[0] + z + bbox[0][0]) * before[1] + y + bbox[1][0]) *
						    before[2] + bbox[2][0])) * es;
				const char *s = (const char *)src->data + (size_t)(((c * nz + z) * ny + y) * nx) * es;
				memcpy(d, s, (size_t)nx * es);
			}
	return NNP_OK;
}
