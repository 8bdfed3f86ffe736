#include "saliq/calibration.h"

#include "saliq/corpus.h"
#include "saliq/error.h"
#include "saliq/tokenizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

TEST(Calibration, WindowsStayInsideTheirRangeAndMatchTheStream) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const auto stream = perplexity_tokens("tinystories", *tok, 64);
    CalibOptions o;
    o.source = "tinystories";
    o.nsamples = 32;
    o.seqlen = 64;
    o.range = TokenRange::parse("0:0.5");
    const CalibSet set = sample_calibration(o, *tok);
    ASSERT_EQ(set.tokens.size(), 32u * 64u);
    const auto half = static_cast<int64_t>(stream.size() / 2);
    for (size_t w = 0; w < set.starts.size(); ++w) {
        EXPECT_GE(set.starts[w], 0);
        EXPECT_LE(set.starts[w] + 64, half);
        for (int64_t t = 0; t < 64; ++t)
            ASSERT_EQ(set.tokens[w * 64 + static_cast<size_t>(t)], stream[static_cast<size_t>(set.starts[w] + t)]);
    }
    // The held-out evaluation stream starts where the calibration range ends.
    const auto eval = perplexity_tokens("tinystories", *tok, 64, 0.5, 1.0);
    EXPECT_EQ(eval.size(), stream.size() - static_cast<size_t>(half));
    EXPECT_EQ(eval[0], stream[static_cast<size_t>(half)]);
}

TEST(Calibration, C4DrawsDocumentsFromItsRange) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    CalibOptions o;
    o.source = "c4";
    o.nsamples = 6;
    o.seqlen = 128;
    o.range = TokenRange::parse("0:0.25");
    const CalibSet set = sample_calibration(o, *tok);
    ASSERT_EQ(set.starts.size(), 6u);
    for (int64_t doc : set.starts) EXPECT_LT(doc, 500);
    EXPECT_EQ(set.offsets.size(), 6u);
}

TEST(Calibration, RangesParseAndRejectNonsense) {
    EXPECT_EQ(TokenRange::parse("0.5:1").begin, 0.5);
    EXPECT_EQ(TokenRange::parse(":0.3").end, 0.3);
    EXPECT_TRUE(TokenRange::parse("0:0.5").overlaps(TokenRange::parse("0.4:1")));
    EXPECT_FALSE(TokenRange::parse("0:0.5").overlaps(TokenRange::parse("0.5:1")));
    EXPECT_THROW(TokenRange::parse("half"), ConfigError);
    EXPECT_THROW(TokenRange::parse("0.6:0.2"), ConfigError);
    EXPECT_THROW(TokenRange::parse("0:1.5"), ConfigError);
    EXPECT_THROW(TokenRange::parse("0x:1"), ConfigError);
}

}  // namespace
}  // namespace saliq
