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
	if (!nnp_is_file(path))
		return nnp_err(NNP_EDATA, "model '%s': fold %s has no checkpoint '%s'", m->dir, fold, path);
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
