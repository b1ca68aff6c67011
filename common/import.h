/* import.h — turning loose folders of NIfTI images and labels, or a Medical
 * Segmentation Decathlon task folder, into an nnU-Net raw dataset
 * (nnunet-facts.md §1.1, §1.2; docs/import.md).
 *
 * The dataset is built in a hidden temporary folder next to its final
 * place (OUT/.DatasetXXX_Name.tmpPID) and renamed into place at the end,
 * so a failure or an interruption (o->stop) leaves nothing half-written.
 * Everything is checked before the first byte is copied: case ids, image /
 * label pairing, that every file is a readable NIfTI header, channel counts
 * and that each label has its image's shape.
 *
 * Ownership: functions never take ownership of const arguments; the
 * parse helpers return objects the caller frees (json_decref,
 * nnp_import_names_free).
 */
#ifndef NNP_IMPORT_H
#define NNP_IMPORT_H

#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <jansson.h>

#define NNP_IMPORT_ID_MAX 999
#define NNP_IMPORT_NAME_MAX 200

struct nnp_import_opts {
	/* loose folders (when msd is NULL) */
	const char *images;          /* training images */
	const char *labels;          /* training labels */
	const char *test_images;     /* NULL: no imagesTs */
	char *const *channels;       /* channel names, channel order */
	size_t nchannels;
	const json_t *labels_map;    /* {"background": 0, "liver": 1, ...} in order */
	/* or an MSD task folder (dataset.json, imagesTr, labelsTr, imagesTs) */
	const char *msd;
	int id;                      /* 0..999; -1 (MSD only): from "TaskNN_Name" */
	const char *name;            /* NULL (MSD only): from "TaskNN_Name" */
	const char *out;             /* the nnUNet_raw folder to create the dataset in */
	const char *file_ending;     /* ".nii.gz" (default) or ".nii" */
	int link;                    /* hard-link files that need no conversion */
	int force;                   /* replace an existing dataset folder */
	/* optional */
	volatile sig_atomic_t *stop; /* set (by a signal handler) to abandon the import */
	void (*warn)(void *ctx, const char *msg);
	void (*progress)(void *ctx, size_t done, size_t total);
	void *ctx;
};

struct nnp_import_result {
	char dir[PATH_MAX];          /* the dataset folder created */
	char name[NNP_IMPORT_NAME_MAX + 16];  /* DatasetXXX_Name */
	size_t ntrain, ntest;        /* cases */
	size_t linked, copied, converted, split;  /* files: how they were made
	                                             (split: 4D files split) */
	size_t link_fallbacks;       /* --link files copied (other file system) */
};

/* Import a dataset (see above).  Errors: NNP_EUSAGE for bad options and an
 * existing output without force (exit 2), NNP_EDATA naming the file for
 * bad or unpaired inputs, NNP_EIO for write failures and interruptions. */
int nnp_import(const struct nnp_import_opts *o, struct nnp_import_result *r);

/* "background=0,liver=1" -> {"background": 0, "liver": 1} (order kept):
 * names unique, "background" = 0, values distinct and consecutive 0..N-1. */
int nnp_import_parse_labels(const char *spec, json_t **out);
/* "CT,T2" -> {"CT", "T2"} (non-empty names). */
int nnp_import_parse_channels(const char *spec, char ***names, size_t *n);
void nnp_import_names_free(char **names, size_t n);

#endif
