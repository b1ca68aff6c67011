/* nnp-apply-postprocessing — nnUNetv2_apply_postprocessing: the steps of a
 * rule file (postprocessing.json) on every segmentation of a folder
 * (common/pprules.h, docs/postprocess.md). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "pprules.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "apply-postprocessing",
	.summary = "apply a postprocessing rule file to a folder of segmentations",
	.usage = "  nnp apply-postprocessing -i IN_DIR -o OUT_DIR --rules postprocessing.json [options]",
	.options =
		"  -i, --input DIR        segmentations CASE<file_ending>\n"
		"  -o, --output DIR       where the results go (created when missing)\n"
		"      --rules FILE       postprocessing.json of nnp determine-postprocessing (or of nnU-Net)\n"
		"  -d, --dataset-json F   file_ending (default IN_DIR/dataset.json); copied to OUT_DIR\n"
		"  -p, --plans-json F     copied to OUT_DIR (default IN_DIR/plans.json when present)\n"
		"  -f, --force            replace existing output files\n"
		"  -j, --threads N        cases in parallel (default: NNP_THREADS or all cores)\n",
	.details =
		"Each file is read, the rule file's steps are applied in order (keep the largest\n"
		"connected component(s) of the voxels whose value is one of labels_or_regions, full\n"
		"connectivity; removed voxels become 0) and the result is written with the input's\n"
		"header: same dtype, shape, affine, qform/sform and units; a file no step changes is\n"
		"copied byte for byte.  Segmentations must be uint8 or int16 (as nnU-Net and nnp write\n"
		"them).  The outputs appear only when every case succeeded.  Same result as\n"
		"'nnp read --role seg F | nnp postprocess --rules R | nnp write -o G'.\n"
		"\n"
		"Example:\n"
		"  nnp apply-postprocessing -i pred -o pred_pp --rules cv/postprocessing.json -j 4\n",
};

struct cmdline {
	struct nnp_ppapply_opts o;
	const char *rules;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_RULES = 256 };
	static const struct option opts[] = {
		{ "input", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "rules", required_argument, NULL, O_RULES },
		{ "dataset-json", required_argument, NULL, 'd' },
		{ "plans-json", required_argument, NULL, 'p' },
		{ "force", no_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, ":i:o:d:p:fj:", opts, NULL)) != -1) {
		switch (c) {
		case 'i': cl->o.in_dir = optarg; break;
		case 'o': cl->o.out_dir = optarg; break;
		case O_RULES: cl->rules = optarg; break;
		case 'd': cl->o.dataset_json = optarg; break;
		case 'p': cl->o.plans_json = optarg; break;
		case 'f': cl->o.force = 1; break;
		case 'j': cl->o.threads = nnp_threads_from_arg(optarg); break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (!cl->o.in_dir || !cl->o.out_dir || !cl->rules)
		nnp_usage_error("give -i IN_DIR, -o OUT_DIR and --rules postprocessing.json");
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_pprules *rules;
	struct nnp_ppapply_result res;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.o.threads);
	if ((rc = nnp_pprules_load(cl.rules, &rules)))
		nnp_die(rc);
	cl.o.rules = rules;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	cl.o.stop = &stop_signal;
	rc = nnp_pprules_apply_folder(&cl.o, &res);
	nnp_pprules_free(rules);
	if (stop_signal) {
		signal(stop_signal, SIG_DFL);
		raise(stop_signal);
	}
	if (rc)
		nnp_die(rc);
	nnp_info("%zu case(s), %zu changed, %lld voxel(s) removed by %s -> %s", res.ncases, res.changed,
		 (long long)res.removed, cl.rules, cl.o.out_dir);
	return nnp_close_stdout();
}
