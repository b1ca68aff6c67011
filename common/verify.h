/* verify.h — checking an nnU-Net raw dataset before it is used
 * (nnunet-facts.md §2, nnU-Net's verify_dataset_integrity, plus the
 * practical checks listed in docs/verify.md).
 *
 * nnp_verify_dataset reads dataset.json, lists imagesTr/labelsTr (or the
 * "dataset" dict) and then reads every file of every case slab by slab,
 * cases in parallel (one case per thread, one chunk of memory per thread).
 * Problems in the data are not errors of the call: they are findings in the
 * report, in a deterministic order (dataset.json, file names, then the cases
 * in case order), whatever the thread count.  The call itself fails only
 * when it cannot run (no such folder, out of memory).
 *
 * Ownership: nnp_verify_dataset returns a report freed with
 * nnp_verify_report_free; every string in it belongs to it, except each
 * finding's check id, which is static.  nnp_verify_report_free(NULL) is a
 * no-op.
 */
#ifndef NNP_VERIFY_H
#define NNP_VERIFY_H

#include <stddef.h>
#include <stdio.h>
#include <jansson.h>

enum nnp_severity {
	NNP_SEV_ERROR = 0,     /* the dataset cannot be used as it is */
	NNP_SEV_WARNING = 1    /* suspicious, nnU-Net would go on */
};

struct nnp_finding {
	enum nnp_severity severity;
	const char *check;     /* static id, e.g. "unexpected-labels" (docs/verify.md) */
	char *file;            /* the file or folder concerned */
	char *case_id;         /* the case, NULL for dataset-level findings */
	char *message;         /* what is wrong */
	char *fix;             /* how to fix it */
};

struct nnp_verify_opts {
	int threads;           /* <= 0: nnp_threads() */
	long max_errors;       /* > 0: stop once this many errors are found */
};

struct nnp_verify_report {
	char *dataset;         /* folder name, e.g. Dataset901_Spheres */
	char *dir;             /* the folder as given */
	size_t ncases;         /* training cases found */
	struct nnp_finding *findings;   /* errors and warnings, report order */
	size_t nfindings, nerrors, nwarnings;
	int truncated;         /* max_errors reached: later checks were skipped */
};

/* Verify the raw dataset in folder dir.  o may be NULL (defaults).
 * Returns NNP_OK with *out set (findings or not), or NNP_EDATA when dir is
 * not a folder, NNP_ENOMEM, NNP_EINTERNAL. */
int nnp_verify_dataset(const char *dir, const struct nnp_verify_opts *o,
		       struct nnp_verify_report **out);
void nnp_verify_report_free(struct nnp_verify_report *r);

/* The report as text: one line per finding,
 *   "error: FILE: MESSAGE: FIX" / "warning: FILE: MESSAGE: FIX",
 * then the summary line (nnp_verify_summary). */
int nnp_verify_report_print(const struct nnp_verify_report *r, FILE *f);
/* "Dataset901_Spheres: 12 cases, 0 errors, 0 warnings: OK" (no newline)
 * into buf. */
void nnp_verify_summary(const struct nnp_verify_report *r, char *buf, size_t n);
/* {"dataset", "cases", "errors": [{"file", "case", "check", "message",
 * "fix"}], "warnings": [...], "ok", "truncated"}: a new reference. */
int nnp_verify_report_json(const struct nnp_verify_report *r, json_t **out);

#endif
