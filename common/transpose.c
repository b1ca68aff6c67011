/* transpose.c — axis permutation of volumes (see transpose.h). */
#include <string.h>
#include "err.h"
#include "transpose.h"

int nnp_transpose_valid(const int t[3])
{
	int seen[3] = { 0, 0, 0 };
	for (int i = 0; i < 3; i++) {
		if (t[i] < 0 || t[i] > 2 || seen[t[i]])
			return 0;
		seen[t[i]] = 1;
	}
	return 1;
}

int nnp_transpose_is_identity(const int t[3])
{
	return t[0] == 0 && t[1] == 1 && t[2] == 2;
}

void nnp_transpose_inverse(const int t[3], int inv[3])
{
	for (int i = 0; i < 3; i++)
		inv[t[i]] = i;
}

void nnp_transpose_of_frame(const struct nnp_frame *f, int t[3])
{
	json_t *a = f->props ? json_object_get(f->props, "transpose_forward") : NULL;
	for (int i = 0; i < 3; i++)
		t[i] = json_array_size(a) == 3 ? (int)json_integer_value(json_array_get(a, (size_t)i)) : i;
	if (!nnp_transpose_valid(t))
		for (int i = 0; i < 3; i++)
			t[i] = i;
}

int nnp_transpose_from_plans(const json_t *plans, int t[3])
{
	const json_t *a = json_object_get(plans, "transpose_forward");
	for (int i = 0; i < 3; i++)
		t[i] = i;
	if (!a)
		return NNP_OK;
	if (json_array_size(a) != 3)
		return nnp_err(NNP_EDATA, "plans: transpose_forward must have 3 entries");
	for (int i = 0; i < 3; i++)
		t[i] = (int)json_integer_value(json_array_get(a, (size_t)i));
	if (!nnp_transpose_valid(t))
		return nnp_err(NNP_EDATA, "plans: transpose_forward [%d, %d, %d] is not a permutation of 0, 1, 2",
			       t[0], t[1], t[2]);
	return NNP_OK;
}

/* Record the accumulated transposition: carried (c) then t. */
static int record(struct nnp_frame *f, const int carried[3], const int t[3])
{
	int total[3];
	json_t *p = nnp_frame_props(f);
	if (!p)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (int m = 0; m < 3; m++)
		total[m] = carried[t[m]];   /* output axis m is original axis carried[t[m]] */
	if (nnp_transpose_is_identity(total))
		json_object_del(p, "transpose_forward");
	else
		json_object_set_new(p, "transpose_forward", json_pack("[i,i,i]", total[0], total[1], total[2]));
	return NNP_OK;
}

int nnp_transpose_vol(const struct nnp_vol *src, const int t[3], struct nnp_vol *dst)
{
	const struct nnp_frame *f = &src->f;
	size_t es = nnp_dtype_size(f->dtype);
	int64_t in[3] = { f->shape[1], f->shape[2], f->shape[3] }, out[3], stride_in[3], carried3[3];
	int carried[3], rc;
	nnp_vol_init(dst);
	if (!nnp_transpose_valid(t))
		return nnp_err(NNP_EUSAGE, "transpose [%d, %d, %d] is not a permutation of 0, 1, 2", t[0], t[1], t[2]);
	nnp_transpose_of_frame(f, carried);
	if ((rc = nnp_frame_copy(&dst->f, f)))
		return rc;
	stride_in[2] = 1;
	stride_in[1] = in[2];
	stride_in[0] = in[1] * in[2];
	for (int m = 0; m < 3; m++) {
		out[m] = in[t[m]];
		dst->f.shape[m + 1] = out[m];
		dst->f.spacing[m] = f->spacing[t[m]];
		carried3[m] = stride_in[t[m]];
	}
	/* affine column of array axis a is 2 - a (x <-> axis 2, z <-> axis 0) */
	for (int r = 0; r < 4; r++)
		for (int m = 0; m < 3; m++)
			dst->f.affine[r][2 - m] = f->affine[r][2 - t[m]];
	dst->f.chunk_slices = 0;
	if ((rc = record(&dst->f, carried, t)) || (rc = nnp_vol_alloc(dst)))
		return rc;
	for (int64_t c = 0; c < f->shape[0]; c++) {
		const char *s = (const char *)src->data + (size_t)(c * in[0] * in[1] * in[2]) * es;
		char *d = (char *)dst->data + (size_t)(c * in[0] * in[1] * in[2]) * es;
		#pragma omp parallel for schedule(static)
		for (int64_t i = 0; i < out[0]; i++)
			for (int64_t j = 0; j < out[1]; j++) {
				char *row = d + (size_t)((i * out[1] + j) * out[2]) * es;
				const char *base = s + (size_t)(i * carried3[0] + j * carried3[1]) * es;
				for (int64_t k = 0; k < out[2]; k++)
					memcpy(row + (size_t)k * es, base + (size_t)(k * carried3[2]) * es, es);
			}
	}
	return NNP_OK;
}

int nnp_transpose_check(const int want[3], const struct nnp_frame *f)
{
	int have[3];
	nnp_transpose_of_frame(f, have);
	if (memcmp(want, have, sizeof have))
		return nnp_err(NNP_EDATA, "case '%s': the plans work on axes transposed by [%d, %d, %d] but the "
			       "frame is transposed by [%d, %d, %d]: put 'nnp transpose -p PLANS' before 'nnp crop'",
			       f->case_id ? f->case_id : "", want[0], want[1], want[2], have[0], have[1], have[2]);
	return NNP_OK;
}
