/* nnp-preprocess — nnU-Net's run_case in one process: crop, normalize,
 * resample, class locations (= the filter pipeline, with one copy of the
 * case in memory instead of one per stage). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "caseio.h"
#include "classloc.h"
#include "crop.h"
#include "err.h"
#include "frame.h"
#include "json.h"
#include "normalize.h"
#include "plans.h"
#include "prog.h"
#include "resample.h"
#include "transpose.h"

static const struct nnp_proginfo info = {
	.name = "preprocess",
	.summary = "preprocess cases as nnU-Net's run_case: crop, normalize, resample, class locations",
	.usage = "  nnp preprocess -p PLANS.json -c CONFIGURATION [options] [STREAM]",
	.options =
		"  -p, --plans FILE          nnUNetPlans.json\n"
		"  -c, --configuration NAME  e.g. 3d_fullres, 2d, 3d_lowres\n"
		"      --dataset-json FILE   labels for the class locations (default: props.labels)\n"
		"      --no-class-locations  do not emit the class_locations frame\n"
		"      --no-mask             for cases without a label (inference): do not resample and\n"
		"                            emit the generated mask (nnU-Net discards it too)\n"
		"  -j, --threads N           threads (default: NNP_THREADS or all cores)\n",
	.details =
		"Output is identical to\n"
		"  nnp transpose -p P | nnp crop | nnp normalize -p P -c C | nnp resample -p P -c C |\n"
		"  nnp class-locations\n"
		"but one process holds one case: each step frees its input (about 4x less memory than\n"
		"the four-stage pipe, and no serialisation between the steps). Cases without a label\n"
		"(inference) get the generated mask and no class locations.\n",
};

struct cmdline {
	const char *plans, *config, *input, *dataset_json;
	int threads, no_classloc, no_mask;
};

struct ctx {
	struct nnp_norm_plan norm;
	double spacing[3];
	int nsp, order, order_z, force, seg_order, seg_order_z, seg_force;
	json_t *labels;
	struct nnp_writer *w;
	int no_classloc, no_mask;
	int transpose[3];
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_DJ = 256, OPT_NOCL, OPT_NOMASK };
	static const struct option opts[] = {
		{ "plans", required_argument, NULL, 'p' },
		{ "configuration", required_argument, NULL, 'c' },
		{ "dataset-json", required_argument, NULL, OPT_DJ },
		{ "no-class-locations", no_argument, NULL, OPT_NOCL },
		{ "no-mask", no_argument, NULL, OPT_NOMASK },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "p:c:j:", opts, NULL)) != -1) {
		switch (c) {
		case 'p': cl->plans = optarg; break;
		case 'c': cl->config = optarg; break;
		case OPT_DJ: cl->dataset_json = optarg; break;
		case OPT_NOCL: cl->no_classloc = 1; break;
		case OPT_NOMASK: cl->no_mask = 1; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		default: nnp_bad_option(argv);
		}
	}
	if (!cl->plans || !cl->config)
		nnp_usage_error("need -p PLANS.json and -c CONFIGURATION");
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	cl->input = optind < argc ? argv[optind] : "-";
}

static int load_ctx(const struct cmdline *cl, struct ctx *x)
{
	json_t *plans, *dj = NULL;
	int rc = nnp_json_load(cl->plans, &plans);
	if (rc)
		return rc;
	if (!(rc = nnp_transpose_from_plans(plans, x->transpose)) &&
	    !(rc = nnp_norm_plan_from_plans(plans, cl->config, &x->norm)) &&
	    !(rc = nnp_plans_spacing(plans, cl->config, x->spacing, &x->nsp)) &&
	    !(rc = nnp_plans_resampling(plans, cl->config, 0, &x->order, &x->order_z, &x->force)))
		rc = nnp_plans_resampling(plans, cl->config, 1, &x->seg_order, &x->seg_order_z, &x->seg_force);
	json_decref(plans);
	if (rc)
		return nnp_err_ctx(rc, "'%s'", cl->plans);
	if (cl->dataset_json) {
		if ((rc = nnp_json_load(cl->dataset_json, &dj)))
			return rc;
		x->labels = json_incref(json_object_get(dj, "labels"));
		json_decref(dj);
		if (!x->labels)
			return nnp_err(NNP_EDATA, "'%s': no \"labels\"", cl->dataset_json);
	}
	x->no_classloc = cl->no_classloc;
	x->no_mask = cl->no_mask;
	return NNP_OK;
}

/* Resample v in place (v is replaced by the result). */
static int resample_inplace(const struct ctx *x, struct nnp_vol *v, const double sp[3], const int64_t shape[3],
			    int seg)
{
	struct nnp_vol out;
	int rc = nnp_resample_step(v, shape, sp, seg, seg ? x->seg_order : x->order, seg ? x->seg_order_z : x->order_z,
				   seg ? x->seg_force : x->force, &out);
	if (rc)
		return rc;
	nnp_vol_release(v);
	*v = out;
	return NNP_OK;
}

static int emit(struct nnp_writer *w, struct nnp_vol *v)
{
	int rc = nnp_writer_volume(w, v);
	nnp_vol_release(v);
	return rc;
}

/* nnU-Net's run_case starts with transpose_forward: apply it unless the
 * frame already carries it (from 'nnp transpose'). */
static int maybe_transpose(const struct ctx *x, struct nnp_vol *v)
{
	struct nnp_vol t;
	int carried[3], rc;
	nnp_transpose_of_frame(&v->f, carried);
	if (!nnp_transpose_is_identity(carried) || nnp_transpose_is_identity(x->transpose))
		return nnp_transpose_check(x->transpose, &v->f);
	if ((rc = nnp_transpose_vol(v, x->transpose, &t)))
		return rc;
	nnp_vol_release(v);
	*v = t;
	return NNP_OK;
}

static int run_case(const struct ctx *x, struct nnp_vol *img, struct nnp_vol *seg, int has_seg)
{
	struct nnp_vol ci, cs, loc;
	int64_t bbox[3][2], before[3], shape[3];
	double sp[3];
	int rc;
	nnp_vol_init(&ci);
	nnp_vol_init(&cs);
	if (x->norm.nch != img->f.shape[0])
		return nnp_err(NNP_EDATA, "case '%s': %lld channels, the plans normalise %lld",
			       img->f.case_id ? img->f.case_id : "", (long long)img->f.shape[0], (long long)x->norm.nch);
	if ((rc = maybe_transpose(x, img)) || (has_seg && (rc = maybe_transpose(x, seg))))
		return rc;
	memcpy(before, img->f.shape + 1, sizeof before);
	rc = nnp_crop_to_nonzero(img, has_seg ? seg : NULL, &ci, &cs, bbox);
	nnp_vol_release(img);
	nnp_vol_release(seg);
	if (!rc && !(rc = nnp_crop_set_props(&ci.f, before, bbox)))
		rc = nnp_crop_set_props(&cs.f, before, bbox);
	if (!rc)
		rc = nnp_normalize_inplace(&x->norm, &ci, &cs, NULL);
	if (!rc) {
		nnp_plans_case_spacing(x->spacing, x->nsp, ci.f.spacing, sp);
		rc = nnp_resample_shape(ci.f.shape + 1, ci.f.spacing, sp, shape);
	}
	if (!rc)
		rc = resample_inplace(x, &ci, sp, shape, 0);
	if (!rc)
		rc = emit(x->w, &ci);
	if (!rc && !has_seg && x->no_mask) {
		nnp_vol_release(&cs);
		return NNP_OK;
	}
	if (!rc)
		rc = resample_inplace(x, &cs, sp, shape, 1);
	if (!rc && has_seg && !x->no_classloc && !(rc = nnp_classloc_case(&cs, x->labels, &loc))) {
		if (!(rc = emit(x->w, &cs)))
			rc = emit(x->w, &loc);
		nnp_vol_release(&loc);
	} else if (!rc) {
		rc = emit(x->w, &cs);
	}
	nnp_vol_release(&ci);
	nnp_vol_release(&cs);
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct ctx x = { 0 };
	struct nnp_case_io io;
	struct nnp_vol img, seg;
	int rc, has_seg;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	if (!strcmp(cl.input, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	if ((rc = load_ctx(&cl, &x)))
		nnp_die(rc);
	if ((rc = nnp_case_io_open(&io, cl.input, 0)))
		nnp_die(rc);
	x.w = io.w;
	while ((rc = nnp_case_next(io.cr, &img, &seg, &has_seg)) > 0) {
		rc = rc == NNP_ITEM_CASE ? run_case(&x, &img, &seg, has_seg) : nnp_writer_volume(x.w, &img);
		nnp_vol_release(&img);
		nnp_vol_release(&seg);
		if (rc)
			break;
	}
	nnp_case_io_close(&io);
	nnp_norm_plan_release(&x.norm);
	json_decref(x.labels);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
