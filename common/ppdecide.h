/* ppdecide.h — nnU-Net's determine_postprocessing (nnunet-facts §10.1;
 * docs/postprocess.md): which connected-component steps improve the Dice
 * of a cross-validation result, decided on the predictions of PRED_DIR
 * against the references of REF_DIR.
 *
 *  1. Baseline: PRED_DIR/summary.json as it is, or, when it is missing,
 *     nnU-Net's evaluation of the predictions (then written there too).
 *  2. Step 1: all foreground labels of dataset.json (also for region
 *     models) as one object; accepted iff the foreground mean Dice is
 *     greater than the baseline's and no class's mean Dice is smaller.
 *  3. Step 2, when there is more than one class (label or region): for
 *     each class in nnU-Net's order, that class's values as one object,
 *     applied to the current source; accepted iff the class's mean Dice is
 *     greater than the source's.  Accepted results become the source.
 *  Comparisons are C's < and > on doubles, which are false when either side
 *  is NaN exactly like Python's: a NaN foreground mean rejects step 1, a NaN
 *  class mean never blocks it, a NaN class mean rejects that class's step.
 *
 * Each step reads every prediction once, applies the accepted steps (kept
 * per case as runs of removed voxel indices, so no temporary NIfTI files
 * are written) and the candidate in memory, and counts TP/FP/FN/TN against
 * the reference streamed slab by slab (evaluate.h); cases run in parallel,
 * results do not depend on the thread count.
 *
 * Outputs, staged in a hidden folder PRED_DIR/.nnp-ppdecide.XXXXXX and
 * renamed into place only when everything succeeded (the folder is removed
 * on every error and on a stop request): PRED_DIR/summary.json (if it was
 * missing), PRED_DIR/postprocessed/ (the final source's cases + its
 * summary.json; not with remove_postprocessed) and PRED_DIR/postprocessing.json
 * (nnU-Net's fields, also the rule file of pprules.h).  Existing
 * postprocessed/ or postprocessing.json are replaced only with force.
 *
 * Memory per case in flight: about 9 bytes per voxel.
 * Ownership: the result owns its rules and step texts (nnp_ppd_result_release).
 */
#ifndef NNP_PPDECIDE_H
#define NNP_PPDECIDE_H

#include <signal.h>
#include <stddef.h>
#include "pprules.h"

struct nnp_ppd_opts {
	const char *pred_dir, *ref_dir;
	const char *dataset_json;   /* NULL: PRED_DIR/dataset.json (required) */
	const char *plans_json;     /* NULL: PRED_DIR/plans.json when present (checked, not needed) */
	int threads;                /* <= 0: nnp_threads() */
	int remove_postprocessed;   /* do not keep PRED_DIR/postprocessed/ */
	int force;                  /* replace postprocessed/ and postprocessing.json */
	volatile sig_atomic_t *stop;  /* NULL, or set (by a signal handler) to stop */
};

struct nnp_ppd_step {
	char *what;          /* "all foreground labels [1, 2] as one object", "label 2", "region (1, 2)" */
	double before, after;   /* the Dice compared (foreground mean for step 1) */
	int accepted;
	char *why;           /* step 1 rejected although the foreground improved: the class; or NULL */
};

struct nnp_ppd_result {
	struct nnp_pprules *rules;      /* the decision */
	struct nnp_ppd_step *steps;
	size_t nsteps, ncases;
	double fg_before, fg_after;     /* foreground mean Dice of the input and the result */
	int summary_written;            /* PRED_DIR/summary.json was computed */
	size_t unpredicted;             /* reference files without a prediction (nnU-Net warns) */
	char *first_unpredicted;
	size_t spacing_differs;         /* cases whose prediction and reference spacing differ */
	char *postprocessing_json;      /* its path */
};

int nnp_ppd_run(const struct nnp_ppd_opts *o, struct nnp_ppd_result *r);
void nnp_ppd_result_release(struct nnp_ppd_result *r);

#endif
