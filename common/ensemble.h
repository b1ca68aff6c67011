/* ensemble.h — nnU-Net's nnUNetv2_ensemble (ensemble_folders,
 * nnunet-facts §9.8; docs/ensemble.md): the probabilities that several
 * models predicted for the same cases, averaged and turned into a
 * segmentation.
 *
 * Inputs: folders holding CASE_probabilities<file_ending> (float K-channel
 * NIfTI in the original image geometry, as 'nnp predict
 * --save-probabilities' writes them).  Every folder must hold the same set
 * of cases; the files of one case must agree in shape, channel count,
 * spacing and affine (relative tolerance 1e-4).
 *
 * Invariants:
 *  - the mean is nnU-Net's average_probabilities in float32: the first
 *    file's values, += each following file's (in folder order), then
 *    /= (float)n — the same float32 operations in the same order, so the
 *    values are bit-identical to numpy's;
 *  - the segmentation is LabelManager.convert_probabilities_to_segmentation
 *    of the mean (export.h's rule: argmax, first maximum wins; regions:
 *    mean > 0.5 in regions_class_order, later regions overwrite), uint8 or
 *    uint16 as nnp export writes it, with the header and geometry of the
 *    first folder's file;
 *  - memory: the files are streamed channel by channel and slab by slab
 *    (4D NIfTI stores channel after channel); a case holds 8 bytes per voxel
 *    (running maximum + label) plus its segmentation (1-2 bytes per voxel)
 *    and a few slab buffers, whatever K is (nnp_ensemble_case_memory);
 *  - outputs are atomic (temporary name, renamed when complete); a failed
 *    case leaves none of its files behind;
 *  - NaN or infinite probabilities, a channel count other than the labels'
 *    (or regions'), integer voxel types and mismatching geometry are
 *    NNP_EDATA errors naming the file(s).
 *
 * Ownership: nnp_ensemble_list fills a caller-owned struct released with
 * nnp_ensemble_cases_release; functions never take ownership of const
 * pointers and keep no pointer to their arguments.  No global state.
 */
#ifndef NNP_ENSEMBLE_H
#define NNP_ENSEMBLE_H

#include <stddef.h>
#include <stdint.h>
#include "export.h"

#define NNP_ENSEMBLE_INPUTS_MAX 1024   /* input folders */
#define NNP_ENSEMBLE_SUFFIX "_probabilities"

/* The case ids found in every folder, sorted (byte order). */
struct nnp_ensemble_cases {
	char **ids;
	size_t n;
};

/* List dirs[0..ndirs) for ID_probabilities<file_ending> and check that
 * every folder holds the same cases.  Errors (NNP_EDATA): a missing
 * folder, a folder without probability files, a case missing from a
 * folder (naming the folder and the case), a non-NIfTI file ending. */
int nnp_ensemble_list(const char *const *dirs, size_t ndirs, const char *file_ending,
		      struct nnp_ensemble_cases *out);
void nnp_ensemble_cases_release(struct nnp_ensemble_cases *c);

struct nnp_ensemble_opts {
	const char *const *inputs;    /* the input folders, in order (the first gives the geometry) */
	size_t ninputs;
	const char *output;           /* output folder (created) */
	const char *file_ending;      /* ".nii.gz" or ".nii" */
	const struct nnp_export_labels *labels;   /* what the channels mean (required) */
	int save_probabilities;       /* also OUT/CASE_probabilities<file_ending> (float32) */
	int skip_existing;            /* --continue: skip cases whose outputs exist */
	int force;                    /* replace existing outputs */
	int threads;                  /* cases in parallel (<= 0: nnp_threads()) */
	uint64_t max_memory;          /* bytes all parallel cases may use; 0 = no limit */
	int gzip_level;               /* -1: the writer's default */
	/* out */
	size_t done, skipped;         /* cases written / skipped by skip_existing */
	int jobs_used;                /* cases that ran in parallel */
};

void nnp_ensemble_opts_init(struct nnp_ensemble_opts *o);

/* Bytes one case of shape (K, Z, Y, X) needs (an upper bound). */
uint64_t nnp_ensemble_case_memory(const int64_t shape[4], enum nnp_dtype seg_dt, size_t ninputs);

/* One case: read dirs[i]/ID_probabilities<ending>, write OUT/ID<ending>
 * (and the probabilities).  Errors: NNP_EDATA (see above), NNP_EUSAGE (an
 * output exists without force), NNP_EIO, NNP_ENOMEM. */
int nnp_ensemble_case(const struct nnp_ensemble_opts *o, const char *id);

/* All cases: checks the outputs first (existing files without force or
 * skip_existing are an NNP_EUSAGE error before anything is written) and
 * each case's memory from its first file's header (NNP_ENOMEM over
 * max_memory; the parallel cases are limited so that their sum fits),
 * then runs the cases in parallel.  The first failing case (in id order)
 * decides the error; cases already finished keep their outputs. */
int nnp_ensemble_run(struct nnp_ensemble_opts *o, const struct nnp_ensemble_cases *c);


#endif
