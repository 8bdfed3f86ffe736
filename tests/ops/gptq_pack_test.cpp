#include "saliq/gptq_pack.h"

#include <ATen/ATen.h>

#include "saliq/error.h"
#include "test_utils.h"

namespace saliq {
namespace {

// Random quantized tensors of random shapes (rows/cols not multiples of 32, partial last groups).
QuantizedTensor random_quantized(int bits, bool sym, int64_t out, int64_t in, int64_t g, bool act_order) {
    QuantSpec spec;
    spec.bits = bits;
    spec.group_size = g;
    spec.symmetric = sym;
    const int64_t G = spec.n_groups(in);
    QuantizedTensor q;
    q.spec = spec;
    q.codes = at::randint(0, spec.maxq() + 1, {out, in}, at::kByte);
    q.scales = at::rand({out, G}).add_(0.01).to(at::kHalf).to(at::kFloat);
    q.zeros = sym ? at::full({out, G}, (spec.maxq() + 1) / 2, at::kFloat)
                  : at::randint(0, spec.maxq() + 1, {out, G}, at::kFloat);
    q.g_idx = natural_group_index(in, spec);
    if (act_order) q.g_idx = q.g_idx.index_select(0, at::randperm(in, at::kLong));
    return q;
}

TEST(GptqPack, PackUnpackIsBitExactOverRandomShapes) {
    at::manual_seed(1);
    int cases = 0;
    for (int bits : {2, 3, 4, 8})
        for (bool sym : {false, true})
            for (bool act : {false, true})
                for (int trial = 0; trial < 3; ++trial) {
                    const int64_t out = 1 + at::randint(1, 70, {1}).item<int64_t>();
                    const int64_t in = 1 + at::randint(1, 200, {1}).item<int64_t>();
                    const int64_t g = trial == 0 ? -1 : std::min<int64_t>(in, trial == 1 ? 32 : 7);
                    const QuantizedTensor q = random_quantized(bits, sym, out, in, g, act);
                    const GptqTensors p = gptq_pack(q, !sym);
                    EXPECT_EQ(p.qweight.scalar_type(), at::kInt);
                    EXPECT_EQ(p.qweight.size(0), (in * bits + 31) / 32);
                    EXPECT_EQ(p.scales.scalar_type(), at::kHalf);
                    const QuantizedTensor back = gptq_unpack(p, q.spec, in, out, !sym, "test");
                    ASSERT_TRUE(at::equal(back.codes, q.codes)) << bits << " " << out << "x" << in;
                    ASSERT_TRUE(at::equal(back.zeros, q.zeros));
                    ASSERT_TRUE(at::equal(back.scales, q.scales));
                    ASSERT_TRUE(at::equal(back.g_idx, q.g_idx));
                    ASSERT_TRUE(at::equal(back.dequantize(), q.dequantize()));
                    ++cases;
                }
    EXPECT_EQ(cases, 48);
}

TEST(GptqPack, TwoBitLayoutMatchesTheReferenceDescription) {
    // qweight[r, c] bits 2j..2j+1 hold q[16r + j, c] (q = codes transposed).
    at::Tensor values = at::zeros({16, 1}, at::kLong);
    values[0][0] = 1;
    values[1][0] = 2;
    values[15][0] = 3;
    const int32_t word = pack_bits(values, 2)[0][0].item<int32_t>();
    EXPECT_EQ(static_cast<uint32_t>(word), 1u | (2u << 2) | (3u << 30));
}

TEST(GptqPack, ThreeBitValuesStraddleWordsLikeGptq) {
    // 32 values of 3 bits fill exactly 3 words; value 10 has its low 2 bits at 30..31 of word 0, high bit at bit 0
    // of word 1.
    at::Tensor values = at::zeros({32, 1}, at::kLong);
    values[10][0] = 7;
    at::Tensor packed = pack_bits(values, 3);
    ASSERT_EQ(packed.size(0), 3);
    EXPECT_EQ(static_cast<uint32_t>(packed[0][0].item<int32_t>()), 3u << 30);
    EXPECT_EQ(static_cast<uint32_t>(packed[1][0].item<int32_t>()), 1u);
    EXPECT_TRUE(at::equal(unpack_bits(packed, 3, 32).to(at::kLong), values));
}

TEST(GptqPack, SymmetricV1StoresZeroMinusOne) {
    const QuantizedTensor q = random_quantized(2, true, 16, 32, 32, false);
    const GptqTensors p = gptq_pack(q, /*zeros_v2=*/false);
    // z = 2 stored as 1 in every 2-bit field: 0x55555555.
    EXPECT_EQ(static_cast<uint32_t>(p.qzeros[0][0].item<int32_t>()), 0x55555555u);
}

TEST(GptqPack, V1CannotStoreZeroPointZero) {
    QuantizedTensor q = random_quantized(2, false, 4, 8, 8, false);
    q.zeros.zero_();
    EXPECT_THROW(gptq_pack(q, false), ConfigError);
    EXPECT_NO_THROW(gptq_pack(q, true));
}

TEST(GptqPack, InconsistentShapesAreFormatErrors) {
    const QuantizedTensor q = random_quantized(2, false, 8, 64, 32, false);
    GptqTensors p = gptq_pack(q, true);
    EXPECT_THROW(gptq_unpack(p, q.spec, 32, 8, true, "x"), FormatError);
    p.g_idx = at::full({64}, 5, at::kInt);
    EXPECT_THROW(gptq_unpack(p, q.spec, 64, 8, true, "x"), FormatError);
}

}  // namespace
}  // namespace saliq
