/* findbest.c — nnUNetv2_find_best_configuration: accumulate the
 * cross-validation results of each model, ensemble pairs, pick the best,
 * determine its postprocessing, write the inference instructions. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "evaluate.h"
#include "findbest.h"
#include "json.h"
#include "prog.h"
#include "pyjson.h"
#include "split.h"

#define NAME_MAX_FB 256

struct model {
	char trainer[NAME_MAX_FB], plans[NAME_MAX_FB], config[NAME_MAX_FB];
	char id[3 * NAME_MAX_FB + 8];     /* TRAINER__PLANS__CONFIG */
	char dir[PATH_MAX];               /* RESULTS/ID */
};

struct result {
	char key[4 * NAME_MAX_FB * 2];    /* model id or ensemble name */
	char source[PATH_MAX];            /* the folder that was evaluated */
	double dice;                      /* foreground_mean Dice */
	int members[2];                   /* model indices; members[1] < 0 for a single model */
};

struct fb {
	const struct nnp_find_best_opts *o;
	struct model *models;
	size_t nmodels;
	struct result *results;
	size_t nresults;
	char folds[256];                  /* "0_1_2_3_4" */
	char gt[PATH_MAX];                /* preprocessed gt_segmentations */
};

static int join(char *out, size_t n, const char *a, const char *b)
{
	return nnp_path_join(out, n, a, b);
}

/* ---- models ---- */

static int plans_has_config(const char *pre, const char *plans, const char *config, int *has)
{
	char path[PATH_MAX], name[NAME_MAX_FB + 8];
	json_t *j;
	int rc;
	snprintf(name, sizeof name, "%s.json", plans);
	if ((rc = join(path, sizeof path, pre, name)) || (rc = nnp_json_load(path, &j)))
		return rc;
	*has = json_object_get(json_object_get(j, "configurations"), config) != NULL;
	json_decref(j);
	return NNP_OK;
}

static int add_model(struct fb *f, const char *tr, const char *pl, const char *cf)
{
	struct model *m, *v = realloc(f->models, (f->nmodels + 1) * sizeof *v);
	if (!v)
		return nnp_err(NNP_ENOMEM, "out of memory");
	f->models = v;
	m = &v[f->nmodels];
	memset(m, 0, sizeof *m);
	if (strlen(tr) >= NAME_MAX_FB || strlen(pl) >= NAME_MAX_FB || strlen(cf) >= NAME_MAX_FB)
		return nnp_err(NNP_EUSAGE, "trainer, plans or configuration name too long");
	snprintf(m->trainer, sizeof m->trainer, "%s", tr);
	snprintf(m->plans, sizeof m->plans, "%s", pl);
	snprintf(m->config, sizeof m->config, "%s", cf);
	snprintf(m->id, sizeof m->id, "%s__%s__%s", tr, pl, cf);
	if (join(m->dir, sizeof m->dir, f->o->results_dir, m->id))
		return NNP_EUSAGE;
	f->nmodels++;
	return NNP_OK;
}

/* nnU-Net's filter_available_models: configurations absent from the plans
 * are skipped; a model that is in the plans but was never trained is an error. */
static int find_models(struct fb *f)
{
	const struct nnp_find_best_opts *o = f->o;
	int rc;
	for (size_t t = 0; t < o->ntrainers; t++)
		for (size_t c = 0; c < o->nconfigs; c++)
			for (size_t p = 0; p < o->nplans; p++) {
				int has;
				if ((rc = plans_has_config(o->pre_dir, o->plans[p], o->configs[c], &has)))
					return rc;
				if (!has) {
					nnp_info("configuration %s not in plans %s: skipped", o->configs[c], o->plans[p]);
					continue;
				}
				if ((rc = add_model(f, o->trainers[t], o->plans[p], o->configs[c])))
					return rc;
				if (!nnp_is_dir(f->models[f->nmodels - 1].dir))
					return nnp_err(NNP_EDATA,
						       "model %s has no output folder '%s': train it first (nnp train "
						       "-d ... -c %s -f FOLD; --npz to ensemble it), or leave -c %s out",
						       f->models[f->nmodels - 1].id, f->models[f->nmodels - 1].dir,
						       o->configs[c], o->configs[c]);
			}
	if (!f->nmodels)
		return nnp_err(NNP_EDATA, "no trained model: none of the configurations is in the plans");
	return NNP_OK;
}

/* ---- evaluation ---- */

static int load_dataset_json(const char *dir, json_t **ds)
{
	char path[PATH_MAX];
	int rc;
	if ((rc = join(path, sizeof path, dir, "dataset.json")))
		return rc;
	return nnp_json_load(path, ds);
}

static const char *file_ending(const json_t *ds)
{
	const char *e = json_string_value(json_object_get(ds, "file_ending"));
	return e ? e : ".nii.gz";
}

/* compute_metrics_on_folder(ref, pred) -> pred/summary.json; its fg Dice. */
static int evaluate(const struct fb *f, const char *pred, const char *ref, double *dice)
{
	struct nnp_eval_spec *s = NULL;
	struct nnp_eval_pairs pairs;
	struct nnp_eval_summary *sum = NULL;
	char out[PATH_MAX], name[PATH_MAX + 16];
	json_t *ds;
	int rc;
	memset(&pairs, 0, sizeof pairs);
	if ((rc = load_dataset_json(pred, &ds)))
		return rc;
	snprintf(name, sizeof name, "%s/dataset.json", pred);
	rc = nnp_eval_spec_from_dataset(ds, name, &s);
	if (!rc)
		rc = nnp_eval_pairs_list(pred, ref, file_ending(ds), 1, &pairs);
	if (!rc)
		rc = nnp_eval_folder(s, &pairs, f->o->threads, &sum);
	if (!rc && !(rc = join(out, sizeof out, pred, "summary.json")))
		rc = nnp_eval_summary_write(s, sum, out, 1);
	if (!rc)
		*dice = sum->fg_mean[NNP_EM_DICE];
	nnp_eval_summary_free(sum);
	nnp_eval_pairs_release(&pairs);
	nnp_eval_spec_free(s);
	json_decref(ds);
	return rc;
}

static int summary_dice(const char *dir, double *dice)
{
	char path[PATH_MAX];
	json_t *j;
	const json_t *d;
	int rc;
	if ((rc = join(path, sizeof path, dir, "summary.json")) || (rc = nnp_pyjson_load(path, &j)))
		return rc;
	d = json_object_get(json_object_get(j, "foreground_mean"), "Dice");
	rc = nnp_pyjson_number(d, dice) ? NNP_OK : nnp_err(NNP_EDATA, "'%s': no foreground_mean.Dice", path);
	json_decref(j);
	return rc;
}

/* ---- accumulate_cv_results ---- */

static int copy_named(const char *src_dir, const char *dst_dir, const char *name, int required)
{
	char src[PATH_MAX], dst[PATH_MAX];
	int rc;
	if ((rc = join(src, sizeof src, src_dir, name)) || (rc = join(dst, sizeof dst, dst_dir, name)))
		return rc;
	if (!nnp_is_file(src))
		return required ? nnp_err(NNP_EDATA, "'%s' is missing", src) : NNP_OK;
	return nnp_copy_file(src, dst, 1, 0);
}

/* Every fold's validation/CASE<ending> (and CASE_probabilities<ending>,
 * hard-linked, for the ensembles) into dst; *copied: files added. */
static int collect_fold(const struct model *m, int fold, const char *ending, const char *dst, int overwrite,
			size_t *copied)
{
	char vdir[PATH_MAX], sub[64], src[PATH_MAX], out[PATH_MAX], **names = NULL;
	size_t n = 0;
	int rc;
	snprintf(sub, sizeof sub, "fold_%d/validation", fold);
	if ((rc = join(vdir, sizeof vdir, m->dir, sub)))
		return rc;
	if (!nnp_is_dir(vdir))
		return nnp_err(NNP_EDATA, "fold %d of model %s is missing (no folder '%s'): train it (nnp train ... -f %d)",
			       fold, m->id, vdir, fold);
	if ((rc = nnp_list_dir(vdir, ending, NNP_LIST_SKIP_HIDDEN, &names, &n)))
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		int prob = nnp_is_probabilities_name(names[i], ending);
		if ((rc = join(src, sizeof src, vdir, names[i])) || (rc = join(out, sizeof out, dst, names[i])))
			break;
		if (nnp_is_file(out)) {
			if (overwrite && !prob)
				rc = nnp_err(NNP_EDATA, "model %s: more than one fold has a prediction for '%s' "
					     "(fold %d again): the folds overlap", m->id, names[i], fold);
			continue;
		}
		if (!(rc = nnp_copy_file(src, out, 0, prob)) && !prob)
			(*copied)++;
	}
	nnp_strv_free(names, n);
	return rc;
}

static int accumulate(struct fb *f, size_t mi, struct result *r)
{
	const struct model *m = &f->models[mi];
	char merged[PATH_MAX], tmp[PATH_MAX], name[300], gt[PATH_MAX];
	size_t copied = 0;
	const char *ending, *build;
	json_t *ds;
	int rc;

	snprintf(name, sizeof name, "crossval_results_folds_%s", f->folds);
	if ((rc = join(merged, sizeof merged, m->dir, name)))
		return rc;
	snprintf(name, sizeof name, ".crossval_results_folds_%s.nnp-tmp", f->folds);
	if ((rc = join(tmp, sizeof tmp, m->dir, name)) || (rc = load_dataset_json(m->dir, &ds)))
		return rc;
	ending = file_ending(ds);
	/* overwrite: built whole in a temp folder, then renamed into place */
	build = f->o->overwrite || !nnp_is_dir(merged) ? tmp : merged;
	if (build == tmp && ((rc = nnp_rmtree(tmp)) || (rc = nnp_mkdirs(tmp))))
		goto out;
	if ((rc = copy_named(m->dir, build, "dataset.json", 1)) || (rc = copy_named(m->dir, build, "plans.json", 1)))
		goto out;
	for (size_t i = 0; i < f->o->nfolds && !rc; i++)
		rc = collect_fold(m, f->o->folds[i], ending, build, f->o->overwrite, &copied);
	if (rc)
		goto out;
	if (build == tmp) {
		if ((rc = nnp_rmtree(merged)))
			goto out;
		if (rename(tmp, merged)) {
			rc = nnp_err(NNP_EIO, "cannot rename '%s' to '%s': %s", tmp, merged, strerror(errno));
			goto out;
		}
	}
	snprintf(r->key, sizeof r->key, "%s", m->id);
	snprintf(r->source, sizeof r->source, "%s", merged);
	r->members[0] = (int)mi;
	r->members[1] = -1;
	/* the reference: the raw labelsTr, else the preprocessed gt_segmentations */
	if (f->o->raw_dir && !join(gt, sizeof gt, f->o->raw_dir, "labelsTr") && nnp_is_dir(gt))
		;
	else
		snprintf(gt, sizeof gt, "%s", f->gt);
	if (copied || build == tmp || summary_dice(merged, &r->dice)) {
		nnp_err_clear();
		nnp_info("%s: evaluating %s", m->id, merged);
		rc = evaluate(f, merged, gt, &r->dice);
	}
out:
	if (rc)
		nnp_rmtree(tmp);
	json_decref(ds);
	return rc;
}

/* ---- ensembles ---- */

/* Every segmentation of a cross-validation folder needs its probabilities. */
static int check_probabilities(const struct model *m, const char *cv)
{
	char path[PATH_MAX], pname[NAME_MAX + 32], **names = NULL;
	const char *ending;
	size_t n = 0;
	json_t *ds;
	int rc;
	if ((rc = load_dataset_json(cv, &ds)))
		return rc;
	ending = file_ending(ds);
	rc = nnp_list_dir(cv, ending, NNP_LIST_NO_PROBABILITIES | NNP_LIST_STRIP_SUFFIX, &names, &n);
	for (size_t i = 0; i < n && !rc; i++) {
		snprintf(pname, sizeof pname, "%s%s%s", names[i], NNP_PROBABILITIES_SUFFIX, ending);
		if (!(rc = join(path, sizeof path, cv, pname)) && !nnp_is_file(path))
			rc = nnp_err(NNP_EDATA, "model %s has no validation probabilities for '%s%s': train it with "
				     "--npz (nnU-Net: --npz) to ensemble it, or give --disable-ensembling",
				     m->id, names[i], ending);
	}
	nnp_strv_free(names, n);
	json_decref(ds);
	return rc;
}

static int run_child(const struct fb *f, const char *prog, char **args, size_t nargs)
{
	char path[PATH_MAX], *argv[32];
	int st;
	if (nargs + 2 > sizeof argv / sizeof argv[0])
		return nnp_err(NNP_EINTERNAL, "too many arguments for %s", prog);
	snprintf(path, sizeof path, "%s/%s", f->o->bin_dir, prog);
	argv[0] = path;
	for (size_t i = 0; i < nargs; i++)
		argv[i + 1] = args[i];
	argv[nargs + 1] = NULL;
	nnp_debug("running %s", path);
	if ((st = nnp_spawn_wait(argv)) < 0)
		return st;
	if (st)
		return nnp_err(st == 4 ? NNP_ENOMEM : NNP_EDATA, "%s failed (exit status %d; see its message above)",
			       prog, st);
	return NNP_OK;
}

static int ensemble_pair(struct fb *f, size_t a, size_t b, struct result *r)
{
	const struct result *ra = &f->results[a], *rb = &f->results[b];
	char ens[PATH_MAX], dir[PATH_MAX], name[sizeof r->key], jobs[32];
	char *args[] = { "-q", "-i", (char *)ra->source, (char *)rb->source, "-o", dir, "-j", jobs, "--continue" };
	int rc;
	snprintf(name, sizeof name, "ensemble___%s___%s___%s", f->models[a].id, f->models[b].id, f->folds);
	if ((rc = join(ens, sizeof ens, f->o->results_dir, "ensembles")) || (rc = nnp_mkdirs(ens)) ||
	    (rc = join(dir, sizeof dir, ens, name)))
		return rc;
	if ((rc = check_probabilities(&f->models[a], ra->source)) ||
	    (rc = check_probabilities(&f->models[b], rb->source)))
		return rc;
	if (f->o->overwrite && (rc = nnp_rmtree(dir)))
		return rc;
	snprintf(jobs, sizeof jobs, "%d", f->o->threads > 0 ? f->o->threads : nnp_threads());
	nnp_info("ensembling %s and %s", f->models[a].id, f->models[b].id);
	if ((rc = run_child(f, "nnp-ensemble", args, sizeof args / sizeof args[0] - (f->o->overwrite ? 1 : 0))))
		return rc;
	snprintf(r->key, sizeof r->key, "%s", name);
	snprintf(r->source, sizeof r->source, "%s", dir);
	r->members[0] = (int)a;
	r->members[1] = (int)b;
	return evaluate(f, dir, f->gt, &r->dice);
}

/* ---- the report files ---- */

static json_t *model_dict(const struct model *m, const char *plans_key)
{
	json_t *d = json_object();
	json_object_set_new(d, plans_key, json_string(m->plans));
	json_object_set_new(d, "configuration", json_string(m->config));
	json_object_set_new(d, "trainer", json_string(m->trainer));
	return d;
}

static int write_information(const struct fb *f, const struct result *best, double post_pp, char *path,
			     size_t pathlen)
{
	json_t *info = json_object(), *folds = json_array(), *models = json_array(), *all = json_object();
	json_t *bm = json_object(), *sel = json_array();
	char file[PATH_MAX];
	int rc;
	for (size_t i = 0; i < f->o->nfolds; i++)
		json_array_append_new(folds, json_integer(f->o->folds[i]));
	for (size_t i = 0; i < f->nmodels; i++)
		json_array_append_new(models, model_dict(&f->models[i], "plans"));
	for (size_t i = 0; i < f->nresults; i++)
		json_object_set_new(all, f->results[i].key, nnp_pyjson_real(f->results[i].dice));
	for (int k = 0; k < 2 && best->members[k] >= 0; k++)
		json_array_append_new(sel, model_dict(&f->models[best->members[k]], "plans_identifier"));
	json_object_set_new(bm, "result_on_crossval_pre_pp", nnp_pyjson_real(best->dice));
	json_object_set_new(bm, "result_on_crossval_post_pp", nnp_pyjson_real(post_pp));
	join(file, sizeof file, best->source, "postprocessing.json");
	json_object_set_new(bm, "postprocessing_file", json_string(file));
	join(file, sizeof file, best->source, "plans.json");
	json_object_set_new(bm, "some_plans_file", json_string(file));
	json_object_set_new(bm, "selected_model_or_models", sel);
	json_object_set_new(info, "folds", folds);
	json_object_set_new(info, "dataset_name_or_id", json_string(f->o->dataset_arg));
	json_object_set_new(info, "considered_models", models);
	json_object_set_new(info, "ensembling_allowed", json_boolean(f->o->ensembling));
	json_object_set_new(info, "all_results", all);
	json_object_set_new(info, "best_model_or_ensemble", bm);
	if (!(rc = join(path, pathlen, f->o->results_dir, "inference_information.json")))
		rc = nnp_pyjson_write_file(info, path, 4, NNP_JSON_SORT_KEYS, 1);
	json_decref(info);
	return rc;
}

/* The instructions, with placeholders (input/output NULL) or real folders. */
static int instructions(const json_t *info, const char *input, const char *output, int jobs, FILE *out)
{
	const json_t *bm = json_object_get(info, "best_model_or_ensemble");
	const json_t *sel = json_object_get(bm, "selected_model_or_models"), *folds = json_object_get(info, "folds");
	const char *ds = json_string_value(json_object_get(info, "dataset_name_or_id"));
	const char *pp = json_string_value(json_object_get(bm, "postprocessing_file"));
	size_t n = json_array_size(sel);
	char q_in[PATH_MAX + 8], q_out[PATH_MAX + 8], q_pp[PATH_MAX + 8], q_ds[600], fold_s[512] = "", jarg[32] = "";
	char q_m[2][PATH_MAX + 40], q_raw[PATH_MAX + 40];
	int script = input != NULL, rc;
	size_t len = 0;

	if (!ds || !pp || !json_is_array(sel) || n < 1 || n > 2 || !json_is_array(folds))
		return nnp_err(NNP_EDATA, "inference_information.json: missing or malformed best_model_or_ensemble");
	for (size_t i = 0; i < json_array_size(folds) && len + 16 < sizeof fold_s; i++)
		len += (size_t)snprintf(fold_s + len, sizeof fold_s - len, " %lld",
					(long long)json_integer_value(json_array_get(folds, i)));
	if (jobs > 0)
		snprintf(jarg, sizeof jarg, " -j %d", jobs);
	if ((rc = nnp_shell_quote(q_ds, sizeof q_ds, ds, 1)) || (rc = nnp_shell_quote(q_pp, sizeof q_pp, pp, 1)))
		return rc;
	if (script) {
		char tmp[PATH_MAX + 40];
		if ((rc = nnp_shell_quote(q_in, sizeof q_in, input, 1)) ||
		    (rc = nnp_shell_quote(q_out, sizeof q_out, output, 1)))
			return rc;
		for (size_t i = 0; i < n; i++) {
			if (n > 1)
				snprintf(tmp, sizeof tmp, "%s.model_%zu", output, i + 1);
			else
				snprintf(tmp, sizeof tmp, "%s.raw", output);
			if ((rc = nnp_shell_quote(q_m[i], sizeof q_m[i], tmp, 1)))
				return rc;
		}
		snprintf(tmp, sizeof tmp, "%s.raw", output);
		if ((rc = nnp_shell_quote(q_raw, sizeof q_raw, tmp, 1)))
			return rc;
		fprintf(out, "#!/bin/bash\n# made by nnp find-best from inference_information.json\nset -euo pipefail\n");
	} else {
		snprintf(q_in, sizeof q_in, "INPUT_FOLDER");
		snprintf(q_out, sizeof q_out, "OUTPUT_FOLDER");
		for (size_t i = 0; i < n; i++)
			snprintf(q_m[i], sizeof q_m[i], n > 1 ? "OUTPUT_FOLDER_MODEL_%zu" : "OUTPUT_FOLDER", i + 1);
		fprintf(out, "***Run inference like this:***\n\n");
		if (n > 1)
			fprintf(out, "An ensemble won! Run the following commands to run predictions with the ensemble "
				     "members:\n\n");
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *m = json_array_get(sel, i);
		const char *tr = json_string_value(json_object_get(m, "trainer"));
		const char *c = json_string_value(json_object_get(m, "configuration"));
		const char *p = json_string_value(json_object_get(m, "plans_identifier"));
		if (!tr || !c || !p)
			return nnp_err(NNP_EDATA, "inference_information.json: a selected model lacks "
				       "trainer/configuration/plans_identifier");
		fprintf(out, "nnp predict -d %s -i %s -o %s -f%s -tr %s -c %s -p %s%s%s%s\n", q_ds, q_in, q_m[i], fold_s,
			tr, c, p, n > 1 ? " --save-probabilities" : "", script ? " --continue" : "", jarg);
	}
	if (n > 1) {
		if (!script)
			fprintf(out, "\nThen run ensembling with:\n\n");
		fprintf(out, "nnp ensemble -i %s %s -o %s%s%s\n", q_m[0], q_m[1], script ? q_raw : "OUTPUT_FOLDER",
			script ? " --continue" : "", jarg);
	}
	if (script) {
		fprintf(out, "nnp apply-postprocessing -i %s -o %s --rules %s%s\n", q_raw, q_out, q_pp, jarg);
	} else {
		fprintf(out, "\n***Once inference is completed, run postprocessing like this:***\n\n");
		fprintf(out, "nnp apply-postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP --rules %s%s\n", q_pp, jarg);
	}
	return ferror(out) ? nnp_err(NNP_EIO, "cannot write the instructions: %s", strerror(errno)) : NNP_OK;
}

static int write_instructions(const struct fb *f, const char *info_path)
{
	struct nnp_atomic a;
	char path[PATH_MAX];
	json_t *info;
	FILE *out;
	int rc;
	if ((rc = nnp_pyjson_load(info_path, &info)))
		return rc;
	if ((rc = join(path, sizeof path, f->o->results_dir, "inference_instructions.txt")) ||
	    (rc = nnp_atomic_open(&a, path, 1))) {
		json_decref(info);
		return rc;
	}
	if (!(out = fdopen(a.fd, "w"))) {
		nnp_atomic_abort(&a);
		json_decref(info);
		return nnp_err(NNP_EIO, "'%s': %s", path, strerror(errno));
	}
	rc = instructions(info, NULL, NULL, 0, out);
	if (!rc && f->o->report) {
		fputc('\n', f->o->report);
		rc = instructions(info, NULL, NULL, 0, f->o->report);
	}
	if (fflush(out) && !rc)
		rc = nnp_err(NNP_EIO, "cannot write '%s': %s", path, strerror(errno));
	a.fd = -1; /* fclose closes it */
	if (fclose(out) && !rc)
		rc = nnp_err(NNP_EIO, "cannot write '%s': %s", path, strerror(errno));
	if (rc)
		nnp_atomic_abort(&a);
	else
		rc = nnp_atomic_commit(&a);
	json_decref(info);
	return rc;
}

/* ---- the whole step ---- */

static int push_result(struct fb *f, struct result **r)
{
	struct result *v = realloc(f->results, (f->nresults + 1) * sizeof *v);
	if (!v)
		return nnp_err(NNP_ENOMEM, "out of memory");
	f->results = v;
	*r = &v[f->nresults];
	memset(*r, 0, sizeof **r);
	return NNP_OK;
}

static int determine_pp(const struct fb *f, const struct result *best, double *post)
{
	char plans[PATH_MAX], ds[PATH_MAX], jobs[32], pp[PATH_MAX];
	char *args[] = { "-q", "-i", (char *)best->source, "-r", (char *)f->gt, "--plans-json", plans,
			 "--dataset-json", ds, "-j", jobs };
	int rc;
	if ((rc = join(plans, sizeof plans, best->source, "plans.json")) ||
	    (rc = join(ds, sizeof ds, best->source, "dataset.json")) ||
	    (rc = join(pp, sizeof pp, best->source, "postprocessed")))
		return rc;
	snprintf(jobs, sizeof jobs, "%d", f->o->threads > 0 ? f->o->threads : nnp_threads());
	nnp_info("determining postprocessing for %s", best->key);
	if ((rc = run_child(f, "nnp-determine-postprocessing", args, sizeof args / sizeof args[0])))
		return rc;
	return summary_dice(pp, post);
}

static int run(struct fb *f)
{
	const struct nnp_find_best_opts *o = f->o;
	struct result *r = NULL, *best;
	char info[PATH_MAX], num[32];
	double post;
	size_t len = 0, nsingle;
	int rc;

	for (size_t i = 0; i < o->nfolds && len + 12 < sizeof f->folds; i++)
		len += (size_t)snprintf(f->folds + len, sizeof f->folds - len, "%s%d", i ? "_" : "", o->folds[i]);
	if ((rc = join(f->gt, sizeof f->gt, o->pre_dir, "gt_segmentations")))
		return rc;
	if (!nnp_is_dir(f->gt))
		return nnp_err(NNP_EDATA, "'%s' is missing: the reference segmentations come from preprocessing "
			       "(nnp plan-and-preprocess)", f->gt);
	if ((rc = find_models(f)))
		return rc;
	/* the previous result goes first: its folders are about to be rebuilt */
	if (!(rc = join(info, sizeof info, o->results_dir, "inference_information.json")) && unlink(info) &&
	    errno != ENOENT)
		return nnp_err(NNP_EIO, "cannot remove '%s': %s", info, strerror(errno));
	if (!(rc = join(info, sizeof info, o->results_dir, "inference_instructions.txt")) && unlink(info) &&
	    errno != ENOENT)
		return nnp_err(NNP_EIO, "cannot remove '%s': %s", info, strerror(errno));
	for (size_t i = 0; i < f->nmodels; i++) {
		if ((rc = push_result(f, &r)) || (rc = accumulate(f, i, r)))
			return rc;
		f->nresults++;
	}
	nsingle = f->nresults;
	if (o->ensembling)
		for (size_t i = 0; i < nsingle; i++)
			for (size_t j = i + 1; j < nsingle; j++) {
				if ((rc = push_result(f, &r)) || (rc = ensemble_pair(f, i, j, r)))
					return rc;
				f->nresults++;
			}
	best = &f->results[0];
	for (size_t i = 1; i < f->nresults; i++)
		if (f->results[i].dice > best->dice) /* ties: the first (single models come first) */
			best = &f->results[i];
	if (o->report) {
		fprintf(o->report, "***All results:***\n");
		for (size_t i = 0; i < f->nresults; i++) {
			nnp_py_float(f->results[i].dice, num, sizeof num);
			fprintf(o->report, "%s: %s\n", f->results[i].key, num);
		}
		nnp_py_float(best->dice, num, sizeof num);
		fprintf(o->report, "\n*Best*: %s: %s\n", best->key, num);
	}
	if ((rc = determine_pp(f, best, &post)) || (rc = write_information(f, best, post, info, sizeof info)))
		return rc;
	if (o->report) {
		nnp_py_float(post, num, sizeof num);
		fprintf(o->report, "after postprocessing: %s (rules: %s/postprocessing.json)\n", num, best->source);
	}
	return write_instructions(f, info);
}

int nnp_find_best(const struct nnp_find_best_opts *o)
{
	struct fb f;
	int rc;
	memset(&f, 0, sizeof f);
	f.o = o;
	rc = run(&f);
	free(f.models);
	free(f.results);
	return rc;
}

int nnp_find_best_script(const char *results_dir, const char *input_dir, const char *output_dir, int jobs,
			 FILE *out)
{
	char path[PATH_MAX];
	json_t *info;
	int rc;
	if ((rc = join(path, sizeof path, results_dir, "inference_information.json")))
		return rc;
	if (!nnp_is_file(path))
		return nnp_err(NNP_EDATA, "'%s' is missing: run nnp find-best first", path);
	if ((rc = nnp_pyjson_load(path, &info)))
		return rc;
	rc = instructions(info, input_dir, output_dir, jobs, out);
	json_decref(info);
	return rc;
}
