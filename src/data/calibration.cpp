#include "saliq/calibration.h"

#include <cmath>

#include "saliq/corpus.h"
#include "saliq/error.h"
#include "saliq/log.h"
#include "saliq/strings.h"
#include "saliq/token_cache.h"
#include "saliq/tokenizer.h"

namespace saliq {

TokenRange TokenRange::parse(const std::string& text) {
    const auto colon = text.find(':');
    if (colon == std::string::npos)
        throw ConfigError("range '" + text + "' must look like BEGIN:END with fractions, e.g. 0:0.5");
    TokenRange r;
    try {
        size_t used = 0;
        const std::string a = text.substr(0, colon), b = text.substr(colon + 1);
        r.begin = a.empty() ? 0.0 : std::stod(a, &used);
        if (!a.empty() && used != a.size()) throw std::invalid_argument(a);
        r.end = b.empty() ? 1.0 : std::stod(b, &used);
        if (!b.empty() && used != b.size()) throw std::invalid_argument(b);
    } catch (const std::logic_error&) {
        throw ConfigError("range '" + text + "' must look like BEGIN:END with fractions, e.g. 0:0.5");
    }
    if (!(r.begin >= 0.0 && r.begin < r.end && r.end <= 1.0))
        throw ConfigError("range '" + text + "' must satisfy 0 <= BEGIN < END <= 1");
    return r;
}

std::string TokenRange::to_string() const { return strprintf("%g:%g", begin, end); }

CalibSet sample_calibration(const CalibOptions& o, const Tokenizer& tokenizer) {
    if (o.nsamples < 1) throw ConfigError("--nsamples must be at least 1");
    if (o.seqlen < 2) throw ConfigError("--seqlen must be at least 2");
    Rng rng(o.seed);
    CalibSet set;
    set.tokens.reserve(static_cast<size_t>(o.nsamples * o.seqlen));
    if (o.source == "c4") {
        const auto docs = c4_documents(corpus_path("c4"));
        const auto n = static_cast<double>(docs.size());
        const auto lo = static_cast<int64_t>(std::floor(o.range.begin * n));
        const auto hi = static_cast<int64_t>(std::floor(o.range.end * n));
        if (hi <= lo) throw ConfigError("calibration range " + o.range.to_string() + " of c4 holds no document");
        set.stream_tokens = hi - lo;
        int64_t attempts = 0;
        for (int64_t s = 0; s < o.nsamples; ++s) {
            std::vector<int32_t> doc;
            int64_t index;
            do {
                if (++attempts > 100 * o.nsamples + 1000)
                    throw ConfigError(strprintf("calibration set too small: c4 range %s has too few documents longer "
                                                "than --seqlen %lld tokens",
                                                o.range.to_string().c_str(), (long long)o.seqlen));
                index = rng.uniform(lo, hi - 1);
                doc = tokenizer.prefix();
                const auto body = tokenizer.encode(docs[static_cast<size_t>(index)]);
                doc.insert(doc.end(), body.begin(), body.end());
            } while (static_cast<int64_t>(doc.size()) <= o.seqlen);
            const int64_t start = rng.uniform(0, static_cast<int64_t>(doc.size()) - o.seqlen - 1);
            set.tokens.insert(set.tokens.end(), doc.begin() + start, doc.begin() + start + o.seqlen);
            set.starts.push_back(index);
            set.offsets.push_back(start);
        }
        return set;
    }
    std::vector<int32_t> stream = tokenizer.prefix();
    const auto body = encode_cached(tokenizer, corpus_text(o.source));
    stream.insert(stream.end(), body.begin(), body.end());
    const auto n = static_cast<double>(stream.size());
    const auto lo = static_cast<int64_t>(std::floor(o.range.begin * n));
    const auto hi = static_cast<int64_t>(std::floor(o.range.end * n));
    set.stream_tokens = hi - lo;
    if (hi - lo < o.seqlen + 1)
        throw ConfigError(strprintf("calibration set too small: range %s of %s has %lld tokens, fewer than "
                                    "--seqlen %lld + 1",
                                    o.range.to_string().c_str(), o.source.c_str(), (long long)(hi - lo),
                                    (long long)o.seqlen));
    if (o.nsamples * o.seqlen > hi - lo)
        log_warn(strprintf("calibration: %lld windows of %lld tokens from only %lld tokens: windows will overlap",
                           (long long)o.nsamples, (long long)o.seqlen, (long long)(hi - lo)));
    for (int64_t s = 0; s < o.nsamples; ++s) {
        // Windows lie wholly inside [lo, hi): start in [lo, hi - seqlen - 1], as GPTQ's randint(0, L - seqlen - 1).
        const int64_t start = rng.uniform(lo, hi - o.seqlen - 1);
        set.tokens.insert(set.tokens.end(), stream.begin() + start, stream.begin() + start + o.seqlen);
        set.starts.push_back(start);
    }
    return set;
}

}  // namespace saliq
