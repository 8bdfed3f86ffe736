// Batched log-likelihood of continuations (the harness's `_loglikelihood_tokens`), with optional prefix sharing:
// the requests of a group (the choices of one item) usually start with the same tokens, so they are packed into one
// row [prefix | branch 1 | branch 2 | ...] whose attention mask lets each branch see the prefix and its own earlier
// tokens only, at the positions it would have unpacked. The prefix then runs once instead of once per choice.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "saliq/error.h"
#include "saliq/model.h"
#include "saliq/strings.h"
#include "saliq/zeroshot.h"

namespace saliq {
namespace {

// One row of a batch: a single request, or a group's shared prefix followed by each request's remaining tokens.
struct Row {
    std::vector<int32_t> tokens;     // [T]
    std::vector<int64_t> positions;  // [T] RoPE position of each token in its own request
    std::vector<int32_t> segments;   // [T] 0: shared prefix; k + 1: tokens of the row's k-th branch
    struct Target {
        size_t group = 0, index = 0;     // the request
        std::vector<int64_t> rows;       // row positions whose next-token distributions score the continuation
        std::vector<int32_t> tokens;     // the continuation tokens they predict
    };
    std::vector<Target> targets;
};

// The model input of a request: (context + continuation)[-(max_length + 1):][:-1].
std::vector<int32_t> model_input(const TokenizedRequest& r, int64_t max_length) {
    if (r.context.empty()) throw ConfigError("log-likelihood request with an empty context (the harness uses [BOS])");
    if (r.continuation.empty()) throw ConfigError("log-likelihood request with an empty continuation");
    std::vector<int32_t> full = r.context;
    full.insert(full.end(), r.continuation.begin(), r.continuation.end());
    const size_t keep = std::min(full.size(), static_cast<size_t>(max_length + 1));
    return std::vector<int32_t>(full.end() - static_cast<std::ptrdiff_t>(keep), full.end() - 1);
}

void add_rows(const std::vector<TokenizedRequest>& group, size_t g, int64_t max_length, bool share,
              std::vector<Row>& rows) {
    std::vector<std::vector<int32_t>> inputs;
    for (const auto& r : group) inputs.push_back(model_input(r, max_length));
    size_t prefix = 0;
    if (share && inputs.size() > 1) {
        prefix = inputs[0].size();
        for (const auto& in : inputs) {
            size_t i = 0;
            while (i < prefix && i < in.size() && in[i] == inputs[0][i]) ++i;
            prefix = i;
        }
    }
    // Without a common prefix every request gets a row of its own (packing would only grow the attention).
    const bool packed = prefix > 0;
    Row row;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const auto& in = inputs[i];
        if (!packed || i == 0) {
            row = Row{};
            const size_t head = packed ? prefix : 0;
            row.tokens.assign(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(head));
            row.positions.resize(head);
            std::iota(row.positions.begin(), row.positions.end(), 0);
            row.segments.assign(head, 0);
        }
        const size_t branch_start = row.tokens.size();
        const size_t shared = packed ? prefix : 0;
        const int32_t segment = packed ? static_cast<int32_t>(i + 1) : 1;
        for (size_t p = shared; p < in.size(); ++p) {
            row.tokens.push_back(in[p]);
            row.positions.push_back(static_cast<int64_t>(p));
            row.segments.push_back(segment);
        }
        // A continuation longer than the window keeps its last max_length tokens (the harness would fail here).
        const auto& continuation = group[i].continuation;
        const size_t n = in.size(), c = std::min(continuation.size(), n);
        Row::Target target;
        target.group = g;
        target.index = i;
        target.tokens.assign(continuation.end() - static_cast<std::ptrdiff_t>(c), continuation.end());
        for (size_t j = 0; j < c; ++j) {
            const size_t p = n - c + j;  // input position whose distribution predicts continuation token j
            target.rows.push_back(static_cast<int64_t>(p < shared ? p : branch_start + (p - shared)));
        }
        row.targets.push_back(std::move(target));
        if (!packed || i + 1 == inputs.size()) rows.push_back(std::move(row));
    }
}

at::Tensor rotate_half(const at::Tensor& x) {
    const int64_t half = x.size(-1) / 2;
    return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// block_forward (src/model/llama.cpp) with explicit positions and an explicit attention mask. Kept numerically
// identical to it; the equality is pinned by tests against LlamaModel::forward.
at::Tensor packed_block_forward(const DecoderBlock& block, const LlamaConfig& config,
                                const at::Tensor& cos,      // [B, 1, T, d]
                                const at::Tensor& sin,      // [B, 1, T, d]
                                const at::Tensor& blocked,  // [B, 1, 1, T, T] true where attention is not allowed
                                const at::Tensor& hidden) { // [B, T, H]
    const int64_t B = hidden.size(0), T = hidden.size(1);
    const int64_t nh = config.n_heads, nkv = config.n_kv_heads, d = config.head_dim, rep = nh / nkv;
    at::Tensor x = rms_norm(hidden, block.input_norm, config.rms_norm_eps);
    at::Tensor q = block.linears[kQProj]->forward(x).view({B, T, nh, d}).transpose(1, 2);   // [B, nh, T, d]
    at::Tensor k = block.linears[kKProj]->forward(x).view({B, T, nkv, d}).transpose(1, 2);  // [B, nkv, T, d]
    at::Tensor v = block.linears[kVProj]->forward(x).view({B, T, nkv, d}).transpose(1, 2);  // [B, nkv, T, d]
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
    q = q.reshape({B, nkv, rep * T, d}) * (1.0 / std::sqrt(static_cast<double>(d)));
    at::Tensor scores = at::matmul(q, k.transpose(-1, -2)).view({B, nkv, rep, T, T});
    if (scores.scalar_type() != at::kFloat) scores = scores.to(at::kFloat);
    scores.masked_fill_(blocked, -std::numeric_limits<float>::infinity());
    at::Tensor probs = at::softmax(scores, -1).to(hidden.scalar_type()).view({B, nkv, rep * T, T});
    at::Tensor attn = at::matmul(probs, v).view({B, nh, T, d}).transpose(1, 2).reshape({B, T, nh * d});
    at::Tensor h = hidden + block.linears[kOProj]->forward(attn);
    at::Tensor y = rms_norm(h, block.post_norm, config.rms_norm_eps);
    at::Tensor mlp = at::silu(block.linears[kGateProj]->forward(y)) * block.linears[kUpProj]->forward(y);
    return h + block.linears[kDownProj]->forward(mlp);
}

// Final hidden states [B, T, H] of packed rows.
at::Tensor packed_hidden(const LlamaModel& model, const at::Tensor& ids,  // [B, T]
                         const at::Tensor& positions,                     // [B, T]
                         const at::Tensor& segments) {                    // [B, T], -1 for padding
    const int64_t B = ids.size(0), T = ids.size(1), d = model.config().head_dim;
    at::Tensor h = model.embed(ids);
    const at::Device device = h.device();
    const at::Tensor flat = positions.reshape({-1}).to(device);
    const at::Tensor cos = model.rope().cos.index_select(0, flat).view({B, 1, T, d});
    const at::Tensor sin = model.rope().sin.index_select(0, flat).view({B, 1, T, d});
    const at::Tensor seg_q = segments.unsqueeze(2), seg_k = segments.unsqueeze(1);  // [B, T, 1], [B, 1, T]
    const at::Tensor causal = at::ones({T, T}, at::kBool).tril();
    const at::Tensor allowed = causal & (seg_q.eq(seg_k) | seg_k.eq(0));  // padding only ever sees padding/prefix
    const at::Tensor blocked = allowed.logical_not().view({B, 1, 1, T, T}).to(device);
    for (int64_t i = 0; i < model.n_layers(); ++i) h = packed_block_forward(model.block(i), model.config(), cos, sin,
                                                                             blocked, h);
    return h;
}

}  // namespace

std::vector<std::vector<LoglikelihoodResult>> compute_loglikelihoods(
    const LlamaModel& model, const std::vector<std::vector<TokenizedRequest>>& groups,
    const LoglikelihoodOptions& options, const ProgressFn& progress) {
    const int64_t max_positions = model.config().max_position_embeddings;
    const int64_t max_length = options.max_length > 0 ? options.max_length : max_positions;
    if (max_length > max_positions)
        throw ConfigError(strprintf("max_length %lld exceeds the model's max_position_embeddings %lld",
                                    (long long)max_length, (long long)max_positions));
    if (options.batch_size < 1) throw ConfigError("--batch-size must be at least 1");

    std::vector<std::vector<LoglikelihoodResult>> results(groups.size());
    std::vector<Row> rows;
    int64_t total = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
        results[g].resize(groups[g].size());
        total += static_cast<int64_t>(groups[g].size());
        add_rows(groups[g], g, max_length, options.share_prefix, rows);
    }
    // Longest first, as the harness does: the first batch shows the memory peak, and neighbours pad little.
    std::stable_sort(rows.begin(), rows.end(),
                     [](const Row& a, const Row& b) { return a.tokens.size() > b.tokens.size(); });

    c10::InferenceMode guard;
    const auto start = std::chrono::steady_clock::now();
    int64_t done = 0;
    for (size_t first = 0; first < rows.size();) {
        size_t last = first;
        int64_t n_requests = 0;
        while (last < rows.size() && n_requests < options.batch_size)
            n_requests += static_cast<int64_t>(rows[last++].targets.size());
        const int64_t B = static_cast<int64_t>(last - first), T = static_cast<int64_t>(rows[first].tokens.size());

        at::Tensor ids = at::zeros({B, T}, at::kLong), positions = at::zeros({B, T}, at::kLong);
        at::Tensor segments = at::full({B, T}, -1, at::kInt);
        std::vector<int64_t> gather_rows;
        std::vector<int64_t> gather_tokens;
        auto ids_a = ids.accessor<int64_t, 2>();
        auto pos_a = positions.accessor<int64_t, 2>();
        auto seg_a = segments.accessor<int32_t, 2>();
        for (int64_t b = 0; b < B; ++b) {
            const Row& row = rows[first + static_cast<size_t>(b)];
            for (size_t t = 0; t < row.tokens.size(); ++t) {
                ids_a[b][static_cast<int64_t>(t)] = row.tokens[t];
                pos_a[b][static_cast<int64_t>(t)] = row.positions[t];
                seg_a[b][static_cast<int64_t>(t)] = row.segments[t];
            }
            for (const auto& target : row.targets)
                for (size_t j = 0; j < target.rows.size(); ++j) {
                    gather_rows.push_back(b * T + target.rows[j]);
                    gather_tokens.push_back(target.tokens[j]);
                }
        }

        at::Tensor hidden;
        if (options.share_prefix) {
            hidden = packed_hidden(model, ids, positions, segments);
        } else {
            hidden = model.embed(ids);
            for (int64_t i = 0; i < model.n_layers(); ++i) hidden = model.run_block(i, hidden);
        }
        const at::Device device = hidden.device();
        const at::Tensor index = at::tensor(gather_rows, at::kLong).to(device);
        const at::Tensor tokens = at::tensor(gather_tokens, at::kLong).to(device);
        const at::Tensor selected = hidden.reshape({B * T, hidden.size(2)}).index_select(0, index);  // [N, H]
        const at::Tensor logits = model.head(selected.unsqueeze(0)).squeeze(0);                    // [N, V]
        const at::Tensor logp = at::log_softmax(logits, -1).gather(1, tokens.unsqueeze(1)).squeeze(1);
        const at::Tensor greedy = logits.argmax(-1).eq(tokens);
        const at::Tensor logp_cpu = logp.to(at::kCPU, at::kDouble).contiguous();
        const at::Tensor greedy_cpu = greedy.to(at::kCPU).contiguous();
        const double* lp = logp_cpu.data_ptr<double>();
        const bool* gr = greedy_cpu.data_ptr<bool>();

        size_t k = 0;
        for (size_t r = first; r < last; ++r)
            for (const auto& target : rows[r].targets) {
                LoglikelihoodResult out;
                out.is_greedy = true;
                for (size_t j = 0; j < target.rows.size(); ++j, ++k) {
                    out.logprob += lp[k];
                    out.is_greedy = out.is_greedy && gr[k];
                }
                if (!std::isfinite(out.logprob))
                    throw NumericError(strprintf("%s: non-finite log-likelihood (model produced NaN/Inf)",
                                                 options.label.c_str()));
                results[target.group][target.index] = out;
            }
        done += n_requests;
        first = last;
        if (progress) {
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (!progress({options.label, done, total, elapsed, "requests"})) throw Cancelled{};
        }
    }
    return results;
}

}  // namespace saliq
