/* evaluate.h — nnU-Net's evaluation of segmentations against references
 * (compute_metrics_on_folder; nnunet-facts §10.2; docs/evaluation.md), plus
 * HD95 and normalised surface Dice on request.
 *
 * Invariants:
 *  - a spec names the classes (labels or regions) in nnU-Net's order and the
 *    optional ignore label; a voxel belongs to class c when its value is one
 *    of c's values; voxels whose REFERENCE value is the ignore label count
 *    for nothing (valid = ref != ignore);
 *  - per case and class: TP/FP/FN/TN over valid voxels, n_pred = TP + FP,
 *    n_ref = TP + FN, Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN),
 *    both NaN when TP + FP + FN == 0; HD95/NSD (only when the spec asks) as
 *    defined in docs/evaluation.md; metrics not computed are NaN;
 *  - segmentations are integer label maps of any dtype; a float voxel that is
 *    not an integer (or NaN/Inf) is an NNP_EDATA error; values no class names
 *    are simply background for every class (as in nnU-Net);
 *  - aggregation reproduces numpy bit for bit: mean[c][m] = np.nanmean over
 *    cases, foreground_mean[m] = np.mean over classes (a class keyed "0" is
 *    skipped), NaN when any class mean is NaN;
 *  - results do not depend on the thread count; a case is read slab by slab
 *    (with HD95/NSD its two label maps are kept as 2 bytes per voxel each),
 *    never all cases at once.
 *
 * Ownership: *_new and the nnp_eval_spec_from_* constructors return memory
 * the caller frees with the matching *_free (NULL is a no-op); results are
 * caller-owned structs released with nnp_eval_result_release; functions
 * never take ownership of const pointers.
 */
#ifndef NNP_EVALUATE_H
#define NNP_EVALUATE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "dtype.h"

#define NNP_EVAL_CLASSES_MAX 4096    /* labels/regions in one spec */
#define NNP_EVAL_VALUES_MAX 1024     /* distinct label values named (incl. ignore) */

/* Metrics in summary.json key order (Python's sorted()). */
enum nnp_eval_metric {
	NNP_EM_DICE, NNP_EM_FN, NNP_EM_FP, NNP_EM_HD95, NNP_EM_IOU, NNP_EM_NSD,
	NNP_EM_TN, NNP_EM_TP, NNP_EM_N_PRED, NNP_EM_N_REF, NNP_EM_COUNT
};
const char *nnp_eval_metric_name(int m);   /* "Dice", "FN", ..., "n_ref" */
int nnp_eval_metric_is_count(int m);       /* TP, FP, FN, TN, n_pred, n_ref */

struct nnp_eval_class {
	char *key;          /* summary.json key: "1", or str(tuple) "(1, 2, 3)", "(3,)" */
	char *name;         /* dataset.json's name, or NULL */
	int64_t *values;    /* as listed (a label: one value) */
	size_t nvalues;
	int is_region;      /* key is a tuple */
};

struct nnp_eval_lut;    /* value -> class membership table (evaluate.c) */

struct nnp_eval_spec {
	struct nnp_eval_class *classes;   /* nnU-Net's order */
	size_t nclasses;
	int has_ignore;
	int64_t ignore;
	char *file_ending;  /* dataset.json's file_ending, NULL in the simple form */
	int hd95;           /* also compute HD95 (mm) */
	int nsd;            /* also compute NSD at tolerance nsd_tol_mm */
	double nsd_tol_mm;
	struct nnp_eval_lut *lut;
};

/* From dataset.json (LabelManager's rules): foreground labels in sorted
 * order, or the foreground regions in dict order; "ignore" as ignore label.
 * Errors (NNP_EDATA, message naming what): no "labels", background missing
 * or not 0, a non-integer value, ignore not max(labels) + 1, regions without
 * a matching regions_class_order, no foreground class, no file_ending. */
int nnp_eval_spec_from_dataset(const json_t *dataset_json, const char *what, struct nnp_eval_spec **out);
/* nnUNetv2_evaluate_simple: plain labels (duplicates dropped, order kept),
 * ignore NULL for none. */
int nnp_eval_spec_from_labels(const int64_t *labels, size_t n, const int64_t *ignore,
			      struct nnp_eval_spec **out);
/* Ask for HD95 and/or NSD (tolerance > 0 mm, finite). */
int nnp_eval_spec_set_distances(struct nnp_eval_spec *s, int hd95, int nsd, double nsd_tol_mm);
void nnp_eval_spec_free(struct nnp_eval_spec *s);

/* ---- one case ---- */

struct nnp_eval_counts {
	uint64_t tp, fp, fn, tn;
};

/* Dice, IoU, the counts, n_pred, n_ref with nnU-Net's NaN rule; HD95 and
 * NSD set to NaN. */
void nnp_eval_metrics(const struct nnp_eval_counts *c, double m[NNP_EM_COUNT]);

struct nnp_eval_result {
	char *pred_file, *ref_file;       /* as written to summary.json; may be NULL */
	size_t nclasses;
	struct nnp_eval_counts *counts;   /* per class */
	double *m;                        /* nclasses x NNP_EM_COUNT */
	int spacing_differs;              /* prediction and reference spacing differ (> 1e-5 relative) */
};
void nnp_eval_result_release(struct nnp_eval_result *r);

/* Incremental form: shape (z, y, x), reference spacing (z, y, x) in mm. */
struct nnp_eval_case;
int nnp_eval_case_new(const struct nnp_eval_spec *s, const int64_t shape[3], const double spacing[3],
		      struct nnp_eval_case **out);
/* The next n voxels (file order, x fastest) of prediction and reference.
 * scale: NULL or {slope, inter} applied first (slope 0: none).  Errors name
 * the voxel and which side; callers add the file with nnp_err_ctx. */
int nnp_eval_case_add(struct nnp_eval_case *c, size_t n, enum nnp_dtype pdt, const void *pred,
		      const double *pscale, enum nnp_dtype rdt, const void *ref, const double *rscale);
/* All voxels seen: compute the metrics into r (pred_file/ref_file NULL). */
int nnp_eval_case_finish(struct nnp_eval_case *c, struct nnp_eval_result *r);
void nnp_eval_case_free(struct nnp_eval_case *c);

/* Whole arrays in memory (the trainer's final validation). */
int nnp_eval_arrays(const struct nnp_eval_spec *s, const int64_t shape[3], const double spacing[3],
		    enum nnp_dtype pdt, const void *pred, enum nnp_dtype rdt, const void *ref,
		    struct nnp_eval_result *r);
/* Two NIfTI files, streamed.  Shapes must match (error names both files);
 * 4D files are refused.  pred_file/ref_file of r are set to the paths. */
int nnp_eval_files(const struct nnp_eval_spec *s, const char *pred, const char *ref,
		   struct nnp_eval_result *r);

/* HD95 (max of the two directed 95th percentiles of surface-to-surface
 * distances) and NSD (fraction of both surfaces within tol_mm of the other)
 * of two binary masks (nonzero = inside) of shape (z, y, x) with spacing
 * (z, y, x).  z == 1 is 2D (8-neighbourhood), else 26-neighbourhood.  Both
 * empty: NaN, NaN; one empty: +Inf, 0.  hd95/nsd may be NULL. */
int nnp_eval_distances(const unsigned char *pred, const unsigned char *ref, const int64_t shape[3],
		       const double spacing[3], double tol_mm, double *hd95, double *nsd);
/* Squared Euclidean distance transform in place (Felzenszwalb-Huttenlocher):
 * on input 0 at features and INFINITY elsewhere, on output the squared
 * distance in mm^2 to the nearest feature (INFINITY if there is none). */
int nnp_eval_edt_sq(double *g, const int64_t shape[3], const double spacing[3]);

/* ---- numpy reductions (float64, bit-exact) ---- */
double nnp_np_sum_f64(const double *a, size_t n);      /* np.sum: pairwise in 8192 blocks */
double nnp_np_nanmean_f64(const double *a, size_t n);  /* np.nanmean (NaN if all NaN) */
/* (np.percentile, linear method, is nnp_np_percentile in plan.h) */

/* ---- folders and summary.json ---- */

/* Prediction files = the regular files of pred_dir ending with ending
 * (sorted by name); each needs the same name in ref_dir (else NNP_EDATA).
 * Unless chill, every reference file needs a prediction.  Paths are
 * os.path.join(dir, name) of the folders as given. */
struct nnp_eval_pairs {
	char **pred, **ref;
	size_t n;
};
int nnp_eval_pairs_list(const char *pred_dir, const char *ref_dir, const char *ending, int chill,
			struct nnp_eval_pairs *p);
void nnp_eval_pairs_release(struct nnp_eval_pairs *p);

struct nnp_eval_summary {
	size_t ncases, nclasses;
	struct nnp_eval_result *cases;    /* in file order */
	double *mean;                     /* nclasses x NNP_EM_COUNT */
	double fg_mean[NNP_EM_COUNT];
};
/* ncases zeroed results (to fill), mean/fg_mean NaN until aggregated. */
int nnp_eval_summary_new(const struct nnp_eval_spec *s, size_t ncases, struct nnp_eval_summary **out);
int nnp_eval_summary_aggregate(const struct nnp_eval_spec *s, struct nnp_eval_summary *sum);
void nnp_eval_summary_free(struct nnp_eval_summary *sum);

/* Every pair, threads in parallel (<= 0: nnp_threads()); the first failing
 * case in file order decides the error.  Progress on a terminal. */
int nnp_eval_folder(const struct nnp_eval_spec *s, const struct nnp_eval_pairs *p, int threads,
		    struct nnp_eval_summary **out);

/* summary.json exactly as nnU-Net's save_json (json.dump, indent 4,
 * sorted keys, NaN/Infinity tokens, no trailing newline). */
int nnp_eval_summary_dumps(const struct nnp_eval_spec *s, const struct nnp_eval_summary *sum, char **out);
/* Atomic write; an existing file is replaced only with force. */
int nnp_eval_summary_write(const struct nnp_eval_spec *s, const struct nnp_eval_summary *sum,
			   const char *path, int force);

#endif
