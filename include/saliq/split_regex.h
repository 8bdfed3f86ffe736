// The regular expressions byte-level BPE pre-tokenizers split text with (GPT-2's, LLaMA-3's, Qwen2's, ...), matched
// over code points with Oniguruma's leftmost-first semantics, as Hugging Face tokenizers does. The supported
// subset: literals and escapes, classes with ranges, \p{..} categories, \s \d \w and their negations, `.`, `^`, `$`,
// groups (plain, `(?:`, `(?i:` ASCII case folding), lookahead `(?=` `(?!`, alternation, greedy and lazy `? * + {m,n}`.
// Anything else (lookbehind, backreferences, possessive quantifiers, scripts) is refused when compiling, as are
// groups nested more than 64 deep and counted repeats that multiply past 2^20 instructions. PEFT's target_modules
// patterns are matched with it too (full_match): its step budget bounds what a hostile pattern costs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace saliq {

class SplitRegex {
public:
    // Throws ConfigError naming the construct saliq lacks or the position of a syntax error.
    explicit SplitRegex(const std::string& pattern);
    const std::string& pattern() const { return pattern_; }

    // Non-overlapping matches in text[begin, end), leftmost first, as [first, last) index pairs; empty matches
    // are skipped. Lookaheads and `$` see the text up to `end`.
    std::vector<std::pair<size_t, size_t>> find_all(const std::vector<char32_t>& text, size_t begin,
                                                    size_t end) const;
    // Whether the whole text matches (Python's re.fullmatch): a branch that ends early backtracks into the others.
    // Throws ConfigError past the same step budget as find_all.
    bool full_match(const std::vector<char32_t>& text) const;

    struct ClassItem {
        enum Kind : uint8_t { kRange, kCategory, kSpace, kDigit, kWord } kind = kRange;
        bool negated = false;
        char32_t lo = 0, hi = 0;       // kRange
        char major = 0, minor = 0;     // kCategory: minor 0 for a whole major class (\p{L})
    };
    struct CharClass {
        std::vector<ClassItem> items;
        bool negated = false;
    };
    enum class Op : uint8_t { kChar, kClass, kAny, kSplit, kJmp, kMatch, kLook, kBegin, kEnd };
    struct Inst {
        Op op = Op::kMatch;
        bool fold = false;     // kChar: ASCII case-insensitive
        bool negate = false;   // kLook: (?! rather than (?=
        char32_t c = 0;        // kChar
        uint32_t x = 0, y = 0; // kSplit: preferred, other; kJmp: x; kLook: sub-program x, continuation y; kClass: x
    };

private:
    // `steps` counts backtracking steps against `budget`, over a whole find_all (the text's, not one position's).
    // With `to_end`, only a match that ends at `end` counts.
    size_t run(uint32_t pc, const char32_t* text, size_t pos, size_t begin, size_t end, size_t& steps, size_t budget,
               bool to_end) const;

    std::string pattern_;
    std::vector<Inst> program_;
    std::vector<CharClass> classes_;
};

}  // namespace saliq
