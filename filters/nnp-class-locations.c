/* nnp-class-locations — nnU-Net's foreground locations for oversampling. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "caseio.h"
#include "classloc.h"
#include "err.h"
#include "frame.h"
#include "json.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "class-locations",
	.summary = "add nnU-Net's class locations (foreground oversampling) after each label frame",
	.usage = "  nnp class-locations [--dataset-json FILE] [STREAM]",
	.options =
		"      --dataset-json FILE  the labels to sample (default: props.labels of the label\n"
		"                           frame, which 'nnp read --dataset' records)\n",
	.details =
		"For each label frame (the resampled label map of a case) a frame with role\n"
		"'class_locations' follows it: dtype int32, shape [1, 1, K, 4], rows [0, z, y, x] of\n"
		"all classes in nnU-Net's order; props.classes gives each class key (\"1\", \"(1, 2)\")\n"
		"and props.counts its number of rows. The sampling is nnU-Net's: RandomState(1234) per\n"
		"case, max(min(10000, n), ceil(0.01 n)) locations per class, bit-exact.\n"
		"Every frame passes through unchanged. Memory: one label map.\n",
};

static int add_locations(struct nnp_writer *w, const struct nnp_vol *lab, const json_t *labels)
{
	struct nnp_vol out;
	int rc = nnp_classloc_case(lab, labels, &out);
	if (!rc)
		rc = nnp_writer_volume(w, &out);
	nnp_vol_release(&out);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "dataset-json", required_argument, NULL, 'd' }, { NULL, 0, NULL, 0 } };
	const char *in = "-", *dj = NULL;
	json_t *dataset = NULL;
	struct nnp_reader *r;
	struct nnp_writer *w;
	struct nnp_vol v;
	int c, rc;

	nnp_proginit(&argc, argv, &info);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'd')
			dj = optarg;
		else
			nnp_bad_option(argv);
	}
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	if (optind < argc)
		in = argv[optind];
	if (!strcmp(in, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	if (dj && (rc = nnp_json_load(dj, &dataset)))
		nnp_die(rc);
	if (!(r = nnp_reader_open(in)) || !(w = nnp_writer_fd(STDOUT_FILENO, "<stdout>")))
		nnp_die(NNP_EDATA);
	while ((rc = nnp_reader_volume(r, &v)) == 1) {
		rc = nnp_writer_volume(w, &v);
		if (!rc && !strcmp(v.f.role, "label"))
			rc = add_locations(w, &v, dataset ? json_object_get(dataset, "labels") : NULL);
		nnp_vol_release(&v);
		if (rc)
			break;
	}
	json_decref(dataset);
	nnp_reader_free(r);
	nnp_writer_free(w);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
