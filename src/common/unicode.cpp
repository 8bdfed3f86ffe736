#include "saliq/unicode.h"

#include <algorithm>

namespace saliq::unicode {
namespace {

struct CategoryRange {
    uint32_t first;
    uint32_t last;
    uint8_t category;
};

#include "unicode_data.inc"

}  // namespace

Category category(char32_t cp) {
    const auto* end = std::end(kCategoryRanges);
    const auto* it = std::upper_bound(std::begin(kCategoryRanges), end, static_cast<uint32_t>(cp),
                                      [](uint32_t value, const CategoryRange& r) { return value < r.first; });
    if (it == std::begin(kCategoryRanges)) return {};
    --it;
    if (static_cast<uint32_t>(cp) > it->last) return {};
    const char* name = kCategoryNames[it->category];
    return {name[0], name[1]};
}

bool is_white_space(char32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

DecodedText decode_utf8(const std::string& text) {
    DecodedText out;
    out.cps.reserve(text.size());
    out.offsets.reserve(text.size() + 1);
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    size_t i = 0;
    while (i < n) {
        out.offsets.push_back(i);
        const unsigned char b = s[i];
        size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
        char32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
        bool valid = len != 0 && i + len <= n;
        for (size_t k = 1; valid && k < len; ++k) {
            if ((s[i + k] & 0xC0) != 0x80) valid = false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        // Overlong forms, surrogates and values past U+10FFFF are not UTF-8 either.
        if (valid && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
                      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF))
            valid = false;
        if (!valid) {
            cp = 0xFFFD;
            len = 1;
        }
        out.cps.push_back(cp);
        i += len;
    }
    out.offsets.push_back(n);
    return out;
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

}  // namespace saliq::unicode
