/* trainnet.h — a network graph (net.h) that trains: forward with every
 * activation kept, backward to parameter gradients (docs/training.md).
 *
 * The CPU backend keeps activations channels-last (n, *spatial, c) in
 * float32, runs convolutions, transposed convolutions and average pooling
 * forward, backward-data and backward-weights with oneDNN, and InstanceNorm,
 * LeakyReLU and residual adds (forward and backward) in OpenMP loops whose
 * reductions use a fixed chunking (the result does not depend on the thread
 * count).  InstanceNorm statistics are float64 (biased variance, eps from
 * the architecture), as in the inference engine.
 *
 * Parameters are held in PyTorch layout under their state_dict names (conv
 * (out, in, k...), transposed conv (in, out, k...), vectors (C)), one
 * float32 value array and one gradient array each; an optimizer updates
 * them in place between steps.  A decoder conv that reads the concat of
 * (upsampled, skip) keeps one weight of (out, c_up + c_skip, k...) as
 * nnU-Net does; the engine runs it as two convolutions over views.
 *
 * Semantics: nnp_tnet_forward(n, spatial, in) computes every head (deep
 * supervision heads, full resolution first; head 0 alone without deep
 * supervision); nnp_tnet_backward(dout) then sets every parameter gradient
 * to d(loss)/d(param) for the loss whose gradients with respect to the head
 * outputs are dout[h] (NULL: the head does not contribute).  Input and
 * outputs are float32 C order (n, C, *spatial) (planar), as everywhere else.
 *
 * Ownership: nnp_tnet_create returns a net freed with nnp_tnet_free (NULL
 * is a no-op); it copies the graph and owns its parameters; pointers from
 * nnp_tnet_param stay valid until nnp_tnet_free.  One thread at a time.
 */
#ifndef NNP_TRAINNET_H
#define NNP_TRAINNET_H

#include <stdint.h>

#include "engine.h"
#include "net.h"

struct nnp_tparam {
	char name[NNP_NET_NAME + 8];   /* "encoder.stages.0.0.convs.0.conv.weight" */
	int ndim;
	int64_t shape[5];
	int64_t n;                     /* elements */
	float *w, *g;                  /* value and gradient, owned by the net */
};

struct nnp_tnet;

/* init NULL: nnU-Net's InitWeights_He(1e-2) (kaiming normal, a = 0.01,
 * fan_in; biases 0; norm weight 1, bias 0) from numpy's RandomState(seed)
 * Gaussian; otherwise every parameter is copied from init. */
int nnp_tnet_create(const struct nnp_net_graph *g, const struct nnp_param_src *init, uint32_t seed,
		    struct nnp_tnet **out);
void nnp_tnet_free(struct nnp_tnet *t);

const struct nnp_net_graph *nnp_tnet_graph(const struct nnp_tnet *t);
int nnp_tnet_nparams(const struct nnp_tnet *t);
struct nnp_tparam *nnp_tnet_param(struct nnp_tnet *t, int i);
/* A parameter source over the current values (for nnp_engine_create, the
 * model writer); valid while t lives. */
struct nnp_param_src nnp_tnet_param_src(struct nnp_tnet *t);
/* Total parameter count. */
int64_t nnp_tnet_param_count(const struct nnp_tnet *t);

/* Number of heads the forward computes (deep supervision: g->n_ds, else 1)
 * and head h's shape (n, K, *spatial/level stride) for the last forward. */
int nnp_tnet_nheads(const struct nnp_tnet *t);
int nnp_tnet_head_shape(const struct nnp_tnet *t, int h, int64_t shape[5]);

/* in: n x C x spatial (planar).  Keeps every activation for a backward. */
int nnp_tnet_forward(struct nnp_tnet *t, int n, const int64_t *spatial, const float *in);
/* Copy head h of the last forward into out (planar, nnp_tnet_head_shape). */
int nnp_tnet_output(struct nnp_tnet *t, int h, float *out);
/* dout[h]: gradient of the loss with respect to head h (planar), or NULL. */
int nnp_tnet_backward(struct nnp_tnet *t, const float *const *dout);

/* Run the steps on CUDA device `device` (>= 0; the cuDNN backend of
 * trainnet_cuda.h: parameters stay in host memory, uploaded before every
 * forward, gradients downloaded after every backward) or back on the CPU
 * (-1).  NNP_EUSAGE in a build without CUDA or without that device. */
int nnp_tnet_set_device(struct nnp_tnet *t, int device);

/* Bytes a training step of n inputs of this shape holds (activations,
 * their gradients, InstanceNorm statistics, parameters with gradients;
 * oneDNN's reordered weights and scratchpads excluded). */
uint64_t nnp_tnet_mem_estimate(const struct nnp_net_graph *g, int n, const int64_t *spatial);

#endif
