/* nnp-crop — nnU-Net's crop_to_nonzero on a frame stream. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "caseio.h"
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

static int emit(struct nnp_writer *w, struct nnp_vol *v)
{
	int rc = nnp_writer_volume(w, v);
	nnp_vol_release(v);
	return rc;
}

/* Crop one case (image with its label, or alone) and write the results. */
static int crop_case(struct nnp_writer *w, struct nnp_vol *img, struct nnp_vol *seg, int no_mask)
{
	struct nnp_vol ci, cs;
	int64_t bbox[3][2], before[3];
	int rc;
	memcpy(before, img->f.shape + 1, sizeof before);
	rc = nnp_crop_to_nonzero(img, seg, &ci, &cs, bbox);
	if (rc)
		return rc;
	rc = nnp_crop_set_props(&ci.f, before, bbox);
	if (!rc)
		rc = nnp_crop_set_props(&cs.f, before, bbox);
	if (!rc)
		rc = emit(w, &ci);
	if (!rc && (seg || !no_mask))
		rc = emit(w, &cs);
	nnp_vol_release(&ci);
	nnp_vol_release(&cs);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "no-mask", no_argument, NULL, 'm' }, { NULL, 0, NULL, 0 } };
	struct nnp_case_io io;
	struct nnp_vol img, seg;
	const char *in = "-";
	int c, rc, has_seg, no_mask = 0;

	nnp_proginit(&argc, argv, &info);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'm')
			no_mask = 1;
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
	if ((rc = nnp_case_io_open(&io, in, 0)))
		nnp_die(rc);
	while ((rc = nnp_case_next(io.cr, &img, &seg, &has_seg)) > 0) {
		if (rc == NNP_ITEM_CASE)
			rc = crop_case(io.w, &img, has_seg ? &seg : NULL, no_mask);
		else
			rc = nnp_writer_volume(io.w, &img);   /* other roles pass through */
		nnp_vol_release(&img);
		nnp_vol_release(&seg);
		if (rc)
			break;
	}
	nnp_case_io_close(&io);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
