/* rgbpng.c — RGB buffers to PNG with libpng (see rgbpng.h). */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atomic.h"
#include "err.h"
#include "rgbpng.h"

struct membuf {
	unsigned char *p;
	size_t n, cap;
	int oom;
	char msg[200];
};

static void mem_write(png_structp png, png_bytep data, size_t len)
{
	struct membuf *b = png_get_io_ptr(png);
	if (len > NNP_PNG_BYTES_MAX - b->n) {
		b->oom = 1;
		png_error(png, "the PNG would exceed the size cap");
	}
	if (b->n + len > b->cap) {
		size_t cap = b->cap ? b->cap : 1 << 16;
		unsigned char *p;
		while (cap < b->n + len)
			cap *= 2;
		if (cap > NNP_PNG_BYTES_MAX)
			cap = NNP_PNG_BYTES_MAX;
		if (!(p = realloc(b->p, cap))) {
			b->oom = 1;
			png_error(png, "out of memory");
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, data, len);
	b->n += len;
}

static void mem_flush(png_structp png)
{
	(void)png;
}

static void on_png_error(png_structp png, png_const_charp msg)
{
	struct membuf *b = png_get_error_ptr(png);
	snprintf(b->msg, sizeof b->msg, "%s", msg);
	png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

/* After setjmp: nothing here may be a non-volatile local changed later. */
static int encode(const unsigned char *rgb, int w, int h, struct membuf *b)
{
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, b, on_png_error,
						  on_png_warning);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	if (!info) {
		png_destroy_write_struct(&png, NULL);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		return nnp_err(b->oom ? NNP_ENOMEM : NNP_EINTERNAL, "cannot encode the PNG: %s",
			       b->msg);
	}
	png_set_write_fn(png, b, mem_write, mem_flush);
	png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
		     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_set_compression_level(png, 6);
	png_write_info(png, info);
	for (int y = 0; y < h; y++)
		png_write_row(png, rgb + (size_t)y * (size_t)w * 3);
	png_write_end(png, info);
	png_destroy_write_struct(&png, &info);
	return NNP_OK;
}

int nnp_png_encode_rgb(const unsigned char *rgb, int w, int h, unsigned char **png, size_t *len)
{
	struct membuf b;
	int rc;
	*png = NULL;
	*len = 0;
	if (w < 1 || h < 1 || w > NNP_PNG_EDGE_MAX || h > NNP_PNG_EDGE_MAX ||
	    (size_t)w * (size_t)h > NNP_PNG_PIXELS_MAX)
		return nnp_err(NNP_EUSAGE, "a %dx%d PNG is outside the limits (edges 1..%d, %zu pixels)",
			       w, h, NNP_PNG_EDGE_MAX, NNP_PNG_PIXELS_MAX);
	memset(&b, 0, sizeof b);
	if ((rc = encode(rgb, w, h, &b))) {
		free(b.p);
		return rc;
	}
	*png = b.p;
	*len = b.n;
	return NNP_OK;
}

int nnp_png_write_rgb(const char *path, int w, int h, const unsigned char *rgb, int force)
{
	struct nnp_atomic a;
	unsigned char *png;
	size_t n;
	int rc;
	if ((rc = nnp_png_encode_rgb(rgb, w, h, &png, &n)))
		return rc;
	if ((rc = nnp_atomic_open(&a, path, force))) {
		free(png);
		return rc;
	}
	rc = nnp_write_all(a.fd, png, n, path);
	free(png);
	if (rc) {
		nnp_atomic_abort(&a);
		return rc;
	}
	return nnp_atomic_commit(&a);
}
