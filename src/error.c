/* error.c - status names and the thread-local message of the last failure. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

attn_status attn__fail(attn_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

attn_status attn_set_error(attn_status s, const char *message) {
    snprintf(last_error, sizeof last_error, "%s", message ? message : "");
    return s;
}

const char *attn_last_error(void) {
    return last_error;
}

const char *attn_status_string(attn_status s) {
    switch (s) {
    case ATTN_OK:
        return "ATTN_OK";
    case ATTN_ERR_NULL:
        return "ATTN_ERR_NULL";
    case ATTN_ERR_SHAPE:
        return "ATTN_ERR_SHAPE";
    case ATTN_ERR_STRIDE:
        return "ATTN_ERR_STRIDE";
    case ATTN_ERR_OVERFLOW:
        return "ATTN_ERR_OVERFLOW";
    case ATTN_ERR_NOMEM:
        return "ATTN_ERR_NOMEM";
    case ATTN_ERR_ARG:
        return "ATTN_ERR_ARG";
    case ATTN_ERR_ISA:
        return "ATTN_ERR_ISA";
    }
    return "unknown status";
}
