/* net.c — architecture parsing and the operator graph of nnU-Net's UNets. */
#include "net.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define PLAIN_CLS "dynamic_network_architectures.architectures.unet.PlainConvUNet"
#define RESENC_CLS "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"

static const int ONE[3] = { 1, 1, 1 };

static int has_stride(const int *st)
{
	return st[0] != 1 || st[1] != 1 || st[2] != 1;
}

/* ---- architecture entry ---- */

static int get_int_list(const json_t *kw, const char *key, int n, int *out)
{
	const json_t *v = json_object_get(kw, key);
	if (!json_is_array(v) || (int)json_array_size(v) != n)
		return nnp_err(NNP_EDATA, "architecture: '%s' must be a list of %d integers", key, n);
	for (int i = 0; i < n; i++) {
		const json_t *x = json_array_get(v, (size_t)i);
		if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 65536)
			return nnp_err(NNP_EDATA, "architecture: '%s'[%d] must be a positive integer", key, i);
		out[i] = (int)json_integer_value(x);
	}
	return NNP_OK;
}

static int get_matrix(const json_t *kw, const char *key, int n, int ndim, int (*out)[3])
{
	const json_t *v = json_object_get(kw, key);
	if (!json_is_array(v) || (int)json_array_size(v) != n)
		return nnp_err(NNP_EDATA, "architecture: '%s' must have one entry per stage (%d)", key, n);
	for (int i = 0; i < n; i++) {
		const json_t *row = json_array_get(v, (size_t)i);
		if (json_is_integer(row)) { /* a scalar applies to every axis */
			for (int d = 0; d < ndim; d++)
				out[i][d] = (int)json_integer_value(row);
		} else if (json_is_array(row) && (int)json_array_size(row) == ndim) {
			for (int d = 0; d < ndim; d++)
				out[i][d] = (int)json_integer_value(json_array_get(row, (size_t)d));
		} else {
			return nnp_err(NNP_EDATA, "architecture: '%s'[%d] must list %d integers", key, i, ndim);
		}
		for (int d = 0; d < ndim; d++)
			if (out[i][d] < 1 || out[i][d] > 64)
				return nnp_err(NNP_EDATA, "architecture: '%s'[%d] has an invalid value %d", key, i,
					       out[i][d]);
		for (int d = ndim; d < 3; d++)
			out[i][d] = 1;
	}
	return NNP_OK;
}

static int op_name_ndim(const json_t *kw, const char *key, const char *prefix)
{
	const char *s = json_string_value(json_object_get(kw, key));
	size_t n = strlen(prefix);
	if (!s || strncmp(s, prefix, n) != 0 || (strcmp(s + n, "2d") && strcmp(s + n, "3d")))
		return 0;
	return s[n] - '0';
}

static int parse_ops(const json_t *kw, struct nnp_net_arch *a)
{
	const json_t *v;
	int nd = op_name_ndim(kw, "conv_op", "torch.nn.modules.conv.Conv");
	if (!nd)
		return nnp_err(NNP_EDATA, "architecture: unsupported conv_op (want torch.nn.modules.conv.Conv2d/3d)");
	a->ndim = nd;
	if (op_name_ndim(kw, "norm_op", "torch.nn.modules.instancenorm.InstanceNorm") != nd)
		return nnp_err(NNP_EDATA, "architecture: unsupported norm_op (want InstanceNorm%dd)", nd);
	v = json_object_get(kw, "dropout_op");
	if (v && !json_is_null(v))
		return nnp_err(NNP_EDATA, "architecture: dropout_op is not supported (inference networks have none)");
	v = json_object_get(kw, "nonlin");
	if (!json_is_string(v) || strcmp(json_string_value(v), "torch.nn.LeakyReLU") != 0)
		return nnp_err(NNP_EDATA, "architecture: unsupported nonlin (want torch.nn.LeakyReLU)");
	a->slope = 0.01;
	v = json_object_get(json_object_get(kw, "nonlin_kwargs"), "negative_slope");
	if (json_is_number(v))
		a->slope = json_number_value(v);
	a->norm_eps = 1e-5;
	a->norm_affine = 1;
	v = json_object_get(kw, "norm_op_kwargs");
	if (json_is_number(json_object_get(v, "eps")))
		a->norm_eps = json_number_value(json_object_get(v, "eps"));
	if (json_is_boolean(json_object_get(v, "affine")))
		a->norm_affine = json_is_true(json_object_get(v, "affine"));
	v = json_object_get(kw, "conv_bias");
	a->conv_bias = v ? json_is_true(v) : 0;
	return NNP_OK;
}

int nnp_net_arch_parse(const json_t *architecture, int in_channels, int num_classes, struct nnp_net_arch *a)
{
	const json_t *kw = json_object_get(architecture, "arch_kwargs");
	const char *cls = json_string_value(json_object_get(architecture, "network_class_name"));
	int rc;

	memset(a, 0, sizeof *a);
	if (!cls || !json_is_object(kw))
		return nnp_err(NNP_EDATA, "architecture: missing network_class_name or arch_kwargs");
	if (!strcmp(cls, PLAIN_CLS))
		a->cls = NNP_NET_PLAIN;
	else if (!strcmp(cls, RESENC_CLS))
		a->cls = NNP_NET_RESENC;
	else
		return nnp_err(NNP_EDATA, "architecture: unsupported network_class_name '%s'", cls);
	if (in_channels < 1 || num_classes < 1)
		return nnp_err(NNP_EDATA, "architecture: need >= 1 input channel and >= 1 class");
	a->in_channels = in_channels;
	a->num_classes = num_classes;
	if ((rc = parse_ops(kw, a)))
		return rc;
	if (!json_is_integer(json_object_get(kw, "n_stages")))
		return nnp_err(NNP_EDATA, "architecture: missing n_stages");
	a->n_stages = (int)json_integer_value(json_object_get(kw, "n_stages"));
	if (a->n_stages < 1 || a->n_stages > NNP_NET_MAX_STAGES)
		return nnp_err(NNP_EDATA, "architecture: n_stages %d out of range 1..%d", a->n_stages,
			       NNP_NET_MAX_STAGES);
	if ((rc = get_int_list(kw, "features_per_stage", a->n_stages, a->features)) ||
	    (rc = get_matrix(kw, "kernel_sizes", a->n_stages, a->ndim, a->kernel)) ||
	    (rc = get_matrix(kw, "strides", a->n_stages, a->ndim, a->stride)) ||
	    (rc = get_int_list(kw, a->cls == NNP_NET_PLAIN ? "n_conv_per_stage" : "n_blocks_per_stage",
			       a->n_stages, a->n_conv)) ||
	    (a->n_stages > 1 && (rc = get_int_list(kw, "n_conv_per_stage_decoder", a->n_stages - 1, a->n_conv_dec))))
		return rc;
	if (has_stride(a->stride[0]))
		return nnp_err(NNP_EDATA, "architecture: the first stage must have stride 1");
	for (int s = 0; s < a->n_stages; s++) {
		for (int d = 0; d < a->ndim; d++)
			if (a->kernel[s][d] % 2 == 0)
				return nnp_err(NNP_EDATA, "architecture: even kernel size %d at stage %d",
					       a->kernel[s][d], s);
		if (a->n_conv[s] > NNP_NET_MAX_CONVS || (s < a->n_stages - 1 && a->n_conv_dec[s] > NNP_NET_MAX_CONVS))
			return nnp_err(NNP_EDATA, "architecture: more than %d convs in stage %d",
				       NNP_NET_MAX_CONVS, s);
	}
	return NNP_OK;
}

/* ---- graph ---- */

struct gb {
	struct nnp_net_graph *g;
	int cap_ops, cap_t;
};

static int new_tensor(struct gb *b, int channels, int level)
{
	struct nnp_net_graph *g = b->g;
	if (g->ntensors == b->cap_t) {
		int cap = b->cap_t ? 2 * b->cap_t : 64;
		void *p = realloc(g->tensors, (size_t)cap * sizeof *g->tensors);
		if (!p)
			return nnp_err(NNP_ENOMEM, "network graph: out of memory");
		g->tensors = p;
		b->cap_t = cap;
	}
	g->tensors[g->ntensors].channels = channels;
	g->tensors[g->ntensors].level = level;
	return g->ntensors++;
}

static struct nnp_op *new_op(struct gb *b, enum nnp_op_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static struct nnp_op *new_op(struct gb *b, enum nnp_op_kind kind, const char *fmt, ...)
{
	struct nnp_net_graph *g = b->g;
	struct nnp_op *op;
	va_list ap;

	if (g->nops == b->cap_ops) {
		int cap = b->cap_ops ? 2 * b->cap_ops : 64;
		void *p = realloc(g->ops, (size_t)cap * sizeof *g->ops);
		if (!p) {
			nnp_err(NNP_ENOMEM, "network graph: out of memory");
			return NULL;
		}
		g->ops = p;
		b->cap_ops = cap;
	}
	op = &g->ops[g->nops++];
	memset(op, 0, sizeof *op);
	op->kind = kind;
	op->in2 = -1;
	for (int d = 0; d < 3; d++)
		op->kernel[d] = op->stride[d] = 1;
	va_start(ap, fmt);
	vsnprintf(op->w, sizeof op->w, fmt, ap);
	va_end(ap);
	return op;
}

/* ConvDropoutNormReLU: conv (stride) -> InstanceNorm -> LeakyReLU (act).
 * prefix names the block ("...convs.K"); returns the output tensor. */
static int conv_norm(struct gb *b, const char *prefix, int in, int in2, int cout, const int *k, const int *st,
		     int level, int bias, int act)
{
	struct nnp_op *op;
	int t = new_tensor(b, cout, level);
	if (t < 0)
		return t;
	if (!(op = new_op(b, NNP_OP_CONV, "%s.conv", prefix)))
		return NNP_ENOMEM;
	op->in = in;
	op->in2 = in2;
	op->out = t;
	op->has_bias = bias;
	for (int d = 0; d < 3; d++) {
		op->kernel[d] = k[d];
		op->stride[d] = st[d];
	}
	if (!(op = new_op(b, NNP_OP_NORM_ACT, "%s.norm", prefix)))
		return NNP_ENOMEM;
	op->in = op->out = t;
	op->act = act;
	return t;
}

/* BasicBlockD (ResEnc): conv1 (stride) + conv2 (no act), skip (avgpool,
 * 1x1 projection + norm), out = LeakyReLU(conv2 + skip). */
static int basic_block(struct gb *b, int s, int blk, int x, int cin)
{
	const struct nnp_net_arch *a = &b->g->arch;
	const int *st = blk == 0 ? a->stride[s] : ONE;
	int cout = a->features[s], level = s, y, skip = x, idx = 0;
	char p[NNP_NET_NAME];
	struct nnp_op *op;

	snprintf(p, sizeof p, "encoder.stages.%d.blocks.%d.conv1", s, blk);
	if ((y = conv_norm(b, p, x, -1, cout, a->kernel[s], st, level, a->conv_bias, 1)) < 0)
		return y;
	snprintf(p, sizeof p, "encoder.stages.%d.blocks.%d.conv2", s, blk);
	if ((y = conv_norm(b, p, y, -1, cout, a->kernel[s], ONE, level, a->conv_bias, 0)) < 0)
		return y;
	if (has_stride(st)) {
		int t = new_tensor(b, cin, level);
		if (t < 0)
			return t;
		if (!(op = new_op(b, NNP_OP_AVGPOOL, "encoder.stages.%d.blocks.%d.skip.0", s, blk)))
			return NNP_ENOMEM;
		op->in = skip;
		op->out = t;
		for (int d = 0; d < 3; d++)
			op->kernel[d] = op->stride[d] = st[d];
		skip = t;
		idx = 1;
	}
	if (cin != cout) {
		snprintf(p, sizeof p, "encoder.stages.%d.blocks.%d.skip.%d", s, blk, idx);
		if ((skip = conv_norm(b, p, skip, -1, cout, ONE, ONE, level, 0, 0)) < 0)
			return skip;
	}
	if (!(op = new_op(b, NNP_OP_ADD_ACT, "encoder.stages.%d.blocks.%d", s, blk)))
		return NNP_ENOMEM;
	op->in = op->out = y;
	op->in2 = skip;
	op->act = 1;
	return y;
}

static int encoder(struct gb *b, int *skips)
{
	const struct nnp_net_arch *a = &b->g->arch;
	int x = 0, cin = a->in_channels;
	char p[NNP_NET_NAME];

	if (a->cls == NNP_NET_RESENC) {
		if ((x = conv_norm(b, "encoder.stem.convs.0", 0, -1, a->features[0], a->kernel[0], ONE, 0,
				   a->conv_bias, 1)) < 0)
			return x;
		cin = a->features[0];
	}
	for (int s = 0; s < a->n_stages; s++) {
		for (int k = 0; k < a->n_conv[s]; k++) {
			if (a->cls == NNP_NET_PLAIN) {
				snprintf(p, sizeof p, "encoder.stages.%d.0.convs.%d", s, k);
				x = conv_norm(b, p, x, -1, a->features[s], a->kernel[s], k == 0 ? a->stride[s] : ONE,
					      s, a->conv_bias, 1);
			} else {
				x = basic_block(b, s, k, x, cin);
			}
			if (x < 0)
				return x;
			cin = a->features[s];
		}
		skips[s] = x;
	}
	return NNP_OK;
}

static int seg_head(struct gb *b, int j, int x, int level)
{
	const struct nnp_net_arch *a = &b->g->arch;
	struct nnp_op *op;
	int t = new_tensor(b, a->num_classes, level);
	if (t < 0)
		return t;
	if (!(op = new_op(b, NNP_OP_CONV, "decoder.seg_layers.%d", j)))
		return NNP_ENOMEM;
	op->in = x;
	op->out = t;
	op->has_bias = 1;
	return t;
}

static int decoder(struct gb *b, const int *skips)
{
	const struct nnp_net_arch *a = &b->g->arch;
	struct nnp_net_graph *g = b->g;
	int x = skips[a->n_stages - 1], nj = a->n_stages - 1;
	char p[NNP_NET_NAME];

	for (int j = 0; j < nj; j++) {
		int s = a->n_stages - 2 - j, up = new_tensor(b, a->features[s], s);
		struct nnp_op *op;
		if (up < 0)
			return up;
		if (!(op = new_op(b, NNP_OP_DECONV, "decoder.transpconvs.%d", j)))
			return NNP_ENOMEM;
		op->in = x;
		op->out = up;
		op->has_bias = a->conv_bias;
		for (int d = 0; d < 3; d++)
			op->kernel[d] = op->stride[d] = a->stride[s + 1][d];
		for (int k = 0; k < a->n_conv_dec[j]; k++) {
			snprintf(p, sizeof p, "decoder.stages.%d.convs.%d", j, k);
			x = conv_norm(b, p, k == 0 ? up : x, k == 0 ? skips[s] : -1, a->features[s], a->kernel[s], ONE,
				      s, a->conv_bias, 1);
			if (x < 0)
				return x;
		}
		if (a->n_conv_dec[j] == 0)
			return nnp_err(NNP_EDATA, "architecture: decoder stage %d has no convolution", j);
		if (a->deep_supervision || j == nj - 1) {
			int t = seg_head(b, j, x, s);
			if (t < 0)
				return t;
			if (a->deep_supervision)
				g->ds_out[g->n_ds++] = t;
			if (j == nj - 1)
				g->out = t;
		}
	}
	/* deep supervision heads full resolution first */
	for (int i = 0; i < g->n_ds / 2; i++) {
		int t = g->ds_out[i];
		g->ds_out[i] = g->ds_out[g->n_ds - 1 - i];
		g->ds_out[g->n_ds - 1 - i] = t;
	}
	return NNP_OK;
}

int nnp_net_graph_build(const struct nnp_net_arch *a, struct nnp_net_graph *g)
{
	struct gb b = { g, 0, 0 };
	int skips[NNP_NET_MAX_STAGES], rc;

	memset(g, 0, sizeof *g);
	g->arch = *a;
	if (a->n_stages < 2)
		return nnp_err(NNP_EDATA, "architecture: a UNet needs at least 2 stages");
	if ((rc = new_tensor(&b, a->in_channels, 0)) < 0 || (rc = encoder(&b, skips)) < 0 ||
	    (rc = decoder(&b, skips)) < 0) {
		nnp_net_graph_release(g);
		return rc;
	}
	return NNP_OK;
}

void nnp_net_graph_release(struct nnp_net_graph *g)
{
	if (!g)
		return;
	free(g->ops);
	free(g->tensors);
	g->ops = NULL;
	g->tensors = NULL;
	g->nops = g->ntensors = 0;
}

int nnp_net_graph_copy(const struct nnp_net_graph *g, struct nnp_net_graph *c)
{
	*c = *g;
	c->ops = malloc((size_t)g->nops * sizeof *c->ops);
	c->tensors = malloc((size_t)g->ntensors * sizeof *c->tensors);
	if (!c->ops || !c->tensors) {
		nnp_net_graph_release(c);
		return nnp_err(NNP_ENOMEM, "network graph: out of memory");
	}
	memcpy(c->ops, g->ops, (size_t)g->nops * sizeof *c->ops);
	memcpy(c->tensors, g->tensors, (size_t)g->ntensors * sizeof *c->tensors);
	return NNP_OK;
}

int64_t nnp_net_level_div(const struct nnp_net_arch *a, int level, int d)
{
	int64_t div = 1;
	for (int s = 0; s <= level && s < a->n_stages; s++)
		div *= a->stride[s][d];
	return div;
}

int nnp_net_check_shape(const struct nnp_net_arch *a, const int64_t *spatial)
{
	for (int d = 0; d < a->ndim; d++) {
		int64_t div = nnp_net_level_div(a, a->n_stages - 1, d);
		if (spatial[d] < 1 || spatial[d] % div)
			return nnp_err(NNP_EUSAGE, "network input: axis %d size %lld is not a multiple of the total stride %lld",
				       d, (long long)spatial[d], (long long)div);
	}
	return NNP_OK;
}

int nnp_net_param_shape(const struct nnp_net_graph *g, const struct nnp_op *op, const char *suffix,
			int64_t shape[5])
{
	const struct nnp_net_arch *a = &g->arch;
	int cin = g->tensors[op->in].channels + (op->in2 >= 0 ? g->tensors[op->in2].channels : 0);
	int cout = g->tensors[op->out].channels;

	if (!strcmp(suffix, "bias") || op->kind == NNP_OP_NORM_ACT) {
		shape[0] = cout;
		return 1;
	}
	shape[0] = op->kind == NNP_OP_DECONV ? cin : cout;
	shape[1] = op->kind == NNP_OP_DECONV ? cout : cin;
	for (int d = 0; d < a->ndim; d++)
		shape[2 + d] = op->kernel[d];
	return 2 + a->ndim;
}

double nnp_net_macs(const struct nnp_net_graph *g, const int64_t *spatial)
{
	const struct nnp_net_arch *a = &g->arch;
	double macs = 0;
	for (int i = 0; i < g->nops; i++) {
		const struct nnp_op *op = &g->ops[i];
		double vox = 1, k = 1;
		int lvl = g->tensors[op->out].level;
		int cin = g->tensors[op->in].channels + (op->in2 >= 0 ? g->tensors[op->in2].channels : 0);
		if (op->kind != NNP_OP_CONV && op->kind != NNP_OP_DECONV)
			continue;
		for (int d = 0; d < a->ndim; d++) {
			vox *= (double)(spatial[d] / nnp_net_level_div(a, lvl, d));
			k *= op->kernel[d];
		}
		if (op->kind == NNP_OP_DECONV)
			k = 1; /* kernel = stride: each output voxel sees one tap per input channel */
		macs += vox * k * cin * g->tensors[op->out].channels;
	}
	return macs;
}
