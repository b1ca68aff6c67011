/* nnp-normalize — nnU-Net's intensity normalisation per channel. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "caseio.h"
#include "err.h"
#include "frame.h"
#include "json.h"
#include "normalize.h"
#include "plans.h"
#include "prog.h"
#include "transpose.h"

static const struct nnp_proginfo info = {
	.name = "normalize",
	.summary = "normalise image intensities per channel as nnU-Net does (CT, z-score, rescale, RGB, none)",
	.usage = "  nnp normalize -p PLANS.json -c CONFIGURATION [STREAM]\n"
		 "  nnp normalize --scheme S[,S...] [--fingerprint FILE] [--use-mask M[,M...]] [STREAM]",
	.options =
		"  -p, --plans FILE          nnUNetPlans.json (schemes, use_mask_for_norm, CT statistics)\n"
		"  -c, --configuration NAME  e.g. 3d_fullres, 2d\n"
		"      --scheme S,...        one per channel: ct, zscore, rescale, rgb, none (or the plans'\n"
		"                            class names, e.g. CTNormalization)\n"
		"      --fingerprint FILE    dataset_fingerprint.json (or plans) with the CT statistics\n"
		"      --use-mask M,...      1 = z-score inside seg >= 0 only (default 0 for every channel)\n"
		"  -j, --threads N           threads (default: NNP_THREADS or all cores)\n",
	.details =
		"Expects image frames each followed by the label or mask frame of its case (as\n"
		"'nnp crop' emits them): use_mask_for_norm normalises the z-score inside seg >= 0.\n"
		"Output images are float32; label/mask frames and other frames pass through.\n"
		"Arithmetic is numpy's float32 (bit-identical to nnU-Net on its fixtures).\n\n"
		"Example:\n  nnp read -d 901 --case sph_000 | nnp crop | nnp normalize -p P.json -c 3d_fullres\n",
};

struct cmdline {
	const char *plans, *config, *input, *schemes, *fingerprint, *use_mask;
	int threads;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_SCHEME = 256, OPT_FP, OPT_MASK };
	static const struct option opts[] = {
		{ "plans", required_argument, NULL, 'p' },
		{ "configuration", required_argument, NULL, 'c' },
		{ "scheme", required_argument, NULL, OPT_SCHEME },
		{ "fingerprint", required_argument, NULL, OPT_FP },
		{ "use-mask", required_argument, NULL, OPT_MASK },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "p:c:j:", opts, NULL)) != -1) {
		switch (c) {
		case 'p': cl->plans = optarg; break;
		case 'c': cl->config = optarg; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		case OPT_SCHEME: cl->schemes = optarg; break;
		case OPT_FP: cl->fingerprint = optarg; break;
		case OPT_MASK: cl->use_mask = optarg; break;
		default: nnp_bad_option(argv);
		}
	}
	if (cl->schemes && (cl->plans || cl->config))
		nnp_usage_error("give either -p/-c or --scheme, not both");
	if (!cl->schemes && (!cl->plans || !cl->config))
		nnp_usage_error("need -p PLANS.json and -c CONFIGURATION, or --scheme");
	if (!cl->schemes && (cl->fingerprint || cl->use_mask))
		nnp_usage_error("--fingerprint and --use-mask go with --scheme");
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	cl->input = optind < argc ? argv[optind] : "-";
}

static const char *class_name(const char *s)
{
	static const char *const map[][2] = {
		{ "ct", "CTNormalization" }, { "zscore", "ZScoreNormalization" },
		{ "rescale", "RescaleTo01Normalization" }, { "rgb", "RGBTo01Normalization" },
		{ "none", "NoNormalization" },
	};
	for (size_t i = 0; i < sizeof map / sizeof *map; i++)
		if (!strcasecmp(s, map[i][0]))
			return map[i][1];
	return s;   /* a plans class name, checked by the library */
}

/* --scheme/--use-mask/--fingerprint -> a configuration object. */
static int explicit_plan(const struct cmdline *cl, struct nnp_norm_plan *plan)
{
	json_t *cfg = json_object(), *sch = json_array(), *um = json_array(), *fp = NULL;
	char *list = strdup(cl->schemes), *save = NULL, *masks = cl->use_mask ? strdup(cl->use_mask) : NULL;
	char *m = masks ? strtok_r(masks, ",", &save) : NULL, *save2 = NULL;
	int rc = NNP_OK;
	for (char *t = strtok_r(list, ",", &save2); t; t = strtok_r(NULL, ",", &save2)) {
		json_array_append_new(sch, json_string(class_name(t)));
		json_array_append_new(um, json_boolean(m && !strcmp(m, "1")));
		if (m && strcmp(m, "0") && strcmp(m, "1"))
			rc = nnp_err(NNP_EUSAGE, "--use-mask takes 0 or 1 per channel, not '%s'", m);
		if (m)
			m = strtok_r(NULL, ",", &save);
	}
	json_object_set_new(cfg, "normalization_schemes", sch);
	json_object_set_new(cfg, "use_mask_for_norm", um);
	if (!rc && cl->fingerprint)
		rc = nnp_json_load(cl->fingerprint, &fp);
	if (!rc)
		rc = nnp_norm_plan_from_config(cfg, fp ? json_object_get(fp, "foreground_intensity_properties_per_channel")
						       : NULL, plan);
	json_decref(fp);
	json_decref(cfg);
	free(list);
	free(masks);
	return rc;
}

static int normalize_case(const struct nnp_norm_plan *plan, const int tr[3], struct nnp_writer *w,
			  struct nnp_vol *img, struct nnp_vol *seg, int has_seg)
{
	struct nnp_vol out;
	int rc = nnp_transpose_check(tr, &img->f);
	if (rc)
		return rc;
	if (plan->nch != img->f.shape[0])
		return nnp_err(NNP_EDATA, "case '%s': %lld channels, the plans normalise %lld",
			       img->f.case_id ? img->f.case_id : "", (long long)img->f.shape[0], (long long)plan->nch);
	rc = nnp_normalize(plan, img, has_seg ? seg : NULL, &out, NULL);
	if (rc)
		return rc;
	rc = nnp_writer_volume(w, &out);
	nnp_vol_release(&out);
	if (!rc && has_seg)
		rc = nnp_writer_volume(w, seg);
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_norm_plan plan = { 0 };
	struct nnp_case_io io;
	struct nnp_vol img, seg;
	json_t *plans;
	int rc, has_seg, tr[3];

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	if (!strcmp(cl.input, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	if (cl.schemes) {
		tr[0] = 0, tr[1] = 1, tr[2] = 2;
		if ((rc = explicit_plan(&cl, &plan)))
			nnp_die(rc);
	} else {
		if ((rc = nnp_json_load(cl.plans, &plans)))
			nnp_die(rc);
		if ((rc = nnp_transpose_from_plans(plans, tr)) || (rc = nnp_norm_plan_from_plans(plans, cl.config, &plan)))
			nnp_die(nnp_err_ctx(rc, "'%s'", cl.plans));
		json_decref(plans);
	}
	if ((rc = nnp_case_io_open(&io, cl.input, 1)))
		nnp_die(rc);
	while ((rc = nnp_case_next(io.cr, &img, &seg, &has_seg)) > 0) {
		rc = rc == NNP_ITEM_CASE ? normalize_case(&plan, tr, io.w, &img, &seg, has_seg) : nnp_writer_volume(io.w, &img);
		nnp_vol_release(&img);
		nnp_vol_release(&seg);
		if (rc)
			break;
	}
	nnp_case_io_close(&io);
	nnp_norm_plan_release(&plan);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
