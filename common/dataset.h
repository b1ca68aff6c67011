/* dataset.h — nnU-Net raw datasets (nnunet-facts.md §1).
 *
 * Ownership: nnp_dataset_open returns a struct freed by nnp_dataset_free;
 * every string and array in it belongs to it.
 */
#ifndef NNP_DATASET_H
#define NNP_DATASET_H

#include <stddef.h>
#include <jansson.h>

/* Caps (every list read from disk is bounded). */
#define NNP_CASES_MAX 1000000                     /* cases in one split */
#define NNP_DATASET_FILES_MAX 16000000            /* files listed in one images folder */
#define NNP_DATASET_JSON_MAX ((long long)256 << 20) /* dataset.json bytes */
#define NNP_CASE_ID_MAX 255                       /* bytes in a case id */

struct nnp_label {
	char *name;
	int *values;      /* one value, or several for a region */
	size_t nvalues;
};

struct nnp_case {
	char *id;
	char **images;    /* absolute or dataset-relative resolved paths, channel order */
	size_t nimages;
	char *label;      /* NULL when absent */
};

struct nnp_dataset {
	char *dir;            /* dataset folder */
	char *name;           /* folder basename, e.g. Dataset901_Spheres */
	int id;               /* 901, -1 if the name has no id */
	json_t *json;         /* dataset.json as parsed */
	char *file_ending;
	char **channel_names; /* index order */
	size_t nchannels;
	struct nnp_label *labels;  /* dict order */
	size_t nlabels;
	int has_regions;
	long num_training;
};

/* Resolve a dataset argument: a folder path, "Dataset901_X", or "901"
 * (searched in $envvar, default nnUNet_raw, for a folder named
 * "Dataset901" followed by a non-digit).  Writes the folder into out.
 * Errors: NNP_EUSAGE (envvar unset, arg not an id), NNP_EDATA (no or
 * several matching folders). */
int nnp_dataset_resolve(const char *arg, const char *envvar, char *out, size_t outlen);
/* Read dataset.json of a raw dataset folder (validates required keys). */
int nnp_dataset_open(const char *dir, struct nnp_dataset **out);
/* The same for a dataset.json file of any name (its folder becomes dir), or
 * a folder holding dataset.json. */
int nnp_dataset_open_file(const char *path, struct nnp_dataset **out);
void nnp_dataset_free(struct nnp_dataset *d);
/* Cases of a split: "Tr" (imagesTr/labelsTr) or "Ts" (imagesTs/labelsTs),
 * sorted (byte order) like nnU-Net, or in the order of dataset.json's
 * "dataset" dict.  Returns an array the caller frees with nnp_cases_free. */
int nnp_dataset_cases(const struct nnp_dataset *d, const char *split,
		      struct nnp_case **cases, size_t *ncases);
/* One case by id (searching Tr then Ts unless split is given). */
int nnp_dataset_case(const struct nnp_dataset *d, const char *split, const char *id,
		     struct nnp_case *c);
/* The cases of a loose images folder (nnUNetv2_predict's input): the same
 * rule as imagesTr (CASE_ plus a 4-digit channel plus d's file_ending,
 * grouped, byte order); the cases have no labels. */
int nnp_dataset_folder_cases(const struct nnp_dataset *d, const char *imgdir, struct nnp_case **cases,
			     size_t *ncases);
void nnp_case_release(struct nnp_case *c);
void nnp_cases_free(struct nnp_case *cases, size_t n);
/* A path of dataset.json's "dataset" dict as nnU-Net resolves it:
 * environment variables expanded (os.path.expandvars), a relative path
 * taken from the dataset folder dir.  Returns a malloc'ed string the
 * caller frees; NULL (with nnp_err set) on failure. */
char *nnp_dataset_path(const char *dir, const char *path);
/* The probabilities file name of a prediction folder: CASE + this +
 * file_ending (nnp export --save-probabilities | nnp write). */
#define NNP_PROBABILITIES_SUFFIX "_probabilities"
/* 1 when file name name is a probabilities file (CASE_probabilities +
 * ending), never a segmentation: folder listings of segmentations skip it. */
int nnp_is_probabilities_name(const char *name, const char *ending);

/* Flags of nnp_list_dir. */
#define NNP_LIST_SKIP_HIDDEN 1       /* names starting with '.' (temporaries) */
#define NNP_LIST_NO_PROBABILITIES 2  /* CASE_probabilities<suffix> */
#define NNP_LIST_STRIP_SUFFIX 4      /* hand out the names without suffix */
/* The sorted names of the regular files (links followed) of dir whose
 * names end with suffix (and are longer than it), at most NNP_CASES_MAX.
 * NNP_EDATA naming dir when it cannot be opened.  Free with nnp_strv_free. */
int nnp_list_dir(const char *dir, const char *suffix, int flags, char ***names, size_t *n);

#endif
