/* nnp-fingerprint — nnU-Net's dataset_fingerprint.json for a raw dataset. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "fingerprint.h"
#include "json.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "fingerprint",
	.summary = "compute nnU-Net's dataset fingerprint (dataset_fingerprint.json)",
	.usage = "  nnp fingerprint [options] DATASET",
	.options =
		"  -o, --output FILE  write here (default: $nnUNet_preprocessed/DatasetXXX_Name/\n"
		"                     dataset_fingerprint.json, next to a copy of dataset.json)\n"
		"  -f, --force        recompute and overwrite an existing fingerprint\n"
		"  -j, --threads N    cases read in parallel (default: NNP_THREADS or all cores)\n"
		"      --cache-mb N   foreground values kept in memory between passes (default 2048);\n"
		"                     cases beyond it are read again instead\n"
		"      --num-samples N  total foreground samples per channel (default 1e8 as nnU-Net;\n"
		"                     other values give other statistics: for tests and quick looks)\n",
	.details =
		"DATASET is a raw dataset folder, DatasetXXX_Name or an id ($nnUNet_raw).\n"
		"The result equals nnU-Net's: the same crop_to_nonzero, the same seeded samples\n"
		"(RandomState(1234) per case, floor(1e8/cases) draws per channel) and numpy's float32\n"
		"statistics, computed without holding the 1e8 samples in memory.\n"
		"An existing fingerprint is reused (like nnU-Net) unless --force is given.\n\n"
		"Example:\n  nnp fingerprint -j 8 901\n",
};

struct cmdline {
	const char *dataset, *output;
	int force, threads;
	long long cache_mb;
	double num_samples;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_CACHE = 256, OPT_SAMPLES };
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 'j' },
		{ "cache-mb", required_argument, NULL, OPT_CACHE },
		{ "num-samples", required_argument, NULL, OPT_SAMPLES },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	cl->cache_mb = 2048;
	while ((c = getopt_long(argc, argv, "o:fj:", opts, NULL)) != -1) {
		switch (c) {
		case 'o': cl->output = optarg; break;
		case 'f': cl->force = 1; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		case OPT_CACHE: cl->cache_mb = nnp_parse_ll("--cache-mb", optarg, 0, 1LL << 30); break;
		case OPT_SAMPLES:
			cl->num_samples = nnp_parse_double("--num-samples", optarg);
			if (cl->num_samples < 1 || cl->num_samples > 1e12)
				nnp_usage_error("--num-samples must be in [1, 1e12]");
			break;
		default: nnp_bad_option(argv);
		}
	}
	if (argc - optind != 1)
		nnp_usage_error("give one DATASET (folder, DatasetXXX_Name or id)");
	cl->dataset = argv[optind];
}

/* $nnUNet_preprocessed/NAME, created, with dataset.json copied in. */
static int default_output(const struct nnp_dataset *d, char *out, size_t n)
{
	const char *pre = getenv("nnUNet_preprocessed");
	char dir[4096], dj[4200];
	struct stat st;
	int rc;
	if (!pre || !*pre)
		return nnp_err(NNP_EUSAGE, "nnUNet_preprocessed is not set: export nnUNet_preprocessed=/path "
			       "or give -o FILE");
	snprintf(dir, sizeof dir, "%s/%s", pre, d->name);
	if ((rc = nnp_mkdirs(dir)))
		return rc;
	snprintf(dj, sizeof dj, "%s/dataset.json", dir);
	if (stat(dj, &st) != 0 && (rc = nnp_json_write_file(d->json, dj, 4, 0, 0)))
		return rc;
	if ((size_t)snprintf(out, n, "%s/dataset_fingerprint.json", dir) >= n)
		return nnp_err(NNP_EUSAGE, "path too long: '%s'", dir);
	return NNP_OK;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_dataset *d = NULL;
	struct nnp_fp_opts fo;
	char dir[4096], out[4300];
	struct stat st;
	json_t *fp = NULL;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	if ((rc = nnp_dataset_resolve(cl.dataset, "nnUNet_raw", dir, sizeof dir)) ||
	    (rc = nnp_dataset_open(dir, &d)))
		nnp_die(rc);
	if (cl.output)
		snprintf(out, sizeof out, "%s", cl.output);
	else if ((rc = default_output(d, out, sizeof out)))
		nnp_die(rc);
	if (!cl.force && stat(out, &st) == 0) {
		nnp_info("'%s' exists: reusing it (--force recomputes)", out);
		nnp_dataset_free(d);
		return nnp_close_stdout();
	}
	fo.cache_bytes = (uint64_t)cl.cache_mb << 20;
	fo.progress = 1;
	fo.total_samples = cl.num_samples;
	rc = nnp_fingerprint(d, &fo, &fp);
	if (!rc)
		rc = nnp_json_write_file(fp, out, 4, NNP_JSON_SORT_KEYS, 1);
	json_decref(fp);
	nnp_dataset_free(d);
	if (rc)
		nnp_die(rc);
	nnp_info("wrote '%s'", out);
	return nnp_close_stdout();
}
