/* classloc.h — nnU-Net's foreground locations for oversampling
 * (DefaultPreprocessor._sample_foreground_locations, nnunet-facts §5.5),
 * bit-exact.
 *
 * For each requested class (a label, or a region = a tuple of labels), in
 * request order, with ONE RandomState(seed) shared by all classes:
 *   the class's voxels are the voxels of each member label in raster (C)
 *   order, member after member in the order the tuple lists them (a label
 *   listed twice counts twice); total = their number; a class with total 0
 *   gets no locations and draws nothing; otherwise
 *   k = max(min(min_num_samples, total), ceil(total * min_percent_coverage))
 *   and the locations are those voxels at the offsets
 *   rs.choice(total, k, replace=False) = permutation(total)[:k], in that order.
 *
 * Memory: one pass counts the members, the permutation of one class at a
 * time is held (4 bytes per voxel of that class, 8 above 2^32 voxels), and a
 * second pass collects only the k sampled voxels per class: no coordinate
 * arrays of whole classes are built.
 *
 * Ownership: struct nnp_classloc and struct nnp_classloc_reqs own their
 * arrays (the *_release functions free them; release on a zeroed struct is
 * a no-op); functions never take ownership of const or json_t pointers.
 */
#ifndef NNP_CLASSLOC_H
#define NNP_CLASSLOC_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "frame.h"

#define NNP_CLASSLOC_SEED 1234
#define NNP_CLASSLOC_MIN_SAMPLES 10000
#define NNP_CLASSLOC_MIN_COVERAGE 0.01

/* One requested class: nnU-Net's int label (is_region 0, nlabels 1) or
 * region tuple (is_region 1; the dict key is then the tuple). */
struct nnp_classloc_req {
	const int64_t *labels;
	size_t nlabels;
	int is_region;
};

/* Requests built from a dataset.json "labels" object (owning storage). */
struct nnp_classloc_reqs {
	struct nnp_classloc_req *req;
	size_t n;
	int64_t *store;
};

struct nnp_classloc_opts {
	uint32_t seed;              /* 1234 */
	uint64_t min_num_samples;   /* 10000 */
	double min_percent_coverage; /* 0.01 */
};

struct nnp_classloc_class {
	int64_t *labels;            /* copy of the request's labels */
	size_t nlabels;
	int is_region;
	uint64_t nvox;              /* voxels of the class (total above) */
	uint64_t n;                 /* locations (k, or 0) */
	int32_t *zyx;               /* n (z, y, x) triples; nnU-Net's [0, z, y, x] */
};

struct nnp_classloc {
	size_t n;
	struct nnp_classloc_class *cls;
};

void nnp_classloc_opts_default(struct nnp_classloc_opts *o);
/* nnU-Net's number of samples for a class of total voxels. */
uint64_t nnp_classloc_num_samples(uint64_t total, const struct nnp_classloc_opts *o);

/* What the preprocessor passes (LabelManager): with regions (a label value
 * that is a list of more than one label) the foreground regions in dict
 * order (scalars stay labels, lists become tuples; pure-background entries
 * and, as nnU-Net's filter_background does, one-label lists like [3] are
 * dropped), otherwise the sorted foreground labels; with an "ignore" label
 * the tuple (-1, *all_labels) last. */
int nnp_classloc_reqs_from_labels(const json_t *labels, struct nnp_classloc_reqs *out);
void nnp_classloc_reqs_release(struct nnp_classloc_reqs *r);

/* seg: one channel, any integer or float dtype (values equal to a label
 * match; the frame scale is ignored, as for label maps).  o may be NULL. */
int nnp_classloc_sample(const struct nnp_vol *seg, const struct nnp_classloc_req *req, size_t nreq,
			const struct nnp_classloc_opts *o, struct nnp_classloc *out);
void nnp_classloc_release(struct nnp_classloc *cl);

/* nnU-Net's class_locations dict as JSON: keys "1" for labels, "(1, 2)" /
 * "(3,)" (Python's str of the tuple) for regions, in request order (a
 * repeated key keeps its first place and takes the last value, like a
 * dict); values lists of [0, z, y, x]. */
int nnp_classloc_to_json(const struct nnp_classloc *cl, json_t **out);
/* The key of one class into buf ("1", "(1, 2)"); truncated to n bytes. */
void nnp_classloc_key(const struct nnp_classloc_class *c, char *buf, size_t n);

/* One case: check that every value of the label map lab is declared in
 * labels (a dataset.json "labels" object; props.labels of lab when NULL) or
 * is -1, sample the class locations and build the class_locations frame
 * (role "class_locations", int32 [1, 1, K, 4], props.classes / counts) into
 * out (initialised by the call). */
int nnp_classloc_case(const struct nnp_vol *lab, const json_t *labels, struct nnp_vol *out);

#endif
