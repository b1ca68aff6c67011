/* train.h — nnU-Net's trainer (nnUNetTrainer, nnunet-facts §7) over a
 * stream of augmented samples (docs/training.md).
 *
 * One fold of one configuration: the network from the plans (deep
 * supervision on), He initialisation, SGD Nesterov 0.99 with weight decay
 * 3e-5, PolyLR 0.01 (1 - epoch/epochs)^0.9 set at the start of each epoch,
 * gradient clipping at 12, Dice + CE with nnU-Net's deep-supervision
 * weights; per epoch `iters` training and `val_iters` validation batches,
 * pseudo-Dice and its EMA for the best checkpoint, a TSV log and
 * progress.png; at the end checkpoint_final and, unless disabled, the
 * final validation (sliding-window prediction of the fold's validation
 * cases, exported and evaluated into validation/summary.json).
 *
 * Data: each epoch's training batches come from `nnp sample --split train
 * --seed f(seed, epoch) | nnp augment --seed f(seed, epoch)` started by the
 * trainer (or from one caller-given stream, the plumbing form); validation
 * batches from `nnp sample --split val | nnp augment --none`.  Since an
 * epoch's data depend only on (seed, epoch), a resumed run sees the same
 * batches as an uninterrupted one.
 *
 * Checkpoints (fold folder): checkpoint_latest / _best / _final.nnpm,
 * nnpipe model files (model.h) whose header also holds the training state
 * and whose extra payloads hold the SGD momentum and the log; written
 * atomically, verified (sha256) on load.  A stop request (SIGINT/SIGTERM
 * through cfg->stop) writes checkpoint_latest at the current iteration; a
 * --continue run regenerates that epoch's stream and skips the batches
 * already trained, so a stopped and resumed run ends with the same weights
 * as an uninterrupted one (as does one resumed from an epoch checkpoint
 * after kill -9).
 */
#ifndef NNP_TRAIN_H
#define NNP_TRAIN_H

#include <signal.h>
#include <stdint.h>

struct nnp_train_cfg {
	const char *pre_dir;        /* preprocessed dataset folder (plans, dataset.json, splits, data) */
	const char *plans_name;     /* "nnUNetPlans" */
	const char *config;         /* "3d_fullres" */
	const char *fold;           /* "0".."N" or "all" */
	const char *out_dir;        /* the fold folder (created) */
	const char *trainer;        /* "nnUNetTrainer" */
	const char *bin_dir;        /* where nnp-sample, nnp-augment, nnp-predict... live */
	const char *train_stream;   /* NULL: spawn per epoch; "-" or a path: one stream for all epochs */
	int epochs, iters, val_iters, save_every;
	int batch_size;             /* 0: the plans' */
	uint64_t seed;
	int aug_threads;            /* -j of nnp augment (0: its default) */
	int resume;                 /* --continue */
	int final_val;              /* run the final validation */
	int val_only;               /* --val: only the final validation (needs checkpoint_final) */
	int save_probabilities;     /* --npz: validation/CASE_probabilities<ending> too */
	double initial_lr;
	int device;                 /* -1 CPU, >= 0 CUDA device (trainnet_cuda.h) */
	volatile sig_atomic_t *stop; /* set by a signal handler: checkpoint and return NNP_EINTR */
};

#define NNP_TRAIN_STOPPED 1     /* nnp_train_run: stopped on request after a checkpoint */

void nnp_train_cfg_default(struct nnp_train_cfg *c);
/* Runs (or resumes) the training; NNP_OK, NNP_TRAIN_STOPPED, or <0. */
int nnp_train_run(const struct nnp_train_cfg *c);

#endif
