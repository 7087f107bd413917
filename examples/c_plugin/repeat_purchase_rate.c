/*
 * repeat_purchase_rate: a Mittari metric plugin written in C, against include/mittari_plugin.h.
 *
 * One row per order; the metric returns the share of customers with more than one order,
 * in percent. It implements ABI version 2 (one `compute` call per group; `compute_groups`
 * stays NULL), which every Mittari host loads.
 *
 * Build (Linux):  cc -std=c11 -O2 -Wall -Wextra -shared -fPIC -I include \
 *                    -o libmittari_plugin_repeat_purchase_rate.so \
 *                    examples/c_plugin/repeat_purchase_rate.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mittari_plugin.h"

static const char DESCRIPTOR[] =
    "{\"name\":\"repeat_purchase_rate\",\"version\":\"1.0.0\","
    "\"summary\":\"share of customers who ordered more than once\","
    "\"description\":\"One row per order. repeat_purchase_rate = customers with two or more "
    "orders / customers * 100; undefined without orders. A plugin written in C "
    "(examples/c_plugin).\","
    "\"inputs\":[{\"name\":\"customer_id\",\"data_type\":\"string\",\"required\":true,"
    "\"description\":\"the ordering customer\",\"range\":null}],"
    "\"parameters\":[],"
    "\"outputs\":[{\"name\":\"repeat_purchase_rate\",\"unit\":\"%\","
    "\"description\":\"customers with two or more orders, as a percentage of customers\"},"
    "{\"name\":\"customers\",\"unit\":\"count\",\"description\":\"distinct customers\"}],"
    "\"tables\":[],\"expensive\":false}";

/* Copies `text` into plugin-allocated bytes, freed by free_bytes. */
static int write_bytes(struct OwnedBytes *out, const char *text) {
    size_t len = strlen(text);
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, text, len);
    out->ptr = copy;
    out->len = len;
    out->cap = len;
    return 1;
}

static uint32_t fail(struct OwnedBytes *out, const char *message) {
    char json[512];
    snprintf(json, sizeof json, "{\"failed\":{\"message\":\"%s\"}}", message);
    return write_bytes(out, json) ? MITTARI_STATUS_ERROR : MITTARI_STATUS_BAD_CALL;
}

static size_t metric_count(void) { return 1; }

static uint32_t describe(size_t index, struct OwnedBytes *out) {
    if (out == NULL || index != 0) {
        return MITTARI_STATUS_BAD_CALL;
    }
    return write_bytes(out, DESCRIPTOR) ? MITTARI_STATUS_OK : MITTARI_STATUS_BAD_CALL;
}

/* FNV-1a over a string slice. */
static uint64_t hash(const uint8_t *bytes, int32_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (int32_t i = 0; i < len; i++) {
        h = (h ^ bytes[i]) * 1099511628211ULL;
    }
    return h;
}

/* An open-addressing table of the customers seen: the row of their first order, and how many
 * orders they have. */
struct slot {
    int64_t row; /* -1: empty */
    uint32_t orders;
};

static uint32_t compute(size_t index, const uint8_t *params, size_t params_len,
                        struct ArrowArray *input_array, const struct ArrowSchema *input_schema,
                        const atomic_bool *cancel, struct OwnedBytes *out_meta,
                        struct OwnedTables *out_tables) {
    (void)params;
    (void)params_len;
    if (out_meta == NULL || out_tables == NULL || input_array == NULL || input_schema == NULL) {
        return MITTARI_STATUS_BAD_CALL;
    }
    out_tables->ptr = NULL;
    out_tables->len = 0;
    out_tables->cap = 0;
    uint32_t status = MITTARI_STATUS_OK;
    const struct ArrowArray *ids = NULL;
    for (int64_t i = 0; i < input_schema->n_children; i++) {
        if (strcmp(input_schema->children[i]->name, "customer_id") == 0) {
            ids = input_array->children[i];
        }
    }
    if (index != 0 || ids == NULL) {
        status = fail(out_meta, "the input has no customer_id column");
        goto release;
    }
    /* A utf8 array: buffers are validity (no nulls here: the column is required), int32
     * offsets and the bytes. The struct's offset and the child's add up. */
    const int32_t *offsets = (const int32_t *)ids->buffers[1];
    const uint8_t *data = (const uint8_t *)ids->buffers[2];
    int64_t first = input_array->offset + ids->offset;
    int64_t rows = input_array->length;
    size_t capacity = 16;
    while (capacity < (size_t)rows * 2) {
        capacity *= 2;
    }
    struct slot *table = malloc(capacity * sizeof *table);
    if (table == NULL) {
        status = fail(out_meta, "out of memory");
        goto release;
    }
    for (size_t s = 0; s < capacity; s++) {
        table[s].row = -1;
        table[s].orders = 0;
    }
    int64_t customers = 0, repeat = 0;
    for (int64_t row = 0; row < rows; row++) {
        if ((row & 0xFFFF) == 0 && cancel != NULL &&
            atomic_load_explicit(cancel, memory_order_relaxed)) {
            free(table);
            status = write_bytes(out_meta, "\"cancelled\"") ? MITTARI_STATUS_ERROR
                                                            : MITTARI_STATUS_BAD_CALL;
            goto release;
        }
        const uint8_t *key = data + offsets[first + row];
        int32_t len = offsets[first + row + 1] - offsets[first + row];
        size_t s = (size_t)hash(key, len) & (capacity - 1);
        for (;;) {
            if (table[s].row < 0) {
                table[s].row = row;
                table[s].orders = 1;
                customers++;
                break;
            }
            int64_t other = first + table[s].row;
            int32_t other_len = offsets[other + 1] - offsets[other];
            if (other_len == len && memcmp(data + offsets[other], key, (size_t)len) == 0) {
                if (++table[s].orders == 2) {
                    repeat++;
                }
                break;
            }
            s = (s + 1) & (capacity - 1);
        }
    }
    free(table);
    char json[512];
    if (customers == 0) {
        snprintf(json, sizeof json,
                 "{\"scalars\":[{\"name\":\"repeat_purchase_rate\",\"value\":null,"
                 "\"undefined_reason\":\"no orders\"},{\"name\":\"customers\",\"value\":0}],"
                 "\"warnings\":[],\"table_names\":[]}");
    } else {
        snprintf(json, sizeof json,
                 "{\"scalars\":[{\"name\":\"repeat_purchase_rate\",\"value\":%.17g},"
                 "{\"name\":\"customers\",\"value\":%lld}],\"warnings\":[],\"table_names\":[]}",
                 100.0 * (double)repeat / (double)customers, (long long)customers);
    }
    if (!write_bytes(out_meta, json)) {
        status = MITTARI_STATUS_BAD_CALL;
    }
release:
    /* The input array moved into the plugin: release it. */
    if (input_array->release != NULL) {
        input_array->release(input_array);
    }
    return status;
}

static void free_bytes(struct OwnedBytes bytes) { free(bytes.ptr); }

static void free_tables(struct OwnedTables tables) { free(tables.ptr); }

static const struct PluginVTable VTABLE = {
    .abi_version = 2,
    .metric_count = metric_count,
    .describe = describe,
    .compute = compute,
    .free_bytes = free_bytes,
    .free_tables = free_tables,
    .compute_groups = NULL,
};

uint32_t mittari_plugin_abi_version(void) { return 2; }

const struct PluginVTable *mittari_plugin_entry(void) { return &VTABLE; }
