/* dtype.c — element types, conversion, byte swapping, float16. */
#include <math.h>
#include <string.h>
#include "dtype.h"

static const struct {
	const char *name, *str;
	size_t size;
	int is_float, is_signed;
} dt[NNP_DT_COUNT] = {
	[NNP_DT_NONE] = { "none", "", 0, 0, 0 },
	[NNP_U8] = { "uint8", "|u1", 1, 0, 0 },
	[NNP_I8] = { "int8", "|i1", 1, 0, 1 },
	[NNP_I16] = { "int16", "<i2", 2, 0, 1 },
	[NNP_U16] = { "uint16", "<u2", 2, 0, 0 },
	[NNP_I32] = { "int32", "<i4", 4, 0, 1 },
	[NNP_U32] = { "uint32", "<u4", 4, 0, 0 },
	[NNP_I64] = { "int64", "<i8", 8, 0, 1 },
	[NNP_U64] = { "uint64", "<u8", 8, 0, 0 },
	[NNP_F16] = { "float16", "<f2", 2, 1, 1 },
	[NNP_F32] = { "float32", "<f4", 4, 1, 1 },
	[NNP_F64] = { "float64", "<f8", 8, 1, 1 },
};

static int valid(enum nnp_dtype t)
{
	return t > NNP_DT_NONE && t < NNP_DT_COUNT;
}

size_t nnp_dtype_size(enum nnp_dtype t) { return valid(t) ? dt[t].size : 0; }
const char *nnp_dtype_name(enum nnp_dtype t) { return valid(t) ? dt[t].name : "none"; }
const char *nnp_dtype_str(enum nnp_dtype t) { return valid(t) ? dt[t].str : ""; }
int nnp_dtype_is_float(enum nnp_dtype t) { return valid(t) && dt[t].is_float; }
int nnp_dtype_is_signed(enum nnp_dtype t) { return valid(t) && dt[t].is_signed; }

enum nnp_dtype nnp_dtype_parse(const char *s, int *swap)
{
	int sw = 0;
	if (swap)
		*swap = 0;
	if (!s)
		return NNP_DT_NONE;
	for (int t = 1; t < NNP_DT_COUNT; t++)
		if (!strcmp(s, dt[t].name))
			return (enum nnp_dtype)t;
	if (strlen(s) != 3 || (s[0] != '<' && s[0] != '>' && s[0] != '|' && s[0] != '='))
		return NNP_DT_NONE;
	if (s[0] == '>')
		sw = 1;
	for (int t = 1; t < NNP_DT_COUNT; t++) {
		if (!strcmp(s + 1, dt[t].str + 1)) {
			/* "|" only for 1-byte types; "<"/">" required for wider ones */
			if (dt[t].size > 1 && s[0] == '|')
				return NNP_DT_NONE;
			if (swap)
				*swap = sw && dt[t].size > 1;
			return (enum nnp_dtype)t;
		}
	}
	return NNP_DT_NONE;
}

static int rank_of(enum nnp_dtype t)
{
	return (int)nnp_dtype_size(t);
}

enum nnp_dtype nnp_dtype_promote(enum nnp_dtype a, enum nnp_dtype b)
{
	int fa = nnp_dtype_is_float(a), fb = nnp_dtype_is_float(b);
	int sa = nnp_dtype_is_signed(a), sb = nnp_dtype_is_signed(b);
	size_t za = nnp_dtype_size(a), zb = nnp_dtype_size(b);
	if (a == b)
		return a;
	if (fa || fb) {
		/* float32 is exact for ints up to 16 bits, float64 up to 32 bits */
		size_t need = 2;
		if (fa && fb)
			return za > zb ? a : b;
		size_t iz = fa ? zb : za, fz = fa ? za : zb;
		need = iz <= 2 ? 4 : 8;
		if (iz >= 8)
			need = 8; /* int64 in float64 may round: best available */
		if (fz > need)
			need = fz;
		return need == 4 ? NNP_F32 : NNP_F64;
	}
	if (sa == sb)
		return rank_of(a) > rank_of(b) ? a : b;
	/* mixed signedness: a signed type wider than the unsigned one */
	size_t uz = sa ? zb : za, sz = sa ? za : zb;
	size_t need = sz > uz ? sz : uz * 2;
	if (need <= 2) return NNP_I16;
	if (need <= 4) return NNP_I32;
	if (need <= 8) return NNP_I64;
	return NNP_F64;
}

void nnp_swap_bytes(void *data, size_t n, size_t esize)
{
	unsigned char *p = data;
	switch (esize) {
	case 2:
		for (size_t i = 0; i < n; i++) {
			uint16_t v;
			memcpy(&v, p + 2 * i, 2);
			v = __builtin_bswap16(v);
			memcpy(p + 2 * i, &v, 2);
		}
		break;
	case 4:
		for (size_t i = 0; i < n; i++) {
			uint32_t v;
			memcpy(&v, p + 4 * i, 4);
			v = __builtin_bswap32(v);
			memcpy(p + 4 * i, &v, 4);
		}
		break;
	case 8:
		for (size_t i = 0; i < n; i++) {
			uint64_t v;
			memcpy(&v, p + 8 * i, 8);
			v = __builtin_bswap64(v);
			memcpy(p + 8 * i, &v, 8);
		}
		break;
	default:
		break;
	}
}

/* float64 -> float16, rounded once (to nearest even), like numpy. */
uint16_t nnp_double_to_half(double d)
{
	uint64_t x, m, rem, halfway;
	uint16_t sign;
	int e, he, shift;
	uint32_t h;
	memcpy(&x, &d, 8);
	sign = (uint16_t)((x >> 48) & 0x8000);
	e = (int)((x >> 52) & 0x7ff);
	m = x & 0xfffffffffffffULL;
	if (e == 0x7ff)
		return (uint16_t)(sign | 0x7c00 | (m ? 0x200 : 0));
	he = e - 1023 + 15;
	if (he >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (he <= 0) {                       /* float16 subnormal (or zero) */
		if (he < -10)
			return sign;             /* below half the smallest subnormal */
		m |= 1ULL << 52;
		shift = 1051 - e;                /* 43..53 */
		h = (uint32_t)(m >> shift);
		rem = m & ((1ULL << shift) - 1);
		halfway = 1ULL << (shift - 1);
		h += rem + (h & 1) > halfway;    /* nearest, ties to even */
		return (uint16_t)(sign | h);
	}
	h = ((uint32_t)he << 10) | (uint32_t)(m >> 42);
	rem = m & ((1ULL << 42) - 1);
	halfway = 1ULL << 41;
	h += rem + (h & 1) > halfway;            /* a carry into the exponent is right, up to inf */
	return (uint16_t)(sign | h);
}

float nnp_half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
	float f;
	if (e == 0) {
		f = ldexpf((float)m, -24);
		return sign ? -f : f;
	}
	if (e == 31)
		bits = sign | 0x7f800000u | (m << 13);
	else
		bits = sign | ((e + 112) << 23) | (m << 13);
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t nnp_float_to_half(float f)
{
	uint32_t x, sign, mant;
	int e;
	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	e = (int)((x >> 23) & 0xff);
	mant = x & 0x7fffff;
	if (e == 255)
		return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
	e = e - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (e <= 0) {
		if (e < -10)
			return (uint16_t)sign;
		mant |= 0x800000;
		int shift = 14 - e;
		uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t half = sign | ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
		half++;
	return (uint16_t)half;
}

#define CONVERT_LOOP(T, OUT)                                   \
	do {                                                   \
		const T *s = src;                              \
		for (size_t i = 0; i < n; i++)                 \
			dst[i] = (OUT)s[i];                    \
	} while (0)

/* nnp_to_f64 and nnp_to_f32: one body, two output types. */
#define DEFINE_TO(NAME, OUT)                                                   \
	void NAME(enum nnp_dtype t, const void *src, OUT *dst, size_t n)       \
	{                                                                      \
		switch (t) {                                                   \
		case NNP_U8: CONVERT_LOOP(uint8_t, OUT); break;                \
		case NNP_I8: CONVERT_LOOP(int8_t, OUT); break;                 \
		case NNP_I16: CONVERT_LOOP(int16_t, OUT); break;               \
		case NNP_U16: CONVERT_LOOP(uint16_t, OUT); break;              \
		case NNP_I32: CONVERT_LOOP(int32_t, OUT); break;               \
		case NNP_U32: CONVERT_LOOP(uint32_t, OUT); break;              \
		case NNP_I64: CONVERT_LOOP(int64_t, OUT); break;               \
		case NNP_U64: CONVERT_LOOP(uint64_t, OUT); break;              \
		case NNP_F32: CONVERT_LOOP(float, OUT); break;                 \
		case NNP_F64: CONVERT_LOOP(double, OUT); break;                \
		case NNP_F16: {                                                \
			const uint16_t *s = src;                               \
			for (size_t i = 0; i < n; i++)                         \
				dst[i] = (OUT)nnp_half_to_float(s[i]);         \
			break;                                                 \
		}                                                              \
		default:                                                       \
			memset(dst, 0, n * sizeof *dst);                       \
		}                                                              \
	}

DEFINE_TO(nnp_to_f64, double)
DEFINE_TO(nnp_to_f32, float)

#define STORE_LOOP(T)                                           \
	do {                                                    \
		T *d = dst;                                     \
		for (size_t i = 0; i < n; i++)                  \
			d[i] = (T)src[i];                       \
	} while (0)

static void store_f64(enum nnp_dtype t, void *dst, const double *src, size_t n)
{
	switch (t) {
	case NNP_U8: STORE_LOOP(uint8_t); break;
	case NNP_I8: STORE_LOOP(int8_t); break;
	case NNP_I16: STORE_LOOP(int16_t); break;
	case NNP_U16: STORE_LOOP(uint16_t); break;
	case NNP_I32: STORE_LOOP(int32_t); break;
	case NNP_U32: STORE_LOOP(uint32_t); break;
	case NNP_I64: STORE_LOOP(int64_t); break;
	case NNP_U64: STORE_LOOP(uint64_t); break;
	case NNP_F32: STORE_LOOP(float); break;
	case NNP_F64: STORE_LOOP(double); break;
	case NNP_F16: {
		uint16_t *d = dst;
		for (size_t i = 0; i < n; i++)
			d[i] = nnp_float_to_half((float)src[i]);
		break;
	}
	default: break;
	}
}

void nnp_convert(enum nnp_dtype dtp, void *dst, enum nnp_dtype st, const void *src, size_t n)
{
	enum { BLK = 4096 };
	double tmp[BLK];
	size_t ds = nnp_dtype_size(dtp), ss = nnp_dtype_size(st);
	if (dtp == st) {
		memcpy(dst, src, n * ss);
		return;
	}
	/* Through double: exact for every promotion nnp_dtype_promote makes
	 * except 64-bit integers beyond 2^53 (documented). */
	for (size_t off = 0; off < n; off += BLK) {
		size_t m = n - off < BLK ? n - off : BLK;
		nnp_to_f64(st, (const char *)src + off * ss, tmp, m);
		store_f64(dtp, (char *)dst + off * ds, tmp, m);
	}
}
