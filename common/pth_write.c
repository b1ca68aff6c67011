/* pth_write.c — pickle protocol-2 writer and the PyTorch zip container
 * (see pth_write.h).
 *
 * The batching rules are those of CPython's _pickle.c: an exact dict of one
 * item is "k v SETITEM", larger ones "MARK k v ... SETITEMS" per 1000 items
 * with one more empty batch when the size is a multiple of 1000
 * (batch_dict_exact); a list of one is "x APPEND", larger ones "MARK ...
 * APPENDS" per 1000 (batch_list_exact); the items of a REDUCE'd mapping
 * (OrderedDict) come in batches of 1000 where a batch of one is SETITEM
 * (batch_dict). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "atomic.h"
#include "err.h"
#include "pth_write.h"

#define BATCH 1000
#define MEMO_MAX ((uint32_t)1 << 30)

/* ------------------------------------------------------------------ */
/* pickle                                                               */

enum ckind { C_DICT, C_LIST, C_TUPLE, C_ODICT, C_REDUCE, C_PERSID };

struct cont {
	enum ckind k;
	size_t n;       /* elements expected */
	size_t i;       /* elements emitted */
	size_t items;   /* elements that are items (dict: 2 per pair); an odict's state is not */
	size_t group;   /* elements per item: 2 for mappings, 1 else */
};

struct memo_ent {
	uint64_t h;
	char *key;      /* tag byte + bytes */
	size_t len;
	uint32_t idx;
};

struct nnp_pkl {
	unsigned char *buf;
	size_t len, cap, max;
	struct cont stack[NNP_PKL_MAX_DEPTH];
	int depth;
	int roots;
	uint32_t nmemo;
	struct memo_ent *tab;
	size_t tcap, tn;
	int err;
};

static int fail(struct nnp_pkl *p, int code, const char *what)
{
	if (!p->err)
		p->err = nnp_err(code, "pickle writer: %s", what);
	return p->err;
}

static int put(struct nnp_pkl *p, const void *b, size_t n)
{
	if (p->err)
		return p->err;
	if (n > p->max - p->len)
		return fail(p, NNP_ENOMEM, "the pickle exceeds its size limit");
	if (p->len + n > p->cap) {
		size_t nc = p->cap ? p->cap : 4096;
		unsigned char *nb;
		while (nc < p->len + n)
			nc *= 2;
		if (nc > p->max)
			nc = p->max;
		if (!(nb = realloc(p->buf, nc)))
			return fail(p, NNP_ENOMEM, "out of memory");
		p->buf = nb;
		p->cap = nc;
	}
	memcpy(p->buf + p->len, b, n);
	p->len += n;
	return NNP_OK;
}

static int op(struct nnp_pkl *p, unsigned char c)
{
	return put(p, &c, 1);
}

static int op_le(struct nnp_pkl *p, unsigned char c, uint64_t v, int nbytes)
{
	unsigned char b[9];
	b[0] = c;
	for (int i = 0; i < nbytes; i++)
		b[1 + i] = (unsigned char)(v >> (8 * i));
	return put(p, b, (size_t)nbytes + 1);
}

/* BINPUT / LONG_BINPUT of the next memo index; returns the index. */
static uint32_t memoize(struct nnp_pkl *p)
{
	uint32_t idx = p->nmemo;
	if (idx >= MEMO_MAX) {
		fail(p, NNP_ENOMEM, "too many memoized objects");
		return 0;
	}
	p->nmemo++;
	if (idx < 256)
		op_le(p, 'q', idx, 1);
	else
		op_le(p, 'r', idx, 4);
	return idx;
}

static void memo_get(struct nnp_pkl *p, uint32_t idx)
{
	if (idx < 256)
		op_le(p, 'h', idx, 1);
	else
		op_le(p, 'j', idx, 4);
}

/* ---- value memo: equal strings / globals share one memo entry ---- */

static uint64_t fnv(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h;
}

static struct memo_ent *tab_slot(struct memo_ent *tab, size_t cap, uint64_t h, const char *k, size_t n)
{
	size_t i = (size_t)h & (cap - 1);
	while (tab[i].key && (tab[i].h != h || tab[i].len != n || memcmp(tab[i].key, k, n)))
		i = (i + 1) & (cap - 1);
	return &tab[i];
}

static int tab_grow(struct nnp_pkl *p)
{
	size_t nc = p->tcap ? 2 * p->tcap : 256;
	struct memo_ent *nt = calloc(nc, sizeof *nt);
	if (!nt)
		return fail(p, NNP_ENOMEM, "out of memory");
	for (size_t i = 0; i < p->tcap; i++)
		if (p->tab[i].key)
			*tab_slot(nt, nc, p->tab[i].h, p->tab[i].key, p->tab[i].len) = p->tab[i];
	free(p->tab);
	p->tab = nt;
	p->tcap = nc;
	return NNP_OK;
}

/* The memo index of (tag, bytes), or -1 after recording it as idx. */
static long long memo_lookup(struct nnp_pkl *p, char tag, const char *s, size_t n, uint32_t idx, int insert)
{
	char stackkey[256], *key = n < sizeof stackkey ? stackkey : malloc(n + 1);
	struct memo_ent *e;
	uint64_t h;
	long long found = -1;
	if (!key) {
		fail(p, NNP_ENOMEM, "out of memory");
		return -1;
	}
	key[0] = tag;
	memcpy(key + 1, s, n);
	h = fnv(key, n + 1);
	if (2 * (p->tn + 1) > p->tcap && tab_grow(p))
		goto done;
	e = tab_slot(p->tab, p->tcap, h, key, n + 1);
	if (e->key) {
		found = e->idx;
	} else if (insert) {
		if (!(e->key = malloc(n + 1))) {
			fail(p, NNP_ENOMEM, "out of memory");
			goto done;
		}
		memcpy(e->key, key, n + 1);
		e->h = h;
		e->len = n + 1;
		e->idx = idx;
		p->tn++;
	}
done:
	if (key != stackkey)
		free(key);
	return found;
}

/* ---- containers and elements ---- */

static int batch_marked(const struct cont *c, size_t first)
{
	size_t units = c->items / c->group, left = units - first;
	if (c->k == C_ODICT)
		return (left < BATCH ? left : BATCH) > 1;
	return units >= 2;
}

static int elem_begin(struct nnp_pkl *p)
{
	struct cont *c;
	if (p->err)
		return p->err;
	if (!p->depth)
		return p->roots ? fail(p, NNP_EUSAGE, "more than one top-level object") : NNP_OK;
	c = &p->stack[p->depth - 1];
	if (c->i >= c->n)
		return fail(p, NNP_EUSAGE, "more elements than the container was opened with");
	if (c->i < c->items && c->i % c->group == 0) {
		size_t unit = c->i / c->group;
		if (unit % BATCH == 0 && batch_marked(c, unit))
			op(p, '(');
	}
	return p->err;
}

static int elem_end(struct nnp_pkl *p)
{
	struct cont *c;
	size_t done, first;
	if (!p->depth) {
		p->roots++;
		return p->err;
	}
	c = &p->stack[p->depth - 1];
	c->i++;
	if (c->k == C_TUPLE || c->k == C_REDUCE || c->k == C_PERSID || c->i > c->items || c->i % c->group)
		return p->err;
	done = c->i / c->group;
	if (done % BATCH && c->i != c->items)
		return p->err;
	first = (done - 1) / BATCH * BATCH;
	if (c->k == C_LIST)
		return op(p, batch_marked(c, first) ? 'e' : 'a');
	return op(p, batch_marked(c, first) ? 'u' : 's');
}

static int push(struct nnp_pkl *p, enum ckind k, size_t n, size_t items, size_t group)
{
	struct cont *c;
	if (p->err)
		return p->err;
	if (p->depth == NNP_PKL_MAX_DEPTH)
		return fail(p, NNP_EUSAGE, "containers nested too deeply");
	c = &p->stack[p->depth++];
	c->k = k;
	c->n = n;
	c->i = 0;
	c->items = items;
	c->group = group;
	return NNP_OK;
}

int nnp_pkl_new(size_t max_bytes, struct nnp_pkl **out)
{
	struct nnp_pkl *p = calloc(1, sizeof *p);
	*out = NULL;
	if (!p)
		return nnp_err(NNP_ENOMEM, "pickle writer: out of memory");
	p->max = max_bytes ? max_bytes : NNP_PKL_MAX_DEFAULT;
	if (op_le(p, 0x80, 2, 1)) { /* PROTO 2 */
		int rc = p->err;
		nnp_pkl_free(p);
		return rc;
	}
	*out = p;
	return NNP_OK;
}

void nnp_pkl_free(struct nnp_pkl *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->tcap; i++)
		free(p->tab[i].key);
	free(p->tab);
	free(p->buf);
	free(p);
}

int nnp_pkl_none(struct nnp_pkl *p)
{
	if (!elem_begin(p))
		op(p, 'N');
	return elem_end(p);
}

int nnp_pkl_bool(struct nnp_pkl *p, int v)
{
	if (!elem_begin(p))
		op(p, v ? 0x88 : 0x89);
	return elem_end(p);
}

static void put_long(struct nnp_pkl *p, long long v)
{
	int n = 1;
	if (v >= 0 && v < 256) {
		op_le(p, 'K', (uint64_t)v, 1);
	} else if (v >= 256 && v < 65536) {
		op_le(p, 'M', (uint64_t)v, 2);
	} else if (v >= INT32_MIN && v <= INT32_MAX) {
		op_le(p, 'J', (uint64_t)(uint32_t)(int32_t)v, 4);
	} else { /* LONG1: the shortest two's complement, little-endian */
		while (n < 8 && !(v >= -(1LL << (8 * n - 1)) && v < (1LL << (8 * n - 1))))
			n++;
		op_le(p, 0x8a, (uint64_t)n, 1);
		for (int i = 0; i < n; i++)
			op(p, (unsigned char)((uint64_t)v >> (8 * i)));
	}
}

int nnp_pkl_int(struct nnp_pkl *p, long long v)
{
	if (!elem_begin(p))
		put_long(p, v);
	return elem_end(p);
}

int nnp_pkl_float(struct nnp_pkl *p, double v)
{
	unsigned char b[9];
	uint64_t u;
	memcpy(&u, &v, 8);
	b[0] = 'G';
	for (int i = 0; i < 8; i++)
		b[1 + i] = (unsigned char)(u >> (56 - 8 * i)); /* big-endian */
	if (!elem_begin(p))
		put(p, b, sizeof b);
	return elem_end(p);
}

int nnp_pkl_strn(struct nnp_pkl *p, const char *s, size_t n)
{
	long long idx;
	if (elem_begin(p))
		return p->err;
	if (n > UINT32_MAX)
		return fail(p, NNP_ENOMEM, "string longer than 4 GiB");
	idx = memo_lookup(p, 's', s, n, p->nmemo, 1);
	if (idx >= 0) {
		memo_get(p, (uint32_t)idx);
	} else if (!p->err) {
		op_le(p, 'X', n, 4);
		put(p, s, n);
		memoize(p);
	}
	return elem_end(p);
}

int nnp_pkl_str(struct nnp_pkl *p, const char *s)
{
	return nnp_pkl_strn(p, s, strlen(s));
}

/* GLOBAL (memoized by name) without element bookkeeping. */
static void put_global(struct nnp_pkl *p, const char *module, const char *name)
{
	size_t nm = strlen(module), nn = strlen(name);
	char key[512];
	long long idx;
	if (p->err)
		return;
	if (nm + nn + 2 > sizeof key || memchr(module, '\n', nm) || memchr(name, '\n', nn)) {
		fail(p, NNP_EUSAGE, "bad global name");
		return;
	}
	memcpy(key, module, nm);
	key[nm] = '\n';
	memcpy(key + nm + 1, name, nn);
	key[nm + nn + 1] = '\n';
	idx = memo_lookup(p, 'g', key, nm + nn + 2, p->nmemo, 1);
	if (idx >= 0) {
		memo_get(p, (uint32_t)idx);
		return;
	}
	op(p, 'c');
	put(p, key, nm + nn + 2);
	memoize(p);
}

int nnp_pkl_global(struct nnp_pkl *p, const char *module, const char *name)
{
	if (!elem_begin(p))
		put_global(p, module, name);
	return elem_end(p);
}

int nnp_pkl_dict(struct nnp_pkl *p, size_t npairs)
{
	if (elem_begin(p))
		return p->err;
	op(p, '}');
	memoize(p);
	return push(p, C_DICT, 2 * npairs, 2 * npairs, 2);
}

int nnp_pkl_list(struct nnp_pkl *p, size_t n)
{
	if (elem_begin(p))
		return p->err;
	op(p, ']');
	memoize(p);
	return push(p, C_LIST, n, n, 1);
}

int nnp_pkl_tuple(struct nnp_pkl *p, size_t n)
{
	if (elem_begin(p))
		return p->err;
	if (n > 3)
		op(p, '(');
	return push(p, C_TUPLE, n, 0, 1);
}

int nnp_pkl_odict(struct nnp_pkl *p, size_t npairs, int with_state)
{
	if (elem_begin(p))
		return p->err;
	put_global(p, "collections", "OrderedDict");
	op(p, ')');
	op(p, 'R');
	memoize(p);
	return push(p, C_ODICT, 2 * npairs + (with_state ? 1 : 0), 2 * npairs, 2);
}

int nnp_pkl_reduce(struct nnp_pkl *p, const char *module, const char *name)
{
	if (elem_begin(p))
		return p->err;
	put_global(p, module, name);
	return push(p, C_REDUCE, 1, 0, 1);
}

int nnp_pkl_persid(struct nnp_pkl *p)
{
	if (elem_begin(p))
		return p->err;
	return push(p, C_PERSID, 1, 0, 1);
}

static void close_tuple(struct nnp_pkl *p, size_t n)
{
	static const unsigned char tn[4] = { ')', 0x85, 0x86, 0x87 };
	if (n == 0) {
		op(p, ')');
		return;
	}
	op(p, n <= 3 ? tn[n] : 't');
	memoize(p);
}

int nnp_pkl_end(struct nnp_pkl *p)
{
	struct cont *c;
	if (p->err)
		return p->err;
	if (!p->depth)
		return fail(p, NNP_EUSAGE, "end without an open container");
	c = &p->stack[p->depth - 1];
	if (c->i != c->n)
		return fail(p, NNP_EUSAGE, "fewer elements than the container was opened with");
	switch (c->k) {
	case C_DICT: /* batch_dict_exact's trailing empty batch */
		if (c->items / 2 >= 2 && (c->items / 2) % BATCH == 0) {
			op(p, '(');
			op(p, 'u');
		}
		break;
	case C_TUPLE: close_tuple(p, c->n); break;
	case C_ODICT:
		if (c->n > c->items)
			op(p, 'b'); /* BUILD */
		break;
	case C_REDUCE:
		op(p, 'R');
		memoize(p);
		break;
	case C_PERSID: op(p, 'Q'); break;
	case C_LIST: break;
	}
	p->depth--;
	return elem_end(p);
}

int nnp_pkl_json(struct nnp_pkl *p, const json_t *v)
{
	const char *k;
	json_t *x;
	size_t i;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		nnp_pkl_dict(p, json_object_size(v));
		json_object_foreach((json_t *)v, k, x) {
			nnp_pkl_str(p, k);
			if (nnp_pkl_json(p, x))
				break;
		}
		return nnp_pkl_end(p);
	case JSON_ARRAY:
		nnp_pkl_list(p, json_array_size(v));
		json_array_foreach(v, i, x)
			if (nnp_pkl_json(p, x))
				break;
		return nnp_pkl_end(p);
	case JSON_STRING: return nnp_pkl_strn(p, json_string_value(v), json_string_length(v));
	case JSON_INTEGER: return nnp_pkl_int(p, json_integer_value(v));
	case JSON_REAL: return nnp_pkl_float(p, json_real_value(v));
	case JSON_TRUE: return nnp_pkl_bool(p, 1);
	case JSON_FALSE: return nnp_pkl_bool(p, 0);
	case JSON_NULL: return nnp_pkl_none(p);
	}
	return fail(p, NNP_EINTERNAL, "unknown JSON type");
}

int nnp_pkl_tensor_f32(struct nnp_pkl *p, const char *key, const char *location, int ndim, const int64_t *shape)
{
	int64_t numel = 1, stride[8];
	if (ndim < 0 || ndim > 8)
		return fail(p, NNP_EUSAGE, "tensor with more than 8 dimensions");
	for (int d = ndim - 1; d >= 0; d--) {
		stride[d] = numel;
		numel *= shape[d];
	}
	nnp_pkl_reduce(p, "torch._utils", "_rebuild_tensor_v2");
	nnp_pkl_tuple(p, 6);
	nnp_pkl_persid(p);
	nnp_pkl_tuple(p, 5);
	nnp_pkl_str(p, "storage");
	nnp_pkl_global(p, "torch", "FloatStorage");
	nnp_pkl_str(p, key);
	nnp_pkl_str(p, location);
	nnp_pkl_int(p, numel);
	nnp_pkl_end(p);
	nnp_pkl_end(p);
	nnp_pkl_int(p, 0);
	nnp_pkl_tuple(p, (size_t)ndim);
	for (int d = 0; d < ndim; d++)
		nnp_pkl_int(p, shape[d]);
	nnp_pkl_end(p);
	nnp_pkl_tuple(p, (size_t)ndim);
	for (int d = 0; d < ndim; d++)
		nnp_pkl_int(p, stride[d]);
	nnp_pkl_end(p);
	nnp_pkl_bool(p, 0);
	nnp_pkl_odict(p, 0, 0);
	nnp_pkl_end(p);
	nnp_pkl_end(p);
	return nnp_pkl_end(p);
}

int nnp_pkl_torch_device(struct nnp_pkl *p, const char *name)
{
	nnp_pkl_reduce(p, "torch", "device");
	nnp_pkl_tuple(p, 1);
	nnp_pkl_str(p, name);
	nnp_pkl_end(p);
	return nnp_pkl_end(p);
}

int nnp_pkl_finish(struct nnp_pkl *p, const unsigned char **data, size_t *len)
{
	if (p->err)
		return p->err;
	if (p->depth || p->roots != 1)
		return fail(p, NNP_EUSAGE, "finish with open containers or without exactly one object");
	if (op(p, '.'))
		return p->err;
	*data = p->buf;
	*len = p->len;
	return NNP_OK;
}

/* ------------------------------------------------------------------ */
/* zip container                                                        */

#define ZIP_ALIGN 64
#define ZIP_MAX_ENTRIES 65535
#define ZIP_LIMIT ((uint64_t)UINT32_MAX - 1)

struct zentry {
	char *name;
	uint32_t crc, size, off;
};

struct nnp_pthw {
	struct nnp_atomic a;
	char *prefix;
	uint64_t pos, limit;
	struct zentry *e;
	size_t n, cap;
	int finished;
};

static void le16(unsigned char *b, unsigned v)
{
	b[0] = (unsigned char)v;
	b[1] = (unsigned char)(v >> 8);
}

static void le32(unsigned char *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (unsigned char)(v >> (8 * i));
}

static char *stem(const char *path)
{
	const char *base = strrchr(path, '/'), *dot;
	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	return strndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}

int nnp_pthw_open(const char *path, int force, struct nnp_pthw **out)
{
	struct nnp_pthw *w = calloc(1, sizeof *w);
	int rc;
	*out = NULL;
	if (!w || !(w->prefix = stem(path))) {
		free(w);
		return nnp_err(NNP_ENOMEM, "checkpoint writer: out of memory");
	}
	if (!*w->prefix) {
		free(w->prefix);
		free(w);
		return nnp_err(NNP_EUSAGE, "checkpoint '%s': no file name", path);
	}
	w->limit = ZIP_LIMIT;
	if ((rc = nnp_atomic_open(&w->a, path, force))) {
		free(w->prefix);
		free(w);
		return rc;
	}
	*out = w;
	return NNP_OK;
}

void nnp_pthw_set_limit(struct nnp_pthw *w, uint64_t max_bytes)
{
	w->limit = max_bytes < ZIP_LIMIT ? max_bytes : ZIP_LIMIT;
}

const char *nnp_pthw_prefix(const struct nnp_pthw *w)
{
	return w->prefix;
}

static int too_big(const struct nnp_pthw *w)
{
	return nnp_err(NNP_ENOMEM, "checkpoint '%s': larger than %llu bytes or more than %d members "
		       "(ZIP64 archives are not written)", w->a.path, (unsigned long long)w->limit, ZIP_MAX_ENTRIES);
}

static uint32_t crc_of(const void *data, size_t n)
{
	uLong c = crc32(0L, Z_NULL, 0);
	const unsigned char *b = data;
	while (n) {
		uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
		c = crc32(c, b, k);
		b += k;
		n -= k;
	}
	return (uint32_t)c;
}

int nnp_pthw_add(struct nnp_pthw *w, const char *name, const void *data, size_t n)
{
	unsigned char hdr[30 + 4 + ZIP_ALIGN];
	char *full = nnp_strprintf("%s/%s", w->prefix, name);
	size_t nlen, pad, xlen;
	int rc;
	if (!full)
		return NNP_ENOMEM;
	nlen = strlen(full);
	pad = (ZIP_ALIGN - (w->pos + 30 + nlen + 4) % ZIP_ALIGN) % ZIP_ALIGN;
	xlen = 4 + pad;
	if (w->finished || nlen > 4096) {
		rc = w->finished ? nnp_err(NNP_EINTERNAL, "checkpoint writer: add after finish")
				 : nnp_err(NNP_EUSAGE, "checkpoint '%s': member name too long", w->a.path);
		free(full);
		return rc;
	}
	if (w->n >= ZIP_MAX_ENTRIES || n > w->limit || w->pos + 30 + nlen + xlen + n > w->limit) {
		free(full);
		return too_big(w);
	}
	if (w->n == w->cap) {
		size_t nc = w->cap ? 2 * w->cap : 64;
		struct zentry *ne = realloc(w->e, nc * sizeof *ne);
		if (!ne) {
			free(full);
			return nnp_err(NNP_ENOMEM, "checkpoint writer: out of memory");
		}
		w->e = ne;
		w->cap = nc;
	}
	w->e[w->n] = (struct zentry){ full, crc_of(data, n), (uint32_t)n, (uint32_t)w->pos };
	memset(hdr, 0, sizeof hdr);
	le32(hdr, 0x04034b50);
	le16(hdr + 4, 20);           /* version needed: 2.0 */
	le16(hdr + 12, 0x21);        /* 1980-01-01 00:00 (reproducible) */
	le32(hdr + 14, w->e[w->n].crc);
	le32(hdr + 18, (uint32_t)n);
	le32(hdr + 22, (uint32_t)n);
	le16(hdr + 26, (unsigned)nlen);
	le16(hdr + 28, (unsigned)xlen);
	w->n++;
	if ((rc = nnp_write_all(w->a.fd, hdr, 30, w->a.path)) || (rc = nnp_write_all(w->a.fd, full, nlen, w->a.path)))
		return rc;
	hdr[0] = 'F';                /* torch's padding field "FB" + length, filled with 'Z' */
	hdr[1] = 'B';
	le16(hdr + 2, (unsigned)pad);
	memset(hdr + 4, 'Z', pad);
	if ((rc = nnp_write_all(w->a.fd, hdr, xlen, w->a.path)) || (rc = nnp_write_all(w->a.fd, data, n, w->a.path)))
		return rc;
	w->pos += 30 + nlen + xlen + n;
	return NNP_OK;
}

int nnp_pthw_finish(struct nnp_pthw *w)
{
	unsigned char h[46];
	uint64_t cd = w->pos, cdsize = 0;
	int rc;
	if (w->finished)
		return NNP_OK;
	for (size_t i = 0; i < w->n; i++) {
		size_t nlen = strlen(w->e[i].name);
		memset(h, 0, sizeof h);
		le32(h, 0x02014b50);
		le16(h + 4, 20);       /* made by: 2.0 (MS-DOS attributes) */
		le16(h + 6, 20);
		le16(h + 14, 0x21);
		le32(h + 16, w->e[i].crc);
		le32(h + 20, w->e[i].size);
		le32(h + 24, w->e[i].size);
		le16(h + 28, (unsigned)nlen);
		le32(h + 42, w->e[i].off);
		if ((rc = nnp_write_all(w->a.fd, h, 46, w->a.path)) ||
		    (rc = nnp_write_all(w->a.fd, w->e[i].name, nlen, w->a.path)))
			return rc;
		cdsize += 46 + nlen;
	}
	if (cd + cdsize + 22 > w->limit)
		return too_big(w);
	memset(h, 0, 22);
	le32(h, 0x06054b50);
	le16(h + 8, (unsigned)w->n);
	le16(h + 10, (unsigned)w->n);
	le32(h + 12, (uint32_t)cdsize);
	le32(h + 16, (uint32_t)cd);
	if ((rc = nnp_write_all(w->a.fd, h, 22, w->a.path)))
		return rc;
	w->pos = cd + cdsize + 22;
	w->finished = 1;
	return NNP_OK;
}

static void pthw_free(struct nnp_pthw *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->e[i].name);
	free(w->e);
	free(w->prefix);
	free(w);
}

int nnp_pthw_commit(struct nnp_pthw *w)
{
	int rc;
	if (!w->finished) {
		nnp_atomic_abort(&w->a);
		pthw_free(w);
		return nnp_err(NNP_EINTERNAL, "checkpoint writer: commit before finish");
	}
	rc = nnp_atomic_commit(&w->a);
	pthw_free(w);
	return rc;
}

void nnp_pthw_abort(struct nnp_pthw *w)
{
	if (!w)
		return;
	nnp_atomic_abort(&w->a);
	pthw_free(w);
}
