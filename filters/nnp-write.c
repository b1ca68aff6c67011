/* nnp-write — frame stream -> NIfTI files (one per frame or per channel). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atomic.h"
#include "err.h"
#include "frame.h"
#include "nifti.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "write",
	.summary = "write the frames of a stream as NIfTI files",
	.usage = "  nnp write -o DIR/ [options] [STREAM]\n"
		 "  nnp write -o FILE.nii[.gz] [options] [STREAM]",
	.options =
		"  -o, --output OUT       a directory (existing, or ending in '/') or one file name\n"
		"  -f, --force            overwrite existing files\n"
		"  -e, --ext EXT          file ending in directory mode: .nii.gz (default) or .nii\n"
		"      --gzip-level N     0-9 (default 1: fast; 6 is gzip's default)\n"
		"      --nifti-version N  1 or 2 (default: that of the source file, else 1)\n",
	.details =
		"Directory mode names files from the case id and role:\n"
		"  image frames read from one file per channel -> CASE_0000.nii.gz, CASE_0001.nii.gz...\n"
		"  image frames from one 4D file               -> CASE.nii.gz (4D)\n"
		"  label frames                                -> CASE.nii.gz\n"
		"  other roles                                 -> CASE_ROLE.nii.gz\n"
		"File mode takes a stream with exactly one frame (4D when it has several channels);\n"
		"more frames are a usage error (2), an empty stream a data error (1).\n"
		"The carried NIfTI header supplies every field the frame does not change, so\n"
		"'nnp read F | nnp write -o G' reproduces F's voxels and geometry exactly.\n"
		"Each file is written to a temporary name and renamed when complete.\n"
		"Memory: one chunk, except 4D multi-channel outputs (one whole frame).\n",
};

struct cmdline {
	const char *output, *ext, *input;
	int dir_mode;
	struct nnp_nifti_opts nopts;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_GZ = 256, OPT_NV };
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "ext", required_argument, NULL, 'e' },
		{ "gzip-level", required_argument, NULL, OPT_GZ },
		{ "nifti-version", required_argument, NULL, OPT_NV },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	memset(cl, 0, sizeof *cl);
	cl->nopts.gzip_level = -1;
	cl->ext = ".nii.gz";
	while ((c = getopt_long(argc, argv, "o:fe:", opts, NULL)) != -1) {
		switch (c) {
		case 'o': cl->output = optarg; break;
		case 'f': cl->nopts.force = 1; break;
		case 'e': cl->ext = optarg; break;
		case OPT_GZ: cl->nopts.gzip_level = (int)nnp_parse_ll("--gzip-level", optarg, 0, 9); break;
		case OPT_NV: cl->nopts.version = (int)nnp_parse_ll("--nifti-version", optarg, 1, 2); break;
		default: nnp_bad_option(argv);
		}
	}
	if (!cl->output)
		nnp_usage_error("missing -o OUT (a directory or a .nii/.nii.gz file name)");
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	cl->input = optind < argc ? argv[optind] : "-";
	if (strcmp(cl->ext, ".nii") && strcmp(cl->ext, ".nii.gz"))
		nnp_usage_error("--ext must be .nii or .nii.gz, not '%s'", cl->ext);
	cl->dir_mode = cl->output[strlen(cl->output) - 1] == '/' || nnp_is_dir(cl->output);
	if (!cl->dir_mode && !nnp_nifti_name_ok(cl->output))
		nnp_usage_error("output '%s' is neither a directory nor a .nii/.nii.gz file name", cl->output);
}

/* One output file: channels [c0, c0+nc) of the frame. */
struct target {
	char path[4096];
	int64_t c0, nc;
	size_t hdr;
	enum nnp_dtype dtype;   /* stored type: the frame's, or the channel's source type */
	struct nnp_nifti_out *out;
};

/* props.channel_dtypes[c] (set by nnp read when it promoted channels). */
static enum nnp_dtype source_dtype(const struct nnp_frame *f, int64_t c)
{
	json_t *a = f->props ? json_object_get(f->props, "channel_dtypes") : NULL;
	const char *s = json_string_value(json_array_get(a, (size_t)c));
	enum nnp_dtype t = s ? nnp_dtype_parse(s, NULL) : NNP_DT_NONE;
	return t && json_array_size(a) == (size_t)f->shape[0] ? t : f->dtype;
}

static int plan_targets(const struct cmdline *cl, const struct nnp_frame *f, int index, struct target **tp,
			size_t *nt)
{
	char base[512];
	int64_t c = f->shape[0];
	int per_channel = !strcmp(f->role, "image") && (c == 1 || f->n_nifti == (size_t)c);
	size_t n = cl->dir_mode && per_channel ? (size_t)c : 1;
	struct target *t = calloc(n, sizeof *t);
	const char *sep = cl->output[strlen(cl->output) - 1] == '/' ? "" : "/";
	if (!t)
		return nnp_err(NNP_ENOMEM, "out of memory");
	if (f->case_id && *f->case_id)
		snprintf(base, sizeof base, "%s", f->case_id);
	else
		snprintf(base, sizeof base, "frame%03d", index);
	if (f->case_id && (strchr(base, '/') || !strcmp(base, "..") || !strcmp(base, "."))) {
		free(t);
		return nnp_err(NNP_EDATA, "case id '%s' cannot be used as a file name", base);
	}
	for (size_t i = 0; i < n; i++) {
		t[i].c0 = n > 1 || per_channel ? (int64_t)i : 0;
		t[i].nc = n > 1 || per_channel ? 1 : c;
		t[i].dtype = cl->dir_mode && per_channel ? source_dtype(f, t[i].c0) : f->dtype;
		if (t[i].dtype == NNP_F16)
			t[i].dtype = NNP_F32; /* NIfTI has no float16: widen, exactly */
		t[i].hdr = f->n_nifti == (size_t)c ? (size_t)t[i].c0 : 0;
		if (!cl->dir_mode)
			snprintf(t[i].path, sizeof t[i].path, "%s", cl->output);
		else if (per_channel)
			snprintf(t[i].path, sizeof t[i].path, "%s%s%s_%04zu%s", cl->output, sep, base, i, cl->ext);
		else if (!strcmp(f->role, "image") || !strcmp(f->role, "label"))
			snprintf(t[i].path, sizeof t[i].path, "%s%s%s%s", cl->output, sep, base, cl->ext);
		else
			snprintf(t[i].path, sizeof t[i].path, "%s%s%s_%s%s", cl->output, sep, base, f->role, cl->ext);
	}
	if (!cl->dir_mode) {
		t[0].c0 = 0;
		t[0].nc = c;
	}
	*tp = t;
	*nt = n;
	return NNP_OK;
}

static void abort_all(struct target *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		nnp_nifti_abort(t[i].out);
		t[i].out = NULL;
	}
}

static int commit_all(struct target *t, size_t n)
{
	int rc = NNP_OK;
	for (size_t i = 0; i < n; i++) {
		if (!rc)
			rc = nnp_nifti_commit(t[i].out);
		else
			nnp_nifti_abort(t[i].out);
		t[i].out = NULL;
	}
	return rc;
}

/* Single-channel frame into an uncompressed file: splice the payload. */
static int write_zero_copy(struct nnp_reader *r, struct target *t)
{
	int fd = nnp_nifti_out_fd(t->out), rc;
	uint64_t nb;
	struct nnp_progress pr;
	nnp_progress_begin(&pr, t->path, nnp_reader_chunk_bytes(r) ? (long long)(nnp_nifti_expected(t->out) /
					(nnp_reader_chunk_bytes(r))) + 1 : 1);
	while ((rc = nnp_reader_chunk_fd(r, fd, t->path, &nb)) == 1) {
		nnp_progress_add(&pr, 1);
		if ((rc = nnp_nifti_wrote(t->out, nb)))
			return rc;
	}
	nnp_progress_end(&pr);
	return rc;
}

/* Convert a channel slab back to its source type; every value must survive
 * the round trip (else a filter changed values and kept channel_dtypes). */
static int narrow(const struct nnp_frame *f, enum nnp_dtype to, int64_t c, const void *src, size_t nb,
		  void **conv, size_t *outnb)
{
	size_t n = nb / nnp_dtype_size(f->dtype);
	size_t need = n * (nnp_dtype_size(to) + nnp_dtype_size(f->dtype));
	char *p = realloc(*conv, need ? need : 1);
	if (!p)
		return nnp_err(NNP_ENOMEM, "out of memory");
	*conv = p;
	nnp_convert(to, p, f->dtype, src, n);
	nnp_convert(f->dtype, p + n * nnp_dtype_size(to), to, p, n);
	if (memcmp(p + n * nnp_dtype_size(to), src, nb))
		return nnp_err(NNP_EDATA, "case '%s': channel %lld holds values that do not fit its source type %s "
			       "(props.channel_dtypes is stale)", f->case_id ? f->case_id : "", (long long)c,
			       nnp_dtype_name(to));
	*outnb = n * nnp_dtype_size(to);
	return NNP_OK;
}

/* Stream chunk by chunk into single-channel (or per-channel) files. */
static int write_streaming(struct nnp_reader *r, const struct nnp_frame *f, struct target *t, size_t n)
{
	uint64_t plane = (uint64_t)f->shape[2] * (uint64_t)f->shape[3] * nnp_dtype_size(f->dtype);
	size_t cap = (size_t)(nnp_reader_chunk_bytes(r));
	void *buf = nnp_aligned_alloc(cap);
	int64_t z0, zs;
	int rc;
	if (!buf)
		return nnp_err(NNP_ENOMEM, "out of memory for one chunk");
	void *conv = NULL;
	struct nnp_progress pr;
	nnp_progress_begin(&pr, t[0].path, f->shape[1]);
	while ((rc = nnp_reader_chunk(r, buf, cap, &z0, &zs)) == 1) {
		nnp_progress_add(&pr, zs);
		for (size_t i = 0; i < n && rc == 1; i++) {
			const char *src = (char *)buf + (uint64_t)t[i].c0 * (uint64_t)zs * plane;
			size_t nb = (size_t)((uint64_t)zs * plane);
			int w;
			if (t[i].dtype != f->dtype) {
				w = narrow(f, t[i].dtype, t[i].c0, src, nb, &conv, &nb);
				src = conv;
				if (w) {
					rc = w;
					break;
				}
			}
			if ((w = nnp_nifti_write(t[i].out, src, nb)))
				rc = w;
		}
	}
	nnp_progress_end(&pr);
	free(conv);
	free(buf);
	return rc < 0 ? rc : NNP_OK;
}

/* 4D multi-channel file: channel-major on disk, so gather the frame. */
static int write_whole(struct nnp_reader *r, const struct nnp_frame *f, struct target *t)
{
	struct nnp_vol v;
	uint64_t per = nnp_frame_nvox(f) * nnp_dtype_size(f->dtype);
	void *conv = NULL;
	int rc;
	nnp_vol_init(&v);
	if ((rc = nnp_frame_copy(&v.f, f)) || (rc = nnp_vol_alloc(&v))) {
		nnp_vol_release(&v);
		return rc;
	}
	while ((rc = nnp_reader_chunk_into(r, &v)) == 1)
		;
	for (int64_t c = t->c0; rc == 0 && c < t->c0 + t->nc; c++) {
		const void *src = (char *)v.data + (uint64_t)c * per;
		size_t nb = (size_t)per;
		if (t->dtype != f->dtype && (rc = narrow(f, t->dtype, c, src, nb, &conv, &nb)))
			break;
		rc = nnp_nifti_write(t->out, t->dtype != f->dtype ? conv : src, nb);
	}
	free(conv);
	nnp_vol_release(&v);
	return rc;
}

static int write_frame(const struct cmdline *cl, struct nnp_reader *r, struct nnp_frame *f, int index,
		       int single)
{
	struct target *t = NULL;
	size_t n = 0;
	int rc = plan_targets(cl, f, index, &t, &n);
	for (size_t i = 0; !rc && i < n; i++) {
		struct nnp_frame stored = *f;   /* shallow: only the dtype differs */
		stored.dtype = t[i].dtype;
		rc = nnp_nifti_create(t[i].path, &stored, t[i].c0, t[i].nc, t[i].hdr, &cl->nopts, &t[i].out);
	}
	if (!rc)
		rc = n == 1 && t[0].nc > 1 ? write_whole(r, f, t)
		     : n == 1 && f->shape[0] == 1 && t[0].dtype == f->dtype && nnp_nifti_out_fd(t[0].out) >= 0 &&
				       !nnp_reader_swaps(r)
			     ? write_zero_copy(r, t)
			     : write_streaming(r, f, t, n);
	if (!rc && single) {
		/* file mode: the stream must end here */
		struct nnp_frame next;
		int more = nnp_reader_next(r, &next);
		if (more > 0) {
			nnp_frame_release(&next);
			rc = nnp_err(NNP_EUSAGE, "the stream holds more than one frame: give a directory "
				     "(-o DIR/) to write them all");
		} else if (more < 0) {
			rc = more;
		}
	}
	if (rc)
		abort_all(t, n);
	else
		rc = commit_all(t, n);
	free(t);
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_reader *r;
	struct nnp_frame f;
	int rc, index = 0;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if (!strcmp(cl.input, "-"))
		nnp_refuse_tty_stdin();
	if (cl.dir_mode && (rc = nnp_mkdirs(cl.output)))
		nnp_die(rc);
	if (!(r = nnp_reader_open(cl.input)))
		nnp_die(NNP_EDATA);
	while ((rc = nnp_reader_next(r, &f)) == 1) {
		rc = write_frame(&cl, r, &f, index++, !cl.dir_mode);
		nnp_frame_release(&f);
		if (rc)
			break;
	}
	nnp_reader_free(r);
	if (rc < 0)
		nnp_die(rc);
	if (index == 0)
		nnp_dief(NNP_EDATA, "'%s': empty stream (no frames)", cl.input);
	return nnp_close_stdout();
}
