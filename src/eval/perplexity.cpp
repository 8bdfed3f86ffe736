#include "saliq/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/model.h"
#include "saliq/strings.h"

namespace saliq {
namespace {
constexpr int64_t kLogitChunkElements = 16 * 1024 * 1024;  // fp32 logits per head call: 64 MiB
// A model that streams its blocks is run block-major over groups of windows whose hidden states fit this budget, so
// each block is read once per group rather than once per batch.
constexpr int64_t kStreamGroupBytes = int64_t{512} << 20;

// Each window's summed next-token cross-entropy, windows `ids` [b, T] given their last hidden states [b, T, H].
std::vector<double> windows_nll(const LlamaModel& model, const at::Tensor& ids, const at::Tensor& hidden) {
    const int64_t seqlen = ids.size(1);
    // The head runs over chunks of positions, so [b, T, V] fp32 logits never exist at once (at a 128k
    // vocabulary one 2048-token window would be 1 GiB).
    const at::Tensor h = hidden.narrow(1, 0, seqlen - 1).reshape({-1, model.config().hidden_size});
    const at::Tensor target = ids.narrow(1, 1, seqlen - 1).reshape({-1}).to(h.device());
    const int64_t rows = h.size(0);
    const int64_t chunk = std::max<int64_t>(1, kLogitChunkElements / model.config().vocab_size);
    at::Tensor loss = at::empty({rows}, h.options().dtype(at::kDouble));
    for (int64_t r = 0; r < rows; r += chunk) {
        const int64_t m = std::min(chunk, rows - r);
        loss.narrow(0, r, m).copy_(
            at::cross_entropy_loss(model.head(h.narrow(0, r, m)), target.narrow(0, r, m), {}, at::Reduction::None));
    }
    const at::Tensor per_window = loss.view({ids.size(0), seqlen - 1}).sum(1).cpu().contiguous();
    const double* p = per_window.data_ptr<double>();
    return std::vector<double>(p, p + per_window.numel());
}

// Last hidden states of windows `ids` [n, T], block by block: every block is read once for the n windows and run on
// them in batches of `batch`.
at::Tensor hidden_states_block_major(const LlamaModel& model, const at::Tensor& ids, int64_t batch) {
    const int64_t n = ids.size(0);
    at::Tensor h = model.embed(ids);
    at::Tensor next = at::empty_like(h);
    for (int64_t layer = 0; layer < model.n_layers(); ++layer) {
        const DecoderBlock block = model.read_block(layer);
        for (int64_t b = 0; b < n; b += batch) {
            const int64_t m = std::min(batch, n - b);
            next.narrow(0, b, m).copy_(model.run_block(block, h.narrow(0, b, m)));
        }
        std::swap(h, next);
    }
    return h;
}

}  // namespace

PerplexityResult evaluate_perplexity(const LlamaModel& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options, const ProgressFn& progress) {
    const int64_t seqlen = options.seqlen;
    if (seqlen < 2) throw ConfigError("--seqlen must be at least 2");
    if (seqlen > model.config().max_position_embeddings)
        throw ConfigError(strprintf("--seqlen %lld exceeds the model's max_position_embeddings %lld",
                                    (long long)seqlen, (long long)model.config().max_position_embeddings));
    if (options.batch_size < 1) throw ConfigError("--batch-size must be at least 1");
    int64_t n_windows = static_cast<int64_t>(tokens.size()) / seqlen;
    if (n_windows == 0)
        throw ConfigError(strprintf("the text has %zu tokens, fewer than one window of --seqlen %lld",
                                    tokens.size(), (long long)seqlen));
    if (options.max_windows > 0) n_windows = std::min(n_windows, options.max_windows);

    c10::InferenceMode guard;
    const auto start = std::chrono::steady_clock::now();
    at::Tensor all = at::from_blob(const_cast<int32_t*>(tokens.data()), {n_windows, seqlen}, at::kInt).to(at::kLong);
    std::vector<double> window_nll(static_cast<size_t>(n_windows), 0.0);
    double nll_sum = 0.0;  // this rank's windows
    // Resident blocks: window batch after window batch. Streamed blocks: groups of windows, block-major.
    const int64_t window_bytes = seqlen * model.config().hidden_size *
                                 static_cast<int64_t>(c10::elementSize(model.options().dtype().toScalarType()));
    const int64_t step = model.streams_blocks()
                             ? std::max(options.batch_size, kStreamGroupBytes / (2 * window_bytes))
                             : options.batch_size;
    // A distributed run scores its share of the windows (whole batches of them) and sums the losses.
    const auto [first, end] = dist_shard(n_windows, options.batch_size);
    for (int64_t w = first; w < end; w += step) {
        const int64_t b = std::min(step, end - w);
        at::Tensor ids = all.narrow(0, w, b);
        const at::Tensor hidden = model.streams_blocks()
                                      ? hidden_states_block_major(model, ids, options.batch_size)
                                      : model.hidden_states(ids);
        const std::vector<double> nll = windows_nll(model, ids, hidden);
        double batch_nll = 0.0;
        for (size_t i = 0; i < nll.size(); ++i) {
            window_nll[static_cast<size_t>(w) + i] = nll[i];
            batch_nll += nll[i];
        }
        if (!std::isfinite(batch_nll))
            throw NumericError(strprintf("perplexity: non-finite loss in windows %lld..%lld (model produced NaN/Inf)",
                                         (long long)w, (long long)(w + b - 1)));
        nll_sum += batch_nll;
        if (progress) {
            const double elapsed =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            const int64_t done = w + b - first;
            const double running = std::exp(nll_sum / static_cast<double>(done * (seqlen - 1)));
            if (!progress({"perplexity", done, end - first, elapsed, strprintf("ppl %.4f", running)}))
                throw Cancelled{};
        }
    }
    nll_sum = dist_sum(nll_sum);
    if (dist_active()) dist_all_reduce_sum(window_nll);  // every other rank holds zeros at this rank's windows
    PerplexityResult result;
    result.n_windows = n_windows;
    result.tokens_scored = n_windows * (seqlen - 1);
    result.nll_sum = nll_sum;
    result.window_nll = std::move(window_nll);
    result.ppl = std::exp(nll_sum / static_cast<double>(result.tokens_scored));
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.tokens_per_second = static_cast<double>(n_windows * seqlen) / std::max(result.seconds, 1e-9);
    return result;
}

}  // namespace saliq
