/* nnp-train — nnU-Net's trainer: one fold of one configuration. */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "err.h"
#include "model.h"
#include "prog.h"
#include "train.h"
#include "trainnet_cuda.h"

static const struct nnp_proginfo info = {
	.name = "train",
	.summary = "train one fold of an nnU-Net configuration (nnUNetv2_train), resumable",
	.usage = "  nnp train -d DATASET -c CONFIGURATION -f FOLD [options]\n"
		 "  nnp train --preprocessed DIR -c CONFIGURATION -f FOLD -o FOLD_DIR [options]\n"
		 "  nnp sample ... | nnp augment ... | nnp train --preprocessed DIR -c C -f F -o DIR --stream -",
	.options =
		"  -d, --dataset D          preprocessed dataset: Dataset<id>_<name> or id in $nnUNet_preprocessed\n"
		"      --preprocessed DIR   the preprocessed dataset folder itself\n"
		"  -c, --configuration C    e.g. 3d_fullres, 2d\n"
		"  -f, --fold F             fold of splits_final.json (0..), or 'all'\n"
		"  -p, --plans NAME         plans identifier (default nnUNetPlans)\n"
		"  -tr, --trainer NAME      trainer name recorded in the results (default nnUNetTrainer;\n"
		"                           the recipe is nnUNetTrainer's)\n"
		"  -o, --output DIR         the fold folder (default $nnUNet_results/<dataset>/\n"
		"                           TRAINER__PLANS__CONFIGURATION/fold_F)\n"
		"      --epochs N           epochs (default 1000)\n"
		"      --iters N            training iterations per epoch (default 250)\n"
		"      --val-iters N        validation iterations per epoch (default 50)\n"
		"      --save-every N       checkpoint_latest every N epochs (default 1; nnU-Net: 50)\n"
		"      --batch-size B       samples per batch (default: the plans')\n"
		"      --lr LR              initial learning rate (default 0.01)\n"
		"      --seed S             weights and sample streams (default 12345)\n"
		"      --continue, --c      resume from checkpoint_final/_latest/_best\n"
		"      --val                only the final validation (needs checkpoint_final)\n"
		"      --no-final-val       skip the final validation\n"
		"      --npz, --save-probabilities  the final validation also writes\n"
		"                           validation/CASE_probabilities (for nnp find-best's ensembles)\n"
		"      --stream FILE|-      training samples from this stream (nnp augment output)\n"
		"                           instead of starting nnp sample | nnp augment per epoch\n"
		"      --aug-threads N      -j of the nnp augment the trainer starts\n"
		"      --device D           cpu (default), cuda, cuda:N (the cuDNN backend: not yet\n"
		"                           verified on a GPU, see docs/gpu.md)\n"
		"  -j, --threads N          threads for the network (default: NNP_THREADS or all cores)\n",
	.details =
		"nnU-Net's recipe (nnunet-facts 7): SGD Nesterov 0.99, weight decay 3e-5, PolyLR,\n"
		"gradient clipping at 12, Dice + CE with deep supervision, EMA pseudo-Dice for\n"
		"checkpoint_best. The fold folder receives checkpoint_latest/best/final.nnpm (nnpipe\n"
		"model files: nnp infer/predict read them; nnp export-model writes .pth), training_log.tsv,\n"
		"progress.png and validation/ with summary.json. SIGINT/SIGTERM: checkpoint, then exit\n"
		"130/143; --continue resumes, also after kill -9 (from the last checkpoint).\n",
};

struct cmdline {
	struct nnp_train_cfg t;
	const char *dataset, *pre, *output, *device;
	int threads;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_PRE = 256, O_EPOCHS, O_ITERS, O_VITERS, O_SAVE, O_LR, O_SEED, O_CONT, O_VAL, O_NOVAL, O_STREAM,
	       O_AUGJ, O_DEVICE, O_TRAINER, O_NPZ };
	static const struct option opts[] = {
		{ "dataset", required_argument, NULL, 'd' }, { "preprocessed", required_argument, NULL, O_PRE },
		{ "configuration", required_argument, NULL, 'c' }, { "fold", required_argument, NULL, 'f' },
		{ "plans", required_argument, NULL, 'p' }, { "trainer", required_argument, NULL, O_TRAINER },
		{ "tr", required_argument, NULL, O_TRAINER }, { "output", required_argument, NULL, 'o' },
		{ "epochs", required_argument, NULL, O_EPOCHS }, { "iters", required_argument, NULL, O_ITERS },
		{ "val-iters", required_argument, NULL, O_VITERS }, { "save-every", required_argument, NULL, O_SAVE },
		{ "batch-size", required_argument, NULL, 'b' }, { "lr", required_argument, NULL, O_LR },
		{ "seed", required_argument, NULL, O_SEED }, { "continue", no_argument, NULL, O_CONT },
		{ "c", no_argument, NULL, O_CONT }, { "val", no_argument, NULL, O_VAL },
		{ "no-final-val", no_argument, NULL, O_NOVAL }, { "stream", required_argument, NULL, O_STREAM },
		{ "aug-threads", required_argument, NULL, O_AUGJ }, { "device", required_argument, NULL, O_DEVICE },
		{ "threads", required_argument, NULL, 'j' }, { "npz", no_argument, NULL, O_NPZ },
		{ "save-probabilities", no_argument, NULL, O_NPZ }, { NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	nnp_train_cfg_default(&cl->t);
	cl->t.fold = NULL;
	while ((c = getopt_long_only(argc, argv, "d:c:f:p:o:b:j:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cl->dataset = optarg; break;
		case O_PRE: cl->pre = optarg; break;
		case 'c': cl->t.config = optarg; break;
		case 'f': cl->t.fold = optarg; break;
		case 'p': cl->t.plans_name = optarg; break;
		case O_TRAINER: cl->t.trainer = optarg; break;
		case 'o': cl->output = optarg; break;
		case O_EPOCHS: cl->t.epochs = (int)nnp_parse_ll("--epochs", optarg, 1, 1000000); break;
		case O_ITERS: cl->t.iters = (int)nnp_parse_ll("--iters", optarg, 1, 100000000); break;
		case O_VITERS: cl->t.val_iters = (int)nnp_parse_ll("--val-iters", optarg, 0, 100000000); break;
		case O_SAVE: cl->t.save_every = (int)nnp_parse_ll("--save-every", optarg, 0, 1000000); break;
		case 'b': cl->t.batch_size = (int)nnp_parse_ll("--batch-size", optarg, 1, 1 << 16); break;
		case O_LR:
			if ((cl->t.initial_lr = nnp_parse_double("--lr", optarg)) <= 0)
				nnp_usage_error("--lr must be positive");
			break;
		case O_SEED: cl->t.seed = (uint64_t)nnp_parse_ll("--seed", optarg, 0, UINT32_MAX); break;
		case O_CONT: cl->t.resume = 1; break;
		case O_VAL: cl->t.val_only = 1; break;
		case O_NOVAL: cl->t.final_val = 0; break;
		case O_NPZ: cl->t.save_probabilities = 1; break;
		case O_STREAM: cl->t.train_stream = optarg; break;
		case O_AUGJ: cl->t.aug_threads = nnp_threads_from_arg(optarg); break;
		case O_DEVICE: cl->device = optarg; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (!cl->t.config)
		nnp_usage_error("-c CONFIGURATION is required");
	if (!cl->t.fold)
		nnp_usage_error("-f FOLD is required");
	if (strcmp(cl->t.fold, "all") && strspn(cl->t.fold, "0123456789") != strlen(cl->t.fold))
		nnp_usage_error("-f: want a fold number or 'all', not '%s'", cl->t.fold);
	if (!cl->dataset == !cl->pre)
		nnp_usage_error("give -d DATASET or --preprocessed DIR");
}

/* $nnUNet_results/<dataset folder name>/TRAINER__PLANS__CONFIG/fold_F */
static void default_output(const struct cmdline *cl, const char *pre, char *out, size_t n)
{
	const char *res = getenv("nnUNet_results"), *base = strrchr(pre, '/');
	base = base ? base + 1 : pre;
	if (!res || !*res)
		nnp_usage_error("give -o FOLD_DIR or set $nnUNet_results");
	else if (snprintf(out, n, "%s/%s/%s__%s__%s/fold_%s", res, base, cl->t.trainer, cl->t.plans_name, cl->t.config,
		     cl->t.fold) >= (int)n)
		nnp_usage_error("output path too long");
}

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	char pre[PATH_MAX], out[PATH_MAX + 512], bin[PATH_MAX];
	struct sigaction sa;
	int rc, dev;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	if (cl.device && (rc = nnp_model_parse_device(cl.device, &dev)))
		nnp_die(rc);
	if (cl.device && dev >= 0) {
		if (!nnp_cuda_tnet_available(dev))
			nnp_dief(NNP_EUSAGE, "--device %s: no such CUDA device (or a build without CUDA)", cl.device);
		nnp_warn("--device %s: the CUDA training backend has not been verified on a GPU yet (docs/gpu.md)",
			 cl.device);
		cl.t.device = dev;
	}
	if (cl.dataset) {
		if ((rc = nnp_dataset_resolve(cl.dataset, "nnUNet_preprocessed", pre, sizeof pre)))
			nnp_die(rc);
	} else {
		snprintf(pre, sizeof pre, "%s", cl.pre);
	}
	if (cl.output)
		snprintf(out, sizeof out, "%s", cl.output);
	else
		default_output(&cl, pre, out, sizeof out);
	if (cl.t.train_stream && !strcmp(cl.t.train_stream, "-"))
		nnp_refuse_tty_stdin();
	nnp_self_dir(bin, sizeof bin);
	if (!bin[0])
		nnp_dief(NNP_EIO, "cannot find this program's directory (/proc/self/exe)");
	cl.t.pre_dir = pre;
	cl.t.out_dir = out;
	cl.t.bin_dir = bin;
	cl.t.stop = &stop_signal;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	rc = nnp_train_run(&cl.t);
	if (rc == NNP_TRAIN_STOPPED)
		return 128 + (int)stop_signal;
	if (rc)
		nnp_die(rc);
	return 0;
}
