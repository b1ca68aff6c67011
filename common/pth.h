/* pth.h — a restricted reader of PyTorch checkpoints (checkpoint_final.pth).
 *
 * A .pth file is a zip archive PREFIX/data.pkl + PREFIX/data/KEY (one entry
 * per storage) (nnunet-facts.md §6.6).  The pickle is interpreted by a small
 * virtual machine that accepts only the opcodes a checkpoint uses and only
 * the globals that rebuild data (collections.OrderedDict, torch storages,
 * torch._utils._rebuild_tensor_v2, torch.device, numpy scalars/dtypes,
 * _codecs.encode); anything else is refused with NNP_EDATA and a message
 * naming the opcode or global: nothing in a checkpoint is ever executed.
 *
 * Invariants: every size is capped (pickle 64 MiB, 4M objects, storages
 * 8 GiB in all, nesting 200); a tensor must be C-contiguous and lie inside
 * its storage; storages shared by several names (aliases such as
 * all_modules.* and decoder.encoder.*) are read once and shared.
 *
 * Ownership: nnp_pth_load returns a struct the caller frees with
 * nnp_pth_free (NULL is a no-op); tensors point into its storages.
 */
#ifndef NNP_PTH_H
#define NNP_PTH_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "dtype.h"

#define NNP_PTH_MAXDIM 8

struct nnp_pth_storage {
	char *key;              /* the zip entry PREFIX/data/KEY */
	const char *torch_type; /* "FloatStorage", ... */
	enum nnp_dtype dtype;   /* raw element type (NNP_DT_NONE for bfloat16/bool: see esize) */
	size_t esize;           /* bytes per element */
	int64_t numel;
	void *raw;              /* numel * esize bytes, little-endian */
	float *f32;             /* numel floats (raw converted) */
};

struct nnp_pth_tensor {
	char *name;
	const char *torch_dtype; /* "float32", "float16", "bfloat16", "int64", ... */
	enum nnp_dtype dtype;    /* NNP_F32, NNP_F16, NNP_I64, ...; NNP_DT_NONE for bfloat16 */
	int ndim;
	int64_t shape[NNP_PTH_MAXDIM];
	int64_t numel;
	size_t storage;          /* index into nnp_pth.storages */
	int64_t offset;          /* element offset into the storage */
	const void *raw;         /* numel elements of the storage's type */
	const float *data;       /* numel float32 values */
};

struct nnp_pth {
	char *path;
	size_t ntensors;                 /* 'network_weights' in order */
	struct nnp_pth_tensor *tensors;
	size_t nstorages;
	struct nnp_pth_storage *storages;
	/* {"trainer_name", "current_epoch", "inference_allowed_mirroring_axes",
	 *  "init_args": {...json-like parts: configuration, fold, plans, ...},
	 *  "logging": {...} (numpy scalars as numbers), "keys": [top-level keys]};
	 * absent entries are omitted, non-data values (tensors) are dropped. */
	json_t *meta;
};

/* Load a checkpoint.  NNP_EDATA (message names the file and the problem)
 * for anything that is not a plain checkpoint; NNP_ENOMEM for caps. */
int nnp_pth_load(const char *path, struct nnp_pth **out);
void nnp_pth_free(struct nnp_pth *p);
/* The tensor called name, or NULL. */
const struct nnp_pth_tensor *nnp_pth_find(const struct nnp_pth *p, const char *name);

#endif
