/* Tests of the C interface, built with -Wall -Wextra -Werror and run under
 * AddressSanitizer and UndefinedBehaviorSanitizer (make test): every
 * status code reached, refusals leave the aggregator unchanged, the shared
 * fixtures round-trip byte for byte, random bytes never crash.
 *
 *     test_kagg FIXTURE_DIR        (tests/fixtures/deagg) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis_agg.h"

static int failures, checks;
static const char *fixtures;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        checks++;                                                                   \
        if (!(cond)) {                                                              \
            failures++;                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

#define CHECK_ST(expr, want)                                                                       \
    do {                                                                                           \
        kagg_status got_ = (expr);                                                                 \
        checks++;                                                                                  \
        if (got_ != (want)) {                                                                      \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: %s gave %d (%s), wanted %s\n", __FILE__, __LINE__, #expr, got_, \
                    kagg_strerror(got_), #want);                                                   \
        }                                                                                          \
        reached[got_ < 100 ? got_ : 0] = 1;                                                        \
    } while (0)

static int reached[100];

static kagg_str str(const char *s) {
    kagg_str out;
    out.ptr = s;
    out.len = s ? strlen(s) : 0;
    return out;
}

static kagg_record rec(const char *pk, const char *ehk, const void *data, size_t len) {
    kagg_record r;
    r.partition_key = str(pk);
    r.explicit_hash_key = str(ehk);
    r.data.ptr = data;
    r.data.len = len;
    return r;
}

static uint8_t *load(const char *name, size_t *len) {
    char path[512];
    FILE *f;
    uint8_t *buf;
    long n;
    snprintf(path, sizeof path, "%s/%s.bin", fixtures, name);
    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static kagg_key_slot pks[4096], ehks[4096];

static kagg_status read_fixture(const char *name, uint32_t flags, kagg_result *res) {
    size_t len;
    uint8_t *blob = load(name, &len);
    kagg_status st = kagg_deaggregate(blob, len, flags, pks, 4096, ehks, 4096, NULL, NULL, res);
    free(blob);
    return st;
}

static void test_body_errors(void) {
    static const struct {
        const char *name;
        kagg_status want;
        size_t offset;
    } cases[] = {
        {"groups_nested_101_deep", KAGG_NESTING_TOO_DEEP, 108},
        {"missing_partition_key_index", KAGG_MISSING_FIELD, 13},
        {"partition_key_index_outside_table", KAGG_INDEX_OUT_OF_RANGE, 15},
        {"partition_key_not_utf8", KAGG_INVALID_UTF8, 10},
        {"record_length_past_end", KAGG_LENGTH_PAST_END, 9},
        {"eleven_byte_varint", KAGG_VARINT_TOO_LONG, 11},
        {"field_number_zero", KAGG_INVALID_FIELD_TAG, 15},
        {"wire_type_6", KAGG_INVALID_WIRE_TYPE, 15},
        {"end_group_without_start", KAGG_UNEXPECTED_END_GROUP, 8},
        {"group_not_closed", KAGG_TRUNCATED, 18},
    };
    size_t i;
    kagg_result res;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_ST(read_fixture(cases[i].name, 0, &res), cases[i].want);
        CHECK(res.error_offset == cases[i].offset);
    }
    CHECK_ST(read_fixture("wrong_checksum", KAGG_STRICT, &res), KAGG_CHECKSUM_MISMATCH);
    CHECK(res.error_offset == SIZE_MAX);
    CHECK_ST(read_fixture("wrong_checksum", 0, &res), KAGG_OK);
    CHECK(res.kind == KAGG_PLAIN && res.reason == KAGG_BAD_CHECKSUM);
    CHECK_ST(read_fixture("plain_json", 0, &res), KAGG_OK);
    CHECK(res.kind == KAGG_PLAIN && res.reason == KAGG_NO_MAGIC);
    CHECK_ST(read_fixture("plain_magic_only", 0, &res), KAGG_OK);
    CHECK(res.reason == KAGG_TOO_SHORT);
    CHECK_ST(read_fixture("truncated_body_rechecksummed", KAGG_SKIP_CHECKSUM, &res), KAGG_OK);
    CHECK(res.kind == KAGG_PLAIN && res.reason == KAGG_UNPARSABLE);
    /* One checksum policy at a time, and no unknown bit: as Rust's
     * Checksum and Python's ValueError for both. */
    CHECK_ST(read_fixture("wrong_checksum", KAGG_STRICT | KAGG_SKIP_CHECKSUM, &res), KAGG_INVALID_FLAGS);
    CHECK_ST(read_fixture("plain_json", 4, &res), KAGG_INVALID_FLAGS);
}

struct collect {
    int calls;
    int stop_at;
    uint64_t last_sub;
};

static int count_record(void *ctx, const kagg_user_record *r) {
    struct collect *c = ctx;
    c->last_sub = r->sub_sequence_number;
    return ++c->calls == c->stop_at;
}

struct outside {
    kagg_range range;
    uint64_t first;
};

static int u128_le(kagg_u128 a, kagg_u128 b) { return a.hi < b.hi || (a.hi == b.hi && a.lo <= b.lo); }

/* The first record whose effective hash key lies outside the range,
 * worked out record by record with kagg_record_hash_key. */
static int find_outside(void *ctx, const kagg_user_record *r) {
    struct outside *o = ctx;
    kagg_u128 h;
    CHECK_ST(kagg_record_hash_key(r, &h), KAGG_OK);
    if (o->first == UINT64_MAX && !(u128_le(o->range.start, h) && u128_le(h, o->range.end)))
        o->first = r->sub_sequence_number;
    return 0;
}

static uint64_t first_outside(const uint8_t *blob, size_t len, kagg_range range) {
    struct outside o;
    kagg_result res;
    o.range = range;
    o.first = UINT64_MAX;
    CHECK_ST(kagg_deaggregate(blob, len, 0, pks, 4096, ehks, 4096, find_outside, &o, &res), KAGG_OK);
    return o.first;
}

static int check_hash_keys(void *ctx, const kagg_user_record *r) {
    kagg_u128 got, want;
    int *n = ctx;
    CHECK_ST(kagg_record_hash_key(r, &got), KAGG_OK);
    if (r->explicit_hash_key.ptr != NULL)
        CHECK_ST(kagg_parse_hash_key(r->explicit_hash_key, &want), KAGG_OK);
    else
        CHECK_ST(kagg_partition_key_hash(r->partition_key, &want), KAGG_OK);
    CHECK(got.hi == want.hi && got.lo == want.lo);
    (*n)++;
    return 0;
}

static void test_record_hash_key(void) {
    size_t len;
    uint8_t *blob = load("py_mixed_keys", &len);
    kagg_result res;
    kagg_user_record bad;
    kagg_u128 h;
    int n = 0;
    CHECK_ST(kagg_deaggregate(blob, len, 0, pks, 4096, ehks, 4096, check_hash_keys, &n, &res), KAGG_OK);
    CHECK(n == 6);
    memset(&bad, 0, sizeof bad);
    bad.partition_key = str("k");
    bad.explicit_hash_key = str("not-a-number");
    CHECK_ST(kagg_record_hash_key(&bad, &h), KAGG_INVALID_HASH_KEY);
    CHECK_ST(kagg_record_hash_key(NULL, &h), KAGG_NULL_ARGUMENT);
    free(blob);
}

static void test_reading(void) {
    size_t len;
    uint8_t *blob = load("py_mixed_keys", &len);
    kagg_result res;
    struct collect c = {0, 0, 0};
    CHECK_ST(kagg_deaggregate(blob, len, 0, pks, 4096, ehks, 4096, count_record, &c, &res), KAGG_OK);
    CHECK(res.kind == KAGG_AGGREGATED && res.records == 6 && c.calls == 6 && c.last_sub == 5);
    c.calls = 0;
    c.stop_at = 2;
    CHECK_ST(kagg_deaggregate(blob, len, 0, pks, 4096, ehks, 4096, count_record, &c, &res), KAGG_STOPPED);
    CHECK(c.calls == 2);
    /* Four partition keys: a table of three is too small, and no record
     * is handed out. */
    c.calls = 0;
    c.stop_at = 0;
    CHECK_ST(kagg_deaggregate(blob, len, 0, pks, 3, ehks, 4096, count_record, &c, &res), KAGG_TABLE_FULL);
    CHECK(c.calls == 0);
    CHECK_ST(kagg_deaggregate(blob, len, 0, NULL, 4, ehks, 4096, NULL, NULL, &res), KAGG_NULL_ARGUMENT);
    CHECK_ST(kagg_deaggregate(NULL, len, 0, pks, 4, ehks, 4, NULL, NULL, &res), KAGG_NULL_ARGUMENT);
    CHECK_ST(kagg_deaggregate(blob, len, 0, pks, 4, ehks, 4, NULL, NULL, NULL), KAGG_NULL_ARGUMENT);
    /* The KCL range check: py_mixed_keys routes its records over the
     * whole key space, so the lower half alone leaves some outside, and
     * no record is handed out. */
    {
        kagg_range all = {{0, 0}, {UINT64_MAX, UINT64_MAX}}, low = {{0, 0}, {0x7fffffffffffffffull, UINT64_MAX}};
        kagg_range backwards = {{0, 5}, {0, 4}};
        c.calls = 0;
        CHECK_ST(kagg_deaggregate_shard(blob, len, 0, &all, pks, 4096, ehks, 4096, count_record, &c, &res), KAGG_OK);
        CHECK(c.calls == 6 && res.outside == UINT64_MAX);
        c.calls = 0;
        CHECK_ST(kagg_deaggregate_shard(blob, len, 0, &low, pks, 4096, ehks, 4096, count_record, &c, &res),
                 KAGG_OUT_OF_RANGE);
        CHECK(c.calls == 0 && res.outside < 6 && res.records == 6);
        CHECK(first_outside(blob, len, low) == res.outside);
        CHECK_ST(kagg_deaggregate_shard(blob, len, 0, &backwards, pks, 4096, ehks, 4096, NULL, NULL, &res),
                 KAGG_INVALID_RANGE);
        res.records = 77;
        CHECK_ST(kagg_deaggregate_shard(blob, len, 0, NULL, pks, 4096, ehks, 4096, NULL, NULL, &res),
                 KAGG_NULL_ARGUMENT);
        CHECK(res.records == 0 && res.outside == UINT64_MAX);
    }
    /* An empty blob is a plain record, even with a NULL pointer. */
    CHECK_ST(kagg_deaggregate(NULL, 0, 0, NULL, 0, NULL, 0, NULL, NULL, &res), KAGG_OK);
    CHECK(res.kind == KAGG_PLAIN && res.reason == KAGG_NO_MAGIC);
    free(blob);
}

static int first_tags(void *ctx, const kagg_user_record *r) {
    kagg_tags t = r->tags;
    kagg_tag tag;
    int found = 0, *n = ctx;
    while (kagg_next_tag(&t, &tag, &found) == KAGG_OK && found) {
        if (*n == 0) CHECK(tag.key.len == 8 && memcmp(tag.key.ptr, "only-key", 8) == 0 && tag.value.ptr == NULL);
        if (*n == 1) CHECK(tag.key.len == 1 && tag.value.ptr != NULL && tag.value.len == 0);
        (*n)++;
    }
    return 1;
}

static void test_tags(void) {
    size_t len;
    uint8_t *blob = load("tags_with_and_without_values", &len);
    kagg_result res;
    int n = 0;
    CHECK_ST(kagg_deaggregate(blob, len, 0, pks, 16, ehks, 16, first_tags, &n, &res), KAGG_STOPPED);
    CHECK(n == 2);
    CHECK_ST(kagg_next_tag(NULL, NULL, NULL), KAGG_NULL_ARGUMENT);
    free(blob);
}

#define KEYS 32
static uint8_t buf[4096];
static uint8_t big[2000]; /* record data: never the aggregator's own buffer */
static kagg_aggregator agg;
static kagg_index_slot idx[KEYS * KAGG_INDEX_SLOTS_PER_KEY];

/* The aggregate's bytes after `n` records "k%d" of 40 bytes. */
static void add_some(int n) {
    uint8_t data[40];
    char key[16];
    int i;
    memset(data, 7, sizeof data);
    for (i = 0; i < n; i++) {
        kagg_record r;
        snprintf(key, sizeof key, "k%d", i % 3);
        r = rec(key, NULL, data, sizeof data);
        CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_OK);
    }
}

static void test_writing(void) {
    static uint8_t before[4096];
    kagg_aggregator fresh;
    kagg_finished done;
    kagg_record r;
    size_t size, count, with, blen;
    memset(&fresh, 0, sizeof fresh);
    CHECK_ST(kagg_aggregator_add(&fresh, NULL), KAGG_NOT_INITIALIZED);
    CHECK_ST(kagg_aggregator_add(NULL, NULL), KAGG_NULL_ARGUMENT);
    CHECK_ST(kagg_aggregator_init(&agg, buf, sizeof buf, idx, KEYS * KAGG_INDEX_SLOTS_PER_KEY, 10), KAGG_INVALID_LIMIT);
    CHECK_ST(kagg_aggregator_finish(&agg, &done), KAGG_NOT_INITIALIZED); /* a failed init leaves none */
    CHECK_ST(kagg_aggregator_init(&agg, buf, 100, idx, KEYS * KAGG_INDEX_SLOTS_PER_KEY, 200), KAGG_INVALID_LIMIT);
    CHECK_ST(kagg_aggregator_init(&agg, buf, sizeof buf, idx, KEYS * KAGG_INDEX_SLOTS_PER_KEY, 1000), KAGG_OK);
    CHECK_ST(kagg_aggregator_finish(&agg, &done), KAGG_EMPTY);

    /* A record that fits: size_with predicts the size exactly. */
    r = rec("k0", "12345", "abc", 3);
    CHECK_ST(kagg_aggregator_size_with(&agg, &r, &with), KAGG_OK);
    CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_OK);
    CHECK_ST(kagg_aggregator_size(&agg, &size, &count), KAGG_OK);
    CHECK(size == with && count == 1);
    add_some(5);

    /* Refusals: none changes the aggregate. */
    CHECK_ST(kagg_aggregator_size(&agg, &size, &count), KAGG_OK);
    r = rec("", NULL, "x", 1);
    CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_INVALID_PARTITION_KEY);
    r = rec("k", "12a", "x", 1);
    CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_INVALID_HASH_KEY);
    r = rec("k", "340282366920938463463374607431768211456", "x", 1);
    CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_INVALID_HASH_KEY);
    r = rec("\xff\xfe", NULL, "x", 1);
    CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_NOT_UTF8);
    r = rec("k", NULL, big, 2000);
    CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_RECORD_TOO_LARGE);
    r = rec("k", NULL, big, 900);
    CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_FULL);
    r = rec("k", NULL, NULL, 5);
    CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_NULL_ARGUMENT);
    {
        size_t size2, count2;
        CHECK_ST(kagg_aggregator_size(&agg, &size2, &count2), KAGG_OK);
        CHECK(size2 == size && count2 == count);
    }
    CHECK_ST(kagg_aggregator_finish(&agg, &done), KAGG_OK);
    CHECK(done.records == 6 && done.data.len == size);
    CHECK(done.partition_key.len == 2 && memcmp(done.partition_key.ptr, "k0", 2) == 0);
    CHECK(done.explicit_hash_key.len == 5 && memcmp(done.explicit_hash_key.ptr, "12345", 5) == 0);
    blen = done.data.len;
    memcpy(before, done.data.ptr, blen);
    /* The same records without the refused attempts: the same bytes. */
    CHECK_ST(kagg_aggregator_init(&agg, buf, sizeof buf, idx, KEYS * KAGG_INDEX_SLOTS_PER_KEY, 1000), KAGG_OK);
    r = rec("k0", "12345", "abc", 3);
    CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_OK);
    add_some(5);
    CHECK_ST(kagg_aggregator_finish(&agg, &done), KAGG_OK);
    CHECK(done.data.len == blen && memcmp(done.data.ptr, before, blen) == 0);

    /* Key capacity: one more distinct key than the index holds. */
    {
        char key[16];
        int i;
        kagg_status st = KAGG_OK;
        CHECK_ST(kagg_aggregator_init(&agg, buf, sizeof buf, idx, KEYS * KAGG_INDEX_SLOTS_PER_KEY, 4000), KAGG_OK);
        for (i = 0; i <= KEYS && st == KAGG_OK; i++) {
            snprintf(key, sizeof key, "key-%d", i);
            r = rec(key, NULL, "v", 1);
            st = kagg_aggregator_add(&agg, &r);
        }
        CHECK_ST(st, KAGG_KEY_CAPACITY);
        CHECK(i == KEYS + 1);
        CHECK_ST(kagg_aggregator_size(&agg, NULL, &count), KAGG_OK);
        CHECK(count == KEYS);
        CHECK_ST(kagg_aggregator_reset(&agg), KAGG_OK);
        CHECK_ST(kagg_aggregator_size(&agg, &size, &count), KAGG_OK);
        CHECK(size == 0 && count == 0);
    }
    /* The caller sizes the index: 3 keys of each table, whatever the
     * slots held before (they are filled with junk here). */
    {
        static kagg_index_slot small[3 * KAGG_INDEX_SLOTS_PER_KEY + 5];
        char key[16];
        int i;
        memset(small, 0xA5, sizeof small);
        CHECK_ST(kagg_aggregator_init(&agg, buf, sizeof buf, small, KAGG_INDEX_SLOTS_PER_KEY - 1, 4000),
                 KAGG_INVALID_INDEX);
        CHECK_ST(kagg_aggregator_init(&agg, buf, sizeof buf, NULL, 64, 4000), KAGG_NULL_ARGUMENT);
        CHECK_ST(kagg_aggregator_init(&agg, buf, sizeof buf, small, sizeof small / sizeof small[0], 4000), KAGG_OK);
        for (i = 0; i < 3; i++) {
            snprintf(key, sizeof key, "key-%d", i);
            r = rec(key, NULL, "v", 1);
            CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_OK);
            r = rec(key, NULL, "w", 1); /* a key already held takes no room */
            CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_OK);
        }
        r = rec("key-3", NULL, "v", 1);
        CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_KEY_CAPACITY);
        r = rec("key-0", "1", "v", 1);
        CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_OK);
        r = rec("key-0", "2", "v", 1);
        CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_OK);
        r = rec("key-0", "3", "v", 1);
        CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_OK);
        r = rec("key-0", "4", "v", 1);
        CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_KEY_CAPACITY);
        CHECK_ST(kagg_aggregator_finish(&agg, &done), KAGG_OK);
        CHECK(done.records == 9);
        /* After finish the index is free again: the refused key fits. */
        r = rec("key-3", NULL, "v", 1);
        CHECK_ST(kagg_aggregator_add(&agg, &r), KAGG_OK);
    }
}

static void test_hash_keys(void) {
    kagg_u128 h, p;
    char digits[KAGG_HASH_KEY_MAX_DIGITS];
    size_t len, idx;
    kagg_range ranges[2];
    /* MD5("a") = 0cc175b9c0f1b6a831c399e269772661 */
    CHECK_ST(kagg_partition_key_hash(str("a"), &h), KAGG_OK);
    CHECK(h.hi == 0x0cc175b9c0f1b6a8ull && h.lo == 0x31c399e269772661ull);
    CHECK_ST(kagg_parse_hash_key(str("340282366920938463463374607431768211455"), &p), KAGG_OK);
    CHECK(p.hi == UINT64_MAX && p.lo == UINT64_MAX);
    CHECK_ST(kagg_parse_hash_key(str("01"), &p), KAGG_INVALID_HASH_KEY);
    CHECK_ST(kagg_write_hash_key(h, digits, sizeof digits, &len), KAGG_OK);
    CHECK_ST(kagg_parse_hash_key((kagg_str){digits, len}, &p), KAGG_OK);
    CHECK(p.hi == h.hi && p.lo == h.lo);
    CHECK_ST(kagg_write_hash_key(h, digits, 10, &len), KAGG_INVALID_LIMIT);
    CHECK_ST(kagg_check_partition_key(str("ok")), KAGG_OK);
    CHECK_ST(kagg_check_explicit_hash_key(str("0")), KAGG_OK);
    CHECK_ST(kagg_check_explicit_hash_key(str("")), KAGG_INVALID_HASH_KEY);
    ranges[0].start = (kagg_u128){0, 0};
    ranges[0].end = (kagg_u128){0x7fffffffffffffffull, UINT64_MAX};
    ranges[1].start = (kagg_u128){0x8000000000000000ull, 0};
    ranges[1].end = (kagg_u128){UINT64_MAX, UINT64_MAX};
    CHECK_ST(kagg_route(ranges, 2, h, &idx), KAGG_OK);
    CHECK(idx == 0);
    CHECK_ST(kagg_route(ranges, 2, (kagg_u128){UINT64_MAX, 1}, &idx), KAGG_OK);
    CHECK(idx == 1);
    CHECK_ST(kagg_route(ranges, 1, (kagg_u128){UINT64_MAX, 1}, &idx), KAGG_NO_RANGE);
    ranges[1].start = (kagg_u128){0x7000000000000000ull, 0}; /* overlaps the first */
    CHECK_ST(kagg_route(ranges, 2, (kagg_u128){UINT64_MAX, 1}, &idx), KAGG_INVALID_RANGE);
}

/* Decoding a canonical fixture and aggregating its records again gives
 * the fixture's bytes. */
struct rebuild {
    kagg_aggregator *agg;
    int ok;
};

static int readd(void *ctx, const kagg_user_record *u) {
    struct rebuild *rb = ctx;
    kagg_record r;
    r.partition_key = u->partition_key;
    r.explicit_hash_key = u->explicit_hash_key;
    r.data = u->data;
    if (kagg_aggregator_add(rb->agg, &r) != KAGG_OK) rb->ok = 0;
    return 0;
}

static void test_round_trip(void) {
    static const char *canonical[] = {"py_mixed_keys", "py_empty_data", "py_utf8_keys", "py_256_character_keys",
                                      "real_aws_lambda_fanout_1_record", "real_aws_lambda_fanout_2_records",
                                      "real_qldb_stream_2_records", "py_1mb_record"};
    static uint8_t out[2 * 1024 * 1024];
    static kagg_aggregator a;
    static kagg_index_slot big_idx[4096 * KAGG_INDEX_SLOTS_PER_KEY];
    size_t i;
    for (i = 0; i < sizeof canonical / sizeof canonical[0]; i++) {
        size_t len;
        uint8_t *blob = load(canonical[i], &len);
        struct rebuild rb = {&a, 1};
        kagg_result res;
        kagg_finished done;
        CHECK_ST(kagg_aggregator_init(&a, out, sizeof out, big_idx, sizeof big_idx / sizeof big_idx[0], sizeof out + 1), KAGG_INVALID_LIMIT);
        CHECK_ST(kagg_aggregator_init(&a, out, sizeof out, big_idx, sizeof big_idx / sizeof big_idx[0], 1024 * 1024), KAGG_OK);
        CHECK_ST(kagg_deaggregate(blob, len, KAGG_STRICT, pks, 4096, ehks, 4096, readd, &rb, &res), KAGG_OK);
        CHECK(rb.ok);
        CHECK_ST(kagg_aggregator_finish(&a, &done), KAGG_OK);
        CHECK(done.records == res.records);
        if (done.data.len != len || memcmp(done.data.ptr, blob, len) != 0) {
            failures++;
            fprintf(stderr, "%s: rebuilt bytes differ\n", canonical[i]);
        }
        free(blob);
    }
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_random_bytes(void) {
    static uint8_t blob[600];
    int i;
    for (i = 0; i < 200000; i++) {
        size_t len = (size_t)(next_random() % sizeof blob), j;
        kagg_result res;
        struct collect c = {0, 0, 0};
        for (j = 0; j < len; j++) blob[j] = (uint8_t)next_random();
        if (len >= 4 && (i & 1)) memcpy(blob, "\xf3\x89\x9a\xc2", 4);
        /* Skipping the checksum lets random bodies reach the parser. */
        (void)kagg_deaggregate(blob, len, (i & 2) ? KAGG_SKIP_CHECKSUM : 0, pks, 64, ehks, 64, count_record, &c, &res);
        CHECK(res.kind == KAGG_PLAIN || (size_t)c.calls == res.records);
    }
}

static void test_strerror(void) {
    int s;
    for (s = -5; s < 120; s++) {
        const char *m = kagg_strerror(s);
        CHECK(m != NULL && strlen(m) > 0);
    }
    CHECK(strcmp(kagg_strerror(KAGG_OK), "success") == 0);
    CHECK(strcmp(kagg_strerror(1234), "not a kagg_status value") == 0);
}

/* Every named status has a message of its own. */
static void test_messages(const kagg_status *all, size_t n) {
    size_t i, j;
    for (i = 0; i < n; i++) {
        CHECK(strcmp(kagg_strerror(all[i]), "not a kagg_status value") != 0);
        for (j = 0; j < i; j++) CHECK(strcmp(kagg_strerror(all[i]), kagg_strerror(all[j])) != 0);
    }
    CHECK(strcmp(kagg_strerror(KAGG_OTHER), "not a kagg_status value") != 0);
}

/* Records of a batch, as (blob, sub-sequence number, data length) sums. */
struct batch_seen {
    size_t records;
    size_t bytes;
    size_t last_blob;
    int out_of_order;
    size_t stop_at;
};

static int count_batch(void *ctx, size_t blob, const kagg_user_record *r) {
    struct batch_seen *s = ctx;
    if (blob < s->last_blob) s->out_of_order = 1;
    s->last_blob = blob;
    s->records++;
    s->bytes += r->data.len;
    return s->records == s->stop_at;
}

struct one_seen {
    size_t records;
    size_t bytes;
};

static int count_one(void *ctx, const kagg_user_record *r) {
    struct one_seen *s = ctx;
    s->records++;
    s->bytes += r->data.len;
    return 0;
}

/* Every fixture three times over, read together: each blob's status, result
 * and records are what kagg_deaggregate gives it alone, under each flag; a
 * callback that stops leaves the rest KAGG_STOPPED. */
static void test_batch(void) {
    static const char *names[] = {"py_empty_data", "missing_data", "real_qldb_stream_2_records", "plain_json",
                                  "explicit_hash_key_index_outside_table", "wrong_checksum", "py_300_keys_two_byte_indices",
                                  "tags_with_and_without_values", "eleven_byte_varint", "py_mixed_keys",
                                  "plain_21_bytes_magic_bad_checksum", "real_aws_lambda_fanout_2_records"};
    enum { N = 3 * (sizeof names / sizeof names[0]) };
    static const uint32_t flags[] = {0, KAGG_STRICT, KAGG_SKIP_CHECKSUM};
    uint8_t *loaded[N];
    kagg_bytes blobs[N];
    kagg_result results[N], alone;
    kagg_status statuses[N];
    struct batch_seen seen;
    struct one_seen one;
    size_t i, f, want_records = 0, want_bytes = 0;
    for (i = 0; i < N; i++) {
        loaded[i] = load(names[i % (N / 3)], &blobs[i].len);
        blobs[i].ptr = loaded[i];
    }
    for (f = 0; f < 3; f++) {
        memset(&seen, 0, sizeof seen);
        want_records = want_bytes = 0;
        CHECK_ST(kagg_deaggregate_many(blobs, N, flags[f], pks, 4096, ehks, 4096, count_batch, &seen, results,
                                       statuses),
                 KAGG_OK);
        for (i = 0; i < N; i++) {
            kagg_status st;
            memset(&one, 0, sizeof one);
            st = kagg_deaggregate(blobs[i].ptr, blobs[i].len, flags[f], pks, 4096, ehks, 4096, count_one, &one,
                                  &alone);
            CHECK(statuses[i] == st);
            CHECK(results[i].kind == alone.kind && results[i].reason == alone.reason);
            CHECK(results[i].records == alone.records && results[i].error_offset == alone.error_offset);
            want_records += one.records;
            want_bytes += one.bytes;
        }
        CHECK(seen.records == want_records && seen.bytes == want_bytes && !seen.out_of_order);
    }
    /* Stopped at the first record: that blob and the rest are KAGG_STOPPED. */
    memset(&seen, 0, sizeof seen);
    seen.stop_at = 1;
    CHECK_ST(kagg_deaggregate_many(blobs, N, 0, pks, 4096, ehks, 4096, count_batch, &seen, results, statuses),
             KAGG_STOPPED);
    CHECK(statuses[N - 1] == KAGG_STOPPED && seen.records == 1);
    /* A NULL blob with a length is that blob's error alone. */
    blobs[1].ptr = NULL;
    CHECK_ST(kagg_deaggregate_many(blobs, N, 0, pks, 4096, ehks, 4096, NULL, NULL, results, statuses), KAGG_OK);
    CHECK(statuses[1] == KAGG_NULL_ARGUMENT && statuses[2] != KAGG_NULL_ARGUMENT);
    CHECK_ST(kagg_deaggregate_many(NULL, N, 0, pks, 4096, ehks, 4096, NULL, NULL, results, statuses),
             KAGG_NULL_ARGUMENT);
    CHECK_ST(kagg_deaggregate_many(blobs, N, 3, pks, 4096, ehks, 4096, NULL, NULL, results, statuses),
             KAGG_INVALID_FLAGS);
    CHECK_ST(kagg_deaggregate_many(NULL, 0, 0, NULL, 0, NULL, 0, NULL, NULL, NULL, NULL), KAGG_OK);
    for (i = 0; i < N; i++) free(loaded[i]);
}

int main(int argc, char **argv) {
    static const kagg_status all[] = {
        KAGG_OK, KAGG_NULL_ARGUMENT, KAGG_NOT_INITIALIZED, KAGG_EMPTY, KAGG_STOPPED, KAGG_NOT_UTF8, KAGG_FULL,
        KAGG_KEY_CAPACITY, KAGG_INVALID_PARTITION_KEY, KAGG_INVALID_HASH_KEY, KAGG_RECORD_TOO_LARGE,
        KAGG_INVALID_LIMIT, KAGG_TABLE_FULL, KAGG_TRUNCATED, KAGG_LENGTH_PAST_END, KAGG_VARINT_TOO_LONG,
        KAGG_INVALID_FIELD_TAG, KAGG_INVALID_WIRE_TYPE, KAGG_UNEXPECTED_END_GROUP, KAGG_NESTING_TOO_DEEP,
        KAGG_MISSING_FIELD, KAGG_INDEX_OUT_OF_RANGE, KAGG_INVALID_UTF8, KAGG_CHECKSUM_MISMATCH,
        KAGG_INVALID_RANGE, KAGG_NO_RANGE, KAGG_INVALID_INDEX, KAGG_OUT_OF_RANGE, KAGG_INVALID_FLAGS, KAGG_PANIC};
    size_t i;
    fixtures = argc > 1 ? argv[1] : "../tests/fixtures/deagg";
    test_body_errors();
    test_reading();
    test_batch();
    test_tags();
    test_record_hash_key();
    test_writing();
    test_hash_keys();
    test_round_trip();
    test_random_bytes();
    test_strerror();
    test_messages(all, sizeof all / sizeof all[0]);
    /* Every status but KAGG_OTHER (which no error of this version maps to)
     * and KAGG_PANIC (nothing is known to panic). */
    for (i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (all[i] != KAGG_PANIC && !reached[all[i]]) {
            failures++;
            fprintf(stderr, "status %d (%s) never reached\n", all[i], kagg_strerror(all[i]));
        }
    }
    printf("%d checks, %d failed\n", checks, failures);
    return failures != 0;
}
