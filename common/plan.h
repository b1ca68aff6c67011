/* plan.h — nnU-Net's experiment planning (nnunet-facts.md §4): the default
 * ExperimentPlanner and the ResEnc planners, as pure functions.
 *
 * Everything that decides a number of nnUNetPlans.json lives here: the
 * fullres target spacing, the transpose, the median shape after resampling,
 * get_pool_and_conv_props, the VRAM estimate of PlainConvUNet and
 * ResidualEncoderUNet (compute_conv_feature_map_size), the patch-size shrink
 * loop, the batch size, the 3d_lowres search, batch_dice, normalisation,
 * the reader/writer and the JSON layout.  Arithmetic follows nnU-Net's
 * numpy/Python order of operations in float64 (numpy percentile's lerp,
 * np.median's mean of the middle pair, round half to even), so the plans of
 * nnpipe and nnU-Net agree byte for byte (docs/planning.md).
 *
 * Array order everywhere is nnU-Net's (z, y, x) before transposition;
 * configuration spacings, shapes and patch sizes are transposed.
 *
 * Ownership: functions never take ownership of their arguments.
 * nnp_plan_input_from_json fills a struct released by nnp_plan_input_release;
 * *_json functions return new jansson references the caller json_decref's.
 * The planner table is static and read-only.
 */
#ifndef NNP_PLAN_H
#define NNP_PLAN_H

#include <stddef.h>
#include <jansson.h>

/* ExperimentPlanner constants (nnunet-facts §4).  The three feature
 * constants are the defaults of the planner attributes UNet_base_num_features
 * and UNet_max_features_{2d,3d} (struct nnp_planner), which planner
 * subclasses override (nnp_planner_with_features). */
#define NNP_PLAN_ANISO_THRESHOLD 3.0
#define NNP_PLAN_BASE_FEATURES 32
#define NNP_PLAN_MAX_FEATURES_3D 320
#define NNP_PLAN_MAX_FEATURES_2D 512
#define NNP_PLAN_FEATURES_MAX 65536 /* largest accepted feature override */
#define NNP_PLAN_MIN_EDGE 4
#define NNP_PLAN_MAX_NUMPOOL 999999
#define NNP_PLAN_REF_BS_3D 2
#define NNP_PLAN_REF_BS_2D 12
#define NNP_PLAN_MIN_BATCH 2
#define NNP_PLAN_LOWRES_THRESHOLD 0.25
#define NNP_PLAN_LOWRES_FACTOR 1.03

/* Caps: arrays are fixed-size; inputs beyond them are rejected. */
#define NNP_PLAN_STAGES_MAX 32      /* topology stages (planners allow 13/14) */
#define NNP_PLAN_CASES_MAX 1000000  /* fingerprint entries */
#define NNP_PLAN_CHANNELS_MAX 4096
#define NNP_PLAN_LABELS_MAX 100000
#define NNP_PLAN_SHAPE_MAX 1e9      /* voxels along one axis */
#define NNP_PLAN_LOOP_MAX 1000000   /* shrink / lowres iterations */

struct nnp_planner {
	const char *key;            /* --planner: "default", "resenc", "resenc-m", ... */
	const char *class_name;     /* experiment_planner_used */
	const char *plans_name;     /* default plans identifier */
	const char *network_class;  /* architecture.network_class_name */
	int residual;               /* ResidualEncoderUNet: n_blocks_per_stage, loop est > ref */
	double ref_3d, ref_2d;      /* UNet_reference_val_3d / _2d */
	double ref_gb;              /* UNet_reference_val_corresp_GB */
	double default_gb;          /* gpu_memory_target_in_gb when not given */
	double max_dataset_covered; /* batch cap: fraction of the dataset per step */
	const int *blocks_enc;      /* UNet_blocks_per_stage_encoder */
	int nblocks_enc;
	const int *blocks_dec;      /* UNet_blocks_per_stage_decoder */
	int nblocks_dec;
	int shared_data_ids;        /* 2d/3d_fullres data ids are nnUNetPlans_* */
	int base_features;          /* UNet_base_num_features (32) */
	int max_features_2d;        /* UNet_max_features_2d (512) */
	int max_features_3d;        /* UNet_max_features_3d (320) */
};

/* The planner with this --planner key, or NULL. */
const struct nnp_planner *nnp_planner_find(const char *key);
/* All planners (n set to their number). */
const struct nnp_planner *nnp_planner_list(size_t *n);
/* *out = *p with UNet_base_num_features = base and UNet_max_features_2d/_3d
 * = max_2d/max_3d, as a planner subclass overriding those attributes would
 * be (features_per_stage[s] = min(base * 2^s, max)).  Each value must be in
 * 1..NNP_PLAN_FEATURES_MAX and each maximum >= base, else NNP_EUSAGE. */
int nnp_planner_with_features(const struct nnp_planner *p, int base, int max_2d, int max_3d,
			      struct nnp_planner *out);
/* Whether p's feature attributes are ExperimentPlanner's (32, 512, 320). */
int nnp_planner_stock_features(const struct nnp_planner *p);
/* The default plans identifier of p: p->plans_name, followed by
 * "_f<base>x<max>" (or "_f<base>x<max_2d>x<max_3d>" when the maxima
 * differ) when the feature attributes are not the stock ones, so a variant
 * never takes the stock file's name.  NNP_EUSAGE if it does not fit in n. */
int nnp_planner_plans_name(const struct nnp_planner *p, char *buf, size_t n);

/* ---- numpy / Python arithmetic ---- */

/* Python round() / np.round: half to even. */
double nnp_py_round(double x);
/* np.percentile(v, q) with the default linear method (numpy >= 1.22 lerp).
 * Sorts v in place; n >= 1. */
double nnp_np_percentile(double *v, size_t n, double q);
/* np.median(v): middle value or mean of the middle pair. Sorts v; n >= 1. */
double nnp_np_median(double *v, size_t n);

/* ---- dataset-level rules ---- */

struct nnp_plan_input {
	size_t ncases;
	double (*spacings)[3];     /* fingerprint "spacings" */
	double (*shapes)[3];       /* fingerprint "shapes_after_crop" */
	double median_relative_size;
	int n_in;                  /* len(channel_names) */
	int n_out;                 /* len(labels): network outputs in the estimate */
	long long num_training;    /* dataset.json numTraining */
};

/* determine_fullres_target_spacing (§4.1); 0 or NNP_ENOMEM. */
int nnp_plan_fullres_spacing(const struct nnp_plan_input *in, double out[3]);
/* determine_transpose (§4.2). */
void nnp_plan_transpose(const double spacing[3], int fwd[3], int bwd[3]);
/* compute_new_shape: round_half_even(old_sp / new_sp * shape) per axis. */
void nnp_plan_new_shape(const double shape[3], const double old_sp[3], const double new_sp[3],
			double out[3]);

/* ---- network topology and VRAM estimate ---- */

struct nnp_topology {
	int dim, nstages;
	int strides[NNP_PLAN_STAGES_MAX][3];
	int kernels[NNP_PLAN_STAGES_MAX][3];
	int num_pool[3];
	long long divisible[3];    /* shape_must_be_divisible_by */
	long long patch[3];        /* the patch padded to multiples of divisible */
};

/* get_pool_and_conv_props(spacing, patch, min_edge, max_numpool) (§4.5).
 * patch may be fractional (a median shape).  NNP_EDATA if more than
 * NNP_PLAN_STAGES_MAX stages would be needed. */
int nnp_plan_topology(int dim, const double *spacing, const double *patch, int min_edge,
		      int max_numpool, struct nnp_topology *t);

struct nnp_arch {
	int dim, nstages, residual;
	int strides[NNP_PLAN_STAGES_MAX][3];
	int kernels[NNP_PLAN_STAGES_MAX][3];
	int features[NNP_PLAN_STAGES_MAX];
	int n_enc[NNP_PLAN_STAGES_MAX];  /* n_conv_per_stage, or n_blocks_per_stage */
	int n_dec[NNP_PLAN_STAGES_MAX];  /* n_conv_per_stage_decoder (nstages - 1) */
};

/* The arch_kwargs the planner builds for a topology (features, block
 * counts); NNP_EDATA if the planner's block tables are too short. */
int nnp_plan_arch(const struct nnp_planner *p, const struct nnp_topology *t, struct nnp_arch *a);
/* compute_conv_feature_map_size(patch) of PlainConvUNet / ResidualEncoderUNet
 * built from a with n_out classes (np.int64 arithmetic). */
long long nnp_plan_vram(const struct nnp_arch *a, const long long *patch, int n_out,
			int deep_supervision);

/* ---- configurations ---- */

struct nnp_plan_config {
	int dim;
	long long batch_size;
	long long patch[3];
	double median[3];
	int median_is_int;         /* 3d_lowres writes ints */
	double spacing[3];
	struct nnp_arch arch;
	long long estimate;        /* final VRAM estimate */
	int shrink_steps;
	int batch_dice;
};

/* get_plans_for_configuration (§4.4) for dim 2 or 3.  gpu_gb is the VRAM
 * target.  NNP_EDATA for degenerate inputs (non-positive spacing, an empty
 * patch, too many stages). */
int nnp_plan_configuration(const struct nnp_planner *p, double gpu_gb, int n_out, int dim,
			   const double *spacing, const double *median, int median_is_int,
			   double n_vox_dataset, struct nnp_plan_config *out);

/* The 3d_lowres search (§4.6) from 3d_fullres; *have is 0 when no lowres
 * configuration is kept; *iterations counts the spacing increases. */
int nnp_plan_lowres(const struct nnp_planner *p, double gpu_gb, int n_out,
		    const struct nnp_plan_config *fullres, const double median_t[3],
		    long long num_training, struct nnp_plan_config *low, int *have, int *iterations);

struct nnp_plan {
	double fullres_spacing[3]; /* untransposed */
	int tf[3], tb[3];          /* transpose_forward / backward */
	double median_t[3];        /* median shape after resampling, transposed */
	double n_vox;              /* approximate_n_voxels_dataset */
	double orig_spacing_t[3];  /* original_median_spacing_after_transp */
	long long orig_shape_t[3]; /* original_median_shape_after_transp */
	int have_3d, have_lowres, lowres_iterations;
	struct nnp_plan_config c2d, lowres, fullres;
};

/* plan_experiment's numbers (§4.1-4.6). */
int nnp_plan_experiment(const struct nnp_planner *p, double gpu_gb, const struct nnp_plan_input *in,
			struct nnp_plan *out);

/* ---- dataset.json / fingerprint / plans JSON ---- */

/* Channel name -> normalisation class name (§4.9, casefold lookup). */
const char *nnp_plan_norm_scheme(const char *channel_name);
/* image_reader_writer (§1.4) from dataset.json: overwrite_image_reader_writer
 * when it names a known class, else the first class supporting file_ending.
 * *ignored_override is set when an unknown override was ignored.  NULL when
 * no class supports the ending. */
const char *nnp_plan_reader_writer(const json_t *dataset_json, int *ignored_override);

/* Read the planner inputs from dataset.json and dataset_fingerprint.json
 * (validating them; fp_name names the fingerprint in messages). */
int nnp_plan_input_from_json(const json_t *dataset_json, const json_t *fingerprint,
			     const char *fp_name, struct nnp_plan_input *in);
void nnp_plan_input_release(struct nnp_plan_input *in);

struct nnp_plan_names {
	const char *dataset_name;  /* "Dataset901_Spheres" */
	const char *plans_name;    /* NULL: nnp_planner_plans_name() */
};

/* The whole nnUNetPlans.json as nnU-Net writes it (key order included). */
int nnp_plan_build(const struct nnp_planner *p, double gpu_gb, const json_t *dataset_json,
		   const json_t *fingerprint, const char *fp_name, const struct nnp_plan_names *names,
		   json_t **plans);
/* save_plans' merge: configurations of an existing plans file that were not
 * regenerated are appended to plans (custom configurations survive);
 * returns how many were kept. */
int nnp_plan_keep_old_configurations(json_t *plans, const json_t *old_plans);

#endif
