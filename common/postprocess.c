/* postprocess.c — keep the largest connected component(s) of a label set
 * (postprocess.h): union-find over the mask with full connectivity. */
#include "postprocess.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

/* Root of x with path halving. */
static int32_t uf_find(int32_t *p, int32_t x)
{
	while (p[x] != x) {
		p[x] = p[p[x]];
		x = p[x];
	}
	return x;
}

static void uf_union(int32_t *p, int32_t a, int32_t b)
{
	a = uf_find(p, a);
	b = uf_find(p, b);
	if (a == b)
		return;
	if (a < b)
		p[b] = a;
	else
		p[a] = b;
}

/* The already visited neighbours of (z, y, x) in raster order: the 13 of
 * the 26 that come before it. */
static void link_prev(const uint8_t *mask, int32_t *lab, int32_t *parent, const int64_t n[3], int64_t z, int64_t y,
		      int64_t x)
{
	int64_t i = (z * n[1] + y) * n[2] + x;
	for (int dz = -1; dz <= 0; dz++)
		for (int dy = -1; dy <= 1; dy++)
			for (int dx = -1; dx <= 1; dx++) {
				int64_t zz = z + dz, yy = y + dy, xx = x + dx, j;
				if (dz == 0 && (dy > 0 || (dy == 0 && dx >= 0)))
					continue;
				if (zz < 0 || yy < 0 || yy >= n[1] || xx < 0 || xx >= n[2])
					continue;
				j = (zz * n[1] + yy) * n[2] + xx;
				if (mask[j])
					uf_union(parent, lab[i], lab[j]);
			}
}

/* Component labels of mask: lab[i] = root id (>= 0) or -1 outside; returns
 * the number of provisional labels, or <0. */
static int64_t components(const uint8_t *mask, const int64_t n[3], int32_t *lab, int32_t **parent_out)
{
	int64_t nv = n[0] * n[1] * n[2], next = 0, cap = 1024;
	int32_t *parent = malloc((size_t)cap * sizeof *parent);
	if (!parent)
		return nnp_err(NNP_ENOMEM, "postprocess: out of memory");
	for (int64_t z = 0; z < n[0]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[2]; x++) {
				int64_t i = (z * n[1] + y) * n[2] + x;
				if (!mask[i]) {
					lab[i] = -1;
					continue;
				}
				if (next == cap) {
					int32_t *q;
					if (cap > INT32_MAX / 2 || !(q = realloc(parent, (size_t)(cap *= 2) * sizeof *q))) {
						free(parent);
						return nnp_err(NNP_ENOMEM, "postprocess: out of memory");
					}
					parent = q;
				}
				parent[next] = (int32_t)next;
				lab[i] = (int32_t)next++;
				link_prev(mask, lab, parent, n, z, y, x);
			}
	for (int64_t i = 0; i < nv; i++)
		if (lab[i] >= 0)
			lab[i] = uf_find(parent, lab[i]);
	*parent_out = parent;
	return next;
}

int nnp_pp_largest_components(const uint8_t *mask, const int64_t n[3], uint8_t *keep)
{
	int64_t nv = n[0] * n[1] * n[2], ncomp, best = 0;
	int32_t *lab = malloc((size_t)nv * sizeof *lab), *parent = NULL;
	int64_t *size;
	if (!lab)
		return nnp_err(NNP_ENOMEM, "postprocess: out of memory (%lld voxels)", (long long)nv);
	if ((ncomp = components(mask, n, lab, &parent)) < 0) {
		free(lab);
		return (int)ncomp;
	}
	if (!(size = calloc((size_t)ncomp + 1, sizeof *size))) {
		free(lab);
		free(parent);
		return nnp_err(NNP_ENOMEM, "postprocess: out of memory");
	}
	for (int64_t i = 0; i < nv; i++)
		if (lab[i] >= 0 && ++size[lab[i]] > best)
			best = size[lab[i]];
	for (int64_t i = 0; i < nv; i++)
		keep[i] = lab[i] >= 0 && size[lab[i]] == best;
	free(size);
	free(parent);
	free(lab);
	return NNP_OK;
}

static int in_set(int v, const int *labels, int nlabels)
{
	for (int k = 0; k < nlabels; k++)
		if (labels[k] == v)
			return 1;
	return 0;
}

#define KEEP_LARGEST(T)                                                                                      \
	int64_t nv = n[0] * n[1] * n[2], rem = 0;                                                            \
	uint8_t *mask = calloc((size_t)nv * 2 + 1, 1), *keep;                                                \
	int rc;                                                                                              \
	if (!mask)                                                                                           \
		return nnp_err(NNP_ENOMEM, "postprocess: out of memory (%lld voxels)", (long long)nv);        \
	keep = mask + nv;                                                                                    \
	for (int64_t i = 0; i < nv; i++)                                                                     \
		mask[i] = (uint8_t)in_set((int)seg[i], labels, nlabels);                                     \
	if ((rc = nnp_pp_largest_components(mask, n, keep))) {                                               \
		free(mask);                                                                                  \
		return rc;                                                                                   \
	}                                                                                                    \
	for (int64_t i = 0; i < nv; i++)                                                                     \
		if (mask[i] && !keep[i]) {                                                                   \
			seg[i] = (T)0;                                                                       \
			rem++;                                                                               \
		}                                                                                            \
	free(mask);                                                                                          \
	if (removed)                                                                                         \
		*removed = rem;                                                                              \
	return NNP_OK;

int nnp_pp_keep_largest_i16(int16_t *seg, const int64_t n[3], const int *labels, int nlabels, int64_t *removed)
{
	KEEP_LARGEST(int16_t)
}

int nnp_pp_keep_largest_u8(uint8_t *seg, const int64_t n[3], const int *labels, int nlabels, int64_t *removed)
{
	KEEP_LARGEST(uint8_t)
}
