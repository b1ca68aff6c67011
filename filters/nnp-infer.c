/* nnp-infer — sliding-window prediction of preprocessed images: logits. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "frame.h"
#include "model.h"
#include "predict.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "infer",
	.summary = "predict logits of preprocessed images with a trained model (sliding window, TTA, folds)",
	.usage = "  nnp infer -m MODEL_FOLDER|MODEL.nnpm [options] [STREAM]\n"
		 "  nnp infer -d DATASET -c CONFIGURATION [-tr TRAINER] [-p PLANS] [options] [STREAM]",
	.options =
		"  -m, --model DIR|FILE     an nnU-Net results folder (TRAINER__PLANS__CONFIG) or an\n"
		"                           nnpipe model file (nnp import-model)\n"
		"  -d, --dataset D          with -c: $nnUNet_results/DatasetD.../TRAINER__PLANS__CONFIG\n"
		"  -c, --configuration C    e.g. 3d_fullres\n"
		"  -tr, --trainer T         trainer class (default nnUNetTrainer)\n"
		"  -p, --plans NAME         plans identifier (default nnUNetPlans)\n"
		"  -f, --folds F [F...]     folds to ensemble (default 0 1 2 3 4; 'all'; or 0,1)\n"
		"      --checkpoint NAME    checkpoint file in each fold (default checkpoint_final.pth)\n"
		"      --disable-tta        no test-time mirroring (default: mirror on the model's axes)\n"
		"      --step-size S        tile step as a fraction of the patch (default 0.5)\n"
		"      --fp16-compat        accumulate in float16 exactly as nnU-Net does (float16 logits)\n"
		"      --precision P        fp32 (default) or bf16 convolutions\n"
		"      --device D           cpu (default), cuda, cuda:N\n"
		"      --batch N            network inputs per forward pass (default 1)\n"
		"      --accumulate A       auto (default), logits, features: what the window sums;\n"
		"                           features = the last decoder features of every fold, with\n"
		"                           the (linear) heads applied per slice: less memory when\n"
		"                           features x folds < classes, same logits to fp32 rounding\n"
		"      --max-memory SIZE    refuse a case whose estimate exceeds SIZE (default 90% of RAM)\n"
		"  -j, --threads N          threads (default: NNP_THREADS or all cores)\n",
	.details =
		"Input: image frames as nnp preprocess writes them (float32, the configuration's\n"
		"geometry, props carried). Output: one logits frame per image (role logits, K\n"
		"channels, same geometry and props) for nnp export; other frames pass through.\n"
		"Tiles, Gaussian weights, mirroring and fold averaging are nnU-Net's; the logits\n"
		"are accumulated in float32 (nnU-Net: float16, see docs/inference.md) unless\n"
		"--fp16-compat. Memory: the input, a window of patch-depth slices of logits and\n"
		"the network's activations; logits are written slab by slab.\n",
};

struct cmdline {
	const char *model, *dataset, *config, *trainer, *plans, *checkpoint, *in;
	const char *folds[NNP_MODEL_MAX_FOLDS];
	int nfolds;
	struct nnp_predict_opts po;
	struct nnp_engine_opts eo;
};

static int is_fold(const char *s)
{
	return !strcmp(s, "all") || (*s && strspn(s, "0123456789") == strlen(s));
}

static void add_folds(struct cmdline *cl, char *arg)
{
	for (char *tok = strtok(arg, ","); tok; tok = strtok(NULL, ",")) {
		if (!is_fold(tok))
			nnp_usage_error("-f: fold '%s' is not a number or 'all'", tok);
		if (cl->nfolds == NNP_MODEL_MAX_FOLDS)
			nnp_usage_error("-f: at most %d folds", NNP_MODEL_MAX_FOLDS);
		cl->folds[cl->nfolds++] = tok;
	}
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_CKPT = 256, O_NOTTA, O_STEP, O_FP16, O_PREC, O_DEV, O_BATCH, O_MEM, O_TR, O_ACC };
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },      { "dataset", required_argument, NULL, 'd' },
		{ "configuration", required_argument, NULL, 'c' }, { "trainer", required_argument, NULL, O_TR },
		{ "tr", required_argument, NULL, O_TR },        { "plans", required_argument, NULL, 'p' },
		{ "folds", required_argument, NULL, 'f' },      { "checkpoint", required_argument, NULL, O_CKPT },
		{ "disable-tta", no_argument, NULL, O_NOTTA },  { "step-size", required_argument, NULL, O_STEP },
		{ "fp16-compat", no_argument, NULL, O_FP16 },   { "precision", required_argument, NULL, O_PREC },
		{ "device", required_argument, NULL, O_DEV },   { "batch", required_argument, NULL, O_BATCH },
		{ "max-memory", required_argument, NULL, O_MEM }, { "accumulate", required_argument, NULL, O_ACC }, { "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	unsigned long long phys = nnp_phys_mem();
	int c, threads = 0;

	memset(cl, 0, sizeof *cl);
	nnp_predict_opts_init(&cl->po);
	cl->eo.device = -1;
	cl->po.max_memory = phys ? phys / 10 * 9 : 0;
	cl->in = "-";
	while ((c = getopt_long_only(argc, argv, "m:d:c:p:f:j:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': cl->model = optarg; break;
		case 'd': cl->dataset = optarg; break;
		case 'c': cl->config = optarg; break;
		case O_TR: cl->trainer = optarg; break;
		case 'p': cl->plans = optarg; break;
		case 'f':
			add_folds(cl, optarg);
			while (optind < argc && is_fold(argv[optind])) /* nnU-Net style: -f 0 1 2 */
				add_folds(cl, argv[optind++]);
			break;
		case O_CKPT: cl->checkpoint = optarg; break;
		case O_NOTTA: cl->po.tta = 0; break;
		case O_STEP:
			cl->po.sw.step = nnp_parse_double("--step-size", optarg);
			if (!(cl->po.sw.step > 0 && cl->po.sw.step <= 1))
				nnp_usage_error("--step-size must be in (0, 1], not '%s'", optarg);
			break;
		case O_FP16: cl->po.sw.fp16_compat = 1; cl->po.out_dtype = NNP_F16; break;
		case O_PREC:
			if (!strcmp(optarg, "fp32"))
				cl->eo.prec = NNP_PREC_FP32;
			else if (!strcmp(optarg, "bf16"))
				cl->eo.prec = NNP_PREC_BF16;
			else
				nnp_usage_error("--precision: want fp32 or bf16, not '%s'", optarg);
			break;
		case O_DEV:
			if (nnp_model_parse_device(optarg, &cl->eo.device))
				nnp_usage_error("%s", nnp_err_msg());
			break;
		case O_BATCH: cl->po.sw.max_batch = (int)nnp_parse_ll("--batch", optarg, 1, 1024); break;
		case O_ACC:
			if (!strcmp(optarg, "auto"))
				cl->po.accumulate = NNP_ACC_AUTO;
			else if (!strcmp(optarg, "logits"))
				cl->po.accumulate = NNP_ACC_LOGITS;
			else if (!strcmp(optarg, "features"))
				cl->po.accumulate = NNP_ACC_FEATURES;
			else
				nnp_usage_error("--accumulate: want auto, logits or features, not '%s'", optarg);
			break;
		case O_MEM: cl->po.max_memory = nnp_parse_size("--max-memory", optarg); break;
		case 'j': threads = nnp_threads_from_arg(optarg); break;
		default: nnp_bad_option(argv);
		}
	}
	if (!!cl->model == !!cl->dataset)
		nnp_usage_error("give the model as -m FOLDER or as -d DATASET -c CONFIGURATION");
	if (cl->dataset && !cl->config)
		nnp_usage_error("-d needs -c CONFIGURATION");
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	if (optind < argc)
		cl->in = argv[optind];
	nnp_threads_init(threads);
}

static struct nnp_model *load_model(const struct cmdline *cl)
{
	struct nnp_model_opts mo = { cl->nfolds ? cl->folds : NULL, cl->nfolds, cl->checkpoint, cl->config, cl->eo };
	struct nnp_model *m;
	char dir[4096];
	int rc;

	if (cl->dataset && (rc = nnp_model_resolve(cl->dataset, cl->trainer, cl->plans, cl->config, dir, sizeof dir)))
		nnp_die(rc);
	if ((rc = nnp_model_open(cl->model ? cl->model : dir, &mo, &m)))
		nnp_die(rc);
	nnp_debug("model %s: %s, %d fold(s), patch %lldx%lldx%lld, %s", m->dir, m->config, m->nfolds,
		  (long long)m->patch[0], (long long)m->patch[1], (long long)(m->patch_ndim == 3 ? m->patch[2] : 1),
		  nnp_engine_cpu_info());
	return m;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_model *m;
	struct nnp_reader *r;
	struct nnp_writer *w;
	struct nnp_vol v;
	struct nnp_progress progress;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	cl.po.progress = &progress;
	if (!strcmp(cl.in, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	m = load_model(&cl);
	if (!(r = nnp_reader_open(cl.in)) || !(w = nnp_writer_fd(STDOUT_FILENO, "<stdout>")))
		nnp_die(NNP_EDATA);
	while ((rc = nnp_reader_volume(r, &v)) == 1) {
		if (!strcmp(v.f.role, "image"))
			rc = nnp_predict_logits(m, &cl.po, &v, w);
		else
			rc = nnp_writer_volume(w, &v);
		nnp_vol_release(&v);
		if (rc)
			break;
	}
	nnp_reader_free(r);
	nnp_writer_free(w);
	nnp_model_free(m);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
