/* nnp-plan — nnU-Net's experiment planning: dataset.json + dataset_fingerprint.json
 * -> nnUNetPlans.json (nnunet-facts.md §4, docs/planning.md). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "atomic.h"
#include "dataset.h"
#include "err.h"
#include "json.h"
#include "plan.h"
#include "prog.h"

#define FINGERPRINT_MAX ((long long)1 << 30)

static const struct nnp_proginfo info = {
	.name = "plan",
	.summary = "plan nnU-Net configurations (nnUNetPlans.json) from a dataset fingerprint",
	.usage = "  nnp plan [options] PREPROCESSED_DATASET_DIR\n"
		 "  nnp plan [options] -d ID",
	.options =
		"  -d, --dataset ID       the dataset in $nnUNet_preprocessed (an id like 901,\n"
		"                         a name like Dataset901_Spheres, or a folder)\n"
		"  -o, --output FILE      where to write the plans ('-' = standard output;\n"
		"                         default DIR/PLANS_NAME.json)\n"
		"      --planner NAME     default (ExperimentPlanner), resenc (ResEncUNetPlanner),\n"
		"                         resenc-m, resenc-l, resenc-xl (nnUNetPlannerResEnc{M,L,XL})\n"
		"      --gpu-memory GB    VRAM target (default 8; resenc-l 24, resenc-xl 40)\n"
		"      --plans-name NAME  plans identifier (default nnUNetPlans, or\n"
		"                         nnUNetResEncUNet{,M,L,XL}Plans for the presets;\n"
		"                         with feature options NAME_f<base>x<max>)\n"
		"      --base-features N  UNet_base_num_features: features of stage 0 (default 32);\n"
		"                         stage s gets min(N * 2^s, the maximum)\n"
		"      --max-features N   UNet_max_features_2d and _3d (default 512 / 320)\n"
		"      --max-features-2d N, --max-features-3d N   one of the two (wins over\n"
		"                         --max-features)\n"
		"  -f, --force            replace an existing plans file (its configurations\n"
		"                         that are not regenerated are kept, like nnU-Net)\n",
	.details =
		"Reads DIR/dataset_fingerprint.json (nnp fingerprint) and DIR/dataset.json,\n"
		"or $nnUNet_raw/<dataset>/dataset.json when DIR has none (it is then copied\n"
		"into DIR, as nnU-Net does).  Writes the plans exactly as nnU-Net 2.8.1's\n"
		"nnUNetv2_plan_experiment would: 2d, 3d_fullres, and 3d_lowres +\n"
		"3d_cascade_fullres when the images are large (docs/planning.md).\n"
		"\n"
		"Examples:\n"
		"  nnp plan -d 901\n"
		"  nnp plan --planner resenc-l \"$nnUNet_preprocessed/Dataset901_Spheres\"\n"
		"  nnp plan -d 901 --gpu-memory 11 -o - | jq '.configurations[\"3d_fullres\"].patch_size'\n"
		"  nnp plan -d 901 --base-features 16 --max-features 128   # nnUNetPlans_f16x128.json\n",
};

struct cmdline {
	const char *dataset, *output, *plans_name;
	const struct nnp_planner *planner; /* &custom when feature options were given */
	struct nnp_planner custom;
	double gpu_gb;
	int have_gpu, force;
};

static int parse_features(const char *opt, const char *s)
{
	return (int)nnp_parse_ll(opt, s, 1, NNP_PLAN_FEATURES_MAX);
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_PLANNER = 256, OPT_GPU, OPT_PLANS, OPT_BASE, OPT_MAX, OPT_MAX2, OPT_MAX3 };
	static const struct option opts[] = {
		{ "dataset", required_argument, NULL, 'd' },
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "planner", required_argument, NULL, OPT_PLANNER },
		{ "gpu-memory", required_argument, NULL, OPT_GPU },
		{ "plans-name", required_argument, NULL, OPT_PLANS },
		{ "base-features", required_argument, NULL, OPT_BASE },
		{ "max-features", required_argument, NULL, OPT_MAX },
		{ "max-features-2d", required_argument, NULL, OPT_MAX2 },
		{ "max-features-3d", required_argument, NULL, OPT_MAX3 },
		{ NULL, 0, NULL, 0 },
	};
	const char *planner = "default";
	int c, base = 0, maxf = 0, max2 = 0, max3 = 0;

	memset(cl, 0, sizeof *cl);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:o:f", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cl->dataset = optarg; break;
		case 'o': cl->output = optarg; break;
		case 'f': cl->force = 1; break;
		case OPT_PLANNER: planner = optarg; break;
		case OPT_GPU:
			cl->gpu_gb = nnp_parse_double("--gpu-memory", optarg);
			if (!(cl->gpu_gb > 0) || cl->gpu_gb > 1e6)
				nnp_usage_error("--gpu-memory must be a number of GB > 0, not '%s'", optarg);
			cl->have_gpu = 1;
			break;
		case OPT_PLANS: cl->plans_name = optarg; break;
		case OPT_BASE: base = parse_features("--base-features", optarg); break;
		case OPT_MAX: maxf = parse_features("--max-features", optarg); break;
		case OPT_MAX2: max2 = parse_features("--max-features-2d", optarg); break;
		case OPT_MAX3: max3 = parse_features("--max-features-3d", optarg); break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (!(cl->planner = nnp_planner_find(planner)))
		nnp_usage_error("unknown --planner '%s' (default, resenc, resenc-m, resenc-l, resenc-xl)",
				planner);
	if (base || maxf || max2 || max3) {
		const struct nnp_planner *p = cl->planner;
		if (!base)
			base = p->base_features;
		if (!max2)
			max2 = maxf ? maxf : p->max_features_2d;
		if (!max3)
			max3 = maxf ? maxf : p->max_features_3d;
		if (nnp_planner_with_features(p, base, max2, max3, &cl->custom))
			nnp_usage_error("%s (--base-features, --max-features)", nnp_err_msg());
		cl->planner = &cl->custom;
	}
	if (cl->plans_name && (!*cl->plans_name || strchr(cl->plans_name, '/') ||
			       strlen(cl->plans_name) > 200 || !strcmp(cl->plans_name, ".") ||
			       !strcmp(cl->plans_name, "..")))
		nnp_usage_error("--plans-name must be a file name without '/', not '%s'", cl->plans_name);
	if (cl->output && !*cl->output)
		nnp_usage_error("--output must not be empty");
	if (optind < argc) {
		if (cl->dataset)
			nnp_usage_error("give the dataset either as -d or as an argument, not both");
		cl->dataset = argv[optind++];
	}
	if (!cl->dataset)
		nnp_usage_error("missing PREPROCESSED_DATASET_DIR (or -d ID)");
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (!cl->have_gpu)
		cl->gpu_gb = cl->planner->default_gb;
}

static int exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static const char *base_name(const char *dir, char *buf, size_t n)
{
	size_t len = strlen(dir);
	const char *s;
	while (len > 1 && dir[len - 1] == '/')
		len--;
	s = dir + len;
	while (s > dir && s[-1] != '/')
		s--;
	snprintf(buf, n, "%.*s", (int)(len - (size_t)(s - dir)), s);
	return buf;
}

/* Copy dataset.json into the preprocessed folder like nnU-Net's planner. */
static int copy_file(const char *from, const char *to)
{
	struct nnp_atomic a;
	char buf[65536];
	size_t n;
	int rc;
	FILE *f = fopen(from, "rb");
	if (!f)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", from, strerror(errno));
	if ((rc = nnp_atomic_open(&a, to, 0))) {
		fclose(f);
		return rc;
	}
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		if ((rc = nnp_write_all(a.fd, buf, n, to)))
			break;
	if (!rc && ferror(f))
		rc = nnp_err(NNP_EDATA, "cannot read '%s': %s", from, strerror(errno));
	fclose(f);
	if (rc) {
		nnp_atomic_abort(&a);
		return rc;
	}
	return nnp_atomic_commit(&a);
}

/* "A/B" into buf; NNP_EUSAGE when it does not fit. */
static int join(char *buf, size_t n, const char *a, const char *b)
{
	int len = snprintf(buf, n, "%s/%s", a, b);
	if (len < 0 || (size_t)len >= n)
		return nnp_err(NNP_EUSAGE, "path too long: '%s/%s'", a, b);
	return NNP_OK;
}

/* dataset.json of the preprocessed folder, else of $nnUNet_raw/NAME. */
static int open_dataset_json(const char *dir, const char *name, struct nnp_dataset **d)
{
	char p[PATH_MAX], raw[PATH_MAX], to[PATH_MAX];
	const char *root = getenv("nnUNet_raw");
	int rc;
	if ((rc = join(to, sizeof to, dir, "dataset.json")))
		return rc;
	if (exists(to))
		return nnp_dataset_open(dir, d);
	if (!root || !*root)
		return nnp_err(NNP_EDATA, "'%s' does not exist and nnUNet_raw is not set "
			       "(the raw dataset's dataset.json is read from there)", to);
	if ((rc = join(raw, sizeof raw, root, name)) || (rc = join(p, sizeof p, raw, "dataset.json")))
		return rc;
	if (!exists(p))
		return nnp_err(NNP_EDATA, "no dataset.json: neither '%s' nor '%s' exists", to, p);
	if ((rc = nnp_dataset_open(raw, d)))
		return rc;
	if ((rc = copy_file(p, to))) {
		nnp_dataset_free(*d);
		*d = NULL;
		return rc;
	}
	return NNP_OK;
}

static int load_fingerprint(const char *dir, char *path, size_t n, json_t **fp)
{
	struct stat st;
	int rc = join(path, n, dir, "dataset_fingerprint.json");
	if (rc)
		return rc;
	if (stat(path, &st) != 0)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s (run nnp fingerprint first)", path,
			       strerror(errno));
	if ((long long)st.st_size > FINGERPRINT_MAX)
		return nnp_err(NNP_EDATA, "'%s': too large (%lld bytes, at most %lld)", path,
			       (long long)st.st_size, FINGERPRINT_MAX);
	return nnp_json_load(path, fp);
}

static int write_stdout(const json_t *j)
{
	char *s;
	int rc = nnp_json_dumps(j, 4, 0, &s);
	if (rc)
		return rc;
	if (fputs(s, stdout) == EOF || putchar('\n') == EOF)
		rc = nnp_err(NNP_EIO, "cannot write standard output: %s", strerror(errno));
	free(s);
	return rc;
}

static void summary(const json_t *plans, const char *out)
{
	const json_t *cfgs = json_object_get(plans, "configurations"), *c;
	const char *k;
	if (nnp_quiet())
		return;
	json_object_foreach((json_t *)cfgs, k, c) {
		const json_t *ps = json_object_get(c, "patch_size");
		char patch[96] = "";
		size_t i, len = 0;
		if (!ps)
			continue;
		for (i = 0; i < json_array_size(ps) && len < sizeof patch - 24; i++)
			len += (size_t)snprintf(patch + len, sizeof patch - len, "%s%lld", i ? "x" : "",
						(long long)json_integer_value(json_array_get(ps, i)));
		nnp_info("%s: patch %s, batch %lld", k, patch,
			 (long long)json_integer_value(json_object_get(c, "batch_size")));
	}
	nnp_info("wrote %s", out);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_dataset *d = NULL;
	struct nnp_plan_names names;
	json_t *fp = NULL, *plans = NULL, *old = NULL;
	char dir[PATH_MAX], name[NAME_MAX + 1], fpath[PATH_MAX], out[PATH_MAX], own_name[256];
	const char *plans_name;
	int rc, ignored;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if ((rc = nnp_dataset_resolve(cl.dataset, "nnUNet_preprocessed", dir, sizeof dir)))
		nnp_die(rc);
	base_name(dir, name, sizeof name);
	if (!cl.plans_name && (rc = nnp_planner_plans_name(cl.planner, own_name, sizeof own_name)))
		nnp_die(rc);
	plans_name = cl.plans_name ? cl.plans_name : own_name;
	if (cl.output) {
		if (strlen(cl.output) >= sizeof out)
			nnp_dief(NNP_EUSAGE, "output path too long");
		strcpy(out, cl.output);
	} else {
		char file[NAME_MAX + 8];
		snprintf(file, sizeof file, "%s.json", plans_name);
		if ((rc = join(out, sizeof out, dir, file)))
			nnp_die(rc);
	}
	if (strcmp(out, "-") && exists(out) && !cl.force)
		nnp_dief(NNP_EUSAGE, "'%s' exists (use --force to overwrite)", out);
	if ((rc = load_fingerprint(dir, fpath, sizeof fpath, &fp)))
		nnp_die(rc);
	if ((rc = open_dataset_json(dir, name, &d)))
		nnp_die(rc);
	if (cl.have_gpu && cl.planner->residual && strcmp(cl.planner->key, "resenc") &&
	    cl.gpu_gb != cl.planner->default_gb)
		nnp_warn("%s expects --gpu-memory %g, got %g", cl.planner->class_name,
			 cl.planner->default_gb, cl.gpu_gb);
	if (nnp_plan_reader_writer(d->json, &ignored) && ignored)
		nnp_warn("dataset.json: unknown overwrite_image_reader_writer; chose the reader from "
			 "file_ending");
	names.dataset_name = name;
	names.plans_name = plans_name;
	if ((rc = nnp_plan_build(cl.planner, cl.gpu_gb, d->json, fp, fpath, &names, &plans)))
		nnp_die(rc);
	if (json_array_size(json_object_get(fp, "spacings")) != (size_t)d->num_training)
		nnp_warn("dataset.json says numTraining %ld, the fingerprint has %zu cases",
			 d->num_training, json_array_size(json_object_get(fp, "spacings")));
	if (strcmp(out, "-") && exists(out)) {
		if (nnp_json_load(out, &old) == NNP_OK) {
			int kept = nnp_plan_keep_old_configurations(plans, old);
			if (kept > 0)
				nnp_info("kept %d configuration(s) of the existing '%s'", kept, out);
			else if (kept < 0)
				nnp_warn("%s; replacing it", nnp_err_msg());
		} else {
			nnp_warn("%s; replacing it", nnp_err_msg());
		}
		json_decref(old);
	}
	if (!strcmp(out, "-"))
		rc = write_stdout(plans);
	else
		rc = nnp_json_write_file(plans, out, 4, 0, cl.force);
	if (rc)
		nnp_die(rc);
	summary(plans, strcmp(out, "-") ? out : "standard output");
	json_decref(plans);
	json_decref(fp);
	nnp_dataset_free(d);
	return nnp_close_stdout();
}
