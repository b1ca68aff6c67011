/* nnp-import-model — an nnU-Net results folder -> one nnpipe model file. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "model.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "import-model",
	.summary = "convert a trained nnU-Net model folder into one nnpipe model file (.nnpm)",
	.usage = "  nnp import-model -m MODEL_FOLDER [-f F...] [--checkpoint NAME] -o MODEL.nnpm",
	.options =
		"  -m, --model DIR        an nnU-Net results folder (TRAINER__PLANS__CONFIG)\n"
		"  -f, --folds F [F...]   folds to include (default 0 1 2 3 4; or 0,1)\n"
		"      --checkpoint NAME  checkpoint file in each fold (default checkpoint_final.pth)\n"
		"  -o, --output FILE      the model file (written atomically)\n"
		"      --force            overwrite an existing output\n",
	.details =
		"The file holds the plans, dataset.json, configuration, trainer, mirror axes and,\n"
		"per fold, exactly the parameters the plans' architecture uses (float32, no\n"
		"optimizer state, no aliases) with their sha256 and the source checkpoint's sha256.\n"
		"nnp infer -m MODEL.nnpm and nnp predict -m MODEL.nnpm read it directly; every\n"
		"fold's payload is verified against its sha256 when it is loaded. Format:\n"
		"docs/inference.md, 'Model files'.\n",
};

static int is_fold(const char *s)
{
	return !strcmp(s, "all") || (*s && strspn(s, "0123456789") == strlen(s));
}

int main(int argc, char **argv)
{
	enum { O_CKPT = 256, O_FORCE };
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' }, { "folds", required_argument, NULL, 'f' },
		{ "checkpoint", required_argument, NULL, O_CKPT }, { "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, O_FORCE }, { NULL, 0, NULL, 0 }
	};
	const char *model = NULL, *out = NULL, *folds[NNP_MODEL_MAX_FOLDS];
	struct nnp_model_opts mo = { NULL, 0, NULL, NULL, { -1, NNP_PREC_FP32 } };
	int nf = 0, force = 0, c, rc;

	nnp_proginit(&argc, argv, &info);
	while ((c = getopt_long(argc, argv, "m:f:o:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'f':
			for (char *t = strtok(optarg, ","); t; t = strtok(NULL, ",")) {
				if (is_fold(t) && nf < NNP_MODEL_MAX_FOLDS)
					folds[nf++] = t;
				else
					nnp_usage_error("-f: bad fold '%s' (or more than %d)", t, NNP_MODEL_MAX_FOLDS);
			}
			while (optind < argc && is_fold(argv[optind]) && nf < NNP_MODEL_MAX_FOLDS)
				folds[nf++] = argv[optind++];
			break;
		case O_CKPT: mo.checkpoint = optarg; break;
		case 'o': out = optarg; break;
		case O_FORCE: force = 1; break;
		default: nnp_bad_option(argv);
		}
	}
	if (!model || !out)
		nnp_usage_error("give -m MODEL_FOLDER and -o MODEL.nnpm");
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (nf) {
		mo.folds = folds;
		mo.nfolds = nf;
	}
	if ((rc = nnp_model_import(model, &mo, out, force)))
		nnp_die(rc);
	nnp_info("wrote %s", out);
	return 0;
}
