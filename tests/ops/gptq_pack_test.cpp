#include "saliq/gptq_pack.h"

#include <tuple>

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

namespace saliq {
namespace {

// A mixed-precision tensor: each group at a random width in 1..8, codes within it, fractional zeros (1-bit style).
QuantizedTensor random_mixed(int64_t out, int64_t in, int64_t g) {
    QuantSpec spec;
    spec.bits = 2;
    spec.group_size = g;
    const int64_t G = spec.n_groups(in);
    QuantizedTensor q;
    q.spec = spec;
    q.group_bits = at::randint(1, 9, {G}, at::kLong);
    const at::Tensor maxq = at::pow(2.0, q.group_bits.to(at::kDouble)).to(at::kLong) - 1;
    q.g_idx = natural_group_index(in, spec);
    q.codes = (at::rand({out, in}) * (maxq.index_select(0, q.g_idx) + 1).to(at::kFloat).unsqueeze(0))
                  .floor().to(at::kByte);
    q.scales = (at::rand({out, G}) + 0.01).to(at::kHalf).to(at::kFloat);
    q.zeros = (at::rand({out, G}) * 4.0).to(at::kHalf).to(at::kFloat);
    return q;
}

TEST(MixedPack, PackUnpackIsBitExactOverRandomWidthsAndShapes) {
    at::manual_seed(4);
    for (const auto& [out, in, g] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {16, 64, 8}, {5, 172, 8}, {33, 100, 32}, {8, 40, 16}}) {
        const QuantizedTensor q = random_mixed(out, in, g);
        const MixedTensors m = mixed_pack(q);
        EXPECT_EQ(m.qweight.scalar_type(), at::kInt);
        int64_t bits = 0;
        for (int64_t k = 0; k < q.group_bits.size(0); ++k) bits += q.group_bits[k].item<int64_t>() * std::min(g, in - k * g);
        EXPECT_EQ(m.qweight.size(0), (bits + 31) / 32);
        const QuantizedTensor back = mixed_unpack(m, q.spec, in, out, "test");
        EXPECT_TRUE(at::equal(back.codes, q.codes));
        EXPECT_TRUE(at::equal(back.scales, q.scales));
        EXPECT_TRUE(at::equal(back.zeros, q.zeros));
        EXPECT_TRUE(at::equal(back.group_bits, q.group_bits));
        EXPECT_TRUE(at::allclose(back.dequantize(), q.dequantize()));
        EXPECT_NEAR(back.average_bits(), static_cast<double>(bits) / static_cast<double>(in), 1e-12);
    }
}

TEST(MixedPack, WidthsThatDisagreeWithQweightAreFormatErrors) {
    const QuantizedTensor q = random_mixed(8, 64, 8);
    MixedTensors m = mixed_pack(q);
    MixedTensors wider = m;
    wider.group_bits = at::full_like(m.group_bits, 8);  // 16 words of codes per column; the stream holds fewer
    ASSERT_LT(m.qweight.size(0), 16);
    EXPECT_THROW(mixed_unpack(wider, q.spec, 64, 8, "test"), FormatError);
    MixedTensors zero = m;
    zero.group_bits = at::zeros_like(m.group_bits);
    EXPECT_THROW(mixed_unpack(zero, q.spec, 64, 8, "test"), FormatError);
    EXPECT_THROW(mixed_unpack(m, q.spec, 64, 9, "test"), FormatError);
}

}  // namespace
}  // namespace saliq
