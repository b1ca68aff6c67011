/* nnp-ensemble — average the probabilities of several predictions of the
 * same cases and write the segmentations: nnUNetv2_ensemble
 * (common/ensemble.h, docs/ensemble.md). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "atomic.h"
#include "dataset.h"
#include "ensemble.h"
#include "err.h"
#include "export.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "ensemble",
	.summary = "average the probabilities of several predictions into segmentations (nnUNetv2_ensemble)",
	.usage = "  nnp ensemble -i DIR1 DIR2 [DIR...] -o OUT [options]",
	.options =
		"  -i, --input DIR...     folders of CASE_probabilities<file_ending> files, as\n"
		"                         'nnp predict --save-probabilities' writes them (at least two;\n"
		"                         every folder must hold the same cases)\n"
		"  -o, --output OUT       output folder (created): CASE<file_ending> segmentations,\n"
		"                         dataset.json and plans.json copied from the first folder\n"
		"      --save-probabilities  also write the mean as CASE_probabilities<file_ending>\n"
		"      --dataset-json F   labels/regions and file_ending (default: the first folder's\n"
		"                         dataset.json)\n"
		"      --continue         skip cases whose outputs exist\n"
		"  -f, --force            replace existing outputs\n"
		"      --max-memory BYTES  limit for the cases running at once (suffix K, M, G;\n"
		"                         default 75% of the physical memory; 0 = no limit)\n"
		"  -j, --threads N        cases in parallel (default: NNP_THREADS or all cores)\n",
	.details =
		"Per case, the probabilities of the folders are averaged in float32 like nnU-Net's\n"
		"average_probabilities (the first file, += each further file, /= the number of\n"
		"folders) and turned into a segmentation like LabelManager's\n"
		"convert_probabilities_to_segmentation: argmax over the channels (first maximum\n"
		"wins), or for region datasets, in regions_class_order, the region's value where\n"
		"its mean probability is > 0.5 (later regions overwrite). The segmentation is\n"
		"uint8 (uint16 with >= 255 foreground labels) with the header and geometry of the\n"
		"first folder's file. The files of a case must agree in shape, channels, spacing\n"
		"and affine. Files are streamed channel by channel: a case needs about 9-10 bytes\n"
		"per voxel whatever the number of channels. Each output is written to a temporary\n"
		"name and renamed when complete (docs/ensemble.md).\n"
		"\n"
		"Example:\n"
		"  nnp predict -i imagesTs -o pred_3d -m RESULTS/...__3d_fullres --save-probabilities\n"
		"  nnp predict -i imagesTs -o pred_2d -m RESULTS/...__2d --save-probabilities\n"
		"  nnp ensemble -i pred_3d pred_2d -o pred_ensemble\n",
};

struct cmdline {
	const char *inputs[NNP_ENSEMBLE_INPUTS_MAX];
	size_t ninputs;
	const char *output, *dataset_json;
	int save_prob, cont, force, threads, have_max;
	unsigned long long max_memory;
};

static void add_input(struct cmdline *cl, const char *dir)
{
	if (!*dir)
		nnp_usage_error("-i: empty folder name");
	if (cl->ninputs == NNP_ENSEMBLE_INPUTS_MAX)
		nnp_usage_error("-i: at most %d folders", NNP_ENSEMBLE_INPUTS_MAX);
	cl->inputs[cl->ninputs++] = dir;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_PROB = 256, O_DS, O_CONT, O_MEM };
	static const struct option opts[] = {
		{ "input", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "save-probabilities", no_argument, NULL, O_PROB },
		{ "dataset-json", required_argument, NULL, O_DS },
		{ "continue", no_argument, NULL, O_CONT },
		{ "force", no_argument, NULL, 'f' },
		{ "max-memory", required_argument, NULL, O_MEM },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, ":i:o:fj:", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			add_input(cl, optarg);
			while (optind < argc && argv[optind][0] != '-')
				add_input(cl, argv[optind++]);
			break;
		case 'o': cl->output = optarg; break;
		case O_PROB: cl->save_prob = 1; break;
		case O_DS: cl->dataset_json = optarg; break;
		case O_CONT: cl->cont = 1; break;
		case 'f': cl->force = 1; break;
		case O_MEM: cl->max_memory = nnp_parse_size("--max-memory", optarg); cl->have_max = 1; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s' (input folders follow -i)", argv[optind]);
	if (cl->ninputs < 2)
		nnp_usage_error("give at least two input folders with -i DIR1 DIR2 ...");
	if (!cl->output || !*cl->output)
		nnp_usage_error("missing -o OUT (the output folder)");
	if (cl->cont && cl->force)
		nnp_usage_error("--continue and --force exclude each other");
}

/* The output folder must not be an input folder (it would replace inputs). */
static void check_output(const struct cmdline *cl)
{
	char out[PATH_MAX], in[PATH_MAX];
	if (!realpath(cl->output, out))
		return;   /* does not exist yet */
	for (size_t i = 0; i < cl->ninputs; i++)
		if (realpath(cl->inputs[i], in) && !strcmp(in, out))
			nnp_usage_error("the output folder '%s' is input folder '%s'", cl->output, cl->inputs[i]);
}

static struct nnp_dataset *load_dataset(const struct cmdline *cl, char **src)
{
	struct nnp_dataset *ds;
	int rc;
	*src = cl->dataset_json ? nnp_strdup(cl->dataset_json)
				: nnp_strprintf("%s/dataset.json", cl->inputs[0]);
	if (!*src)
		nnp_die(NNP_ENOMEM);
	if (!cl->dataset_json && !nnp_is_file(*src))
		nnp_dief(NNP_EDATA, "input folder '%s': no dataset.json (give --dataset-json FILE)", cl->inputs[0]);
	if ((rc = nnp_dataset_open_file(*src, &ds)))
		nnp_die(rc);
	return ds;
}

/* dataset.json and plans.json of the first folder into OUT (nnU-Net does);
 * dataset.json from --dataset-json when the first folder has none. */
static void copy_meta(const struct cmdline *cl, const char *ds_src)
{
	static const char *const names[] = { "dataset.json", "plans.json" };
	for (int k = 0; k < 2; k++) {
		char *src = nnp_strprintf("%s/%s", cl->inputs[0], names[k]);
		char *dst = nnp_strprintf("%s/%s", cl->output, names[k]);
		int rc = NNP_OK;
		if (!src || !dst)
			nnp_die(NNP_ENOMEM);
		if (nnp_is_file(src))
			rc = nnp_copy_file(src, dst, 1, 0);
		else if (k == 0 && nnp_is_file(ds_src))
			rc = nnp_copy_file(ds_src, dst, 1, 0);
		else if (k == 1)
			nnp_warn("input folder '%s' has no plans.json: not copied", cl->inputs[0]);
		free(src);
		free(dst);
		if (rc)
			nnp_die(rc);
	}
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_dataset *ds;
	struct nnp_export_labels labels;
	struct nnp_ensemble_cases cases;
	struct nnp_ensemble_opts o;
	char *ds_src;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	check_output(&cl);
	ds = load_dataset(&cl, &ds_src);
	if ((rc = nnp_export_labels_from_dataset(ds, &labels)))
		nnp_die(nnp_err_ctx(rc, "'%s'", ds_src));
	if ((rc = nnp_ensemble_list(cl.inputs, cl.ninputs, ds->file_ending, &cases)))
		nnp_die(rc);
	nnp_ensemble_opts_init(&o);
	o.inputs = cl.inputs;
	o.ninputs = cl.ninputs;
	o.output = cl.output;
	o.file_ending = ds->file_ending;
	o.labels = &labels;
	o.save_probabilities = cl.save_prob;
	o.skip_existing = cl.cont;
	o.force = cl.force;
	o.threads = nnp_threads();
	o.max_memory = cl.have_max ? cl.max_memory : nnp_phys_mem() / 4 * 3;
	if ((rc = nnp_ensemble_run(&o, &cases)))
		nnp_die(rc);
	copy_meta(&cl, ds_src);
	nnp_debug("%d case(s) in parallel", o.jobs_used);
	nnp_info("%zu case%s ensembled from %zu folders into '%s', %zu skipped (--continue)", o.done,
		 o.done == 1 ? "" : "s", cl.ninputs, cl.output, o.skipped);
	nnp_ensemble_cases_release(&cases);
	nnp_export_labels_release(&labels);
	nnp_dataset_free(ds);
	free(ds_src);
	return nnp_close_stdout();
}
