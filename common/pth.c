/* pth.c — restricted PyTorch checkpoint reader (see pth.h).
 *
 * The pickle VM keeps every object in one arena (a list of pointers freed at
 * the end), so objects may be shared (memo, aliases) without reference
 * counts.  Only data is ever built: globals are whitelisted markers and
 * REDUCE knows each whitelisted callable by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>
#include "err.h"
#include "pth.h"

#define PKL_MAX ((size_t)64 << 20)
#define OBJ_MAX ((size_t)4 << 20)
#define MEMO_MAX ((size_t)4 << 20)
#define STACK_MAX ((size_t)1 << 20)
#define STORAGE_TOTAL_MAX ((uint64_t)8 << 30)
#define DEPTH_MAX 200

enum okind { O_NONE, O_BOOL, O_INT, O_FLOAT, O_STR, O_BYTES, O_LIST, O_TUPLE, O_DICT,
	     O_GLOBAL, O_STORAGE, O_TENSOR, O_OPAQUE };

enum gid { G_ODICT, G_REBUILD, G_STORAGE, G_DEVICE, G_NPSCALAR, G_NPDTYPE, G_CODECS };

struct obj {
	enum okind k;
	long long i;        /* INT, BOOL; GLOBAL: gid; STORAGE: index; OPAQUE: tag */
	double f;
	char *s;            /* STR, BYTES (len n), GLOBAL name */
	size_t n, cap;      /* LIST/TUPLE/DICT items (DICT: 2*pairs) */
	struct obj **v;
	const struct stype *st;  /* GLOBAL storage type */
	struct nnp_pth_tensor t; /* TENSOR (name unset) */
};

struct stype { const char *name, *tdtype; enum nnp_dtype dt; size_t esize; };
static const struct stype stypes[] = {
	{ "FloatStorage", "float32", NNP_F32, 4 },
	{ "HalfStorage", "float16", NNP_F16, 2 },
	{ "BFloat16Storage", "bfloat16", NNP_DT_NONE, 2 },
	{ "DoubleStorage", "float64", NNP_F64, 8 },
	{ "LongStorage", "int64", NNP_I64, 8 },
	{ "IntStorage", "int32", NNP_I32, 4 },
	{ "ShortStorage", "int16", NNP_I16, 2 },
	{ "CharStorage", "int8", NNP_I8, 1 },
	{ "ByteStorage", "uint8", NNP_U8, 1 },
	{ "BoolStorage", "bool", NNP_U8, 1 },
};

struct vm {
	const char *path;
	zip_t *za;
	char *prefix;
	const unsigned char *p, *end, *start;
	struct obj **arena; size_t narena, carena;
	struct obj **stack; size_t nstack, cstack;
	size_t *marks; size_t nmarks, cmarks;
	struct obj **memo; size_t cmemo, nmemo;
	struct nnp_pth *out;
	uint64_t storage_bytes;
};

static struct obj none_obj = { .k = O_NONE };

static int grow(void **v, size_t *cap, size_t need, size_t esz, size_t max)
{
	size_t nc;
	void *nv;
	if (need <= *cap)
		return NNP_OK;
	if (need > max)
		return NNP_ENOMEM;
	nc = *cap ? *cap : 16;
	while (nc < need)
		nc *= 2;
	if (nc > max)
		nc = max;
	nv = realloc(*v, nc * esz);
	if (!nv)
		return NNP_ENOMEM;
	*v = nv;
	*cap = nc;
	return NNP_OK;
}

static int bad(struct vm *m, const char *fmt, const char *what)
{
	return nnp_err(NNP_EDATA, "checkpoint '%s': %s%s", m->path, fmt, what ? what : "");
}

static struct obj *newobj(struct vm *m, enum okind k)
{
	struct obj *o;
	if (grow((void **)&m->arena, &m->carena, m->narena + 1, sizeof *m->arena, OBJ_MAX))
		return NULL;
	if (!(o = calloc(1, sizeof *o)))
		return NULL;
	o->k = k;
	m->arena[m->narena++] = o;
	return o;
}

static void freeobj(struct obj *o)
{
	free(o->s);
	free(o->v);
	free(o);
}

static int nomem(struct vm *m)
{
	return nnp_err(NNP_ENOMEM, "checkpoint '%s': pickle too large (object, stack or memo cap hit or out of memory)", m->path);
}

static int push(struct vm *m, struct obj *o)
{
	if (!o)
		return nomem(m);
	if (grow((void **)&m->stack, &m->cstack, m->nstack + 1, sizeof *m->stack, STACK_MAX))
		return nomem(m);
	m->stack[m->nstack++] = o;
	return NNP_OK;
}

static int pop(struct vm *m, struct obj **o)
{
	size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
	if (m->nstack <= floor)
		return bad(m, "corrupt pickle: stack underflow", NULL);
	*o = m->stack[--m->nstack];
	return NNP_OK;
}

static int top(struct vm *m, struct obj **o)
{
	size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
	if (m->nstack <= floor)
		return bad(m, "corrupt pickle: stack underflow", NULL);
	*o = m->stack[m->nstack - 1];
	return NNP_OK;
}

/* Pop to the last mark: items at m->stack[*base .. nstack). */
static int popmark(struct vm *m, size_t *base)
{
	if (!m->nmarks)
		return bad(m, "corrupt pickle: no MARK", NULL);
	*base = m->marks[--m->nmarks];
	return NNP_OK;
}

static int append_items(struct vm *m, struct obj *c, struct obj **items, size_t n)
{
	if (grow((void **)&c->v, &c->cap, c->n + n, sizeof *c->v, OBJ_MAX))
		return nomem(m);
	memcpy(c->v + c->n, items, n * sizeof *items);
	c->n += n;
	return NNP_OK;
}

static int dict_set(struct vm *m, struct obj *d, struct obj *k, struct obj *v)
{
	struct obj *kv[2] = { k, v };
	if (d->k != O_DICT)
		return bad(m, "corrupt pickle: SETITEM on a non-dict", NULL);
	/* Python replaces a repeated key; checked for dicts up to 1024 pairs
	 * (bounded work; larger dicts append and dict_get finds the last). */
	if (k->k == O_STR && d->n < 2 * 1024)
		for (size_t i = 0; i < d->n; i += 2)
			if (d->v[i]->k == O_STR && !strcmp(d->v[i]->s, k->s)) {
				d->v[i + 1] = v;
				return NNP_OK;
			}
	return append_items(m, d, kv, 2);
}

static struct obj *dict_get(const struct obj *d, const char *key)
{
	if (!d || d->k != O_DICT)
		return NULL;
	for (size_t i = d->n; i >= 2; i -= 2)
		if (d->v[i - 2]->k == O_STR && !strcmp(d->v[i - 2]->s, key))
			return d->v[i - 1];
	return NULL;
}

static int need(struct vm *m, size_t n)
{
	if ((size_t)(m->end - m->p) < n)
		return bad(m, "corrupt pickle: truncated", NULL);
	return NNP_OK;
}

static uint64_t le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int mkstr(struct vm *m, enum okind k, size_t n)
{
	struct obj *o;
	int rc;
	if ((rc = need(m, n)))
		return rc;
	if (!(o = newobj(m, k)) || !(o->s = malloc(n + 1)))
		return nomem(m);
	memcpy(o->s, m->p, n);
	o->s[n] = 0;
	o->n = n;
	m->p += n;
	return push(m, o);
}

static int memo_put(struct vm *m, size_t idx)
{
	struct obj *o = NULL;
	int rc;
	if ((rc = top(m, &o)))
		return rc;
	if (idx >= MEMO_MAX)
		return nomem(m);
	if (idx >= m->cmemo) {
		size_t old = m->cmemo;
		if (grow((void **)&m->memo, &m->cmemo, idx + 1, sizeof *m->memo, MEMO_MAX))
			return nomem(m);
		memset(m->memo + old, 0, (m->cmemo - old) * sizeof *m->memo);
	}
	m->memo[idx] = o;
	if (idx >= m->nmemo)
		m->nmemo = idx + 1;
	return NNP_OK;
}

static int memo_get(struct vm *m, size_t idx)
{
	if (idx >= m->cmemo || !m->memo[idx])
		return bad(m, "corrupt pickle: memo entry missing", NULL);
	return push(m, m->memo[idx]);
}

static int do_global(struct vm *m, const char *mod, const char *name)
{
	char full[512];
	struct obj *o;
	int g = -1;
	const struct stype *st = NULL;
	snprintf(full, sizeof full, "%s.%s", mod, name);
	if (!strcmp(full, "collections.OrderedDict"))
		g = G_ODICT;
	else if (!strcmp(full, "torch._utils._rebuild_tensor_v2"))
		g = G_REBUILD;
	else if (!strcmp(full, "torch.device"))
		g = G_DEVICE;
	else if (!strcmp(full, "numpy.core.multiarray.scalar"))
		g = G_NPSCALAR;
	else if (!strcmp(full, "numpy.dtype"))
		g = G_NPDTYPE;
	else if (!strcmp(full, "_codecs.encode"))
		g = G_CODECS;
	else if (!strcmp(mod, "torch"))
		for (size_t i = 0; i < sizeof stypes / sizeof *stypes; i++)
			if (!strcmp(name, stypes[i].name)) {
				g = G_STORAGE;
				st = &stypes[i];
			}
	if (g < 0)
		return nnp_err(NNP_EDATA, "checkpoint '%s': refusing pickle global '%s': a checkpoint can never execute code",
			       m->path, full);
	if (!(o = newobj(m, O_GLOBAL)) || !(o->s = nnp_strdup(full)))
		return nomem(m);
	o->i = g;
	o->st = st;
	return push(m, o);
}

/* GLOBAL's "module\nname\n" */
static int read_line(struct vm *m, char *buf, size_t cap)
{
	const unsigned char *nl = memchr(m->p, '\n', (size_t)(m->end - m->p));
	size_t n;
	if (!nl)
		return bad(m, "corrupt pickle: truncated GLOBAL", NULL);
	n = (size_t)(nl - m->p);
	if (n >= cap)
		return bad(m, "corrupt pickle: GLOBAL name too long", NULL);
	memcpy(buf, m->p, n);
	buf[n] = 0;
	m->p = nl + 1;
	return NNP_OK;
}

static int load_storage(struct vm *m, struct obj *pid, struct obj **out)
{
	struct obj *o;
	const struct stype *st;
	const char *key;
	char *entry;
	zip_stat_t zs;
	zip_int64_t idx;
	zip_file_t *zf;
	struct nnp_pth_storage *s;
	long long numel;
	uint64_t bytes;
	size_t i;
	if (pid->k != O_TUPLE || pid->n != 5 || pid->v[0]->k != O_STR || strcmp(pid->v[0]->s, "storage") ||
	    pid->v[1]->k != O_GLOBAL || pid->v[1]->i != G_STORAGE || pid->v[2]->k != O_STR ||
	    pid->v[4]->k != O_INT)
		return bad(m, "unsupported persistent id (expected ('storage', type, key, location, numel))", NULL);
	st = pid->v[1]->st;
	key = pid->v[2]->s;
	numel = pid->v[4]->i;
	for (i = 0; i < m->out->nstorages; i++)
		if (!strcmp(m->out->storages[i].key, key))
			break;
	if (i < m->out->nstorages) {
		s = &m->out->storages[i];
		if (s->torch_type != st->name || s->numel != numel)
			return bad(m, "storage used with two different types or sizes: ", key);
	} else {
		if (numel < 0 || (uint64_t)numel > STORAGE_TOTAL_MAX / st->esize)
			return bad(m, "storage size out of range: ", key);
		bytes = (uint64_t)numel * st->esize;
		if (m->storage_bytes + bytes > STORAGE_TOTAL_MAX)
			return nnp_err(NNP_ENOMEM, "checkpoint '%s': storages larger than 8 GiB in all", m->path);
		if (!(entry = nnp_strprintf("%sdata/%s", m->prefix, key)))
			return NNP_ENOMEM;
		idx = zip_name_locate(m->za, entry, 0);
		if (idx < 0 || zip_stat_index(m->za, (zip_uint64_t)idx, 0, &zs) || !(zs.valid & ZIP_STAT_SIZE)) {
			nnp_err(NNP_EDATA, "checkpoint '%s': missing storage entry '%s'", m->path, entry);
			free(entry);
			return NNP_EDATA;
		}
		if (zs.size < bytes) {
			nnp_err(NNP_EDATA, "checkpoint '%s': storage entry '%s' has %llu bytes, %llu expected",
				m->path, entry, (unsigned long long)zs.size, (unsigned long long)bytes);
			free(entry);
			return NNP_EDATA;
		}
		if (grow((void **)&m->out->storages, &(size_t){ m->out->nstorages }, m->out->nstorages + 1,
			 sizeof *m->out->storages, OBJ_MAX)) {
			free(entry);
			return nomem(m);
		}
		s = &m->out->storages[m->out->nstorages];
		memset(s, 0, sizeof *s);
		m->out->nstorages++;
		s->torch_type = st->name;
		s->dtype = st->dt;
		s->esize = st->esize;
		s->numel = numel;
		if (!(s->key = nnp_strdup(key)) || !(s->raw = malloc(bytes ? bytes : 1)) ||
		    !(s->f32 = malloc(numel ? (size_t)numel * sizeof(float) : 1))) {
			free(entry);
			return nomem(m);
		}
		if (!(zf = zip_fopen_index(m->za, (zip_uint64_t)idx, 0))) {
			nnp_err(NNP_EDATA, "checkpoint '%s': cannot open '%s': %s", m->path, entry, zip_strerror(m->za));
			free(entry);
			return NNP_EDATA;
		}
		if (bytes && zip_fread(zf, s->raw, bytes) != (zip_int64_t)bytes) {
			nnp_err(NNP_EDATA, "checkpoint '%s': cannot read '%s': %s", m->path, entry,
				zip_file_strerror(zf));
			zip_fclose(zf);
			free(entry);
			return NNP_EDATA;
		}
		zip_fclose(zf);
		free(entry);
		m->storage_bytes += bytes;
		if (st->dt != NNP_DT_NONE) {
			nnp_to_f32(st->dt, s->raw, s->f32, (size_t)numel);
		} else {   /* bfloat16 */
			const uint16_t *h = s->raw;
			for (long long j = 0; j < numel; j++) {
				uint32_t u = (uint32_t)h[j] << 16;
				memcpy(&s->f32[j], &u, 4);
			}
		}
		if (!strcmp(st->name, "BoolStorage"))
			s->dtype = NNP_U8;
	}
	if (!(o = newobj(m, O_STORAGE)))
		return nomem(m);
	o->i = (long long)i;
	*out = o;
	return NNP_OK;
}

static int rebuild_tensor(struct vm *m, struct obj *args, struct obj **out)
{
	struct obj *o, *sz, *strd;
	struct nnp_pth_storage *s;
	long long off, numel = 1, expect = 1, last = 0;
	if (args->k != O_TUPLE || args->n < 4 || args->v[0]->k != O_STORAGE || args->v[1]->k != O_INT ||
	    args->v[2]->k != O_TUPLE || args->v[3]->k != O_TUPLE)
		return bad(m, "unsupported arguments of _rebuild_tensor_v2", NULL);
	s = &m->out->storages[args->v[0]->i];
	off = args->v[1]->i;
	sz = args->v[2];
	strd = args->v[3];
	if (sz->n != strd->n || sz->n > NNP_PTH_MAXDIM)
		return bad(m, "tensor with too many dimensions or mismatched strides", NULL);
	if (!(o = newobj(m, O_TENSOR)))
		return nomem(m);
	o->t.ndim = (int)sz->n;
	for (size_t d = 0; d < sz->n; d++) {
		if (sz->v[d]->k != O_INT || strd->v[d]->k != O_INT || sz->v[d]->i < 0 ||
		    sz->v[d]->i > ((long long)1 << 40))
			return bad(m, "bad tensor size or stride", NULL);
		o->t.shape[d] = sz->v[d]->i;
		if (numel > ((long long)1 << 40) / (sz->v[d]->i ? sz->v[d]->i : 1))
			return bad(m, "tensor too large", NULL);
		numel *= sz->v[d]->i;
	}
	for (int d = (int)sz->n - 1; d >= 0; d--) {
		if (o->t.shape[d] != 1 && strd->v[d]->i != expect)
			return bad(m, "non-contiguous tensor strides are not supported", NULL);
		expect *= o->t.shape[d];
	}
	last = numel;
	if (off < 0 || off > s->numel || last > s->numel - off)
		return nnp_err(NNP_EDATA, "checkpoint '%s': tensor of %lld elements at offset %lld is larger than its storage '%s' (%lld elements)",
			       m->path, numel, off, s->key, (long long)s->numel);
	o->t.numel = numel;
	o->t.storage = (size_t)args->v[0]->i;
	o->t.offset = off;
	o->t.dtype = s->dtype;
	for (size_t i = 0; i < sizeof stypes / sizeof *stypes; i++)
		if (stypes[i].name == s->torch_type)
			o->t.torch_dtype = stypes[i].tdtype;
	*out = o;
	return NNP_OK;
}

static int reduce(struct vm *m, struct obj *f, struct obj *args, struct obj **out)
{
	struct obj *o;
	if (f->k != O_GLOBAL || args->k != O_TUPLE)
		return bad(m, "REDUCE of something that is not a whitelisted global", NULL);
	switch (f->i) {
	case G_ODICT:
		if (args->n)
			return bad(m, "OrderedDict with arguments is not supported", NULL);
		*out = newobj(m, O_DICT);
		return *out ? NNP_OK : nomem(m);
	case G_REBUILD:
		return rebuild_tensor(m, args, out);
	case G_DEVICE:
		if (args->n < 1 || args->v[0]->k != O_STR)
			return bad(m, "bad torch.device arguments", NULL);
		*out = args->v[0];
		return NNP_OK;
	case G_CODECS:
		if (args->n < 1 || args->v[0]->k != O_STR)
			return bad(m, "bad _codecs.encode arguments", NULL);
		/* latin1: code points < 256 from UTF-8 */
		if (!(o = newobj(m, O_BYTES)) || !(o->s = malloc(args->v[0]->n + 1)))
			return nomem(m);
		for (size_t i = 0; i < args->v[0]->n; i++) {
			unsigned char c = (unsigned char)args->v[0]->s[i];
			if (c >= 0xc0 && i + 1 < args->v[0]->n) {
				c = (unsigned char)((c & 3) << 6 | ((unsigned char)args->v[0]->s[++i] & 0x3f));
			}
			o->s[o->n++] = (char)c;
		}
		*out = o;
		return NNP_OK;
	case G_NPDTYPE:
		if (args->n < 1 || args->v[0]->k != O_STR)
			return bad(m, "bad numpy.dtype arguments", NULL);
		if (!(o = newobj(m, O_OPAQUE)) || !(o->s = nnp_strdup(args->v[0]->s)))
			return nomem(m);
		*out = o;
		return NNP_OK;
	case G_NPSCALAR: {
		const char *dt;
		struct obj *b;
		if (args->n != 2 || args->v[0]->k != O_OPAQUE || args->v[1]->k != O_BYTES)
			return bad(m, "bad numpy scalar arguments", NULL);
		dt = args->v[0]->s;
		b = args->v[1];
		if (!(o = newobj(m, O_FLOAT)))
			return nomem(m);
		if (!strcmp(dt, "f8") && b->n == 8) {
			memcpy(&o->f, b->s, 8);
		} else if (!strcmp(dt, "f4") && b->n == 4) {
			float x;
			memcpy(&x, b->s, 4);
			o->f = x;
		} else if ((!strcmp(dt, "i8") || !strcmp(dt, "i4")) && (b->n == 8 || b->n == 4)) {
			uint64_t u = le((const unsigned char *)b->s, (int)b->n);
			o->k = O_INT;
			o->i = b->n == 8 ? (long long)u : (long long)(int32_t)(uint32_t)u;
		} else {
			o->k = O_OPAQUE;
		}
		*out = o;
		return NNP_OK;
	}
	}
	return bad(m, "REDUCE of a global that cannot be called: ", f->s);
}

static int run(struct vm *m, struct obj **result)
{
	struct obj *a = NULL, *b = NULL, *c = NULL, *o = NULL;
	size_t base = 0, n;
	int rc;
	char mod[256], name[256];
	while (m->p < m->end) {
		unsigned char op = *m->p++;
		size_t at = (size_t)(m->p - m->start - 1);
		switch (op) {
		case 0x80: /* PROTO */
			if ((rc = need(m, 1)))
				return rc;
			if (*m->p < 2 || *m->p > 5)
				return bad(m, "unsupported pickle protocol", NULL);
			m->p++;
			break;
		case 0x95: /* FRAME */
			if ((rc = need(m, 8)))
				return rc;
			m->p += 8;
			break;
		case '.': /* STOP */
			if ((rc = pop(m, result)))
				return rc;
			return NNP_OK;
		case '}': /* EMPTY_DICT */
			if ((rc = push(m, newobj(m, O_DICT))))
				return rc;
			break;
		case ']': /* EMPTY_LIST */
			if ((rc = push(m, newobj(m, O_LIST))))
				return rc;
			break;
		case ')': /* EMPTY_TUPLE */
			if ((rc = push(m, newobj(m, O_TUPLE))))
				return rc;
			break;
		case '(': /* MARK */
			if (grow((void **)&m->marks, &m->cmarks, m->nmarks + 1, sizeof *m->marks, DEPTH_MAX))
				return bad(m, "pickle nested too deeply", NULL);
			m->marks[m->nmarks++] = m->nstack;
			break;
		case 'X': /* BINUNICODE */
			if ((rc = need(m, 4)))
				return rc;
			n = (size_t)le(m->p, 4);
			m->p += 4;
			if ((rc = mkstr(m, O_STR, n)))
				return rc;
			break;
		case 0x8c: /* SHORT_BINUNICODE */
			if ((rc = need(m, 1)))
				return rc;
			n = *m->p++;
			if ((rc = mkstr(m, O_STR, n)))
				return rc;
			break;
		case 'B': /* BINBYTES */
			if ((rc = need(m, 4)))
				return rc;
			n = (size_t)le(m->p, 4);
			m->p += 4;
			if ((rc = mkstr(m, O_BYTES, n)))
				return rc;
			break;
		case 'C': /* SHORT_BINBYTES */
			if ((rc = need(m, 1)))
				return rc;
			n = *m->p++;
			if ((rc = mkstr(m, O_BYTES, n)))
				return rc;
			break;
		case 'J': case 'K': case 'M': /* BININT, BININT1, BININT2 */
			n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
			if ((rc = need(m, n)))
				return rc;
			if (!(o = newobj(m, O_INT)))
				return nomem(m);
			o->i = op == 'J' ? (long long)(int32_t)(uint32_t)le(m->p, 4) : (long long)le(m->p, (int)n);
			m->p += n;
			if ((rc = push(m, o)))
				return rc;
			break;
		case 0x8a: { /* LONG1 */
			uint64_t u;
			if ((rc = need(m, 1)))
				return rc;
			n = *m->p++;
			if (n > 8)
				return bad(m, "integer too large in pickle", NULL);
			if ((rc = need(m, n)))
				return rc;
			u = n ? le(m->p, (int)n) : 0;
			if (n && n < 8 && (m->p[n - 1] & 0x80))
				u |= ~(uint64_t)0 << (8 * n);
			m->p += n;
			if (!(o = newobj(m, O_INT)))
				return nomem(m);
			o->i = (long long)u;
			if ((rc = push(m, o)))
				return rc;
			break;
		}
		case 'G': { /* BINFLOAT, big-endian */
			uint64_t u = 0;
			if ((rc = need(m, 8)))
				return rc;
			for (int i = 0; i < 8; i++)
				u = u << 8 | m->p[i];
			m->p += 8;
			if (!(o = newobj(m, O_FLOAT)))
				return nomem(m);
			memcpy(&o->f, &u, 8);
			if ((rc = push(m, o)))
				return rc;
			break;
		}
		case 'N': /* NONE */
			if ((rc = push(m, &none_obj)))
				return rc;
			break;
		case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
			if (!(o = newobj(m, O_BOOL)))
				return nomem(m);
			o->i = op == 0x88;
			if ((rc = push(m, o)))
				return rc;
			break;
		case 't': /* TUPLE */
			if ((rc = popmark(m, &base)))
				return rc;
			if (!(o = newobj(m, O_TUPLE)))
				return nomem(m);
			if ((rc = append_items(m, o, m->stack + base, m->nstack - base)))
				return rc;
			m->nstack = base;
			if ((rc = push(m, o)))
				return rc;
			break;
		case 0x85: case 0x86: case 0x87: /* TUPLE1/2/3 */
			n = (size_t)(op - 0x84);
			{
				size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
				if (m->nstack < floor + n)
					return bad(m, "corrupt pickle: stack underflow", NULL);
			}
			if (!(o = newobj(m, O_TUPLE)))
				return nomem(m);
			if ((rc = append_items(m, o, m->stack + m->nstack - n, n)))
				return rc;
			m->nstack -= n;
			if ((rc = push(m, o)))
				return rc;
			break;
		case 's': /* SETITEM */
			if ((rc = pop(m, &b)) || (rc = pop(m, &a)) || (rc = top(m, &c)))
				return rc;
			if ((rc = dict_set(m, c, a, b)))
				return rc;
			break;
		case 'u': /* SETITEMS */
			if ((rc = popmark(m, &base)))
				return rc;
			if ((m->nstack - base) % 2)
				return bad(m, "corrupt pickle: odd SETITEMS", NULL);
			n = m->nstack;
			m->nstack = base;
			if ((rc = top(m, &c)))
				return rc;
			for (size_t i = base; i < n; i += 2)
				if ((rc = dict_set(m, c, m->stack[i], m->stack[i + 1])))
					return rc;
			break;
		case 'a': /* APPEND */
			if ((rc = pop(m, &b)) || (rc = top(m, &c)))
				return rc;
			if (c->k != O_LIST)
				return bad(m, "corrupt pickle: APPEND to a non-list", NULL);
			if ((rc = append_items(m, c, &b, 1)))
				return rc;
			break;
		case 'e': /* APPENDS */
			if ((rc = popmark(m, &base)))
				return rc;
			n = m->nstack;
			m->nstack = base;
			if ((rc = top(m, &c)))
				return rc;
			if (c->k != O_LIST)
				return bad(m, "corrupt pickle: APPENDS to a non-list", NULL);
			if ((rc = append_items(m, c, m->stack + base, n - base)))
				return rc;
			break;
		case 'q': case 'r': /* BINPUT, LONG_BINPUT */
			n = op == 'q' ? 1 : 4;
			if ((rc = need(m, n)))
				return rc;
			base = (size_t)le(m->p, (int)n);
			m->p += n;
			if ((rc = memo_put(m, base)))
				return rc;
			break;
		case 0x94: /* MEMOIZE */
			if ((rc = memo_put(m, m->nmemo)))
				return rc;
			break;
		case 'h': case 'j': /* BINGET, LONG_BINGET */
			n = op == 'h' ? 1 : 4;
			if ((rc = need(m, n)))
				return rc;
			base = (size_t)le(m->p, (int)n);
			m->p += n;
			if ((rc = memo_get(m, base)))
				return rc;
			break;
		case 'c': /* GLOBAL */
			if ((rc = read_line(m, mod, sizeof mod)) || (rc = read_line(m, name, sizeof name)))
				return rc;
			if ((rc = do_global(m, mod, name)))
				return rc;
			break;
		case 'R': /* REDUCE */
			if ((rc = pop(m, &b)) || (rc = pop(m, &a)))
				return rc;
			if ((rc = reduce(m, a, b, &o)))
				return rc;
			if ((rc = push(m, o)))
				return rc;
			break;
		case 'b': /* BUILD: state on data objects is ignored */
			if ((rc = pop(m, &b)) || (rc = top(m, &c)))
				return rc;
			if (c->k != O_DICT && c->k != O_OPAQUE && c->k != O_TENSOR)
				return bad(m, "BUILD on an object that is not data", NULL);
			break;
		case 'Q': /* BINPERSID */
			if ((rc = pop(m, &a)))
				return rc;
			if ((rc = load_storage(m, a, &o)))
				return rc;
			if ((rc = push(m, o)))
				return rc;
			break;
		default: {
			char what[64];
			snprintf(what, sizeof what, "0x%02x ('%c') at byte %zu", op, op >= 0x20 && op < 0x7f ? op : '?', at);
			return bad(m, "refusing unsupported pickle opcode ", what);
		}
		}
	}
	return bad(m, "corrupt pickle: no STOP", NULL);
}

/* *budget caps the nodes visited: shared or cyclic pickle objects cannot
 * blow up the conversion. */
static json_t *to_json(const struct obj *o, int depth, size_t *budget)
{
	json_t *j;
	if (depth > DEPTH_MAX || !*budget)
		return NULL;
	--*budget;
	switch (o->k) {
	case O_NONE: return json_null();
	case O_BOOL: return json_boolean(o->i);
	case O_INT: return json_integer(o->i);
	case O_FLOAT: return json_real(o->f);
	case O_STR: return json_stringn(o->s, o->n);
	case O_LIST: case O_TUPLE:
		j = json_array();
		for (size_t i = 0; j && i < o->n; i++) {
			json_t *e = to_json(o->v[i], depth + 1, budget);
			if (e)
				json_array_append_new(j, e);
		}
		return j;
	case O_DICT:
		j = json_object();
		for (size_t i = 0; j && i < o->n; i += 2) {
			json_t *e;
			char kb[32];
			const char *k = kb;
			if (o->v[i]->k == O_STR)
				k = o->v[i]->s;
			else if (o->v[i]->k == O_INT)
				snprintf(kb, sizeof kb, "%lld", o->v[i]->i);
			else
				continue;
			if ((e = to_json(o->v[i + 1], depth + 1, budget)))
				json_object_set_new(j, k, e);
		}
		return j;
	default:
		return NULL;
	}
}

static int build_result(struct vm *m, struct obj *root)
{
	struct obj *nw = dict_get(root, "network_weights"), *o;
	struct nnp_pth *p = m->out;
	json_t *keys;
	static const char *const scalars[] = { "trainer_name", "current_epoch", "inference_allowed_mirroring_axes",
					       "init_args", "logging" };
	if (root->k != O_DICT)
		return bad(m, "the pickle is not a dict (not an nnU-Net checkpoint)", NULL);
	if (!nw || nw->k != O_DICT)
		return bad(m, "no 'network_weights' state dict", NULL);
	if (!(p->tensors = calloc(nw->n / 2 + 1, sizeof *p->tensors)))
		return nomem(m);
	for (size_t i = 0; i < nw->n; i += 2) {
		struct nnp_pth_tensor *t = &p->tensors[p->ntensors];
		struct nnp_pth_storage *s;
		if (nw->v[i]->k != O_STR || nw->v[i + 1]->k != O_TENSOR)
			return bad(m, "'network_weights' holds something that is not a named tensor", NULL);
		*t = nw->v[i + 1]->t;
		if (!(t->name = nnp_strdup(nw->v[i]->s)))
			return NNP_ENOMEM;
		p->ntensors++;
		s = &p->storages[t->storage];
		t->raw = (const char *)s->raw + (size_t)t->offset * s->esize;
		t->data = s->f32 + t->offset;
	}
	if (!(p->meta = json_object()) || !(keys = json_array()))
		return nomem(m);
	json_object_set_new(p->meta, "keys", keys);
	for (size_t i = 0; i < root->n; i += 2)
		if (root->v[i]->k == O_STR)
			json_array_append_new(keys, json_string(root->v[i]->s));
	for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++) {
		json_t *j;
		size_t budget = (size_t)1 << 20;
		if ((o = dict_get(root, scalars[i])) && (j = to_json(o, 0, &budget)))
			json_object_set_new(p->meta, scalars[i], j);
	}
	return NNP_OK;
}

static int find_pickle(struct vm *m, zip_int64_t *idx)
{
	zip_int64_t n = zip_get_num_entries(m->za, 0);
	for (zip_int64_t i = 0; i < n; i++) {
		const char *nm = zip_get_name(m->za, (zip_uint64_t)i, 0);
		const char *sl;
		if (!nm)
			continue;
		sl = strchr(nm, '/');
		if (sl && sl != nm && !strcmp(sl, "/data.pkl")) {
			if (!(m->prefix = malloc((size_t)(sl - nm) + 2)))
				return NNP_ENOMEM;
			memcpy(m->prefix, nm, (size_t)(sl - nm) + 1);
			m->prefix[sl - nm + 1] = 0;
			*idx = i;
			return NNP_OK;
		}
	}
	return bad(m, "no PREFIX/data.pkl in the archive (not a PyTorch checkpoint)", NULL);
}

/* torch >= 2.1 records PREFIX/byteorder ("little" or "big"); storages are
 * read as little-endian, so anything else is refused. */
static int check_byteorder(struct vm *m)
{
	char *entry = nnp_strprintf("%sbyteorder", m->prefix), buf[16] = { 0 };
	zip_file_t *zf;
	zip_int64_t n;
	if (!entry)
		return NNP_ENOMEM;
	zf = zip_fopen(m->za, entry, 0);
	free(entry);
	if (!zf)
		return NNP_OK;   /* older files: always little-endian */
	n = zip_fread(zf, buf, sizeof buf - 1);
	zip_fclose(zf);
	if (n != 6 || memcmp(buf, "little", 6))
		return bad(m, "storages are not little-endian (byteorder entry is not 'little')", NULL);
	return NNP_OK;
}

int nnp_pth_load(const char *path, struct nnp_pth **out)
{
	struct vm m;
	int zerr = 0, rc;
	zip_int64_t idx = 0;
	zip_stat_t zs;
	zip_file_t *zf = NULL;
	unsigned char *pkl = NULL;
	struct obj *root = NULL;
	*out = NULL;
	memset(&m, 0, sizeof m);
	m.path = path;
	if (!(m.out = calloc(1, sizeof *m.out)) || !(m.out->path = nnp_strdup(path))) {
		nnp_pth_free(m.out);
		return nnp_err(NNP_ENOMEM, "out of memory");
	}
	if (!(m.za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr))) {
		zip_error_t ze;
		zip_error_init_with_code(&ze, zerr);
		rc = nnp_err(NNP_EDATA, "checkpoint '%s': cannot open the zip archive: %s", path, zip_error_strerror(&ze));
		zip_error_fini(&ze);
		goto done;
	}
	if ((rc = find_pickle(&m, &idx)) || (rc = check_byteorder(&m)))
		goto done;
	if (zip_stat_index(m.za, (zip_uint64_t)idx, 0, &zs) || !(zs.valid & ZIP_STAT_SIZE)) {
		rc = bad(&m, "cannot stat data.pkl", NULL);
		goto done;
	}
	if (zs.size > PKL_MAX) {
		rc = nnp_err(NNP_ENOMEM, "checkpoint '%s': data.pkl larger than 64 MiB", path);
		goto done;
	}
	if (!(pkl = malloc(zs.size ? zs.size : 1))) {
		rc = nomem(&m);
		goto done;
	}
	if (!(zf = zip_fopen_index(m.za, (zip_uint64_t)idx, 0)) ||
	    zip_fread(zf, pkl, zs.size) != (zip_int64_t)zs.size) {
		rc = nnp_err(NNP_EDATA, "checkpoint '%s': cannot read data.pkl: %s", path,
			     zf ? zip_file_strerror(zf) : zip_strerror(m.za));
		goto done;
	}
	m.start = m.p = pkl;
	m.end = pkl + zs.size;
	if ((rc = run(&m, &root)))
		goto done;
	rc = build_result(&m, root);
done:
	if (zf)
		zip_fclose(zf);
	if (m.za)
		zip_discard(m.za);
	for (size_t i = 0; i < m.narena; i++)
		freeobj(m.arena[i]);
	free(m.arena);
	free(m.stack);
	free(m.marks);
	free(m.memo);
	free(m.prefix);
	free(pkl);
	if (rc) {
		nnp_pth_free(m.out);
		return rc;
	}
	*out = m.out;
	return NNP_OK;
}

void nnp_pth_free(struct nnp_pth *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->ntensors; i++)
		free(p->tensors[i].name);
	free(p->tensors);
	for (size_t i = 0; i < p->nstorages; i++) {
		free(p->storages[i].key);
		free(p->storages[i].raw);
		free(p->storages[i].f32);
	}
	free(p->storages);
	json_decref(p->meta);
	free(p->path);
	free(p);
}

const struct nnp_pth_tensor *nnp_pth_find(const struct nnp_pth *p, const char *name)
{
	for (size_t i = 0; p && i < p->ntensors; i++)
		if (!strcmp(p->tensors[i].name, name))
			return &p->tensors[i];
	return NULL;
}
