/* outfile.c - temporary files and renames for the outputs of a run (see
 * outfile.h). POSIX. */
#define _XOPEN_SOURCE 700
#include "outfile.h"
#include "npy.h"
#include "zipread.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Interrupted (Ctrl-C, kill): remove the temporary files, then die of the
 * signal as if it had not been caught. Only async-signal-safe calls. */
static outset *volatile live_set;

static void on_signal(int sig) {
    outset *s = live_set;
    if (s)
        for (int i = 0; i < s->n; i++)
            if (s->t[i].tmp) unlink(s->t[i].tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void watch_signals(outset *s) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    live_set = s;
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[k], &sa, NULL);
    }
}

int outset_add(outset *s, const char *opt, const char *path) {
    out_target *t = &s->t[s->n];
    memset(t, 0, sizeof *t);
    t->opt = opt;
    t->path = path;
    return s->n++;
}

/* The identity of a file that may not exist yet: its own (device, inode)
 * when it exists, else its folder's plus its name. */
typedef struct file_id {
    int exists;
    dev_t dev;
    ino_t ino;
    const char *base; /* when !exists: the last component */
} file_id;

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

static int identify(const char *path, file_id *id) {
    struct stat st;
    memset(id, 0, sizeof *id);
    if (stat(path, &st) == 0) {
        id->exists = 1;
        id->dev = st.st_dev;
        id->ino = st.st_ino;
        return 0;
    }
    char *d = dir_of(path);
    if (!d) return -1;
    int rc = stat(d, &st);
    free(d);
    if (rc != 0) return -1;
    const char *slash = strrchr(path, '/');
    id->base = slash ? slash + 1 : path;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    return 0;
}

static int same_file(const file_id *a, const file_id *b) {
    if (a->exists != b->exists || a->dev != b->dev || a->ino != b->ino) return 0;
    return a->exists || strcmp(a->base, b->base) == 0;
}

/* Where the bytes of output t go; sets t->dest and t->direct. */
static int resolve(out_target *t, char *err, size_t errlen) {
    struct stat st;
    if (lstat(t->path, &st) == 0 && S_ISLNK(st.st_mode)) {
        char *real = realpath(t->path, NULL);
        if (real && stat(real, &st) == 0 && S_ISREG(st.st_mode)) {
            t->dest = real;
            return 0;
        }
        free(real);
        if (stat(t->path, &st) != 0) { /* dangling: create the file it names */
            t->dest = strdup(t->path);
            t->direct = 1;
            return t->dest ? 0 : zip_fail(err, errlen, "out of memory");
        }
    }
    if (stat(t->path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode))
            return zip_fail(err, errlen, "%s %s: is a directory; name a file", t->opt, t->path);
        t->direct = 1;
    }
    t->dest = strdup(t->path);
    return t->dest ? 0 : zip_fail(err, errlen, "out of memory");
}

int outset_check(outset *s, const char *const *inputs, const char *const *input_opts, int n,
                 char *err, size_t errlen) {
    file_id ids[OUTSET_MAX];
    for (int i = 0; i < s->n; i++) {
        out_target *t = &s->t[i];
        if (resolve(t, err, errlen) != 0) return -1;
        if (identify(t->path, &ids[i]) != 0)
            return zip_fail(err, errlen, "%s %s: cannot write there: %s", t->opt, t->path,
                            strerror(errno));
        if (!ids[i].exists) continue;
        for (int k = 0; k < n; k++) {
            struct stat st;
            if (stat(inputs[k], &st) != 0) continue; /* reported when it is read */
            if (st.st_dev == ids[i].dev && st.st_ino == ids[i].ino)
                return zip_fail(err, errlen,
                                "%s %s is the input %s %s (the same file): writing it would "
                                "destroy the input; choose another output",
                                t->opt, t->path, input_opts[k], inputs[k]);
        }
    }
    for (int i = 0; i < s->n; i++)
        for (int j = 0; j < i; j++)
            if (!s->t[i].direct && same_file(&ids[i], &ids[j]))
                return zip_fail(err, errlen,
                                "%s %s and %s %s are the same file: each output needs its own",
                                s->t[j].opt, s->t[j].path, s->t[i].opt, s->t[i].path);
    return 0;
}

/* Open output t for writing: the destination itself (direct) or a new
 * temporary file beside it. @return the stream, or NULL with a message. */
static FILE *target_open(outset *s, out_target *t, char *err, size_t errlen) {
    FILE *f;
    if (t->direct) {
        f = fopen(t->dest, "wb");
        if (!f) zip_fail(err, errlen, "%s: cannot write: %s", t->path, strerror(errno));
        return f;
    }
    /* "<folder>/.<name>.<pid>-<n>.tmp" beside the destination. The name
     * is known (t->tmp) before the file is created with O_EXCL, so a
     * signal arriving on any thread (OpenMP's included) finds it; a
     * file of that name existing already can only be a leftover of an
     * attn run of the same process id. */
    char *d = dir_of(t->dest);
    const char *slash = strrchr(t->dest, '/');
    const char *base = slash ? slash + 1 : t->dest;
    size_t n = (d ? strlen(d) : 0) + strlen(base) + 64;
    char *tmp = d ? malloc(n) : NULL;
    if (!tmp) {
        free(d);
        zip_fail(err, errlen, "out of memory");
        return NULL;
    }
    watch_signals(s);
    static unsigned counter;
    int fd = -1, e = 0;
    for (int attempt = 0; attempt < 1000 && fd < 0; attempt++) {
        snprintf(tmp, n, "%s/.%s.%ld-%u.tmp", d, base, (long)getpid(), counter++);
        t->tmp = tmp;
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        e = errno;
        if (fd < 0) t->tmp = NULL;
        if (fd < 0 && e != EEXIST) break;
    }
    free(d);
    if (fd < 0) {
        free(tmp);
        zip_fail(err, errlen, "%s: cannot write in its folder: %s", t->path, strerror(e));
        return NULL;
    }
    /* The mode of the file it replaces, else that of a new file. */
    struct stat old;
    mode_t mode;
    if (stat(t->dest, &old) == 0) {
        mode = old.st_mode & 07777;
    } else {
        mode_t um = umask(0);
        umask(um);
        mode = 0666 & ~um;
    }
    fchmod(fd, mode);
    f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        zip_fail(err, errlen, "%s: cannot write: %s", t->path, strerror(errno));
    }
    return f;
}

/* Close an output written with status rc; it counts as written when both
 * the writes and the close succeeded. */
static int target_close(out_target *t, FILE *f, int rc, char *err, size_t errlen) {
    if (fclose(f) != 0 && rc == 0)
        rc = zip_fail(err, errlen, "%s: write failed: %s", t->path, strerror(errno));
    if (rc == 0) t->written = 1;
    return rc;
}

int outset_write(outset *s, int i, const float *data, int ndim, const int64_t *shape,
                 const int64_t *stride, char *err, size_t errlen) {
    out_target *t = &s->t[i];
    FILE *f = target_open(s, t, err, errlen);
    if (!f) return -1;
    return target_close(t, f, npy_write(f, t->path, data, ndim, shape, stride, err, errlen), err,
                        errlen);
}

int outset_write_bytes(outset *s, int i, const void *data, size_t n, char *err, size_t errlen) {
    out_target *t = &s->t[i];
    FILE *f = target_open(s, t, err, errlen);
    if (!f) return -1;
    int rc = fwrite(data, 1, n, f) == n
                 ? 0
                 : zip_fail(err, errlen, "%s: write failed: %s", t->path, strerror(errno));
    return target_close(t, f, rc, err, errlen);
}

int outset_commit(outset *s, char *err, size_t errlen) {
    for (int i = 0; i < s->n; i++) {
        out_target *t = &s->t[i];
        if (!t->written || !t->tmp) continue;
        if (rename(t->tmp, t->dest) != 0)
            return zip_fail(err, errlen, "%s: cannot replace it: %s", t->path, strerror(errno));
        char *tmp = t->tmp;
        t->tmp = NULL;
        free(tmp);
    }
    return 0;
}

void outset_close(outset *s) {
    for (int i = 0; i < s->n; i++) {
        out_target *t = &s->t[i];
        char *tmp = t->tmp;
        t->tmp = NULL;        /* the signal handler no longer sees it */
        if (tmp) unlink(tmp); /* ours: created by mkstemp */
        free(tmp);
        free(t->dest);
        t->tmp = t->dest = NULL;
    }
    s->n = 0;
    live_set = NULL;
}
