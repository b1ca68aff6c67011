/* nnp-read — NIfTI files or an nnU-Net raw dataset case -> frame stream. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "frame.h"
#include "ingest.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "read",
	.summary = "read NIfTI images (and a label map) into an nnp frame stream",
	.usage = "  nnp read [options] IMAGE... [--label LABEL]\n"
		 "  nnp read [options] --dataset DATASET --case ID [--split Tr|Ts]",
	.options =
		"  -l, --label FILE     also emit FILE as a 'label' frame (same grid as the image)\n"
		"  -c, --case ID        case id (default: from the first file name, minus _NNNN)\n"
		"  -d, --dataset D      nnU-Net raw dataset: folder, DatasetXXX_Name or id ($nnUNet_raw)\n"
		"  -s, --split S        Tr (imagesTr/labelsTr, default) or Ts (imagesTs/labelsTs)\n"
		"      --no-label       with --dataset: do not emit the label frame\n"
		"      --role ROLE      role of the image frame (default image)\n"
		"      --chunk-mb N     payload chunk size in MiB (default 8, max 64)\n"
		"  -o, --output FILE    write the stream to FILE (atomically) instead of stdout\n"
		"  -f, --force          overwrite an existing --output file\n",
	.details =
		"Several IMAGE files are the channels of one image (nnU-Net's CASE_0000, CASE_0001...);\n"
		"a 4D file contributes all its channels. All files must share shape, spacing and\n"
		"orientation. Voxels keep their stored dtype; scl_slope/scl_inter travel in the\n"
		"frame ('scale') and are applied by the filters that compute on intensities.\n\n"
		"Examples:\n"
		"  nnp read ct_0000.nii.gz --label ct_seg.nii.gz | nnp info\n"
		"  nnp read --dataset 901 --case sph_000 > sph_000.nnp\n"
		"  parallel 'nnp read -d raw/D --case {} | nnp write -o copy/' ::: $(nnp cases raw/D)\n",
};

struct cmdline {
	const char **images;
	size_t nimages;
	const char *label, *case_id, *dataset, *split, *role, *output;
	int no_label, force;
	long long chunk_mb;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_NOLABEL = 256, OPT_ROLE, OPT_CHUNK };
	static const struct option opts[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "case", required_argument, NULL, 'c' },
		{ "dataset", required_argument, NULL, 'd' },
		{ "split", required_argument, NULL, 's' },
		{ "no-label", no_argument, NULL, OPT_NOLABEL },
		{ "role", required_argument, NULL, OPT_ROLE },
		{ "chunk-mb", required_argument, NULL, OPT_CHUNK },
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	cl->role = "image";
	while ((c = getopt_long(argc, argv, "l:c:d:s:o:f", opts, NULL)) != -1) {
		switch (c) {
		case 'l': cl->label = optarg; break;
		case 'c': cl->case_id = optarg; break;
		case 'd': cl->dataset = optarg; break;
		case 's': cl->split = optarg; break;
		case 'o': cl->output = optarg; break;
		case 'f': cl->force = 1; break;
		case OPT_NOLABEL: cl->no_label = 1; break;
		case OPT_ROLE: cl->role = optarg; break;
		case OPT_CHUNK: cl->chunk_mb = nnp_parse_ll("--chunk-mb", optarg, 1, 64); break;
		default: nnp_bad_option(argv);
		}
	}
	cl->images = (const char **)argv + optind;
	cl->nimages = (size_t)(argc - optind);
	if (cl->dataset && cl->nimages)
		nnp_usage_error("give either IMAGE files or --dataset, not both");
	if (cl->dataset && !cl->case_id)
		nnp_usage_error("--dataset needs --case ID (list them with 'nnp cases')");
	if (!cl->dataset && !cl->nimages)
		nnp_usage_error("no input: give IMAGE files or --dataset D --case ID");
	if (cl->split && strcmp(cl->split, "Tr") && strcmp(cl->split, "Ts"))
		nnp_usage_error("--split must be Tr or Ts, not '%s'", cl->split);
	if (strlen(cl->role) >= 32 || !*cl->role)
		nnp_usage_error("--role must be a short name");
}

static void set_chunking(struct nnp_frame *f, long long mb)
{
	if (mb > 0) {
		uint64_t k = ((uint64_t)mb << 20) / nnp_frame_slice_bytes(f);
		f->chunk_slices = k < 1 ? 1 : (int64_t)k;
		if (f->chunk_slices > f->shape[1])
			f->chunk_slices = f->shape[1];
	}
}

static int add_dataset_props(struct nnp_frame *f, const struct nnp_dataset *d)
{
	json_t *p = nnp_frame_props(f), *names = json_array(), *labels = json_object();
	if (!p || !names || !labels)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < d->nchannels; i++)
		json_array_append_new(names, json_string(d->channel_names[i]));
	for (size_t i = 0; i < d->nlabels; i++) {
		const struct nnp_label *l = &d->labels[i];
		json_t *v;
		if (l->nvalues == 1) {
			v = json_integer(l->values[0]);
		} else {
			v = json_array();
			for (size_t k = 0; k < l->nvalues; k++)
				json_array_append_new(v, json_integer(l->values[k]));
		}
		json_object_set_new(labels, l->name, v);
	}
	json_object_set_new(p, "dataset", json_string(d->name));
	json_object_set_new(p, "channel_names", names);
	json_object_set_new(p, "labels", labels);
	json_object_set_new(p, "file_ending", json_string(d->file_ending));
	return NNP_OK;
}

static int prepare(struct nnp_ingest *g, const struct nnp_dataset *d, long long chunk_mb)
{
	int rc = d ? add_dataset_props(nnp_ingest_frame(g), d) : NNP_OK;
	if (!rc)
		set_chunking(nnp_ingest_frame(g), chunk_mb);
	return rc;
}

/* Open and check everything (label grid included) before the first byte
 * goes out, so a bad case produces no partial stream. */
static int emit_pair(struct nnp_writer *w, const char *const *images, size_t n, const char *label,
		     const char *role, const char *case_id, const struct nnp_dataset *d, long long chunk_mb)
{
	struct nnp_ingest *img = NULL, *lab = NULL;
	int rc = nnp_ingest_open(images, n, role, case_id, &img);
	if (!rc && label)
		rc = nnp_ingest_open(&label, 1, "label", case_id, &lab);
	if (!rc && lab)
		rc = nnp_ingest_check_same_grid(img, lab);
	if (!rc)
		rc = prepare(img, d, chunk_mb);
	if (!rc && lab)
		rc = prepare(lab, d, chunk_mb);
	if (!rc)
		rc = nnp_ingest_stream(img, w);
	if (!rc && lab)
		rc = nnp_ingest_stream(lab, w);
	nnp_ingest_free(img);
	nnp_ingest_free(lab);
	return rc;
}

static int run_dataset(struct nnp_writer *w, const struct cmdline *cl)
{
	char dir[4096];
	struct nnp_dataset *d = NULL;
	struct nnp_case c;
	int rc = nnp_dataset_resolve(cl->dataset, "nnUNet_raw", dir, sizeof dir);
	if (rc)
		return rc;
	if ((rc = nnp_dataset_open(dir, &d)))
		return rc;
	memset(&c, 0, sizeof c);
	rc = nnp_dataset_case(d, cl->split, cl->case_id, &c);
	if (!rc && c.nimages != d->nchannels)
		rc = nnp_err(NNP_EDATA, "case '%s': %zu channel files found, dataset.json declares %zu channels",
			     cl->case_id, c.nimages, d->nchannels);
	if (!rc)
		rc = emit_pair(w, (const char *const *)c.images, c.nimages, cl->no_label ? NULL : c.label,
			       cl->role, c.id, d, cl->chunk_mb);
	nnp_case_release(&c);
	nnp_dataset_free(d);
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_atomic out = { .fd = -1 };
	struct nnp_writer *w;
	char case_id[256];
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if (cl.output) {
		if ((rc = nnp_atomic_open(&out, cl.output, cl.force)))
			nnp_die(rc);
	} else {
		nnp_refuse_tty_stdout();
	}
	w = nnp_writer_fd(cl.output ? out.fd : STDOUT_FILENO, cl.output ? cl.output : "<stdout>");
	if (!w)
		nnp_die(NNP_ENOMEM);
	if (cl.dataset) {
		rc = run_dataset(w, &cl);
	} else {
		if (cl.case_id)
			snprintf(case_id, sizeof case_id, "%s", cl.case_id);
		else
			nnp_case_from_path(cl.images[0], case_id, sizeof case_id);
		rc = emit_pair(w, cl.images, cl.nimages, cl.label, cl.role, case_id, NULL, cl.chunk_mb);
	}
	nnp_writer_free(w);
	if (rc) {
		if (cl.output)
			nnp_atomic_abort(&out);
		nnp_die(rc);
	}
	if (cl.output && (rc = nnp_atomic_commit(&out)))
		nnp_die(rc);
	return nnp_close_stdout();
}
