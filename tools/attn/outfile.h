/* outfile.h - the outputs of one `attn run`, written so that no data is lost.
 *
 * - An output that is one of the inputs (the same file by device and inode,
 *   through symlinks too) is refused before anything is read or written, and
 *   so are two outputs naming one file.
 * - Each output is written to a new temporary file in its destination's
 *   folder; when every output has been written, they are renamed into place
 *   (a rename within a folder is atomic). A failed or interrupted run
 *   (SIGINT, SIGTERM, SIGHUP, SIGQUIT) leaves the old contents, and removes
 *   only the temporary files it created. Replaced files keep their mode.
 * - A symlink is written through: its target is replaced, the link stays.
 * - An existing file that is not a regular file (a character device such as
 *   /dev/null or /dev/full, a FIFO) is written in place, never removed or
 *   renamed over.
 */
#ifndef ATTN_CLI_OUTFILE_H
#define ATTN_CLI_OUTFILE_H

#include <stddef.h>
#include <stdint.h>

#define OUTSET_MAX 4

typedef struct out_target {
    const char *opt;  /* the option that named it, for messages ("-o") */
    const char *path; /* as given */
    char *dest;       /* the file to replace: path, or a symlink's target (malloc'd) */
    char *tmp;        /* the temporary file while it exists (malloc'd), else NULL */
    int direct;       /* an existing non-regular file: written in place */
    int written;
} out_target;

typedef struct outset {
    int n;
    out_target t[OUTSET_MAX];
} outset;

/* Register an output. @return its index. */
int outset_add(outset *s, const char *opt, const char *path);

/* Refuse an output that is one of the n input files, or the same file as
 * another output. @return 0, or -1 with a message in err. */
int outset_check(outset *s, const char *const *inputs, const char *const *input_opts, int n,
                 char *err, size_t errlen);

/* Write output i as a float32 .npy (see npy_write). @return 0, or -1 with a
 * message (nothing is left behind but a direct target's partial bytes). */
int outset_write(outset *s, int i, const float *data, int ndim, const int64_t *shape,
                 const int64_t *stride, char *err, size_t errlen);

/* Write output i as the n bytes at data (a PNG picture). @return 0, or -1
 * with a message, as outset_write. */
int outset_write_bytes(outset *s, int i, const void *data, size_t n, char *err, size_t errlen);

/* Rename every written output into place. @return 0, or -1 with a message. */
int outset_commit(outset *s, char *err, size_t errlen);

/* Remove the temporary files still present and free the set. Call always. */
void outset_close(outset *s);

#endif
