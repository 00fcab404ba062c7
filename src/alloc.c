/* alloc.c - scratch memory through a replaceable allocator. */
#include "internal.h"

#include <stdlib.h>

static void *default_alloc(size_t size, size_t align, void *ctx) {
    (void)ctx;
    /* aligned_alloc wants size to be a multiple of align. */
    size_t rounded = (size + align - 1) / align * align;
    if (rounded < size) return NULL;
    return aligned_alloc(align, rounded);
}

static void default_free(void *p, void *ctx) {
    (void)ctx;
    free(p);
}

static attn_allocator current = {default_alloc, default_free, NULL};

void attn_set_allocator(const attn_allocator *a) {
    if (a && a->alloc && a->free) {
        current = *a;
    } else {
        current.alloc = default_alloc;
        current.free = default_free;
        current.ctx = NULL;
    }
}

void *attn__alloc(size_t n, size_t size) {
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes)) return NULL;
    if (bytes == 0) bytes = ATTN_ALIGN;
    return current.alloc(bytes, ATTN_ALIGN, current.ctx);
}

void attn__free(void *p) {
    if (p) current.free(p, current.ctx);
}
