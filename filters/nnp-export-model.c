/* nnp-export-model — an nnpipe model (.nnpm) or results folder -> an nnU-Net
 * results folder that nnU-Net's own predictor loads (common/model_export.c). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "model.h"
#include "model_export.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "export-model",
	.summary = "write an nnpipe model back as an nnU-Net results folder (plans.json, dataset.json, "
		   "fold_N/checkpoint_final.pth)",
	.usage = "  nnp export-model MODEL -o OUT_DIR [--nnunet] [-f F...] [--force]",
	.options =
		"  MODEL, -m, --model M   an nnpipe model file (.nnpm) or an nnU-Net results folder\n"
		"  -o, --output DIR       the results folder to write (created if missing); name it\n"
		"                         TRAINER__PLANS__CONFIG for nnUNetv2_predict -d/-tr/-p/-c\n"
		"      --nnunet           nnU-Net v2's format (the default, and the only one)\n"
		"  -f, --folds F [F...]   folds to write (default: every fold of MODEL; or 0,1)\n"
		"      --force            replace existing checkpoints and a different plans.json or\n"
		"                         dataset.json\n",
	.details =
		"Each checkpoint is a PyTorch zip file (STORED members, 64-byte aligned data) holding\n"
		"the dict nnUNetTrainer.save_checkpoint writes: network_weights under nnU-Net's\n"
		"full state_dict names (aliases sharing storage), init_args, trainer_name,\n"
		"inference_allowed_mirroring_axes, current_epoch, a fresh SGD optimizer_state,\n"
		"empty logging. Deep-supervision heads a model file does not carry are written as\n"
		"zeros (nnU-Net does not use them at inference). Nothing is written unless every\n"
		"fold succeeds. Details: docs/export-model.md.\n\n"
		"Example:\n"
		"  nnp export-model m.nnpm --nnunet \\\n"
		"      -o $nnUNet_results/Dataset901_X/nnUNetTrainer__nnUNetPlans__3d_fullres\n",
};

struct cmdline {
	const char *model, *out;
	const char *folds[NNP_MODEL_MAX_FOLDS];
	int nfolds, force;
};

static int is_fold(const char *s)
{
	return !strcmp(s, "all") || (*s && strspn(s, "0123456789") == strlen(s));
}

static void add_folds(struct cmdline *cl, char *arg, int argc, char **argv)
{
	for (char *t = strtok(arg, ","); t; t = strtok(NULL, ",")) {
		if (!is_fold(t) || cl->nfolds == NNP_MODEL_MAX_FOLDS)
			nnp_usage_error("-f: bad fold '%s' (or more than %d)", t, NNP_MODEL_MAX_FOLDS);
		cl->folds[cl->nfolds++] = t;
	}
	while (optind < argc && is_fold(argv[optind]) && cl->nfolds < NNP_MODEL_MAX_FOLDS)
		cl->folds[cl->nfolds++] = argv[optind++];
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_FORCE = 256, O_NNUNET };
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' }, { "output", required_argument, NULL, 'o' },
		{ "folds", required_argument, NULL, 'f' }, { "force", no_argument, NULL, O_FORCE },
		{ "nnunet", no_argument, NULL, O_NNUNET }, { NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "m:o:f:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': cl->model = optarg; break;
		case 'o': cl->out = optarg; break;
		case 'f': add_folds(cl, optarg, argc, argv); break;
		case O_FORCE: cl->force = 1; break;
		case O_NNUNET: break;
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc && !cl->model)
		cl->model = argv[optind++];
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (!cl->model || !cl->out)
		nnp_usage_error("give MODEL and -o OUT_DIR");
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_model_export_opts o = { NULL, 0, 0 };
	struct nnp_model_export_report rep;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if (cl.nfolds) {
		o.folds = cl.folds;
		o.nfolds = cl.nfolds;
	}
	o.force = cl.force;
	if ((rc = nnp_model_export(cl.model, cl.out, &o, &rep)))
		nnp_die(rc);
	if (rep.zero_heads)
		nnp_info("%d deep-supervision head tensor%s not in '%s' written as zeros (unused at inference)",
			 rep.zero_heads, rep.zero_heads == 1 ? "" : "s", cl.model);
	nnp_info("wrote %s: %d fold%s", cl.out, rep.nfolds, rep.nfolds == 1 ? "" : "s");
	return 0;
}
