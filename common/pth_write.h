/* pth_write.h — writing PyTorch checkpoints: a pickle protocol-2 writer and
 * the zip container torch.save produces (nnunet-facts §6.6).
 *
 * The pickle writer (nnp_pkl) emits objects depth-first, as Python's
 * pickle.Pickler(protocol=2) does for the same objects: BINUNICODE strings,
 * BININT1/BININT2/BININT/LONG1 integers, BINFLOAT, dicts and lists filled in
 * batches of 1000 (MARK ... SETITEMS/APPENDS, or SETITEM/APPEND for a batch
 * of one), tuples as EMPTY_TUPLE/TUPLE1-3/MARK...TUPLE, GLOBAL + REDUCE,
 * BUILD and BINPERSID, every str, global, dict, list, non-empty tuple and
 * REDUCE result memoized with BINPUT/LONG_BINPUT in creation order.  Equal
 * strings and globals are written once and then fetched with BINGET, so
 * unpickling the bytes and pickling the result again with Python's pickler
 * gives the same bytes.  Containers are opened with their element count and
 * closed with nnp_pkl_end; the elements are the objects emitted in between.
 *
 * Errors are sticky: after the first failure (NNP_EUSAGE for a wrong number
 * of elements, NNP_ENOMEM for the size cap) every call returns that code and
 * writes nothing, so a sequence of calls may be checked once, at
 * nnp_pkl_finish.  The message is recorded once, where it happened.
 *
 * The zip writer (nnp_pthw) writes PREFIX/NAME members STORED (no
 * compression), each member's data at a 64-byte aligned file offset (the
 * local header's extra field is padded, id "FB" like torch's), CRC-32 from
 * zlib, a central directory and an end record; PREFIX is the final file's
 * basename without its extension (torch.save(obj, path)).  Archives are
 * limited to 4 GiB and 65535 members (no ZIP64): larger ones are refused
 * with NNP_ENOMEM.  The file is written to a temporary next to the target
 * (atomic.h) and appears only at nnp_pthw_commit.
 *
 * Ownership: nnp_pkl_new / nnp_pthw_open return objects the caller frees
 * with nnp_pkl_free / (nnp_pthw_commit or nnp_pthw_abort); both free
 * functions accept NULL.  Data passed in is copied or written at once:
 * nothing keeps a caller's pointer.
 */
#ifndef NNP_PTH_WRITE_H
#define NNP_PTH_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* The reader (pth.h) accepts pickles up to 64 MiB. */
#define NNP_PKL_MAX_DEFAULT ((size_t)64 << 20)
#define NNP_PKL_MAX_DEPTH 64

struct nnp_pkl;

/* max_bytes: cap on the pickle's size (0 = NNP_PKL_MAX_DEFAULT). */
int nnp_pkl_new(size_t max_bytes, struct nnp_pkl **out);
void nnp_pkl_free(struct nnp_pkl *p);

int nnp_pkl_none(struct nnp_pkl *p);
int nnp_pkl_bool(struct nnp_pkl *p, int v);
int nnp_pkl_int(struct nnp_pkl *p, long long v);
int nnp_pkl_float(struct nnp_pkl *p, double v);
/* A Python str from UTF-8 bytes (n bytes; nnp_pkl_str: NUL-terminated). */
int nnp_pkl_strn(struct nnp_pkl *p, const char *s, size_t n);
int nnp_pkl_str(struct nnp_pkl *p, const char *s);
/* The object module.name (a class or function), e.g. ("torch", "FloatStorage"). */
int nnp_pkl_global(struct nnp_pkl *p, const char *module, const char *name);

/* Containers: the next n objects (dicts: 2 * npairs, key then value) are
 * the elements; nnp_pkl_end closes the innermost container. */
int nnp_pkl_dict(struct nnp_pkl *p, size_t npairs);
int nnp_pkl_list(struct nnp_pkl *p, size_t n);
int nnp_pkl_tuple(struct nnp_pkl *p, size_t n);
/* collections.OrderedDict() with npairs items; with_state: one more object
 * after the items, the instance state applied with BUILD (a dict such as
 * {'_metadata': ...} for a torch state_dict). */
int nnp_pkl_odict(struct nnp_pkl *p, size_t npairs, int with_state);
/* module.name(*args): one object follows, the args tuple. */
int nnp_pkl_reduce(struct nnp_pkl *p, const char *module, const char *name);
/* A persistent id (BINPERSID): one object follows, the id. */
int nnp_pkl_persid(struct nnp_pkl *p);
int nnp_pkl_end(struct nnp_pkl *p);

/* A JSON value as Python's json.load returns it: object -> dict (in the
 * object's order), array -> list, string -> str, integer -> int, real ->
 * float, true/false -> bool, null -> None. */
int nnp_pkl_json(struct nnp_pkl *p, const json_t *v);

/* torch._utils._rebuild_tensor_v2 of a whole float32 storage: storage
 * ('storage', torch.FloatStorage, key, location, numel), offset 0, size
 * shape, C-contiguous stride, requires_grad False, OrderedDict() hooks. */
int nnp_pkl_tensor_f32(struct nnp_pkl *p, const char *key, const char *location, int ndim, const int64_t *shape);
/* torch.device(name), e.g. "cpu". */
int nnp_pkl_torch_device(struct nnp_pkl *p, const char *name);

/* End the pickle (STOP) after exactly one top-level object; *data stays
 * valid until nnp_pkl_free.  Returns the first error of the sequence. */
int nnp_pkl_finish(struct nnp_pkl *p, const unsigned char **data, size_t *len);

struct nnp_pthw;

/* Start the checkpoint file path (force: replace an existing file, else
 * NNP_EUSAGE "exists").  The zip prefix is path's basename up to its last '.'. */
int nnp_pthw_open(const char *path, int force, struct nnp_pthw **out);
/* The member PREFIX/name with n bytes of data (written now). */
int nnp_pthw_add(struct nnp_pthw *w, const char *name, const void *data, size_t n);
/* Write the central directory and end record; the file stays a temporary
 * until nnp_pthw_commit. */
int nnp_pthw_finish(struct nnp_pthw *w);
/* Rename the finished temporary over the path; frees w (also on error). */
int nnp_pthw_commit(struct nnp_pthw *w);
/* Remove the temporary; frees w.  NULL is a no-op. */
void nnp_pthw_abort(struct nnp_pthw *w);
/* Lower the 4 GiB archive limit (for tests of the refusal). */
void nnp_pthw_set_limit(struct nnp_pthw *w, uint64_t max_bytes);
/* The zip prefix ("checkpoint_final"), owned by w. */
const char *nnp_pthw_prefix(const struct nnp_pthw *w);

#endif
