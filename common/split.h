/* split.h — nnU-Net's cross-validation splits (splits_final.json,
 * nnunet-facts.md §1.5).
 *
 * nnU-Net's trainer creates splits_final.json on its first run: the case ids
 * of the preprocessed dataset, sorted (np.sort = byte order for UTF-8),
 * split by sklearn KFold(n_splits=5, shuffle=True, random_state=12345), each
 * fold's train and val ids in ascending order, written by
 * json.dump(sort_keys=True, indent=4).  nnp_kfold reproduces KFold exactly
 * (numpy legacy RandomState, rng.h) and nnp_split_make writes a file that is
 * byte-identical to the trainer's.
 *
 * Ownership: functions returning arrays or json_t* give the caller a new
 * object (free with nnp_folds_free / nnp_strv_free / json_decref); they
 * never take ownership of const arguments; *_free(NULL) is a no-op.
 */
#ifndef NNP_SPLIT_H
#define NNP_SPLIT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define NNP_SPLIT_SEED 12345u   /* nnU-Net's random_state */
#define NNP_SPLIT_FOLDS 5
#define NNP_SPLIT_FILE "splits_final.json"
#define NNP_SPLIT_JSON_MAX ((long long)256 << 20)   /* bytes of a splits file read */

/* One fold: indices into the sorted id list. */
struct nnp_fold {
	size_t *train, ntrain;
	size_t *val, nval;
};

/* sklearn KFold(n_splits=k, shuffle=True, random_state=seed).split(range(n)):
 * idx = 0..n-1 shuffled with RandomState(seed); fold i's val = the i-th
 * chunk (n/k + 1 elements for the first n%k folds, n/k for the rest),
 * sorted; train = every other index, ascending.  k >= 2 and n >= k, else
 * NNP_EDATA (n < k) / NNP_EUSAGE (k < 2). */
int nnp_kfold(size_t n, size_t k, uint32_t seed, struct nnp_fold **folds);
void nnp_folds_free(struct nnp_fold *folds, size_t k);
void nnp_fold_release(struct nnp_fold *f);

/* The trainer's fallback for a fold >= len(splits): RandomState(seed)
 * (nnU-Net: 12345 + fold), train = choice(n, int(n * 0.8), replace=False)
 * in draw order, val = the other indices ascending.  n >= 1. */
int nnp_split_random(size_t n, uint32_t seed, struct nnp_fold *out);

/* [{"train": [ids...], "val": [ids...]}, ...] for folds over ids. */
json_t *nnp_fold_json(char *const *ids, const struct nnp_fold *f);
json_t *nnp_splits_json(char *const *ids, const struct nnp_fold *folds, size_t k);

/* Check a splits list: a non-empty JSON list of {"train": [...], "val":
 * [...]} with non-empty lists of distinct non-empty strings.  When ids
 * (sorted, n of them) is not NULL every id must be one of them.  Errors are
 * NNP_EDATA naming file and fold ("'F': fold 2: val: 'x' is not a case of
 * the dataset"). */
int nnp_splits_validate(const json_t *splits, const char *file, char *const *ids, size_t n);
/* nnU-Net's planner check when a raw splits file meets an existing one:
 * every fold of src must have the same train and val sets as the same fold
 * of dst (dst may have more folds).  NNP_EDATA naming the first difference. */
int nnp_splits_compare(const json_t *src, const char *srcname, const json_t *dst,
		       const char *dstname);
/* Load and validate a splits file (at most NNP_SPLIT_JSON_MAX bytes). */
int nnp_splits_load(const char *path, char *const *ids, size_t n, json_t **out);

/* Sort ids in byte order (np.sort) and reject duplicates. */
int nnp_ids_sort(char **ids, size_t n);
void nnp_strv_free(char **v, size_t n);

/* Case ids of a preprocessed dataset folder: the names of the case files
 * in its data folders (nnUNetPlans_3d_fullres/ ...: CASE.b2nd except
 * CASE_seg.b2nd, CASE.npz, CASE.nnp except CASE_seg.nnp; every non-hidden
 * subfolder but gt_segmentations is looked at).  data, if not NULL, names
 * the one subfolder to use.  All data folders that hold cases must hold the
 * same ones.  Sorted.  *n == 0 (and *ids NULL) when no folder holds cases;
 * from (fromlen bytes, may be NULL) receives the folder used. */
int nnp_preprocessed_ids(const char *dir, const char *data, char ***ids, size_t *n, char *from,
			 size_t fromlen);
/* Case ids of a raw dataset folder (dataset.json + imagesTr, or its
 * "dataset" dict), sorted. */
int nnp_raw_ids(const char *rawdir, char ***ids, size_t *n);

/* The sorted case ids of fold `fold` (train list, or val when val): from
 * dir/splits_final.json; a fold beyond the file gets nnU-Net's trainer
 * fallback, a random 80:20 split RandomState(12345 + fold) of the case
 * files of dir/data; fold < 0 ("all"): every case file of dir/data.
 * The caller frees with nnp_strv_free(*ids, *n). */
int nnp_fold_ids(const char *dir, const char *data, long fold, int val, char ***ids, size_t *n);

/* ---- the whole step, as `nnp split` runs it ---- */

enum nnp_split_action {
	NNP_SPLIT_CREATED = 1,   /* KFold over the case ids */
	NNP_SPLIT_EXISTING,      /* an existing output file was kept */
	NNP_SPLIT_COPIED         /* the raw dataset's splits_final.json was copied */
};

struct nnp_split_opts {
	const char *dir;     /* preprocessed dataset folder */
	const char *raw;     /* raw dataset (folder, name or id), NULL: the folder's
	                        name looked up in $nnUNet_raw */
	const char *data;    /* data subfolder for the ids, NULL: all of them */
	const char *out;     /* output file; NULL: DIR/splits_final.json */
	int write;           /* 0: compute only (no file is written) */
	int force;           /* replace an existing output file */
	size_t folds;        /* k (5) */
	uint32_t seed;       /* 12345 */
};

struct nnp_split_result {
	enum nnp_split_action action;
	json_t *splits;          /* the splits in effect (new reference) */
	char out[PATH_MAX];          /* the output file (written or kept) */
	char ids_from[PATH_MAX];     /* where the case ids came from ("" if not needed) */
	char copied_from[PATH_MAX];  /* the raw splits file (NNP_SPLIT_COPIED) */
	size_t ncases;           /* 0 if the ids were not needed */
};

/* Decide and (if o->write) write the splits file:
 *  - an existing output is kept (validated; compared with the raw dataset's
 *    splits_final.json if there is one) unless o->force;
 *  - else a splits_final.json in the raw dataset folder is validated
 *    against the case ids and copied byte for byte (nnU-Net's planner);
 *  - else KFold(o->folds, o->seed) over the sorted case ids.
 * Case ids: nnp_preprocessed_ids, else the raw dataset (nnp_raw_ids).
 * Release r with nnp_split_result_release. */
int nnp_split_make(const struct nnp_split_opts *o, struct nnp_split_result *r);
void nnp_split_result_release(struct nnp_split_result *r);

/* The case ids nnp_split_make would use (sorted; *from as above). */
int nnp_split_ids(const struct nnp_split_opts *o, char ***ids, size_t *n, char *from,
		  size_t fromlen);

#endif
