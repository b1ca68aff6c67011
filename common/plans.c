/* plans.c — nnUNetPlans.json access (see plans.h). */
#include <string.h>
#include "err.h"
#include "plans.h"
#include "transpose.h"

int nnp_plans_config_get(const json_t *plans, const char *name, const char *key, const json_t **out)
{
	const json_t *cfgs = json_object_get(plans, "configurations");
	const char *visited[64];
	int nv = 0;
	*out = NULL;
	if (!json_is_object(cfgs))
		return nnp_err(NNP_EDATA, "plans: configurations: missing or not an object");
	for (;;) {
		const json_t *cfg = json_object_get(cfgs, name), *parent;
		if (!json_is_object(cfg))
			return nnp_err(NNP_EDATA, "plans: no configuration '%s'", name);
		if ((*out = json_object_get(cfg, key)))
			return NNP_OK;
		if (!(parent = json_object_get(cfg, "inherits_from")))
			return NNP_OK;
		if (!json_is_string(parent))
			return nnp_err(NNP_EDATA, "plans: configuration '%s': inherits_from must be a string", name);
		for (int i = 0; i < nv; i++)
			if (!strcmp(visited[i], name))
				return nnp_err(NNP_EDATA, "plans: circular inherits_from at configuration '%s'", name);
		if (nv == (int)(sizeof visited / sizeof visited[0]))
			return nnp_err(NNP_EDATA, "plans: inherits_from chain longer than 64 configurations");
		visited[nv++] = name;
		name = json_string_value(parent);
	}
}

int nnp_plans_spacing(const json_t *plans, const char *name, double sp[3], int *n)
{
	const json_t *s;
	int rc = nnp_plans_config_get(plans, name, "spacing", &s);
	size_t k = json_array_size(s);
	if (rc)
		return rc;
	if (k != 2 && k != 3)
		return nnp_err(NNP_EDATA, "plans: configuration '%s': spacing must have 2 or 3 entries", name);
	for (size_t i = 0; i < k; i++) {
		const json_t *v = json_array_get(s, i);
		if (!json_is_number(v) || !(json_number_value(v) > 0))
			return nnp_err(NNP_EDATA, "plans: configuration '%s': spacing[%zu] is not a positive number",
				       name, i);
		sp[i + (3 - k)] = json_number_value(v);
	}
	*n = (int)k;
	return NNP_OK;
}

int nnp_plans_parse_kwargs(const json_t *kw, const char *key, int *order, int *order_z, int *force)
{
	const json_t *o = json_object_get(kw, "order");
	const json_t *oz = json_object_get(kw, "order_z");
	const json_t *f = json_object_get(kw, "force_separate_z");
	if (!json_is_object(kw))
		return nnp_err(NNP_EDATA, "%s must be an object", key);
	if (o && !json_is_integer(o))
		return nnp_err(NNP_EDATA, "%s.order must be an integer", key);
	if (oz && !json_is_integer(oz))
		return nnp_err(NNP_EDATA, "%s.order_z must be an integer", key);
	if (f && !json_is_null(f) && !json_is_boolean(f))
		return nnp_err(NNP_EDATA, "%s.force_separate_z must be null, true or false", key);
	if (o)
		*order = (int)json_integer_value(o);
	if (oz)
		*order_z = (int)json_integer_value(oz);
	if (f && !json_is_null(f))
		*force = json_is_true(f) ? 1 : 0;
	return NNP_OK;
}

int nnp_plans_resampling(const json_t *plans, const char *name, int seg, int *order, int *order_z, int *force)
{
	const char *key = seg == NNP_RS_PROBABILITIES ? "resampling_fn_probabilities_kwargs"
			  : seg ? "resampling_fn_seg_kwargs" : "resampling_fn_data_kwargs";
	const json_t *kw;
	int rc = nnp_plans_config_get(plans, name, key, &kw);
	*order = seg ? 1 : 3;
	*order_z = 0;
	*force = -1;
	if (rc || !kw)
		return rc;
	rc = nnp_plans_parse_kwargs(kw, key, order, order_z, force);
	return rc ? nnp_err_ctx(rc, "plans") : NNP_OK;
}

void nnp_plans_case_spacing(const double cfg_sp[3], int n, const double case_sp[3], double out[3])
{
	for (int i = 0; i < 3; i++)
		out[i] = cfg_sp[i];
	if (n == 2)
		out[0] = case_sp[0];
}

int nnp_plans_check_frame_transpose(const json_t *plans, const struct nnp_frame *f)
{
	int want[3];
	int rc = nnp_transpose_from_plans(plans, want);
	return rc ? rc : nnp_transpose_check(want, f);
}
