/* nnp-uncrop — undo nnp crop: put frames back into their original grid. */
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
	.name = "uncrop",
	.summary = "place cropped frames back into their original grid (inverse of nnp crop)",
	.usage = "  nnp uncrop [options] [STREAM]",
	.options = "      --fill V          value outside the crop box (default 0)\n"
		   "      --negative-to V   replace values < 0 (the -1 'outside' label) by V in label\n"
		   "                        and mask frames (e.g. 0 to get a plain label map)\n",
	.details = "Uses props.shape_before_cropping and props.bbox_used_for_cropping written by nnp crop;\n"
		   "the affine origin moves back, so 'nnp write' reproduces the original geometry.\n"
		   "Frames without a crop record are an error. Memory: one frame in, one out.\n",
};

static void negative_to(struct nnp_vol *v, double to)
{
	uint64_t n = nnp_frame_nvox(&v->f) * (uint64_t)v->f.shape[0];
	size_t es = nnp_dtype_size(v->f.dtype);
	for (uint64_t i = 0; i < n; i++) {
		double x;
		char *p = (char *)v->data + i * es;
		nnp_to_f64(v->f.dtype, p, &x, 1);
		if (x < 0)
			nnp_convert(v->f.dtype, p, NNP_F64, &to, 1);
	}
}

int main(int argc, char **argv)
{
	enum { OPT_FILL = 256, OPT_NEG };
	static const struct option opts[] = {
		{ "fill", required_argument, NULL, OPT_FILL },
		{ "negative-to", required_argument, NULL, OPT_NEG },
		{ NULL, 0, NULL, 0 }
	};
	struct nnp_reader *r;
	struct nnp_writer *w;
	struct nnp_vol v, out;
	double fill = 0, neg = 0;
	int have_neg = 0, c, rc;
	const char *in = "-";

	nnp_proginit(&argc, argv, &info);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == OPT_FILL)
			fill = nnp_parse_double("--fill", optarg);
		else if (c == OPT_NEG) {
			neg = nnp_parse_double("--negative-to", optarg);
			have_neg = 1;
		} else
			nnp_bad_option(argv);
	}
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	if (optind < argc)
		in = argv[optind];
	if (!strcmp(in, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	if (!(r = nnp_reader_open(in)) || !(w = nnp_writer_fd(STDOUT_FILENO, "<stdout>")))
		nnp_die(NNP_EDATA);
	while ((rc = nnp_reader_volume(r, &v)) == 1) {
		int64_t before[3], bbox[3][2];
		int seg = !strcmp(v.f.role, "label") || !strcmp(v.f.role, "mask");
		rc = nnp_crop_get_props(&v.f, before, bbox);
		if (!rc)
			rc = nnp_uncrop(&v, before, bbox, fill, &out);
		nnp_vol_release(&v);
		if (!rc && seg && have_neg)
			negative_to(&out, neg);
		if (!rc)
			rc = nnp_writer_volume(w, &out);
		nnp_vol_release(&out);
		if (rc)
			break;
	}
	nnp_reader_free(r);
	nnp_writer_free(w);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
