/* trainlog_png.c — progress.png: the three panels of nnU-Net's
 * plot_progress_png drawn into an RGB buffer with our own bitmap font
 * (bitfont.c) and encoded by rgbpng.c (see trainlog.h for the layout). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bitfont.h"
#include "err.h"
#include "rgbpng.h"
#include "trainlog.h"

#define W NNP_TRAINLOG_PNG_W
#define H NNP_TRAINLOG_PNG_H
#define LEFT NNP_TRAINLOG_PLOT_LEFT
#define RIGHT NNP_TRAINLOG_PLOT_RIGHT
#define TOP NNP_TRAINLOG_PLOT_TOP
#define BOTTOM NNP_TRAINLOG_PLOT_BOTTOM

#define C_INK 0x202020u
#define C_GRID 0xE4E4E4u
#define TEXT_SCALE 2
#define TITLE_SCALE 3
#define VALUE_LIMIT 1e300   /* larger magnitudes are plotted as gaps */

/* ---- canvas ---- */

struct canvas {
	unsigned char *px;
	int x0, y0, x1, y1;   /* clip rectangle [x0, x1) x [y0, y1) */
};

static void put(const struct canvas *cv, int x, int y, uint32_t c)
{
	unsigned char *p;
	if (x < cv->x0 || x >= cv->x1 || y < cv->y0 || y >= cv->y1)
		return;
	p = cv->px + ((size_t)y * W + (size_t)x) * 3;
	p[0] = (unsigned char)(c >> 16);
	p[1] = (unsigned char)(c >> 8);
	p[2] = (unsigned char)c;
}

/* [x0, x1) x [y0, y1) */
static void fill(const struct canvas *cv, int x0, int y0, int x1, int y1, uint32_t c)
{
	for (int y = y0; y < y1; y++)
		for (int x = x0; x < x1; x++)
			put(cv, x, y, c);
}

static int text_width(const char *s, int scale)
{
	size_t n = strlen(s);
	return n ? (int)n * NNP__GLYPH_ADV * scale - scale : 0;
}

/* Text with its top-left corner at (x, y). */
static void text(const struct canvas *cv, int x, int y, const char *s, int scale, uint32_t c)
{
	for (; *s; s++, x += NNP__GLYPH_ADV * scale)
		for (int r = 0; r < NNP__GLYPH_H; r++)
			for (int k = 0; k < NNP__GLYPH_W; k++)
				if (nnp__glyph_pixel((unsigned char)*s, k, r))
					fill(cv, x + k * scale, y + r * scale, x + (k + 1) * scale,
					     y + (r + 1) * scale, c);
}

/* Text turned 90 degrees counter-clockwise (read bottom to top); (x, y) is
 * the bottom-left corner of its first character. */
static void text_up(const struct canvas *cv, int x, int y, const char *s, int scale, uint32_t c)
{
	for (; *s; s++, y -= NNP__GLYPH_ADV * scale)
		for (int r = 0; r < NNP__GLYPH_H; r++)
			for (int k = 0; k < NNP__GLYPH_W; k++)
				if (nnp__glyph_pixel((unsigned char)*s, k, r))
					fill(cv, x + r * scale, y - (k + 1) * scale, x + (r + 1) * scale,
					     y - k * scale, c);
}

static void text_centred(const struct canvas *cv, int cx, int y, const char *s, int scale,
			 uint32_t c)
{
	text(cv, cx - text_width(s, scale) / 2, y, s, scale, c);
}

/* ---- axes ---- */

struct axis {
	double lo, hi, step;
	int pix0, dir, len;   /* lo at pix0, hi at pix0 + dir * len */
};

static int axis_pix(const struct axis *a, double v)
{
	return a->pix0 + a->dir * (int)lround((v - a->lo) / (a->hi - a->lo) * a->len);
}

static int usable(double v)
{
	return isfinite(v) && fabs(v) <= VALUE_LIMIT;
}

/* 1, 2 or 5 times a power of ten, about span / 6. */
static double nice_step(double span)
{
	double raw = span / 6, mag = pow(10, floor(log10(raw))), m = raw / mag;
	return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * mag;
}

/* The axis over [mn, mx] (found: whether any value was usable); from_zero:
 * over [0, mx] when mn >= 0. */
static void axis_fit(struct axis *a, double mn, double mx, int found, int from_zero)
{
	int zero = from_zero && found && mn >= 0;
	double span, big;
	if (zero)
		mn = 0;
	span = mx - mn;
	big = fmax(fabs(mn), fabs(mx));
	if (!found) {
		mn = 0;
		mx = 1;
	} else if (span <= 1e-12 * big || span < 1e-290) {
		double d = big > 1e-290 ? 0.1 * big : 1;   /* constant (or nearly): +-10 % */
		mn -= d;
		mx += d;
	} else {
		mn -= 0.05 * span;
		mx += 0.05 * span;
	}
	a->lo = zero ? 0 : mn;
	a->hi = mx;
	a->step = nice_step(mx - a->lo);
}

static double rec_value(const struct nnp_trainlog *log, size_t i, size_t off)
{
	double v;
	memcpy(&v, (const char *)&log->rec[i] + off, sizeof v);
	return v;
}

/* ---- panels ---- */

struct series {
	size_t off;          /* offsetof(struct nnp_trainlog_rec, field) */
	uint32_t colour;
	int dotted, right;   /* dotted line; right-hand axis */
	const char *label;
};

struct panel {
	const char *title, *ylabel, *ylabel_right;
	int from_zero, nseries;
	struct series s[4];
};

static const struct panel panels[3] = {
	{ "loss and pseudo Dice", "loss", "pseudo Dice", 0, 4, {
		{ offsetof(struct nnp_trainlog_rec, train_loss), NNP_TRAINLOG_C_TRAIN, 0, 0, "train loss" },
		{ offsetof(struct nnp_trainlog_rec, val_loss), NNP_TRAINLOG_C_VAL, 0, 0, "val loss" },
		{ offsetof(struct nnp_trainlog_rec, mean_fg_dice), NNP_TRAINLOG_C_DICE, 1, 1, "pseudo Dice" },
		{ offsetof(struct nnp_trainlog_rec, ema_fg_dice), NNP_TRAINLOG_C_EMA, 0, 1,
		  "pseudo Dice (mov. avg.)" } } },
	{ "epoch duration", "time [s]", NULL, 1, 1, {
		{ offsetof(struct nnp_trainlog_rec, epoch_time_s), NNP_TRAINLOG_C_TRAIN, 0, 0,
		  "epoch duration" } } },
	{ "learning rate", "learning rate", NULL, 0, 1, {
		{ offsetof(struct nnp_trainlog_rec, lr), NNP_TRAINLOG_C_TRAIN, 0, 0, "learning rate" } } },
};

/* The y axis of the panel's series on one side; 0 if it has none. */
static int y_axis(const struct nnp_trainlog *log, const struct panel *p, int right, int py,
		  struct axis *a)
{
	double mn = INFINITY, mx = -INFINITY;
	int any = 0, found = 0;
	for (int k = 0; k < p->nseries; k++) {
		if (p->s[k].right != right)
			continue;
		any = 1;
		for (size_t i = 0; i < log->n; i++) {
			double v = rec_value(log, i, p->s[k].off);
			if (usable(v)) {
				mn = fmin(mn, v);
				mx = fmax(mx, v);
				found = 1;
			}
		}
	}
	axis_fit(a, mn, mx, found, p->from_zero);
	a->pix0 = py + BOTTOM - 1;
	a->dir = -1;
	a->len = BOTTOM - 1 - TOP;
	return any;
}

static void x_axis(const struct nnp_trainlog *log, struct axis *a)
{
	double last = log->n ? (double)(log->n - 1) : 0, pad = fmax(0.5, 0.02 * last);
	a->lo = -pad;
	a->hi = last + pad;
	a->step = fmax(1, nice_step(a->hi - a->lo));
	a->pix0 = LEFT;
	a->dir = 1;
	a->len = RIGHT - LEFT - 1;
}

/* "1.50e-05" -> "1.50e-5", "2.0e+06" -> "2.0e6": narrower labels. */
static void compact_exponent(char *s)
{
	char *e = strchr(s, 'e'), *d;
	if (!e)
		return;
	d = e + 1;
	if (*d == '+')
		memmove(d, d + 1, strlen(d));
	else if (*d == '-')
		d++;
	while (d[0] == '0' && d[1])
		memmove(d, d + 1, strlen(d));
}

/* Tick label: fixed decimals from the step, exponent form for tiny/huge. */
static void tick_label(char *buf, size_t n, double v, const struct axis *a)
{
	double big = fmax(fabs(a->lo), fabs(a->hi));
	int d = (int)ceil(-log10(a->step) - 1e-9);
	if (fabs(v) < a->step * 1e-9)
		v = 0;
	if (d < 0)
		d = 0;
	if (v == 0 && (big >= 1e6 || d > 4))
		snprintf(buf, n, "0");
	else if (big >= 1e6 || d > 4) {
		int p = (int)(floor(log10(big)) - floor(log10(a->step)));
		snprintf(buf, n, "%.*e", p < 1 ? 1 : p > 6 ? 6 : p, v);
		compact_exponent(buf);
	} else
		snprintf(buf, n, "%.*f", d, v);
}

/* Tick values lo <= k * step <= hi (at most 40). */
static int ticks(const struct axis *a, double *t)
{
	double k0 = ceil(a->lo / a->step - 1e-9), k1 = floor(a->hi / a->step + 1e-9);
	int n = 0;
	for (double k = k0; k <= k1 && n < 40; k++)
		t[n++] = k * a->step + 0.0;   /* + 0.0: no "-0" */
	return n;
}

/* Ticks, labels (and the grid) of a y axis; returns the widest label's width. */
static int y_ticks(const struct canvas *cv, const struct axis *a, int right, int grid)
{
	double t[40];
	char lab[32];
	int n = ticks(a, t), widest = 0;
	for (int i = 0; i < n; i++) {
		int y = axis_pix(a, t[i]), w;
		if (grid)
			fill(cv, LEFT, y, RIGHT, y + 1, C_GRID);
		tick_label(lab, sizeof lab, t[i], a);
		w = text_width(lab, TEXT_SCALE);
		widest = w > widest ? w : widest;
		if (right) {
			fill(cv, RIGHT + 2, y - 1, RIGHT + 10, y + 1, C_INK);
			text(cv, RIGHT + 14, y - 7, lab, TEXT_SCALE, C_INK);
		} else {
			fill(cv, LEFT - 10, y - 1, LEFT - 2, y + 1, C_INK);
			text(cv, LEFT - 14 - w, y - 7, lab, TEXT_SCALE, C_INK);
		}
	}
	return widest;
}

static void x_ticks(const struct canvas *cv, const struct axis *a, int py)
{
	double t[40];
	char lab[32];
	int n = ticks(a, t);
	for (int i = 0; i < n; i++) {
		int x = axis_pix(a, t[i]);
		fill(cv, x, py + TOP, x + 1, py + BOTTOM, C_GRID);
		fill(cv, x - 1, py + BOTTOM + 2, x + 1, py + BOTTOM + 10, C_INK);
		snprintf(lab, sizeof lab, "%.0f", t[i]);
		text_centred(cv, x, py + BOTTOM + 14, lab, TEXT_SCALE, C_INK);
	}
	text_centred(cv, (LEFT + RIGHT) / 2, py + BOTTOM + 44, "epoch", TEXT_SCALE, C_INK);
}

static void frame(const struct canvas *cv, int py)
{
	fill(cv, LEFT - 2, py + TOP - 2, RIGHT + 2, py + TOP, C_INK);
	fill(cv, LEFT - 2, py + BOTTOM, RIGHT + 2, py + BOTTOM + 2, C_INK);
	fill(cv, LEFT - 2, py + TOP, LEFT, py + BOTTOM, C_INK);
	fill(cv, RIGHT, py + TOP, RIGHT + 2, py + BOTTOM, C_INK);
}

/* ---- lines ---- */

struct pen {
	const struct canvas *cv;
	uint32_t colour;
	int dotted;
	long run;   /* pixels drawn along the line so far (dot pattern) */
};

static void pen_dot(struct pen *p, int x, int y)
{
	if (!p->dotted || p->run % 12 < 7)
		fill(p->cv, x, y, x + 2, y + 2, p->colour);
	p->run++;
}

static void pen_line(struct pen *p, int x0, int y0, int x1, int y1)
{
	int dx = x1 - x0, dy = y1 - y0, steps = abs(dx) > abs(dy) ? abs(dx) : abs(dy);
	for (int i = 1; i <= steps; i++)
		pen_dot(p, x0 + (int)lround((double)dx * i / steps),
			y0 + (int)lround((double)dy * i / steps));
}

static void draw_series(const struct canvas *cv, const struct nnp_trainlog *log,
			const struct series *s, const struct axis *xa, const struct axis *ya)
{
	struct pen p = { cv, s->colour, s->dotted, 0 };
	int px = 0, py = 0, prev = 0;
	for (size_t i = 0; i < log->n; i++) {
		double v = rec_value(log, i, s->off);
		int x, y;
		if (!usable(v)) {
			prev = 0;
			continue;
		}
		x = axis_pix(xa, (double)i);
		y = axis_pix(ya, v);
		if (prev)
			pen_line(&p, px, py, x, y);
		else if (i + 1 < log->n && usable(rec_value(log, i + 1, s->off)))
			pen_dot(&p, x, y);
		else
			fill(cv, x - 4, y - 4, x + 4, y + 4, s->colour);
		px = x;
		py = y;
		prev = 1;
	}
}

/* Swatch and label per series, left to right above the plot. */
static void legend(const struct canvas *cv, const struct panel *p, int py)
{
	int x = LEFT, y = py + 58;
	for (int k = 0; k < p->nseries; k++) {
		struct pen pen = { cv, p->s[k].colour, p->s[k].dotted, 0 };
		pen_line(&pen, x, y + 6, x + 40, y + 6);
		text(cv, x + 50, y, p->s[k].label, TEXT_SCALE, C_INK);
		x += 50 + text_width(p->s[k].label, TEXT_SCALE) + 36;
	}
}

/* The axis title beside the tick labels (widest: their width). */
static void axis_label(const struct canvas *cv, const char *s, int right, int widest, int py)
{
	int h = NNP__GLYPH_H * TEXT_SCALE;
	int x = right ? RIGHT + 14 + widest + 16 : LEFT - 14 - widest - 16 - h;
	int y = py + (TOP + BOTTOM) / 2 + text_width(s, TEXT_SCALE) / 2;
	if (x < 4)
		x = 4;
	if (x > W - 4 - h)
		x = W - 4 - h;
	text_up(cv, x, y, s, TEXT_SCALE, C_INK);
}

static void draw_panel(struct canvas *cv, const struct nnp_trainlog *log, const struct panel *p,
		       int py)
{
	struct axis xa, ya[2];
	int has[2], widest[2] = { 0, 0 };
	x_axis(log, &xa);
	has[0] = y_axis(log, p, 0, py, &ya[0]);
	has[1] = y_axis(log, p, 1, py, &ya[1]);
	text_centred(cv, W / 2, py + 14, p->title, TITLE_SCALE, C_INK);
	legend(cv, p, py);
	x_ticks(cv, &xa, py);
	for (int side = 0; side < 2; side++)
		if (has[side])
			widest[side] = y_ticks(cv, &ya[side], side, side == 0);
	axis_label(cv, p->ylabel, 0, widest[0], py);
	if (p->ylabel_right)
		axis_label(cv, p->ylabel_right, 1, widest[1], py);
	frame(cv, py);
	cv->x0 = LEFT;
	cv->x1 = RIGHT;
	cv->y0 = py + TOP;
	cv->y1 = py + BOTTOM;
	for (int k = 0; k < p->nseries; k++)
		draw_series(cv, log, &p->s[k], &xa, &ya[p->s[k].right]);
	*cv = (struct canvas){ cv->px, 0, 0, W, H };
}

void nnp_trainlog_render(const struct nnp_trainlog *log, unsigned char *rgb)
{
	struct canvas cv = { rgb, 0, 0, W, H };
	fill(&cv, 0, 0, W, H, NNP_TRAINLOG_BG);
	for (int k = 0; k < 3; k++)
		draw_panel(&cv, log, &panels[k], k * NNP_TRAINLOG_PANEL_H);
}

/* ---- PNG ---- */

int nnp_trainlog_png_encode(const struct nnp_trainlog *log, unsigned char **png, size_t *len)
{
	unsigned char *rgb = malloc((size_t)W * H * 3);
	int rc;
	if (!rgb)
		return nnp_err(NNP_ENOMEM, "out of memory");
	nnp_trainlog_render(log, rgb);
	rc = nnp_png_encode_rgb(rgb, W, H, png, len);
	free(rgb);
	return rc;
}

int nnp_trainlog_write_png(const struct nnp_trainlog *log, const char *path, int force)
{
	unsigned char *rgb = malloc((size_t)W * H * 3);
	int rc;
	if (!rgb)
		return nnp_err(NNP_ENOMEM, "out of memory");
	nnp_trainlog_render(log, rgb);
	rc = nnp_png_write_rgb(path, W, H, rgb, force);
	free(rgb);
	return rc;
}
