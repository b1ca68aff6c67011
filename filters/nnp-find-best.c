/* nnp-find-best — nnUNetv2_find_best_configuration: the best model or
 * ensemble from the cross-validation, its postprocessing, the inference
 * instructions (common/findbest.h). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "findbest.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "find-best",
	.summary = "pick the best configuration or ensemble from the cross-validation (nnUNetv2_find_best_configuration)",
	.usage = "  nnp find-best -d DATASET [-c CONFIG...] [-p PLANS...] [-tr TRAINER...] [-f FOLD...] [options]\n"
		 "  nnp find-best -d DATASET --script -i INPUT_DIR -o OUTPUT_DIR [-j N]",
	.options =
		"  -d, --dataset D        Dataset<id>_<name> or id ($nnUNet_preprocessed and $nnUNet_results)\n"
		"  -c C...                configurations (default 2d 3d_fullres 3d_lowres 3d_cascade_fullres;\n"
		"                         those not in the plans are skipped, untrained ones are an error)\n"
		"  -p P...                plans identifiers (default nnUNetPlans)\n"
		"  -tr T...               trainers (default nnUNetTrainer)\n"
		"  -f F...                folds (default 0 1 2 3 4)\n"
		"      --disable-ensembling   no pairwise ensembles\n"
		"      --no-overwrite     reuse existing cross-validation and ensemble folders\n"
		"  -j N                   threads / jobs for evaluation, ensembling, postprocessing\n"
		"      --script           print a bash script that predicts -i INPUT_DIR into -o OUTPUT_DIR\n"
		"                         with the winner (predict, ensemble, postprocessing), from\n"
		"                         inference_information.json; nothing is recomputed\n",
	.details =
		"Per model: every fold's validation/ into crossval_results_folds_F_F.../ (+ summary.json),\n"
		"then every pair ensembled (needs nnp train --npz) into $nnUNet_results/<dataset>/ensembles/;\n"
		"the highest foreground-mean Dice wins (ties: the first; single models before ensembles);\n"
		"nnp determine-postprocessing runs on the winner. Writes inference_information.json and\n"
		"inference_instructions.txt in $nnUNet_results/<dataset>/ and prints the results.\n"
		"Example: nnp find-best -d 990 -c 2d 3d_fullres -f 0 1 2 3 4\n"
		"         nnp find-best -d 990 --script -i imagesTs -o pred | bash\n",
};

#define MAX_LIST 64

struct cmdline {
	const char *dataset, *input, *output;
	const char *configs[MAX_LIST], *plans[MAX_LIST], *trainers[MAX_LIST];
	size_t nconfigs, nplans, ntrainers;
	int folds[MAX_LIST];
	size_t nfolds;
	int ensembling, overwrite, threads, script;
};

/* -c a b c: the option's argument and the words after it, up to the next option. */
static size_t take_list(int argc, char **argv, const char *opt, const char **out)
{
	size_t n = 0;
	out[n++] = optarg;
	while (optind < argc && argv[optind][0] != '-') {
		if (n == MAX_LIST)
			nnp_usage_error("%s: at most %d values", opt, MAX_LIST);
		else
			out[n++] = argv[optind++];
	}
	return n;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_NOENS = 256, O_NOOVER, O_SCRIPT, O_TR };
	static const struct option opts[] = {
		{ "dataset", required_argument, NULL, 'd' }, { "tr", required_argument, NULL, O_TR },
		{ "disable-ensembling", no_argument, NULL, O_NOENS },
		{ "disable_ensembling", no_argument, NULL, O_NOENS },
		{ "no-overwrite", no_argument, NULL, O_NOOVER }, { "no_overwrite", no_argument, NULL, O_NOOVER },
		{ "script", no_argument, NULL, O_SCRIPT }, { "input", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' }, { NULL, 0, NULL, 0 }
	};
	const char *folds[MAX_LIST];
	size_t nf = 0;
	int c;
	memset(cl, 0, sizeof *cl);
	cl->ensembling = cl->overwrite = 1;
	while ((c = getopt_long_only(argc, argv, "d:c:p:f:j:i:o:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cl->dataset = optarg; break;
		case 'c': cl->nconfigs = take_list(argc, argv, "-c", cl->configs); break;
		case 'p': cl->nplans = take_list(argc, argv, "-p", cl->plans); break;
		case O_TR: cl->ntrainers = take_list(argc, argv, "-tr", cl->trainers); break;
		case 'f': nf = take_list(argc, argv, "-f", folds); break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		case 'i': cl->input = optarg; break;
		case 'o': cl->output = optarg; break;
		case O_NOENS: cl->ensembling = 0; break;
		case O_NOOVER: cl->overwrite = 0; break;
		case O_SCRIPT: cl->script = 1; break;
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (!cl->dataset)
		nnp_usage_error("-d DATASET is required");
	if (cl->script && (!cl->input || !cl->output))
		nnp_usage_error("--script needs -i INPUT_DIR and -o OUTPUT_DIR");
	if (!cl->script && (cl->input || cl->output))
		nnp_usage_error("-i/-o go with --script");
	for (size_t i = 0; i < nf; i++)
		cl->folds[i] = (int)nnp_parse_ll("-f", folds[i], 0, 999);
	cl->nfolds = nf;
}

static void defaults(struct cmdline *cl)
{
	static const char *const configs[] = { "2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres" };
	if (!cl->nconfigs)
		for (size_t i = 0; i < 4; i++)
			cl->configs[cl->nconfigs++] = configs[i];
	if (!cl->nplans)
		cl->plans[cl->nplans++] = "nnUNetPlans";
	if (!cl->ntrainers)
		cl->trainers[cl->ntrainers++] = "nnUNetTrainer";
	if (!cl->nfolds)
		for (int i = 0; i < 5; i++)
			cl->folds[cl->nfolds++] = i;
}

/* $env/<name of the preprocessed folder>, or "" when $env is unset. */
static void sibling(const char *env, const char *pre, char *out, size_t n)
{
	const char *root = getenv(env), *base = strrchr(pre, '/');
	base = base ? base + 1 : pre;
	if (root && *root)
		snprintf(out, n, "%s/%s", root, base);
	else
		out[0] = '\0';
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_find_best_opts o;
	char pre[PATH_MAX], res[PATH_MAX], raw[PATH_MAX], bin[PATH_MAX];
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	defaults(&cl);
	nnp_threads_init(cl.threads);
	if ((rc = nnp_dataset_resolve(cl.dataset, "nnUNet_preprocessed", pre, sizeof pre)))
		nnp_die(rc);
	sibling("nnUNet_results", pre, res, sizeof res);
	if (!res[0])
		nnp_usage_error("$nnUNet_results is not set");
	if (!nnp_is_dir(res))
		nnp_dief(NNP_EDATA, "'%s' does not exist: no trained models for this dataset", res);
	if (cl.script) {
		rc = nnp_find_best_script(res, cl.input, cl.output, cl.threads, stdout);
		if (rc)
			nnp_die(rc);
		return nnp_close_stdout();
	}
	sibling("nnUNet_raw", pre, raw, sizeof raw);
	nnp_self_dir(bin, sizeof bin);
	memset(&o, 0, sizeof o);
	o.dataset_arg = cl.dataset;
	o.pre_dir = pre;
	o.results_dir = res;
	o.raw_dir = raw[0] && nnp_is_dir(raw) ? raw : NULL;
	o.trainers = cl.trainers;
	o.ntrainers = cl.ntrainers;
	o.plans = cl.plans;
	o.nplans = cl.nplans;
	o.configs = cl.configs;
	o.nconfigs = cl.nconfigs;
	o.folds = cl.folds;
	o.nfolds = cl.nfolds;
	o.ensembling = cl.ensembling;
	o.overwrite = cl.overwrite;
	o.threads = cl.threads;
	o.bin_dir = bin;
	o.report = stdout;
	if ((rc = nnp_find_best(&o)))
		nnp_die(rc);
	return nnp_close_stdout();
}
