/* nnp-overlay — PNG montages of a segmentation over its image
 * (nnUNetv2_plot_overlay_pngs, extended; common/overlay.h, docs/overlay.md). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atomic.h"
#include "err.h"
#include "ingest.h"
#include "json.h"
#include "overlay.h"
#include "prog.h"

#define IMAGES_MAX 64
#define CASES_MAX 100000

static const struct nnp_proginfo info = {
	.name = "overlay",
	.summary = "PNG montages of a segmentation (and its reference) over the image",
	.usage = "  nnp overlay [options] --image IMG [--image IMG...] --seg PRED [--ref GT] -o OUT.png\n"
		 "  nnp overlay [options] --dataset-dir IMAGES_DIR --seg-dir PRED_DIR [--ref-dir GT_DIR]\n"
		 "              -o OUT_DIR [-j N]",
	.options =
		"      --image FILE       an image file (repeat for more channel files; a 4D file\n"
		"                         gives all its channels)\n"
		"      --seg FILE         the segmentation to show (the prediction)\n"
		"      --ref FILE         the reference segmentation: adds a column and picks\n"
		"                         the slices\n"
		"      --dataset-dir DIR  batch: the images (CASE_0000<ending>, ...)\n"
		"      --seg-dir DIR      batch: one montage per CASE<ending> in DIR\n"
		"      --ref-dir DIR      batch: the references (CASE<ending>)\n"
		"  -o, --output PATH      the PNG (single case) or the folder (batch, created)\n"
		"  -c, --channel C        the channel shown (default 0; batch: CASE_%04d)\n"
		"      --slices N         rows: slices shown (default 3, at most 64)\n"
		"      --axis A           slicing axis in array order: 0 = z (default), 1 = y,\n"
		"                         2 = x\n"
		"      --alpha A          label opacity 0..1 (default 0.6)\n"
		"      --min-size PX      smallest panel edge in pixels (default 256)\n"
		"      --no-captions      no column titles or slice captions\n"
		"  -j, --threads N        batch: cases in parallel (default NNP_THREADS or all cores)\n"
		"  -f, --force            replace existing PNGs\n",
	.details =
		"One row per slice; columns: the image (grey, windowed to its 0.5-99.5\n"
		"percentiles), the image with the reference (with --ref) and with the\n"
		"prediction, labels blended with a fixed colour per label value.  Slices: the\n"
		"one with the most foreground (of the reference, else the prediction) and the\n"
		"others spread over the foreground's extent (25 % and 75 % for 3).  Panels are\n"
		"enlarged (nearest neighbour) to at least --min-size pixels with the in-plane\n"
		"spacing's aspect ratio.  Image, prediction and reference must share one grid\n"
		"(exit 1 naming the file).  Batch: the file ending comes from PRED_DIR/dataset.json\n"
		"when there is one, else .nii.gz.  See docs/overlay.md.\n"
		"\n"
		"Examples:\n"
		"  nnp overlay --image imagesTs/ex_008_0000.nii.gz --seg pred/ex_008.nii.gz \\\n"
		"      --ref labelsTs/ex_008.nii.gz -o ex_008.png\n"
		"  nnp overlay --dataset-dir imagesTs --seg-dir pred --ref-dir labelsTs -o png/\n",
};

struct cmdline {
	const char *images[IMAGES_MAX];
	size_t nimages;
	const char *seg, *ref, *output, *dataset_dir, *seg_dir, *ref_dir;
	struct nnp_overlay_opts o;
	int channel, force, threads;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_IMAGE = 256, OPT_SEG, OPT_REF, OPT_DDIR, OPT_SDIR, OPT_RDIR, OPT_SLICES, OPT_AXIS,
	       OPT_ALPHA, OPT_MIN, OPT_NOCAP };
	static const struct option opts[] = {
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "seg", required_argument, NULL, OPT_SEG },
		{ "ref", required_argument, NULL, OPT_REF },
		{ "dataset-dir", required_argument, NULL, OPT_DDIR },
		{ "seg-dir", required_argument, NULL, OPT_SDIR },
		{ "ref-dir", required_argument, NULL, OPT_RDIR },
		{ "output", required_argument, NULL, 'o' },
		{ "channel", required_argument, NULL, 'c' },
		{ "slices", required_argument, NULL, OPT_SLICES },
		{ "axis", required_argument, NULL, OPT_AXIS },
		{ "alpha", required_argument, NULL, OPT_ALPHA },
		{ "min-size", required_argument, NULL, OPT_MIN },
		{ "no-captions", no_argument, NULL, OPT_NOCAP },
		{ "threads", required_argument, NULL, 'j' },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	int c, single, batch;

	memset(cl, 0, sizeof *cl);
	nnp_overlay_opts_default(&cl->o);
	while ((c = getopt_long(argc, argv, ":o:c:j:f", opts, NULL)) != -1) {
		switch (c) {
		case OPT_IMAGE:
			if (cl->nimages >= IMAGES_MAX)
				nnp_usage_error("at most %d --image files", IMAGES_MAX);
			cl->images[cl->nimages++] = optarg;
			break;
		case OPT_SEG: cl->seg = optarg; break;
		case OPT_REF: cl->ref = optarg; break;
		case OPT_DDIR: cl->dataset_dir = optarg; break;
		case OPT_SDIR: cl->seg_dir = optarg; break;
		case OPT_RDIR: cl->ref_dir = optarg; break;
		case 'o': cl->output = optarg; break;
		case 'c': cl->channel = (int)nnp_parse_ll("--channel", optarg, 0, 9999); break;
		case OPT_SLICES:
			cl->o.nslices = (int)nnp_parse_ll("--slices", optarg, 1, NNP_OVERLAY_SLICES_MAX);
			break;
		case OPT_AXIS: cl->o.axis = (int)nnp_parse_ll("--axis", optarg, 0, 2); break;
		case OPT_ALPHA:
			cl->o.alpha = nnp_parse_double("--alpha", optarg);
			if (!(cl->o.alpha >= 0 && cl->o.alpha <= 1))
				nnp_usage_error("--alpha must be between 0 and 1, not '%s'", optarg);
			break;
		case OPT_MIN:
			cl->o.min_panel = (int)nnp_parse_ll("--min-size", optarg, 1, NNP_OVERLAY_PANEL_MAX);
			break;
		case OPT_NOCAP: cl->o.captions = 0; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		case 'f': cl->force = 1; break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	single = cl->nimages || cl->seg || cl->ref;
	batch = cl->dataset_dir || cl->seg_dir || cl->ref_dir;
	if (single && batch)
		nnp_usage_error("give either --image/--seg/--ref or --dataset-dir/--seg-dir/--ref-dir");
	if (!single && !batch)
		nnp_usage_error("missing --image and --seg (or --dataset-dir and --seg-dir)");
	if (single && (!cl->nimages || !cl->seg))
		nnp_usage_error("missing %s", cl->nimages ? "--seg PRED" : "--image IMG");
	if (batch && (!cl->dataset_dir || !cl->seg_dir))
		nnp_usage_error("missing %s", cl->dataset_dir ? "--seg-dir PRED_DIR" : "--dataset-dir IMAGES_DIR");
	if (!cl->output || !*cl->output)
		nnp_usage_error("missing -o %s", single ? "OUT.png" : "OUT_DIR");
	if (!strcmp(cl->output, "-"))
		nnp_usage_error("-o -: PNGs are written to files");
	if (cl->threads && !batch)
		nnp_usage_error("-j is for the batch form (--seg-dir)");
}

/* ---- batch ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* file_ending of DIR/dataset.json, else ".nii.gz" (into buf). */
static int file_ending(const char *dir, char *buf, size_t n)
{
	char path[PATH_MAX];
	json_t *j;
	const char *fe;
	int rc;
	snprintf(buf, n, ".nii.gz");
	if ((rc = nnp_path_join(path, sizeof path, dir, "dataset.json")))
		return rc;
	if (!nnp_is_file(path))
		return NNP_OK;
	if ((rc = nnp_json_load(path, &j)))
		return rc;
	fe = json_string_value(json_object_get(j, "file_ending"));
	if (!fe || !*fe || strchr(fe, '/') || strlen(fe) >= n) {
		json_decref(j);
		return nnp_err(NNP_EDATA, "'%s': file_ending: missing or not a file ending", path);
	}
	snprintf(buf, n, "%s", fe);
	json_decref(j);
	return NNP_OK;
}

/* The case ids of DIR's *ending files (sorted, hidden files skipped). */
static int list_cases(const char *dir, const char *ending, char ***out, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t el = strlen(ending), cap = 0;
	char **ids = NULL;
	*n = 0;
	if (!d)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len <= el || strcmp(e->d_name + len - el, ending))
			continue;
		if (*n >= CASES_MAX) {
			closedir(d);
			return nnp_err(NNP_ENOMEM, "'%s': more than %d cases", dir, CASES_MAX);
		}
		if (*n == cap) {
			char **p = realloc(ids, (cap = cap ? 2 * cap : 64) * sizeof *ids);
			if (!p)
				goto oom;
			ids = p;
		}
		if (!(ids[*n] = strndup(e->d_name, len - el)))
			goto oom;
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(ids, *n, sizeof *ids, cmp_str);
	*out = ids;
	return NNP_OK;
oom:
	closedir(d);
	*out = ids;
	return nnp_err(NNP_ENOMEM, "out of memory");
}

struct job {
	char image[PATH_MAX], seg[PATH_MAX], ref[PATH_MAX], out[PATH_MAX];
	int rc;
	char msg[1024];
	struct nnp_overlay_layout lay;
};

static int mkpath(char *buf, const char *dir, const char *id, const char *suffix)
{
	int n = snprintf(buf, PATH_MAX, "%s/%s%s", dir, id, suffix);
	if (n < 0 || n >= PATH_MAX)
		return nnp_err(NNP_EUSAGE, "path too long: '%s/%s%s'", dir, id, suffix);
	return NNP_OK;
}

static void log_case(const char *id, const struct nnp_overlay_layout *lay, int axis, const char *out)
{
	char s[NNP_OVERLAY_SLICES_MAX * 12 + 1] = "";
	size_t len = 0;
	for (int i = 0; i < lay->nrows; i++)
		len += (size_t)snprintf(s + len, sizeof s - len, " %lld", (long long)lay->slices[i]);
	if (lay->best >= 0)
		nnp_info("%s: %c slices%s (most foreground %lld) -> %s", id, "zyx"[axis], s,
			 (long long)lay->best, out);
	else
		nnp_info("%s: %c slices%s (no foreground) -> %s", id, "zyx"[axis], s, out);
}

static void run_batch(const struct cmdline *cl)
{
	char ending[64], suffix[80], **ids = NULL;
	struct job *jobs;
	size_t n = 0;
	long nt;
	int rc;

	if ((rc = file_ending(cl->seg_dir, ending, sizeof ending)) ||
	    (rc = list_cases(cl->seg_dir, ending, &ids, &n)))
		nnp_die(rc);
	if (!n)
		nnp_dief(NNP_EDATA, "'%s': no *%s segmentations", cl->seg_dir, ending);
	if (!(jobs = calloc(n, sizeof *jobs)))
		nnp_dief(NNP_ENOMEM, "out of memory");
	snprintf(suffix, sizeof suffix, "_%04d%s", cl->channel, ending);
	for (size_t i = 0; i < n; i++) {
		struct job *j = &jobs[i];
		if ((rc = mkpath(j->image, cl->dataset_dir, ids[i], suffix)) ||
		    (rc = mkpath(j->seg, cl->seg_dir, ids[i], ending)) ||
		    (cl->ref_dir && (rc = mkpath(j->ref, cl->ref_dir, ids[i], ending))) ||
		    (rc = mkpath(j->out, cl->output, ids[i], ".png")))
			nnp_die(rc);
		if (!nnp_is_file(j->image))
			nnp_dief(NNP_EDATA, "case '%s': no image '%s'", ids[i], j->image);
		if (cl->ref_dir && !nnp_is_file(j->ref))
			nnp_dief(NNP_EDATA, "case '%s': no reference '%s'", ids[i], j->ref);
		if (!cl->force && nnp_is_file(j->out))
			nnp_dief(NNP_EUSAGE, "'%s' exists (use --force to overwrite)", j->out);
	}
	if ((rc = nnp_mkdirs(cl->output)))
		nnp_die(rc);
	nnp_threads_init(cl->threads);
	nt = nnp_threads() < (long)n ? nnp_threads() : (long)n;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
	for (size_t i = 0; i < n; i++) {
		struct job *j = &jobs[i];
		const char *img = j->image;
		j->rc = nnp_overlay_files(&img, 1, 0, j->seg, cl->ref_dir ? j->ref : NULL, j->out, &cl->o,
					  cl->force, &j->lay);
		if (j->rc)
			snprintf(j->msg, sizeof j->msg, "case '%s': %s", ids[i], nnp_err_msg());
	}
	for (size_t i = 0; i < n; i++) {
		if (jobs[i].rc)
			nnp_dief(jobs[i].rc, "%s", jobs[i].msg);
		log_case(ids[i], &jobs[i].lay, cl->o.axis, jobs[i].out);
	}
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	free(jobs);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if (cl.seg_dir) {
		run_batch(&cl);
	} else {
		struct nnp_overlay_layout lay;
		char id[256];
		int rc;
		if (!cl.force && nnp_is_file(cl.output))
			nnp_dief(NNP_EUSAGE, "'%s' exists (use --force to overwrite)", cl.output);
		if ((rc = nnp_overlay_files(cl.images, cl.nimages, cl.channel, cl.seg, cl.ref, cl.output, &cl.o,
					    cl.force, &lay)))
			nnp_die(rc);
		nnp_case_from_path(cl.images[0], id, sizeof id);
		log_case(id, &lay, cl.o.axis, cl.output);
	}
	return nnp_close_stdout();
}
