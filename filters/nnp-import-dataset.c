/* nnp-import-dataset — loose image/label folders or an MSD task folder ->
 * an nnU-Net raw dataset (the logic is in common/import.c; docs/import.md). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "err.h"
#include "import.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "import-dataset",
	.summary = "make an nnU-Net raw dataset from folders of images and labels",
	.usage = "  nnp import-dataset --images DIR --labels DIR --channels CT[,T2...]\n"
		 "                     --labels-map background=0,NAME=1[,...] -d ID -n NAME\n"
		 "                     [options]\n"
		 "  nnp import-dataset --msd TASK_FOLDER [-d ID] [-n NAME] [options]",
	.options =
		"      --images DIR       training images: one file per case (CASE.nii.gz; with\n"
		"                         several channels a 4D file), or channel files\n"
		"                         CASE_0000.nii.gz, CASE_0001.nii.gz, ...\n"
		"      --labels DIR       training label maps, CASE.nii.gz\n"
		"      --test-images DIR  test images (imagesTs), named like --images\n"
		"      --channels LIST    channel names in order, e.g. CT or T1,T2 (they choose\n"
		"                         nnU-Net's normalisation: CT = CT, others z-score)\n"
		"      --labels-map LIST  label names and values: background=0 and the others\n"
		"                         1..N-1, each once: background=0,liver=1,tumour=2\n"
		"      --msd DIR          a Medical Segmentation Decathlon task folder\n"
		"                         (TaskNN_Name with dataset.json, imagesTr, labelsTr,\n"
		"                         imagesTs); 4D images are split into channel files\n"
		"  -d, --id ID            dataset id 0..999 (MSD: default NN of TaskNN_Name)\n"
		"  -n, --name NAME        dataset name (MSD: default Name of TaskNN_Name)\n"
		"  -o, --out DIR          where DatasetXXX_NAME is created (default $nnUNet_raw)\n"
		"      --copy             copy the files (default)\n"
		"      --link             hard-link files that need no conversion (copies\n"
		"                         across file systems)\n"
		"      --file-ending E    .nii.gz (default) or .nii; other inputs are converted\n"
		"  -f, --force            replace an existing DatasetXXX_NAME folder\n",
	.details =
		"Case ids are the file names without their ending (and without _XXXX for\n"
		"channel files).  Every image needs a label and every label an image; the\n"
		"files are checked (readable NIfTI headers, channel counts, each label of\n"
		"its image's shape) before anything is written.  The dataset is built in a\n"
		"hidden folder OUT/.DatasetXXX_NAME.tmpPID and renamed into place at the\n"
		"end, so a failure or an interrupt leaves nothing behind.  Files are copied\n"
		"byte for byte when their ending is the dataset's; .nii inputs of a .nii.gz\n"
		"dataset, .hdr/.img pairs and 4D files are rewritten with the same header\n"
		"and geometry.\n"
		"\n"
		"Examples:\n"
		"  nnp import-dataset --images scans/ --labels masks/ --channels CT \\\n"
		"      --labels-map background=0,liver=1,tumour=2 -d 42 -n Liver\n"
		"  nnp import-dataset --msd /data/Task01_BrainTumour --link\n"
		"  nnp import-dataset --msd Task03_Liver -d 103 -o /tmp/raw && nnp cases 103\n",
};

struct cmdline {
	const char *images, *labels, *test, *channels, *labels_map, *msd, *name, *out, *fe;
	int id, link, force;
};

enum { OPT_IMAGES = 256, OPT_LABELS, OPT_TEST, OPT_CHANNELS, OPT_LABELS_MAP, OPT_MSD,
       OPT_COPY, OPT_LINK, OPT_FE };

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{ "images", required_argument, NULL, OPT_IMAGES },
		{ "labels", required_argument, NULL, OPT_LABELS },
		{ "test-images", required_argument, NULL, OPT_TEST },
		{ "channels", required_argument, NULL, OPT_CHANNELS },
		{ "labels-map", required_argument, NULL, OPT_LABELS_MAP },
		{ "msd", required_argument, NULL, OPT_MSD },
		{ "id", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'n' },
		{ "out", required_argument, NULL, 'o' },
		{ "copy", no_argument, NULL, OPT_COPY },
		{ "link", no_argument, NULL, OPT_LINK },
		{ "file-ending", required_argument, NULL, OPT_FE },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	cl->id = -1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:n:o:f", opts, NULL)) != -1) {
		switch (c) {
		case OPT_IMAGES: cl->images = optarg; break;
		case OPT_LABELS: cl->labels = optarg; break;
		case OPT_TEST: cl->test = optarg; break;
		case OPT_CHANNELS: cl->channels = optarg; break;
		case OPT_LABELS_MAP: cl->labels_map = optarg; break;
		case OPT_MSD: cl->msd = optarg; break;
		case 'd': cl->id = (int)nnp_parse_ll("--id", optarg, 0, NNP_IMPORT_ID_MAX); break;
		case 'n': cl->name = optarg; break;
		case 'o': cl->out = optarg; break;
		case OPT_COPY: cl->link = 0; break;
		case OPT_LINK: cl->link = 1; break;
		case OPT_FE: cl->fe = optarg; break;
		case 'f': cl->force = 1; break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (!cl->msd && !cl->images)
		nnp_usage_error("give --images DIR --labels DIR ... or --msd TASK_FOLDER");
	if (!cl->msd) {
		if (!cl->labels)
			nnp_usage_error("missing --labels DIR (the label maps of the images)");
		if (!cl->channels)
			nnp_usage_error("missing --channels (channel names like CT or T1,T2)");
		if (!cl->labels_map)
			nnp_usage_error("missing --labels-map (like background=0,liver=1)");
		if (cl->id < 0)
			nnp_usage_error("missing -d ID (the dataset id, 0..%d)", NNP_IMPORT_ID_MAX);
		if (!cl->name)
			nnp_usage_error("missing -n NAME (the dataset name, like Liver)");
	}
	if (!cl->out && !(cl->out = getenv("nnUNet_raw")))
		nnp_usage_error("no output folder: give --out DIR or set nnUNet_raw "
				"(export nnUNet_raw=/path/to/nnUNet_raw)");
	if (!*cl->out)
		nnp_usage_error("empty output folder name (--out or nnUNet_raw)");
}

/* Signals: stop the import at the next step; it then removes its
 * temporary folder and we die of the signal. */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static void on_warn(void *ctx, const char *msg)
{
	(void)ctx;
	nnp_warn("%s", msg);
}

static void on_progress(void *ctx, size_t done, size_t total)
{
	struct nnp_progress *p = ctx;
	if (!p->total)
		nnp_progress_begin(p, "importing", (long long)total);
	nnp_progress_add(p, 1);
	if (done == total)
		nnp_progress_end(p);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_import_opts o;
	struct nnp_import_result r;
	struct nnp_progress prog;
	char **ch = NULL;
	size_t nch = 0;
	json_t *labels = NULL;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if (cl.channels && (rc = nnp_import_parse_channels(cl.channels, &ch, &nch)))
		nnp_die(rc);
	if (cl.labels_map && (rc = nnp_import_parse_labels(cl.labels_map, &labels)))
		nnp_die(rc);
	memset(&o, 0, sizeof o);
	memset(&prog, 0, sizeof prog);
	o.images = cl.images;
	o.labels = cl.labels;
	o.test_images = cl.test;
	o.channels = ch;
	o.nchannels = nch;
	o.labels_map = labels;
	o.msd = cl.msd;
	o.id = cl.id;
	o.name = cl.name;
	o.out = cl.out;
	o.file_ending = cl.fe;
	o.link = cl.link;
	o.force = cl.force;
	o.stop = &stop_signal;
	o.warn = on_warn;
	o.progress = on_progress;
	o.ctx = &prog;
	catch_signals();
	rc = nnp_import(&o, &r);
	nnp_import_names_free(ch, nch);
	json_decref(labels);
	if (prog.active)
		nnp_progress_end(&prog);
	if (stop_signal) {
		signal(stop_signal, SIG_DFL);
		raise(stop_signal);
	}
	if (rc)
		nnp_die(rc);
	nnp_info("created '%s': %zu training case%s, %zu test case%s (files: %zu copied, "
		 "%zu linked, %zu converted, %zu 4D split)", r.dir, r.ntrain,
		 r.ntrain == 1 ? "" : "s", r.ntest, r.ntest == 1 ? "" : "s", r.copied, r.linked,
		 r.converted, r.split);
	if (r.link_fallbacks)
		nnp_info("%zu file%s copied instead of linked (another file system)",
			 r.link_fallbacks, r.link_fallbacks == 1 ? "" : "s");
	return nnp_close_stdout();
}
