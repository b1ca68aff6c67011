/* nnp-resample — nnU-Net's resampling of images and label maps. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "caseio.h"
#include "err.h"
#include "frame.h"
#include "json.h"
#include "plans.h"
#include "prog.h"
#include "resample.h"
#include "transpose.h"

static const struct nnp_proginfo info = {
	.name = "resample",
	.summary = "resample images (cubic B-spline) and label maps (nnU-Net's one-hot rule) to a new grid",
	.usage = "  nnp resample -p PLANS.json -c CONFIGURATION [STREAM]\n"
		 "  nnp resample --spacing Z,Y,X | --shape Z,Y,X [options] [STREAM]\n"
		 "  nnp resample --to-original [STREAM]",
	.options =
		"  -p, --plans FILE          target spacing and resampling settings from the plans\n"
		"  -c, --configuration NAME  (2d configurations keep each case's own z spacing)\n"
		"      --spacing Z,Y,X       target spacing in mm (nnU-Net axis order)\n"
		"      --shape Z,Y,X         target shape\n"
		"      --to-original         back to the grid recorded in props (spacing_before_resampling,\n"
		"                            shape_after_cropping_and_before_resampling)\n"
		"      --order N             image interpolation order 0-5 (default 3; plans override)\n"
		"      --order-z N           order along the anisotropic axis with separate z (default 0)\n"
		"      --separate-z MODE     auto (nnU-Net's rule, default), on, off\n"
		"  -j, --threads N           threads (default: NNP_THREADS or all cores)\n",
	.details =
		"Image frames use the data rule (float32 out); label and mask frames the segmentation\n"
		"rule: per label one-hot, linear, >= 0.5, later labels win, evaluated only for the\n"
		"labels around each voxel (cost independent of the number of labels). Separate z: with\n"
		"an anisotropy above 3 the in-plane axes are resampled per slice and the low-resolution\n"
		"axis by nearest neighbour. Bit-identical to nnU-Net on its fixtures (docs/resampling.md).\n"
		"The image and its label of one case always get the same new shape. With -p/-c\n"
		"other frames pass through; otherwise every volume frame is resampled (e.g. logits\n"
		"with --to-original). class_locations tables always pass through.\n",
};

enum mode { BY_PLANS, BY_SPACING, BY_SHAPE, TO_ORIGINAL };

struct cmdline {
	const char *plans, *config, *input;
	enum mode mode;
	double spacing[3];
	int64_t shape[3];
	int order, order_z, separate_z, threads, plan_sp_n;
	int seg_order, seg_order_z, seg_force;
	int transpose[3];
};

static void parse3(const char *opt, const char *s, double *v)
{
	char *end;
	for (int i = 0; i < 3; i++) {
		v[i] = strtod(s, &end);
		if (end == s || !(v[i] > 0) || (i < 2 && *end != ',') || (i == 2 && *end))
			nnp_usage_error("%s needs three positive numbers Z,Y,X, not '%s'", opt, s);
		s = end + 1;
	}
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_SP = 256, OPT_SH, OPT_ORIG, OPT_ORD, OPT_ORDZ, OPT_SEPZ };
	static const struct option opts[] = {
		{ "plans", required_argument, NULL, 'p' },
		{ "configuration", required_argument, NULL, 'c' },
		{ "spacing", required_argument, NULL, OPT_SP },
		{ "shape", required_argument, NULL, OPT_SH },
		{ "to-original", no_argument, NULL, OPT_ORIG },
		{ "order", required_argument, NULL, OPT_ORD },
		{ "order-z", required_argument, NULL, OPT_ORDZ },
		{ "separate-z", required_argument, NULL, OPT_SEPZ },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	int c, nmodes = 0;
	double sh[3];
	memset(cl, 0, sizeof *cl);
	cl->order = 3;
	cl->separate_z = NNP_SEPZ_AUTO;
	cl->seg_order = 1;
	cl->seg_force = NNP_SEPZ_AUTO;
	while ((c = getopt_long(argc, argv, "p:c:j:", opts, NULL)) != -1) {
		switch (c) {
		case 'p': cl->plans = optarg; break;
		case 'c': cl->config = optarg; break;
		case OPT_SP: parse3("--spacing", optarg, cl->spacing); cl->mode = BY_SPACING; nmodes++; break;
		case OPT_SH:
			parse3("--shape", optarg, sh);
			for (int i = 0; i < 3; i++)
				cl->shape[i] = (int64_t)sh[i];
			cl->mode = BY_SHAPE;
			nmodes++;
			break;
		case OPT_ORIG: cl->mode = TO_ORIGINAL; nmodes++; break;
		case OPT_ORD: cl->order = (int)nnp_parse_ll("--order", optarg, 0, 5); break;
		case OPT_ORDZ: cl->order_z = (int)nnp_parse_ll("--order-z", optarg, 0, 5); break;
		case OPT_SEPZ:
			if (!strcmp(optarg, "auto")) cl->separate_z = NNP_SEPZ_AUTO;
			else if (!strcmp(optarg, "on")) cl->separate_z = NNP_SEPZ_ON;
			else if (!strcmp(optarg, "off")) cl->separate_z = NNP_SEPZ_OFF;
			else nnp_usage_error("--separate-z must be auto, on or off, not '%s'", optarg);
			break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		default: nnp_bad_option(argv);
		}
	}
	if (cl->plans || cl->config) {
		if (!cl->plans || !cl->config)
			nnp_usage_error("-p PLANS.json and -c CONFIGURATION go together");
		cl->mode = BY_PLANS;
		nmodes++;
	}
	if (nmodes != 1)
		nnp_usage_error("give exactly one of -p/-c, --spacing, --shape, --to-original");
	cl->seg_force = cl->separate_z;
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	cl->input = optind < argc ? argv[optind] : "-";
}

static int load_plans(struct cmdline *cl)
{
	json_t *plans;
	int force, rc = nnp_json_load(cl->plans, &plans);
	if (rc)
		return rc;
	if (!(rc = nnp_transpose_from_plans(plans, cl->transpose)) &&
	    !(rc = nnp_plans_spacing(plans, cl->config, cl->spacing, &cl->plan_sp_n)) &&
	    !(rc = nnp_plans_resampling(plans, cl->config, 0, &cl->order, &cl->order_z, &force)))
		rc = nnp_plans_resampling(plans, cl->config, 1, &cl->seg_order, &cl->seg_order_z, &cl->seg_force);
	if (!rc)
		cl->separate_z = force;
	json_decref(plans);
	return rc ? nnp_err_ctx(rc, "'%s'", cl->plans) : NNP_OK;
}

/* Original grid from props (for --to-original). */
static int original_grid(const struct nnp_frame *f, double sp[3], int64_t shape[3])
{
	json_t *s = f->props ? json_object_get(f->props, "spacing_before_resampling") : NULL;
	json_t *n = f->props ? json_object_get(f->props, "shape_after_cropping_and_before_resampling") : NULL;
	if (json_array_size(s) != 3 || json_array_size(n) != 3)
		return nnp_err(NNP_EDATA, "case '%s': no props.spacing_before_resampling / "
			       "shape_after_cropping_and_before_resampling: was it resampled by nnp resample?",
			       f->case_id ? f->case_id : "");
	for (int i = 0; i < 3; i++) {
		sp[i] = json_number_value(json_array_get(s, (size_t)i));
		shape[i] = json_integer_value(json_array_get(n, (size_t)i));
	}
	return NNP_OK;
}

/* Target spacing and shape for a case from its image frame. */
static int target(const struct cmdline *cl, const struct nnp_frame *f, double sp[3], int64_t shape[3])
{
	switch (cl->mode) {
	case TO_ORIGINAL:
		return original_grid(f, sp, shape);
	case BY_SHAPE:
		memcpy(shape, cl->shape, sizeof cl->shape);
		for (int i = 0; i < 3; i++)
			sp[i] = f->spacing[i] * (double)f->shape[i + 1] / (double)shape[i];
		return NNP_OK;
	default:
		nnp_plans_case_spacing(cl->spacing, cl->mode == BY_PLANS ? cl->plan_sp_n : 3, f->spacing, sp);
		return nnp_resample_shape(f->shape + 1, f->spacing, sp, shape);
	}
}

static int resample_one(const struct cmdline *cl, struct nnp_writer *w, const struct nnp_vol *v, const double sp[3],
			const int64_t shape[3])
{
	struct nnp_vol out;
	int seg = nnp_role_is_seg(v->f.role);
	int rc = nnp_resample_step(v, shape, sp, seg, seg ? cl->seg_order : cl->order,
				   seg ? cl->seg_order_z : cl->order_z, seg ? cl->seg_force : cl->separate_z, &out);
	if (rc)
		return rc;
	if (cl->mode == TO_ORIGINAL)   /* back on the original grid: nothing left to undo */
		json_object_del(out.f.props, "spacing_before_resampling");
	rc = nnp_writer_volume(w, &out);
	nnp_vol_release(&out);
	return rc;
}

static int resample_case(const struct cmdline *cl, struct nnp_writer *w, const struct nnp_vol *img,
			 const struct nnp_vol *seg, int has_seg)
{
	double sp[3];
	int64_t shape[3];
	int rc = cl->mode == BY_PLANS ? nnp_transpose_check(cl->transpose, &img->f) : NNP_OK;
	if (!rc)
		rc = target(cl, &img->f, sp, shape);
	if (!rc)
		rc = resample_one(cl, w, img, sp, shape);
	if (!rc && has_seg) {
		if (seg->f.shape[1] != img->f.shape[1] || seg->f.shape[2] != img->f.shape[2] ||
		    seg->f.shape[3] != img->f.shape[3])
			return nnp_err(NNP_EDATA, "case '%s': the %s frame's shape differs from the image's",
				       img->f.case_id ? img->f.case_id : "", seg->f.role);
		rc = resample_one(cl, w, seg, sp, shape);
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_case_io io;
	struct nnp_vol img, seg;
	int rc, has_seg;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	if (!strcmp(cl.input, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	if (cl.mode == BY_PLANS && (rc = load_plans(&cl)))
		nnp_die(rc);
	if ((rc = nnp_case_io_open(&io, cl.input, 1)))
		nnp_die(rc);
	while ((rc = nnp_case_next(io.cr, &img, &seg, &has_seg)) > 0) {
		if (rc == NNP_ITEM_CASE || (cl.mode != BY_PLANS && strcmp(img.f.role, "class_locations"))) {
			rc = resample_case(&cl, io.w, &img, &seg, has_seg);
		} else {
			rc = nnp_writer_volume(io.w, &img);
		}
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
