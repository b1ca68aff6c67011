/* model.h — a trained model: plans, dataset.json, configuration and the
 * networks of its folds, ready to run (nnunet-facts §9.1).
 *
 * A model is read from an nnU-Net results folder
 * ($nnUNet_results/Dataset<id>_<name>/TRAINER__PLANS__CONFIG: plans.json,
 * dataset.json, fold_N/checkpoint_final.pth) through the restricted
 * checkpoint reader (pth.h): every tensor the architecture needs must be
 * present with exactly the shape the plans imply, else NNP_EDATA naming the
 * checkpoint and the tensor.  The configuration comes from the first
 * checkpoint's init_args (or the folder name), the mirror axes from
 * inference_allowed_mirroring_axes.
 *
 * Ownership: nnp_model_open returns a model the caller frees with
 * nnp_model_free (NULL is a no-op).  It owns its JSON documents, the graph
 * and one engine per fold; checkpoints are released after loading.
 */
#ifndef NNP_MODEL_H
#define NNP_MODEL_H

#include <stdint.h>
#include <jansson.h>

#include "engine.h"
#include "net.h"

#define NNP_MODEL_MAX_FOLDS 32

struct nnp_model {
	char *dir;
	char *config;                  /* configuration name, e.g. "3d_fullres" */
	char *trainer;                 /* trainer_name of the first checkpoint */
	json_t *plans, *dataset;
	struct nnp_net_arch arch;
	struct nnp_net_graph graph;
	int patch_ndim;                /* 2 or 3 */
	int64_t patch[3];
	int n_mirror_axes;             /* -1: none recorded (nnU-Net then uses none) */
	int mirror_axes[3];
	int has_regions;
	enum nnp_precision prec;       /* of the engines */
	int nfolds;
	char *fold_names[NNP_MODEL_MAX_FOLDS];
	struct nnp_engine *engines[NNP_MODEL_MAX_FOLDS];
};

struct nnp_model_opts {
	const char *const *folds;      /* "0".."N" or "all"; NULL = 0 1 2 3 4 */
	int nfolds;
	const char *checkpoint;        /* NULL = checkpoint_final.pth */
	const char *config;            /* expected configuration, NULL = any */
	struct nnp_engine_opts engine;
};

/* dir: a results folder, or an nnpipe model file written by
 * nnp_model_import (then o->folds NULL = every fold in the file; each
 * wanted fold's payload is checked against its sha256). */
int nnp_model_open(const char *dir, const struct nnp_model_opts *o, struct nnp_model **out);
/* Write the folds o selects of results folder dir as one model file: msgpack
 * {"nnp": "model", "v": [1, 0], "header": JSON} then one bin32 of float32
 * parameters per fold (only the canonical state_dict names the plans'
 * architecture uses, in graph order); the header holds configuration,
 * trainer, plans, dataset.json, mirror axes, and per fold the tensor table,
 * the payload sha256 and the source checkpoint's sha256.  Atomic. */
int nnp_model_import(const char *dir, const struct nnp_model_opts *o, const char *out, int force);
/* The header JSON of a model file (no payload read); caller json_decref's. */
int nnp_model_file_header(const char *path, json_t **header);
/* 1 if path starts like an nnpipe model file. */
int nnp_model_is_file(const char *path);
void nnp_model_free(struct nnp_model *m);

/* The results folder of (dataset, trainer, plans, configuration):
 * $nnUNet_results/Dataset<id>_<name>/TRAINER__PLANS__CONFIG (dataset as a
 * folder, Dataset901_X or 901).  NNP_EUSAGE / NNP_EDATA with a message. */
int nnp_model_resolve(const char *dataset, const char *trainer, const char *plans, const char *config, char *out,
		      size_t outlen);
/* "cpu", "cuda", "cuda:N" -> -1 / N (NNP_EUSAGE otherwise). */
int nnp_model_parse_device(const char *s, int *device);

/* Number of network outputs for a dataset.json (nnunet-facts §1.2): the
 * number of foreground regions with regions, else len(all_labels);
 * *regions set when regions are used.  NNP_EDATA for a bad labels entry. */
int nnp_model_num_heads(const json_t *dataset, int *heads, int *regions);

/* The parameter source over a loaded checkpoint (pth.h): exact shapes,
 * float32/float16/bfloat16 tensors converted, a leading "module." accepted. */
struct nnp_pth;
struct nnp_param_src nnp_model_pth_params(struct nnp_pth *p);

/* ---- model files from parameters (training checkpoints) ----
 * An extra payload: a named byte blob stored after the folds (optimizer
 * state, training log), listed in the header's "extra" table with its size
 * and sha256. */
struct nnp_model_blob {
	const char *name;
	const void *data;
	uint64_t nbytes;
};
/* Write a model file with one fold: header (configuration, trainer, plans,
 * dataset, mirror_axes and anything else, e.g. "training") gets the fold
 * table and the extra table added; the payload holds g's parameters from
 * src in graph order.  Atomic (never a partial file); refuses to replace
 * an existing file unless force. */
int nnp_model_write(const char *out, const json_t *header, const struct nnp_net_graph *g, const char *fold,
		    const struct nnp_param_src *src, const struct nnp_model_blob *extra, int nextra, int force);
/* Open a model file, verify the wanted fold (NULL = the first) and every
 * extra payload against their sha256, and call fn with the header, the
 * fold's parameters and the extras (16-byte aligned copies), all valid
 * during the call only.
 * Returns fn's result, or NNP_EDATA naming the file (truncated, corrupt). */
typedef int (*nnp_model_visit_fn)(void *ctx, const json_t *header, const struct nnp_param_src *params,
				  const struct nnp_model_blob *extra, int nextra);
int nnp_model_file_visit(const char *path, const char *fold, nnp_model_visit_fn fn, void *ctx);
#endif
