/* nnp-postprocess — nnU-Net's remove-all-but-largest-component on segmentations. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "frame.h"
#include "postprocess.h"
#include "pprules.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "postprocess",
	.summary = "keep the largest connected component of the foreground and/or of each label",
	.usage = "  nnp postprocess --largest-component [--per-class] [--labels L,...] [STREAM]\n"
		 "  nnp postprocess --per-class [--labels L,...] [STREAM]\n"
		 "  nnp postprocess --rules postprocessing.json [STREAM]",
	.options = "      --largest-component  all foreground labels as one object: keep its largest\n"
		   "                           component(s), the rest becomes background\n"
		   "      --per-class          then (or only) the same for each label on its own, in order\n"
		   "      --labels L,...       the foreground labels (default: every non-zero value present)\n"
		   "      --rules FILE         the steps of a rule file (postprocessing.json of nnp\n"
		   "                           determine-postprocessing or nnU-Net), in order\n",
	.details = "nnU-Net's remove_all_but_largest_component_from_segmentation (nnunet-facts 10.1):\n"
		   "full connectivity (26 neighbours in 3D, 8 in a 1-slice 2D image), every component of\n"
		   "the largest size is kept (ties keep all), removed voxels become 0. Works on seg and\n"
		   "label frames (uint8 or int16); other frames pass through. props.postprocess records\n"
		   "the steps and the voxels removed. Memory: the map plus 6 bytes per voxel.\n"
		   "--rules applies the file's postprocessing_kwargs one after another, each step keeping\n"
		   "the largest component(s) of the voxels whose value is one of labels_or_regions.\n"
		   "Example: nnp infer ... | nnp export | nnp postprocess --largest-component | nnp write -o out/\n"
		   "         nnp read --role seg p.nii.gz | nnp postprocess --rules postprocessing.json | nnp write -o q.nii.gz\n",
};

#define MAX_LABELS 4096

struct cmdline {
	const char *in;
	const char *rules_file;
	struct nnp_pprules *rules;
	int joint, per_class;
	int labels[MAX_LABELS], nlabels;
};

static void parse_labels(const char *arg, struct cmdline *cl)
{
	char *list = strdup(arg), *save = NULL;
	if (!list)
		nnp_dief(NNP_ENOMEM, "out of memory");
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (cl->nlabels == MAX_LABELS)
			nnp_usage_error("--labels: at most %d labels", MAX_LABELS);
		else
			cl->labels[cl->nlabels++] = (int)nnp_parse_ll("--labels", t, 1, 32767);
	}
	free(list);
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_LC = 256, O_PC, O_LABELS, O_RULES };
	static const struct option opts[] = { { "largest-component", no_argument, NULL, O_LC },
					      { "per-class", no_argument, NULL, O_PC },
					      { "labels", required_argument, NULL, O_LABELS },
					      { "rules", required_argument, NULL, O_RULES },
					      { NULL, 0, NULL, 0 } };
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_LC: cl->joint = 1; break;
		case O_PC: cl->per_class = 1; break;
		case O_LABELS: parse_labels(optarg, cl); break;
		case O_RULES: cl->rules_file = optarg; break;
		default: nnp_bad_option(argv);
		}
	}
	if (cl->rules_file && (cl->joint || cl->per_class || cl->nlabels))
		nnp_usage_error("--rules excludes --largest-component, --per-class and --labels");
	if (!cl->joint && !cl->per_class && !cl->rules_file)
		nnp_usage_error("give --largest-component and/or --per-class, or --rules FILE");
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	cl->in = optind < argc ? argv[optind] : "-";
}

/* Value v of voxel i as int. */
static int value_at(const struct nnp_vol *v, int64_t i)
{
	return v->f.dtype == NNP_U8 ? ((const uint8_t *)v->data)[i] : ((const int16_t *)v->data)[i];
}

/* The labels present (non-zero values), ascending. */
static int present_labels(const struct nnp_vol *v, int64_t nv, int *out)
{
	static const int span = 65536;
	unsigned char *seen = calloc((size_t)span, 1);
	int n = 0;
	if (!seen)
		return nnp_err(NNP_ENOMEM, "out of memory");
	for (int64_t i = 0; i < nv; i++)
		seen[value_at(v, i) + 32768] = 1;
	for (int k = 0; k < span && n < MAX_LABELS; k++)
		if (seen[k] && k != 32768)
			out[n++] = k - 32768;
	free(seen);
	return n;
}

static int keep_largest(struct nnp_vol *v, const int64_t n[3], const int *labels, int nl, int64_t *removed)
{
	return v->f.dtype == NNP_U8 ? nnp_pp_keep_largest_u8(v->data, n, labels, nl, removed) :
				      nnp_pp_keep_largest_i16(v->data, n, labels, nl, removed);
}

/* The steps of a rule file; props.postprocess lists each with its count. */
static int apply_rules(const struct nnp_pprules *r, struct nnp_vol *v, const int64_t n[3], json_t *steps)
{
	int64_t *rem = calloc(r->n ? r->n : 1, sizeof *rem);
	int rc;
	if (!rem) {
		json_decref(steps);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	if ((rc = nnp_pprules_apply(r, v->f.dtype, v->data, n, rem))) {
		free(rem);
		json_decref(steps);
		return rc;
	}
	for (size_t i = 0; i < r->n; i++)
		json_array_append_new(steps, json_pack("{s:O,s:I}", "labels_or_regions", r->v[i].kwarg, "removed",
						       (json_int_t)rem[i]));
	free(rem);
	if (!v->f.props)
		v->f.props = json_object();
	json_object_set_new(v->f.props, "postprocess", steps);
	return NNP_OK;
}

static int process(const struct cmdline *cl, struct nnp_vol *v)
{
	int64_t n[3] = { v->f.shape[1], v->f.shape[2], v->f.shape[3] }, nv = n[0] * n[1] * n[2], rem;
	int labels[MAX_LABELS], nl = cl->nlabels, rc;
	json_t *steps;

	if (v->f.shape[0] != 1)
		return nnp_err(NNP_EDATA, "case '%s': a %s frame with %lld channels (want 1)",
			       v->f.case_id ? v->f.case_id : "?", v->f.role, (long long)v->f.shape[0]);
	if (v->f.dtype != NNP_U8 && v->f.dtype != NNP_I16)
		return nnp_err(NNP_EDATA, "case '%s': %s frame of dtype %s (want uint8 or int16)",
			       v->f.case_id ? v->f.case_id : "?", v->f.role, nnp_dtype_name(v->f.dtype));
	if (!(steps = json_array()))
		return nnp_err(NNP_ENOMEM, "out of memory");
	if (cl->rules)
		return apply_rules(cl->rules, v, n, steps);
	if (nl)
		memcpy(labels, cl->labels, (size_t)nl * sizeof *labels);
	else if ((nl = present_labels(v, nv, labels)) < 0) {
		json_decref(steps);
		return nl;
	}
	if (cl->joint && nl) {
		if ((rc = keep_largest(v, n, labels, nl, &rem))) {
			json_decref(steps);
			return rc;
		}
		json_array_append_new(steps, json_pack("{s:s,s:I}", "foreground", "all", "removed", (json_int_t)rem));
	}
	for (int k = 0; cl->per_class && k < nl; k++) {
		if ((rc = keep_largest(v, n, &labels[k], 1, &rem))) {
			json_decref(steps);
			return rc;
		}
		json_array_append_new(steps, json_pack("{s:i,s:I}", "label", labels[k], "removed", (json_int_t)rem));
	}
	if (!v->f.props)
		v->f.props = json_object();
	json_object_set_new(v->f.props, "postprocess", steps);
	return NNP_OK;
}

static int is_seg(const char *role)
{
	return !strcmp(role, "seg") || !strcmp(role, "label");
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_reader *r;
	struct nnp_writer *w;
	struct nnp_vol v;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if (cl.rules_file && (rc = nnp_pprules_load(cl.rules_file, &cl.rules)))
		nnp_die(rc);
	if (!strcmp(cl.in, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	if (!(r = nnp_reader_open(cl.in)) || !(w = nnp_writer_fd(STDOUT_FILENO, "<stdout>")))
		nnp_die(NNP_EDATA);
	while ((rc = nnp_reader_volume(r, &v)) == 1) {
		rc = is_seg(v.f.role) ? process(&cl, &v) : NNP_OK;
		if (!rc)
			rc = nnp_writer_volume(w, &v);
		nnp_vol_release(&v);
		if (rc)
			break;
	}
	if (!rc)
		rc = nnp_writer_flush(w);
	nnp_reader_free(r);
	nnp_writer_free(w);
	nnp_pprules_free(cl.rules);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
