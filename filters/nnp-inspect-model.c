/* nnp-inspect-model — list the tensors of a PyTorch checkpoint (common/pth.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "err.h"
#include "json.h"
#include "model.h"
#include "prog.h"
#include "pth.h"

static const struct nnp_proginfo info = {
	.name = "inspect-model",
	.summary = "list the tensors and training state of an nnU-Net checkpoint (.pth) or model file",
	.usage = "  nnp inspect-model [options] CHECKPOINT.pth\n"
		 "  nnp inspect-model [--json | --plans | --dataset-json] MODEL.nnpm",
	.options =
		"      --json          one JSON object: trainer, epoch, mirroring axes, init_args\n"
		"                      identity and the tensors (name, dtype, shape, storage);\n"
		"                      for a model file its header\n"
		"      --plans         (model file) print the plans it carries\n"
		"      --dataset-json  (model file) print the dataset.json it carries\n",
	.details =
		"The checkpoint is read with a restricted pickle reader: only data is\n"
		"rebuilt, anything that could execute code is refused (exit 1).\n\n"
		"Example:\n  nnp inspect-model fold_0/checkpoint_final.pth\n",
};

struct cmdline {
	int json, plans, dataset;
	const char *path;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_JSON = 256, OPT_PLANS, OPT_DS };
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON }, { "plans", no_argument, NULL, OPT_PLANS },
		{ "dataset-json", no_argument, NULL, OPT_DS },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON: cl->json = 1; break;
		case OPT_PLANS: cl->plans = 1; break;
		case OPT_DS: cl->dataset = 1; break;
		default: nnp_bad_option(argv);
		}
	}
	if (argc - optind != 1)
		nnp_usage_error("expected one CHECKPOINT.pth or MODEL.nnpm");
	cl->path = argv[optind];
}

static json_t *ident(const json_t *meta)
{
	json_t *ia = json_object_get(meta, "init_args"), *o = json_object(), *pl;
	const char *keys[] = { "configuration", "fold", "device" };
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		if (json_object_get(ia, keys[i]))
			json_object_set(o, keys[i], json_object_get(ia, keys[i]));
	if ((pl = json_object_get(ia, "plans"))) {
		if (json_object_get(pl, "plans_name"))
			json_object_set(o, "plans_name", json_object_get(pl, "plans_name"));
		if (json_object_get(pl, "dataset_name"))
			json_object_set(o, "dataset_name", json_object_get(pl, "dataset_name"));
	}
	return o;
}

static void print_text(const struct nnp_pth *p)
{
	const json_t *m = p->meta, *e;
	json_t *id = ident(m);
	const char *k;
	json_t *v;
	printf("checkpoint: %s\n", p->path);
	if ((e = json_object_get(m, "trainer_name")))
		printf("trainer: %s\n", json_string_value(e));
	if ((e = json_object_get(m, "current_epoch")))
		printf("epoch: %lld\n", (long long)json_integer_value(e));
	json_object_foreach(id, k, v) {
		char *s = json_dumps(v, JSON_ENCODE_ANY);
		printf("%s: %s\n", k, s ? s : "?");
		free(s);
	}
	json_decref(id);
	if ((e = json_object_get(m, "inference_allowed_mirroring_axes"))) {
		char *s = json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT);
		printf("mirroring axes: %s\n", s ? s : "?");
		free(s);
	}
	printf("tensors: %zu (%zu storages)\n", p->ntensors, p->nstorages);
	for (size_t i = 0; i < p->ntensors; i++) {
		const struct nnp_pth_tensor *t = &p->tensors[i];
		printf("%s\t%s\t[", t->name, t->torch_dtype);
		for (int d = 0; d < t->ndim; d++)
			printf(d ? ", %lld" : "%lld", (long long)t->shape[d]);
		printf("]\n");
	}
}

static int print_json(const struct nnp_pth *p)
{
	json_t *o = json_object(), *ts = json_array();
	const char *keys[] = { "trainer_name", "current_epoch", "inference_allowed_mirroring_axes" };
	char *s = NULL;
	int rc;
	json_object_set_new(o, "checkpoint", json_string(p->path));
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		if (json_object_get(p->meta, keys[i]))
			json_object_set(o, keys[i], json_object_get(p->meta, keys[i]));
	json_object_set_new(o, "init_args", ident(p->meta));
	json_object_set(o, "checkpoint_keys", json_object_get(p->meta, "keys"));
	json_object_set_new(o, "num_storages", json_integer((json_int_t)p->nstorages));
	for (size_t i = 0; i < p->ntensors; i++) {
		const struct nnp_pth_tensor *t = &p->tensors[i];
		json_t *sh = json_array();
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(sh, json_integer(t->shape[d]));
		json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:s, s:I}", "name", t->name,
						    "dtype", t->torch_dtype, "shape", sh,
						    "storage", p->storages[t->storage].key,
						    "offset", (json_int_t)t->offset));
	}
	json_object_set_new(o, "tensors", ts);
	rc = nnp_json_dumps(o, 1, 0, &s);
	json_decref(o);
	if (rc)
		return rc;
	printf("%s\n", s);
	free(s);
	return NNP_OK;
}

/* A model file: its header, or the plans / dataset.json it carries. */
static int inspect_file(const struct cmdline *cl)
{
	json_t *h, *folds;
	const json_t *f;
	char *s = NULL;
	size_t i;
	int rc = nnp_model_file_header(cl->path, &h);
	if (rc)
		return rc;
	if (cl->json || cl->plans || cl->dataset) {
		const json_t *o = cl->plans ? json_object_get(h, "plans") : cl->dataset ? json_object_get(h, "dataset") : h;
		if (!(rc = nnp_json_dumps(o, cl->json ? 1 : 4, 0, &s)))
			printf("%s\n", s);
		free(s);
		json_decref(h);
		return rc;
	}
	printf("model file: %s\ntrainer: %s\nconfiguration: \"%s\"\nsource: %s\n", cl->path,
	       json_string_value(json_object_get(h, "trainer")), json_string_value(json_object_get(h, "configuration")),
	       json_string_value(json_object_get(h, "source")));
	folds = json_object_get(h, "folds");
	json_array_foreach(folds, i, f)
		printf("fold %s: %zu tensors, %lld bytes, sha256 %s (checkpoint sha256 %s)\n",
		       json_string_value(json_object_get(f, "fold")), json_array_size(json_object_get(f, "tensors")),
		       (long long)json_integer_value(json_object_get(f, "nbytes")),
		       json_string_value(json_object_get(f, "sha256")),
		       json_string_value(json_object_get(f, "checkpoint_sha256")));
	json_decref(h);
	return NNP_OK;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_pth *p;
	int rc;
	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if (nnp_model_is_file(cl.path)) {
		if ((rc = inspect_file(&cl)))
			nnp_die(rc);
		return nnp_close_stdout();
	}
	if (cl.plans || cl.dataset)
		nnp_usage_error("--plans/--dataset-json need a model file (nnp import-model)");
	if ((rc = nnp_pth_load(cl.path, &p)))
		nnp_die(rc);
	if (cl.json)
		rc = print_json(p);
	else
		print_text(p);
	nnp_pth_free(p);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
