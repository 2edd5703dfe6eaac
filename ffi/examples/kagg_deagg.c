/* kagg-deagg: reads one Kinesis record's raw bytes from standard input and
 * prints its user records as JSON lines, exactly as
 * `kinesis-agg deagg --input raw` does. On a broken body it prints nothing
 * on standard output, names the offset on standard error and exits 1.
 *
 * The library allocates nothing; this program takes the input buffer and
 * the key tables from the heap because it does not know their size before
 * reading. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis_agg.h"

#define MAX_INPUT (10u * 1024u * 1024u) /* the largest Kinesis record */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void put_base64(const uint8_t *p, size_t n) {
    size_t i = 0;
    putchar('"');
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) | p[i + 2];
        putchar(B64[v >> 18]);
        putchar(B64[(v >> 12) & 63]);
        putchar(B64[(v >> 6) & 63]);
        putchar(B64[v & 63]);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        putchar(B64[v >> 18]);
        putchar(B64[(v >> 12) & 63]);
        fputs("==", stdout);
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8);
        putchar(B64[v >> 18]);
        putchar(B64[(v >> 12) & 63]);
        putchar(B64[(v >> 6) & 63]);
        putchar('=');
    }
    putchar('"');
}

/* A JSON string as serde_json writes it: quote, backslash and control
 * characters escaped, everything else (UTF-8 included) as it is. */
static void put_string(kagg_str s) {
    static const char HEX[] = "0123456789abcdef";
    size_t i;
    if (s.ptr == NULL) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        switch (c) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\b': fputs("\\b", stdout); break;
        case '\f': fputs("\\f", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (c < 0x20) {
                printf("\\u00%c%c", HEX[c >> 4], HEX[c & 15]);
            } else {
                putchar(c);
            }
        }
    }
    putchar('"');
}

static int print_record(void *ctx, const kagg_user_record *r) {
    kagg_tags tags = r->tags;
    kagg_tag tag;
    int found = 0, first = 1;
    (void)ctx;
    printf("{\"record\":0,\"aggregated\":true,\"sub_sequence_number\":%llu,\"partition_key\":",
           (unsigned long long)r->sub_sequence_number);
    put_string(r->partition_key);
    fputs(",\"explicit_hash_key\":", stdout);
    put_string(r->explicit_hash_key);
    fputs(",\"data\":", stdout);
    put_base64(r->data.ptr, r->data.len);
    fputs(",\"sequence_number\":null,\"tags\":[", stdout);
    while (kagg_next_tag(&tags, &tag, &found) == KAGG_OK && found) {
        if (!first) putchar(',');
        first = 0;
        fputs("{\"key\":", stdout);
        put_string(tag.key);
        fputs(",\"value\":", stdout);
        put_string(tag.value);
        putchar('}');
    }
    fputs("]}\n", stdout);
    return 0;
}

int main(void) {
    uint8_t *buf = malloc(MAX_INPUT + 1);
    size_t len = 0, n, slots;
    kagg_key_slot *pks, *ehks;
    kagg_result result;
    kagg_status st;
    if (buf == NULL) {
        fputs("kagg-deagg: out of memory\n", stderr);
        return 2;
    }
    while ((n = fread(buf + len, 1, MAX_INPUT + 1 - len, stdin)) > 0) {
        len += n;
        if (len > MAX_INPUT) {
            fputs("kagg-deagg: input is larger than a Kinesis record (10 MiB)\n", stderr);
            return 1;
        }
    }
    /* Every table entry takes at least 3 bytes of the body. */
    slots = len / 3 + 1;
    pks = malloc(slots * sizeof *pks);
    ehks = malloc(slots * sizeof *ehks);
    if (pks == NULL || ehks == NULL) {
        fputs("kagg-deagg: out of memory\n", stderr);
        return 2;
    }
    /* Validate first (no callback), so that nothing is printed for a
     * broken body. */
    st = kagg_deaggregate(buf, len, 0, pks, slots, ehks, slots, NULL, NULL, &result);
    if (st != KAGG_OK) {
        if (result.error_offset != SIZE_MAX) {
            fprintf(stderr, "kagg-deagg: record 0: invalid aggregated record at byte %zu of the body: %s\n",
                    result.error_offset, kagg_strerror(st));
        } else {
            fprintf(stderr, "kagg-deagg: record 0: invalid aggregated record: %s\n", kagg_strerror(st));
        }
        return 1;
    }
    if (result.kind == KAGG_PLAIN) {
        fputs("{\"record\":0,\"aggregated\":false,\"sub_sequence_number\":null,\"partition_key\":null,"
              "\"explicit_hash_key\":null,\"data\":",
              stdout);
        put_base64(buf, len);
        fputs(",\"sequence_number\":null,\"tags\":[]}\n", stdout);
    } else {
        st = kagg_deaggregate(buf, len, 0, pks, slots, ehks, slots, print_record, NULL, &result);
        if (st != KAGG_OK) {
            fprintf(stderr, "kagg-deagg: %s\n", kagg_strerror(st));
            return 1;
        }
    }
    free(pks);
    free(ehks);
    free(buf);
    return fflush(stdout) == 0 ? 0 : 1;
}
