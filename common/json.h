/* json.h — JSON files as nnU-Net writes them, through jansson.
 *
 * nnp_json_dumps formats exactly like Python's json.dumps(obj, indent=N,
 * sort_keys=S) with ensure_ascii: floats in Python's shortest repr
 * ("0.772", "1e-05", "100.0"), so files nnpipe writes can be compared
 * byte for byte with nnU-Net's.  Ownership: returned strings are malloc'ed;
 * nnp_json_load returns a new reference the caller json_decref's.
 */
#ifndef NNP_JSON_H
#define NNP_JSON_H

#include <jansson.h>

#define NNP_JSON_SORT_KEYS 1

/* indent < 0: one line with ", " and ": " separators (Python's default). */
int nnp_json_dumps(const json_t *j, int indent, int flags, char **out);
/* Atomic write (temp + rename), trailing newline omitted like json.dump. */
int nnp_json_write_file(const json_t *j, const char *path, int indent, int flags, int force);
/* Load a file; errors name the file, line and column. */
int nnp_json_load(const char *path, json_t **out);
/* Python repr of a double into buf (>= 32 bytes). */
void nnp_py_float(double v, char *buf, size_t n);

#endif
