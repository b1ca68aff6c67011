/* frame.c — frame metadata, volumes, and the msgpack frame stream codec.
 *
 * The header map is located with a small structural scanner (no payload
 * is ever buffered by msgpack-c), decoded with msgpack-c, and the payload
 * bin objects are read straight into their destination.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include "atomic.h"
#include "err.h"
#include "frame.h"

#define NIFTI1_HDR 348
#define NIFTI2_HDR 540
#define JSON_DEPTH_MAX 64

/* ------------------------------------------------------------------ */
/* frame metadata                                                      */

void nnp_frame_init(struct nnp_frame *f)
{
	memset(f, 0, sizeof *f);
	f->vmajor = NNP_FRAME_MAJOR;
	f->vminor = NNP_FRAME_MINOR;
	snprintf(f->role, sizeof f->role, "image");
	for (int i = 0; i < 3; i++)
		f->spacing[i] = 1.0;
}

void nnp_frame_release(struct nnp_frame *f)
{
	if (!f)
		return;
	free(f->case_id);
	free(f->scale);
	for (size_t i = 0; i < f->n_nifti; i++) {
		free(f->nifti[i].raw);
		free(f->nifti[i].ext);
	}
	free(f->nifti);
	json_decref(f->props);
	nnp_frame_init(f);
}

static void *dup_bytes(const void *p, size_t n)
{
	void *q;
	if (!p || !n)
		return NULL;
	q = malloc(n);
	if (q)
		memcpy(q, p, n);
	return q;
}

int nnp_frame_copy(struct nnp_frame *dst, const struct nnp_frame *src)
{
	*dst = *src;
	dst->case_id = NULL;
	dst->scale = NULL;
	dst->nifti = NULL;
	dst->n_nifti = 0;
	dst->props = NULL;
	if (src->case_id && !(dst->case_id = strdup(src->case_id)))
		goto oom;
	if (src->scale && !(dst->scale = dup_bytes(src->scale, 2 * sizeof(double) * (size_t)src->shape[0])))
		goto oom;
	if (src->n_nifti) {
		dst->nifti = calloc(src->n_nifti, sizeof *dst->nifti);
		if (!dst->nifti)
			goto oom;
		dst->n_nifti = src->n_nifti;
		for (size_t i = 0; i < src->n_nifti; i++) {
			const struct nnp_nifti_hdr *s = &src->nifti[i];
			struct nnp_nifti_hdr *d = &dst->nifti[i];
			d->version = s->version;
			d->raw_len = s->raw_len;
			d->ext_len = s->ext_len;
			d->raw = dup_bytes(s->raw, s->raw_len);
			d->ext = dup_bytes(s->ext, s->ext_len);
			if ((s->raw_len && !d->raw) || (s->ext_len && !d->ext))
				goto oom;
		}
	}
	if (src->props && !(dst->props = json_deep_copy(src->props)))
		goto oom;
	return NNP_OK;
oom:
	nnp_frame_release(dst);
	return nnp_err(NNP_ENOMEM, "out of memory copying frame metadata");
}

int nnp_frame_set_case(struct nnp_frame *f, const char *case_id)
{
	char *c = case_id ? strdup(case_id) : NULL;
	if (case_id && !c)
		return nnp_err(NNP_ENOMEM, "out of memory");
	free(f->case_id);
	f->case_id = c;
	return NNP_OK;
}

uint64_t nnp_frame_nvox(const struct nnp_frame *f)
{
	return (uint64_t)f->shape[1] * (uint64_t)f->shape[2] * (uint64_t)f->shape[3];
}

uint64_t nnp_frame_nbytes(const struct nnp_frame *f)
{
	return nnp_frame_nvox(f) * (uint64_t)f->shape[0] * nnp_dtype_size(f->dtype);
}

uint64_t nnp_frame_slice_bytes(const struct nnp_frame *f)
{
	return (uint64_t)f->shape[0] * (uint64_t)f->shape[2] * (uint64_t)f->shape[3] *
	       nnp_dtype_size(f->dtype);
}

int64_t nnp_frame_nchunks(const struct nnp_frame *f)
{
	if (f->chunk_slices <= 0)
		return 0;
	return (f->shape[1] + f->chunk_slices - 1) / f->chunk_slices;
}

static const char *case_or(const struct nnp_frame *f)
{
	return f->case_id ? f->case_id : "(no case id)";
}

int nnp_frame_validate(struct nnp_frame *f)
{
	uint64_t slice, n = 1;
	if (!nnp_dtype_size(f->dtype))
		return nnp_err(NNP_EDATA, "case '%s': unknown dtype", case_or(f));
	if (f->shape[0] < 1 || f->shape[0] > NNP_CHANNELS_MAX)
		return nnp_err(NNP_EDATA, "case '%s': channel count %lld out of range [1, %d]",
			       case_or(f), (long long)f->shape[0], NNP_CHANNELS_MAX);
	for (int i = 1; i < 4; i++)
		if (f->shape[i] < 1 || f->shape[i] > NNP_DIM_MAX)
			return nnp_err(NNP_EDATA, "case '%s': axis %d length %lld out of range [1, %lld]",
				       case_or(f), i, (long long)f->shape[i], (long long)NNP_DIM_MAX);
	for (int i = 0; i < 4; i++) {
		n *= (uint64_t)f->shape[i];
		if (n * nnp_dtype_size(f->dtype) > NNP_NBYTES_MAX)
			return nnp_err(NNP_EDATA, "case '%s': volume larger than the %llu-byte cap",
				       case_or(f), (unsigned long long)NNP_NBYTES_MAX);
	}
	for (int i = 0; i < 3; i++)
		if (!isfinite(f->spacing[i]) || f->spacing[i] <= 0)
			return nnp_err(NNP_EDATA, "case '%s': spacing[%d] = %g is not a positive number",
				       case_or(f), i, f->spacing[i]);
	slice = nnp_frame_slice_bytes(f);
	if (slice > NNP_CHUNK_MAX)
		return nnp_err(NNP_EDATA, "case '%s': one slice (%llu bytes) exceeds the %llu-byte chunk cap",
			       case_or(f), (unsigned long long)slice, (unsigned long long)NNP_CHUNK_MAX);
	if (f->chunk_slices <= 0) {
		int64_t k = (int64_t)(NNP_CHUNK_TARGET / slice);
		f->chunk_slices = k < 1 ? 1 : (k > f->shape[1] ? f->shape[1] : k);
	}
	if (f->chunk_slices > f->shape[1])
		f->chunk_slices = f->shape[1];
	if ((uint64_t)f->chunk_slices * slice > NNP_CHUNK_MAX)
		return nnp_err(NNP_EDATA, "case '%s': chunk of %lld slices exceeds the %llu-byte cap",
			       case_or(f), (long long)f->chunk_slices, (unsigned long long)NNP_CHUNK_MAX);
	return NNP_OK;
}

void nnp_frame_default_affine(struct nnp_frame *f)
{
	memset(f->affine, 0, sizeof f->affine);
	f->affine[0][0] = f->spacing[2];
	f->affine[1][1] = f->spacing[1];
	f->affine[2][2] = f->spacing[0];
	f->affine[3][3] = 1;
	f->has_affine = 1;
}

json_t *nnp_frame_props(struct nnp_frame *f)
{
	if (!f->props)
		f->props = json_object();
	return f->props;
}

void *nnp_aligned_alloc(size_t n)
{
	void *p = NULL;
	if (n == 0)
		n = 1;
	/* Large blocks: calloc maps fresh zero pages, so the memory is not
	 * written twice (zeroing, then the data); glibc aligns them to 16. */
	if (n >= ((size_t)1 << 20))
		return calloc(1, n);
	if (posix_memalign(&p, 64, n) != 0)
		return NULL;
	memset(p, 0, n);
	return p;
}

void nnp_vol_init(struct nnp_vol *v)
{
	nnp_frame_init(&v->f);
	v->data = NULL;
}

int nnp_vol_alloc(struct nnp_vol *v)
{
	int rc = nnp_frame_validate(&v->f);
	uint64_t n = 0;
	if (rc)
		return rc;
	n = nnp_frame_nbytes(&v->f);
	if (n > SIZE_MAX)
		return nnp_err(NNP_ENOMEM, "case '%s': %llu bytes do not fit in memory", case_or(&v->f),
			       (unsigned long long)n);
	free(v->data);
	v->data = nnp_aligned_alloc((size_t)n);
	if (!v->data)
		return nnp_err(NNP_ENOMEM, "case '%s': cannot allocate %.1f MiB for the volume",
			       case_or(&v->f), n / 1048576.0);
	return NNP_OK;
}

void nnp_vol_release(struct nnp_vol *v)
{
	if (!v)
		return;
	nnp_frame_release(&v->f);
	free(v->data);
	v->data = NULL;
}

/* ------------------------------------------------------------------ */
/* header encoding                                                     */

static void pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static int pack_json(msgpack_packer *pk, const json_t *j, int depth)
{
	const char *key;
	json_t *val;
	size_t i;
	if (depth > JSON_DEPTH_MAX)
		return nnp_err(NNP_EDATA, "props nested deeper than %d levels", JSON_DEPTH_MAX);
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		msgpack_pack_map(pk, json_object_size(j));
		json_object_foreach((json_t *)j, key, val) {
			pack_str(pk, key);
			if (pack_json(pk, val, depth + 1))
				return NNP_EDATA;
		}
		return NNP_OK;
	case JSON_ARRAY:
		msgpack_pack_array(pk, json_array_size(j));
		json_array_foreach(j, i, val)
			if (pack_json(pk, val, depth + 1))
				return NNP_EDATA;
		return NNP_OK;
	case JSON_STRING:
		msgpack_pack_str(pk, json_string_length(j));
		msgpack_pack_str_body(pk, json_string_value(j), json_string_length(j));
		return NNP_OK;
	case JSON_INTEGER:
		msgpack_pack_int64(pk, json_integer_value(j));
		return NNP_OK;
	case JSON_REAL:
		msgpack_pack_double(pk, json_real_value(j));
		return NNP_OK;
	case JSON_TRUE: msgpack_pack_true(pk); return NNP_OK;
	case JSON_FALSE: msgpack_pack_false(pk); return NNP_OK;
	default: msgpack_pack_nil(pk); return NNP_OK;
	}
}

static void pack_nifti(msgpack_packer *pk, const struct nnp_frame *f)
{
	msgpack_pack_array(pk, f->n_nifti);
	for (size_t i = 0; i < f->n_nifti; i++) {
		const struct nnp_nifti_hdr *h = &f->nifti[i];
		msgpack_pack_map(pk, h->ext_len ? 3 : 2);
		pack_str(pk, "v");
		msgpack_pack_int(pk, h->version);
		pack_str(pk, "hdr");
		msgpack_pack_bin(pk, h->raw_len);
		msgpack_pack_bin_body(pk, h->raw, h->raw_len);
		if (h->ext_len) {
			pack_str(pk, "ext");
			msgpack_pack_bin(pk, h->ext_len);
			msgpack_pack_bin_body(pk, h->ext, h->ext_len);
		}
	}
}

int nnp_frame_encode_header(const struct nnp_frame *f, unsigned char **buf, size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int nkeys = 11 + (f->case_id != NULL) + (f->has_affine != 0) + (f->scale != NULL) +
		    (f->n_nifti > 0) + (f->props != NULL);
	int rc = NNP_OK;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, (size_t)nkeys);
	pack_str(&pk, "nnp"); pack_str(&pk, "frame");
	pack_str(&pk, "v");
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int(&pk, f->vmajor);
	msgpack_pack_int(&pk, f->vminor);
	pack_str(&pk, "role"); pack_str(&pk, f->role);
	if (f->case_id) {
		pack_str(&pk, "case");
		pack_str(&pk, f->case_id);
	}
	pack_str(&pk, "dtype"); pack_str(&pk, nnp_dtype_str(f->dtype));
	pack_str(&pk, "shape");
	msgpack_pack_array(&pk, 4);
	for (int i = 0; i < 4; i++)
		msgpack_pack_int64(&pk, f->shape[i]);
	pack_str(&pk, "spacing");
	msgpack_pack_array(&pk, 3);
	for (int i = 0; i < 3; i++)
		msgpack_pack_double(&pk, f->spacing[i]);
	if (f->has_affine) {
		pack_str(&pk, "affine");
		msgpack_pack_array(&pk, 4);
		for (int i = 0; i < 4; i++) {
			msgpack_pack_array(&pk, 4);
			for (int j = 0; j < 4; j++)
				msgpack_pack_double(&pk, f->affine[i][j]);
		}
	}
	pack_str(&pk, "layout"); pack_str(&pk, "czyx");
	pack_str(&pk, "chunk"); msgpack_pack_int64(&pk, f->chunk_slices);
	pack_str(&pk, "nchunks"); msgpack_pack_int64(&pk, nnp_frame_nchunks(f));
	pack_str(&pk, "nbytes"); msgpack_pack_uint64(&pk, nnp_frame_nbytes(f));
	pack_str(&pk, "codec"); pack_str(&pk, "raw");
	if (f->scale) {
		pack_str(&pk, "scale");
		msgpack_pack_array(&pk, (size_t)f->shape[0]);
		for (int64_t c = 0; c < f->shape[0]; c++) {
			msgpack_pack_array(&pk, 2);
			msgpack_pack_double(&pk, f->scale[2 * c]);
			msgpack_pack_double(&pk, f->scale[2 * c + 1]);
		}
	}
	if (f->n_nifti) {
		pack_str(&pk, "nifti");
		pack_nifti(&pk, f);
	}
	if (f->props) {
		pack_str(&pk, "props");
		rc = pack_json(&pk, f->props, 0);
	}
	if (rc == NNP_OK && sb.size > NNP_HEADER_MAX)
		rc = nnp_err(NNP_EDATA, "case '%s': frame header of %zu bytes exceeds the %zu-byte cap",
			     case_or(f), sb.size, NNP_HEADER_MAX);
	if (rc) {
		msgpack_sbuffer_destroy(&sb);
		return rc;
	}
	*buf = (unsigned char *)sb.data;
	*len = sb.size;
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* header decoding                                                     */

static int key_is(const msgpack_object *k, const char *s)
{
	size_t n = strlen(s);
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && !memcmp(k->via.str.ptr, s, n);
}

static int obj_num(const msgpack_object *o, double *v)
{
	switch (o->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER: *v = (double)o->via.u64; return 1;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: *v = (double)o->via.i64; return 1;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: *v = o->via.f64; return 1;
	default: return 0;
	}
}

static int obj_int(const msgpack_object *o, int64_t *v)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
		*v = (int64_t)o->via.u64;
		return 1;
	}
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*v = o->via.i64;
		return 1;
	}
	return 0;
}

static int obj_strcpy(const msgpack_object *o, char *dst, size_t cap)
{
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap)
		return 0;
	memcpy(dst, o->via.str.ptr, o->via.str.size);
	dst[o->via.str.size] = '\0';
	return 1;
}

static json_t *obj_to_json(const msgpack_object *o, int depth)
{
	json_t *j;
	if (depth > JSON_DEPTH_MAX)
		return NULL;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: return json_null();
	case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return o->via.u64 <= INT64_MAX ? json_integer((json_int_t)o->via.u64)
					       : json_real((double)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer(o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
	case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_ARRAY:
		j = json_array();
		for (uint32_t i = 0; j && i < o->via.array.size; i++) {
			json_t *e = obj_to_json(&o->via.array.ptr[i], depth + 1);
			if (!e || json_array_append_new(j, e)) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	case MSGPACK_OBJECT_MAP:
		j = json_object();
		for (uint32_t i = 0; j && i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			char key[256];
			json_t *e;
			if (!obj_strcpy(&kv->key, key, sizeof key) ||
			    !(e = obj_to_json(&kv->val, depth + 1)) || json_object_set_new(j, key, e)) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	default:
		return NULL;  /* bin and ext are not JSON */
	}
}

struct dec {
	const char *name;     /* stream name */
	struct nnp_frame *f;
	int swap;
	int64_t nchunks;
	uint64_t nbytes;
	int have_nbytes, have_nchunks, have_version;
};

static int bad(const struct dec *d, const char *what)
{
	return nnp_err(NNP_EDATA, "'%s': case '%s': bad frame header: %s", d->name, case_or(d->f), what);
}

static int dec_version(struct dec *d, const msgpack_object *v)
{
	int64_t maj, min;
	if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 2 ||
	    !obj_int(&v->via.array.ptr[0], &maj) || !obj_int(&v->via.array.ptr[1], &min))
		return bad(d, "'v' must be [major, minor]");
	if (maj != NNP_FRAME_MAJOR)
		return nnp_err(NNP_EDATA, "'%s': unsupported frame format version %lld.%lld "
			       "(this build reads version %d.x; upgrade nnpipe)",
			       d->name, (long long)maj, (long long)min, NNP_FRAME_MAJOR);
	d->have_version = 1;
	d->f->vmajor = (int)maj;
	d->f->vminor = (int)(min < 0 ? 0 : min > INT_MAX ? INT_MAX : min);
	return NNP_OK;
}

static int dec_numbers(const msgpack_object *v, double *out, uint32_t n)
{
	if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != n)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (!obj_num(&v->via.array.ptr[i], &out[i]) || !isfinite(out[i]))
			return 0;
	return 1;
}

static int dec_affine(struct dec *d, const msgpack_object *v)
{
	if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 4)
		return bad(d, "'affine' must be 4 rows of 4 numbers");
	for (int i = 0; i < 4; i++)
		if (!dec_numbers(&v->via.array.ptr[i], d->f->affine[i], 4))
			return bad(d, "'affine' must be 4 rows of 4 numbers");
	d->f->has_affine = 1;
	return NNP_OK;
}

static int dec_shape(struct dec *d, const msgpack_object *v)
{
	if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 4)
		return bad(d, "'shape' must be [c, z, y, x]");
	for (int i = 0; i < 4; i++)
		if (!obj_int(&v->via.array.ptr[i], &d->f->shape[i]))
			return bad(d, "'shape' entries must be integers");
	return NNP_OK;
}

static int dec_nifti_one(struct dec *d, const msgpack_object *m, struct nnp_nifti_hdr *h)
{
	if (m->type != MSGPACK_OBJECT_MAP)
		return bad(d, "'nifti' entries must be maps");
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
		int64_t ver;
		if (key_is(k, "v") && obj_int(v, &ver))
			h->version = (int)ver;
		else if (key_is(k, "hdr") && v->type == MSGPACK_OBJECT_BIN) {
			free(h->raw);
			h->raw = dup_bytes(v->via.bin.ptr, v->via.bin.size);
			h->raw_len = h->raw ? v->via.bin.size : 0;
		} else if (key_is(k, "ext") && v->type == MSGPACK_OBJECT_BIN) {
			if (v->via.bin.size > NNP_NIFTI_EXT_MAX)
				return bad(d, "NIfTI extensions too large");
			free(h->ext);
			h->ext = dup_bytes(v->via.bin.ptr, v->via.bin.size);
			h->ext_len = h->ext ? v->via.bin.size : 0;
		}
	}
	if (!((h->version == 1 && h->raw_len == NIFTI1_HDR) || (h->version == 2 && h->raw_len == NIFTI2_HDR)))
		return bad(d, "'nifti' header must be 348 bytes (v1) or 540 bytes (v2)");
	return NNP_OK;
}

static int dec_nifti(struct dec *d, const msgpack_object *v)
{
	if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > NNP_CHANNELS_MAX)
		return bad(d, "'nifti' must be an array of maps");
	if (d->f->nifti)
		return bad(d, "duplicate key 'nifti'");
	d->f->nifti = calloc(v->via.array.size ? v->via.array.size : 1, sizeof *d->f->nifti);
	if (!d->f->nifti)
		return nnp_err(NNP_ENOMEM, "out of memory");
	d->f->n_nifti = v->via.array.size;
	for (uint32_t i = 0; i < v->via.array.size; i++)
		if (dec_nifti_one(d, &v->via.array.ptr[i], &d->f->nifti[i]))
			return NNP_EDATA;
	return NNP_OK;
}

static int dec_scale(struct dec *d, const msgpack_object *v)
{
	if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > NNP_CHANNELS_MAX)
		return bad(d, "'scale' must be one [slope, inter] per channel");
	free(d->f->scale);
	d->f->scale = calloc(2 * (size_t)v->via.array.size + 2, sizeof(double));
	if (!d->f->scale)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < v->via.array.size; i++)
		if (!dec_numbers(&v->via.array.ptr[i], &d->f->scale[2 * i], 2))
			return bad(d, "'scale' must be one [slope, inter] per channel");
	return (int)v->via.array.size == 0 ? bad(d, "'scale' is empty") : NNP_OK;
}

static int dec_field(struct dec *d, const msgpack_object *k, const msgpack_object *v,
		     uint32_t *nscale)
{
	struct nnp_frame *f = d->f;
	char buf[64];
	int64_t n = 0;
	if (key_is(k, "v"))
		return dec_version(d, v);
	if (key_is(k, "role"))
		return obj_strcpy(v, f->role, sizeof f->role) ? NNP_OK : bad(d, "'role' must be a short string");
	if (key_is(k, "case")) {
		if (v->type == MSGPACK_OBJECT_NIL)
			return NNP_OK;
		if (v->type != MSGPACK_OBJECT_STR || v->via.str.size > 4096)
			return bad(d, "'case' must be a string");
		free(f->case_id);
		f->case_id = strndup(v->via.str.ptr, v->via.str.size);
		return f->case_id ? NNP_OK : nnp_err(NNP_ENOMEM, "out of memory");
	}
	if (key_is(k, "dtype")) {
		if (!obj_strcpy(v, buf, sizeof buf) || !(f->dtype = nnp_dtype_parse(buf, &d->swap)))
			return bad(d, "unknown 'dtype'");
		return NNP_OK;
	}
	if (key_is(k, "shape"))
		return dec_shape(d, v);
	if (key_is(k, "spacing"))
		return dec_numbers(v, f->spacing, 3) ? NNP_OK : bad(d, "'spacing' must be 3 numbers");
	if (key_is(k, "affine"))
		return dec_affine(d, v);
	if (key_is(k, "layout"))
		return obj_strcpy(v, buf, sizeof buf) && !strcmp(buf, "czyx") ? NNP_OK
			: bad(d, "unsupported 'layout' (only \"czyx\")");
	if (key_is(k, "chunk"))
		return obj_int(v, &f->chunk_slices) && f->chunk_slices > 0 ? NNP_OK
			: bad(d, "'chunk' must be a positive integer");
	if (key_is(k, "nchunks")) {
		d->have_nchunks = obj_int(v, &d->nchunks);
		return d->have_nchunks ? NNP_OK : bad(d, "'nchunks' must be an integer");
	}
	if (key_is(k, "nbytes")) {
		d->have_nbytes = obj_int(v, &n) && n >= 0;
		d->nbytes = (uint64_t)n;
		return d->have_nbytes ? NNP_OK : bad(d, "'nbytes' must be a non-negative integer");
	}
	if (key_is(k, "codec"))
		return obj_strcpy(v, buf, sizeof buf) && !strcmp(buf, "raw") ? NNP_OK
			: bad(d, "unsupported 'codec' (this build reads \"raw\")");
	if (key_is(k, "scale")) {
		*nscale = v->type == MSGPACK_OBJECT_ARRAY ? v->via.array.size : 0;
		return dec_scale(d, v);
	}
	if (key_is(k, "nifti"))
		return dec_nifti(d, v);
	if (key_is(k, "props")) {
		if (f->props)
			return bad(d, "duplicate key 'props'");
		if (v->type != MSGPACK_OBJECT_MAP || !(f->props = obj_to_json(v, 0)))
			return bad(d, "'props' must be a map of JSON-representable values");
		return NNP_OK;
	}
	return NNP_OK; /* unknown keys are ignored */
}

static int dec_check(struct dec *d, uint32_t nscale)
{
	struct nnp_frame *f = d->f;
	int rc;
	if (!d->have_version)
		return bad(d, "missing format version 'v'");
	if (!f->dtype)
		return bad(d, "missing 'dtype'");
	if (!f->shape[0])
		return bad(d, "missing 'shape'");
	if (f->chunk_slices <= 0 || !d->have_nchunks || !d->have_nbytes)
		return bad(d, "missing 'chunk', 'nchunks' or 'nbytes'");
	rc = nnp_frame_validate(f);
	if (rc)
		return nnp_err_ctx(rc, "'%s'", d->name);
	if (d->nbytes != nnp_frame_nbytes(f))
		return nnp_err(NNP_EDATA, "'%s': case '%s': wrong byte count: header says %llu bytes, "
			       "shape and dtype give %llu", d->name, case_or(f),
			       (unsigned long long)d->nbytes, (unsigned long long)nnp_frame_nbytes(f));
	if (d->nchunks != nnp_frame_nchunks(f))
		return bad(d, "'nchunks' does not match 'shape' and 'chunk'");
	if (f->scale && nscale != (uint32_t)f->shape[0])
		return bad(d, "'scale' must have one entry per channel");
	return NNP_OK;
}

static int decode_header(const char *name, const msgpack_object *o, struct nnp_frame *f, int *swap)
{
	struct dec d = { name, f, 0, 0, 0, 0, 0, 0 };
	int magic = 0;
	uint32_t nscale = 0;
	if (o->type != MSGPACK_OBJECT_MAP)
		return nnp_err(NNP_EDATA, "'%s': not an nnp frame stream (a frame header must be a map)", name);
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
		if (key_is(k, "nnp")) {
			char buf[16];
			magic = obj_strcpy(v, buf, sizeof buf) && !strcmp(buf, "frame");
			continue;
		}
		if (key_is(k, "case")) {
			int rc = dec_field(&d, k, v, &nscale);
			if (rc)
				return rc;
		}
	}
	if (!magic)
		return nnp_err(NNP_EDATA, "'%s': not an nnp frame stream (header map has no \"nnp\": \"frame\")",
			       name);
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		if (key_is(k, "case") || key_is(k, "nnp"))
			continue;
		int rc = dec_field(&d, k, &o->via.map.ptr[i].val, &nscale);
		if (rc)
			return rc;
	}
	*swap = d.swap;
	return dec_check(&d, nscale);
}

/* ------------------------------------------------------------------ */
/* reader                                                              */

#define RBUF (1 << 16)

struct nnp_reader {
	int fd;
	const unsigned char *mem;
	size_t memlen, mempos;
	char name[PATH_MAX];
	unsigned char buf[RBUF];
	size_t pos, len;
	uint64_t offset;        /* stream offset of buf[pos] */
	int owns_fd;
	/* header scratch */
	unsigned char *hdr;
	size_t hdrlen, hdrcap;
	/* current frame */
	int in_frame, swap;
	struct nnp_frame cur;   /* shape/dtype/chunking copy (no owned fields) */
	char cur_case[256];
	int64_t next_chunk, nchunks;
	int zero_copy;          /* splice allowed (NNP_ZERO_COPY != 0) */
};

/* Larger pipe buffers cut context switches between the filters of a
 * pipeline (1 MiB is the unprivileged maximum on Linux by default). */
static void grow_pipe(int fd)
{
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
		(void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

int nnp_zero_copy_enabled(void)
{
	const char *e = getenv("NNP_ZERO_COPY");
	return !(e && !strcmp(e, "0"));
}

struct nnp_reader *nnp_reader_fd(int fd, const char *name)
{
	struct nnp_reader *r = calloc(1, sizeof *r);
	if (!r) {
		nnp_err(NNP_ENOMEM, "out of memory");
		return NULL;
	}
	r->zero_copy = nnp_zero_copy_enabled();
	r->fd = fd;
	grow_pipe(fd);
	snprintf(r->name, sizeof r->name, "%s", name ? name : "<stdin>");
	return r;
}

struct nnp_reader *nnp_reader_mem(const void *buf, size_t len, const char *name)
{
	struct nnp_reader *r = nnp_reader_fd(-1, name ? name : "<memory>");
	if (r) {
		r->mem = buf;
		r->memlen = len;
	}
	return r;
}

struct nnp_reader *nnp_reader_open(const char *path)
{
	int fd;
	struct nnp_reader *r;
	if (!strcmp(path, "-"))
		return nnp_reader_fd(0, "<stdin>");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		nnp_err(NNP_EDATA, "cannot open '%s': %s", path, strerror(errno));
		return NULL;
	}
	r = nnp_reader_fd(fd, path);
	if (r)
		r->owns_fd = 1;
	else
		close(fd);
	return r;
}

void nnp_reader_free(struct nnp_reader *r)
{
	if (!r)
		return;
	if (r->owns_fd)
		close(r->fd);
	free(r->hdr);
	free(r);
}

const char *nnp_reader_name(const struct nnp_reader *r) { return r->name; }
uint64_t nnp_reader_offset(const struct nnp_reader *r) { return r->offset; }

/* Raw read of up to n bytes; returns bytes read (0 at EOF) or -1. */
static ssize_t raw_read(struct nnp_reader *r, void *dst, size_t n)
{
	if (r->mem) {
		size_t k = r->memlen - r->mempos < n ? r->memlen - r->mempos : n;
		memcpy(dst, r->mem + r->mempos, k);
		r->mempos += k;
		return (ssize_t)k;
	}
	for (;;) {
		ssize_t k = read(r->fd, dst, n);
		if (k >= 0 || errno != EINTR)
			return k;
	}
}

static int io_error(struct nnp_reader *r)
{
	return nnp_err(NNP_EDATA, "'%s': read error at byte %llu: %s", r->name,
		       (unsigned long long)r->offset, strerror(errno));
}

/* Ensure at least one buffered byte: 1 ok, 0 EOF, <0 error. */
static int fill(struct nnp_reader *r)
{
	ssize_t k;
	if (r->pos < r->len)
		return 1;
	r->pos = r->len = 0;
	k = raw_read(r, r->buf, sizeof r->buf);
	if (k < 0)
		return io_error(r);
	r->len = (size_t)k;
	return k > 0;
}

/* Read exactly n bytes into dst (large reads bypass the buffer).
 * Returns bytes obtained (< n at EOF) or <0. */
static int64_t read_exact(struct nnp_reader *r, void *dst, size_t n)
{
	unsigned char *d = dst;
	size_t got = 0, k = r->len - r->pos < n ? r->len - r->pos : n;
	memcpy(d, r->buf + r->pos, k);
	r->pos += k;
	r->offset += k;
	got = k;
	while (got < n) {
		if (n - got < sizeof r->buf / 2) {
			int f = fill(r);
			if (f < 0)
				return f;
			if (f == 0)
				break;
			k = r->len - r->pos < n - got ? r->len - r->pos : n - got;
			memcpy(d + got, r->buf + r->pos, k);
			r->pos += k;
		} else {
			ssize_t m = raw_read(r, d + got, n - got);
			if (m < 0)
				return io_error(r);
			if (m == 0)
				break;
			k = (size_t)m;
		}
		got += k;
		r->offset += k;
	}
	return (int64_t)got;
}

static int hdr_append(struct nnp_reader *r, const unsigned char *p, size_t n)
{
	if (r->hdrlen + n > NNP_HEADER_MAX)
		return nnp_err(NNP_EDATA, "'%s': frame header at byte %llu is too large (over the %zu-byte cap)",
			       r->name, (unsigned long long)(r->offset - r->hdrlen), NNP_HEADER_MAX);
	if (r->hdrlen + n > r->hdrcap) {
		size_t cap = r->hdrcap ? r->hdrcap : 4096;
		unsigned char *nb;
		while (cap < r->hdrlen + n)
			cap *= 2;
		if (cap > NNP_HEADER_MAX)
			cap = NNP_HEADER_MAX;
		nb = realloc(r->hdr, cap);
		if (!nb)
			return nnp_err(NNP_ENOMEM, "out of memory reading a frame header");
		r->hdr = nb;
		r->hdrcap = cap;
	}
	memcpy(r->hdr + r->hdrlen, p, n);
	r->hdrlen += n;
	return NNP_OK;
}

static int truncated(struct nnp_reader *r, const char *where)
{
	return nnp_err(NNP_EDATA, "'%s': truncated stream at byte %llu (%s)", r->name,
		       (unsigned long long)r->offset, where);
}

/* Copy n stream bytes into the header scratch. */
static int hdr_take(struct nnp_reader *r, size_t n)
{
	unsigned char tmp[4096];
	while (n > 0) {
		size_t k = n < sizeof tmp ? n : sizeof tmp;
		int64_t got;
		if (r->hdrlen + k > NNP_HEADER_MAX)
			return hdr_append(r, tmp, k); /* reports the cap */
		got = read_exact(r, tmp, k);
		if (got < 0)
			return (int)got;
		if ((size_t)got < k)
			return truncated(r, "inside a frame header");
		if (hdr_append(r, tmp, k))
			return NNP_EDATA;
		n -= k;
	}
	return NNP_OK;
}

static uint64_t be_uint(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Sizes of one msgpack item from its first byte: lenbytes = bytes of a
 * length field, fixed = fixed payload bytes, items = child objects (or
 * per-length multiplier when lenbytes > 0 and mult > 0). */
struct mpk_kind {
	int lenbytes, fixed, mult, payload, ext;
	uint64_t items;
};

static int classify(unsigned b, struct mpk_kind *k)
{
	memset(k, 0, sizeof *k);
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return 1;
	if (b >= 0x80 && b <= 0x8f) { k->items = 2u * (b & 0xf); return 1; }
	if (b >= 0x90 && b <= 0x9f) { k->items = b & 0xf; return 1; }
	if (b >= 0xa0 && b <= 0xbf) { k->fixed = (int)(b & 0x1f); return 1; }
	switch (b) {
	case 0xc4: k->lenbytes = 1; k->payload = 1; return 1;
	case 0xc5: k->lenbytes = 2; k->payload = 1; return 1;
	case 0xc6: k->lenbytes = 4; k->payload = 1; return 1;
	case 0xc7: k->lenbytes = 1; k->payload = 1; k->ext = 1; return 1;
	case 0xc8: k->lenbytes = 2; k->payload = 1; k->ext = 1; return 1;
	case 0xc9: k->lenbytes = 4; k->payload = 1; k->ext = 1; return 1;
	case 0xca: k->fixed = 4; return 1;
	case 0xcb: k->fixed = 8; return 1;
	case 0xcc: case 0xd0: k->fixed = 1; return 1;
	case 0xcd: case 0xd1: k->fixed = 2; return 1;
	case 0xce: case 0xd2: k->fixed = 4; return 1;
	case 0xcf: case 0xd3: k->fixed = 8; return 1;
	case 0xd4: k->fixed = 2; return 1;
	case 0xd5: k->fixed = 3; return 1;
	case 0xd6: k->fixed = 5; return 1;
	case 0xd7: k->fixed = 9; return 1;
	case 0xd8: k->fixed = 17; return 1;
	case 0xd9: k->lenbytes = 1; k->payload = 1; return 1;
	case 0xda: k->lenbytes = 2; k->payload = 1; return 1;
	case 0xdb: k->lenbytes = 4; k->payload = 1; return 1;
	case 0xdc: k->lenbytes = 2; k->mult = 1; return 1;
	case 0xdd: k->lenbytes = 4; k->mult = 1; return 1;
	case 0xde: k->lenbytes = 2; k->mult = 2; return 1;
	case 0xdf: k->lenbytes = 4; k->mult = 2; return 1;
	default: return 0; /* 0xc1 never used */
	}
}

/* Copy one complete msgpack object (the frame header) into r->hdr. */
static int scan_object(struct nnp_reader *r)
{
	uint64_t pending = 1;
	r->hdrlen = 0;
	while (pending > 0) {
		struct mpk_kind k;
		unsigned char b;
		uint64_t len = 0;
		int rc = hdr_take(r, 1);
		if (rc)
			return rc;
		b = r->hdr[r->hdrlen - 1];
		if (!classify(b, &k))
			return nnp_err(NNP_EDATA, "'%s': corrupt stream at byte %llu (invalid msgpack byte 0x%02x)",
				       r->name, (unsigned long long)(r->offset - 1), b);
		if (k.lenbytes) {
			if ((rc = hdr_take(r, (size_t)k.lenbytes)))
				return rc;
			len = be_uint(r->hdr + r->hdrlen - k.lenbytes, k.lenbytes);
		}
		if (k.payload) {
			if (len > NNP_HEADER_MAX)
				return hdr_append(r, NULL, NNP_HEADER_MAX + 1);
			if ((rc = hdr_take(r, (size_t)len + (size_t)k.ext)))
				return rc;
		} else if (k.fixed && (rc = hdr_take(r, (size_t)k.fixed))) {
			return rc;
		}
		if (k.mult)
			k.items = len * (uint64_t)k.mult;
		pending += k.items;
		pending -= 1;
		if (pending > NNP_HEADER_MAX)
			return nnp_err(NNP_EDATA, "'%s': frame header at byte %llu is too large (over the %zu-byte cap)",
				       r->name, (unsigned long long)r->offset, NNP_HEADER_MAX);
	}
	return NNP_OK;
}

static int start_header(struct nnp_reader *r)
{
	unsigned b;
	int f = fill(r);
	if (f <= 0)
		return f;   /* clean end of stream or error */
	b = r->buf[r->pos];
	if (!((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf))
		return nnp_err(NNP_EDATA, "'%s': not an nnp frame stream (byte %llu: expected a header map, "
			       "found msgpack type 0x%02x)", r->name, (unsigned long long)r->offset, b);
	return 1;
}

int nnp_reader_next(struct nnp_reader *r, struct nnp_frame *f)
{
	msgpack_unpacked up;
	size_t off = 0;
	int rc;

	nnp_frame_init(f);
	if (r->in_frame && (rc = nnp_reader_skip(r)))
		return rc;
	rc = start_header(r);
	if (rc <= 0)
		return rc;
	if ((rc = scan_object(r)))
		return rc;
	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, (const char *)r->hdr, r->hdrlen, &off) != MSGPACK_UNPACK_SUCCESS) {
		msgpack_unpacked_destroy(&up);
		return nnp_err(NNP_EDATA, "'%s': corrupt frame header ending at byte %llu", r->name,
			       (unsigned long long)r->offset);
	}
	rc = decode_header(r->name, &up.data, f, &r->swap);
	msgpack_unpacked_destroy(&up);
	if (rc) {
		nnp_frame_release(f);
		return rc;
	}
	r->cur = *f;
	r->cur.case_id = NULL;
	r->cur.scale = NULL;
	r->cur.nifti = NULL;
	r->cur.n_nifti = 0;
	r->cur.props = NULL;
	snprintf(r->cur_case, sizeof r->cur_case, "%s", case_or(f));
	r->next_chunk = 0;
	r->nchunks = nnp_frame_nchunks(f);
	r->in_frame = 1;
	return 1;
}

uint64_t nnp_reader_chunk_bytes(const struct nnp_reader *r)
{
	int64_t k = r->cur.chunk_slices < r->cur.shape[1] ? r->cur.chunk_slices : r->cur.shape[1];
	return (uint64_t)k * nnp_frame_slice_bytes(&r->cur);
}

/* Read a bin header; check its length against the expected chunk size. */
static int chunk_header(struct nnp_reader *r, int64_t *z0, int64_t *zs, uint64_t *nbytes)
{
	unsigned char h[5];
	int64_t got;
	uint64_t len, want;
	int lb;
	*z0 = r->next_chunk * r->cur.chunk_slices;
	*zs = r->cur.shape[1] - *z0 < r->cur.chunk_slices ? r->cur.shape[1] - *z0 : r->cur.chunk_slices;
	want = (uint64_t)*zs * nnp_frame_slice_bytes(&r->cur);
	got = read_exact(r, h, 1);
	if (got < 0)
		return (int)got;
	if (got < 1)
		goto trunc;
	lb = h[0] == 0xc4 ? 1 : h[0] == 0xc5 ? 2 : h[0] == 0xc6 ? 4 : 0;
	if (!lb)
		return nnp_err(NNP_EDATA, "'%s': case '%s': corrupt stream at byte %llu: chunk %lld of %lld "
			       "is not a msgpack bin (type 0x%02x)", r->name, r->cur_case,
			       (unsigned long long)(r->offset - 1), (long long)r->next_chunk + 1,
			       (long long)r->nchunks, h[0]);
	got = read_exact(r, h + 1, (size_t)lb);
	if (got < 0)
		return (int)got;
	if (got < lb)
		goto trunc;
	len = be_uint(h + 1, lb);
	if (len != want)
		return nnp_err(NNP_EDATA, "'%s': case '%s': wrong byte count in chunk %lld of %lld: %llu bytes, "
			       "expected %llu", r->name, r->cur_case, (long long)r->next_chunk + 1,
			       (long long)r->nchunks, (unsigned long long)len, (unsigned long long)want);
	*nbytes = len;
	return NNP_OK;
trunc:
	return nnp_err(NNP_EDATA, "'%s': case '%s': truncated stream at byte %llu (chunk %lld of %lld missing)",
		       r->name, r->cur_case, (unsigned long long)r->offset, (long long)r->next_chunk + 1,
		       (long long)r->nchunks);
}

static int read_payload(struct nnp_reader *r, void *dst, size_t n)
{
	int64_t got = read_exact(r, dst, n);
	if (got < 0)
		return (int)got;
	if ((size_t)got < n)
		return nnp_err(NNP_EDATA, "'%s': case '%s': truncated stream at byte %llu (inside chunk %lld of %lld)",
			       r->name, r->cur_case, (unsigned long long)r->offset,
			       (long long)r->next_chunk + 1, (long long)r->nchunks);
	if (r->swap)
		nnp_swap_bytes(dst, n / nnp_dtype_size(r->cur.dtype), nnp_dtype_size(r->cur.dtype));
	return NNP_OK;
}

static void chunk_done(struct nnp_reader *r)
{
	if (++r->next_chunk >= r->nchunks)
		r->in_frame = 0;
}

int nnp_reader_chunk(struct nnp_reader *r, void *dst, size_t cap, int64_t *z0, int64_t *zs)
{
	uint64_t n = 0;
	int rc;
	if (!r->in_frame)
		return 0;
	if ((rc = chunk_header(r, z0, zs, &n)))
		return rc;
	if (n > cap)
		return nnp_err(NNP_EINTERNAL, "chunk buffer too small (%zu < %llu)", cap, (unsigned long long)n);
	if ((rc = read_payload(r, dst, (size_t)n)))
		return rc;
	chunk_done(r);
	return 1;
}

int nnp_reader_chunk_into(struct nnp_reader *r, struct nnp_vol *v)
{
	int64_t z0, zs;
	uint64_t n = 0, es = nnp_dtype_size(r->cur.dtype);
	uint64_t plane = (uint64_t)r->cur.shape[2] * (uint64_t)r->cur.shape[3] * es;
	int rc;
	if (!r->in_frame)
		return 0;
	if ((rc = chunk_header(r, &z0, &zs, &n)))
		return rc;
	for (int64_t c = 0; c < r->cur.shape[0]; c++) {
		unsigned char *dst = (unsigned char *)v->data +
				     ((uint64_t)c * (uint64_t)r->cur.shape[1] + (uint64_t)z0) * plane;
		if ((rc = read_payload(r, dst, (size_t)((uint64_t)zs * plane))))
			return rc;
	}
	chunk_done(r);
	return 1;
}

int nnp_reader_index(struct nnp_reader *r, uint64_t *offsets)
{
	for (int64_t k = 0; r->in_frame; k++) {
		int64_t z0, zs;
		uint64_t n = 0, inbuf;
		int rc = chunk_header(r, &z0, &zs, &n);
		if (rc)
			return rc;
		offsets[k] = r->offset;
		inbuf = r->len - r->pos;
		if (n <= inbuf) {
			r->pos += (size_t)n;
		} else {
			if (r->mem) {
				if (r->mempos + (n - inbuf) > r->memlen)
					return truncated(r, "inside a chunk");
				r->mempos += (size_t)(n - inbuf);
			} else if (lseek(r->fd, (off_t)(r->offset + n), SEEK_SET) < 0) {
				return nnp_err(NNP_EDATA, "'%s': cannot seek: %s", r->name, strerror(errno));
			}
			r->pos = r->len = 0;
		}
		r->offset += n;
		chunk_done(r);
	}
	return NNP_OK;
}

int nnp_reader_swaps(const struct nnp_reader *r)
{
	return r->swap;
}

/* Move n bytes from the reader's fd to dst: splice when possible. */
static int move_bytes(struct nnp_reader *r, int dst, const char *dname, uint64_t n)
{
	static const size_t step = 1 << 20;
	char *tmp = NULL;
	int can_splice = r->mem == NULL && r->zero_copy;
	while (n > 0) {
		size_t want = n < step ? (size_t)n : step;
		ssize_t k = -1;
		if (can_splice) {
			k = splice(r->fd, NULL, dst, NULL, want, SPLICE_F_MOVE | SPLICE_F_MORE);
			if (k < 0 && (errno == EINVAL || errno == ESPIPE || errno == ENOSYS)) {
				can_splice = 0;
				continue;
			}
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return nnp_err(NNP_EIO, "cannot write '%s': %s", dname, strerror(errno));
		} else {
			if (!tmp && !(tmp = malloc(step)))
				return nnp_err(NNP_ENOMEM, "out of memory");
			k = raw_read(r, tmp, want);
			if (k < 0) {
				free(tmp);
				return io_error(r);
			}
			if (k > 0 && nnp_write_all(dst, tmp, (size_t)k, dname)) {
				free(tmp);
				return NNP_EIO;
			}
		}
		if (k == 0) {
			free(tmp);
			return nnp_err(NNP_EDATA, "'%s': case '%s': truncated stream at byte %llu (inside chunk "
				       "%lld of %lld)", r->name, r->cur_case, (unsigned long long)r->offset,
				       (long long)r->next_chunk + 1, (long long)r->nchunks);
		}
		n -= (uint64_t)k;
		r->offset += (uint64_t)k;
	}
	free(tmp);
	return NNP_OK;
}

int nnp_reader_chunk_fd(struct nnp_reader *r, int dst_fd, const char *dst_name, uint64_t *nbytes)
{
	int64_t z0, zs;
	uint64_t n = 0, k;
	int rc;
	if (!r->in_frame)
		return 0;
	if (r->swap)
		return nnp_err(NNP_EINTERNAL, "zero-copy read of a byte-swapped payload");
	if ((rc = chunk_header(r, &z0, &zs, &n)))
		return rc;
	k = r->len - r->pos < n ? r->len - r->pos : n;
	if (k && (rc = nnp_write_all(dst_fd, r->buf + r->pos, (size_t)k, dst_name)))
		return rc;
	r->pos += (size_t)k;
	r->offset += k;
	if ((rc = move_bytes(r, dst_fd, dst_name, n - k)))
		return rc;
	*nbytes = n;
	chunk_done(r);
	return 1;
}

int nnp_reader_skip(struct nnp_reader *r)
{
	unsigned char tmp[1 << 15];
	while (r->in_frame) {
		int64_t z0, zs;
		uint64_t n = 0;
		int rc = chunk_header(r, &z0, &zs, &n);
		if (rc)
			return rc;
		while (n > 0) {
			size_t k = n < sizeof tmp ? (size_t)n : sizeof tmp;
			int64_t got = read_exact(r, tmp, k);
			if (got < 0)
				return (int)got;
			if ((size_t)got < k)
				return truncated(r, "inside a chunk");
			n -= k;
		}
		chunk_done(r);
	}
	return NNP_OK;
}

int nnp_reader_payload(struct nnp_reader *r, struct nnp_vol *v)
{
	int rc = nnp_vol_alloc(v);
	if (rc)
		return rc;
	while ((rc = nnp_reader_chunk_into(r, v)) == 1)
		;
	return rc;
}

int nnp_reader_volume(struct nnp_reader *r, struct nnp_vol *v)
{
	int rc;
	nnp_vol_init(v);
	rc = nnp_reader_next(r, &v->f);
	if (rc <= 0)
		return rc;
	if ((rc = nnp_vol_alloc(v)))
		goto fail;
	while ((rc = nnp_reader_chunk_into(r, v)) == 1)
		;
	if (rc == 0)
		return 1;
fail:
	nnp_vol_release(v);
	return rc;
}

/* ------------------------------------------------------------------ */
/* writer                                                              */

struct nnp_writer {
	int fd;
	char name[PATH_MAX];
	int in_frame;
	struct nnp_frame cur;
	int64_t next_z;
	int zero_copy;
};

struct nnp_writer *nnp_writer_fd(int fd, const char *name)
{
	struct nnp_writer *w = calloc(1, sizeof *w);
	if (!w) {
		nnp_err(NNP_ENOMEM, "out of memory");
		return NULL;
	}
	w->fd = fd;
	w->zero_copy = nnp_zero_copy_enabled();
	grow_pipe(fd);
	snprintf(w->name, sizeof w->name, "%s", name ? name : "<stdout>");
	return w;
}

void nnp_writer_free(struct nnp_writer *w)
{
	free(w);
}

int nnp_writer_flush(struct nnp_writer *w)
{
	(void)w;
	return NNP_OK; /* unbuffered: every call writes through */
}

static int writev_all(struct nnp_writer *w, struct iovec *iov, int n)
{
	while (n > 0) {
		int batch = n > 512 ? 512 : n;
		ssize_t k = writev(w->fd, iov, batch);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return nnp_err(NNP_EIO, "cannot write '%s': %s", w->name, strerror(errno));
		}
		while (n > 0 && (size_t)k >= iov->iov_len) {
			k -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0 && k > 0) {
			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= (size_t)k;
		}
	}
	return NNP_OK;
}

int nnp_writer_begin(struct nnp_writer *w, struct nnp_frame *f)
{
	unsigned char *buf;
	size_t len;
	int rc;
	if (w->in_frame)
		return nnp_err(NNP_EINTERNAL, "frame started before the previous one was complete");
	if ((rc = nnp_frame_validate(f)))
		return rc;
	if ((rc = nnp_frame_encode_header(f, &buf, &len)))
		return rc;
	rc = nnp_write_all(w->fd, buf, len, w->name);
	free(buf);
	if (rc)
		return rc;
	w->cur = *f;
	w->next_z = 0;
	w->in_frame = 1;
	return NNP_OK;
}

static int chunk_slabs(struct nnp_writer *w, int64_t zs, unsigned char *h)
{
	int64_t want = w->cur.shape[1] - w->next_z < w->cur.chunk_slices ? w->cur.shape[1] - w->next_z
									     : w->cur.chunk_slices;
	uint64_t n = 0;
	if (!w->in_frame)
		return nnp_err(NNP_EINTERNAL, "chunk written outside a frame");
	if (zs != want)
		return nnp_err(NNP_EINTERNAL, "chunk of %lld slices where %lld are due", (long long)zs,
			       (long long)want);
	n = (uint64_t)zs * nnp_frame_slice_bytes(&w->cur);
	h[0] = 0xc6;
	h[1] = (unsigned char)(n >> 24);
	h[2] = (unsigned char)(n >> 16);
	h[3] = (unsigned char)(n >> 8);
	h[4] = (unsigned char)n;
	return NNP_OK;
}

static void chunk_written(struct nnp_writer *w, int64_t zs)
{
	w->next_z += zs;
	if (w->next_z >= w->cur.shape[1])
		w->in_frame = 0;
}

int nnp_writer_chunk(struct nnp_writer *w, const void *data, int64_t zs)
{
	unsigned char h[5];
	struct iovec iov[2];
	int rc = chunk_slabs(w, zs, h);
	if (rc)
		return rc;
	iov[0].iov_base = h;
	iov[0].iov_len = 5;
	iov[1].iov_base = (void *)data;
	iov[1].iov_len = (size_t)((uint64_t)zs * nnp_frame_slice_bytes(&w->cur));
	if ((rc = writev_all(w, iov, 2)))
		return rc;
	chunk_written(w, zs);
	return NNP_OK;
}

static int copy_segment(struct nnp_writer *w, int src, uint64_t off, uint64_t n, const char *sname)
{
	int use_sendfile = w->zero_copy;
	char *tmp = NULL;
	while (n > 0) {
		size_t want = n < (1u << 24) ? (size_t)n : (1u << 24);
		ssize_t k;
		if (use_sendfile) {
			off_t o = (off_t)off;
			k = sendfile(w->fd, src, &o, want);
			if (k < 0 && (errno == EINVAL || errno == ENOSYS)) {
				use_sendfile = 0;
				continue;
			}
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				free(tmp);
				return nnp_err(NNP_EIO, "cannot write '%s': %s", w->name, strerror(errno));
			}
		} else {
			if (!tmp && !(tmp = malloc(1 << 20)))
				return nnp_err(NNP_ENOMEM, "out of memory");
			k = pread(src, tmp, want < (1u << 20) ? want : (1u << 20), (off_t)off);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				free(tmp);
				return nnp_err(NNP_EDATA, "cannot read '%s': %s", sname, strerror(errno));
			}
			if (k > 0 && nnp_write_all(w->fd, tmp, (size_t)k, w->name)) {
				free(tmp);
				return NNP_EIO;
			}
		}
		if (k == 0) {
			free(tmp);
			return nnp_err(NNP_EDATA, "'%s': truncated: voxel data ends early", sname);
		}
		off += (uint64_t)k;
		n -= (uint64_t)k;
	}
	free(tmp);
	return NNP_OK;
}

int nnp_writer_chunk_file(struct nnp_writer *w, int src_fd, const uint64_t *offs, int64_t nseg,
			  uint64_t seglen, int64_t zs, const char *src_name)
{
	unsigned char h[5];
	int rc = chunk_slabs(w, zs, h);
	if (rc)
		return rc;
	if ((uint64_t)nseg * seglen != (uint64_t)zs * nnp_frame_slice_bytes(&w->cur))
		return nnp_err(NNP_EINTERNAL, "chunk segments do not add up");
	if ((rc = nnp_write_all(w->fd, h, 5, w->name)))
		return rc;
	for (int64_t i = 0; i < nseg; i++)
		if ((rc = copy_segment(w, src_fd, offs[i], seglen, src_name)))
			return rc;
	chunk_written(w, zs);
	return NNP_OK;
}

int nnp_writer_chunk_from(struct nnp_writer *w, const struct nnp_vol *v)
{
	unsigned char h[5];
	int64_t z0 = w->next_z;
	int64_t zs = w->cur.shape[1] - z0 < w->cur.chunk_slices ? w->cur.shape[1] - z0 : w->cur.chunk_slices;
	uint64_t plane = (uint64_t)w->cur.shape[2] * (uint64_t)w->cur.shape[3] * nnp_dtype_size(w->cur.dtype);
	int64_t nc = w->cur.shape[0];
	struct iovec *iov;
	int rc = chunk_slabs(w, zs, h);
	if (rc)
		return rc;
	iov = calloc((size_t)nc + 1, sizeof *iov);
	if (!iov)
		return nnp_err(NNP_ENOMEM, "out of memory");
	iov[0].iov_base = h;
	iov[0].iov_len = 5;
	for (int64_t c = 0; c < nc; c++) {
		iov[c + 1].iov_base = (unsigned char *)v->data + ((uint64_t)c * (uint64_t)w->cur.shape[1] +
								  (uint64_t)z0) * plane;
		iov[c + 1].iov_len = (size_t)((uint64_t)zs * plane);
	}
	rc = writev_all(w, iov, (int)nc + 1);
	free(iov);
	if (rc)
		return rc;
	chunk_written(w, zs);
	return NNP_OK;
}

int nnp_writer_volume(struct nnp_writer *w, struct nnp_vol *v)
{
	int rc = nnp_writer_begin(w, &v->f);
	while (rc == NNP_OK && w->in_frame)
		rc = nnp_writer_chunk_from(w, v);
	return rc;
}
