# experiment.mk — the whole nnU-Net lifecycle as one reproducible, resumable Make experiment.
#
#   make -f pipelines/experiment.mk DATASET=990 CONFIGS="2d 3d_fullres" FOLDS="0 1 2 3 4" -j
#
# verify -> plan-and-preprocess -> train every (configuration, fold) over GNU parallel
# (one job per GPU slot, or CPU jobs; --joblog) -> final validation (part of training)
# -> find-best (cross-validation, ensembles, postprocessing) -> predict the test set with
# the winner -> evaluate it.  Every step is idempotent: a second run does nothing, and a run
# that was killed (Ctrl-C, kill, a crashed machine) resumes where it stopped — finished
# folds are kept, interrupted trainings continue from their last checkpoint
# (nnp train --continue), predicted cases are skipped (nnp predict --continue).
#
# Variables (make VAR=value):
#   DATASET      dataset id or DatasetXXX_Name (required); folders from $nnUNet_raw,
#                $nnUNet_preprocessed and $nnUNet_results, which must be set
#   CONFIGS      configurations to train (default: 2d 3d_fullres)
#   FOLDS        folds (default: 0 1 2 3 4)
#   PLANS        plans identifier (default nnUNetPlans; PLAN_ARGS may make a variant)
#   TRAINER      trainer name (default nnUNetTrainer)
#   PLAN_ARGS    extra nnp plan-and-preprocess options (e.g. --base-features 16 --max-features 128)
#   TRAIN_ARGS   extra nnp train options (e.g. --epochs 100)
#   GPUS         CUDA devices to train on, one job per device (e.g. "0 1 2 3"); empty: CPU
#   JOBS         parallel trainings on the CPU (default 1; each gets nproc/JOBS threads)
#   TEST_IMAGES  images to predict (default: the raw dataset's imagesTs, if it exists)
#   TEST_LABELS  their references (default: labelsTs, if it exists) -> test_summary.json
#   EXP          where stamps, logs, predictions and scores go (default experiments/DATASET_NAME)
#   NNP          the nnp program (default: bin/nnp of this checkout, else nnp on PATH;
#                installed as PREFIX/share/nnpipe/experiment.mk, it uses the nnp on PATH)
#
# Targets: all (default), preprocess, train, find-best, predict, evaluate, report (prints the
# Dice table of the test set), status (what is done), clean-exp (removes EXP only).
# Each fold's training is logged to EXP/logs/train_CONFIG_fold_F.log; GNU parallel's
# joblog is EXP/logs/train.joblog.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

HERE := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
NNP ?= $(firstword $(wildcard $(HERE)/../bin/nnp) nnp)
ifneq ($(findstring /,$(NNP)),)
  export PATH := $(patsubst %/,%,$(dir $(abspath $(NNP)))):$(PATH)
endif
CONFIGS ?= 2d 3d_fullres
FOLDS ?= 0 1 2 3 4
PLANS ?= nnUNetPlans
TRAINER ?= nnUNetTrainer
PLAN_ARGS ?=
TRAIN_ARGS ?=
GPUS ?=
JOBS ?= 1

ifeq ($(strip $(DATASET)),)
  $(error DATASET is not set: make -f pipelines/experiment.mk DATASET=<id or DatasetXXX_Name>)
endif
$(foreach v,nnUNet_raw nnUNet_preprocessed nnUNet_results,$(if $($(v)),,$(error $$$(v) is not set)))

# DatasetXXX_Name from an id or a name
DS_NAME := $(shell d='$(DATASET)'; case $$d in (Dataset*) echo "$${d%%/}";; (*[!0-9]*) echo "$$d";; \
	(*) n=$$(echo "$$d" | sed 's/^0*//'); for f in "$$nnUNet_raw"/Dataset$$(printf %03d "$${n:-0}")_*; do [ -d "$$f" ] && basename "$$f"; done | head -n1;; esac)
ifeq ($(DS_NAME),)
  $(error dataset '$(DATASET)' not found in $$nnUNet_raw ($(nnUNet_raw)))
endif
RAW := $(nnUNet_raw)/$(DS_NAME)
PRE := $(nnUNet_preprocessed)/$(DS_NAME)
RES := $(nnUNet_results)/$(DS_NAME)
EXP ?= experiments/$(DS_NAME)
TEST_IMAGES ?= $(wildcard $(RAW)/imagesTs)
TEST_LABELS ?= $(wildcard $(RAW)/labelsTs)

space := $(subst ,, )
CFG_TAG := $(subst $(space),-,$(strip $(CONFIGS)))
FOLD_TAG := $(subst $(space),_,$(strip $(FOLDS)))
ST := $(EXP)/stamps
PRED := $(EXP)/predictions

.PHONY: all preprocess train find-best predict evaluate report status clean-exp
all: $(if $(TEST_IMAGES),$(if $(TEST_LABELS),evaluate,predict),find-best)

# The experiment's parameters, rewritten only when they change: a step re-runs when they
# do (its work is resumable, so only what is missing is computed).
VARS := CONFIGS=$(CONFIGS)|FOLDS=$(FOLDS)|PLANS=$(PLANS)|TRAINER=$(TRAINER)|PLAN_ARGS=$(PLAN_ARGS)|TRAIN_ARGS=$(TRAIN_ARGS)|TEST_IMAGES=$(TEST_IMAGES)
ifeq ($(filter clean-exp status,$(MAKECMDGOALS)),)
  $(shell mkdir -p '$(ST)' && printf '%s\n' '$(subst ','\'',$(VARS))' | tr '|' '\n' >'$(ST)/vars.tmp' && \
	{ cmp -s '$(ST)/vars.tmp' '$(ST)/vars' && rm -f '$(ST)/vars.tmp' || mv -f '$(ST)/vars.tmp' '$(ST)/vars'; })
endif
$(ST) $(EXP)/logs:
	@mkdir -p $@

# ---- 1. verify, plan and preprocess ----
$(ST)/verified: | $(ST)
	$(NNP) verify $(RAW)
	@touch $@

$(ST)/preprocessed: $(ST)/verified $(ST)/vars
	$(NNP) plan-and-preprocess -d $(DS_NAME) -c $(CONFIGS) $(PLAN_ARGS)
	@touch $@
preprocess: $(ST)/preprocessed

# ---- 2. train every (configuration, fold): GNU parallel, one job per slot ----
# A fold is done when its validation/summary.json exists; the others run (again) with
# --continue, which resumes an interrupted training from its checkpoint.  With GPUS, job
# slot k ($$PARALLEL_JOBSLOT) trains on the k-th device of GPUS.
NSLOTS := $(if $(strip $(GPUS)),$(words $(GPUS)),$(JOBS))
THREADS := $(shell n=$$(( $$(nproc) / $(JOBS) )); [ $$n -ge 1 ] || n=1; echo $$n)
export NNP_EXP_GPUS := $(strip $(GPUS))
export NNP_EXP_THREADS := $(if $(strip $(GPUS)),,$(THREADS))
fold_dir = $(RES)/$(TRAINER)__$(PLANS)__$(1)/fold_$(2)

$(ST)/trained: $(ST)/preprocessed $(ST)/vars | $(EXP)/logs
	@todo=(); for c in $(CONFIGS); do for f in $(FOLDS); do \
		[ -f "$(RES)/$(TRAINER)__$(PLANS)__$$c/fold_$$f/validation/summary.json" ] || todo+=("$$c $$f"); \
	done; done; \
	if [ $${#todo[@]} -eq 0 ]; then echo "experiment: every fold is trained"; touch $@; exit 0; fi; \
	echo "experiment: training $${#todo[@]} fold(s) on $(NSLOTS) slot(s): $${todo[*]}"; \
	printf '%s\n' "$${todo[@]}" | PARALLEL_SHELL=/bin/bash parallel --colsep ' ' -j $(NSLOTS) --halt now,fail=1 \
		--joblog $(EXP)/logs/train.joblog \
		'dev=cpu; if [ -n "$$NNP_EXP_GPUS" ]; then g=($$NNP_EXP_GPUS); dev=cuda:$${g[$$((PARALLEL_JOBSLOT-1))]}; fi; \
		 $(NNP) train -d $(DS_NAME) -c {1} -f {2} -p $(PLANS) -tr $(TRAINER) --npz --continue \
			--device $$dev $${NNP_EXP_THREADS:+-j $$NNP_EXP_THREADS} $(TRAIN_ARGS) \
			>$(EXP)/logs/train_{1}_fold_{2}.log 2>&1 || \
		 { rc=$$?; echo "experiment: training {1} fold {2} failed (exit $$rc); tail of $(EXP)/logs/train_{1}_fold_{2}.log:" >&2; \
		   tail -n 5 $(EXP)/logs/train_{1}_fold_{2}.log >&2; exit $$rc; }'
	@touch $@
train: $(ST)/trained

# ---- 3. find the best configuration / ensemble, its postprocessing ----
$(RES)/inference_information.json: $(ST)/trained
	$(NNP) find-best -d $(DS_NAME) -c $(CONFIGS) -p $(PLANS) -tr $(TRAINER) -f $(FOLDS) \
		| tee $(EXP)/find_best.txt
find-best: $(RES)/inference_information.json

# ---- 4. predict the test set with the winner; 5. evaluate ----
$(ST)/predicted: $(RES)/inference_information.json
	$(if $(TEST_IMAGES),,$(error no test images: set TEST_IMAGES (the raw dataset has no imagesTs)))
	$(NNP) find-best -d $(DS_NAME) --script -i $(TEST_IMAGES) -o $(PRED) >$(EXP)/predict.sh
	bash $(EXP)/predict.sh
	@touch $@
predict: $(ST)/predicted

$(EXP)/test_summary.json: $(ST)/predicted
	$(NNP) evaluate $(PRED) $(TEST_LABELS) -d $(PRE)/dataset.json -o $@ --force
evaluate: $(EXP)/test_summary.json

report: $(EXP)/test_summary.json
	@$(NNP) evaluate -q $(PRED) $(TEST_LABELS) -d $(PRE)/dataset.json -o $(EXP)/.report.json --force --table
	@rm -f $(EXP)/.report.json

status:
	@for c in $(CONFIGS); do for f in $(FOLDS); do d=$(RES)/$(TRAINER)__$(PLANS)__$$c/fold_$$f; \
		if [ -f $$d/validation/summary.json ]; then s=done; elif [ -f $$d/checkpoint_final.nnpm ]; then s="trained, not validated"; \
		elif [ -f $$d/checkpoint_latest.nnpm ]; then s="interrupted (resumes)"; else s="not started"; fi; \
		printf '%-14s fold %-3s %s\n' $$c $$f "$$s"; done; done
	@for t in verified preprocessed trained predicted; do [ -f $(ST)/$$t ] && echo "step $$t: done" || echo "step $$t: to do"; done

clean-exp:
	rm -rf $(EXP)
