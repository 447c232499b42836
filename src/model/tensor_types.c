#include "model/tensor_types.h"

static const gw_type_traits type_table[GW_TYPE_COUNT] = {
    [GW_TYPE_F32]  = {"F32", 1, 4, true},
    [GW_TYPE_F16]  = {"F16", 1, 2, true},
    [GW_TYPE_Q4_0] = {"Q4_0", 32, 18, true},
    [GW_TYPE_Q4_1] = {"Q4_1", 32, 20, true},
    [GW_TYPE_Q5_0] = {"Q5_0", 32, 22, true},
    [GW_TYPE_Q5_1] = {"Q5_1", 32, 24, true},
    [GW_TYPE_Q8_0] = {"Q8_0", 32, 34, true},
    [GW_TYPE_Q8_1] = {"Q8_1", 32, 36, false},
    [GW_TYPE_Q2_K] = {"Q2_K", 256, 84, false},
    [GW_TYPE_Q3_K] = {"Q3_K", 256, 110, false},
    [GW_TYPE_Q4_K] = {"Q4_K", 256, 144, true},
    [GW_TYPE_Q5_K] = {"Q5_K", 256, 176, true},
    [GW_TYPE_Q6_K] = {"Q6_K", 256, 210, true},
    [GW_TYPE_Q8_K] = {"Q8_K", 256, 292, false},
    [GW_TYPE_BF16] = {"BF16", 1, 2, true},
};

static const gw_type_traits q16_traits = {"Q16", 32, 72, false};

const gw_type_traits *gw_type_info(uint32_t t) {
    if (t == GW_TYPE_Q16) return &q16_traits;
    if (t >= GW_TYPE_COUNT || type_table[t].name == NULL) return NULL;
    return &type_table[t];
}

const char *gw_type_name(uint32_t t) {
    const gw_type_traits *tt = gw_type_info(t);
    return tt ? tt->name : "unknown";
}

size_t gw_row_bytes(uint32_t t, int64_t n) {
    const gw_type_traits *tt = gw_type_info(t);
    if (!tt || n < 0 || n % tt->block_size != 0) return 0;
    return (size_t)(n / tt->block_size) * (size_t)tt->block_bytes;
}
