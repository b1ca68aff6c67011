/* nnp-doctor — check a new installation: nnU-Net folders, libraries, GNU
 * parallel, NVIDIA driver, cuDNN, memory, disk and cores.  One line per
 * check, and for each warning or failure the command that fixes it.
 */
#include <dlfcn.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <msgpack.h>
#include <nifti2_io.h>
#include <zlib.h>
#include "err.h"
#include "gpu.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "doctor",
	.summary = "check that this machine is ready for nnpipe (folders, libraries, GPU)",
	.usage = "  nnp doctor [--json] [--gpu-selftest]",
	.options =
		"      --json          print one JSON object instead of lines\n"
		"      --gpu-selftest  also run a small kernel on GPU 0 and check its result\n",
	.details =
		"Each check prints 'ok', 'warn' or 'FAIL', its name and what was found;\n"
		"warnings and failures are followed by the command that fixes them.\n"
		"Checked: nnUNet_raw, nnUNet_preprocessed, nnUNet_results (set, existing\n"
		"folders, writable, free disk), the zlib, msgpack, jansson, nifticlib and\n"
		"oneDNN libraries, GNU parallel, the NVIDIA driver and GPUs, cuDNN, whether\n"
		"this build has CUDA, available memory and CPU cores.\n"
		"The exit status is 1 if any check FAILs; warnings alone give 0.\n",
};

enum level { LV_OK, LV_WARN, LV_FAIL };

#define CHECKS_MAX 64
#define DISK_WARN_GIB 10.0
#define MEM_WARN_GIB 4.0
#define GIB (1024.0 * 1024.0 * 1024.0)

struct check {
	enum level lv;
	char name[48];
	char detail[512];
	char fix[2048];    /* "" for ok */
};

struct report {
	struct check c[CHECKS_MAX];
	size_t n;
};

struct gpuinfo {
	int driver;        /* libcuda loaded and cuInit succeeded */
	int ndev;
};

struct cmdline {
	int json, selftest;
};

static const char *const level_names[] = { "ok", "warn", "FAIL" };

static void add(struct report *r, enum level lv, const char *name, const char *fix,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void add(struct report *r, enum level lv, const char *name, const char *fix,
		const char *fmt, ...)
{
	struct check *c;
	va_list ap;
	if (r->n >= CHECKS_MAX)
		return;
	c = &r->c[r->n++];
	c->lv = lv;
	snprintf(c->name, sizeof c->name, "%s", name);
	snprintf(c->fix, sizeof c->fix, "%s", fix && lv != LV_OK ? fix : "");
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof c->detail, fmt, ap);
	va_end(ap);
}

/* s into buf, quoted for a POSIX shell when it needs quoting. */
static void shq(const char *s, char *buf, size_t n)
{
	if (nnp_shell_quote(buf, n, s, 1)) {
		nnp_err_clear();
		snprintf(buf, n, "'...'");
	}
}

/* ---- nnU-Net folders ---- */

static void env_unset(struct report *r, const char *var)
{
	const char *home = getenv("HOME");
	char fix[2048], q[512], path[512];
	snprintf(path, sizeof path, "%s/%s", home && *home == '/' ? home : "/data", var);
	shq(path, q, sizeof q);
	snprintf(fix, sizeof fix, "mkdir -p %s && export %s=%s   # and add the export to ~/.bashrc",
		 q, var, q);
	add(r, LV_FAIL, var, fix, "not set");
}

static void check_disk(struct report *r, const char *var, const char *dir)
{
	struct statvfs sv;
	char name[48], fix[2048], q[512];
	double gib;

	snprintf(name, sizeof name, "disk %s", var);
	shq(dir, q, sizeof q);
	if (statvfs(dir, &sv) != 0) {
		snprintf(fix, sizeof fix, "df -h %s", q);
		add(r, LV_WARN, name, fix, "cannot query free space of '%s'", dir);
		return;
	}
	gib = (double)sv.f_bavail * (double)sv.f_frsize / GIB;
	snprintf(fix, sizeof fix, "df -h %s   # free space, or export %s=<folder on a larger disk>",
		 q, var);
	add(r, gib < DISK_WARN_GIB ? LV_WARN : LV_OK, name, fix, "%.1f GiB free on '%s'%s", gib,
	    dir, gib < DISK_WARN_GIB ? " (less than 10 GiB)" : "");
}

static void check_env(struct report *r, const char *var, int need_write)
{
	const char *dir = getenv(var);
	struct stat st;
	char fix[2048], q[512];

	if (!dir || !*dir) {
		env_unset(r, var);
		return;
	}
	shq(dir, q, sizeof q);
	if (stat(dir, &st) != 0) {
		snprintf(fix, sizeof fix, "mkdir -p %s", q);
		add(r, LV_FAIL, var, fix, "'%s' does not exist", dir);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(fix, sizeof fix, "mv %s %s.bak && mkdir -p %s", q, q, q);
		add(r, LV_FAIL, var, fix, "'%s' is not a folder", dir);
		return;
	}
	snprintf(fix, sizeof fix, "sudo chown -R \"$USER\" %s", q);
	if (access(dir, W_OK) != 0)
		add(r, need_write ? LV_FAIL : LV_WARN, var, fix, "'%s' is not writable%s", dir,
		    need_write ? "" : " (enough for reading datasets)");
	else
		add(r, LV_OK, var, NULL, "'%s' (writable)", dir);
	check_disk(r, var, dir);
}

/* ---- libraries ---- */

/* nifticlib only prints its version (to stdout): capture that line. */
static void nifti_version(char *buf, size_t n)
{
	FILE *t = tmpfile();
	char line[256] = "", *v;
	int saved;

	snprintf(buf, n, "unknown version");
	if (!t)
		return;
	fflush(stdout);
	if ((saved = dup(STDOUT_FILENO)) >= 0) {
		dup2(fileno(t), STDOUT_FILENO);
		nifti_disp_lib_version();
		fflush(stdout);
		dup2(saved, STDOUT_FILENO);
		close(saved);
		rewind(t);
		if (!fgets(line, sizeof line, t))
			line[0] = '\0';
	}
	fclose(t);
	line[strcspn(line, "\n")] = '\0';
	if ((v = strstr(line, "version ")))
		snprintf(buf, n, "%.*s", (int)strcspn(v + 8, " "), v + 8);
	else if (*line)
		snprintf(buf, n, "%s", line);
}

static void check_libs(struct report *r)
{
	char nv[300];
	const char *z = zlibVersion();
	if (strcmp(z, ZLIB_VERSION))
		add(r, LV_OK, "zlib", NULL, "%s (built with %s)", z, ZLIB_VERSION);
	else
		add(r, LV_OK, "zlib", NULL, "%s", z);
	add(r, LV_OK, "msgpack", NULL, "%s", msgpack_version());
	add(r, LV_OK, "jansson", NULL, "%s", jansson_version_str());
	nifti_version(nv, sizeof nv);
	add(r, LV_OK, "nifticlib", NULL, "%s", nv);
}

/* The first three fields of dnnl_version_t (oneapi/dnnl/dnnl_types.h). */
struct dnnl_ver {
	int major, minor, patch;
	const char *hash;
};

static void check_dnnl(struct report *r)
{
	const char *so = "libdnnl.so.3";
	void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	const struct dnnl_ver *(*ver)(void);
	const struct dnnl_ver *v;

	if (!h)
		h = dlopen(so = "libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		add(r, LV_WARN, "oneDNN", "sudo apt-get install libdnnl-dev",
		    "not found (libdnnl.so.3 or .2): CPU convolutions will be slow");
		return;
	}
	ver = (const struct dnnl_ver *(*)(void))dlsym(h, "dnnl_version");
	if (ver && (v = ver()))
		add(r, LV_OK, "oneDNN", NULL, "%d.%d.%d (%s)", v->major, v->minor, v->patch, so);
	else
		add(r, LV_WARN, "oneDNN", "sudo apt-get install libdnnl-dev",
		    "%s has no dnnl_version()", so);
	dlclose(h);
}

static void check_parallel(struct report *r)
{
	const char *fix = "sudo apt-get install parallel";
	FILE *p = popen("parallel --version </dev/null 2>/dev/null", "r");
	char line[256] = "", rest[256];
	int got;

	if (!p) {
		add(r, LV_WARN, "parallel", fix, "cannot run 'parallel --version'");
		return;
	}
	got = fgets(line, sizeof line, p) != NULL;
	while (got && fgets(rest, sizeof rest, p))
		;
	pclose(p);
	line[strcspn(line, "\n")] = '\0';
	if (!got)
		add(r, LV_WARN, "parallel", fix, "GNU parallel is not on PATH "
		    "(pipelines use it to process cases side by side)");
	else if (!strstr(line, "GNU parallel"))
		add(r, LV_WARN, "parallel", fix, "'parallel' on PATH is not GNU parallel "
		    "(moreutils?): '%s'", line);
	else
		add(r, LV_OK, "parallel", NULL, "%s", line);
}

/* ---- NVIDIA driver, GPUs, cuDNN ---- */

struct cuapi {
	int (*init)(unsigned);
	int (*driver_version)(int *);
	int (*count)(int *);
	int (*get)(int *, int);
	int (*name)(char *, int, int);
	int (*mem)(size_t *, int);
};

static int cu_load(void *h, struct cuapi *cu)
{
	cu->init = (int (*)(unsigned))dlsym(h, "cuInit");
	cu->driver_version = (int (*)(int *))dlsym(h, "cuDriverGetVersion");
	cu->count = (int (*)(int *))dlsym(h, "cuDeviceGetCount");
	cu->get = (int (*)(int *, int))dlsym(h, "cuDeviceGet");
	cu->name = (int (*)(char *, int, int))dlsym(h, "cuDeviceGetName");
	cu->mem = (int (*)(size_t *, int))dlsym(h, "cuDeviceTotalMem_v2");
	return cu->init && cu->driver_version && cu->count && cu->get && cu->name && cu->mem;
}

static const char no_driver_fix[] =
	"sudo apt-get install nvidia-driver   # or run GPU programs with --device cpu";

static void report_devices(struct report *r, const struct cuapi *cu, int n)
{
	for (int i = 0; i < n && i < 16; i++) {
		char nm[256] = "?", label[32];
		size_t mem = 0;
		int dev = 0;
		snprintf(label, sizeof label, "gpu %d", i);
		if (cu->get(&dev, i) || cu->name(nm, (int)sizeof nm, dev) || cu->mem(&mem, dev)) {
			add(r, LV_WARN, label, "nvidia-smi", "cannot query the device");
			continue;
		}
		add(r, LV_OK, label, NULL, "%s, %.1f GiB", nm, (double)mem / GIB);
	}
}

static void check_cuda(struct report *r, struct gpuinfo *gi)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	struct cuapi cu;
	int v = 0, n = 0, e;

	if (!h) {
		add(r, LV_WARN, "cuda driver", no_driver_fix,
		    "no NVIDIA driver found: GPU programs will use --device cpu");
		return;
	}
	if (!cu_load(h, &cu))
		add(r, LV_WARN, "cuda driver", no_driver_fix, "libcuda.so.1 lacks the driver API");
	else if ((e = cu.init(0)) != 0)
		add(r, LV_WARN, "cuda driver", "nvidia-smi   # is the GPU visible and the driver "
		    "loaded?", "cuInit failed (CUresult %d): GPU programs will use --device cpu", e);
	else if (cu.driver_version(&v) || cu.count(&n))
		add(r, LV_WARN, "cuda driver", "nvidia-smi", "cannot query the driver");
	else {
		gi->driver = 1;
		gi->ndev = n;
		add(r, n ? LV_OK : LV_WARN, "cuda driver", "nvidia-smi   # no GPU is visible",
		    "CUDA %d.%d, %d GPU%s", v / 1000, v % 1000 / 10, n, n == 1 ? "" : "s");
		report_devices(r, &cu, n);
	}
	dlclose(h);
}

static void *open_cudnn(void)
{
	static const char *const names[] = {
		"libcudnn.so.9", "/usr/local/cuda/lib64/libcudnn.so.9",
		"/usr/lib/x86_64-linux-gnu/libcudnn.so.9",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
		if (h)
			return h;
	}
	return NULL;
}

static void check_cudnn(struct report *r, const struct gpuinfo *gi)
{
	const char *fix = "sudo apt-get install libcudnn9-cuda-12";
	void *h = open_cudnn();
	size_t (*ver)(void);
	size_t v;

	if (!h) {
		add(r, gi->ndev ? LV_WARN : LV_OK, "cudnn", fix, "libcudnn.so.9 not found%s",
		    gi->ndev ? ": GPU programs need it" : " (not needed without a GPU)");
		return;
	}
	ver = (size_t (*)(void))dlsym(h, "cudnnGetVersion");
	if (!ver) {
		add(r, LV_WARN, "cudnn", fix, "libcudnn.so.9 has no cudnnGetVersion()");
	} else if ((v = ver()) >= 90000) {
		add(r, LV_OK, "cudnn", NULL, "%zu.%zu.%zu", v / 10000, v % 10000 / 100, v % 100);
	} else {
		add(r, LV_OK, "cudnn", NULL, "%zu.%zu.%zu", v / 1000, v % 1000 / 100, v % 100);
	}
	dlclose(h);
}

/* ---- this build ---- */

#ifdef NNP_HAVE_CUDA
static void check_build(struct report *r, struct gpuinfo *gi)
{
	int n = nnp_cuda_device_count();
	if (n < 0) {
		add(r, LV_WARN, "build", no_driver_fix, "CUDA compiled in, but %s", nnp_err_msg());
		gi->ndev = 0;
		return;
	}
	add(r, LV_OK, "build", NULL, "CUDA compiled in, the runtime sees %d GPU%s", n,
	    n == 1 ? "" : "s");
	gi->ndev = n;
}
#else
static void check_build(struct report *r, struct gpuinfo *gi)
{
	if (gi->ndev > 0)
		add(r, LV_WARN, "build", "make clean && make GPU=1   # needs nvcc and cuDNN",
		    "CPU only, but this machine has %d GPU%s", gi->ndev, gi->ndev == 1 ? "" : "s");
	else
		add(r, LV_OK, "build", NULL, "CPU only (built without CUDA)");
}
#endif

#ifndef NNP_HAVE_CUDA
static void check_selftest(struct report *r, const struct gpuinfo *gi)
{
	add(r, LV_WARN, "gpu self-test", "make clean && make GPU=1   # needs nvcc and cuDNN",
	    "skipped: %s", NNP_NO_CUDA_MSG);
}
#else
static void check_selftest(struct report *r, const struct gpuinfo *gi)
{
	if (gi->ndev <= 0)
		add(r, LV_WARN, "gpu self-test", no_driver_fix, "skipped: no GPU");
	else if (nnp_cuda_selftest(0))
		add(r, LV_FAIL, "gpu self-test", "nvidia-smi   # then rebuild: make clean && make",
		    "%s", nnp_err_msg());
	else
		add(r, LV_OK, "gpu self-test", NULL, "y = a*x + b on 1M floats on GPU 0: exact");
}
#endif

/* ---- memory and cores ---- */

static int meminfo(const char *key, double *gib)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	size_t kl = strlen(key);
	int found = 0;
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof line, f)) {
		unsigned long long kb;
		if (!strncmp(line, key, kl) && line[kl] == ':' &&
		    sscanf(line + kl + 1, "%llu", &kb) == 1) {
			*gib = (double)kb * 1024.0 / GIB;
			found = 1;
		}
	}
	fclose(f);
	return found;
}

static void check_memory(struct report *r)
{
	const char *fix = "export NNP_THREADS=2   # and run fewer jobs at once (parallel -j 2)";
	double avail, total;
	if (!meminfo("MemAvailable", &avail) || !meminfo("MemTotal", &total)) {
		add(r, LV_WARN, "memory", "cat /proc/meminfo", "cannot read MemAvailable from "
		    "/proc/meminfo");
		return;
	}
	add(r, avail < MEM_WARN_GIB ? LV_WARN : LV_OK, "memory", fix,
	    "%.1f GiB available of %.1f GiB%s", avail, total,
	    avail < MEM_WARN_GIB ? " (less than 4 GiB)" : "");
}

static void check_cores(struct report *r)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	const char *t = getenv("NNP_THREADS");
	if (n < 1) {
		add(r, LV_WARN, "cores", "nproc", "cannot count the online CPU cores");
		return;
	}
	add(r, LV_OK, "cores", NULL, "%ld online%s%s%s", n, t && *t ? ", NNP_THREADS=" : "",
	    t && *t ? t : "", n == 1 ? " (programs will be slow)" : "");
}

/* ---- output ---- */

static void count_levels(const struct report *r, int *warn, int *fail)
{
	*warn = *fail = 0;
	for (size_t i = 0; i < r->n; i++) {
		*warn += r->c[i].lv == LV_WARN;
		*fail += r->c[i].lv == LV_FAIL;
	}
}

static void print_text(const struct report *r)
{
	int warn, fail;
	for (size_t i = 0; i < r->n; i++) {
		const struct check *c = &r->c[i];
		printf("%-4s  %s: %s\n", level_names[c->lv], c->name, c->detail);
		if (*c->fix)
			printf("      fix: %s\n", c->fix);
	}
	count_levels(r, &warn, &fail);
	printf("%d failure%s, %d warning%s\n", fail, fail == 1 ? "" : "s", warn,
	       warn == 1 ? "" : "s");
}

static json_t *check_json(const struct check *c)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "check", json_string(c->name));
	json_object_set_new(o, "status", json_string(level_names[c->lv]));
	json_object_set_new(o, "detail", json_string(c->detail));
	json_object_set_new(o, "fix", *c->fix ? json_string(c->fix) : json_null());
	return o;
}

static int print_json(const struct report *r)
{
	json_t *o = json_object(), *a = json_array();
	int warn, fail, rc;

	count_levels(r, &warn, &fail);
	if (!o || !a) {
		json_decref(o);
		json_decref(a);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	json_object_set_new(o, "program", json_string("nnp-doctor"));
	json_object_set_new(o, "version", json_string(NNP_VERSION));
	json_object_set_new(o, "ok", json_boolean(fail == 0));
	json_object_set_new(o, "failures", json_integer(fail));
	json_object_set_new(o, "warnings", json_integer(warn));
	for (size_t i = 0; i < r->n; i++)
		json_array_append_new(a, check_json(&r->c[i]));
	json_object_set_new(o, "checks", a);
	rc = json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(o);
	if (rc || putchar('\n') == EOF)
		return nnp_err(NNP_EIO, "cannot write standard output");
	return NNP_OK;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'J' },
		{ "gpu-selftest", no_argument, NULL, 'G' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'J': cl->json = 1; break;
		case 'G': cl->selftest = 1; break;
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
}

static void run_checks(struct report *r, const struct cmdline *cl)
{
	struct gpuinfo gi = { 0, 0 };
	check_env(r, "nnUNet_raw", 0);
	check_env(r, "nnUNet_preprocessed", 1);
	check_env(r, "nnUNet_results", 1);
	check_libs(r);
	check_dnnl(r);
	check_parallel(r);
	check_cuda(r, &gi);
	check_cudnn(r, &gi);
	check_build(r, &gi);
	if (cl->selftest)
		check_selftest(r, &gi);
	check_memory(r);
	check_cores(r);
}

int main(int argc, char **argv)
{
	static struct report rep;
	struct cmdline cl;
	int warn, fail, rc, status;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	run_checks(&rep, &cl);
	if (cl.json) {
		if ((rc = print_json(&rep)))
			nnp_die(rc);
	} else {
		print_text(&rep);
	}
	count_levels(&rep, &warn, &fail);
	status = nnp_close_stdout();
	return status ? status : fail ? NNP_EXIT_DATA : NNP_EXIT_OK;
}
