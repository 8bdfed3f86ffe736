// Batched log-likelihood of continuations (the harness's `_loglikelihood_tokens`), with optional prefix sharing.
// The requests of a group (the choices of one item) usually start with the same tokens. With sharing, that common
// prefix runs once, and each request's remaining tokens (its branch) attend to the prefix's keys and values plus
// their own earlier tokens, at the positions they would have unshared. Every score is the one the unshared
// computation gives; only the work shrinks.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "saliq/error.h"
#include "saliq/model.h"
#include "saliq/strings.h"
#include "saliq/zeroshot.h"

namespace saliq {
namespace {

// A shared prefix and the branches that continue it. A request that shares nothing is a prefix without branches.
struct Unit {
    std::vector<int32_t> prefix;                 // [P], positions 0..P-1
    std::vector<std::vector<int32_t>> branches;  // [S_k] each, positions P..P+S_k-1
    struct Target {
        size_t group = 0, index = 0;  // the request
        // For each scored token: its predicting position, either prefix row `row` (branch -1) or row `row` of
        // branch `branch`, and the token it must predict.
        std::vector<int32_t> branch;
        std::vector<int64_t> row;
        std::vector<int32_t> tokens;
    };
    std::vector<Target> targets;

    size_t longest_branch() const {
        size_t n = 0;
        for (const auto& b : branches) n = std::max(n, b.size());
        return n;
    }
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

Unit::Target make_target(const TokenizedRequest& r, size_t g, size_t i, size_t n_input, size_t prefix,
                         int32_t branch) {
    // A continuation longer than the window keeps its last max_length tokens (the harness would fail here).
    const size_t c = std::min(r.continuation.size(), n_input);
    Unit::Target t;
    t.group = g;
    t.index = i;
    t.tokens.assign(r.continuation.end() - static_cast<std::ptrdiff_t>(c), r.continuation.end());
    for (size_t j = 0; j < c; ++j) {
        const size_t p = n_input - c + j;  // input position whose distribution predicts continuation token j
        t.branch.push_back(p < prefix ? -1 : branch);
        t.row.push_back(static_cast<int64_t>(p < prefix ? p : p - prefix));
    }
    return t;
}

void add_units(const std::vector<TokenizedRequest>& group, size_t g, int64_t max_length, bool share,
               std::vector<Unit>& units) {
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
    if (prefix == 0) {  // nothing shared: one unit per request
        for (size_t i = 0; i < inputs.size(); ++i) {
            Unit unit;
            unit.targets.push_back(make_target(group[i], g, i, inputs[i].size(), inputs[i].size(), -1));
            unit.prefix = std::move(inputs[i]);
            units.push_back(std::move(unit));
        }
        return;
    }
    Unit unit;
    unit.prefix.assign(inputs[0].begin(), inputs[0].begin() + static_cast<std::ptrdiff_t>(prefix));
    for (size_t i = 0; i < inputs.size(); ++i) {
        int32_t branch = -1;
        if (inputs[i].size() > prefix) {
            branch = static_cast<int32_t>(unit.branches.size());
            unit.branches.emplace_back(inputs[i].begin() + static_cast<std::ptrdiff_t>(prefix), inputs[i].end());
        }
        unit.targets.push_back(make_target(group[i], g, i, inputs[i].size(), prefix, branch));
    }
    units.push_back(std::move(unit));
}

// ---------------------------------------------------------------------------------------------------------------
// The shared forward pass. A batch's real tokens (every unit's prefix, then its branches) form one flat list, so the
// per-token work (norms, linears, MLP) has no padding. Attention runs in padded blocks of rows gathered from that
// list: one block for the prefixes (plain causal) and a few for the branches, bucketed by length, each branch row
// seeing its unit's prefix and its own tokens. The block's pieces (norms, RoPE, attention, MLP) are block_forward's
// own (src/model/); tests pin the result to LlamaModel::forward.

constexpr size_t kBranchBuckets = 4;  // branch rows of a batch are split into this many length buckets

// One padded block of attention rows over the flat token list; padding slots point at a dummy row (index N).
struct AttentionRows {
    at::Tensor q_index;  // [B, Tq] flat index of each query slot
    at::Tensor k_index;  // [B, Tk] flat index of each key slot
    at::Tensor blocked;  // [B or 1, 1, 1, Tq, Tk] true where a query must not look
};

struct FlatBatch {
    at::Tensor ids;        // [N]
    at::Tensor positions;  // [N] RoPE position of each token in its own request
    std::vector<AttentionRows> rows;
    std::vector<int64_t> prefix_start;               // [units] flat index of each unit's first prefix token
    std::vector<std::vector<int64_t>> branch_start;  // [units][branches] flat index of each branch's first token
};

FlatBatch make_batch(const std::vector<Unit>& units, size_t first, size_t last) {
    FlatBatch b;
    std::vector<int64_t> ids, positions;
    struct BranchRef {
        size_t unit;
        int64_t start, length, prefix_start, prefix_length;
    };
    std::vector<BranchRef> branches;
    int64_t max_prefix = 0;
    for (size_t u = first; u < last; ++u) {
        const Unit& unit = units[u];
        const int64_t n_prefix = static_cast<int64_t>(unit.prefix.size());
        max_prefix = std::max(max_prefix, n_prefix);
        b.prefix_start.push_back(static_cast<int64_t>(ids.size()));
        for (int64_t t = 0; t < n_prefix; ++t) {
            ids.push_back(unit.prefix[static_cast<size_t>(t)]);
            positions.push_back(t);
        }
        b.branch_start.emplace_back();
        for (const auto& branch : unit.branches) {
            const int64_t start = static_cast<int64_t>(ids.size()), n = static_cast<int64_t>(branch.size());
            b.branch_start.back().push_back(start);
            branches.push_back({u - first, start, n, b.prefix_start.back(), n_prefix});
            for (int64_t t = 0; t < n; ++t) {
                ids.push_back(branch[static_cast<size_t>(t)]);
                positions.push_back(n_prefix + t);
            }
        }
    }
    const int64_t N = static_cast<int64_t>(ids.size());
    b.ids = at::tensor(ids, at::kLong);
    b.positions = at::tensor(positions, at::kLong);

    // Prefix rows: causal over their own tokens (padding queries see real keys and padding only).
    const int64_t G = static_cast<int64_t>(last - first), P = max_prefix;
    at::Tensor prefix_index = at::full({G, P}, N, at::kLong);
    auto pa = prefix_index.accessor<int64_t, 2>();
    for (int64_t g = 0; g < G; ++g)
        for (int64_t t = 0; t < static_cast<int64_t>(units[first + static_cast<size_t>(g)].prefix.size()); ++t)
            pa[g][t] = b.prefix_start[static_cast<size_t>(g)] + t;
    b.rows.push_back({prefix_index, prefix_index, at::ones({P, P}, at::kBool).triu(1).view({1, 1, 1, P, P})});

    // Branch rows, longest first, in buckets: keys are [the unit's prefix, padded to the bucket's longest | own].
    std::stable_sort(branches.begin(), branches.end(),
                     [](const BranchRef& x, const BranchRef& y) { return x.length > y.length; });
    const size_t per_bucket = (branches.size() + kBranchBuckets - 1) / kBranchBuckets;
    for (size_t lo = 0; lo < branches.size(); lo += per_bucket) {
        const size_t hi = std::min(branches.size(), lo + per_bucket);
        const int64_t R = static_cast<int64_t>(hi - lo), S = branches[lo].length;
        int64_t K = 0;
        for (size_t i = lo; i < hi; ++i) K = std::max(K, branches[i].prefix_length);
        at::Tensor q_index = at::full({R, S}, N, at::kLong), k_index = at::full({R, K + S}, N, at::kLong);
        at::Tensor prefix_length = at::empty({R}, at::kLong);
        auto qa = q_index.accessor<int64_t, 2>();
        auto ka = k_index.accessor<int64_t, 2>();
        auto la = prefix_length.accessor<int64_t, 1>();
        for (int64_t r = 0; r < R; ++r) {
            const BranchRef& br = branches[lo + static_cast<size_t>(r)];
            la[r] = br.prefix_length;
            for (int64_t j = 0; j < br.prefix_length; ++j) ka[r][j] = br.prefix_start + j;
            for (int64_t t = 0; t < br.length; ++t) qa[r][t] = ka[r][K + t] = br.start + t;
        }
        // Query t sees the real prefix and its own tokens 0..t.
        const at::Tensor key = at::arange(K + S, at::kLong).view({1, 1, K + S});
        const at::Tensor sees_prefix = key.lt(prefix_length.view({R, 1, 1}));
        const at::Tensor sees_own = key.ge(K) & (key - K).le(at::arange(S, at::kLong).view({1, S, 1}));
        b.rows.push_back({q_index, k_index, (sees_prefix | sees_own).logical_not().view({R, 1, 1, S, K + S})});
    }
    return b;
}

// Final hidden states [N, H] of the batch's flat tokens.
at::Tensor shared_hidden(const LlamaModel& model, const FlatBatch& b) {
    const LlamaConfig& c = model.config();
    const int64_t N = b.ids.size(0), nh = c.n_heads, nkv = c.n_kv_heads, d = c.head_dim;
    at::Tensor h = model.embed(b.ids.unsqueeze(0));  // [1, N, H]
    const at::Device device = h.device();
    const at::Tensor pos = b.positions.to(device);
    const at::Tensor cos = model.rope().cos.index_select(0, pos).view({N, 1, d});
    const at::Tensor sin = model.rope().sin.index_select(0, pos).view({N, 1, d});
    std::vector<AttentionRows> rows;
    for (const auto& r : b.rows)
        rows.push_back({r.q_index.to(device).reshape({-1}), r.k_index.to(device).reshape({-1}), r.blocked.to(device)});
    auto with_dummy = [](const at::Tensor& x) { return at::cat({x, at::zeros_like(x.narrow(0, 0, 1))}, 0); };

    for (int64_t i = 0; i < model.n_layers(); ++i) {
        const DecoderBlock block = model.read_block(i);
        const at::Tensor x = rms_norm(h, block.input_norm, c.rms_norm_eps);
        at::Tensor q = block.linears[kQProj]->forward(x).view({N, nh, d});
        at::Tensor k = block.linears[kKProj]->forward(x).view({N, nkv, d});
        const at::Tensor v = with_dummy(block.linears[kVProj]->forward(x).view({N, nkv, d}));
        q = with_dummy(apply_rope(q, cos, sin));
        k = with_dummy(apply_rope(k, cos, sin));
        at::Tensor attn = at::zeros({N + 1, nh * d}, h.options());
        for (size_t j = 0; j < rows.size(); ++j) {
            const AttentionRows& r = rows[j];
            const int64_t B = b.rows[j].q_index.size(0), Tq = b.rows[j].q_index.size(1);
            const int64_t Tk = b.rows[j].k_index.size(1);
            const at::Tensor qb = q.index_select(0, r.q_index).view({B, Tq, nh, d}).transpose(1, 2);
            const at::Tensor kb = k.index_select(0, r.k_index).view({B, Tk, nkv, d}).transpose(1, 2);
            const at::Tensor vb = v.index_select(0, r.k_index).view({B, Tk, nkv, d}).transpose(1, 2);
            attn.index_copy_(0, r.q_index, grouped_query_attention(c, qb, kb, vb, r.blocked).reshape({B * Tq, nh * d}));
        }
        h = h + block.linears[kOProj]->forward(attn.narrow(0, 0, N).unsqueeze(0));
        h = h + mlp_forward(block, rms_norm(h, block.post_norm, c.rms_norm_eps));
    }
    return h.squeeze(0);
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
    std::vector<Unit> units;
    int64_t total = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
        results[g].resize(groups[g].size());
        total += static_cast<int64_t>(groups[g].size());
        add_units(groups[g], g, max_length, options.share_prefix, units);
    }
    // Longest first, as the harness does (the first batch shows the memory peak); by prefix, so that the padded
    // prefix block of a batch wastes little, then by branch.
    std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) {
        if (a.prefix.size() != b.prefix.size()) return a.prefix.size() > b.prefix.size();
        return a.longest_branch() > b.longest_branch();
    });

    c10::InferenceMode guard;
    const auto start = std::chrono::steady_clock::now();
    int64_t done = 0;
    for (size_t first = 0; first < units.size();) {
        size_t last = first;
        int64_t n_requests = 0;
        while (last < units.size() && n_requests < options.batch_size)
            n_requests += static_cast<int64_t>(units[last++].targets.size());

        // Hidden states [rows, H] and, per scored token, its row and target.
        at::Tensor flat;
        std::vector<int64_t> rows, tokens;
        if (options.share_prefix) {
            const FlatBatch batch = make_batch(units, first, last);
            flat = shared_hidden(model, batch);
            for (size_t u = first; u < last; ++u)
                for (const auto& t : units[u].targets)
                    for (size_t j = 0; j < t.tokens.size(); ++j) {
                        const auto& starts = batch.branch_start[u - first];
                        rows.push_back((t.branch[j] < 0 ? batch.prefix_start[u - first]
                                                        : starts[static_cast<size_t>(t.branch[j])]) +
                                       t.row[j]);
                        tokens.push_back(t.tokens[j]);
                    }
        } else {  // every unit is a lone request: the model's own forward on right-padded rows
            const int64_t B = static_cast<int64_t>(last - first);
            int64_t T = 0;
            for (size_t u = first; u < last; ++u) T = std::max(T, static_cast<int64_t>(units[u].prefix.size()));
            at::Tensor ids = at::zeros({B, T}, at::kLong);
            auto ids_a = ids.accessor<int64_t, 2>();
            for (int64_t r = 0; r < B; ++r) {
                const Unit& unit = units[first + static_cast<size_t>(r)];
                for (size_t t = 0; t < unit.prefix.size(); ++t) ids_a[r][static_cast<int64_t>(t)] = unit.prefix[t];
                for (const auto& target : unit.targets)
                    for (size_t j = 0; j < target.tokens.size(); ++j) {
                        rows.push_back(r * T + target.row[j]);
                        tokens.push_back(target.tokens[j]);
                    }
            }
            at::Tensor h = model.embed(ids);
            for (int64_t i = 0; i < model.n_layers(); ++i) h = model.run_block(i, h);
            flat = h.reshape({B * T, h.size(2)});
        }
        const at::Device device = flat.device();
        const at::Tensor index = at::tensor(rows, at::kLong).to(device);
        const at::Tensor target = at::tensor(tokens, at::kLong).to(device);
        const at::Tensor logits = model.head(flat.index_select(0, index).unsqueeze(0)).squeeze(0);  // [N, V]
        const at::Tensor logp = at::log_softmax(logits, -1).gather(1, target.unsqueeze(1)).squeeze(1);
        const at::Tensor logp_cpu = logp.to(at::kCPU, at::kDouble).contiguous();
        const at::Tensor greedy_cpu = logits.argmax(-1).eq(target).to(at::kCPU).contiguous();
        const double* lp = logp_cpu.data_ptr<double>();
        const bool* gr = greedy_cpu.data_ptr<bool>();

        size_t k = 0;
        for (size_t u = first; u < last; ++u)
            for (const auto& t : units[u].targets) {
                LoglikelihoodResult out;
                out.is_greedy = true;
                for (size_t j = 0; j < t.tokens.size(); ++j, ++k) {
                    out.logprob += lp[k];
                    out.is_greedy = out.is_greedy && gr[k];
                }
                if (!std::isfinite(out.logprob))
                    throw NumericError(strprintf("%s: non-finite log-likelihood (model produced NaN/Inf)",
                                                 options.label.c_str()));
                results[t.group][t.index] = out;
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
