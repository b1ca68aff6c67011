/* findbest.h — nnUNetv2_find_best_configuration (nnunet-facts §10.3).
 *
 * For every trained model (trainer x plans x configuration present in the
 * plans): the folds' validation predictions are accumulated into
 * MODEL/crossval_results_folds_<f_f_...>/ and evaluated; unless ensembling
 * is off, every pair of models is ensembled on these cross-validation
 * predictions (their CASE_probabilities files, nnp train --npz) into
 * RESULTS/ensembles/ensemble___M1___M2___<folds>/ and evaluated; the
 * highest foreground-mean Dice wins (ties: the first, single models before
 * ensembles); nnp determine-postprocessing runs on the winner; then
 * RESULTS/inference_information.json and inference_instructions.txt are
 * written.  The child programs (nnp-ensemble, nnp-determine-postprocessing)
 * are run from bin_dir.
 *
 * Ownership: the options are borrowed for the call; no global state.
 */
#ifndef NNP_FINDBEST_H
#define NNP_FINDBEST_H

#include <stddef.h>
#include <stdio.h>

struct nnp_find_best_opts {
	const char *dataset_arg;     /* as given (recorded as dataset_name_or_id) */
	const char *pre_dir;         /* $nnUNet_preprocessed/DatasetXXX_Name */
	const char *results_dir;     /* $nnUNet_results/DatasetXXX_Name */
	const char *raw_dir;         /* $nnUNet_raw/DatasetXXX_Name, or NULL */
	const char *const *trainers; /* default nnUNetTrainer */
	size_t ntrainers;
	const char *const *plans;    /* default nnUNetPlans */
	size_t nplans;
	const char *const *configs;  /* default 2d 3d_fullres 3d_lowres 3d_cascade_fullres */
	size_t nconfigs;
	const int *folds;            /* default 0..4 */
	size_t nfolds;
	int ensembling;              /* 0: --disable-ensembling */
	int overwrite;               /* 0: --no-overwrite (reuse what exists) */
	int threads;                 /* -j for evaluation, ensembling, postprocessing */
	const char *bin_dir;         /* where nnp-ensemble etc. live */
	FILE *report;                /* the results table and instructions (stdout), or NULL */
};

/* The whole step; NNP_OK or a negative error code (message recorded). */
int nnp_find_best(const struct nnp_find_best_opts *o);

/* From RESULTS/inference_information.json: a bash script that predicts
 * input_dir into output_dir with the winner (predict, ensemble,
 * postprocessing), written to out.  jobs: -j for the steps (0: theirs). */
int nnp_find_best_script(const char *results_dir, const char *input_dir, const char *output_dir, int jobs,
			 FILE *out);

#endif
