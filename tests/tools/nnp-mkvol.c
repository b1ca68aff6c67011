/* nnp-mkvol — write a deterministic synthetic NIfTI volume (tests, bench). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "frame.h"
#include "nifti.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "mkvol",
	.summary = "write a deterministic synthetic NIfTI volume",
	.usage = "  nnp-mkvol -o FILE --shape X,Y,Z[,C] [--dtype int16] [--spacing SX,SY,SZ] [--seed N]",
	.options = "  -o FILE        output .nii or .nii.gz\n"
		   "  --shape        NIfTI order x,y,z[,channels]\n"
		   "  --dtype        uint8 int8 int16 uint16 int32 uint32 int64 uint64 float32 float64\n"
		   "  --spacing      mm, NIfTI order (default 1,1,1)\n"
		   "  --seed         PRNG seed (default 1)\n"
		   "  --labels N     a label map with N labels (0..N-1) in blocks of 8 voxels\n",
	.details = NULL,
};

static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* CT-like content: smooth blocks of intensity plus small noise, so that
 * compression behaves as on real scans. */
static void fill(struct nnp_vol *v, uint64_t *seed)
{
	const int64_t *sh = v->f.shape;
	size_t es = nnp_dtype_size(v->f.dtype);
	double *row = malloc((size_t)sh[3] * sizeof *row);
	if (!row)
		nnp_dief(NNP_ENOMEM, "out of memory");
	for (int64_t c = 0; c < sh[0]; c++)
		for (int64_t z = 0; z < sh[1]; z++)
			for (int64_t y = 0; y < sh[2]; y++) {
				for (int64_t x = 0; x < sh[3]; x++)
					row[x] = (double)(((x / 16 + y / 16 + z / 4 + c) % 12) * 10) +
						 (double)(next(seed) & 15);
				nnp_convert(v->f.dtype, (char *)v->data + (size_t)(((c * sh[1] + z) * sh[2] + y) * sh[3]) * es,
					    NNP_F64, row, (size_t)sh[3]);
			}
	free(row);
}

/* A blocky label map: each 8x8x8 block holds one of n labels. */
static void fill_labels(struct nnp_vol *v, uint64_t *seed, int64_t n)
{
	const int64_t *sh = v->f.shape;
	size_t es = nnp_dtype_size(v->f.dtype);
	for (int64_t z = 0; z < sh[1]; z++)
		for (int64_t y = 0; y < sh[2]; y++)
			for (int64_t x = 0; x < sh[3]; x++) {
				uint64_t h = (uint64_t)(x / 8) * 73856093u ^ (uint64_t)(y / 8) * 19349663u ^
					     (uint64_t)(z / 8) * 83492791u ^ *seed;
				double lab = (double)(next(&h) % (uint64_t)n);
				nnp_convert(v->f.dtype, (char *)v->data + (size_t)((z * sh[2] + y) * sh[3] + x) * es,
					    NNP_F64, &lab, 1);
			}
}

static void parse_list(const char *opt, const char *s, double *v, int min, int max, int *n)
{
	char *end;
	*n = 0;
	while (*s && *n < max) {
		v[(*n)++] = strtod(s, &end);
		if (end == s)
			nnp_usage_error("bad list for %s", opt);
		s = *end == ',' ? end + 1 : end;
	}
	if (*n < min || *s)
		nnp_usage_error("%s needs %d to %d comma-separated numbers", opt, min, max);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "shape", required_argument, NULL, 's' }, { "dtype", required_argument, NULL, 't' },
		{ "spacing", required_argument, NULL, 'p' }, { "seed", required_argument, NULL, 'r' },
		{ "output", required_argument, NULL, 'o' }, { "labels", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 }
	};
	struct nnp_nifti_opts no = { -1, 1, 0 };
	struct nnp_vol v;
	double shape[4] = { 0, 0, 0, 1 }, sp[3] = { 1, 1, 1 };
	const char *out = NULL;
	uint64_t seed = 1, nb;
	(void)nb;
	int c, ns = 0, np = 3, rc;
	long long nlabels = 0;
	nnp_proginit(&argc, argv, &info);
	nnp_vol_init(&v);
	v.f.dtype = NNP_I16;
	while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (c) {
		case 's': parse_list("--shape", optarg, shape, 3, 4, &ns); break;
		case 'p': parse_list("--spacing", optarg, sp, 3, 3, &np); break;
		case 't': if (!(v.f.dtype = nnp_dtype_parse(optarg, NULL))) nnp_usage_error("bad --dtype"); break;
		case 'r': seed = (uint64_t)nnp_parse_ll("--seed", optarg, 0, 1LL << 62); break;
		case 'o': out = optarg; break;
		case 'l': nlabels = nnp_parse_ll("--labels", optarg, 1, 1 << 20); break;
		default: nnp_bad_option(argv);
		}
	}
	if (!out || !ns)
		nnp_usage_error("need -o FILE and --shape");
	v.f.shape[0] = (int64_t)shape[3];
	v.f.shape[1] = (int64_t)shape[2];
	v.f.shape[2] = (int64_t)shape[1];
	v.f.shape[3] = (int64_t)shape[0];
	v.f.spacing[0] = sp[2];
	v.f.spacing[1] = sp[1];
	v.f.spacing[2] = sp[0];
	nnp_frame_default_affine(&v.f);
	if ((rc = nnp_vol_alloc(&v)))
		nnp_die(rc);
	nb = nnp_frame_nbytes(&v.f);
	if (nlabels)
		fill_labels(&v, &seed, nlabels);
	else
		fill(&v, &seed);
	if ((rc = nnp_nifti_write_volume(out, &v, 0, v.f.shape[0], 0, &no)))
		nnp_die(rc);
	nnp_vol_release(&v);
	return nnp_close_stdout();
}
