/* nnp-verify — check an nnU-Net raw dataset (nnU-Net's
 * verify_dataset_integrity and more; docs/verify.md lists every check). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "dataset.h"
#include "err.h"
#include "json.h"
#include "prog.h"
#include "verify.h"

static const struct nnp_proginfo info = {
	.name = "verify",
	.summary = "check an nnU-Net raw dataset before fingerprinting and training",
	.usage = "  nnp verify [options] DATASET",
	.options =
		"      --json            the report as JSON: {\"dataset\", \"cases\", \"errors\": [{\"file\",\n"
		"                        \"case\", \"check\", \"message\", \"fix\"}], \"warnings\", \"ok\", ...}\n"
		"  -j, --threads N       cases checked in parallel (default: NNP_THREADS or all cores)\n"
		"      --max-errors N    stop once N errors are found (default: report all)\n",
	.details =
		"DATASET is a dataset folder, a name like Dataset901_Spheres or an id like\n"
		"901; names and ids are looked up in $nnUNet_raw.\n"
		"\n"
		"Checks dataset.json (required keys, labels, regions, numTraining, file_ending),\n"
		"the file names in imagesTr and labelsTr (or the \"dataset\" list), and every\n"
		"file of every training case: readable, channels and label on one grid (shape,\n"
		"spacing; origin/direction differences are warnings, as in nnU-Net), sane voxel\n"
		"sizes, no NaN/Inf voxels, label values integers declared in dataset.json.\n"
		"Files are streamed slab by slab: memory is one slab per thread.\n"
		"\n"
		"Output: one line per finding, in a fixed order whatever -j is,\n"
		"  error: FILE: WHAT IS WRONG: HOW TO FIX\n"
		"  warning: FILE: WHAT IS SUSPICIOUS: WHAT TO DO\n"
		"then a summary (\"Dataset901_Spheres: 12 cases, 0 errors, 0 warnings: OK\").\n"
		"Exit status 0 when there is no error (warnings allowed), 1 when there is one.\n"
		"The checks, their severity and nnU-Net's equivalents: docs/verify.md.\n"
		"\n"
		"Examples:\n"
		"  nnp verify 901\n"
		"  nnp verify --json \"$nnUNet_raw/Dataset901_Spheres\" | jq '.errors[].message'\n"
		"  nnp verify -j 8 --max-errors 20 Dataset002_Heart\n",
};

struct cmdline {
	const char *dataset;
	int json, threads;
	long max_errors;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'J' },
		{ "threads", required_argument, NULL, 'j' },
		{ "max-errors", required_argument, NULL, 'M' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":j:", opts, NULL)) != -1) {
		switch (c) {
		case 'J': cl->json = 1; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		case 'M': cl->max_errors = (long)nnp_parse_ll("--max-errors", optarg, 1, 1000000000); break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (optind >= argc)
		nnp_usage_error("missing DATASET (a folder, DatasetXXX_Name or an id)");
	if (optind + 1 < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind + 1]);
	cl->dataset = argv[optind];
}

static int print_json(const struct nnp_verify_report *r)
{
	json_t *j;
	char *s;
	int rc = nnp_verify_report_json(r, &j);
	if (rc)
		return rc;
	rc = nnp_json_dumps(j, 2, 0, &s);
	json_decref(j);
	if (rc)
		return rc;
	if (fputs(s, stdout) == EOF || putchar('\n') == EOF)
		rc = nnp_err(NNP_EIO, "cannot write standard output");
	free(s);
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_verify_opts o = { 0, 0 };
	struct nnp_verify_report *r;
	char dir[PATH_MAX];
	int rc, st;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	o.threads = nnp_threads();
	o.max_errors = cl.max_errors;
	if ((rc = nnp_dataset_resolve(cl.dataset, "nnUNet_raw", dir, sizeof dir)) ||
	    (rc = nnp_verify_dataset(dir, &o, &r)))
		nnp_die(rc);
	rc = cl.json ? print_json(r) : nnp_verify_report_print(r, stdout);
	st = r->nerrors ? NNP_EXIT_DATA : NNP_EXIT_OK;
	nnp_verify_report_free(r);
	if (rc)
		nnp_die(rc);
	rc = nnp_close_stdout();
	return rc ? rc : st;
}
