/* nnp-inspect-model — list the tensors of a PyTorch checkpoint (common/pth.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "err.h"
#include "json.h"
#include "prog.h"
#include "pth.h"

static const struct nnp_proginfo info = {
	.name = "inspect-model",
	.summary = "list the tensors and training state of an nnU-Net checkpoint (.pth)",
	.usage = "  nnp inspect-model [options] CHECKPOINT.pth",
	.options =
		"      --json        one JSON object: trainer, epoch, mirroring axes, init_args\n"
		"                    identity and the tensors (name, dtype, shape, storage)\n",
	.details =
		"The checkpoint is read with a restricted pickle reader: only data is\n"
		"rebuilt, anything that could execute code is refused (exit 1).\n\n"
		"Example:\n  nnp inspect-model fold_0/checkpoint_final.pth\n",
};

struct cmdline {
	int json;
	const char *path;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_JSON = 256 };
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON: cl->json = 1; break;
		default: nnp_bad_option(argv);
		}
	}
	if (argc - optind != 1)
		nnp_usage_error("expected one CHECKPOINT.pth");
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

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_pth *p;
	int rc;
	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
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
