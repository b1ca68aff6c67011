/* dtype.h — element types of frames and volumes.
 *
 * A dtype is written in frames as a numpy-style string with explicit
 * endianness: "|u1" "|i1" "<i2" "<u2" "<i4" "<u4" "<i8" "<u8" "<f2" "<f4" "<f8"
 * (">" for big-endian).  In memory, data is always host order (little-endian
 * on every supported platform); readers swap big-endian payloads.
 */
#ifndef NNP_DTYPE_H
#define NNP_DTYPE_H

#include <stddef.h>
#include <stdint.h>

enum nnp_dtype {
	NNP_DT_NONE = 0,
	NNP_U8, NNP_I8, NNP_I16, NNP_U16, NNP_I32, NNP_U32, NNP_I64, NNP_U64,
	NNP_F16, NNP_F32, NNP_F64,
	NNP_DT_COUNT
};

size_t nnp_dtype_size(enum nnp_dtype t);          /* 0 for NNP_DT_NONE */
const char *nnp_dtype_name(enum nnp_dtype t);     /* "int16" */
const char *nnp_dtype_str(enum nnp_dtype t);      /* "<i2" (host order) */
/* Parse "<i2"/">i2"/"|u1"/"int16"; *swap set if the payload needs swapping. */
enum nnp_dtype nnp_dtype_parse(const char *s, int *swap);
int nnp_dtype_is_float(enum nnp_dtype t);
int nnp_dtype_is_signed(enum nnp_dtype t);
/* Smallest dtype that represents every value of a and b exactly. */
enum nnp_dtype nnp_dtype_promote(enum nnp_dtype a, enum nnp_dtype b);

/* Byte-swap n elements of size esize in place. */
void nnp_swap_bytes(void *data, size_t n, size_t esize);

/* Convert n elements of type t at src to double / float. */
void nnp_to_f64(enum nnp_dtype t, const void *src, double *dst, size_t n);
void nnp_to_f32(enum nnp_dtype t, const void *src, float *dst, size_t n);
/* Convert n elements between dtypes (values must be representable; used for
 * lossless promotion). */
void nnp_convert(enum nnp_dtype dt, void *dst, enum nnp_dtype st, const void *src, size_t n);

float nnp_half_to_float(uint16_t h);
uint16_t nnp_float_to_half(float f);   /* round to nearest even */
/* float64 -> float16 rounded once (nearest even), like numpy astype. */
uint16_t nnp_double_to_half(double d);

#endif
