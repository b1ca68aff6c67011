/* pyjson.c — JSON with Python's NaN/Infinity tokens (see pyjson.h). */
#include "pyjson.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "err.h"
#include "json.h"

static const char *const tokens[3] = { "NaN", "Infinity", "-Infinity" };

/* The marker of token k as a JSON string literal. */
static void marker_literal(int k, char *buf, size_t n)
{
	snprintf(buf, n, "\"\\u0000%s\"", tokens[k]);
}

/* Index of the non-finite token at s (n bytes left), or -1. */
static int token_at(const char *s, size_t n)
{
	for (int k = 2; k >= 0; k--) {
		size_t l = strlen(tokens[k]);
		if (n >= l && !memcmp(s, tokens[k], l))
			return k;
	}
	return -1;
}

static int oom(void)
{
	return nnp_err(NNP_ENOMEM, "out of memory");
}

int nnp_pyjson_loads(const char *text, size_t n, const char *what, json_t **out)
{
	/* each token grows by at most 10 bytes ("\u0000" and two quotes) */
	size_t cap = n + 1, len = 0;
	char *buf = malloc(cap), lit[32];
	int in_str = 0;
	json_error_t e;

	*out = NULL;
	if (!buf)
		return oom();
	for (size_t i = 0; i < n; i++) {
		char c = text[i];
		int k = -1;
		if (in_str) {
			if (c == '\\' && i + 1 < n) {
				buf[len++] = c;
				c = text[++i];
			} else if (c == '"') {
				in_str = 0;
			}
		} else if (c == '"') {
			in_str = 1;
		} else if ((c == 'N' || c == 'I' || c == '-') && (k = token_at(text + i, n - i)) >= 0) {
			size_t l;
			marker_literal(k, lit, sizeof lit);
			l = strlen(lit);
			if (len + l + (n - i) + 1 > cap) {
				char *q;
				cap = 2 * cap + l + 1;
				if (!(q = realloc(buf, cap))) {
					free(buf);
					return oom();
				}
				buf = q;
			}
			memcpy(buf + len, lit, l);
			len += l;
			i += strlen(tokens[k]) - 1;
			continue;
		}
		if (len + 2 > cap) {
			char *q = realloc(buf, cap *= 2);
			if (!q) {
				free(buf);
				return oom();
			}
			buf = q;
		}
		buf[len++] = c;
	}
	*out = json_loadb(buf, len, JSON_ALLOW_NUL, &e);
	free(buf);
	if (!*out)
		return nnp_err(NNP_EDATA, "'%s': invalid JSON at line %d: %s", what, e.line, e.text);
	return NNP_OK;
}

int nnp_pyjson_load(const char *path, json_t **out)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t n = 0, cap = 0;
	int rc;

	*out = NULL;
	if (!f)
		return nnp_err(NNP_EDATA, "cannot read '%s': %s", path, strerror(errno));
	for (;;) {
		size_t k;
		if (n == cap) {
			char *q;
			if (cap >= NNP_PYJSON_MAX) {
				fclose(f);
				free(text);
				return nnp_err(NNP_ENOMEM, "'%s': larger than %zu bytes", path, NNP_PYJSON_MAX);
			}
			cap = cap ? 2 * cap : 65536;
			if (!(q = realloc(text, cap))) {
				fclose(f);
				free(text);
				return oom();
			}
			text = q;
		}
		k = fread(text + n, 1, cap - n, f);
		n += k;
		if (k == 0)
			break;
	}
	if (ferror(f)) {
		fclose(f);
		free(text);
		return nnp_err(NNP_EDATA, "cannot read '%s': %s", path, strerror(errno));
	}
	fclose(f);
	rc = nnp_pyjson_loads(text, n, path, out);
	free(text);
	return rc;
}

json_t *nnp_pyjson_real(double v)
{
	char m[16];
	int k;
	if (isfinite(v))
		return json_real(v);
	k = isnan(v) ? 0 : v > 0 ? 1 : 2;
	m[0] = '\0';
	memcpy(m + 1, tokens[k], strlen(tokens[k]));
	return json_stringn(m, 1 + strlen(tokens[k]));
}

int nnp_pyjson_number(const json_t *j, double *v)
{
	if (json_is_integer(j)) {
		*v = (double)json_integer_value(j);
		return 1;
	}
	if (json_is_real(j)) {
		*v = json_real_value(j);
		return 1;
	}
	if (json_is_string(j) && json_string_length(j) > 1 && json_string_value(j)[0] == '\0') {
		const char *s = json_string_value(j) + 1;
		size_t l = json_string_length(j) - 1;
		for (int k = 0; k < 3; k++)
			if (l == strlen(tokens[k]) && !memcmp(s, tokens[k], l)) {
				*v = k == 0 ? NAN : k == 1 ? INFINITY : -INFINITY;
				return 1;
			}
	}
	return 0;
}

int nnp_pyjson_dumps(const json_t *j, int indent, int flags, char **out)
{
	char *s, *o, lit[32];
	size_t n, len = 0;
	int in_str = 0, rc = nnp_json_dumps(j, indent, flags, &s);

	*out = NULL;
	if (rc)
		return rc;
	n = strlen(s);
	if (!(o = malloc(n + 1))) {
		free(s);
		return oom();
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\') {
				o[len++] = c;
				c = s[++i];
			} else if (c == '"') {
				in_str = 0;
			}
		} else if (c == '"') {
			int k;
			for (k = 0; k < 3; k++) {
				marker_literal(k, lit, sizeof lit);
				if (!strncmp(s + i, lit, strlen(lit)))
					break;
			}
			if (k < 3) {   /* the literal is longer than the token: o never overtakes s */
				memcpy(o + len, tokens[k], strlen(tokens[k]));
				len += strlen(tokens[k]);
				i += strlen(lit) - 1;
				continue;
			}
			in_str = 1;
		}
		o[len++] = c;
	}
	o[len] = '\0';
	free(s);
	*out = o;
	return NNP_OK;
}

int nnp_pyjson_write_file(const json_t *j, const char *path, int indent, int flags, int force)
{
	char *s;
	int rc = nnp_pyjson_dumps(j, indent, flags, &s);
	if (rc)
		return rc;
	rc = nnp_write_text_file(path, s, force);
	free(s);
	return rc;
}
