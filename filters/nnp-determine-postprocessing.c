/* nnp-determine-postprocessing — nnUNetv2_determine_postprocessing: which
 * keep-the-largest-component steps improve a cross-validation result
 * (common/ppdecide.h, docs/postprocess.md). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "ppdecide.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "determine-postprocessing",
	.summary = "decide nnU-Net's connected-component postprocessing on cross-validation results",
	.usage = "  nnp determine-postprocessing -i PRED_DIR -r REF_DIR [options]",
	.options =
		"  -i, --input DIR        the (cross-validation) predictions CASE<file_ending>\n"
		"  -r, --ref DIR          the reference segmentations (same file names)\n"
		"  -d, --dataset-json F   labels, regions, ignore label, file_ending (default PRED_DIR/dataset.json)\n"
		"  -p, --plans-json F     accepted for nnU-Net's command line; checked, not needed\n"
		"                         (default PRED_DIR/plans.json when present)\n"
		"      --remove-postprocessed  do not keep PRED_DIR/postprocessed/ (nnU-Net's flag)\n"
		"  -f, --force            replace an existing postprocessing.json and postprocessed/\n"
		"  -j, --threads N        cases in parallel (default: NNP_THREADS or all cores)\n",
	.details =
		"nnU-Net's determine_postprocessing (nnunet-facts 10.1).  Baseline: PRED_DIR/summary.json,\n"
		"evaluated first (nnp evaluate's numbers) when it is missing.  Step 1: all foreground labels\n"
		"as one object, keep its largest component(s) in every prediction; accepted if the\n"
		"foreground mean Dice improves and no class's mean Dice gets worse.  Step 2 (more than one\n"
		"label or region): each label (or region) in turn on the current result, accepted if its\n"
		"own mean Dice improves.  A comparison with NaN is false, as in Python.\n"
		"Writes PRED_DIR/postprocessing.json (nnU-Net's fields; the rule file of 'nnp postprocess\n"
		"--rules', 'nnp apply-postprocessing' and 'nnp predict --postprocess'), PRED_DIR/postprocessed/\n"
		"(the result and its summary.json) and PRED_DIR/summary.json if it was missing; all of them\n"
		"only when everything succeeded.  nnU-Net's postprocessing.pkl is not written.\n"
		"Memory: about 9 bytes per voxel per case in flight.\n"
		"\n"
		"Example:\n"
		"  nnp determine-postprocessing -i crossval_results_folds_0_1_2_3_4 -r gt_segmentations -j 4\n",
};

struct cmdline {
	struct nnp_ppd_opts o;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_RM = 256 };
	static const struct option opts[] = {
		{ "input", required_argument, NULL, 'i' },
		{ "ref", required_argument, NULL, 'r' },
		{ "dataset-json", required_argument, NULL, 'd' },
		{ "plans-json", required_argument, NULL, 'p' },
		{ "remove-postprocessed", no_argument, NULL, O_RM },
		{ "force", no_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, ":i:r:d:p:fj:", opts, NULL)) != -1) {
		switch (c) {
		case 'i': cl->o.pred_dir = optarg; break;
		case 'r': cl->o.ref_dir = optarg; break;
		case 'd': cl->o.dataset_json = optarg; break;
		case 'p': cl->o.plans_json = optarg; break;
		case O_RM: cl->o.remove_postprocessed = 1; break;
		case 'f': cl->o.force = 1; break;
		case 'j': cl->o.threads = nnp_threads_from_arg(optarg); break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (!cl->o.pred_dir || !cl->o.ref_dir)
		nnp_usage_error("give -i PRED_DIR and -r REF_DIR");
}

/* Signals: stop at the next case; the staging folder is removed, then the
 * signal is raised again. */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void report(const struct nnp_ppd_result *r)
{
	if (r->unpredicted)
		nnp_warn("%zu reference file(s) have no prediction (first: '%s'): postprocessing should be "
			 "determined on the entire dataset", r->unpredicted, r->first_unpredicted);
	if (r->spacing_differs)
		nnp_warn("%zu case(s): prediction and reference voxel spacings differ", r->spacing_differs);
	for (size_t i = 0; i < r->nsteps; i++) {
		const struct nnp_ppd_step *s = &r->steps[i];
		nnp_info("%s: %s mean Dice %.5f -> %.5f: %s%s%s", s->what, i ? "its" : "foreground", s->before,
			 s->after, s->accepted ? "accepted" : "rejected", s->why ? ", " : "", s->why ? s->why : "");
	}
	nnp_info("%zu case(s), %zu step(s) kept, foreground mean Dice %.5f -> %.5f -> %s", r->ncases, r->rules->n,
		 r->fg_before, r->fg_after, r->postprocessing_json);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_ppd_result r;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.o.threads);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	cl.o.stop = &stop_signal;
	rc = nnp_ppd_run(&cl.o, &r);
	if (stop_signal) {
		signal(stop_signal, SIG_DFL);
		raise(stop_signal);
	}
	if (rc)
		nnp_die(rc);
	report(&r);
	nnp_ppd_result_release(&r);
	return nnp_close_stdout();
}
