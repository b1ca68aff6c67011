/* nnp-export — logits -> segmentation (and probabilities) in the original
 * geometry: nnU-Net's export_prediction_from_logits (common/export.h). */
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "export.h"
#include "frame.h"
#include "json.h"
#include "plans.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "export",
	.summary = "logits -> segmentation (+ probabilities) in the original image geometry",
	.usage = "  nnp export [-p PLANS.json -c CONFIGURATION] [options] [STREAM]",
	.options =
		"  -p, --plans FILE          resampling_fn_probabilities_kwargs of the plans\n"
		"  -c, --configuration NAME  (default: props.resampling_fn_probabilities_kwargs, else\n"
		"                            order 1, order_z 0, separate z auto)\n"
		"      --dataset-json FILE   labels / regions (default: dataset.json next to the plans\n"
		"                            when there is one, else labels 0..K-1 = channel index)\n"
		"      --save-probabilities  also emit a 'probabilities' frame (float32, K channels),\n"
		"                            before the 'seg' frame of the case\n"
		"      --fp16-compat         round the resampled logits to float16 like nnU-Net\n"
		"                            (bit-identical segmentations to nnU-Net's export)\n"
		"      --max-memory BYTES    refuse a case that needs more (suffix K, M, G; default\n"
		"                            75% of the physical memory; 0 = no limit)\n"
		"  -j, --threads N           threads (default: NNP_THREADS or all cores)\n",
	.details =
		"Reads 'logits' frames as nnp preprocess's geometry and props leave them\n"
		"(shape_before_cropping, bbox_used_for_cropping, shape_after_cropping_and_before_resampling,\n"
		"spacing_before_resampling, transpose_forward), resamples them to the cropped original grid\n"
		"(order 1; separate z: in-plane linear, nearest along z), takes the argmax (first maximum\n"
		"wins; regions: sigmoid > 0.5 in regions_class_order), puts it back into the uncropped\n"
		"volume and undoes the transposition: 'nnp write' then writes it with the original\n"
		"geometry. Streams the input slice by slice (two input slices in memory); see\n"
		"docs/export.md. Other frames pass through unchanged.\n",
};

struct cmdline {
	const char *plans, *config, *dataset_json, *input;
	int save_prob, fp16, threads, have_max;
	unsigned long long max_memory;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_DS = 256, OPT_PROB, OPT_FP16, OPT_MAXMEM };
	static const struct option opts[] = {
		{ "plans", required_argument, NULL, 'p' },
		{ "configuration", required_argument, NULL, 'c' },
		{ "dataset-json", required_argument, NULL, OPT_DS },
		{ "save-probabilities", no_argument, NULL, OPT_PROB },
		{ "fp16-compat", no_argument, NULL, OPT_FP16 },
		{ "max-memory", required_argument, NULL, OPT_MAXMEM },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "p:c:j:", opts, NULL)) != -1) {
		switch (c) {
		case 'p': cl->plans = optarg; break;
		case 'c': cl->config = optarg; break;
		case OPT_DS: cl->dataset_json = optarg; break;
		case OPT_PROB: cl->save_prob = 1; break;
		case OPT_FP16: cl->fp16 = 1; break;
		case OPT_MAXMEM: cl->max_memory = nnp_parse_size("--max-memory", optarg); cl->have_max = 1; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		default: nnp_bad_option(argv);
		}
	}
	if (!cl->plans != !cl->config)
		nnp_usage_error("-p PLANS.json and -c CONFIGURATION go together");
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	cl->input = optind < argc ? argv[optind] : "-";
}

static int load_kwargs(const struct cmdline *cl, struct nnp_export_opts *o)
{
	json_t *plans;
	int rc = nnp_json_load(cl->plans, &plans);
	if (rc)
		return rc;
	rc = nnp_plans_resampling(plans, cl->config, NNP_RS_PROBABILITIES, &o->order, &o->order_z,
				  &o->force_separate_z);
	json_decref(plans);
	o->kwargs_set = 1;
	return rc ? nnp_err_ctx(rc, "'%s'", cl->plans) : NNP_OK;
}

/* The folder of dataset.json: --dataset-json FILE (or its folder), else
 * next to the plans when present; NULL for plain argmax. */
static char *dataset_dir(const struct cmdline *cl)
{
	char *copy, *dir = NULL;
	const char *src = cl->dataset_json ? cl->dataset_json : cl->plans;
	if (!src)
		return NULL;
	if (cl->dataset_json && nnp_is_dir(cl->dataset_json))
		return nnp_strdup(cl->dataset_json);
	if (!(copy = nnp_strdup(src)))
		nnp_die(NNP_ENOMEM);
	if (cl->dataset_json && strcmp(basename(copy), "dataset.json"))
		nnp_usage_error("--dataset-json: '%s' is not named dataset.json", cl->dataset_json);
	strcpy(copy, src);
	dir = nnp_strprintf("%s", dirname(copy));
	free(copy);
	if (!cl->dataset_json && dir) {
		char *f = nnp_strprintf("%s/dataset.json", dir);
		if (!f || access(f, F_OK)) {
			free(dir);
			dir = NULL;
		}
		free(f);
	}
	return dir;
}

static unsigned long long default_max_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	return pages > 0 && psz > 0 ? (unsigned long long)pages * (unsigned long long)psz / 4 * 3 : 0;
}

static int run(struct nnp_reader *r, struct nnp_writer *w, struct nnp_export_opts *o)
{
	struct nnp_frame f;
	struct nnp_vol v;
	int rc;
	while ((rc = nnp_reader_next(r, &f)) == 1) {
		if (!strcmp(f.role, "logits")) {
			static const char *const names[] = { "", "linear (streamed)", "separate z (streamed)",
							     "whole volume" };
			rc = nnp_export_frame(r, &f, o, w);
			if (!rc)
				nnp_debug("case '%s': %s path", f.case_id ? f.case_id : "", names[o->path_used]);
			nnp_frame_release(&f);
		} else {
			nnp_vol_init(&v);
			v.f = f;
			if (!(rc = nnp_reader_payload(r, &v)))
				rc = nnp_writer_volume(w, &v);
			nnp_vol_release(&v);
		}
		if (rc)
			return rc;
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_export_opts o;
	struct nnp_export_labels labels;
	struct nnp_dataset *ds = NULL;
	struct nnp_reader *r;
	struct nnp_writer *w;
	char *dir;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	if (!strcmp(cl.input, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	nnp_export_opts_init(&o);
	o.save_probabilities = cl.save_prob;
	o.fp16_compat = cl.fp16;
	o.max_memory = cl.have_max ? cl.max_memory : default_max_memory();
	memset(&labels, 0, sizeof labels);
	if (cl.plans && (rc = load_kwargs(&cl, &o)))
		nnp_die(rc);
	if ((dir = dataset_dir(&cl))) {
		rc = nnp_dataset_open(dir, &ds);
		free(dir);
		if (rc || (rc = nnp_export_labels_from_dataset(ds, &labels)))
			nnp_die(rc);
		o.labels = &labels;
	}
	if (!(r = nnp_reader_open(cl.input)) || !(w = nnp_writer_fd(STDOUT_FILENO, "<stdout>")))
		nnp_die(NNP_EDATA);
	rc = run(r, w, &o);
	nnp_reader_free(r);
	nnp_writer_free(w);
	nnp_export_labels_release(&labels);
	nnp_dataset_free(ds);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
