/* nnp-cases — list the cases of an nnU-Net raw dataset (nnunet-facts.md §1.1). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include "dataset.h"
#include "err.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "cases",
	.summary = "list the case ids of an nnU-Net raw dataset",
	.usage = "  nnp cases [options] DATASET\n"
		 "  nnp cases --folder IMAGES_DIR [options] DATASET_JSON",
	.options =
		"  -s, --split Tr|Ts  the training (imagesTr, default) or test (imagesTs) cases\n"
		"  -i, --images       after each id, its channel files and its label file,\n"
		"                     separated by TABs ('-' when a case has no label)\n"
		"      --json         a JSON array of {\"id\", \"images\": [...], \"label\"}\n"
		"      --folder DIR   the cases of a loose images folder (nnUNetv2_predict's input):\n"
		"                     DATASET_JSON (a dataset.json, or a folder holding one) gives\n"
		"                     the file ending; every case must have its channels\n",
	.details =
		"DATASET is a dataset folder, a name like Dataset901_Spheres or an id like\n"
		"901; names and ids are looked up in $nnUNet_raw.\n"
		"Cases are listed like nnU-Net does: the files of imagesTr (or imagesTs)\n"
		"ending in dataset.json's file_ending, minus the _XXXX channel suffix, in\n"
		"byte order; or the order of the \"dataset\" list in dataset.json.\n"
		"\n"
		"Examples:\n"
		"  nnp cases 901\n"
		"  nnp cases --images --split Ts \"$nnUNet_raw/Dataset901_Spheres\"\n"
		"  nnp cases 901 | parallel 'nnp read --dataset 901 --case {} | nnp write -o copy/'\n",
};

struct cmdline {
	const char *dataset, *split, *folder;
	int images, json;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{ "split", required_argument, NULL, 's' },
		{ "images", no_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'J' },
		{ "folder", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	cl->split = "Tr";
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":s:i", opts, NULL)) != -1) {
		switch (c) {
		case 's': cl->split = optarg; break;
		case 'i': cl->images = 1; break;
		case 'J': cl->json = 1; break;
		case 'F': cl->folder = optarg; break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (strcmp(cl->split, "Tr") && strcmp(cl->split, "Ts"))
		nnp_usage_error("--split must be 'Tr' or 'Ts', not '%s'", cl->split);
	if (optind >= argc)
		nnp_usage_error("missing DATASET (a folder, DatasetXXX_Name or an id)");
	if (optind + 1 < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind + 1]);
	cl->dataset = argv[optind];
}

static void print_lines(const struct nnp_case *v, size_t n, int images)
{
	for (size_t i = 0; i < n; i++) {
		fputs(v[i].id, stdout);
		if (images) {
			for (size_t k = 0; k < v[i].nimages; k++)
				printf("\t%s", v[i].images[k]);
			printf("\t%s", v[i].label ? v[i].label : "-");
		}
		putchar('\n');
	}
}

static json_t *case_json(const struct nnp_case *c)
{
	json_t *o = json_object(), *im = json_array();
	if (!o || !im) {
		json_decref(o);
		json_decref(im);
		return NULL;
	}
	for (size_t k = 0; k < c->nimages; k++)
		json_array_append_new(im, json_string(c->images[k]));
	json_object_set_new(o, "id", json_string(c->id));
	json_object_set_new(o, "images", im);
	json_object_set_new(o, "label", c->label ? json_string(c->label) : json_null());
	return o;
}

static int print_json(const struct nnp_case *v, size_t n)
{
	json_t *a = json_array();
	int rc = 0;
	for (size_t i = 0; a && i < n && !rc; i++)
		rc = json_array_append_new(a, case_json(&v[i]));
	if (!a || rc) {
		json_decref(a);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	rc = json_dumpf(a, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(a);
	if (rc || putchar('\n') == EOF)
		return nnp_err(NNP_EIO, "cannot write standard output");
	return NNP_OK;
}

static void check_count(const struct nnp_dataset *d, const char *split, size_t n)
{
	if (!strcmp(split, "Tr") && (long)n != d->num_training)
		nnp_warn("'%s/dataset.json' says numTraining %ld, but %zu training cases were found",
			 d->dir, d->num_training, n);
}

/* --folder: every case needs exactly the dataset's channels (else exit 1). */
static void check_channels(const struct nnp_dataset *d, const char *folder, const struct nnp_case *v, size_t n)
{
	if (!n)
		nnp_dief(NNP_EDATA, "no images ending in '%s' in '%s'", d->file_ending, folder);
	for (size_t i = 0; i < n; i++)
		if (v[i].nimages != d->nchannels)
			nnp_dief(NNP_EDATA, "case '%s': %zu channel file(s) in '%s', dataset.json has %zu channel(s)",
				 v[i].id, v[i].nimages, folder, d->nchannels);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_dataset *d;
	struct nnp_case *v;
	char dir[PATH_MAX];
	size_t n;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if (cl.folder) {
		/* a loose images folder: dataset.json (a file, or a folder holding one) gives
		 * the file ending and the channels every case must have */
		if ((rc = nnp_dataset_open_file(cl.dataset, &d)) || (rc = nnp_dataset_folder_cases(d, cl.folder, &v, &n)))
			nnp_die(rc);
		check_channels(d, cl.folder, v, n);
	} else {
		if ((rc = nnp_dataset_resolve(cl.dataset, "nnUNet_raw", dir, sizeof dir)) ||
		    (rc = nnp_dataset_open(dir, &d)))
			nnp_die(rc);
		if ((rc = nnp_dataset_cases(d, cl.split, &v, &n)))
			nnp_die(rc);
		check_count(d, cl.split, n);
	}
	if (cl.json)
		rc = print_json(v, n);
	else
		print_lines(v, n, cl.images);
	nnp_cases_free(v, n);
	nnp_dataset_free(d);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
