/* json.c — Python-compatible JSON output (see json.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atomic.h"
#include "err.h"
#include "json.h"

#define DEPTH_MAX 256

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void put(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *q;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (!(q = realloc(b->p, cap))) {
			b->oom = 1;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void puts_(struct sbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

void nnp_py_float(double v, char *buf, size_t n)
{
	char tmp[40], digits[24];
	int p, e, nd = 0;
	const char *s;
	if (isnan(v)) {
		snprintf(buf, n, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, n, v > 0 ? "Infinity" : "-Infinity");
		return;
	}
	if (v == 0) {
		snprintf(buf, n, signbit(v) ? "-0.0" : "0.0");
		return;
	}
	for (p = 1; p <= 17; p++) {
		snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	/* tmp = [-]d[.ddd]e[+-]XX */
	s = tmp + (tmp[0] == '-');
	for (; *s && *s != 'e'; s++)
		if (*s >= '0' && *s <= '9')
			digits[nd++] = *s;
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';
	e = atoi(s + 1);
	{
		struct sbuf b = { 0 };
		if (v < 0)
			puts_(&b, "-");
		if (e >= -4 && e < 16) {
			if (e >= 0) {
				for (int i = 0; i <= e; i++)
					put(&b, i < nd ? &digits[i] : "0", 1);
				puts_(&b, ".");
				if (nd > e + 1)
					puts_(&b, digits + e + 1);
				else
					puts_(&b, "0");
			} else {
				puts_(&b, "0.");
				for (int i = 0; i < -e - 1; i++)
					puts_(&b, "0");
				puts_(&b, digits);
			}
		} else {
			char ex[16];
			put(&b, digits, 1);
			if (nd > 1) {
				puts_(&b, ".");
				puts_(&b, digits + 1);
			}
			snprintf(ex, sizeof ex, "e%c%02d", e < 0 ? '-' : '+', abs(e));
			puts_(&b, ex);
		}
		snprintf(buf, n, "%s", b.p ? b.p : "0.0");
		free(b.p);
	}
}

/* Decode one UTF-8 code point; returns bytes used (1 on invalid input). */
static int utf8_next(const unsigned char *s, size_t n, unsigned *cp)
{
	int len = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
	if (!len || (size_t)len > n) {
		*cp = 0xfffd;
		return 1;
	}
	*cp = len == 1 ? s[0] : s[0] & (0x7f >> len);
	for (int i = 1; i < len; i++)
		*cp = (*cp << 6) | (s[i] & 0x3f);
	return len;
}

static void put_string(struct sbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	char esc[16];
	puts_(b, "\"");
	for (size_t i = 0; i < n;) {
		unsigned cp;
		int k = utf8_next(u + i, n - i, &cp);
		i += (size_t)k;
		switch (cp) {
		case '"': puts_(b, "\\\""); continue;
		case '\\': puts_(b, "\\\\"); continue;
		case '\n': puts_(b, "\\n"); continue;
		case '\r': puts_(b, "\\r"); continue;
		case '\t': puts_(b, "\\t"); continue;
		case '\b': puts_(b, "\\b"); continue;
		case '\f': puts_(b, "\\f"); continue;
		default: break;
		}
		if (cp < 0x20 || (cp >= 0x7f && cp < 0x10000)) {
			if (cp == 0x7f) {
				puts_(b, "\x7f");
				continue;
			}
			snprintf(esc, sizeof esc, "\\u%04x", cp);
			puts_(b, esc);
		} else if (cp >= 0x10000) {
			unsigned v = cp - 0x10000;
			snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
			puts_(b, esc);
		} else {
			char c = (char)cp;
			put(b, &c, 1);
		}
	}
	puts_(b, "\"");
}

static void newline(struct sbuf *b, int indent, int level)
{
	puts_(b, "\n");
	for (int i = 0; i < indent * level; i++)
		puts_(b, " ");
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int dump(struct sbuf *b, const json_t *j, int indent, int flags, int level);

static int dump_object(struct sbuf *b, const json_t *j, int indent, int flags, int level)
{
	size_t n = json_object_size(j), i = 0;
	const char **keys;
	const char *k;
	json_t *v;
	if (n == 0) {
		puts_(b, "{}");
		return NNP_OK;
	}
	if (!(keys = malloc(n * sizeof *keys)))
		return nnp_err(NNP_ENOMEM, "out of memory");
	json_object_foreach((json_t *)j, k, v)
		keys[i++] = k;
	if (flags & NNP_JSON_SORT_KEYS)
		qsort(keys, n, sizeof *keys, cmp_keys);
	puts_(b, "{");
	for (i = 0; i < n; i++) {
		if (i)
			puts_(b, indent >= 0 ? "," : ", ");
		if (indent >= 0)
			newline(b, indent, level + 1);
		put_string(b, keys[i], strlen(keys[i]));
		puts_(b, ": ");
		if (dump(b, json_object_get(j, keys[i]), indent, flags, level + 1)) {
			free(keys);
			return NNP_EDATA;
		}
	}
	free(keys);
	if (indent >= 0)
		newline(b, indent, level);
	puts_(b, "}");
	return NNP_OK;
}

static int dump_array(struct sbuf *b, const json_t *j, int indent, int flags, int level)
{
	size_t n = json_array_size(j);
	if (n == 0) {
		puts_(b, "[]");
		return NNP_OK;
	}
	puts_(b, "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			puts_(b, indent >= 0 ? "," : ", ");
		if (indent >= 0)
			newline(b, indent, level + 1);
		if (dump(b, json_array_get(j, i), indent, flags, level + 1))
			return NNP_EDATA;
	}
	if (indent >= 0)
		newline(b, indent, level);
	puts_(b, "]");
	return NNP_OK;
}

static int dump(struct sbuf *b, const json_t *j, int indent, int flags, int level)
{
	char num[48];
	if (level > DEPTH_MAX)
		return nnp_err(NNP_EDATA, "JSON nested deeper than %d levels", DEPTH_MAX);
	switch (json_typeof(j)) {
	case JSON_OBJECT: return dump_object(b, j, indent, flags, level);
	case JSON_ARRAY: return dump_array(b, j, indent, flags, level);
	case JSON_STRING: put_string(b, json_string_value(j), json_string_length(j)); return NNP_OK;
	case JSON_INTEGER:
		snprintf(num, sizeof num, "%lld", (long long)json_integer_value(j));
		puts_(b, num);
		return NNP_OK;
	case JSON_REAL:
		nnp_py_float(json_real_value(j), num, sizeof num);
		puts_(b, num);
		return NNP_OK;
	case JSON_TRUE: puts_(b, "true"); return NNP_OK;
	case JSON_FALSE: puts_(b, "false"); return NNP_OK;
	default: puts_(b, "null"); return NNP_OK;
	}
}

int nnp_json_dumps(const json_t *j, int indent, int flags, char **out)
{
	struct sbuf b = { 0 };
	int rc = dump(&b, j, indent, flags, 0);
	if (!rc && b.oom)
		rc = nnp_err(NNP_ENOMEM, "out of memory formatting JSON");
	if (rc) {
		free(b.p);
		return rc;
	}
	*out = b.p ? b.p : strdup("");
	return *out ? NNP_OK : nnp_err(NNP_ENOMEM, "out of memory");
}

int nnp_json_write_file(const json_t *j, const char *path, int indent, int flags, int force)
{
	char *s;
	int rc = nnp_json_dumps(j, indent, flags, &s);
	if (rc)
		return rc;
	rc = nnp_write_text_file(path, s, force);
	free(s);
	return rc;
}

int nnp_json_load(const char *path, json_t **out)
{
	json_error_t e;
	*out = json_load_file(path, 0, &e);
	if (!*out) {
		if (e.line < 0 || e.position == 0)
			return nnp_err(NNP_EDATA, "cannot read '%s': %s", path, e.text);
		return nnp_err(NNP_EDATA, "'%s': invalid JSON at line %d, column %d: %s", path, e.line, e.column,
			       e.text);
	}
	return NNP_OK;
}
