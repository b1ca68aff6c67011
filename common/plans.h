/* plans.h — reading nnUNetPlans.json (written by nnp plan or nnU-Net).
 * Ownership: returned json_t pointers are borrowed from the plans object. */
#ifndef NNP_PLANS_H
#define NNP_PLANS_H

#include <jansson.h>
#include "frame.h"

/* configurations[name][key], following inherits_from like nnU-Net's
 * PlansManager (the child's keys win; cycles are errors).  *out is NULL
 * when no configuration in the chain has the key. */
int nnp_plans_config_get(const json_t *plans, const char *name, const char *key, const json_t **out);
/* A configuration's target spacing (z, y, x): 3 entries, or 2 for 2d
 * configurations (then *n = 2). */
int nnp_plans_spacing(const json_t *plans, const char *name, double sp[3], int *n);
/* resampling_fn_{data,seg,probabilities}_kwargs (seg = NNP_RS_DATA,
 * NNP_RS_SEG, NNP_RS_PROBABILITIES): order, order_z, force_separate_z
 * (-1 = None/auto, 0, 1); defaults 3/0/auto for data, 1/0/auto else. */
enum { NNP_RS_DATA = 0, NNP_RS_SEG = 1, NNP_RS_PROBABILITIES = 2 };
int nnp_plans_resampling(const json_t *plans, const char *name, int seg, int *order, int *order_z, int *force);
/* Parse one kwargs object ({order, order_z, force_separate_z}, missing
 * keys keep the values passed in); key names it in messages. */
int nnp_plans_parse_kwargs(const json_t *kw, const char *key, int *order, int *order_z, int *force);
/* The target spacing of a case: the configuration's, with a 2d
 * configuration (n = 2) keeping the case's own z spacing (nnU-Net never
 * resamples 2d data along axis 0). */
void nnp_plans_case_spacing(const double cfg_sp[3], int n, const double case_sp[3], double out[3]);
/* NNP_EDATA unless frame f carries the plans' transpose_forward (set by
 * 'nnp transpose -p PLANS'); names the fix. */
int nnp_plans_check_frame_transpose(const json_t *plans, const struct nnp_frame *f);

#endif
