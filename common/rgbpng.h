/* rgbpng.h — 8-bit RGB images as PNG (libpng): encoded in memory, or
 * written to a file atomically (atomic.h).  The one PNG writer of the
 * library: progress.png (trainlog), augmentation previews and overlay
 * montages all go through it.
 *
 * Images are row-major, 3 bytes per pixel (R, G, B), no padding; non-
 * interlaced, zlib level 6, libpng's default filters.  Sizes are capped
 * (NNP_PNG_*_MAX) before anything is allocated.
 *
 * Ownership: nnp_png_encode_rgb returns a malloc'd buffer the caller
 * frees; no function takes ownership of its arguments.
 */
#ifndef NNP_RGBPNG_H
#define NNP_RGBPNG_H

#include <stddef.h>

#define NNP_PNG_EDGE_MAX 32768                  /* width or height, pixels */
#define NNP_PNG_PIXELS_MAX ((size_t)1 << 28)    /* width * height */
#define NNP_PNG_BYTES_MAX ((size_t)1 << 30)     /* the encoded file */

/* Encode w x h RGB pixels; *png (malloc'd, *len bytes) on success.
 * NNP_EUSAGE for a size outside the caps, NNP_ENOMEM. */
int nnp_png_encode_rgb(const unsigned char *rgb, int w, int h, unsigned char **png, size_t *len);
/* Encode and write to path through a temporary file renamed into place
 * (removed on failure); an existing path is NNP_EUSAGE unless force. */
int nnp_png_write_rgb(const char *path, int w, int h, const unsigned char *rgb, int force);

#endif
