/* bitfont.h — a small bitmap font for the library's plots (library-internal).
 *
 * Printable ASCII (32..126) as 5x8 cells: rows 0..6 above the baseline,
 * row 7 for descenders; drawn with an advance of NNP__GLYPH_ADV columns and
 * a line height of NNP__GLYPH_LINE rows (times the scale).  Other bytes are
 * drawn as '?'.  The table is static constant data (no state).
 */
#ifndef NNP_BITFONT_H
#define NNP_BITFONT_H

#define NNP__GLYPH_W 5
#define NNP__GLYPH_H 8
#define NNP__GLYPH_ADV 6
#define NNP__GLYPH_LINE 9

/* 1 when pixel (col, row) of character ch is set (0 <= col < 5, 0 <= row < 8). */
int nnp__glyph_pixel(int ch, int col, int row);
/* The glyph's rows as a string "r0 r1 ..." of '#'/'.' (5 each, space-separated;
 * missing trailing rows are blank), for tests. */
const char *nnp__glyph_rows(int ch);

#endif
