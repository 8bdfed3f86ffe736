#include "saliq/split_regex.h"

#include <gtest/gtest.h>

#include "saliq/error.h"
#include "saliq/unicode.h"
#include "test_utils.h"

namespace saliq {
namespace {

const char* const kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char* const kLlama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// The text cut at the matches, gaps kept (tokenizers' "Isolated" split).
std::vector<std::string> pieces(const SplitRegex& re, const std::string& text) {
    const auto d = unicode::decode_utf8(text);
    std::vector<std::string> out;
    size_t pos = 0;
    for (const auto& [a, b] : re.find_all(d.cps, 0, d.cps.size())) {
        if (a > pos) out.push_back(text.substr(d.offsets[pos], d.offsets[a] - d.offsets[pos]));
        out.push_back(text.substr(d.offsets[a], d.offsets[b] - d.offsets[a]));
        pos = b;
    }
    if (pos < d.cps.size()) out.push_back(text.substr(d.offsets[pos]));
    return out;
}

using V = std::vector<std::string>;

TEST(SplitRegex, Gpt2SplitsWordsContractionsAndSpaces) {
    SplitRegex re(kGpt2);
    EXPECT_EQ(pieces(re, "Hello world's  end"), (V{"Hello", " world", "'s", " ", " end"}));
    // The last space before a word joins it; a run of spaces at the end stays whole.
    EXPECT_EQ(pieces(re, "a   b   "), (V{"a", "  ", " b", "   "}));
    EXPECT_EQ(pieces(re, "x=12345!?\n"), (V{"x", "=", "12345", "!?", "\n"}));
    EXPECT_EQ(pieces(re, "caf\xC3\xA9 \xE2\x98\x95"), (V{"caf\xC3\xA9", " \xE2\x98\x95"}));  // é is a letter, ☕ is not
    EXPECT_EQ(pieces(re, "I'M"), (V{"I", "'", "M"}));  // GPT-2's contractions are case-sensitive
}

TEST(SplitRegex, Llama3FoldsContractionsAndCutsNumbersInThrees) {
    SplitRegex re(kLlama3);
    EXPECT_EQ(pieces(re, "I'M 1234567"), (V{"I", "'M", " ", "123", "456", "7"}));
    EXPECT_EQ(pieces(re, "(hello)\n\n  world"), (V{"(hello", ")\n\n", " ", " world"}));
}

TEST(SplitRegex, LazyCountedAndAnchoredForms) {
    EXPECT_EQ(pieces(SplitRegex("a+?"), "aaa"), (V{"a", "a", "a"}));
    EXPECT_EQ(pieces(SplitRegex("a{2}"), "aaaaa"), (V{"aa", "aa", "a"}));
    EXPECT_EQ(pieces(SplitRegex("\\s+$"), "a b  "), (V{"a b", "  "}));
    EXPECT_EQ(pieces(SplitRegex("[^a-c]+"), "abxyzc"), (V{"ab", "xyz", "c"}));
    EXPECT_EQ(pieces(SplitRegex("\\x{4E00}|x(?=y)"), "\xE4\xB8\x80xyxz"), (V{"\xE4\xB8\x80", "x", "yxz"}));
    EXPECT_EQ(pieces(SplitRegex("a{,2}"), "a{,2}"), (V{"a{,2}"}));  // not a count: literal braces
}

TEST(SplitRegex, UnsupportedConstructsAreRefusedByName) {
    for (const char* pattern : {"(?<=a)b", "a++", "\\p{Han}", "(a", "a)", "[abc", "*a", "(a*)*", "\\1", "[a[b]]"}) {
        try {
            SplitRegex re(pattern);
            ADD_FAILURE() << pattern << " compiled";
        } catch (const ConfigError& e) {
            EXPECT_NE(std::string(e.what()).find(pattern), std::string::npos) << e.what();
        }
    }
}

TEST(SplitRegex, CatastrophicBacktrackingIsRefusedNotHung) {
    SplitRegex re("(a+)+b");
    const auto text = unicode::decode_utf8(std::string(40, 'a') + "c");
    EXPECT_THROW(re.find_all(text.cps, 0, text.cps.size()), ConfigError);
}

// Bounded at each position but not over the text: a*a*c costs O(L^2) at a position L characters from the end, so
// O(n^3) over a run of a's (about 9e9 steps at n = 3000: the half hour a test set took). Refused within the
// text's budget instead.
TEST(SplitRegex, PatternsTooCostlyOverAWholeTextAreRefused) {
    SplitRegex re("a*a*c");
    const auto text = unicode::decode_utf8(std::string(3000, 'a'));
    EXPECT_THROW(re.find_all(text.cps, 0, text.cps.size()), ConfigError);
    // The same pattern on text it matches runs.
    const auto fine = unicode::decode_utf8(std::string(20, 'a') + "c " + std::string(5, 'a') + "c");
    EXPECT_EQ(re.find_all(fine.cps, 0, fine.cps.size()).size(), 2u);
}

// 100k nested groups overflowed the stack (parse, compile and the tree's destructor recurse once per level); counted
// repeats inside counted repeats copied their body into 10^12 instructions. Both are refused when compiling.
TEST(SplitRegex, DeepNestingAndMultiplyingRepeatsAreRefused) {
    const std::string deep = std::string(100000, '(') + "a" + std::string(100000, ')');
    EXPECT_NE(test::error_of([&] { SplitRegex re(deep); }).find("nested more than 64 deep"), std::string::npos);
    const std::string message = test::error_of([] { SplitRegex re("((((a{1000}){1000}){1000}){1000})"); });
    EXPECT_NE(message.find("instructions"), std::string::npos) << message;
    // Up to the limits, patterns compile and run.
    EXPECT_EQ(pieces(SplitRegex(std::string(64, '(') + "a" + std::string(64, ')')), "aa"), (V{"a", "a"}));
    EXPECT_EQ(pieces(SplitRegex("(a{1000}){1000}"), "aaa"), (V{"aaa"}));
}

TEST(SplitRegex, FullMatchBacktracksUntilTheTextEnds) {
    auto full = [](const char* pattern, const std::string& text) {
        return SplitRegex(pattern).full_match(unicode::decode_utf8(text).cps);
    };
    EXPECT_TRUE(full(".*\\.(q_proj|v_proj)", "model.layers.0.self_attn.v_proj"));
    EXPECT_FALSE(full(".*\\.(q_proj|v_proj)", "model.layers.0.self_attn.v_proj.lora"));
    EXPECT_TRUE(full("a|ab", "ab"));  // the preferred branch ends early: the other one is tried
    EXPECT_FALSE(full("a(?=b)", "ab"));
    EXPECT_THROW(full("(m|m|.)*(m|m|.)*(m|m|.)*z", "model.layers.0.self_attn.q_proj"), ConfigError);
}

TEST(Unicode, CategoriesAndInvalidBytes) {
    EXPECT_EQ(unicode::category('A').major, 'L');
    EXPECT_EQ(unicode::category(0x00BD).minor, 'o');  // ½ is No
    EXPECT_EQ(unicode::category(0x0378).major, 'C');  // unassigned
    EXPECT_TRUE(unicode::is_white_space(0x3000));
    EXPECT_FALSE(unicode::is_white_space(0x200B));    // zero-width space is not White_Space
    const auto d = unicode::decode_utf8(std::string("a\xFF\xC3\xA9", 4));
    ASSERT_EQ(d.cps.size(), 3u);
    EXPECT_EQ(d.cps[1], 0xFFFDu);
    EXPECT_EQ(d.offsets, (std::vector<size_t>{0, 1, 2, 4}));
}

}  // namespace
}  // namespace saliq
