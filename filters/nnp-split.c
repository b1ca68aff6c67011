/* nnp-split — splits_final.json as nnU-Net's trainer creates it
 * (nnunet-facts.md §1.5; the logic is in common/split.c). */
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
#include "split.h"

static const struct nnp_proginfo info = {
	.name = "split",
	.summary = "make splits_final.json (5-fold cross-validation) like nnU-Net",
	.usage = "  nnp split [options] PREPROCESSED_DATASET\n"
		 "  nnp split [options] -d ID",
	.options =
		"  -d, --dataset ID   the dataset in $nnUNet_preprocessed (an id like 901 or a\n"
		"                     name like Dataset901_Spheres)\n"
		"  -k, --folds K      number of folds (default 5)\n"
		"      --seed N       KFold random_state (default 12345)\n"
		"  -o, --output FILE  where to write (default DATASET/splits_final.json;\n"
		"                     '-' = standard output)\n"
		"  -f, --force        recreate the file even if it exists\n"
		"      --print        print the splits on standard output; no file is written\n"
		"                     unless -o is given too\n"
		"      --raw DATASET  the raw dataset (folder, name or id in $nnUNet_raw)\n"
		"                     (default: the preprocessed folder's name in $nnUNet_raw)\n"
		"      --data NAME    take the case ids from this data subfolder only\n"
		"                     (e.g. nnUNetPlans_3d_fullres)\n"
		"      --fold F       print fold F ({\"train\", \"val\"}) as nnU-Net's trainer\n"
		"                     uses it: from the splits, or for F >= the number of\n"
		"                     folds the random 80:20 split; F may be 'all'\n"
		"      --fold-random F  print nnU-Net's random 80:20 split for fold F:\n"
		"                     RandomState(seed + F), train in draw order\n",
	.details =
		"Case ids: the preprocessed cases (DATA/CASE.b2nd, CASE.npz or CASE.nnp in\n"
		"the data subfolders such as nnUNetPlans_3d_fullres/); if there are none\n"
		"yet, the training cases of the raw dataset of the same name (imagesTr or\n"
		"dataset.json's \"dataset\").  They are sorted (byte order) and split by\n"
		"sklearn KFold(n_splits=5, shuffle=True, random_state=12345); train and val\n"
		"are listed in ascending order and the file is written like nnU-Net's\n"
		"json.dump(sort_keys=True, indent=4): byte-identical to the trainer's.\n"
		"\n"
		"An existing splits_final.json is kept (\"using existing ...\") unless\n"
		"--force.  A splits_final.json in the raw dataset folder is copied instead\n"
		"of making one (after checking that it names only cases of the dataset),\n"
		"or, when both exist, checked to agree fold by fold, as nnU-Net's planner\n"
		"does.\n"
		"\n"
		"Examples:\n"
		"  nnp split -d 901\n"
		"  nnp split \"$nnUNet_preprocessed/Dataset901_Spheres\" --print\n"
		"  nnp split -d 901 --fold 0 | jq -r '.val[]'\n"
		"  nnp split -d 901 --fold-random 7\n",
};

struct cmdline {
	const char *dataset, *dataset_opt, *out, *raw, *data, *fold;
	long long folds, seed, fold_random;
	int force, print;
};

enum { OPT_SEED = 256, OPT_PRINT, OPT_RAW, OPT_DATA, OPT_FOLD, OPT_FOLD_RANDOM };

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{ "dataset", required_argument, NULL, 'd' },
		{ "folds", required_argument, NULL, 'k' },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "print", no_argument, NULL, OPT_PRINT },
		{ "raw", required_argument, NULL, OPT_RAW },
		{ "data", required_argument, NULL, OPT_DATA },
		{ "fold", required_argument, NULL, OPT_FOLD },
		{ "fold-random", required_argument, NULL, OPT_FOLD_RANDOM },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	cl->folds = NNP_SPLIT_FOLDS;
	cl->seed = NNP_SPLIT_SEED;
	cl->fold_random = -1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:k:o:f", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cl->dataset_opt = optarg; break;
		case 'k': cl->folds = nnp_parse_ll("--folds", optarg, 2, NNP_CASES_MAX); break;
		case OPT_SEED: cl->seed = nnp_parse_ll("--seed", optarg, 0, UINT32_MAX); break;
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		case OPT_PRINT: cl->print = 1; break;
		case OPT_RAW: cl->raw = optarg; break;
		case OPT_DATA: cl->data = optarg; break;
		case OPT_FOLD: cl->fold = optarg; break;
		case OPT_FOLD_RANDOM:
			cl->fold_random = nnp_parse_ll("--fold-random", optarg, 0, NNP_CASES_MAX);
			break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		cl->dataset = argv[optind++];
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (cl->dataset && cl->dataset_opt)
		nnp_usage_error("give the dataset once: a folder or -d ID, not both");
	if (!cl->dataset && !(cl->dataset = cl->dataset_opt))
		nnp_usage_error("missing PREPROCESSED_DATASET (a folder, or -d ID)");
	if (cl->fold && cl->fold_random >= 0)
		nnp_usage_error("--fold and --fold-random exclude each other");
	if ((cl->fold || cl->fold_random >= 0) && (cl->out || cl->print || cl->force))
		nnp_usage_error("--fold and --fold-random only print a fold: no -o, --print "
				"or --force");
	if (cl->data && (!*cl->data || strchr(cl->data, '/')))
		nnp_usage_error("--data must name a subfolder of the dataset, not '%s'", cl->data);
}

static uint32_t fold_seed(long long seed, long long fold)
{
	if (seed + fold > (long long)UINT32_MAX)
		nnp_usage_error("--seed %lld plus fold %lld exceeds 4294967295", seed, fold);
	return (uint32_t)(seed + fold);
}

static void print_json(const json_t *j)
{
	char *s;
	int rc = nnp_json_dumps(j, 4, NNP_JSON_SORT_KEYS, &s);
	if (rc)
		nnp_die(rc);
	fputs(s, stdout);
	putchar('\n');
	free(s);
}

/* --fold-random F, or --fold F past the splits: nnU-Net's 80:20 fallback. */
static void print_random(const struct nnp_split_opts *o, long long fold, long long seed)
{
	char **ids, from[PATH_MAX];
	size_t n;
	struct nnp_fold f;
	json_t *j;
	int rc;

	if ((rc = nnp_split_ids(o, &ids, &n, from, sizeof from)))
		nnp_die(rc);
	if ((rc = nnp_split_random(n, fold_seed(seed, fold), &f)))
		nnp_die(nnp_err_ctx(rc, "case ids from '%s'", from));
	if (!(j = nnp_fold_json(ids, &f)))
		nnp_dief(NNP_ENOMEM, "out of memory");
	print_json(j);
	json_decref(j);
	nnp_fold_release(&f);
	nnp_strv_free(ids, n);
}

/* --fold all: every case in train and in val. */
static void print_all(const struct nnp_split_opts *o)
{
	char **ids, from[PATH_MAX];
	size_t n;
	json_t *o2, *a = json_array();
	int rc;

	if ((rc = nnp_split_ids(o, &ids, &n, from, sizeof from)))
		nnp_die(rc);
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_string(ids[i])))
			nnp_dief(NNP_ENOMEM, "out of memory");
	if (!a || !(o2 = json_object()) || json_object_set(o2, "train", a) ||
	    json_object_set_new(o2, "val", a))
		nnp_dief(NNP_ENOMEM, "out of memory");
	print_json(o2);
	json_decref(o2);
	nnp_strv_free(ids, n);
}

static void print_fold(const struct nnp_split_opts *o, const struct cmdline *cl)
{
	struct nnp_split_result r;
	long long f;
	int rc;

	if (!strcmp(cl->fold, "all")) {
		print_all(o);
		return;
	}
	f = nnp_parse_ll("--fold", cl->fold, 0, NNP_CASES_MAX);
	if ((rc = nnp_split_make(o, &r)))
		nnp_die(rc);
	if ((size_t)f < json_array_size(r.splits))
		print_json(json_array_get(r.splits, (size_t)f));
	else
		print_random(o, f, cl->seed);
	nnp_split_result_release(&r);
}

static void report(const struct nnp_split_result *r, int wrote)
{
	switch (r->action) {
	case NNP_SPLIT_EXISTING:
		nnp_info("using existing '%s' (%zu folds; --force makes a new one)", r->out,
			 json_array_size(r->splits));
		break;
	case NNP_SPLIT_COPIED:
		if (wrote)
			nnp_info("copied '%s' to '%s' (%zu folds)", r->copied_from, r->out,
				 json_array_size(r->splits));
		break;
	case NNP_SPLIT_CREATED:
		if (wrote)
			nnp_info("wrote '%s': %zu folds over %zu cases (ids from '%s')", r->out,
				 json_array_size(r->splits), r->ncases, r->ids_from);
		break;
	}
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_split_opts o;
	struct nnp_split_result r;
	char dir[PATH_MAX];
	int rc, to_stdout;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if ((rc = nnp_dataset_resolve(cl.dataset, "nnUNet_preprocessed", dir, sizeof dir)))
		nnp_die(rc);
	memset(&o, 0, sizeof o);
	o.dir = dir;
	o.raw = cl.raw;
	o.data = cl.data;
	o.folds = (size_t)cl.folds;
	o.seed = (uint32_t)cl.seed;
	if (cl.fold_random >= 0) {
		print_random(&o, cl.fold_random, cl.seed);
		return nnp_close_stdout();
	}
	if (cl.fold) {
		print_fold(&o, &cl);
		return nnp_close_stdout();
	}
	to_stdout = cl.print || (cl.out && !strcmp(cl.out, "-"));
	o.out = cl.out && strcmp(cl.out, "-") ? cl.out : NULL;
	o.write = !(to_stdout && !o.out);
	o.force = cl.force;
	if ((rc = nnp_split_make(&o, &r)))
		nnp_die(rc);
	report(&r, o.write);
	if (to_stdout)
		print_json(r.splits);
	nnp_split_result_release(&r);
	return nnp_close_stdout();
}
