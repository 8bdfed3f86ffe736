#include "saliq/corpus.h"

#include "saliq/error.h"
#include "saliq/tokenizer.h"
#include "test_utils.h"

namespace saliq {
namespace {

TEST(Corpus, WikiText2IsJoinedLikeTheHuggingFaceRows) {
    const std::string text = corpus_text("wikitext2");
    // Rows: "" (the file's first line is blank), " = Robert Boulter = \n", "", " Robert Boulter is ...\n", ...
    // joined with "\n\n".
    EXPECT_EQ(text.rfind("\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is", 0), 0u) << text.substr(0, 60);
    // 4,358 rows give 4,357 separators; non-blank rows add one "\n" each (2,891 of them).
    size_t newlines = 0;
    for (char ch : text) newlines += ch == '\n';
    EXPECT_EQ(newlines, 2u * 4357u + 2891u);
}

TEST(Corpus, PtbSentencesAreStrippedAndSpaceJoined) {
    const std::string text = corpus_text("ptb");
    EXPECT_EQ(text.find('\n'), std::string::npos);
    EXPECT_NE(text[0], ' ');
    EXPECT_EQ(text.find("  "), std::string::npos);
}

TEST(Corpus, UnknownNamesAndMissingFilesAreRefused) {
    EXPECT_THROW(corpus_text("wikitext3"), ConfigError);
    EXPECT_THROW(corpus_path("imagenet"), ConfigError);
}

TEST(Corpus, C4WindowsAreDeterministicAndOfSeqlen) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    const auto a = perplexity_tokens("c4", *tok, 64);
    const auto b = perplexity_tokens("c4", *tok, 64);
    EXPECT_EQ(a.size(), 256u * 64u);
    EXPECT_EQ(a, b);
}

TEST(Corpus, TextFileGetsBosThenTokens) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    test::TempDir dir;
    test::write_bytes(dir.file("t.txt"), "Lily saw a cat.");
    const auto tokens = perplexity_tokens(dir.file("t.txt"), *tok, 8);
    ASSERT_GT(tokens.size(), 2u);
    EXPECT_EQ(tokens[0], tok->bos_id());
    EXPECT_EQ(std::vector<int32_t>(tokens.begin() + 1, tokens.end()), tok->encode("Lily saw a cat."));
}

TEST(Rng, UniformStaysInRangeAndIsReproducible) {
    Rng a(7), b(7);
    for (int i = 0; i < 1000; ++i) {
        const int64_t x = a.uniform(3, 9);
        EXPECT_GE(x, 3);
        EXPECT_LE(x, 9);
        EXPECT_EQ(x, b.uniform(3, 9));
    }
    EXPECT_THROW(a.uniform(5, 4), ConfigError);
}

}  // namespace
}  // namespace saliq
