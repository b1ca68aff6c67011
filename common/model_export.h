/* model_export.h — an nnpipe model back to an nnU-Net results folder
 * (nnp export-model; docs/export-model.md).
 *
 * nnp_model_export reads a model (an nnpipe model file .nnpm or a results
 * folder, through nnp_model_open: every fold is checked against the plans'
 * architecture) and writes OUT/plans.json, OUT/dataset.json and per fold
 * OUT/fold_F/checkpoint_final.pth in PyTorch's format (pth_write.h) with
 * the dict nnUNetTrainer.save_checkpoint writes: network_weights under
 * nnU-Net's full state_dict names (aliases sharing storage, module
 * registration order, the _metadata of nn.Module.state_dict), init_args,
 * trainer_name, inference_allowed_mirroring_axes, current_epoch, a fresh
 * SGD optimizer_state, grad_scaler_state None, empty logging, _best_ema
 * None.  Parameters the source lacks are the deep-supervision heads of a
 * model file (decoder.seg_layers.0 .. S-3, unused at inference): they are
 * written as zeros and counted in the report.
 *
 * Every output is first written to a temporary next to it; they are renamed
 * into place together after the last one is complete, so a failure leaves
 * no new file and no folder created by the call.  Existing checkpoints are
 * refused (NNP_EUSAGE) unless force; an existing plans.json or dataset.json
 * equal (as JSON) to the model's is kept, a different one is refused unless
 * force.
 *
 * nnp_sd_layout_build is the state_dict layout by itself: the names, shapes
 * and storage indices PyTorch's state_dict() lists for nnU-Net's
 * PlainConvUNet / ResidualEncoderUNet of an architecture, in order, and the
 * module paths of its _metadata.
 *
 * Ownership: the layout struct is caller-provided; nnp_sd_layout_release
 * frees its arrays (a zeroed or released layout may be released again).
 */
#ifndef NNP_MODEL_EXPORT_H
#define NNP_MODEL_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"

#define NNP_SD_NAME 192

struct nnp_sd_entry {
	char name[NNP_SD_NAME];   /* "encoder.stages.0.0.convs.0.all_modules.0.weight" */
	size_t storage;           /* index of the shared storage (first-use order) */
	int ndim;
	int64_t shape[5];
};

struct nnp_sd_module {
	char path[NNP_SD_NAME];   /* "" for the network, "encoder", ... */
	int version;              /* nn.Module._version: 2 for InstanceNorm, else 1 */
};

struct nnp_sd_layout {
	size_t n;
	struct nnp_sd_entry *e;
	size_t nstorages;
	size_t *canon;            /* per storage: index in e of its first (canonical) name */
	size_t nmodules;
	struct nnp_sd_module *mod;
};

int nnp_sd_layout_build(const struct nnp_net_arch *a, struct nnp_sd_layout *out);
void nnp_sd_layout_release(struct nnp_sd_layout *l);

struct nnp_model_export_opts {
	const char *const *folds;   /* NULL: every fold of the model (file) or every
	                               fold_F/checkpoint_final.pth (folder) */
	int nfolds;
	int force;
};

struct nnp_model_export_report {
	int nfolds;                 /* checkpoints written */
	int zero_heads;             /* deep-supervision heads written as zeros, all folds */
	int kept_json;              /* plans.json / dataset.json already there and equal */
};

int nnp_model_export(const char *model, const char *outdir, const struct nnp_model_export_opts *o,
		     struct nnp_model_export_report *rep);

#endif
