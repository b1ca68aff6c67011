/* nnp-make-example — write a small synthetic nnU-Net raw dataset (two
 * channels: CT-like int16 and T2-like float32, labels organ and lesion).
 *
 * Deterministic: every random number comes from a splitmix64 generator
 * seeded from --seed and the case number, so a case does not depend on how
 * many cases are made, and the same seed gives the same voxels on every
 * run.  Noise is "Gaussian-ish" (a scaled sum of four uniforms) so that no
 * libm transcendental function touches the voxel values.
 */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <jansson.h>
#include "atomic.h"
#include "err.h"
#include "frame.h"
#include "nifti.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "make-example",
	.summary = "write a small synthetic nnU-Net raw dataset (CT + T2, organ and lesion labels)",
	.usage = "  nnp-make-example -o DIR [--cases N] [--seed S] [--name NAME] [--force]",
	.options =
		"  -o, --output DIR   dataset folder to create (imagesTr, labelsTr, imagesTs,\n"
		"                     labelsTs, dataset.json)\n"
		"  -n, --cases N      number of training cases, 1-900 (default 8); 2 test\n"
		"                     cases are always added\n"
		"  -s, --seed S       random seed, 0 or more (default 42)\n"
		"      --name NAME    dataset.json \"name\" (default Dataset990_ExampleSpheres)\n"
		"  -f, --force        overwrite existing files\n",
	.details =
		"Cases ex_000 .. ex_<N-1> go to imagesTr/labelsTr, the next two ids to\n"
		"imagesTs/labelsTs.  Each case has its own grid (z 24-40, y and x 48-80\n"
		"voxels, spacing z 2.5 or 3 mm, y and x 0.75-0.85 mm, a non-zero origin):\n"
		"  tissue   CT (HU)    T2         label\n"
		"  air      -1000      ~0         0\n"
		"  body     40         300        0  ellipsoid\n"
		"  organ    110        520        1  ellipsoid inside the body\n"
		"  lesion   -20 / 190  950 / 220  2  1-2 spheres in the organ\n"
		"plus noise.  Files: CASE_0000.nii.gz (int16), CASE_0001.nii.gz (float32),\n"
		"labels CASE.nii.gz (uint8).  dataset.json is written last (atomically), so\n"
		"its presence means the dataset is complete.\n\n"
		"Example:\n"
		"  nnp-make-example -o raw/Dataset990_ExampleSpheres && nnp cases raw/Dataset990_ExampleSpheres\n",
};

#define NTEST 2
#define MAX_CASES 900
#define MAX_LESIONS 2

struct cmdline {
	const char *outdir, *name;
	long long ncases;
	uint64_t seed;
	int force;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_NAME = 256 };
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "cases", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 's' },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	cl->ncases = 8;
	cl->seed = 42;
	cl->name = "Dataset990_ExampleSpheres";
	while ((c = getopt_long(argc, argv, "o:n:s:f", opts, NULL)) != -1) {
		switch (c) {
		case 'o': cl->outdir = optarg; break;
		case 'n': cl->ncases = nnp_parse_ll("--cases", optarg, 1, MAX_CASES); break;
		case 's': cl->seed = (uint64_t)nnp_parse_ll("--seed", optarg, 0, LLONG_MAX); break;
		case OPT_NAME: cl->name = optarg; break;
		case 'f': cl->force = 1; break;
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (!cl->outdir || !*cl->outdir)
		nnp_usage_error("missing -o DIR (the dataset folder to create)");
	if (!*cl->name)
		nnp_usage_error("--name must not be empty");
	if (strncmp(cl->name, "Dataset", 7) || strlen(cl->name) < 11 || cl->name[10] != '_' ||
	    strspn(cl->name + 7, "0123456789") != 3)
		nnp_warn("name '%s' is not of nnU-Net's form DatasetXXX_Name", cl->name);
}

/* ---- random numbers: splitmix64 ---- */

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
	r->s = seed;
	r->s = rng_next(r) ^ (stream * 0xD1B54A32D192ED03ull);
	(void)rng_next(r);
}

/* Uniform in [0, 1). */
static double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static double rng_range(struct rng *r, double lo, double hi)
{
	return lo + (hi - lo) * rng_unit(r);
}

static int64_t rng_int(struct rng *r, int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* Mean 0, standard deviation 1, bell-shaped on [-2*sqrt(3), 2*sqrt(3)]. */
static double rng_gaussish(struct rng *r)
{
	double s = rng_unit(r) + rng_unit(r) + rng_unit(r) + rng_unit(r);
	return (s - 2.0) * 1.7320508075688772;
}

/* ---- the phantom of one case ---- */

struct ellipsoid {
	double c[3];   /* centre, mm, (x, y, z) relative to the grid centre */
	double a[3];   /* semi-axes, mm */
};

struct lesion {
	struct ellipsoid e;
	double hu, t2;
};

struct phantom {
	int64_t n[3];          /* z, y, x */
	double spacing[3];     /* z, y, x */
	double origin[3];      /* world x, y, z of voxel (0,0,0) */
	struct ellipsoid body, organ;
	struct lesion les[MAX_LESIONS];
	int nles;
	double bias;           /* T2 left-right intensity slope */
};

static double round_to(double v, double step)
{
	return nearbyint(v / step) * step;
}

static void plan_grid(struct rng *r, struct phantom *p)
{
	p->n[0] = rng_int(r, 24, 40);
	p->n[1] = rng_int(r, 48, 80);
	p->n[2] = rng_int(r, 48, 80);
	p->spacing[0] = rng_int(r, 0, 1) ? 3.0 : 2.5;
	p->spacing[1] = p->spacing[2] = round_to(rng_range(r, 0.75, 0.85), 0.01);
	for (int i = 0; i < 3; i++) {
		double fov = (double)p->n[2 - i] * p->spacing[2 - i];
		p->origin[i] = round_to(-fov / 2 + rng_range(r, -10, 10), 0.1);
	}
}

static void plan_shapes(struct rng *r, struct phantom *p)
{
	double fov[3] = { (double)p->n[2] * p->spacing[2], (double)p->n[1] * p->spacing[1],
			  (double)p->n[0] * p->spacing[0] };
	double amin;
	p->body = (struct ellipsoid){ { 0, 0, 0 },
				      { fov[0] * rng_range(r, 0.40, 0.46), fov[1] * rng_range(r, 0.32, 0.40),
					fov[2] * 0.65 } };
	for (int i = 0; i < 3; i++) {
		p->organ.a[i] = p->body.a[i] * rng_range(r, 0.42, 0.55) * (i == 2 ? 0.7 : 1.0);
		p->organ.c[i] = p->body.a[i] * rng_range(r, -0.2, 0.2) * (i == 2 ? 0.3 : 1.0);
	}
	amin = fmin(p->organ.a[0], fmin(p->organ.a[1], p->organ.a[2]));
	p->nles = (int)rng_int(r, 1, MAX_LESIONS);
	for (int k = 0; k < p->nles; k++) {
		struct lesion *l = &p->les[k];
		double rad = fmax(amin * rng_range(r, 0.30, 0.50), 2.5);
		for (int i = 0; i < 3; i++) {
			l->e.a[i] = rad;
			l->e.c[i] = p->organ.c[i] + p->organ.a[i] * rng_range(r, -0.45, 0.45);
		}
		if (rng_int(r, 0, 1)) {
			l->hu = -20;
			l->t2 = 950;
		} else {
			l->hu = 190;
			l->t2 = 220;
		}
	}
	p->bias = rng_range(r, -0.10, 0.10);
}

static int inside(const struct ellipsoid *e, const double q[3])
{
	double s = 0;
	for (int i = 0; i < 3; i++) {
		double d = (q[i] - e->c[i]) / e->a[i];
		s += d * d;
	}
	return s <= 1.0;
}

/* Tissue at point q: 0 air, 1 body, 2 organ, 3+k lesion k. */
static int tissue(const struct phantom *p, const double q[3])
{
	int t = 0;
	if (!inside(&p->body, q))
		return 0;
	t = inside(&p->organ, q) ? 2 : 1;
	for (int k = 0; k < p->nles; k++)
		if (inside(&p->les[k].e, q))
			t = 3 + k;
	return t;
}

static int16_t ct_value(const struct phantom *p, int t, struct rng *r)
{
	static const double base[3] = { -1000, 40, 110 };
	double v = (t < 3 ? base[t] : p->les[t - 3].hu) + 12.0 * rng_gaussish(r);
	v = nearbyint(v);
	return (int16_t)(v < -1024 ? -1024 : v > 3071 ? 3071 : v);
}

static float t2_value(const struct phantom *p, int t, double xn, struct rng *r)
{
	static const double base[3] = { 0, 300, 520 };
	if (t == 0)
		return (float)fabs(6.0 * rng_gaussish(r));
	return (float)((t < 3 ? base[t] : p->les[t - 3].t2) * (1.0 + p->bias * xn) + 15.0 * rng_gaussish(r));
}

static uint8_t label_of(int t)
{
	return (uint8_t)(t == 0 || t == 1 ? 0 : t == 2 ? 1 : 2);
}

/* Fill the three volumes in (z, y, x) order, x fastest. */
static void render(const struct phantom *p, struct rng *r, int16_t *ct, float *t2, uint8_t *lab)
{
	size_t i = 0;
	for (int64_t z = 0; z < p->n[0]; z++) {
		for (int64_t y = 0; y < p->n[1]; y++) {
			for (int64_t x = 0; x < p->n[2]; x++, i++) {
				double q[3] = { ((double)x - (double)(p->n[2] - 1) / 2) * p->spacing[2],
						((double)y - (double)(p->n[1] - 1) / 2) * p->spacing[1],
						((double)z - (double)(p->n[0] - 1) / 2) * p->spacing[0] };
				int t = tissue(p, q);
				ct[i] = ct_value(p, t, r);
				t2[i] = t2_value(p, t, q[0] / p->body.a[0], r);
				lab[i] = label_of(t);
			}
		}
	}
}

/* ---- volumes and files ---- */

static int vol_setup(struct nnp_vol *v, const struct phantom *p, const char *role, enum nnp_dtype dt,
		     const char *case_id)
{
	int rc;
	nnp_vol_init(v);
	snprintf(v->f.role, sizeof v->f.role, "%s", role);
	v->f.dtype = dt;
	v->f.shape[0] = 1;
	for (int i = 0; i < 3; i++) {
		v->f.shape[i + 1] = p->n[i];
		v->f.spacing[i] = p->spacing[i];
	}
	memset(v->f.affine, 0, sizeof v->f.affine);
	for (int i = 0; i < 3; i++) {
		v->f.affine[i][i] = p->spacing[2 - i];
		v->f.affine[i][3] = p->origin[i];
	}
	v->f.affine[3][3] = 1;
	v->f.has_affine = 1;
	if ((rc = nnp_frame_set_case(&v->f, case_id)))
		return rc;
	return nnp_vol_alloc(v);
}

static int path_of(char *buf, size_t n, const char *dir, const char *sub, const char *case_id,
		   const char *suffix)
{
	int k = snprintf(buf, n, "%s/%s/%s%s.nii.gz", dir, sub, case_id, suffix);
	if (k < 0 || (size_t)k >= n)
		return nnp_err(NNP_EUSAGE, "output path too long under '%s'", dir);
	return NNP_OK;
}

static int write_vol(const char *dir, const char *sub, const char *case_id, const char *suffix,
		     const struct nnp_vol *v, const struct nnp_nifti_opts *o)
{
	char path[PATH_MAX];
	int rc = path_of(path, sizeof path, dir, sub, case_id, suffix);
	if (rc)
		return rc;
	nnp_debug("writing '%s'", path);
	return nnp_nifti_write_volume(path, v, 0, 1, 0, o);
}

static int make_case(const struct cmdline *cl, int index, int test, const struct nnp_nifti_opts *o)
{
	struct nnp_vol ct, t2, lab;
	struct phantom p;
	struct rng r;
	char id[16];
	int rc;

	memset(&p, 0, sizeof p);
	snprintf(id, sizeof id, "ex_%03d", index);
	rng_seed(&r, cl->seed, (uint64_t)index);
	plan_grid(&r, &p);
	plan_shapes(&r, &p);
	rc = vol_setup(&ct, &p, "image", NNP_I16, id);
	if (!rc)
		rc = vol_setup(&t2, &p, "image", NNP_F32, id);
	else
		nnp_vol_init(&t2);
	if (!rc)
		rc = vol_setup(&lab, &p, "label", NNP_U8, id);
	else
		nnp_vol_init(&lab);
	if (!rc) {
		render(&p, &r, ct.data, t2.data, lab.data);
		rc = write_vol(cl->outdir, test ? "imagesTs" : "imagesTr", id, "_0000", &ct, o);
	}
	if (!rc)
		rc = write_vol(cl->outdir, test ? "imagesTs" : "imagesTr", id, "_0001", &t2, o);
	if (!rc)
		rc = write_vol(cl->outdir, test ? "labelsTs" : "labelsTr", id, "", &lab, o);
	nnp_vol_release(&ct);
	nnp_vol_release(&t2);
	nnp_vol_release(&lab);
	return rc;
}

static json_t *dataset_json(const struct cmdline *cl)
{
	char desc[256];
	json_t *root = json_object(), *ch = json_object(), *lab = json_object();
	snprintf(desc, sizeof desc,
		 "Two-channel example (CT-like int16 HU, T2-like float32): body ellipsoid, organ "
		 "(label 1) and 1-2 lesion spheres (label 2); synthetic, made by nnp-make-example "
		 "--seed %llu", (unsigned long long)cl->seed);
	if (!root || !ch || !lab) {
		json_decref(root);
		json_decref(ch);
		json_decref(lab);
		return NULL;
	}
	json_object_set_new(ch, "0", json_string("CT"));
	json_object_set_new(ch, "1", json_string("T2"));
	json_object_set_new(lab, "background", json_integer(0));
	json_object_set_new(lab, "organ", json_integer(1));
	json_object_set_new(lab, "lesion", json_integer(2));
	json_object_set_new(root, "channel_names", ch);
	json_object_set_new(root, "labels", lab);
	json_object_set_new(root, "numTraining", json_integer(cl->ncases));
	json_object_set_new(root, "file_ending", json_string(".nii.gz"));
	json_object_set_new(root, "name", json_string(cl->name));
	json_object_set_new(root, "description", json_string(desc));
	return root;
}

/* dataset.json via a temporary file in DIR renamed into place. */
static int write_dataset_json(const struct cmdline *cl)
{
	char path[PATH_MAX];
	struct nnp_atomic a;
	json_t *root;
	int rc, k = snprintf(path, sizeof path, "%s/dataset.json", cl->outdir);

	if (k < 0 || (size_t)k >= sizeof path)
		return nnp_err(NNP_EUSAGE, "output path too long: '%s'", cl->outdir);
	if (!(root = dataset_json(cl)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	if ((rc = nnp_atomic_open(&a, path, cl->force))) {
		json_decref(root);
		return rc;
	}
	k = json_dumpfd(root, a.fd, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (k == 0)
		rc = nnp_write_all(a.fd, "\n", 1, path);
	else
		rc = nnp_err(NNP_EIO, "cannot write '%s'", path);
	if (rc) {
		nnp_atomic_abort(&a);
		return rc;
	}
	return nnp_atomic_commit(&a);
}

static int make_dirs(const char *dir)
{
	static const char *const sub[] = { "imagesTr", "labelsTr", "imagesTs", "labelsTs" };
	char path[PATH_MAX];
	for (size_t i = 0; i < sizeof sub / sizeof *sub; i++) {
		int rc, k = snprintf(path, sizeof path, "%s/%s", dir, sub[i]);
		if (k < 0 || (size_t)k >= sizeof path)
			return nnp_err(NNP_EUSAGE, "output path too long: '%s'", dir);
		if ((rc = nnp_mkdirs(path)))
			return rc;
	}
	return NNP_OK;
}

/* Refuse early (before writing any image) when the dataset exists. */
static void check_existing(const struct cmdline *cl)
{
	char path[PATH_MAX];
	struct stat st;
	snprintf(path, sizeof path, "%s/dataset.json", cl->outdir);
	if (!cl->force && stat(path, &st) == 0)
		nnp_dief(NNP_EUSAGE, "'%s' exists (use --force to overwrite)", path);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_nifti_opts o = { .gzip_level = -1, .force = 0, .version = 1 };
	int rc, ntotal;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	o.force = cl.force;
	check_existing(&cl);
	if ((rc = make_dirs(cl.outdir)))
		nnp_die(rc);
	ntotal = (int)cl.ncases + NTEST;
	for (int i = 0; i < ntotal; i++)
		if ((rc = make_case(&cl, i, i >= (int)cl.ncases, &o)))
			nnp_die(rc);
	if ((rc = write_dataset_json(&cl)))
		nnp_die(rc);
	nnp_info("wrote %lld training and %d test cases to '%s'", cl.ncases, NTEST, cl.outdir);
	return nnp_close_stdout();
}
