/* nnp-crop — nnU-Net's crop_to_nonzero on a frame stream. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "crop.h"
#include "err.h"
#include "frame.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "crop",
	.summary = "crop each case to the nonzero region of its image (nnU-Net's crop_to_nonzero)",
	.usage = "  nnp crop [options] [STREAM]",
	.options = "      --no-mask   without a label frame, do not emit the generated 'mask' frame\n",
	.details =
		"For every image frame (optionally followed by the label frame of the same case):\n"
		"mask = any channel != 0 (scl_slope/inter applied), holes filled (6-connectivity, as\n"
		"scipy's binary_fill_holes), bbox of the mask; image and label are cropped to it.\n"
		"In the label, background outside the mask becomes -1 (int8, int16 above 127 labels).\n"
		"Without a label a 'mask' frame (0 inside, -1 outside) follows the image, as nnU-Net\n"
		"builds for inference. props record shape_before_cropping, bbox_used_for_cropping and\n"
		"shape_after_cropping_and_before_resampling; 'nnp uncrop' reverses the crop.\n"
		"Other frames pass through unchanged. Memory: one case (image + label).\n\n"
		"Example:\n  nnp read --dataset 901 --case sph_000 | nnp crop | nnp info\n",
};

struct state {
	struct nnp_writer *w;
	struct nnp_vol img;
	int pending, no_mask;
};

static int emit(struct state *st, struct nnp_vol *v)
{
	int rc = nnp_writer_volume(st->w, v);
	nnp_vol_release(v);
	return rc;
}

/* Crop the pending image (with seg, or alone) and write the results. */
static int flush(struct state *st, struct nnp_vol *seg)
{
	struct nnp_vol ci, cs;
	int64_t bbox[3][2], before[3];
	int rc;
	if (!st->pending)
		return NNP_OK;
	st->pending = 0;
	memcpy(before, st->img.f.shape + 1, sizeof before);
	rc = nnp_crop_to_nonzero(&st->img, seg, &ci, &cs, bbox);
	nnp_vol_release(&st->img);
	if (rc)
		return rc;
	rc = nnp_crop_set_props(&ci.f, before, bbox);
	if (!rc)
		rc = nnp_crop_set_props(&cs.f, before, bbox);
	if (!rc)
		rc = emit(st, &ci);
	if (!rc && (seg || !st->no_mask))
		rc = emit(st, &cs);
	nnp_vol_release(&ci);
	nnp_vol_release(&cs);
	return rc;
}

static int same_case(const struct nnp_frame *a, const struct nnp_frame *b)
{
	return (!a->case_id && !b->case_id) || (a->case_id && b->case_id && !strcmp(a->case_id, b->case_id));
}

static int on_frame(struct state *st, struct nnp_reader *r, struct nnp_frame *f)
{
	struct nnp_vol v;
	int rc;
	nnp_vol_init(&v);
	v.f = *f;            /* take ownership of the header */
	nnp_frame_init(f);
	if ((rc = nnp_reader_payload(r, &v)))
		goto out;
	if (!strcmp(v.f.role, "label")) {
		if (!st->pending || !same_case(&st->img.f, &v.f)) {
			rc = nnp_err(NNP_EDATA, "'%s': label frame of case '%s' does not follow its image frame",
				     nnp_reader_name(r), v.f.case_id ? v.f.case_id : "");
			goto out;
		}
		rc = flush(st, &v);
		goto out;
	}
	if ((rc = flush(st, NULL)))
		goto out;
	if (!strcmp(v.f.role, "image")) {
		st->img = v;
		st->pending = 1;
		return NNP_OK;
	}
	rc = nnp_writer_volume(st->w, &v);   /* other roles pass through */
out:
	nnp_vol_release(&v);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "no-mask", no_argument, NULL, 'm' }, { NULL, 0, NULL, 0 } };
	struct state st = { 0 };
	struct nnp_reader *r;
	struct nnp_frame f;
	const char *in = "-";
	int c, rc;

	nnp_proginit(&argc, argv, &info);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'm')
			st.no_mask = 1;
		else
			nnp_bad_option(argv);
	}
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	if (optind < argc)
		in = argv[optind];
	if (!strcmp(in, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	nnp_vol_init(&st.img);
	if (!(r = nnp_reader_open(in)) || !(st.w = nnp_writer_fd(STDOUT_FILENO, "<stdout>")))
		nnp_die(NNP_EDATA);
	while ((rc = nnp_reader_next(r, &f)) == 1 && !(rc = on_frame(&st, r, &f)))
		;
	if (rc == 0)
		rc = flush(&st, NULL);
	nnp_vol_release(&st.img);
	nnp_reader_free(r);
	nnp_writer_free(st.w);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
