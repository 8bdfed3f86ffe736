// Unicode for the byte-level BPE tokenizers: UTF-8 decoding with byte offsets, general categories (the table
// src/data/unicode_data.inc generated from Python's unicodedata), and the White_Space property.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saliq::unicode {

// Two-letter general category ("Lu", "Nd", ...; "Cn" for unassigned code points).
struct Category {
    char major = 'C';
    char minor = 'n';
};
Category category(char32_t cp);
bool is_white_space(char32_t cp);  // the White_Space property (what Oniguruma's \s matches)

// Code points with the byte offset each starts at; `offsets` has one more entry, the text's length. A byte that
// does not start valid UTF-8 becomes U+FFFD covering that one byte, so the offsets always tile the text.
struct DecodedText {
    std::vector<char32_t> cps;
    std::vector<size_t> offsets;
};
DecodedText decode_utf8(const std::string& text);
void append_utf8(std::string& out, char32_t cp);

}  // namespace saliq::unicode
