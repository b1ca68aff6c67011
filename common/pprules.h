/* pprules.h — postprocessing rule lists: the steps nnU-Net's
 * determine_postprocessing decides, as stored in postprocessing.json
 * (nnunet-facts §10.1; docs/postprocess.md "The rule file").
 *
 * A rule file is a JSON object with two lists of the same length,
 *   "postprocessing_fns":    ["remove_all_but_largest_component_from_segmentation", ...]
 *   "postprocessing_kwargs": [{"labels_or_regions": L}, ...]
 * where L is an integer (a label), a list of integers (labels, or one
 * region) or a list mixing integers and lists of integers.  Every form
 * means the same thing: the mask is the union of the voxels whose value is
 * one of the integers named, as nnU-Net's region_or_label_to_mask makes
 * it.  Other keys of the file (input_folder, postprocessed, ...) are
 * ignored; an unknown function or argument is an error.
 *
 * Invariants: a rule's label set is sorted, duplicate-free and within the
 * int16 range; rules apply in order, each to the result of the previous.
 * Ownership: *_new/_load return memory the caller frees with
 * nnp_pprules_free (NULL is a no-op); a rule owns its kwarg reference;
 * functions never take ownership of const pointers.
 */
#ifndef NNP_PPRULES_H
#define NNP_PPRULES_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "dtype.h"
#include "frame.h"

#define NNP_PPRULES_MAX 4096        /* steps in one file */
#define NNP_PPRULE_LABELS_MAX 4096  /* integers in one step */
#define NNP_PP_FN_NAME "remove_all_but_largest_component_from_segmentation"

struct nnp_pprule {
	int *labels;        /* the label set (sorted, unique) */
	size_t nlabels;
	json_t *kwarg;      /* labels_or_regions as written (int or list) */
};

struct nnp_pprules {
	struct nnp_pprule *v;
	size_t n, cap;
};

int nnp_pprules_new(struct nnp_pprules **out);
void nnp_pprules_free(struct nnp_pprules *r);
/* Append a step; kwarg is labels_or_regions (the reference is copied:
 * json_incref).  what names it in errors (NNP_EDATA). */
int nnp_pprules_add(struct nnp_pprules *r, const json_t *kwarg, const char *what);
/* Parse a rule file's object; errors name what and the field. */
int nnp_pprules_from_json(const json_t *j, const char *what, struct nnp_pprules **out);
/* Load a rule file (Python's NaN tokens accepted, pyjson.h). */
int nnp_pprules_load(const char *path, struct nnp_pprules **out);
/* The two lists as nnU-Net writes them: new references set into obj
 * ("postprocessing_fns", "postprocessing_kwargs"). */
int nnp_pprules_to_json(const struct nnp_pprules *r, json_t *obj);

/* Apply every rule in order to a label map of n[0] x n[1] x n[2] voxels
 * (dt NNP_U8 or NNP_I16, else NNP_EDATA).  removed (NULL or r->n entries)
 * receives each step's count of voxels set to 0. */
int nnp_pprules_apply(const struct nnp_pprules *r, enum nnp_dtype dt, void *seg, const int64_t n[3],
		      int64_t *removed);

/* ---- files ----
 * Segmentations the rules work on: NIfTI files with one volume of uint8 or
 * int16 values, unscaled (else NNP_EDATA naming the file).  Outputs keep
 * the input's header (dtype, shape, affine, qform/sform, units): a file no
 * step changes is copied byte for byte, the others are written with the
 * carried header (nifti.h).  Outputs are atomic (atomic.h); an existing
 * output is replaced only with force. */

/* src -> dst; *removed (may be NULL): voxels set to 0 by all steps. */
int nnp_pprules_apply_file(const struct nnp_pprules *r, const char *src, const char *dst, int force,
			   int64_t *removed);

/* nnUNetv2_apply_postprocessing: every CASE<file_ending> of in_dir to
 * out_dir (created when missing), plus copies of dataset.json and
 * plans.json.  nnp predict's CASE_probabilities<file_ending> files are
 * neither processed nor copied (nnU-Net's are .npz files).  Everything is staged in out_dir/.nnp-ppapply.XXXXXX and moved
 * into place only when every case succeeded; on error nothing is left
 * (an out_dir created here is removed again). */
struct nnp_ppapply_opts {
	const char *in_dir, *out_dir;
	const struct nnp_pprules *rules;
	const char *dataset_json;   /* NULL: in_dir/dataset.json (required: file_ending) */
	const char *plans_json;     /* NULL: in_dir/plans.json when present */
	int threads;                /* <= 0: nnp_threads() */
	int force;
	volatile sig_atomic_t *stop;
};
struct nnp_ppapply_result {
	size_t ncases, changed;     /* cases, cases with removed voxels */
	int64_t removed;            /* voxels set to 0 in all */
};
int nnp_pprules_apply_folder(const struct nnp_ppapply_opts *o, struct nnp_ppapply_result *res);

/* ---- library-internal (ppdecide.c shares them) ---- */
struct nnp_nifti_in;
int nnp__pp_check_seg(const char *path, const struct nnp_frame *f);
void nnp__pp_remove_tree(const char *path);
int nnp__pp_exists(const char *path);                             /* lstat */
int nnp__pp_rename_fail(const char *a, const char *b);
/* Move src to dst; an existing dst is NNP_EUSAGE unless replace (a folder
 * is then swapped with it and the old one is left at src). */
int nnp__pp_move(const char *src, const char *dst, int replace, int is_dir);

#endif
