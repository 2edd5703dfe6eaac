/* Stand-ins for the functions examples/edge_telemetry.c calls, so that the
 * same program can be linked without the library: the difference in flash
 * between the two links is what the library adds (make cross). They do
 * nothing useful; this file is never linked with the library. */
#include "kinesis_agg.h"

static volatile int sink;

const char *kagg_strerror(int status) {
    sink = status;
    return "";
}

kagg_status kagg_aggregator_init(kagg_aggregator *agg, uint8_t *buf, size_t buf_len, kagg_index_slot *index,
                                 size_t index_len, size_t limit) {
    sink = (int)(buf_len + limit + index_len) + (agg != 0) + (buf != 0) + (index != 0);
    return (kagg_status)sink;
}

kagg_status kagg_aggregator_add(kagg_aggregator *agg, const kagg_record *rec) {
    sink = (agg != 0) + (rec != 0);
    return (kagg_status)sink;
}

kagg_status kagg_aggregator_finish(kagg_aggregator *agg, kagg_finished *out) {
    sink = (agg != 0) + (out != 0);
    return (kagg_status)sink;
}

kagg_status kagg_deaggregate(const uint8_t *blob, size_t len, uint32_t flags, kagg_key_slot *pk_slots, size_t pk_cap, kagg_key_slot *ehk_slots, size_t ehk_cap,
                             kagg_record_fn callback, void *ctx, kagg_result *result) {
    sink = (int)(len + flags + pk_cap + ehk_cap) + (blob != 0) + (pk_slots != 0) + (ehk_slots != 0) + (ctx != 0) +
           (result != 0) + (callback != 0);
    return (kagg_status)sink;
}
