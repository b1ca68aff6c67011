/* nnp-transpose — nnU-Net's transpose_forward / transpose_backward. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "err.h"
#include "frame.h"
#include "json.h"
#include "prog.h"
#include "transpose.h"

static const struct nnp_proginfo info = {
	.name = "transpose",
	.summary = "permute the spatial axes of frames (nnU-Net's transpose_forward/backward)",
	.usage = "  nnp transpose -p PLANS.json [--backward] [STREAM]\n"
		 "  nnp transpose --axes A,B,C [STREAM]\n"
		 "  nnp transpose --undo [STREAM]",
	.options =
		"  -p, --plans FILE   the plans' transpose_forward (before crop, like nnU-Net's run_case)\n"
		"      --backward     with -p: apply transpose_backward instead\n"
		"      --axes A,B,C   output axis m is input axis A/B/C (a permutation of 0,1,2)\n"
		"      --undo         invert whatever transposition the frames carry (props)\n",
	.details =
		"Voxels, spacing and affine are permuted together, so every voxel keeps its world\n"
		"position and 'nnp write' still gives correct geometry. props.transpose_forward\n"
		"records the accumulated permutation; nnp normalize/resample/preprocess check it\n"
		"against the plans. class_locations tables pass through.\n",
};

enum mode { M_PLANS, M_AXES, M_UNDO };

static int parse_axes(const char *s, int t[3])
{
	return sscanf(s, "%d,%d,%d", &t[0], &t[1], &t[2]) == 3 && nnp_transpose_valid(t);
}

int main(int argc, char **argv)
{
	enum { OPT_BACK = 256, OPT_AXES, OPT_UNDO };
	static const struct option opts[] = {
		{ "plans", required_argument, NULL, 'p' }, { "backward", no_argument, NULL, OPT_BACK },
		{ "axes", required_argument, NULL, OPT_AXES }, { "undo", no_argument, NULL, OPT_UNDO },
		{ NULL, 0, NULL, 0 }
	};
	const char *plans_path = NULL, *in = "-";
	int t[3] = { 0, 1, 2 }, back = 0, nmodes = 0, c, rc;
	enum mode mode = M_PLANS;
	struct nnp_reader *r;
	struct nnp_writer *w;
	struct nnp_vol v, out;

	nnp_proginit(&argc, argv, &info);
	while ((c = getopt_long(argc, argv, "p:", opts, NULL)) != -1) {
		switch (c) {
		case 'p': plans_path = optarg; mode = M_PLANS; nmodes++; break;
		case OPT_BACK: back = 1; break;
		case OPT_AXES:
			if (!parse_axes(optarg, t))
				nnp_usage_error("--axes needs a permutation of 0,1,2 such as 2,0,1, not '%s'", optarg);
			mode = M_AXES;
			nmodes++;
			break;
		case OPT_UNDO: mode = M_UNDO; nmodes++; break;
		default: nnp_bad_option(argv);
		}
	}
	if (nmodes != 1)
		nnp_usage_error("give exactly one of -p PLANS, --axes, --undo");
	if (back && mode != M_PLANS)
		nnp_usage_error("--backward goes with -p PLANS");
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	if (optind < argc)
		in = argv[optind];
	if (!strcmp(in, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	if (mode == M_PLANS) {
		json_t *plans;
		if ((rc = nnp_json_load(plans_path, &plans)))
			nnp_die(rc);
		rc = nnp_transpose_from_plans(plans, t);
		json_decref(plans);
		if (rc)
			nnp_die(nnp_err_ctx(rc, "'%s'", plans_path));
		if (back) {
			int f[3] = { t[0], t[1], t[2] };
			nnp_transpose_inverse(f, t);
		}
	}
	if (!(r = nnp_reader_open(in)) || !(w = nnp_writer_fd(STDOUT_FILENO, "<stdout>")))
		nnp_die(NNP_EDATA);
	while ((rc = nnp_reader_volume(r, &v)) == 1) {
		int u[3] = { t[0], t[1], t[2] };
		if (mode == M_UNDO) {
			int carried[3];
			nnp_transpose_of_frame(&v.f, carried);
			nnp_transpose_inverse(carried, u);
		}
		if (!strcmp(v.f.role, "class_locations") || nnp_transpose_is_identity(u)) {
			rc = nnp_writer_volume(w, &v);
		} else if (!(rc = nnp_transpose_vol(&v, u, &out))) {
			rc = nnp_writer_volume(w, &out);
			nnp_vol_release(&out);
		}
		nnp_vol_release(&v);
		if (rc)
			break;
	}
	nnp_reader_free(r);
	nnp_writer_free(w);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
