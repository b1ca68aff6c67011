/* pyjson.h — JSON as Python's json module reads and writes it: the bare
 * tokens NaN, Infinity and -Infinity (which jansson refuses) in and out.
 *
 * nnU-Net's summary.json and postprocessing.json hold NaN wherever a class
 * is absent from both prediction and reference.  Here a non-finite number
 * lives in a jansson tree as a marker string (a NUL byte then the token,
 * e.g. "\0NaN"), which no JSON text produces by accident; the loaders turn
 * the bare tokens outside strings into markers, nnp_pyjson_dumps turns the
 * markers back into bare tokens, so a file read and written again keeps its
 * bytes (floats in Python's repr, json.c).
 *
 * Ownership: loaders return a new reference the caller json_decref's;
 * nnp_pyjson_real returns a new reference; dumps returns malloc'ed text.
 */
#ifndef NNP_PYJSON_H
#define NNP_PYJSON_H

#include <jansson.h>

#define NNP_PYJSON_MAX ((size_t)1 << 30)   /* bytes of one file */

/* Parse text (n bytes); what names it in errors (NNP_EDATA: line, column). */
int nnp_pyjson_loads(const char *text, size_t n, const char *what, json_t **out);
/* Load a file (at most NNP_PYJSON_MAX bytes). */
int nnp_pyjson_load(const char *path, json_t **out);
/* A number: a JSON real, or the marker for NaN/Infinity/-Infinity. */
json_t *nnp_pyjson_real(double v);
/* 1 and *v set when j is an integer, a real or a marker; else 0. */
int nnp_pyjson_number(const json_t *j, double *v);
/* Python's json.dumps(obj, indent, sort_keys) with the markers as bare tokens. */
int nnp_pyjson_dumps(const json_t *j, int indent, int flags, char **out);
/* Atomic write of nnp_pyjson_dumps (no trailing newline, like json.dump). */
int nnp_pyjson_write_file(const json_t *j, const char *path, int indent, int flags, int force);

#endif
