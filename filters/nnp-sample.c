/* nnp-sample — nnU-Net's training data loader as a stream: per iteration
 * B cases (with replacement) of a fold's split, a box per sample (forced
 * foreground for the last third of the batch), only that box read from the
 * case file; an image and a label frame per sample (docs/training-data.md,
 * schemas/frame.md "Training samples"). */
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "casefile.h"
#include "dataset.h"
#include "err.h"
#include "frame.h"
#include "json.h"
#include "plans.h"
#include "prog.h"
#include "rng.h"
#include "sample.h"
#include "split.h"

#define OPEN_MAX_CASES 256   /* case files kept open at once */

static const struct nnp_proginfo info = {
	.name = "sample",
	.summary = "nnU-Net's training patch sampler: image and label patches of a fold's cases",
	.usage = "  nnp sample -d DATASET -c CONFIGURATION --fold F [options]\n"
		 "  nnp sample --preprocessed DIR -c CONFIGURATION --fold F [options]",
	.options =
		"  -d, --dataset D           preprocessed dataset: Dataset<id>_<name> or id in $nnUNet_preprocessed\n"
		"      --preprocessed DIR    the preprocessed dataset folder itself\n"
		"  -c, --configuration NAME  e.g. 3d_fullres, 2d\n"
		"  -p, --plans NAME          plans identifier (default nnUNetPlans)\n"
		"  -f, --fold F              fold of splits_final.json, or 'all' (every case); a fold\n"
		"                            beyond the file: nnU-Net's seeded random 80:20 split\n"
		"      --split train|val     which list of the fold (default train)\n"
		"      --seed S              RandomState seed, 0..4294967295 (default 0)\n"
		"  -n, --iterations N        batches to emit (default: endless)\n"
		"  -b, --batch-size B        samples per batch (default: the plans' batch_size)\n",
	.details =
		"Per iteration: B case ids drawn with replacement from the sorted ids of the split;\n"
		"sample j is forced to contain foreground iff j >= round(B * 0.67); its box is nnU-Net's\n"
		"get_bbox with the enlarged initial patch (train) or the final patch (val). Each sample\n"
		"is an image frame (float32, C x P, 0 outside the case) and a label frame (int16, -1\n"
		"outside) with props.sample describing the draw. One RandomState(S) makes every draw:\n"
		"the same seed gives the same bytes. The endless stream ends quietly when the reader\n"
		"goes away (| head -c N).\n",
};

struct cmdline {
	const char *dataset, *dir, *config, *plans, *split;
	long long fold;                /* -1: all */
	uint32_t seed;
	long long iterations, batch;   /* -1: endless / from the plans */
};

struct ocase {
	struct nnp_casefile *cf;
	struct nnp_classlocs cl;
	long img, lab;
	int loaded_cl;
};

struct ctx {
	char dir[PATH_MAX], data[PATH_MAX];
	const char *config;
	struct nnp_sample_aug aug;
	int64_t P[3], F[3], batch;
	int val;
	char **ids;
	size_t n, nopen;
	struct ocase *oc;
	uint32_t seed;
};

/* snprintf into a path buffer; NNP_EDATA if it does not fit. */
static int mkpath(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int mkpath(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	int k;
	va_start(ap, fmt);
	k = vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return k < 0 || (size_t)k >= n ? nnp_err(NNP_EDATA, "path too long: '%.64s...'", buf) : NNP_OK;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_PRE = 256, OPT_SPLIT, OPT_SEED };
	static const struct option opts[] = {
		{ "dataset", required_argument, NULL, 'd' },
		{ "preprocessed", required_argument, NULL, OPT_PRE },
		{ "configuration", required_argument, NULL, 'c' },
		{ "plans", required_argument, NULL, 'p' },
		{ "fold", required_argument, NULL, 'f' },
		{ "split", required_argument, NULL, OPT_SPLIT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "iterations", required_argument, NULL, 'n' },
		{ "batch-size", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 }
	};
	int c, have_fold = 0;
	memset(cl, 0, sizeof *cl);
	cl->plans = "nnUNetPlans";
	cl->split = "train";
	cl->iterations = cl->batch = -1;
	while ((c = getopt_long(argc, argv, "d:c:p:f:n:b:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cl->dataset = optarg; break;
		case OPT_PRE: cl->dir = optarg; break;
		case 'c': cl->config = optarg; break;
		case 'p': cl->plans = optarg; break;
		case 'f':
			cl->fold = strcmp(optarg, "all") ? nnp_parse_ll("--fold", optarg, 0, 1 << 20) : -1;
			have_fold = 1;
			break;
		case OPT_SPLIT: cl->split = optarg; break;
		case OPT_SEED: cl->seed = (uint32_t)nnp_parse_ll("--seed", optarg, 0, 4294967295LL); break;
		case 'n': cl->iterations = nnp_parse_ll("--iterations", optarg, 0, LLONG_MAX); break;
		case 'b': cl->batch = nnp_parse_ll("--batch-size", optarg, 1, 1 << 20); break;
		default: nnp_bad_option(argv);
		}
	}
	if (!cl->dataset == !cl->dir)
		nnp_usage_error("need -d DATASET or --preprocessed DIR (one of them)");
	if (!cl->config || !have_fold)
		nnp_usage_error("need -c CONFIGURATION and --fold F");
	if (strcmp(cl->split, "train") && strcmp(cl->split, "val"))
		nnp_usage_error("--split must be 'train' or 'val', not '%s'", cl->split);
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
}

static int patch_of(const json_t *ps, const char *config, int64_t patch[3], int *dim)
{
	*dim = (int)json_array_size(ps);
	if (!json_is_array(ps) || *dim < 2 || *dim > 3)
		return nnp_err(NNP_EDATA, "configuration '%s': patch_size must be a list of 2 or 3 integers", config);
	for (int i = 0; i < *dim; i++) {
		const json_t *v = json_array_get(ps, (size_t)i);
		if (!json_is_integer(v))
			return nnp_err(NNP_EDATA, "configuration '%s': patch_size[%d] is not an integer", config, i);
		patch[i] = json_integer_value(v);
	}
	return NNP_OK;
}

/* patch_size, batch_size and the data folder of the configuration. */
static int load_plans(const struct cmdline *cl, struct ctx *x)
{
	const json_t *ps, *bs, *di;
	int64_t patch[3];
	json_t *plans;
	char path[PATH_MAX];
	int rc, dim;
	if ((rc = mkpath(path, sizeof path, "%s/%s.json", x->dir, cl->plans)) || (rc = nnp_json_load(path, &plans)))
		return rc;
	if ((rc = nnp_plans_config_get(plans, cl->config, "patch_size", &ps)) ||
	    (rc = nnp_plans_config_get(plans, cl->config, "batch_size", &bs)) ||
	    (rc = nnp_plans_config_get(plans, cl->config, "data_identifier", &di)))
		goto out;
	if ((rc = patch_of(ps, cl->config, patch, &dim)))
		goto out;
	if (cl->batch < 0 && (!json_is_integer(bs) || json_integer_value(bs) < 1)) {
		rc = nnp_err(NNP_EDATA, "configuration '%s': batch_size must be a positive integer", cl->config);
		goto out;
	}
	x->batch = cl->batch > 0 ? cl->batch : json_integer_value(bs);
	if (json_is_string(di))
		rc = mkpath(x->data, sizeof x->data, "%s/%s", x->dir, json_string_value(di));
	else
		rc = mkpath(x->data, sizeof x->data, "%s/%s_%s", x->dir, cl->plans, cl->config);
	if (!rc)
		rc = nnp_sample_configure(patch, dim, &x->aug);
out:
	json_decref(plans);
	return rc ? nnp_err_ctx(rc, "'%s'", path) : NNP_OK;
}

static int ids_of_fold(const struct cmdline *cl, struct ctx *x)
{
	return nnp_fold_ids(x->dir, strrchr(x->data, '/') + 1, cl->fold, !strcmp(cl->split, "val"), &x->ids, &x->n);
}

static void close_cases(struct ctx *x)
{
	for (size_t i = 0; x->oc && i < x->n; i++) {
		nnp_casefile_close(x->oc[i].cf);
		nnp_classlocs_release(&x->oc[i].cl);
		memset(&x->oc[i], 0, sizeof x->oc[i]);
	}
	x->nopen = 0;
}

/* Case i's file, opened on first use (at most OPEN_MAX_CASES stay open). */
static int open_case(struct ctx *x, size_t i, struct ocase **out)
{
	struct ocase *o = &x->oc[i];
	char path[PATH_MAX + NNP_CASE_ID_MAX + 8];
	int rc;
	if (!o->cf) {
		if (x->nopen == OPEN_MAX_CASES)
			close_cases(x);
		if ((rc = mkpath(path, sizeof path, "%s/%s.nnp", x->data, x->ids[i])) ||
		    (rc = nnp_casefile_open(path, &o->cf)))
			return rc;
		x->nopen++;
		o->img = nnp_casefile_find(o->cf, "image");
		o->lab = nnp_casefile_find(o->cf, "label");
		if (o->img < 0 || o->lab < 0)
			return nnp_err(NNP_EDATA, "'%s': needs an image and a label frame (a preprocessed training case)",
				       path);
		if ((rc = nnp_classlocs_read(o->cf, &o->cl)))
			return nnp_err_ctx(rc, "'%s'", path);
	}
	*out = o;
	return NNP_OK;
}

static json_t *box_json(const struct nnp_sample_pick *pk)
{
	json_t *b = json_array();
	for (int d = 0; d < 3; d++)
		json_array_append_new(b, json_pack("[II]", (json_int_t)pk->lo[d], (json_int_t)pk->hi[d]));
	return b;
}

static json_t *sample_props(const struct ctx *x, long long it, int64_t j, const char *id, int forced,
			    const struct nnp_sample_pick *pk)
{
	json_t *fp = json_array(), *mir = json_array();
	for (int i = 0; i < x->aug.dim; i++)
		json_array_append_new(fp, json_integer((json_int_t)x->aug.patch[i]));
	for (int i = 0; i < x->aug.nmirror; i++)
		json_array_append_new(mir, json_integer(x->aug.mirror[i]));
	return json_pack("{s:I, s:I, s:I, s:s, s:b, s:o, s:o, s:s, s:b, s:[ff], s:o, s:I}", "iteration",
			 (json_int_t)it, "index", (json_int_t)j, "batch_size", (json_int_t)x->batch, "case", id,
			 "forced_fg", forced, "box", box_json(pk), "final_patch", fp, "config", x->config,
			 "dummy_2d", x->aug.dummy_2d, "rotation", x->aug.rot[0], x->aug.rot[1], "mirror_axes", mir,
			 "seed", (json_int_t)x->seed);
}

/* One output frame: geometry of the case frame src, the box's shape,
 * origin moved to the box start. */
static int out_frame(const struct nnp_frame *src, const char *role, enum nnp_dtype dt, const struct ctx *x,
		     const struct nnp_sample_pick *pk, json_t *props, struct nnp_vol *v)
{
	int rc;
	nnp_vol_init(v);
	snprintf(v->f.role, sizeof v->f.role, "%s", role);
	if ((rc = nnp_frame_set_case(&v->f, src->case_id ? src->case_id : "")))
		return rc;
	v->f.dtype = dt;
	v->f.shape[0] = role[0] == 'l' ? 1 : src->shape[0];
	memcpy(v->f.shape + 1, x->P, sizeof x->P);
	memcpy(v->f.spacing, src->spacing, sizeof v->f.spacing);
	memcpy(v->f.affine, src->affine, sizeof v->f.affine);
	v->f.has_affine = src->has_affine;
	if (!v->f.has_affine)
		nnp_frame_default_affine(&v->f);
	for (int r = 0; r < 3; r++)   /* voxel (i, j, k) = (x, y, z): column 2 - d for axis d */
		for (int d = 0; d < 3; d++)
			v->f.affine[r][3] += v->f.affine[r][2 - d] * (double)pk->lo[d];
	json_object_set(nnp_frame_props(&v->f), "sample", props);
	return nnp_vol_alloc(v);
}

static int emit_sample(struct ctx *x, struct nnp_writer *w, struct nnp_rs *rs, long long it, int64_t j,
		       size_t ci)
{
	struct ocase *o = NULL;
	struct nnp_sample_pick pk;
	struct nnp_vol img, lab;
	const struct nnp_frame *fi, *fl;
	json_t *props;
	int forced = nnp_sample_forced(j, x->batch), rc;
	if ((rc = open_case(x, ci, &o)))
		return rc;
	fi = nnp_casefile_frame(o->cf, (size_t)o->img);
	fl = nnp_casefile_frame(o->cf, (size_t)o->lab);
	if (memcmp(fi->shape + 1, fl->shape + 1, 3 * sizeof fi->shape[0]) || fl->shape[0] != 1)
		return nnp_err(NNP_EDATA, "case '%s': the label frame's shape differs from the image's", x->ids[ci]);
	nnp_sample_bbox(rs, fi->shape + 1, x->P, x->F, forced, &o->cl, &pk);
	if (!(props = sample_props(x, it, j, x->ids[ci], forced, &pk)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	nnp_vol_init(&lab);
	if (!(rc = out_frame(fi, "image", NNP_F32, x, &pk, props, &img)) &&
	    !(rc = out_frame(fl, "label", NNP_I16, x, &pk, props, &lab)) &&
	    !(rc = nnp_sample_crop(o->cf, (size_t)o->img, pk.lo, x->P, NNP_F32, 0, img.data)) &&
	    !(rc = nnp_sample_crop(o->cf, (size_t)o->lab, pk.lo, x->P, NNP_I16, -1, lab.data)) &&
	    !(rc = nnp_writer_volume(w, &img)))
		rc = nnp_writer_volume(w, &lab);
	json_decref(props);
	nnp_vol_release(&img);
	nnp_vol_release(&lab);
	return rc;
}

static int run(struct ctx *x, struct nnp_writer *w, long long iterations)
{
	struct nnp_rs rs;
	uint64_t *pick = malloc((size_t)x->batch * sizeof *pick);
	int rc = NNP_OK;
	if (!pick || !(x->oc = calloc(x->n, sizeof *x->oc))) {
		free(pick);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	nnp_rs_seed(&rs, x->seed);
	for (long long it = 0; !rc && (iterations < 0 || it < iterations); it++) {
		nnp_rs_randint(&rs, x->n, (size_t)x->batch, pick);
		for (int64_t j = 0; !rc && j < x->batch; j++)
			rc = emit_sample(x, w, &rs, it, j, (size_t)pick[j]);
	}
	if (!rc)
		rc = nnp_writer_flush(w);
	free(pick);
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct ctx x;
	struct nnp_writer *w;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	nnp_refuse_tty_stdout();
	memset(&x, 0, sizeof x);
	x.config = cl.config;
	x.seed = cl.seed;
	x.val = !strcmp(cl.split, "val");
	if (cl.dir)
		rc = mkpath(x.dir, sizeof x.dir, "%s", cl.dir);
	else
		rc = nnp_dataset_resolve(cl.dataset, "nnUNet_preprocessed", x.dir, sizeof x.dir);
	if (rc || (rc = load_plans(&cl, &x)) || (rc = ids_of_fold(&cl, &x)))
		nnp_die(rc);
	nnp_sample_patches(&x.aug, x.val, x.P, x.F);
	if (!(w = nnp_writer_fd(1, "stdout")))
		nnp_die(NNP_ENOMEM);
	rc = run(&x, w, cl.iterations);
	nnp_writer_free(w);
	close_cases(&x);
	free(x.oc);
	nnp_strv_free(x.ids, x.n);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
