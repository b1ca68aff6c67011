/* model.c — loading nnU-Net results folders into runnable networks. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "json.h"
#include "plans.h"
#include "pth.h"

/* ---- parameters from a checkpoint ---- */

static const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
	size_t k = 0;
	buf[k++] = '(';
	for (int i = 0; i < ndim && k + 24 < n; i++)
		k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
	snprintf(buf + k, n - k, ")");
	return buf;
}

static const float *pth_get(void *ctx, const char *name, int ndim, const int64_t *shape)
{
	struct nnp_pth *p = ctx;
	const struct nnp_pth_tensor *t = nnp_pth_find(p, name);
	char a[128], b[128], alt[NNP_NET_NAME + 32];

	if (!t) {
		snprintf(alt, sizeof alt, "module.%s", name);
		t = nnp_pth_find(p, alt);
	}
	if (!t) {
		nnp_err(NNP_EDATA, "checkpoint '%s': tensor '%s' is missing (the plans' architecture needs it)",
			p->path, name);
		return NULL;
	}
	if (t->ndim != ndim || memcmp(t->shape, shape, (size_t)ndim * sizeof *shape) != 0) {
		nnp_err(NNP_EDATA, "checkpoint '%s': tensor '%s' has shape %s but the plans' architecture needs %s",
			p->path, name, shape_str(a, sizeof a, t->ndim, t->shape), shape_str(b, sizeof b, ndim, shape));
		return NULL;
	}
	if (!t->data) {
		nnp_err(NNP_EDATA, "checkpoint '%s': tensor '%s' has dtype %s, not a floating-point type", p->path,
			name, t->torch_dtype ? t->torch_dtype : "?");
		return NULL;
	}
	return t->data;
}

struct nnp_param_src nnp_model_pth_params(struct nnp_pth *p)
{
	struct nnp_param_src s = { p, pth_get };
	return s;
}

/* ---- dataset.json: number of outputs ---- */

static int is_background(const json_t *v)
{
	if (json_is_integer(v))
		return json_integer_value(v) == 0;
	if (json_is_array(v)) {
		size_t i;
		const json_t *x;
		json_array_foreach(v, i, x)
			if (!json_is_integer(x) || json_integer_value(x) != 0)
				return 0;
		return 1;
	}
	return 0;
}

int nnp_model_num_heads(const json_t *dataset, int *heads, int *regions)
{
	const json_t *labels = json_object_get(dataset, "labels"), *v;
	const char *k;
	int maxv = -1, nreg = 0, has_reg = 0;

	if (!json_is_object(labels) || !json_object_size(labels))
		return nnp_err(NNP_EDATA, "dataset.json: missing or empty 'labels'");
	json_object_foreach((json_t *)labels, k, v) {
		if (json_is_array(v) && json_array_size(v) > 1)
			has_reg = 1;
	}
	json_object_foreach((json_t *)labels, k, v) {
		if (!strcmp(k, "ignore"))
			continue;
		if (has_reg) {
			nreg += !is_background(v);
			continue;
		}
		if (json_is_array(v) && json_array_size(v) == 1)
			v = json_array_get(v, 0);
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
			return nnp_err(NNP_EDATA, "dataset.json: label '%s' is not a non-negative integer", k);
		if (json_integer_value(v) > maxv)
			maxv = (int)json_integer_value(v);
	}
	*regions = has_reg;
	*heads = has_reg ? nreg : maxv + 1; /* labels are consecutive 0..max (verify checks it) */
	if (*heads < 1)
		return nnp_err(NNP_EDATA, "dataset.json: no labels to predict");
	return NNP_OK;
}

int nnp_model_resolve(const char *dataset, const char *trainer, const char *plans, const char *config, char *out,
		      size_t outlen)
{
	char ds[4096], sub[512];
	int rc;
	if ((rc = nnp_dataset_resolve(dataset, "nnUNet_results", ds, sizeof ds)))
		return rc;
	snprintf(sub, sizeof sub, "%s__%s__%s", trainer ? trainer : "nnUNetTrainer", plans ? plans : "nnUNetPlans",
		 config);
	if ((rc = nnp_path_join(out, outlen, ds, sub)))
		return rc;
	if (!nnp_is_dir(out))
		return nnp_err(NNP_EDATA, "no trained model '%s' (train it, or give the folder with -m)", out);
	return NNP_OK;
}

int nnp_model_parse_device(const char *s, int *device)
{
	char *end;
	long v;
	if (!strcmp(s, "cpu")) {
		*device = -1;
		return NNP_OK;
	}
	if (!strcmp(s, "cuda")) {
		*device = 0;
		return NNP_OK;
	}
	if (strncmp(s, "cuda:", 5) || !s[5])
		return nnp_err(NNP_EUSAGE, "device '%s': want cpu, cuda or cuda:N", s);
	v = strtol(s + 5, &end, 10);
	if (*end || v < 0 || v > 255)
		return nnp_err(NNP_EUSAGE, "device '%s': want cpu, cuda or cuda:N", s);
	*device = (int)v;
	return NNP_OK;
}

static int open_file(const char *path, const struct nnp_model_opts *o, struct nnp_model *m);

/* ---- folder ---- */

static int load_json(const char *dir, const char *name, json_t **out)
{
	char path[4096];
	int rc;
	if ((rc = nnp_path_join(path, sizeof path, dir, name)))
		return rc;
	if (!nnp_is_file(path))
		return nnp_err(NNP_EDATA, "model folder '%s': no %s (is this an nnU-Net results folder?)", dir, name);
	return nnp_json_load(path, out);
}

/* The configuration: the folder name TRAINER__PLANS__CONFIG, or the
 * checkpoint's init_args.configuration, which wins. */
static char *folder_config(const char *dir)
{
	const char *base = strrchr(dir, '/'), *c;
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	for (base = dir + n; base > dir && base[-1] != '/'; base--)
		;
	c = NULL;
	for (const char *s = base; s + 1 < dir + n; s++)
		if (s[0] == '_' && s[1] == '_')
			c = s + 2;
	if (!c || c >= dir + n)
		return NULL;
	return strndup(c, (size_t)(dir + n - c));
}

static int mirror_axes(struct nnp_model *m, const json_t *meta)
{
	const json_t *ax = json_object_get(meta, "inference_allowed_mirroring_axes"), *v;
	size_t i;
	m->n_mirror_axes = -1;
	if (!ax || json_is_null(ax))
		return NNP_OK;
	if (!json_is_array(ax) || json_array_size(ax) > 3)
		return nnp_err(NNP_EDATA, "checkpoint: bad inference_allowed_mirroring_axes");
	m->n_mirror_axes = 0;
	json_array_foreach(ax, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= m->patch_ndim)
			return nnp_err(NNP_EDATA, "checkpoint: mirroring axis out of range");
		m->mirror_axes[m->n_mirror_axes++] = (int)json_integer_value(v);
	}
	return NNP_OK;
}

static int config_setup(struct nnp_model *m)
{
	const json_t *arch, *patch, *v;
	int heads, regions, rc;
	size_t i;

	if ((rc = nnp_plans_config_get(m->plans, m->config, "architecture", &arch)) ||
	    (rc = nnp_plans_config_get(m->plans, m->config, "patch_size", &patch)))
		return nnp_err_ctx(rc, "model '%s'", m->dir);
	if (!json_is_array(patch) || json_array_size(patch) < 2 || json_array_size(patch) > 3)
		return nnp_err(NNP_EDATA, "model '%s': bad patch_size", m->dir);
	m->patch_ndim = (int)json_array_size(patch);
	json_array_foreach(patch, i, v)
		m->patch[i] = json_integer_value(v);
	if ((rc = nnp_model_num_heads(m->dataset, &heads, &regions)))
		return nnp_err_ctx(rc, "model '%s'", m->dir);
	m->has_regions = regions;
	v = json_object_get(m->dataset, "channel_names");
	if (!json_is_object(v) || !json_object_size(v))
		return nnp_err(NNP_EDATA, "model '%s': dataset.json has no channel_names", m->dir);
	if ((rc = nnp_net_arch_parse(arch, (int)json_object_size(v), heads, &m->arch)))
		return nnp_err_ctx(rc, "model '%s' configuration '%s'", m->dir, m->config);
	if (m->arch.ndim != m->patch_ndim)
		return nnp_err(NNP_EDATA, "model '%s': patch_size has %d axes but the network is %dD", m->dir,
			       m->patch_ndim, m->arch.ndim);
	if ((rc = nnp_net_check_shape(&m->arch, m->patch)))
		return nnp_err_ctx(NNP_EDATA, "model '%s': patch_size", m->dir);
	return nnp_net_graph_build(&m->arch, &m->graph);
}

struct fold_visit {
	struct nnp_model *m;
	int k;
	const struct nnp_model_opts *o;
};

/* A results folder's fold written by nnpipe's trainer (an .nnpm checkpoint). */
static int fold_from_file(void *ctx, const json_t *h, const struct nnp_param_src *src,
			  const struct nnp_model_blob *extra, int nextra)
{
	struct fold_visit *v = ctx;
	struct nnp_model *m = v->m;
	int rc;
	(void)extra;
	(void)nextra;
	if (v->k == 0) {
		const char *cfg = json_string_value(json_object_get(h, "configuration"));
		json_t *meta;
		if (cfg) {
			free(m->config);
			m->config = strdup(cfg);
		}
		m->trainer = strdup(json_string_value(json_object_get(h, "trainer")) ?: "nnUNetTrainer");
		if (!m->config || !m->trainer)
			return nnp_err(NNP_ENOMEM, "model: out of memory");
		if (v->o->config && strcmp(v->o->config, m->config))
			return nnp_err(NNP_EUSAGE, "model '%s' is configuration '%s', not '%s'", m->dir, m->config,
				       v->o->config);
		meta = json_pack("{s:O?}", "inference_allowed_mirroring_axes", json_object_get(h, "mirror_axes"));
		rc = config_setup(m);
		if (!rc)
			rc = mirror_axes(m, meta);
		json_decref(meta);
		if (rc)
			return rc;
	}
	return nnp_engine_create(&m->graph, src, &v->o->engine, &m->engines[v->k]);
}

static int load_fold(struct nnp_model *m, int k, const struct nnp_model_opts *o)
{
	const char *fold = m->fold_names[k];
	char sub[NNP_NET_NAME + 64], path[4096];
	struct nnp_pth *p = NULL;
	struct nnp_param_src src;
	int rc;

	snprintf(sub, sizeof sub, "fold_%s/%s", fold, o->checkpoint ? o->checkpoint : "checkpoint_final.pth");
	if ((rc = nnp_path_join(path, sizeof path, m->dir, sub)))
		return rc;
	if (!nnp_is_file(path) && strlen(path) > 4 && !strcmp(path + strlen(path) - 4, ".pth") &&
	    strlen(path) + 2 < sizeof path) {
		/* a fold trained by nnpipe: checkpoint_final.nnpm next to where the .pth would be */
		strcpy(path + strlen(path) - 4, ".nnpm");
		if (!nnp_is_file(path))
			strcpy(path + strlen(path) - 5, ".pth");
	}
	if (!nnp_is_file(path))
		return nnp_err(NNP_EDATA, "model '%s': fold %s has no checkpoint '%s'", m->dir, fold, path);
	if (nnp_model_is_file(path)) {
		struct fold_visit v = { m, k, o };
		return nnp_model_file_visit(path, NULL, fold_from_file, &v);
	}
	if ((rc = nnp_pth_load(path, &p)))
		return rc;
	if (k == 0) {
		const char *cfg = json_string_value(json_object_get(json_object_get(p->meta, "init_args"),
								    "configuration"));
		const char *tr = json_string_value(json_object_get(p->meta, "trainer_name"));
		if (cfg) {
			free(m->config);
			m->config = strdup(cfg);
		}
		m->trainer = strdup(tr ? tr : "nnUNetTrainer");
		if (!m->config || !m->trainer) {
			nnp_pth_free(p);
			return nnp_err(NNP_ENOMEM, "model: out of memory");
		}
		if (o->config && strcmp(o->config, m->config)) {
			rc = nnp_err(NNP_EUSAGE, "model '%s' is configuration '%s', not '%s'", m->dir, m->config,
				     o->config);
			nnp_pth_free(p);
			return rc;
		}
		if ((rc = config_setup(m)) || (rc = mirror_axes(m, p->meta))) {
			nnp_pth_free(p);
			return rc;
		}
	}
	src = nnp_model_pth_params(p);
	rc = nnp_engine_create(&m->graph, &src, &o->engine, &m->engines[k]);
	nnp_pth_free(p);
	return rc;
}

int nnp_model_open(const char *dir, const struct nnp_model_opts *o, struct nnp_model **out)
{
	static const char *const deflt[] = { "0", "1", "2", "3", "4" };
	const char *const *folds = o->folds ? o->folds : deflt;
	int nf = o->folds ? o->nfolds : 5, rc;
	struct nnp_model *m;

	*out = NULL;
	if (nf < 1 || nf > NNP_MODEL_MAX_FOLDS)
		return nnp_err(NNP_EUSAGE, "model: %d folds (1..%d)", nf, NNP_MODEL_MAX_FOLDS);
	if (nnp_is_file(dir)) { /* an nnpipe model file (nnp import-model) */
		if (!(m = calloc(1, sizeof *m)) || !(m->dir = strdup(dir))) {
			free(m);
			return nnp_err(NNP_ENOMEM, "model: out of memory");
		}
		m->prec = o->engine.prec;
		if ((rc = open_file(dir, o, m))) {
			nnp_model_free(m);
			return rc;
		}
		*out = m;
		return NNP_OK;
	}
	if (!nnp_is_dir(dir))
		return nnp_err(NNP_EDATA, "model folder '%s': not a directory", dir);
	if (!(m = calloc(1, sizeof *m)) || !(m->dir = strdup(dir)))
		goto oom;
	m->config = folder_config(dir);
	m->prec = o->engine.prec;
	if ((rc = load_json(dir, "plans.json", &m->plans)) || (rc = load_json(dir, "dataset.json", &m->dataset)))
		goto fail;
	for (int k = 0; k < nf; k++) {
		if (strcmp(folds[k], "all") && strspn(folds[k], "0123456789") != strlen(folds[k])) {
			rc = nnp_err(NNP_EUSAGE, "fold '%s': want a number or 'all'", folds[k]);
			goto fail;
		}
		if (!(m->fold_names[k] = strdup(folds[k])))
			goto oom;
		m->nfolds = k + 1;
		if ((rc = load_fold(m, k, o)))
			goto fail;
	}
	*out = m;
	return NNP_OK;
oom:
	rc = nnp_err(NNP_ENOMEM, "model: out of memory");
fail:
	nnp_model_free(m);
	return rc;
}

void nnp_model_free(struct nnp_model *m)
{
	if (!m)
		return;
	for (int k = 0; k < m->nfolds; k++) {
		nnp_engine_free(m->engines[k]);
		free(m->fold_names[k]);
	}
	nnp_net_graph_release(&m->graph);
	json_decref(m->plans);
	json_decref(m->dataset);
	free(m->config);
	free(m->trainer);
	free(m->dir);
	free(m);
}

/* ------------------------------------------------------------------ */
/* nnpipe's model file (.nnpm): docs/inference.md "Model files"          */

#include <fcntl.h>
#include <msgpack.h>
#include <nettle/sha2.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NNPM_MAJOR 1
#define NNPM_HEADER_MAX ((size_t)64 << 20)

static void hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Every parameter of the graph, in operator order: name and PyTorch shape. */
struct param {
	char name[NNP_NET_NAME + 16];
	int ndim;
	int64_t shape[5];
	int64_t numel;
};

static int graph_params(const struct nnp_net_graph *g, struct param **out, int *n)
{
	struct param *p = calloc((size_t)g->nops * 2 + 1, sizeof *p);
	int k = 0;
	if (!p)
		return nnp_err(NNP_ENOMEM, "model: out of memory");
	for (int i = 0; i < g->nops; i++) {
		const struct nnp_op *op = &g->ops[i];
		const char *sfx[2] = { "weight", "bias" };
		if (op->kind == NNP_OP_ADD_ACT || op->kind == NNP_OP_AVGPOOL ||
		    (op->kind == NNP_OP_NORM_ACT && !g->arch.norm_affine))
			continue;
		for (int s = 0; s < 2; s++) {
			if (s == 1 && op->kind != NNP_OP_NORM_ACT && !op->has_bias)
				continue;
			snprintf(p[k].name, sizeof p[k].name, "%s.%s", op->w, sfx[s]);
			p[k].ndim = nnp_net_param_shape(g, op, sfx[s], p[k].shape);
			p[k].numel = 1;
			for (int d = 0; d < p[k].ndim; d++)
				p[k].numel *= p[k].shape[d];
			k++;
		}
	}
	*out = p;
	*n = k;
	return NNP_OK;
}

/* One fold's parameters from its checkpoint: hashed (pass 1) or written (pass 2). */
static int fold_payload(const char *ckpt, const struct param *p, int np, struct sha256_ctx *h, int fd,
			const char *out)
{
	struct nnp_pth *pth;
	struct nnp_param_src src;
	int rc = nnp_pth_load(ckpt, &pth);
	if (rc)
		return rc;
	src = nnp_model_pth_params(pth);
	for (int i = 0; i < np && !rc; i++) {
		const float *d = src.get(src.ctx, p[i].name, p[i].ndim, p[i].shape);
		size_t nb = (size_t)p[i].numel * sizeof(float);
		if (!d)
			rc = NNP_EDATA;
		else if (h)
			sha256_update(h, nb, (const uint8_t *)d);
		else if (nnp_write_all(fd, d, nb, out))
			rc = NNP_EIO;
	}
	nnp_pth_free(pth);
	return rc;
}

static json_t *params_json(const struct param *p, int np)
{
	json_t *a = json_array();
	int64_t off = 0;
	for (int i = 0; a && i < np; i++) {
		json_t *shape = json_array();
		for (int d = 0; d < p[i].ndim; d++)
			json_array_append_new(shape, json_integer(p[i].shape[d]));
		json_array_append_new(a, json_pack("{s:s,s:o,s:I}", "name", p[i].name, "shape", shape, "offset",
						   (json_int_t)off));
		off += p[i].numel * (int64_t)sizeof(float);
	}
	return a;
}

static int file_sha256(const char *path, char out[65])
{
	struct sha256_ctx c;
	uint8_t d[SHA256_DIGEST_SIZE], buf[1 << 16];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return nnp_err(NNP_EDATA, "cannot open '%s'", path);
	sha256_init(&c);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		sha256_update(&c, (size_t)n, buf);
	close(fd);
	if (n < 0)
		return nnp_err(NNP_EIO, "cannot read '%s'", path);
	sha256_digest(&c, sizeof d, d);
	hex(d, sizeof d, out);
	return NNP_OK;
}

static int64_t params_bytes(const struct param *p, int np)
{
	int64_t n = 0;
	for (int i = 0; i < np; i++)
		n += p[i].numel * (int64_t)sizeof(float);
	return n;
}

/* The header: identity of the source, the configuration and every fold's table. */
static int import_header(const struct nnp_model *m, const char *ckname, const struct param *p, int np,
			 json_t **out)
{
	json_t *h, *folds = json_array();
	char path[4096], sha[65];
	int rc;

	h = json_pack("{s:s,s:s,s:O,s:O,s:s}", "configuration", m->config, "trainer", m->trainer, "plans", m->plans,
		      "dataset", m->dataset, "source", m->dir);
	if (!h || !folds) {
		json_decref(h);
		json_decref(folds);
		return nnp_err(NNP_ENOMEM, "model: out of memory");
	}
	if (m->n_mirror_axes >= 0) {
		json_t *ax = json_array();
		for (int i = 0; i < m->n_mirror_axes; i++)
			json_array_append_new(ax, json_integer(m->mirror_axes[i]));
		json_object_set_new(h, "mirror_axes", ax);
	}
	json_object_set_new(h, "folds", folds);
	for (int k = 0; k < m->nfolds; k++) {
		struct sha256_ctx c;
		uint8_t d[SHA256_DIGEST_SIZE];
		char psha[65];
		snprintf(path, sizeof path, "%s/fold_%s/%s", m->dir, m->fold_names[k], ckname);
		sha256_init(&c);
		if ((rc = file_sha256(path, sha)) || (rc = fold_payload(path, p, np, &c, -1, NULL))) {
			json_decref(h);
			return rc;
		}
		sha256_digest(&c, sizeof d, d);
		hex(d, sizeof d, psha);
		json_array_append_new(folds, json_pack("{s:s,s:s,s:s,s:I,s:o}", "fold", m->fold_names[k],
						       "checkpoint_sha256", sha, "sha256", psha, "nbytes",
						       (json_int_t)params_bytes(p, np), "tensors", params_json(p, np)));
	}
	*out = h;
	return NNP_OK;
}

/* msgpack: {"nnp": "model", "v": [1, 0], "header": JSON text}, then per fold
 * one bin32 of little-endian float32 parameters in the table's order. */
static int write_preamble(int fd, const json_t *h, const char *out)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char *txt = json_dumps(h, JSON_COMPACT);
	int rc;
	if (!txt)
		return nnp_err(NNP_ENOMEM, "model: out of memory");
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	msgpack_pack_str(&pk, 3);
	msgpack_pack_str_body(&pk, "nnp", 3);
	msgpack_pack_str(&pk, 5);
	msgpack_pack_str_body(&pk, "model", 5);
	msgpack_pack_str(&pk, 1);
	msgpack_pack_str_body(&pk, "v", 1);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int(&pk, NNPM_MAJOR);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_str(&pk, 6);
	msgpack_pack_str_body(&pk, "header", 6);
	msgpack_pack_str(&pk, strlen(txt));
	msgpack_pack_str_body(&pk, txt, strlen(txt));
	free(txt);
	rc = nnp_write_all(fd, sb.data, sb.size, out) ? NNP_EIO : NNP_OK;
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static int write_folds(int fd, const struct nnp_model *m, const char *ckname, const struct param *p, int np,
		       const char *out)
{
	uint32_t nb = (uint32_t)params_bytes(p, np);
	unsigned char bh[5] = { 0xc6, (unsigned char)(nb >> 24), (unsigned char)(nb >> 16), (unsigned char)(nb >> 8),
				(unsigned char)nb };
	char path[4096];
	int rc;
	if (params_bytes(p, np) > (int64_t)UINT32_MAX)
		return nnp_err(NNP_ENOMEM, "model: a fold's parameters exceed 4 GiB");
	for (int k = 0; k < m->nfolds; k++) {
		snprintf(path, sizeof path, "%s/fold_%s/%s", m->dir, m->fold_names[k], ckname);
		if (nnp_write_all(fd, bh, sizeof bh, out))
			return NNP_EIO;
		if ((rc = fold_payload(path, p, np, NULL, fd, out)))
			return rc;
	}
	return NNP_OK;
}

int nnp_model_import(const char *dir, const struct nnp_model_opts *o, const char *out, int force)
{
	struct nnp_model *m;
	struct param *p = NULL;
	struct nnp_atomic a;
	json_t *h = NULL;
	int np = 0, rc;
	const char *ck = o->checkpoint ? o->checkpoint : "checkpoint_final.pth";

	if ((rc = nnp_model_open(dir, o, &m)))
		return rc;
	if ((rc = graph_params(&m->graph, &p, &np)) || (rc = import_header(m, ck, p, np, &h)) ||
	    (rc = nnp_atomic_open(&a, out, force))) {
		free(p);
		json_decref(h);
		nnp_model_free(m);
		return rc;
	}
	if ((rc = write_preamble(a.fd, h, out)) || (rc = write_folds(a.fd, m, ck, p, np, out)))
		nnp_atomic_abort(&a);
	else
		rc = nnp_atomic_commit(&a);
	free(p);
	json_decref(h);
	nnp_model_free(m);
	return rc;
}

/* ---- loading a model file ---- */

struct file_fold {
	const json_t *tensors;
	const unsigned char *data;
	uint64_t nbytes;
};

static const float *file_get(void *ctx, const char *name, int ndim, const int64_t *shape)
{
	const struct file_fold *f = ctx;
	size_t i;
	const json_t *t;
	json_array_foreach(f->tensors, i, t) {
		const json_t *sh = json_object_get(t, "shape");
		json_int_t off = json_integer_value(json_object_get(t, "offset"));
		int64_t numel = 1;
		if (strcmp(json_string_value(json_object_get(t, "name")) ?: "", name))
			continue;
		if ((int)json_array_size(sh) != ndim)
			break;
		for (int d = 0; d < ndim; d++) {
			if (json_integer_value(json_array_get(sh, (size_t)d)) != shape[d])
				goto bad;
			numel *= shape[d];
		}
		if (off < 0 || (uint64_t)off + (uint64_t)numel * 4 > f->nbytes)
			goto bad;
		return (const float *)(const void *)(f->data + off);
	}
bad:
	nnp_err(NNP_EDATA, "model file: tensor '%s' is missing or has the wrong shape", name);
	return NULL;
}

static int file_fold_at(const unsigned char *base, size_t len, size_t *pos, const json_t *fj, int verify,
			const char *path, struct file_fold *f)
{
	const unsigned char *b = base + *pos;
	uint64_t nb;
	if (*pos + 5 > len || b[0] != 0xc6)
		return nnp_err(NNP_EDATA, "model file '%s': fold '%s': payload missing at byte %zu", path,
			       json_string_value(json_object_get(fj, "fold")), *pos);
	nb = (uint64_t)b[1] << 24 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 8 | b[4];
	if (nb != (uint64_t)json_integer_value(json_object_get(fj, "nbytes")) || *pos + 5 + nb > len)
		return nnp_err(NNP_EDATA, "model file '%s': fold '%s': payload truncated or of the wrong size", path,
			       json_string_value(json_object_get(fj, "fold")));
	f->tensors = json_object_get(fj, "tensors");
	f->data = b + 5;
	f->nbytes = nb;
	*pos += 5 + nb;
	if (verify) {
		struct sha256_ctx c;
		uint8_t d[SHA256_DIGEST_SIZE];
		char sha[65];
		const char *want = json_string_value(json_object_get(fj, "sha256"));
		sha256_init(&c);
		sha256_update(&c, (size_t)nb, f->data);
		sha256_digest(&c, sizeof d, d);
		hex(d, sizeof d, sha);
		if (!want || strcmp(want, sha))
			return nnp_err(NNP_EDATA, "model file '%s': fold '%s': sha256 mismatch (corrupt file)", path,
				       json_string_value(json_object_get(fj, "fold")));
	}
	return NNP_OK;
}

static int parse_preamble(const unsigned char *base, size_t len, const char *path, json_t **h, size_t *pos)
{
	msgpack_unpacked u;
	size_t off = 0;
	const msgpack_object *hdr = NULL;
	int ok = 0, rc = NNP_OK;
	json_error_t je;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, (const char *)base, len < NNPM_HEADER_MAX ? len : NNPM_HEADER_MAX, &off) ==
		    MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = 0; i < u.data.via.map.size; i++) {
			const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
			if (kv->key.type != MSGPACK_OBJECT_STR)
				continue;
			if (kv->key.via.str.size == 3 && !memcmp(kv->key.via.str.ptr, "nnp", 3) &&
			    kv->val.type == MSGPACK_OBJECT_STR && kv->val.via.str.size == 5 &&
			    !memcmp(kv->val.via.str.ptr, "model", 5))
				ok |= 1;
			if (kv->key.via.str.size == 1 && kv->key.via.str.ptr[0] == 'v' &&
			    kv->val.type == MSGPACK_OBJECT_ARRAY && kv->val.via.array.size >= 1 &&
			    kv->val.via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
				ok |= kv->val.via.array.ptr[0].via.u64 == NNPM_MAJOR ? 2 : 8;
			if (kv->key.via.str.size == 6 && !memcmp(kv->key.via.str.ptr, "header", 6) &&
			    kv->val.type == MSGPACK_OBJECT_STR)
				hdr = &kv->val;
		}
	}
	if (ok & 8)
		rc = nnp_err(NNP_EDATA, "model file '%s': unsupported format version", path);
	else if ((ok & 3) != 3 || !hdr)
		rc = nnp_err(NNP_EDATA, "model file '%s': not an nnpipe model file", path);
	else if (!(*h = json_loadb(hdr->via.str.ptr, hdr->via.str.size, 0, &je)) || !json_is_object(*h))
		rc = nnp_err(NNP_EDATA, "model file '%s': bad header: %s", path, je.text);
	*pos = off;
	msgpack_unpacked_destroy(&u);
	return rc;
}

/* The whole file mapped read-only; munmap((void *)*base, *len) releases it. */
static int map_file(const char *path, const unsigned char **base, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || st.st_size < 8) {
		if (fd >= 0)
			close(fd);
		return nnp_err(NNP_EDATA, "model file '%s': cannot open or empty", path);
	}
	*len = (size_t)st.st_size;
	*base = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (*base == MAP_FAILED)
		return nnp_err(NNP_EIO, "model file '%s': cannot map it", path);
	return NNP_OK;
}

static int fold_wanted(const struct nnp_model_opts *o, const char *name)
{
	if (!o->folds)
		return 1;
	for (int i = 0; i < o->nfolds; i++)
		if (!strcmp(o->folds[i], name))
			return 1;
	return 0;
}

static int file_setup(struct nnp_model *m, const json_t *h, const struct nnp_model_opts *o)
{
	const char *cfg = json_string_value(json_object_get(h, "configuration"));
	const json_t *ax = json_object_get(h, "mirror_axes");
	json_t *meta;
	int rc;
	m->plans = json_incref(json_object_get(h, "plans"));
	m->dataset = json_incref(json_object_get(h, "dataset"));
	if (!cfg || !m->plans || !m->dataset)
		return nnp_err(NNP_EDATA, "model file '%s': header lacks configuration, plans or dataset", m->dir);
	if (!(m->config = strdup(cfg)) ||
	    !(m->trainer = strdup(json_string_value(json_object_get(h, "trainer")) ?: "nnUNetTrainer")))
		return nnp_err(NNP_ENOMEM, "model: out of memory");
	if (o->config && strcmp(o->config, cfg))
		return nnp_err(NNP_EUSAGE, "model '%s' is configuration '%s', not '%s'", m->dir, cfg, o->config);
	if ((rc = config_setup(m)))
		return rc;
	meta = json_pack("{s:O?}", "inference_allowed_mirroring_axes", ax);
	rc = mirror_axes(m, meta);
	json_decref(meta);
	return rc;
}

static int open_file(const char *path, const struct nnp_model_opts *o, struct nnp_model *m)
{
	const unsigned char *base;
	json_t *h = NULL;
	size_t pos = 0, len = 0, i;
	const json_t *folds, *fj;
	int rc;

	if ((rc = map_file(path, &base, &len)))
		return rc;
	if (!(rc = parse_preamble(base, len, path, &h, &pos)) && !(rc = file_setup(m, h, o))) {
		folds = json_object_get(h, "folds");
		json_array_foreach(folds, i, fj) {
			struct file_fold f;
			const char *name = json_string_value(json_object_get(fj, "fold"));
			int want = name && fold_wanted(o, name);
			struct nnp_param_src src = { &f, file_get };
			if ((rc = file_fold_at(base, len, &pos, fj, want, path, &f)))
				break;
			if (!want)
				continue;
			if (m->nfolds == NNP_MODEL_MAX_FOLDS || !(m->fold_names[m->nfolds] = strdup(name))) {
				rc = nnp_err(NNP_ENOMEM, "model: too many folds");
				break;
			}
			if ((rc = nnp_engine_create(&m->graph, &src, &o->engine, &m->engines[m->nfolds++])))
				break;
		}
		if (!rc && (!m->nfolds || (o->folds && m->nfolds != o->nfolds)))
			rc = nnp_err(NNP_EDATA, "model file '%s': the requested folds are not all in it", path);
	}
	json_decref(h);
	munmap((void *)base, len);
	return rc;
}

int nnp_model_file_header(const char *path, json_t **header)
{
	const unsigned char *base;
	size_t pos = 0, len = 0;
	int rc;
	*header = NULL;
	if ((rc = map_file(path, &base, &len)))
		return rc;
	rc = parse_preamble(base, len, path, header, &pos);
	munmap((void *)base, len);
	return rc;
}

int nnp_model_is_file(const char *path)
{
	unsigned char b[16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, b, sizeof b) : -1;
	if (fd >= 0)
		close(fd);
	/* fixmap of 3, key "nnp" (0xa3 n n p), value "model" (0xa5 ...) */
	return n >= 11 && b[0] == 0x83 && b[1] == 0xa3 && !memcmp(b + 2, "nnp", 3) && b[5] == 0xa5 &&
	       !memcmp(b + 6, "model", 5);
}

/* ---- model files written from parameters (the trainer's checkpoints) ---- */

static int blob_sha(const void *data, uint64_t n, char out[65])
{
	struct sha256_ctx c;
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_init(&c);
	sha256_update(&c, (size_t)n, data);
	sha256_digest(&c, sizeof d, d);
	hex(d, sizeof d, out);
	return NNP_OK;
}

static int write_bin32(int fd, const void *data, uint64_t n, const char *out)
{
	unsigned char bh[5] = { 0xc6, (unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
				(unsigned char)n };
	if (n > UINT32_MAX)
		return nnp_err(NNP_ENOMEM, "model file '%s': a payload exceeds 4 GiB", out);
	if (nnp_write_all(fd, bh, sizeof bh, out) || nnp_write_all(fd, data, (size_t)n, out))
		return NNP_EIO;
	return NNP_OK;
}

/* The graph's parameters from src as one contiguous payload. */
static int gather_params(const struct nnp_net_graph *g, const struct nnp_param_src *src, struct param **p, int *np,
			 float **buf, int64_t *nbytes)
{
	int64_t off = 0;
	int rc = graph_params(g, p, np);
	if (rc)
		return rc;
	*nbytes = params_bytes(*p, *np);
	if (!(*buf = malloc((size_t)*nbytes + 1))) {
		free(*p);
		return nnp_err(NNP_ENOMEM, "model: out of memory");
	}
	for (int i = 0; i < *np; i++) {
		const float *d = src->get(src->ctx, (*p)[i].name, (*p)[i].ndim, (*p)[i].shape);
		if (!d) {
			free(*p);
			free(*buf);
			return NNP_EDATA;
		}
		memcpy((char *)*buf + off, d, (size_t)(*p)[i].numel * sizeof(float));
		off += (*p)[i].numel * (int64_t)sizeof(float);
	}
	return NNP_OK;
}

int nnp_model_write(const char *out, const json_t *header, const struct nnp_net_graph *g, const char *fold,
		    const struct nnp_param_src *src, const struct nnp_model_blob *extra, int nextra, int force)
{
	struct param *p = NULL;
	float *buf = NULL;
	int64_t nb = 0;
	int np = 0, rc;
	json_t *h, *ex = json_array();
	char sha[65];
	struct nnp_atomic a;

	if ((rc = gather_params(g, src, &p, &np, &buf, &nb))) {
		json_decref(ex);
		return rc;
	}
	h = json_deep_copy(header);
	blob_sha(buf, (uint64_t)nb, sha);
	json_object_set_new(h, "folds", json_pack("[{s:s,s:s,s:I,s:o}]", "fold", fold, "sha256", sha, "nbytes",
						  (json_int_t)nb, "tensors", params_json(p, np)));
	for (int i = 0; i < nextra; i++) {
		blob_sha(extra[i].data, extra[i].nbytes, sha);
		json_array_append_new(ex, json_pack("{s:s,s:s,s:I}", "name", extra[i].name, "sha256", sha, "nbytes",
						    (json_int_t)extra[i].nbytes));
	}
	json_object_set_new(h, "extra", ex);
	if (!(rc = nnp_atomic_open(&a, out, force))) {
		rc = write_preamble(a.fd, h, out);
		if (!rc)
			rc = write_bin32(a.fd, buf, (uint64_t)nb, out);
		for (int i = 0; i < nextra && !rc; i++)
			rc = write_bin32(a.fd, extra[i].data, extra[i].nbytes, out);
		if (rc)
			nnp_atomic_abort(&a);
		else
			rc = nnp_atomic_commit(&a);
	}
	json_decref(h);
	free(p);
	free(buf);
	return rc;
}

/* A bin32 payload at *pos with the size and sha256 of its table entry. */
static int blob_at(const unsigned char *base, size_t len, size_t *pos, const json_t *ej, const char *path,
		   const unsigned char **data, uint64_t *n)
{
	const unsigned char *b = base + *pos;
	const char *want = json_string_value(json_object_get(ej, "sha256"));
	char sha[65];
	if (*pos + 5 > len || b[0] != 0xc6)
		return nnp_err(NNP_EDATA, "model file '%s': payload '%s' missing (truncated file)", path,
			       json_string_value(json_object_get(ej, "name")));
	*n = (uint64_t)b[1] << 24 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 8 | b[4];
	if (*n != (uint64_t)json_integer_value(json_object_get(ej, "nbytes")) || *pos + 5 + *n > len)
		return nnp_err(NNP_EDATA, "model file '%s': payload '%s' truncated or of the wrong size", path,
			       json_string_value(json_object_get(ej, "name")));
	*data = b + 5;
	*pos += 5 + *n;
	blob_sha(*data, *n, sha);
	if (!want || strcmp(want, sha))
		return nnp_err(NNP_EDATA, "model file '%s': payload '%s': sha256 mismatch (corrupt file)", path,
			       json_string_value(json_object_get(ej, "name")));
	return NNP_OK;
}

/* The payloads lie at any byte offset of the mapped file: hand them out as
 * copies at 16-byte aligned addresses (one buffer, *copies, freed by the caller). */
static int align_blobs(struct nnp_model_blob *ex, int nex, unsigned char **copies)
{
	size_t total = 0, off = 0;
	for (int i = 0; i < nex; i++)
		total += ((size_t)ex[i].nbytes + 15) / 16 * 16;
	if (!(*copies = aligned_alloc(16, total ? total : 16)))
		return nnp_err(NNP_ENOMEM, "model file: out of memory");
	for (int i = 0; i < nex; i++) {
		memcpy(*copies + off, ex[i].data, (size_t)ex[i].nbytes);
		ex[i].data = *copies + off;
		off += ((size_t)ex[i].nbytes + 15) / 16 * 16;
	}
	return NNP_OK;
}

int nnp_model_file_visit(const char *path, const char *fold, nnp_model_visit_fn fn, void *ctx)
{
	const unsigned char *base;
	json_t *h = NULL;
	size_t pos = 0, len = 0, i;
	const json_t *fj, *ej;
	struct file_fold f, pick = { 0 };
	struct nnp_model_blob ex[16];
	unsigned char *copies = NULL;
	int rc, found = 0, nex = 0;

	if ((rc = map_file(path, &base, &len)))
		return rc;
	if ((rc = parse_preamble(base, len, path, &h, &pos)))
		goto done;
	json_array_foreach(json_object_get(h, "folds"), i, fj) {
		const char *name = json_string_value(json_object_get(fj, "fold"));
		int want = !found && (!fold || (name && !strcmp(name, fold)));
		if ((rc = file_fold_at(base, len, &pos, fj, want, path, &f)))
			goto done;
		if (want)
			pick = f, found = 1;
	}
	if (!found) {
		rc = nnp_err(NNP_EDATA, "model file '%s': no fold '%s'", path, fold ? fold : "(any)");
		goto done;
	}
	json_array_foreach(json_object_get(h, "extra"), i, ej) {
		const unsigned char *d = NULL;
		uint64_t n = 0;
		if (nex == 16) {
			rc = nnp_err(NNP_EDATA, "model file '%s': too many extra payloads", path);
			goto done;
		}
		if ((rc = blob_at(base, len, &pos, ej, path, &d, &n)))
			goto done;
		ex[nex++] = (struct nnp_model_blob){ json_string_value(json_object_get(ej, "name")), d, n };
	}
	if (!(rc = align_blobs(ex, nex, &copies))) {
		struct nnp_param_src src = { &pick, file_get };
		rc = fn(ctx, h, &src, ex, nex);
		free(copies);
	}
done:
	json_decref(h);
	munmap((void *)base, len);
	return rc;
}
