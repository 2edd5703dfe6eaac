/* An edge gateway packs sensor readings into KPL aggregated records with
 * the C interface, in static storage only (the KPL's default limit of
 * 51,200 bytes), and checks every aggregate by reading it back: no heap on
 * either side.
 *
 *     edge_telemetry [READINGS]      (default 100000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis_agg.h"

#define LIMIT 51200u
#define SENSORS 24u
#define KEYS 32u

static uint8_t buffer[LIMIT];
static kagg_aggregator agg;
static kagg_index_slot index_slots[KEYS * KAGG_INDEX_SLOTS_PER_KEY];
static kagg_key_slot pk_slots[KEYS], ehk_slots[KEYS];

struct check {
    uint64_t first;   /* sequence number of the aggregate's first reading */
    uint64_t next;    /* the one expected next */
    int bad;
};

static size_t encode_reading(uint32_t sensor, uint64_t seq, uint8_t out[24]) {
    uint64_t x = seq * 0x9E3779B97F4A7C15ull ^ sensor;
    int32_t centi;
    size_t n;
    x ^= x >> 29;
    centi = 1500 + (int32_t)(x % 1500);
    memcpy(out, &seq, 8);
    memcpy(out + 8, &centi, 4);
    memcpy(out + 12, &sensor, 4);
    n = 16 + (size_t)(x % 9);
    memset(out + 16, '#', n - 16);
    return n;
}

static int check_record(void *ctx, const kagg_user_record *r) {
    struct check *c = ctx;
    uint64_t seq;
    if (r->data.len < 16) {
        c->bad = 1;
        return 1;
    }
    memcpy(&seq, r->data.ptr, 8);
    if (seq != c->next || r->sub_sequence_number != seq - c->first) {
        c->bad = 1;
        return 1;
    }
    c->next++;
    return 0;
}

/* Reads the finished aggregate back: every reading, in order. */
static int verify(const kagg_finished *done, uint64_t first) {
    struct check c = {first, first, 0};
    kagg_result res;
    kagg_status st = kagg_deaggregate(done->data.ptr, done->data.len, KAGG_STRICT, pk_slots, KEYS,
                                      ehk_slots, KEYS, check_record, &c, &res);
    return st == KAGG_OK && !c.bad && res.kind == KAGG_AGGREGATED && res.records == done->records &&
           c.next == first + done->records;
}

int main(int argc, char **argv) {
    uint64_t readings = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000, seq, first = 0;
    uint64_t aggregates = 0, bytes = 0, user = 0;
    char names[SENSORS][24];
    uint8_t payload[24];
    kagg_finished done;
    kagg_status st;
    uint32_t i;
    for (i = 0; i < SENSORS; i++) snprintf(names[i], sizeof names[i], "gw-7/sensor-%02u", (unsigned)i);
    if ((st = kagg_aggregator_init(&agg, buffer, sizeof buffer, index_slots, KEYS * KAGG_INDEX_SLOTS_PER_KEY, LIMIT)) != KAGG_OK) {
        fprintf(stderr, "init: %s\n", kagg_strerror(st));
        return 1;
    }
    for (seq = 0; seq <= readings; seq++) {
        kagg_record rec;
        int last = seq == readings;
        if (!last) {
            uint32_t sensor = (uint32_t)(seq % SENSORS);
            rec.partition_key.ptr = names[sensor];
            rec.partition_key.len = strlen(names[sensor]);
            rec.explicit_hash_key.ptr = NULL;
            rec.explicit_hash_key.len = 0;
            rec.data.len = encode_reading(sensor, seq, payload);
            rec.data.ptr = payload;
            st = kagg_aggregator_add(&agg, &rec);
            if (st == KAGG_OK) continue;
            if (st != KAGG_FULL && st != KAGG_KEY_CAPACITY) {
                fprintf(stderr, "add: %s\n", kagg_strerror(st));
                return 1;
            }
        }
        /* Full (or done): send this one, start the next with the record. */
        st = kagg_aggregator_finish(&agg, &done);
        if (st == KAGG_EMPTY && last) break;
        if (st != KAGG_OK || done.data.len + done.partition_key.len > LIMIT || !verify(&done, first)) {
            fprintf(stderr, "aggregate %llu failed its check\n", (unsigned long long)aggregates);
            return 1;
        }
        aggregates++;
        bytes += done.data.len;
        user += done.records;
        first += done.records;
        if (!last && (st = kagg_aggregator_add(&agg, &rec)) != KAGG_OK) {
            fprintf(stderr, "add after finish: %s\n", kagg_strerror(st));
            return 1;
        }
    }
    printf("%llu readings in %llu aggregates of %.0f bytes on average, each read back and checked\n",
           (unsigned long long)user, (unsigned long long)aggregates, aggregates ? (double)bytes / (double)aggregates : 0.0);
    return user == readings ? 0 : 1;
}
