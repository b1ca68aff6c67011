/* net.h — nnU-Net's networks as a small graph of operators (nnunet-facts §6).
 *
 * nnp_net_arch is the plans' "architecture" entry in C (PlainConvUNet or
 * ResidualEncoderUNet, 2D or 3D, any number of stages).  nnp_net_graph turns
 * it into a list of operators over numbered tensors, each operator naming the
 * state_dict keys of its parameters, so that an executor (the oneDNN CPU
 * backend in dnn.h, later CUDA) only needs to know six operator kinds and the
 * weights can come from any source (a PyTorch checkpoint, nnpipe's model
 * file).  Backward passes (training) walk the same list in reverse.
 *
 * Tensors: tensor 0 is the network input (in_channels), the output tensor is
 * g->out (num_classes, full resolution; with deep supervision g->ds_out[] are
 * the lower-resolution heads, full resolution first).  Every tensor has a
 * channel count and a `level` (its spatial size is the input's divided by
 * the cumulative strides of that level).  Operators are in execution order;
 * an operator's output tensor is written by that operator only (NORM_ACT and
 * ADD_ACT work in place and name their input as output).
 *
 * Invariants: 1 <= n_stages <= NNP_NET_MAX_STAGES, ndim 2 or 3, kernels odd
 * (padding (k-1)/2 as nnU-Net), strides >= 1.
 *
 * Ownership: nnp_net_graph_build fills a caller-provided struct that owns its
 * operator and tensor arrays (nnp_net_graph_release frees them; a zeroed or
 * released graph may be released again).  Parameter names are stored inline.
 */
#ifndef NNP_NET_H
#define NNP_NET_H

#include <stdint.h>
#include <jansson.h>

#define NNP_NET_MAX_STAGES 12
#define NNP_NET_MAX_CONVS 16           /* convs (or blocks) per stage */
#define NNP_NET_NAME 96

enum nnp_net_class { NNP_NET_PLAIN = 1, NNP_NET_RESENC = 2 };

struct nnp_net_arch {
	enum nnp_net_class cls;
	int ndim;                                  /* 2 or 3 spatial axes */
	int n_stages;
	int in_channels, num_classes;
	int features[NNP_NET_MAX_STAGES];
	int kernel[NNP_NET_MAX_STAGES][3];         /* ndim entries used */
	int stride[NNP_NET_MAX_STAGES][3];
	int n_conv[NNP_NET_MAX_STAGES];            /* PlainConvUNet: convs per encoder stage;
	                                              ResEnc: BasicBlockD blocks per stage */
	int n_conv_dec[NNP_NET_MAX_STAGES];        /* n_stages - 1 entries */
	int conv_bias;
	int norm_affine;
	double norm_eps;
	double slope;                              /* LeakyReLU negative slope */
	int deep_supervision;
};

/* The architecture entry of a configuration (the plans' "architecture"
 * object: network_class_name + arch_kwargs) for in_channels input channels
 * and num_classes outputs.  NNP_EDATA (message names the key) for an
 * unsupported class, operator, dropout, or inconsistent lists. */
int nnp_net_arch_parse(const json_t *architecture, int in_channels, int num_classes, struct nnp_net_arch *a);

enum nnp_op_kind {
	NNP_OP_CONV = 1,     /* out = conv(in) (+ conv(in2) with the weight's second
	                        input-channel block: the decoder's concat without a copy) + bias */
	NNP_OP_NORM_ACT,     /* in place: InstanceNorm (affine) then LeakyReLU (act=1) or nothing */
	NNP_OP_DECONV,       /* transposed conv, kernel = stride, bias */
	NNP_OP_ADD_ACT,      /* in place on in: in = LeakyReLU(in + in2) (residual) */
	NNP_OP_AVGPOOL,      /* out = avgpool(in), kernel = stride */
};

struct nnp_op {
	enum nnp_op_kind kind;
	int in, in2, out;          /* tensor ids; in2 = -1 when unused */
	int kernel[3], stride[3];
	int has_bias;
	int act;                   /* NORM_ACT: apply LeakyReLU after the norm */
	char w[NNP_NET_NAME];      /* parameter prefix, e.g. "encoder.stages.0.0.convs.0.conv" */
};

struct nnp_tensor_info {
	int channels;
	int level;                 /* 0 = full resolution */
};

struct nnp_net_graph {
	struct nnp_net_arch arch;
	int nops, ntensors;
	struct nnp_op *ops;
	struct nnp_tensor_info *tensors;
	int out;                   /* the full-resolution logits */
	int n_ds;                  /* deep supervision heads (arch.deep_supervision) */
	int ds_out[NNP_NET_MAX_STAGES];
};

int nnp_net_graph_build(const struct nnp_net_arch *a, struct nnp_net_graph *g);
void nnp_net_graph_release(struct nnp_net_graph *g);
/* A deep copy of g into *c (released with nnp_net_graph_release); NNP_ENOMEM
 * leaves *c released. */
int nnp_net_graph_copy(const struct nnp_net_graph *g, struct nnp_net_graph *c);

/* Cumulative stride of a level along axis d (product of strides[0..level]). */
int64_t nnp_net_level_div(const struct nnp_net_arch *a, int level, int d);
/* A spatial input shape the network accepts: every axis divisible by the
 * total stride.  NNP_EUSAGE with a message otherwise. */
int nnp_net_check_shape(const struct nnp_net_arch *a, const int64_t *spatial);

/* A parameter's expected shape (PyTorch layout): conv weight (out, in, k...),
 * deconv weight (in, out, k...), bias/norm vectors (C).  suffix is "weight"
 * or "bias"; for NORM_ACT the op's w names the norm module.  Returns ndim. */
int nnp_net_param_shape(const struct nnp_net_graph *g, const struct nnp_op *op, const char *suffix,
			int64_t shape[5]);

/* Multiply-accumulates of one forward pass for a spatial input (for
 * benchmarks and memory estimates). */
double nnp_net_macs(const struct nnp_net_graph *g, const int64_t *spatial);

#endif
