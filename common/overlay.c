/* overlay.c — segmentation overlay montages (see overlay.h, docs/overlay.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bitfont.h"
#include "err.h"
#include "ingest.h"
#include "overlay.h"
#include "rgbpng.h"

#define BG_R 24
#define BG_G 24
#define BG_B 24
#define INK 0xE0
#define LABEL_CHUNK 65536

void nnp_overlay_opts_default(struct nnp_overlay_opts *o)
{
	o->axis = 0;
	o->nslices = 3;
	o->alpha = 0.6;
	o->min_panel = 256;
	o->captions = 1;
}

/* nnU-Net's overlay colour cycle (nnunetv2/utilities/overlay_plots.py)
 * without its first entry, black, which it gives to background. */
void nnp_overlay_colour(int32_t label, unsigned char rgb[3])
{
	static const unsigned char cycle[14][3] = {
		{ 0x43, 0x63, 0xd8 }, { 0xf5, 0x82, 0x31 }, { 0x3c, 0xb4, 0x4b }, { 0xe6, 0x19, 0x4b },
		{ 0x91, 0x1e, 0xb4 }, { 0xff, 0xe1, 0x19 }, { 0xbf, 0xef, 0x45 }, { 0x42, 0xd4, 0xf4 },
		{ 0xf0, 0x32, 0xe6 }, { 0x00, 0x00, 0x75 }, { 0x9a, 0x63, 0x24 }, { 0x80, 0x80, 0x00 },
		{ 0x80, 0x00, 0x00 }, { 0x46, 0x99, 0x90 },
	};
	memcpy(rgb, cycle[(label > 0 ? label - 1 : 0) % 14], 3);
}

/* ---- percentiles: quickselect on a copy of the finite values ---- */

static float select_k(float *v, size_t n, size_t k)
{
	size_t lo = 0, hi = n - 1;
	while (lo < hi) {
		float pivot = v[lo + (hi - lo) / 2];
		size_t i = lo, j = hi;
		while (i <= j) {
			while (v[i] < pivot)
				i++;
			while (v[j] > pivot)
				j--;
			if (i <= j) {
				float t = v[i];
				v[i] = v[j];
				v[j] = t;
				i++;
				if (j == 0)
					break;
				j--;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			return v[k];
	}
	return v[k];
}

/* numpy's _lerp: a + (b-a)*t, or b - (b-a)*(1-t) where t >= 0.5. */
static double np_lerp(double a, double b, double t)
{
	double d = b - a;
	return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

int nnp_overlay_percentile(const float *v, size_t n, const double *q, size_t nq, double *out)
{
	float *c = malloc((n ? n : 1) * sizeof *c);
	size_t m = 0;
	if (!c)
		return nnp_err(NNP_ENOMEM, "cannot allocate %.1f MiB for the grey window",
			       (double)n * sizeof *c / 1048576.0);
	for (size_t i = 0; i < n; i++)
		if (isfinite(v[i]))
			c[m++] = v[i];
	for (size_t k = 0; k < nq; k++) {
		double vi, prev, a, b;
		size_t i;
		if (!m) {
			out[k] = NAN;
			continue;
		}
		vi = (double)(m - 1) * (q[k] / 100.0);
		if (vi <= 0) {
			out[k] = select_k(c, m, 0);
			continue;
		}
		if (vi >= (double)(m - 1)) {
			out[k] = select_k(c, m, m - 1);
			continue;
		}
		prev = floor(vi);
		i = (size_t)prev;
		a = select_k(c, m, i);
		b = c[i + 1]; /* the smallest value after position i */
		for (size_t j = i + 2; j < m; j++)
			if (c[j] < b)
				b = c[j];
		out[k] = np_lerp(a, b, vi - prev);
	}
	free(c);
	return NNP_OK;
}

/* ---- slices ---- */

/* Array strides (elements) of z, y, x. */
static void strides_of(const int64_t shape[3], int64_t st[3])
{
	st[2] = 1;
	st[1] = shape[2];
	st[0] = shape[1] * shape[2];
}

int nnp_overlay_pick_slices(const int32_t *lab, const int64_t shape[3], int axis, int n, int64_t *out,
			    int64_t *best)
{
	int64_t ns = shape[axis], st[3], lo = -1, hi = -1, bestc = 0, *cnt;
	int rows = 0;
	*best = -1;
	if (ns < 1 || n < 1)
		return 0;
	if (!(cnt = calloc((size_t)ns, sizeof *cnt)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	strides_of(shape, st);
	for (int64_t z = 0; z < shape[0]; z++)
		for (int64_t y = 0; y < shape[1]; y++) {
			const int32_t *row = lab + z * st[0] + y * st[1];
			int64_t pos[3] = { z, y, 0 };
			if (axis == 2) {
				for (int64_t x = 0; x < shape[2]; x++)
					cnt[x] += row[x] > 0;
			} else {
				int64_t c = 0;
				for (int64_t x = 0; x < shape[2]; x++)
					c += row[x] > 0;
				cnt[pos[axis]] += c;
			}
		}
	for (int64_t s = 0; s < ns; s++) {
		if (cnt[s] > bestc) {
			bestc = cnt[s];
			*best = s;
		}
		if (cnt[s] > 0) {
			if (lo < 0)
				lo = s;
			hi = s;
		}
	}
	free(cnt);
	if (*best < 0) {
		rows = n < ns ? n : (int)ns;
		for (int i = 0; i < rows; i++)
			out[i] = (int64_t)floor((i + 0.5) * (double)ns / rows);
		return rows;
	}
	rows = hi - lo + 1 < n ? (int)(hi - lo + 1) : n;
	out[0] = *best;
	for (int k = 1; k < rows; k++) {
		double q = (k - 0.5) / (rows - 1);
		int64_t p = lo + (int64_t)floor(q * (double)(hi - lo) + 0.5), cand = p;
		for (int64_t d = 0;; d++) {
			int taken = 0;
			cand = p + d;
			if (cand <= hi) {
				for (int j = 0; j < k; j++)
					taken |= out[j] == cand;
				if (!taken)
					break;
			}
			cand = p - d;
			taken = 0;
			if (cand >= lo) {
				for (int j = 0; j < k; j++)
					taken |= out[j] == cand;
				if (!taken)
					break;
			}
		}
		out[k] = cand;
	}
	for (int i = 1; i < rows; i++)  /* ascending */
		for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
			int64_t t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return rows;
}

/* ---- geometry ---- */

void nnp_overlay_panel_size(int64_t rows, int64_t cols, double sp_rows, double sp_cols, int min_panel,
			    int *pw, int *ph)
{
	double hp = (double)rows * sp_rows, wp = (double)cols * sp_cols;
	double k = min_panel / fmin(hp, wp), kmin = 1 / fmin(sp_rows, sp_cols), w, h;
	if (kmin > k)
		k = kmin;
	if (fmax(hp, wp) * k > NNP_OVERLAY_PANEL_MAX)
		k = NNP_OVERLAY_PANEL_MAX / fmax(hp, wp);
	w = floor(wp * k + 0.5);
	h = floor(hp * k + 0.5);
	*pw = w < 1 ? 1 : w > NNP_OVERLAY_PANEL_MAX ? NNP_OVERLAY_PANEL_MAX : (int)w;
	*ph = h < 1 ? 1 : h > NNP_OVERLAY_PANEL_MAX ? NNP_OVERLAY_PANEL_MAX : (int)h;
}

/* ---- drawing ---- */

struct canvas {
	unsigned char *px;
	int w, h;
	int x0, y0, x1, y1; /* clip */
};

static void put(const struct canvas *cv, int x, int y, unsigned char v)
{
	unsigned char *p;
	if (x < cv->x0 || x >= cv->x1 || y < cv->y0 || y >= cv->y1)
		return;
	p = cv->px + ((size_t)y * (size_t)cv->w + (size_t)x) * 3;
	p[0] = p[1] = p[2] = v;
}

static int text_width(const char *s)
{
	size_t n = strlen(s);
	return n ? (int)n * NNP__GLYPH_ADV * NNP_OVERLAY_TEXT_SCALE - NNP_OVERLAY_TEXT_SCALE : 0;
}

static void text(const struct canvas *cv, int x, int y, const char *s)
{
	const int sc = NNP_OVERLAY_TEXT_SCALE;
	for (; *s; s++, x += NNP__GLYPH_ADV * sc)
		for (int r = 0; r < NNP__GLYPH_H; r++)
			for (int k = 0; k < NNP__GLYPH_W; k++)
				if (nnp__glyph_pixel((unsigned char)*s, k, r))
					for (int dy = 0; dy < sc; dy++)
						for (int dx = 0; dx < sc; dx++)
							put(cv, x + k * sc + dx, y + r * sc + dy, INK);
}

static unsigned char grey(float v, double lo, double hi)
{
	double g;
	if (!(hi > lo) || !isfinite(v))
		return 0;
	g = ((double)v - lo) / (hi - lo) * 255.0;
	if (g < 0)
		g = 0;
	if (g > 255)
		g = 255;
	return (unsigned char)floor(g + 0.5);
}

struct view {
	int axis;
	int64_t rows, cols;       /* slice size */
	int64_t st[3];
};

/* Voxel offset of (slice s, display row r, display col c). */
static int64_t voxel(const struct view *v, int64_t s, int64_t r, int64_t c)
{
	switch (v->axis) {
	case 0: return s * v->st[0] + r * v->st[1] + c;
	case 1: return (v->rows - 1 - r) * v->st[0] + s * v->st[1] + c;
	default: return (v->rows - 1 - r) * v->st[0] + c * v->st[1] + s;
	}
}

static void panel(unsigned char *rgb, int width, int x0, int y0, int pw, int ph, const struct view *v,
		  int64_t s, const float *img, const int32_t *lab, double lo, double hi, double alpha)
{
	for (int py = 0; py < ph; py++) {
		int64_t r = (int64_t)(((double)py + 0.5) * (double)v->rows / ph);
		unsigned char *out = rgb + ((size_t)(y0 + py) * (size_t)width + (size_t)x0) * 3;
		if (r >= v->rows)
			r = v->rows - 1;
		for (int px = 0; px < pw; px++, out += 3) {
			int64_t c = (int64_t)(((double)px + 0.5) * (double)v->cols / pw), at;
			unsigned char g, col[3];
			if (c >= v->cols)
				c = v->cols - 1;
			at = voxel(v, s, r, c);
			g = grey(img[at], lo, hi);
			out[0] = out[1] = out[2] = g;
			if (lab && lab[at] > 0) {
				nnp_overlay_colour(lab[at], col);
				for (int k = 0; k < 3; k++)
					out[k] = (unsigned char)floor((1 - alpha) * g + alpha * col[k] + 0.5);
			}
		}
	}
}

/* The grey window: percentiles q of the image inside the bounding box of the
 * foreground (reference, else prediction) grown by an eighth of its extent on every
 * side, so the contrast is that of the anatomy around the labels, not of the
 * air around the body; the whole volume when nothing is labelled. */
static int window(const struct nnp_overlay_input *in, const double q[2], double win[2])
{
	const int32_t *lab = in->ref ? in->ref : in->seg;
	const int64_t *n = in->shape;
	int64_t lo[3] = { n[0], n[1], n[2] }, hi[3] = { -1, -1, -1 }, m;
	size_t k = 0, nbox = 1;
	float *box;
	int rc;
	for (int64_t z = 0; z < n[0]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[2]; x++) {
				const int64_t c[3] = { z, y, x };
				if (lab[(z * n[1] + y) * n[2] + x] <= 0)
					continue;
				for (int i = 0; i < 3; i++) {
					lo[i] = c[i] < lo[i] ? c[i] : lo[i];
					hi[i] = c[i] > hi[i] ? c[i] : hi[i];
				}
			}
	if (hi[0] < 0)
		return nnp_overlay_percentile(in->image, (size_t)(n[0] * n[1] * n[2]), q, 2, win);
	for (int i = 0; i < 3; i++) {
		m = (hi[i] - lo[i] + 1) / 8;
		lo[i] = lo[i] - m < 0 ? 0 : lo[i] - m;
		hi[i] = hi[i] + m > n[i] - 1 ? n[i] - 1 : hi[i] + m;
		nbox *= (size_t)(hi[i] - lo[i] + 1);
	}
	if (!(box = malloc(nbox * sizeof *box)))
		return nnp_err(NNP_ENOMEM, "cannot allocate %.1f MiB for the grey window",
			       (double)nbox * sizeof *box / 1048576.0);
	for (int64_t z = lo[0]; z <= hi[0]; z++)
		for (int64_t y = lo[1]; y <= hi[1]; y++)
			for (int64_t x = lo[2]; x <= hi[2]; x++)
				box[k++] = in->image[(z * n[1] + y) * n[2] + x];
	rc = nnp_overlay_percentile(box, nbox, q, 2, win);
	free(box);
	return rc;
}

int nnp_overlay_render(const struct nnp_overlay_input *in, const struct nnp_overlay_opts *o,
		       unsigned char **rgb, struct nnp_overlay_layout *lay)
{
	static const char axis_name[3] = { 'z', 'y', 'x' };
	const double q[2] = { 0.5, 99.5 };
	struct view v;
	struct canvas cv;
	double win[2], sp_r, sp_c;
	int band = o->captions ? NNP_OVERLAY_BAND : 0, G = NNP_OVERLAY_GAP, rc;
	unsigned char *px;

	*rgb = NULL;
	memset(lay, 0, sizeof *lay);
	if (o->axis < 0 || o->axis > 2 || o->nslices < 1 || o->nslices > NNP_OVERLAY_SLICES_MAX ||
	    !(o->alpha >= 0 && o->alpha <= 1) || o->min_panel < 1 || o->min_panel > NNP_OVERLAY_PANEL_MAX)
		return nnp_err(NNP_EUSAGE, "bad overlay options");
	for (int i = 0; i < 3; i++)
		if (in->shape[i] < 1 || !(in->spacing[i] > 0) || !isfinite(in->spacing[i]))
			return nnp_err(NNP_EDATA, "cannot draw a volume of shape %lldx%lldx%lld, spacing %g,%g,%g",
				       (long long)in->shape[0], (long long)in->shape[1],
				       (long long)in->shape[2], in->spacing[0], in->spacing[1], in->spacing[2]);
	v.axis = o->axis;
	strides_of(in->shape, v.st);
	v.rows = in->shape[o->axis == 0 ? 1 : 0];
	v.cols = in->shape[o->axis == 2 ? 1 : 2];
	sp_r = in->spacing[o->axis == 0 ? 1 : 0];
	sp_c = in->spacing[o->axis == 2 ? 1 : 2];
	rc = nnp_overlay_pick_slices(in->ref ? in->ref : in->seg, in->shape, o->axis, o->nslices,
				     lay->slices, &lay->best);
	if (rc < 0)
		return rc;
	lay->nrows = rc;
	if ((rc = window(in, q, win)))
		return rc;
	lay->lo = win[0];
	lay->hi = win[1];
	lay->ncols = in->ref ? 3 : 2;
	nnp_overlay_panel_size(v.rows, v.cols, sp_r, sp_c, o->min_panel, &lay->panel_w, &lay->panel_h);
	lay->width = G + lay->ncols * (lay->panel_w + G);
	lay->height = G + band + lay->nrows * (band + lay->panel_h + G);
	if (lay->width > NNP_PNG_EDGE_MAX || lay->height > NNP_PNG_EDGE_MAX ||
	    (size_t)lay->width * (size_t)lay->height > NNP_PNG_PIXELS_MAX)
		return nnp_err(NNP_ENOMEM, "a %dx%d montage is too large (use fewer --slices)", lay->width,
			       lay->height);
	if (!(px = malloc((size_t)lay->width * (size_t)lay->height * 3)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < (size_t)lay->width * (size_t)lay->height; i++) {
		px[3 * i] = BG_R;
		px[3 * i + 1] = BG_G;
		px[3 * i + 2] = BG_B;
	}
	cv = (struct canvas){ px, lay->width, lay->height, 0, 0, lay->width, lay->height };
	for (int c = 0; c < lay->ncols && band; c++) {
		static const char *const titles[3] = { "image", "reference", "prediction" };
		const char *t = titles[c == 0 ? 0 : lay->ncols == 3 && c == 1 ? 1 : 2];
		int x = G + c * (lay->panel_w + G);
		struct canvas clip = cv;
		clip.x0 = x;
		clip.x1 = x + lay->panel_w;
		text(&clip, x + (lay->panel_w - text_width(t)) / 2, G + 2, t);
	}
	for (int r = 0; r < lay->nrows; r++) {
		int64_t s = lay->slices[r];
		int y = G + band + r * (band + lay->panel_h + G);
		if (band) {
			char cap[200];
			snprintf(cap, sizeof cap, "%s%s%c %lld of %lld%s", in->case_id ? in->case_id : "",
				 in->case_id ? "  " : "", axis_name[o->axis], (long long)s,
				 (long long)in->shape[o->axis], s == lay->best ? "  (most foreground)" : "");
			text(&cv, G, y + 2, cap);
		}
		y += band;
		for (int c = 0; c < lay->ncols; c++) {
			const int32_t *lab = c == 0 ? NULL : lay->ncols == 3 && c == 1 ? in->ref : in->seg;
			panel(px, lay->width, G + c * (lay->panel_w + G), y, lay->panel_w, lay->panel_h, &v, s,
			      in->image, lab, lay->lo, lay->hi, o->alpha);
		}
	}
	*rgb = px;
	return NNP_OK;
}

/* ---- files ---- */

static void release_vol(struct nnp_vol *v, int *have)
{
	if (*have)
		nnp_vol_release(v);
	*have = 0;
}

/* The labels of a whole volume as int32 (values rounded, clipped). */
static int labels_of(const struct nnp_vol *v, int32_t **out)
{
	size_t n = (size_t)nnp_frame_nvox(&v->f), es = nnp_dtype_size(v->f.dtype);
	double *tmp = malloc(LABEL_CHUNK * sizeof *tmp);
	int32_t *lab = malloc((n ? n : 1) * sizeof *lab);
	if (!tmp || !lab) {
		free(tmp);
		free(lab);
		return nnp_err(NNP_ENOMEM, "cannot allocate the label map");
	}
	for (size_t i = 0; i < n; i += LABEL_CHUNK) {
		size_t m = n - i < LABEL_CHUNK ? n - i : LABEL_CHUNK;
		nnp_to_f64(v->f.dtype, (const char *)v->data + i * es, tmp, m);
		for (size_t k = 0; k < m; k++) {
			double x = tmp[k];
			lab[i + k] = !isfinite(x) ? 0 : x > 2147483647.0 ? INT32_MAX :
				     x < -2147483648.0 ? INT32_MIN : (int32_t)lround(x);
		}
	}
	free(tmp);
	*out = lab;
	return NNP_OK;
}

/* Channel c of a volume as float, with its scl_slope/scl_inter applied. */
static int image_of(const struct nnp_vol *v, int64_t c, float **out)
{
	size_t n = (size_t)nnp_frame_nvox(&v->f), es = nnp_dtype_size(v->f.dtype);
	float *img = malloc((n ? n : 1) * sizeof *img);
	double slope = 1, inter = 0;
	if (!img)
		return nnp_err(NNP_ENOMEM, "cannot allocate the image");
	nnp_to_f32(v->f.dtype, (const char *)v->data + (size_t)c * n * es, img, n);
	if (v->f.scale && v->f.scale[2 * c] != 0 && isfinite(v->f.scale[2 * c])) {
		slope = v->f.scale[2 * c];
		inter = v->f.scale[2 * c + 1];
		for (size_t i = 0; i < n; i++)
			img[i] = (float)((double)img[i] * slope + inter);
	}
	*out = img;
	return NNP_OK;
}

static int read_labels(struct nnp_ingest *g, int32_t **out)
{
	struct nnp_vol v;
	int rc = nnp_ingest_read_volume(g, &v);
	if (rc)
		return rc;
	rc = labels_of(&v, out);
	nnp_vol_release(&v);
	return rc;
}

int nnp_overlay_files(const char *const *images, size_t nimg, int channel, const char *seg,
		      const char *ref, const char *out, const struct nnp_overlay_opts *o, int force,
		      struct nnp_overlay_layout *lay)
{
	struct nnp_ingest *gi = NULL, *gs = NULL, *gr = NULL;
	struct nnp_overlay_layout own;
	struct nnp_overlay_input in;
	struct nnp_vol vi;
	struct nnp_frame *f;
	char case_id[256];
	float *img = NULL;
	int32_t *ls = NULL, *lr = NULL;
	unsigned char *rgb = NULL;
	int rc, have_vi = 0;

	if (!lay)
		lay = &own;
	memset(lay, 0, sizeof *lay);
	nnp_case_from_path(images[0], case_id, sizeof case_id);
	if (!(rc = nnp_ingest_open(images, nimg, "image", case_id, &gi)) &&
	    !(rc = nnp_ingest_open(&seg, 1, "seg", case_id, &gs)) && ref)
		rc = nnp_ingest_open(&ref, 1, "label", case_id, &gr);
	if (rc)
		goto done;
	if ((rc = nnp_ingest_check_same_grid(gi, gs)) || (gr && (rc = nnp_ingest_check_same_grid(gi, gr))))
		goto done;
	if (nnp_ingest_frame(gs)->shape[0] != 1 || (gr && nnp_ingest_frame(gr)->shape[0] != 1)) {
		rc = nnp_err(NNP_EDATA, "'%s': a segmentation must have one channel",
			     nnp_ingest_frame(gs)->shape[0] != 1 ? seg : ref);
		goto done;
	}
	f = nnp_ingest_frame(gi);
	if (channel < 0 || channel >= f->shape[0]) {
		rc = nnp_err(NNP_EUSAGE, "--channel %d: the image has %lld channel(s)", channel,
			     (long long)f->shape[0]);
		goto done;
	}
	if ((rc = nnp_ingest_read_volume(gi, &vi)))
		goto done;
	have_vi = 1;
	if ((rc = image_of(&vi, channel, &img)))
		goto done;
	release_vol(&vi, &have_vi);
	if ((rc = read_labels(gs, &ls)) || (gr && (rc = read_labels(gr, &lr))))
		goto done;
	memset(&in, 0, sizeof in);
	for (int i = 0; i < 3; i++) {
		in.shape[i] = f->shape[i + 1];
		in.spacing[i] = f->spacing[i];
	}
	in.image = img;
	in.seg = ls;
	in.ref = lr;
	in.case_id = case_id;
	if ((rc = nnp_overlay_render(&in, o, &rgb, lay)))
		goto done;
	free(img);
	free(ls);
	free(lr);
	img = NULL;
	ls = lr = NULL;
	rc = nnp_png_write_rgb(out, lay->width, lay->height, rgb, force);
done:
	release_vol(&vi, &have_vi);
	free(rgb);
	free(img);
	free(ls);
	free(lr);
	nnp_ingest_free(gi);
	nnp_ingest_free(gs);
	nnp_ingest_free(gr);
	return rc;
}
