/* nnp-evaluate — Dice, IoU and the confusion counts of predicted
 * segmentations against references, written as nnU-Net's summary.json
 * (nnUNetv2_evaluate_folder / nnUNetv2_evaluate_simple); HD95 and NSD on
 * request (docs/evaluation.md). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "err.h"
#include "evaluate.h"
#include "json.h"
#include "nifti.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "evaluate",
	.summary = "score predicted segmentations against references (nnU-Net's summary.json)",
	.usage = "  nnp evaluate [options] PRED_DIR REF_DIR --dataset-json dataset.json\n"
		 "  nnp evaluate [options] PRED_DIR REF_DIR -l LABEL... [--ignore-label L]",
	.options =
		"  -d, --dataset-json F  labels, regions, ignore label and file_ending of dataset.json\n"
		"  -l, --labels L...     the labels to score (nnUNetv2_evaluate_simple), as separate\n"
		"                        arguments (-l 1 2 3) or a comma list (-l 1,2,3)\n"
		"      --ignore-label L  with -l: reference voxels equal to L are not scored\n"
		"      --file-ending E   with -l: the files to compare (default: the NIfTI ending of\n"
		"                        the first file in REF_DIR, .nii.gz or .nii)\n"
		"  -o, --output FILE     summary.json to write (default PRED_DIR/summary.json)\n"
		"  -f, --force           replace an existing output file\n"
		"      --chill           do not require a prediction for every reference file\n"
		"      --hd95            also the 95th-percentile Hausdorff distance (mm) per class\n"
		"      --nsd MM          also the normalised surface Dice at tolerance MM (mm)\n"
		"      --table           also print a Dice table (case x class, then the means) on stdout\n"
		"  -j, --threads N       cases scored in parallel (default: NNP_THREADS or all cores)\n",
	.details =
		"Every file of PRED_DIR that ends with the file ending is compared with the\n"
		"file of the same name in REF_DIR (which must exist); unless --chill every\n"
		"reference file must also have a prediction.  Per case and class (the\n"
		"foreground labels, or the regions of a region dataset): TP, FP, FN, TN over\n"
		"the voxels whose reference is not the ignore label, n_pred, n_ref, Dice and\n"
		"IoU (NaN when the class is absent from both); \"mean\" is the NaN-ignoring\n"
		"mean over cases, \"foreground_mean\" the mean over classes.  The file is\n"
		"byte for byte what nnU-Net writes for the same folders.  Note the argument\n"
		"order: predictions first (nnU-Net's commands take the references first).\n"
		"The foreground mean Dice and each class's mean Dice go to stderr.\n"
		"-l takes the integers that follow it: put it after the folders, or use a\n"
		"comma list, when a folder name is a number.\n"
		"\n"
		"Examples:\n"
		"  nnp evaluate fold_0/validation \"$nnUNet_preprocessed\"/Dataset901_Spheres/gt_segmentations \\\n"
		"      -d dataset.json --force\n"
		"  nnp evaluate pred/ labelsTs/ -l 1 2 --ignore-label 3 -o scores.json\n"
		"  nnp evaluate pred/ labelsTs/ -d dataset.json --hd95 --nsd 2 -j 4\n",
};

#define LABELS_MAX 4096

struct cmdline {
	const char *pred, *ref, *dataset_json, *output, *file_ending;
	int64_t labels[LABELS_MAX];
	size_t nlabels;
	int has_ignore, chill, hd95, nsd, force, threads, table;
	int64_t ignore;
	double nsd_tol;
};

/* "12", "-3": a label value; returns 1 when s is one. */
static int is_int(const char *s)
{
	if (*s == '-')
		s++;
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static void add_labels(struct cmdline *cl, const char *arg)
{
	char buf[4096], *tok, *save = NULL;
	if (strlen(arg) >= sizeof buf)
		nnp_usage_error("-l: value too long");
	snprintf(buf, sizeof buf, "%s", arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (cl->nlabels >= LABELS_MAX)
			nnp_usage_error("-l: more than %d labels", LABELS_MAX);
		cl->labels[cl->nlabels++] = (int64_t)nnp_parse_ll("-l", tok, INT32_MIN, INT32_MAX);
	}
}

static void check_cmdline(const struct cmdline *cl)
{
	if (!cl->dataset_json && !cl->nlabels)
		nnp_usage_error("give --dataset-json FILE or the labels with -l LABEL...");
	if (cl->dataset_json && cl->nlabels)
		nnp_usage_error("--dataset-json and -l exclude each other");
	if (cl->dataset_json && (cl->has_ignore || cl->file_ending))
		nnp_usage_error("--ignore-label and --file-ending go with -l (dataset.json names both)");
	if (cl->file_ending && !cl->file_ending[0])
		nnp_usage_error("--file-ending: empty");
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{ "dataset-json", required_argument, NULL, 'd' },
		{ "labels", required_argument, NULL, 'l' },
		{ "ignore-label", required_argument, NULL, 'I' },
		{ "file-ending", required_argument, NULL, 'E' },
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "chill", no_argument, NULL, 'C' },
		{ "table", no_argument, NULL, 'T' },
		{ "hd95", no_argument, NULL, 'H' },
		{ "nsd", required_argument, NULL, 'N' },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:l:o:fj:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cl->dataset_json = optarg; break;
		case 'l':
			add_labels(cl, optarg);
			while (optind < argc && is_int(argv[optind]))
				add_labels(cl, argv[optind++]);
			break;
		case 'I':
			cl->has_ignore = 1;
			cl->ignore = (int64_t)nnp_parse_ll("--ignore-label", optarg, INT32_MIN, INT32_MAX);
			break;
		case 'E': cl->file_ending = optarg; break;
		case 'o': cl->output = optarg; break;
		case 'f': cl->force = 1; break;
		case 'C': cl->chill = 1; break;
		case 'T': cl->table = 1; break;
		case 'H': cl->hd95 = 1; break;
		case 'N':
			cl->nsd = 1;
			cl->nsd_tol = nnp_parse_double("--nsd", optarg);
			if (!(cl->nsd_tol > 0) || cl->nsd_tol > 1e9)
				nnp_usage_error("--nsd: the tolerance must be a positive number of mm, not '%s'", optarg);
			break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (argc - optind < 2)
		nnp_usage_error("give PRED_DIR and REF_DIR");
	if (argc - optind > 2)
		nnp_usage_error("unexpected argument '%s'", argv[optind + 2]);
	cl->pred = argv[optind];
	cl->ref = argv[optind + 1];
	check_cmdline(cl);
}

/* The NIfTI ending of the first (sorted) .nii.gz/.nii file of dir. */
static const char *guess_ending(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *best = NULL;
	const char *end = NULL;
	size_t n;
	if (!d)
		nnp_dief(NNP_EDATA, "cannot open folder '%s': %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		n = strlen(e->d_name);
		if (!((n > 7 && !strcmp(e->d_name + n - 7, ".nii.gz")) || (n > 4 && !strcmp(e->d_name + n - 4, ".nii"))))
			continue;
		if (!best || strcmp(e->d_name, best) < 0) {
			free(best);
			if (!(best = strdup(e->d_name)))
				nnp_dief(NNP_ENOMEM, "out of memory");
		}
	}
	closedir(d);
	if (best) {
		n = strlen(best);
		end = n > 7 && !strcmp(best + n - 7, ".nii.gz") ? ".nii.gz" : ".nii";
		free(best);
		return end;
	}
	nnp_dief(NNP_EDATA, "no .nii.gz or .nii file in '%s' (give --file-ending)", dir);
}

static struct nnp_eval_spec *make_spec(const struct cmdline *cl)
{
	struct nnp_eval_spec *s;
	int rc;
	if (cl->dataset_json) {
		json_t *ds;
		if ((rc = nnp_json_load(cl->dataset_json, &ds)))
			nnp_die(rc);
		rc = nnp_eval_spec_from_dataset(ds, cl->dataset_json, &s);
		json_decref(ds);
	} else {
		rc = nnp_eval_spec_from_labels(cl->labels, cl->nlabels, cl->has_ignore ? &cl->ignore : NULL, &s);
	}
	if (rc || (rc = nnp_eval_spec_set_distances(s, cl->hd95, cl->nsd, cl->nsd_tol)))
		nnp_die(rc);
	return s;
}

static void check_ending(const char *ending)
{
	char name[512];
	snprintf(name, sizeof name, "x%s", ending);
	if (!nnp_nifti_name_ok(name))
		nnp_dief(NNP_EDATA, "file ending '%s': only NIfTI files (.nii.gz, .nii) can be evaluated", ending);
}

static void report(const struct nnp_eval_spec *s, const struct nnp_eval_summary *sum, const char *out)
{
	for (size_t i = 0; i < sum->ncases; i++)
		if (sum->cases[i].spacing_differs)
			nnp_warn("'%s' and '%s' have different voxel spacings (distances use the reference's)",
				 sum->cases[i].pred_file, sum->cases[i].ref_file);
	nnp_info("%zu case%s, foreground mean Dice %.4f -> %s", sum->ncases, sum->ncases == 1 ? "" : "s",
		 sum->fg_mean[NNP_EM_DICE], out);
	for (size_t c = 0; c < s->nclasses; c++) {
		const struct nnp_eval_class *k = &s->classes[c];
		nnp_info("  %s%s%s%s: mean Dice %.4f", k->key, k->name ? " (" : "", k->name ? k->name : "",
			 k->name ? ")" : "", sum->mean[c * NNP_EM_COUNT + NNP_EM_DICE]);
	}
}

/* The case id of a prediction path: its file name without the ending. */
static void case_of(const char *path, const char *ending, char *out, size_t n)
{
	const char *b = strrchr(path, '/');
	size_t len, e = strlen(ending);
	b = b ? b + 1 : path;
	len = strlen(b);
	if (len > e && !strcmp(b + len - e, ending))
		len -= e;
	snprintf(out, n, "%.*s", (int)len, b);
}

static void dice_cell(double d)
{
	if (isnan(d))
		printf(" %10s", "-");
	else
		printf(" %10.4f", d);
}

/* --table: one row per case, one column per class, then the means. */
static void print_table(const struct nnp_eval_spec *s, const struct nnp_eval_summary *sum,
			const struct nnp_eval_pairs *p, const char *ending)
{
	char id[256];
	printf("%-24s", "Dice");
	for (size_t c = 0; c < s->nclasses; c++)
		printf(" %10.10s", s->classes[c].name ? s->classes[c].name : s->classes[c].key);
	printf("\n");
	for (size_t i = 0; i < sum->ncases; i++) {
		case_of(p->pred[i], ending, id, sizeof id);
		printf("%-24.24s", id);
		for (size_t c = 0; c < s->nclasses; c++)
			dice_cell(sum->cases[i].m[c * NNP_EM_COUNT + NNP_EM_DICE]);
		printf("\n");
	}
	printf("%-24s", "mean");
	for (size_t c = 0; c < s->nclasses; c++)
		dice_cell(sum->mean[c * NNP_EM_COUNT + NNP_EM_DICE]);
	printf("\n%-24s %10.4f\n", "foreground mean", sum->fg_mean[NNP_EM_DICE]);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_eval_spec *s;
	struct nnp_eval_pairs pairs;
	struct nnp_eval_summary *sum;
	const char *ending;
	char *out;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	s = make_spec(&cl);
	ending = s->file_ending ? s->file_ending : cl.file_ending ? cl.file_ending : guess_ending(cl.ref);
	check_ending(ending);
	out = cl.output ? strdup(cl.output)
			: nnp_strprintf("%s%s", cl.pred, cl.pred[0] && cl.pred[strlen(cl.pred) - 1] == '/'
						 ? "summary.json" : "/summary.json");
	if (!out)
		nnp_dief(NNP_ENOMEM, "out of memory");
	if ((rc = nnp_eval_pairs_list(cl.pred, cl.ref, ending, cl.chill, &pairs)) ||
	    (rc = nnp_eval_folder(s, &pairs, nnp_threads(), &sum)))
		nnp_die(rc);
	if ((rc = nnp_eval_summary_write(s, sum, out, cl.force)))
		nnp_die(rc);
	report(s, sum, out);
	if (cl.table)
		print_table(s, sum, &pairs, ending);
	nnp_eval_summary_free(sum);
	nnp_eval_pairs_release(&pairs);
	nnp_eval_spec_free(s);
	free(out);
	return nnp_close_stdout();
}
