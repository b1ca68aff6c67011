/* nnp-augment — nnU-Net's training augmentation (nnunet-facts §8) as a
 * stream filter over the samples of 'nnp sample' (docs/augmentation.md). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "augment.h"
#include "caseio.h"
#include "err.h"
#include "frame.h"
#include "prog.h"
#include "rgbpng.h"

static const struct nnp_proginfo info = {
	.name = "augment",
	.summary = "nnU-Net's training augmentation of image+label samples (spatial, intensity, mirror)",
	.usage = "  nnp augment [--seed S] [-j N] [--only T,...|--none] [--mask-channels C,...] [STREAM]\n"
		 "  nnp augment ... --preview N -o DIR [STREAM]",
	.options =
		"      --seed S              per-sample RNG from S, the sample's iteration and index\n"
		"                            (default 0); results do not depend on -j\n"
		"      --only T,...          run only these transforms, always (per channel and per axis\n"
		"                            too): rotation, scaling, noise, blur, brightness, contrast,\n"
		"                            lowres, gamma_inv, gamma, mirror, mask\n"
		"      --none                validation: centre crop to final_patch and RemoveLabel only\n"
		"      --mask-channels C,... MaskImage on these image channels (plans' use_mask_for_norm)\n"
		"      --preview N           write PNGs of the first N samples (input | output, middle\n"
		"                            slice of channel 0, label overlay) into -o DIR\n"
		"  -o, --output DIR          the preview folder (created)\n"
		"  -j, --threads N           samples augmented in parallel (default: NNP_THREADS or all cores)\n",
	.details =
		"Input: per sample an image frame (float32, C x P0 x P1 x P2, the enlarged patch) and its\n"
		"label frame (int16, 1 channel, -1 outside), both with props.sample (iteration, index,\n"
		"final_patch, dummy_2d, rotation, mirror_axes).  Output: the same pairs cropped/transformed\n"
		"to final_patch, the label after RemoveLabel (-1 -> 0), props.augment recording the steps\n"
		"applied and the parameters drawn.  Deep-supervision targets are left to the trainer.\n\n"
		"Example:\n  nnp sample -p P.json -c 3d_fullres D | nnp augment --seed 1 -j 4 | ...\n",
};

struct cmdline {
	const char *input, *outdir;
	unsigned long long seed;
	unsigned only;
	int has_only, none, threads;
	long preview;
	unsigned char *mask_ch;
	int64_t n_mask;
};

static unsigned parse_only(const char *arg)
{
	char *list = strdup(arg), *save = NULL;
	unsigned mask = 0;
	if (!list)
		nnp_dief(NNP_ENOMEM, "out of memory");
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int k = nnp_aug_step_from_name(t);
		if (k < 0)
			nnp_usage_error("--only: unknown transform '%s'", t);
		else
			mask |= 1u << k;
	}
	free(list);
	if (!mask)
		nnp_usage_error("--only needs at least one transform");
	return mask;
}

static void parse_mask_channels(const char *arg, struct cmdline *cl)
{
	char *list = strdup(arg), *save = NULL;
	if (!list)
		nnp_dief(NNP_ENOMEM, "out of memory");
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int64_t c = nnp_parse_ll("--mask-channels", t, 0, NNP_CHANNELS_MAX - 1);
		if (c >= cl->n_mask) {
			unsigned char *m = realloc(cl->mask_ch, (size_t)c + 1);
			if (!m)
				nnp_dief(NNP_ENOMEM, "out of memory");
			else
				memset(m + cl->n_mask, 0, (size_t)(c + 1 - cl->n_mask));
			cl->mask_ch = m, cl->n_mask = c + 1;
		}
		cl->mask_ch[c] = 1;
	}
	free(list);
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_SEED = 256, OPT_ONLY, OPT_NONE, OPT_MASK, OPT_PREVIEW };
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "only", required_argument, NULL, OPT_ONLY },
		{ "none", no_argument, NULL, OPT_NONE },
		{ "mask-channels", required_argument, NULL, OPT_MASK },
		{ "preview", required_argument, NULL, OPT_PREVIEW },
		{ "output", required_argument, NULL, 'o' },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "o:j:", opts, NULL)) != -1) {
		switch (c) {
		case OPT_SEED: cl->seed = (unsigned long long)nnp_parse_ll("--seed", optarg, 0, INT64_MAX); break;
		case OPT_ONLY: cl->only = parse_only(optarg), cl->has_only = 1; break;
		case OPT_NONE: cl->none = 1; break;
		case OPT_MASK: parse_mask_channels(optarg, cl); break;
		case OPT_PREVIEW: cl->preview = (long)nnp_parse_ll("--preview", optarg, 1, 10000); break;
		case 'o': cl->outdir = optarg; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		default: nnp_bad_option(argv);
		}
	}
	if (cl->none && cl->has_only)
		nnp_usage_error("give --only or --none, not both");
	if (!cl->preview != !cl->outdir)
		nnp_usage_error("--preview N and -o DIR go together");
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	cl->input = optind < argc ? argv[optind] : "-";
}

/* One sample of a batch: read serially, augmented in parallel, written in order. */
struct item {
	struct nnp_vol img, seg;
	struct nnp_aug_config cfg;
	struct nnp_aug_sample s;
	struct nnp_patch p;
	struct nnp_aug_record rec;
	uint32_t seed;
	int rc;
	char msg[512];
	float *preview_in;        /* channel 0, middle axis-0 slice of the input (n1 x n2) */
	int16_t *preview_seg;
	int64_t pin[2];
};

static void item_release(struct item *it)
{
	nnp_vol_release(&it->img);
	nnp_vol_release(&it->seg);
	nnp_patch_release(&it->p);
	nnp_aug_record_release(&it->rec);
	free(it->preview_in);
	free(it->preview_seg);
	memset(it, 0, sizeof *it);
}

static const char *case_of(const struct nnp_vol *v)
{
	return v->f.case_id ? v->f.case_id : "";
}

/* Frame checks and the sample's configuration (serial: reads props). */
static int item_setup(struct item *it, const struct cmdline *cl)
{
	const struct nnp_frame *fi = &it->img.f, *fs = &it->seg.f;
	int rc;
	if (fi->dtype != NNP_F32)
		return nnp_err(NNP_EDATA, "sample image of '%s' is %s, expected float32", case_of(&it->img),
			       nnp_dtype_name(fi->dtype));
	if (fs->dtype != NNP_I16 || fs->shape[0] != 1)
		return nnp_err(NNP_EDATA, "sample label of '%s' must be int16 with 1 channel, not %s with %lld",
			       case_of(&it->img), nnp_dtype_name(fs->dtype), (long long)fs->shape[0]);
	if (memcmp(fi->shape + 1, fs->shape + 1, 3 * sizeof(int64_t)))
		return nnp_err(NNP_EDATA, "sample of '%s': label and image extents differ", case_of(&it->img));
	if (cl->mask_ch && cl->n_mask > fi->shape[0])
		return nnp_err(NNP_EDATA, "--mask-channels names channel %lld, the image has %lld",
			       (long long)cl->n_mask - 1, (long long)fi->shape[0]);
	json_t *sample = fi->props ? json_object_get(fi->props, "sample") : NULL;
	if ((rc = nnp_aug_config_from_sample(sample, &it->cfg, &it->s)))
		return nnp_err_ctx(rc, "sample of '%s'", case_of(&it->img));
	if (cl->none)
		nnp_aug_probs_none(&it->cfg.probs);
	else if (cl->has_only)
		nnp_aug_probs_only(&it->cfg.probs, cl->only);
	else
		nnp_aug_probs_default(&it->cfg.probs);
	it->cfg.mask_ch = cl->mask_ch;
	it->cfg.n_mask = cl->n_mask;
	it->seed = nnp_aug_sample_seed(cl->seed, it->s.iteration, it->s.index);
	return NNP_OK;
}

/* Move the frames' voxels into the patch (no copy: same layout). */
static void item_adopt(struct item *it)
{
	struct nnp_patch *p = &it->p;
	p->c = it->img.f.shape[0];
	memcpy(p->n, it->img.f.shape + 1, sizeof p->n);
	p->img = it->img.data, it->img.data = NULL;
	p->seg = it->seg.data, it->seg.data = NULL;
}

static int keep_preview(struct item *it)
{
	const struct nnp_patch *p = &it->p;
	int64_t n = p->n[1] * p->n[2], off = p->n[0] / 2 * n;
	it->preview_in = malloc((size_t)n * sizeof(float));
	it->preview_seg = malloc((size_t)n * sizeof(int16_t));
	if (!it->preview_in || !it->preview_seg)
		return nnp_err(NNP_ENOMEM, "cannot allocate a preview");
	memcpy(it->preview_in, p->img + off, (size_t)n * sizeof(float));
	memcpy(it->preview_seg, p->seg + off, (size_t)n * sizeof(int16_t));
	it->pin[0] = p->n[1], it->pin[1] = p->n[2];
	return NNP_OK;
}

/* Parallel part: no JSON, no shared state. */
static void item_augment(struct item *it, int want_preview)
{
	struct nnp_aug_rng r;
	item_adopt(it);
	if (want_preview && (it->rc = keep_preview(it)))
		goto out;
	nnp_aug_rng_seed(&r, it->seed);
	it->rc = nnp_aug_run(&it->cfg, &it->p, &r, &it->rec);
out:
	if (it->rc)
		snprintf(it->msg, sizeof it->msg, "sample of '%s': %s", case_of(&it->img), nnp_err_msg());
}

/* ---- preview PNGs ---- */

static void colour(int16_t lab, unsigned char rgb[3])
{
	static const unsigned char pal[6][3] = { { 230, 25, 75 },  { 60, 180, 75 },  { 255, 225, 25 },
						 { 0, 130, 200 },  { 245, 130, 48 }, { 145, 30, 180 } };
	if (lab < 0)
		rgb[0] = 40, rgb[1] = 40, rgb[2] = 90;
	else
		memcpy(rgb, pal[(lab > 0 ? lab - 1 : 0) % 6], 3);
}

/* Grey values (min-max of the panel) with labels > 0 (and -1) blended in. */
static void paint(unsigned char *rows, int64_t width, int64_t x0, const float *img, const int16_t *seg,
		  int64_t h, int64_t w)
{
	float lo = img[0], hi = img[0];
	for (int64_t i = 0; i < h * w; i++)
		lo = fminf(lo, img[i]), hi = fmaxf(hi, img[i]);
	for (int64_t y = 0; y < h; y++)
		for (int64_t x = 0; x < w; x++) {
			unsigned char *px = rows + (y * width + x0 + x) * 3, rgb[3];
			double g = hi > lo ? (img[y * w + x] - lo) / (hi - lo) * 255.0 : 0;
			int16_t l = seg[y * w + x];
			for (int k = 0; k < 3; k++)
				px[k] = (unsigned char)g;
			if (l != 0) {
				colour(l, rgb);
				for (int k = 0; k < 3; k++)
					px[k] = (unsigned char)(0.55 * px[k] + 0.45 * rgb[k]);
			}
		}
}

/* DIR/preview_<iteration>_<index>.png: input panel | 4 px gap | output panel. */
static int preview_write(const char *dir, const struct item *it)
{
	const struct nnp_patch *p = &it->p;
	int64_t oh = p->n[1], ow = p->n[2], h = it->pin[0] > oh ? it->pin[0] : oh, w = it->pin[1] + 4 + ow;
	unsigned char *rgb = calloc((size_t)(w * h * 3), 1);
	char path[4096];
	int rc;
	if (!rgb)
		return nnp_err(NNP_ENOMEM, "cannot allocate a preview image");
	paint(rgb, w, 0, it->preview_in, it->preview_seg, it->pin[0], it->pin[1]);
	paint(rgb, w, it->pin[1] + 4, p->img + p->n[0] / 2 * oh * ow, p->seg + p->n[0] / 2 * oh * ow, oh, ow);
	snprintf(path, sizeof path, "%s/preview_%06lld_%03lld.png", dir, (long long)it->s.iteration,
		 (long long)it->s.index);
	rc = nnp_png_write_rgb(path, (int)w, (int)h, rgb, 1);
	free(rgb);
	return rc;
}

/* ---- output ---- */

/* The frame of one output volume: the input's header, new shape/dtype,
 * props with "augment". */
static int out_frame(struct nnp_frame *dst, struct nnp_frame *src, const struct nnp_patch *p, int64_t c,
		     json_t *aug)
{
	int rc = nnp_frame_copy(dst, src);
	if (rc)
		return rc;
	dst->shape[0] = c;
	memcpy(dst->shape + 1, p->n, sizeof p->n);
	dst->chunk_slices = 0;
	json_object_set(nnp_frame_props(dst), "augment", aug);
	return NNP_OK;
}

static int item_write(struct item *it, struct nnp_writer *w)
{
	struct nnp_vol out;
	json_t *aug = nnp_aug_record_json(&it->cfg, &it->s, &it->rec, it->seed);
	int rc = aug ? NNP_OK : NNP_ENOMEM;
	nnp_vol_init(&out);
	if (!rc && !(rc = out_frame(&out.f, &it->img.f, &it->p, it->p.c, aug))) {
		out.data = it->p.img;
		rc = nnp_writer_volume(w, &out);
		out.data = NULL;
	}
	nnp_vol_release(&out);
	if (!rc && !(rc = out_frame(&out.f, &it->seg.f, &it->p, 1, aug))) {
		out.data = it->p.seg;
		rc = nnp_writer_volume(w, &out);
		out.data = NULL;
	}
	nnp_vol_release(&out);
	json_decref(aug);
	return rc;
}

/* Read up to n samples; returns how many (0 at the end) or <0. */
static int read_batch(struct nnp_case_reader *cr, const struct cmdline *cl, struct item *b, int n)
{
	int k, rc, has_seg;
	for (k = 0; k < n; k++) {
		nnp_vol_init(&b[k].img);
		nnp_vol_init(&b[k].seg);
		rc = nnp_case_next(cr, &b[k].img, &b[k].seg, &has_seg);
		if (rc == NNP_ITEM_END)
			break;
		if (rc < 0)
			return rc;
		if (rc == NNP_ITEM_OTHER || !has_seg)
			return nnp_err(NNP_EDATA, "'%s' (role %s) is not followed by its label frame: expected "
				       "image+label samples", case_of(&b[k].img), b[k].img.f.role);
		if ((rc = item_setup(&b[k], cl)))
			return rc;
	}
	return k;
}

static int run(const struct cmdline *cl, struct nnp_case_io *io)
{
	int nb = 2 * nnp_threads(), n, rc = NNP_OK;
	long previews = 0;
	struct item *b = calloc((size_t)nb, sizeof *b);
	if (!b)
		return nnp_err(NNP_ENOMEM, "out of memory");
	while (!rc && (n = read_batch(io->cr, cl, b, nb)) > 0) {
		long want = cl->preview - previews;
#pragma omp parallel for num_threads(nnp_threads()) schedule(dynamic, 1)
		for (int i = 0; i < n; i++)
			item_augment(&b[i], i < want);
		for (int i = 0; i < n && !rc; i++) {
			if (b[i].rc)
				rc = nnp_err(b[i].rc, "%s", b[i].msg);
			else if (!(rc = item_write(&b[i], io->w)) && i < want)
				rc = preview_write(cl->outdir, &b[i]), previews++;
		}
		for (int i = 0; i < nb; i++)
			item_release(&b[i]);
		if (n < nb)
			break;
	}
	if (!rc && n < 0)
		rc = n;
	for (int i = 0; i < nb; i++)
		item_release(&b[i]);
	free(b);
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_case_io io;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	if (!strcmp(cl.input, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	if (cl.outdir && mkdir(cl.outdir, 0777) && errno != EEXIST)
		nnp_dief(NNP_EIO, "cannot create '%s': %m", cl.outdir);
	if ((rc = nnp_case_io_open(&io, cl.input, 0)))
		nnp_die(rc);
	rc = run(&cl, &io);
	nnp_case_io_close(&io);
	free(cl.mask_ch);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
