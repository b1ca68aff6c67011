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

static int locations_frame(const struct nnp_classloc *cl, const struct nnp_frame *lab, struct nnp_vol *out)
{
	uint64_t k = 0, row = 0;
	json_t *keys = json_array(), *counts = json_array(), *p;
	int rc;
	for (size_t i = 0; i < cl->n; i++)
		k += cl->cls[i].n;
	nnp_vol_init(out);
	snprintf(out->f.role, sizeof out->f.role, "class_locations");
	if ((rc = nnp_frame_set_case(&out->f, lab->case_id)))
		goto fail;
	out->f.dtype = NNP_I32;
	out->f.shape[0] = 1;
	out->f.shape[1] = 1;
	out->f.shape[2] = k ? (int64_t)k : 1;   /* an empty table is one zero row, counts say 0 */
	out->f.shape[3] = 4;
	if ((rc = nnp_vol_alloc(out)))
		goto fail;
	for (size_t i = 0; i < cl->n; i++) {
		char key[256];
		nnp_classloc_key(&cl->cls[i], key, sizeof key);
		json_array_append_new(keys, json_string(key));
		json_array_append_new(counts, json_integer((json_int_t)cl->cls[i].n));
		for (uint64_t j = 0; j < cl->cls[i].n; j++, row++) {
			int32_t *r = (int32_t *)out->data + row * 4;
			r[0] = 0;
			memcpy(r + 1, cl->cls[i].zyx + j * 3, 3 * sizeof *r);
		}
	}
	p = nnp_frame_props(&out->f);
	json_object_set_new(p, "classes", keys);
	json_object_set_new(p, "counts", counts);
	return NNP_OK;
fail:
	json_decref(keys);
	json_decref(counts);
	nnp_vol_release(out);
	return rc;
}

/* Every value of the label map must be declared in labels (or be the -1
 * that crop puts outside the nonzero mask). */
static int check_values(const struct nnp_vol *lab, const json_t *labels)
{
	enum { VMAX = 1 << 16 };
	uint8_t *ok = calloc(VMAX + 1, 1);
	uint64_t n = nnp_frame_nvox(&lab->f) * (uint64_t)lab->f.shape[0];
	size_t es = nnp_dtype_size(lab->f.dtype);
	const char *k;
	json_t *v, *e;
	size_t i;
	int rc = NNP_OK;
	if (!ok)
		return nnp_err(NNP_ENOMEM, "out of memory");
	ok[0] = 1;   /* -1 */
	json_object_foreach((json_t *)labels, k, v) {
		if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < VMAX)
			ok[json_integer_value(v) + 1] = 1;
		json_array_foreach(v, i, e)
			if (json_is_integer(e) && json_integer_value(e) >= 0 && json_integer_value(e) < VMAX)
				ok[json_integer_value(e) + 1] = 1;
	}
	for (uint64_t j = 0; j < n && !rc; j++) {
		double x;
		nnp_to_f64(lab->f.dtype, (const char *)lab->data + j * es, &x, 1);
		if (x != (double)(int64_t)x || x < -1 || x >= VMAX || !ok[(int64_t)x + 1])
			rc = nnp_err(NNP_EDATA, "case '%s': label value %g is not declared in dataset.json's labels "
				     "(check the label map with 'nnp verify')", lab->f.case_id ? lab->f.case_id : "", x);
	}
	free(ok);
	return rc;
}

static int add_locations(struct nnp_writer *w, const struct nnp_vol *lab, const json_t *labels)
{
	struct nnp_classloc_reqs reqs = { 0 };
	struct nnp_classloc cl = { 0 };
	struct nnp_vol out;
	int rc;
	if (!labels && lab->f.props)
		labels = json_object_get(lab->f.props, "labels");
	if (!labels)
		return nnp_err(NNP_EUSAGE, "case '%s': no labels to sample: read with 'nnp read --dataset' "
			       "or give --dataset-json", lab->f.case_id ? lab->f.case_id : "");
	if ((rc = check_values(lab, labels)) || (rc = nnp_classloc_reqs_from_labels(labels, &reqs)))
		return rc;
	rc = nnp_classloc_sample(lab, reqs.req, reqs.n, NULL, &cl);
	if (!rc && !(rc = locations_frame(&cl, &lab->f, &out))) {
		rc = nnp_writer_volume(w, &out);
		nnp_vol_release(&out);
	}
	nnp_classloc_release(&cl);
	nnp_classloc_reqs_release(&reqs);
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
