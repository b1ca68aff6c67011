/* nnp-info — human (or JSON-lines) summary of the frames of a stream. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "frame.h"
#include "prog.h"
#include "stats.h"

static const struct nnp_proginfo info = {
	.name = "info",
	.summary = "summarise the frames of a stream: case, role, dtype, shape, spacing, statistics",
	.usage = "  nnp info [options] [STREAM...]",
	.options =
		"      --json        one JSON object per frame (JSON lines) instead of text\n"
		"  -H, --header-only  do not read payloads (no statistics; fast)\n"
		"      --props       print the frame's props in full\n"
		"      --batches     for training sample streams (nnp sample | nnp augment): one\n"
		"                    summary: samples, batches, patch shapes, forced-foreground\n"
		"                    and foreground fractions, label values, samples/s\n"
		"  -j, --threads N   threads for the statistics (default: NNP_THREADS or all cores)\n",
	.details =
		"Statistics are per channel, with the frame's scl_slope/scl_inter applied.\n"
		"Reads standard input when no STREAM is given ('-' also means stdin).\n\n"
		"Example:\n  nnp read --dataset 901 --case sph_000 | nnp info\n",
};

struct cmdline {
	int json, header_only, props, threads, batches;
	char **inputs;
	int ninputs;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_JSON = 256, OPT_PROPS, OPT_BATCHES };
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "header-only", no_argument, NULL, 'H' },
		{ "props", no_argument, NULL, OPT_PROPS },
		{ "batches", no_argument, NULL, OPT_BATCHES },
		{ "threads", required_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	static char *dash[] = { "-" };
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "Hj:", opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON: cl->json = 1; break;
		case 'H': cl->header_only = 1; break;
		case OPT_PROPS: cl->props = 1; break;
		case OPT_BATCHES: cl->batches = 1; break;
		case 'j': cl->threads = nnp_threads_from_arg(optarg); break;
		default: nnp_bad_option(argv);
		}
	}
	cl->inputs = argv + optind;
	cl->ninputs = argc - optind;
	if (cl->ninputs == 0) {
		cl->inputs = dash;
		cl->ninputs = 1;
	}
}

static int gather_stats(struct nnp_reader *r, const struct nnp_frame *f, struct nnp_stats *st)
{
	size_t cap = (size_t)nnp_reader_chunk_bytes(r);
	void *buf = nnp_aligned_alloc(cap);
	int64_t z0, zs;
	int rc;
	if (!buf)
		return nnp_err(NNP_ENOMEM, "out of memory for one chunk");
	if ((rc = nnp_stats_init(st, f))) {
		free(buf);
		return rc;
	}
	while ((rc = nnp_reader_chunk(r, buf, cap, &z0, &zs)) == 1)
		nnp_stats_add(st, f, buf, zs);
	free(buf);
	return rc;
}

static void print_text(const struct cmdline *cl, const struct nnp_frame *f, const struct nnp_stats *st, int idx)
{
	double mib = nnp_frame_nbytes(f) / 1048576.0;
	printf("frame %d: case '%s', role %s\n", idx, f->case_id ? f->case_id : "", f->role);
	printf("  dtype %s, shape (c,z,y,x) %lld x %lld x %lld x %lld, %.2f MiB in %lld chunk%s\n",
	       nnp_dtype_name(f->dtype), (long long)f->shape[0], (long long)f->shape[1], (long long)f->shape[2],
	       (long long)f->shape[3], mib, (long long)nnp_frame_nchunks(f), nnp_frame_nchunks(f) == 1 ? "" : "s");
	printf("  spacing (z,y,x) %g %g %g mm\n", f->spacing[0], f->spacing[1], f->spacing[2]);
	if (f->has_affine)
		for (int i = 0; i < 3; i++)
			printf("  %s [%10.4f %10.4f %10.4f %10.4f]\n", i == 0 ? "affine" : "      ", f->affine[i][0],
			       f->affine[i][1], f->affine[i][2], f->affine[i][3]);
	for (int64_t c = 0; st && c < st->nch; c++) {
		const struct nnp_chan_stats *s = &st->ch[c];
		printf("  channel %lld: min %.6g max %.6g mean %.6g", (long long)c, s->n ? s->min : NAN,
		       s->n ? s->max : NAN, nnp_chan_mean(s));
		if (f->scale && f->scale[2 * c] != 0)
			printf(" (scl %g, %g applied)", f->scale[2 * c], f->scale[2 * c + 1]);
		if (s->nonfinite)
			printf(", %llu NaN/Inf voxels", (unsigned long long)s->nonfinite);
		putchar('\n');
	}
	if (f->props) {
		char *p = json_dumps(f->props, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (p && !cl->props && strlen(p) > 200)
			strcpy(p + 196, "...}");
		printf("  props %s\n", p ? p : "{}");
		free(p);
	}
}

static json_t *frame_json(const struct nnp_frame *f, const struct nnp_stats *st)
{
	json_t *o = json_object(), *shape = json_array(), *sp = json_array(), *chs = json_array();
	for (int i = 0; i < 4; i++)
		json_array_append_new(shape, json_integer(f->shape[i]));
	for (int i = 0; i < 3; i++)
		json_array_append_new(sp, json_real(f->spacing[i]));
	json_object_set_new(o, "case", f->case_id ? json_string(f->case_id) : json_null());
	json_object_set_new(o, "role", json_string(f->role));
	json_object_set_new(o, "dtype", json_string(nnp_dtype_name(f->dtype)));
	json_object_set_new(o, "shape", shape);
	json_object_set_new(o, "spacing", sp);
	if (f->has_affine) {
		json_t *a = json_array();
		for (int i = 0; i < 4; i++)
			json_array_append_new(a, json_pack("[ffff]", f->affine[i][0], f->affine[i][1],
							   f->affine[i][2], f->affine[i][3]));
		json_object_set_new(o, "affine", a);
	}
	json_object_set_new(o, "nbytes", json_integer((json_int_t)nnp_frame_nbytes(f)));
	json_object_set_new(o, "nchunks", json_integer(nnp_frame_nchunks(f)));
	for (int64_t c = 0; st && c < st->nch; c++) {
		const struct nnp_chan_stats *s = &st->ch[c];
		json_t *cj = json_object();
		json_object_set_new(cj, "min", s->n ? json_real(s->min) : json_null());
		json_object_set_new(cj, "max", s->n ? json_real(s->max) : json_null());
		json_object_set_new(cj, "mean", s->n ? json_real(nnp_chan_mean(s)) : json_null());
		json_object_set_new(cj, "nonfinite", json_integer((json_int_t)s->nonfinite));
		json_array_append_new(chs, cj);
	}
	json_object_set_new(o, "channels", chs);
	if (f->props)
		json_object_set(o, "props", f->props);
	return o;
}

/* ---- --batches: a summary of a training sample stream ---- */

struct batches {
	long long samples, forced, with_fg, iterations, last_it;
	long long label_count[256 + 1];     /* values -1..255 (index v + 1) */
	int64_t shape[4];
	int mixed_shapes, batch_size;
	double t0;
};

static int label_summary(struct batches *b, const struct nnp_vol *v)
{
	size_t n = (size_t)nnp_frame_nvox(&v->f) * (size_t)v->f.shape[0];
	const int16_t *x = v->data;
	int fg = 0;
	if (v->f.dtype != NNP_I16)
		return nnp_err(NNP_EDATA, "case '%s': label frame of a sample stream must be int16",
			       v->f.case_id ? v->f.case_id : "?");
	for (size_t i = 0; i < n; i++) {
		int val = x[i] < -1 ? -1 : x[i] > 255 ? 255 : x[i];
		b->label_count[val + 1]++;
		fg |= x[i] > 0;
	}
	b->with_fg += fg;
	return NNP_OK;
}

static int batches_frame(struct batches *b, const struct nnp_vol *v)
{
	const json_t *sm = json_object_get(v->f.props, "sample");
	if (!sm)
		return nnp_err(NNP_EDATA, "case '%s': frame without props.sample: not a training sample stream",
			       v->f.case_id ? v->f.case_id : "?");
	if (!strcmp(v->f.role, "image")) {
		long long it = (long long)json_integer_value(json_object_get(sm, "iteration"));
		if (!b->samples) {
			memcpy(b->shape, v->f.shape, sizeof b->shape);
			b->last_it = it - 1;
		}
		b->mixed_shapes |= memcmp(b->shape, v->f.shape, sizeof b->shape) != 0;
		b->samples++;
		b->forced += json_is_true(json_object_get(sm, "forced_fg"));
		b->batch_size = (int)json_integer_value(json_object_get(sm, "batch_size"));
		if (it != b->last_it) {
			b->iterations++;
			b->last_it = it;
		}
		return NNP_OK;
	}
	return !strcmp(v->f.role, "label") ? label_summary(b, v) : NNP_OK;
}

static void batches_print(const struct cmdline *cl, const struct batches *b)
{
	double dt = nnp_now() - b->t0, rate = dt > 0 ? (double)b->samples / dt : 0;
	double pf = b->samples ? 100.0 * (double)b->forced / (double)b->samples : 0;
	double pg = b->samples ? 100.0 * (double)b->with_fg / (double)b->samples : 0;
	if (cl->json) {
		json_t *labels = json_object();
		for (int k = 0; k <= 256; k++)
			if (b->label_count[k]) {
				char key[8];
				snprintf(key, sizeof key, "%d", k - 1);
				json_object_set_new(labels, key, json_integer(b->label_count[k]));
			}
		json_t *o = json_pack("{s:I,s:I,s:i,s:[I,I,I,I],s:b,s:I,s:I,s:o,s:f}", "samples", (json_int_t)b->samples,
				      "batches", (json_int_t)b->iterations, "batch_size", b->batch_size, "shape",
				      (json_int_t)b->shape[0], (json_int_t)b->shape[1], (json_int_t)b->shape[2],
				      (json_int_t)b->shape[3], "mixed_shapes", b->mixed_shapes, "forced_fg",
				      (json_int_t)b->forced, "with_foreground", (json_int_t)b->with_fg, "label_voxels", labels,
				      "samples_per_s", rate);
		json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(o);
		return;
	}
	printf("samples %lld in %lld batches (batch size %d), patch %lld x %lld x %lld x %lld%s\n", b->samples,
	       b->iterations, b->batch_size, (long long)b->shape[0], (long long)b->shape[1], (long long)b->shape[2],
	       (long long)b->shape[3], b->mixed_shapes ? " (shapes differ)" : "");
	printf("forced foreground %lld (%.1f %%), samples with foreground %lld (%.1f %%)\n", b->forced, pf, b->with_fg,
	       pg);
	printf("label values:");
	for (int k = 0; k <= 256; k++)
		if (b->label_count[k])
			printf(" %d (%lld)", k - 1, b->label_count[k]);
	printf("\n%.2f samples/s over %.2f s\n", rate, dt);
}

static int batches_stream(const char *path, struct batches *b)
{
	struct nnp_reader *r;
	struct nnp_vol v;
	int rc;
	if (!strcmp(path, "-"))
		nnp_refuse_tty_stdin();
	if (!(r = nnp_reader_open(path)))
		return NNP_EDATA;
	while ((rc = nnp_reader_volume(r, &v)) == 1) {
		rc = batches_frame(b, &v);
		nnp_vol_release(&v);
		if (rc)
			break;
	}
	nnp_reader_free(r);
	return rc;
}

static int info_stream(const struct cmdline *cl, const char *path, int *idx)
{
	struct nnp_reader *r;
	struct nnp_frame f;
	int rc;
	if (!strcmp(path, "-"))
		nnp_refuse_tty_stdin();
	if (!(r = nnp_reader_open(path)))
		return NNP_EDATA;
	while ((rc = nnp_reader_next(r, &f)) == 1) {
		struct nnp_stats st = { 0 };
		if (!cl->header_only && (rc = gather_stats(r, &f, &st))) {
			nnp_stats_release(&st);
			nnp_frame_release(&f);
			break;
		}
		if (cl->json) {
			json_t *o = frame_json(&f, cl->header_only ? NULL : &st);
			json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
			putchar('\n');
			json_decref(o);
		} else {
			print_text(cl, &f, cl->header_only ? NULL : &st, (*idx)++);
		}
		nnp_stats_release(&st);
		nnp_frame_release(&f);
	}
	nnp_reader_free(r);
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	int idx = 1, rc = 0;
	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_threads_init(cl.threads);
	if (cl.batches) {
		static struct batches b;   /* owned by main; large tables */
		b.t0 = nnp_now();
		for (int i = 0; i < cl.ninputs && rc == 0; i++)
			rc = batches_stream(cl.inputs[i], &b);
		if (!rc)
			batches_print(&cl, &b);
	}
	for (int i = 0; i < cl.ninputs && rc == 0 && !cl.batches; i++)
		rc = info_stream(&cl, cl.inputs[i], &idx);
	if (rc < 0) {
		fflush(stdout);
		nnp_die(rc);
	}
	return nnp_close_stdout();
}
