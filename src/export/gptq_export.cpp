#include <chrono>
#include <cmath>
#include <ctime>
#include <functional>
#include <set>

#include <ATen/ATen.h>

#include "saliq/binarize.h"
#include "saliq/dtype.h"
#include "saliq/error.h"
#include "saliq/method_traits.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/gptq_pack.h"
#include "saliq/log.h"
#include "saliq/safetensors.h"
#include "saliq/sha256.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

std::string utc_now() {
    const std::time_t now = std::time(nullptr);
    char buffer[32];
    std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    return buffer;
}

const char* const kPackedSuffixes[] = {".qweight", ".qzeros", ".scales", ".g_idx"};
const char* const kMixedSuffixes[] = {".qweight", ".scales", ".zeros", ".group_bits"};
const char* const kGgmlSuffixes[] = {".qweight", ".ggml_type"};

nlohmann::json stages_json(const std::vector<TrainStage>& stages) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : stages) out.push_back({{"stage", s.name}, {"epochs", s.epochs}});
    return out;
}

bool uses_adapters(const QuantizeOptions& o) { return method_traits(o.method).trains_adapters; }
// Group-wise widths (saliq_mixed): the methods that allocate bits, and the LWC methods on a bit map.
bool mixed_precision(const QuantizeOptions& o) { return method_traits(o.method).allocates_bits || !o.bit_map.empty(); }
// SliM-LLM proper: GPTQ's solver allocating its own bit map (its λ is recorded; a trained map records its source).
bool gptq_allocates_bits(const MethodTraits& m) { return m.allocates_bits && m.orders_columns; }

// [out, in] of a mixed or binarized linear, stored in the block's metadata: it sizes the unpacking (in 0 divided by
// zero, 4e9 allocated gigabytes), so it must be the model's shape of that linear of `layer` before anything else.
std::pair<int64_t, int64_t> stored_shape(const nlohmann::json& l, const std::string& name, int64_t layer,
                                         const LlamaConfig& c, const std::string& path) {
    const auto shapes = linear_shapes(c);  // [out, in] of each linear
    for (int i = 0; i < kNumLinears; ++i) {
        if (name != hf_names::linear_name(layer, i)) continue;
        if (l.at("out") != shapes[i][0] || l.at("in") != shapes[i][1])
            throw FormatError(path, name + ": the block says out " + l.at("out").dump() + ", in " + l.at("in").dump() +
                                        "; the model's linear is " + shape_to_string(shapes[i]) +
                                        " (use --force to start over)");
        return {shapes[i][0], shapes[i][1]};
    }
    throw FormatError(path, "'" + name + "' is not a linear of block " + std::to_string(layer) +
                                " (use --force to start over)");
}

// A finished block saved by GptqFolderWriter::save, back from its file, as the run's block `layer` of a model of
// config `c`.
BlockResult read_block_file(const SafetensorsReader& reader, const nlohmann::json& meta, const QuantSpec& spec,
                            int64_t layer, const LlamaConfig& c, const std::string& path) {
    const bool v2 = !spec.symmetric;
    BlockResult block;
    block.layer = meta.at("layer").get<int64_t>();
    block.block_error = meta.at("block_error").get<double>();
    block.seconds = meta.at("seconds").get<double>();
    block.method_stats = meta.at("method_stats");
    for (const auto& l : meta.at("linears")) {
        LinearResult lr;
        lr.name = l.at("name").get<std::string>();
        lr.rel_error = l.at("rel_error").get<double>();
        lr.lora_scale = l.at("lora_scale").get<double>();
        const std::string binary = l.value("binary", std::string());
        if (!binary.empty()) {
            const auto [out, in] = stored_shape(l, lr.name, layer, c, path);
            lr.binary = binary_unpack(binary, in, out,
                                      [&](const std::string& s) { return reader.tensor(lr.name + s).clone(); }, path);
        } else if (reader.has(lr.name + ".ggml_type")) {
            const auto [out, in] = stored_shape(l, lr.name, layer, c, path);
            const GgmlGrid grid = ggml_linear_grid(reader.tensor(lr.name + ".ggml_type"), spec.grid, path);
            lr.q = ggml_quantized(reader.tensor(lr.name + ".qweight").clone(), grid, out, in, path);
        } else if (reader.has(lr.name + ".group_bits")) {
            const auto [out, in] = stored_shape(l, lr.name, layer, c, path);
            MixedTensors m{reader.tensor(lr.name + ".qweight"), reader.tensor(lr.name + ".scales"),
                           reader.tensor(lr.name + ".zeros"), reader.tensor(lr.name + ".group_bits")};
            lr.q = mixed_unpack(m, spec, in, out, path);
        } else {
            GptqTensors t{reader.tensor(lr.name + ".qweight"), reader.tensor(lr.name + ".qzeros"),
                          reader.tensor(lr.name + ".scales"), reader.tensor(lr.name + ".g_idx")};
            if (t.g_idx.dim() != 1 || t.scales.dim() != 2)
                throw FormatError(path, lr.name + ": g_idx must be 1-D and scales 2-D; use --force to start over");
            const int64_t in = t.g_idx.size(0), out = t.scales.size(1);
            lr.q = gptq_unpack(t, spec, in, out, v2, path);
        }
        if (reader.has(lr.name + ".outlier_idx")) {
            if (lr.binary.defined()) throw FormatError(path, lr.name + ": a binarized linear with outliers");
            lr.q.outliers = sparse_unpack({reader.tensor(lr.name + ".outlier_idx").clone(),
                                           reader.tensor(lr.name + ".outlier_val").clone()},
                                          lr.q.out_features(), lr.q.in_features(), path + " (" + lr.name + ")");
        }
        if (reader.has(lr.name + ".lora_A")) {
            lr.lora_a = reader.tensor(lr.name + ".lora_A").clone();
            lr.lora_b = reader.tensor(lr.name + ".lora_B").clone();
        }
        if (reader.has(lr.name + ".lwc_up")) {
            lr.lwc_up = reader.tensor(lr.name + ".lwc_up").clone();
            lr.lwc_low = reader.tensor(lr.name + ".lwc_low").clone();
        }
        block.linears.push_back(std::move(lr));
    }
    return block;
}

// A resumed block must be the one this run would have written: its layer, the seven linears of that layer with the
// config's shapes and the run's bits and groups, adapters of the run's rank exactly when the method trains them.
// Anything else (a file copied from another run, a hand-edited state) would be assembled into a wrong model.
void check_resumed_block(const BlockResult& b, int64_t layer, const LlamaConfig& c, const QuantizeOptions& o,
                         const std::string& path) {
    auto fail = [&](const std::string& what) {
        throw FormatError(path, what + "; this file is not the run's block " + std::to_string(layer) +
                                    " (use --force to start over)");
    };
    if (b.layer != layer) fail("the file says it holds block " + std::to_string(b.layer));
    if (b.linears.size() != 7) fail(std::to_string(b.linears.size()) + " linears instead of 7");
    if (!std::isfinite(b.block_error)) fail("a non-finite block error");
    const auto shapes = linear_shapes(c);  // [out, in] of each linear
    for (int i = 0; i < 7; ++i) {
        const LinearResult& lr = b.linears[static_cast<size_t>(i)];
        const std::string name = hf_names::linear_name(layer, i);
        if (lr.name != name) fail("linear " + std::to_string(i) + " is '" + lr.name + "', not '" + name + "'");
        const int64_t out = lr.binary.defined() ? lr.binary.out_features() : lr.q.out_features();
        const int64_t in = lr.binary.defined() ? lr.binary.in_features() : lr.q.in_features();
        if (out != shapes[i][0] || in != shapes[i][1])
            fail(name + " is " + shape_to_string({out, in}) + ", the model's is " +
                 shape_to_string(shapes[i]));
        if (lr.binary.defined() != is_binarizer(o.apiq.quantizer))
            fail(name + (lr.binary.defined() ? " is binarized" : " is not binarized") + ", the run's quantizer is " +
                 o.apiq.quantizer);
        if (!lr.binary.defined() && (lr.q.spec.grid != GgmlGrid::kNone) != (o.spec.grid != GgmlGrid::kNone))
            fail(name + (lr.q.spec.grid != GgmlGrid::kNone ? " holds GGML blocks" : " holds no GGML blocks") +
                 ", the run's --grid is " + ggml_grid_traits(o.spec.grid).name);
        if (!lr.binary.defined()) {
            if (lr.q.spec.grid == GgmlGrid::kNone)
                check_gptq_claims(lr.q, {o.spec.group_size, method_traits(o.method).orders_columns && o.gptq.act_order, false},
                                  path);
            if (!std::isfinite(lr.rel_error)) fail(name + " has a non-finite error");
        }
        if (lr.q.outliers.defined() && !(o.sparse.outliers_pct > 0))
            fail(name + " has outliers, the run takes none (--sparse-outliers)");
        if (lr.lora_a.defined() != uses_adapters(o))
            fail(name + (lr.lora_a.defined() ? " has" : " has no") + " LoRA adapters, the run's method " + o.method +
                 (uses_adapters(o) ? " trains them" : " does not"));
        if (lr.lora_a.defined() &&
            (lr.lora_a.sizes().vec() != std::vector<int64_t>{o.apiq.lora_rank, in} ||
             lr.lora_b.sizes().vec() != std::vector<int64_t>{out, o.apiq.lora_rank}))
            fail(name + " has LoRA tensors " + shape_to_string(lr.lora_a.sizes().vec()) + " and " +
                 shape_to_string(lr.lora_b.sizes().vec()) + ", rank " + std::to_string(o.apiq.lora_rank) +
                 " implies " + shape_to_string({o.apiq.lora_rank, in}) + " and " +
                 shape_to_string({out, o.apiq.lora_rank}));
        if (lr.lwc_up.defined() && (!lr.lwc_low.defined() || lr.lwc_up.sizes() != lr.lwc_low.sizes()))
            fail(name + " has clipping factors of two shapes");
    }
}

// Whether every stored zero point of the finished blocks is 2^(bits-1) (symmetric runs store them v1, z - 1).
bool gptq_symmetric_zeros(const std::vector<std::shared_ptr<SafetensorsReader>>& blocks,
                          const std::map<std::string, size_t>& owner, const QuantSpec& spec) {
    if (!spec.symmetric) return false;
    for (const auto& [name, block] : owner) {
        if (!ends_with(name, ".qzeros")) continue;
        const at::Tensor packed = blocks[block]->tensor(name);
        const int64_t out = blocks[block]->tensor(name.substr(0, name.size() - 7) + ".scales").size(1);
        const at::Tensor z = unpack_bits(packed.t().contiguous(), spec.bits, out).to(at::kLong) + 1;
        if (!(z == (int64_t{1} << (spec.bits - 1))).all().item<bool>()) return false;
    }
    return true;
}

// The uniform grid's quantization_config: GPTQ's, or saliq_mixed for group-wise widths.
nlohmann::json uniform_grid_config(const QuantizeOptions& o, bool gptq_symmetric_zeros) {
    if (mixed_precision(o))  // saliq's mixed layout (gptq_pack.h); GPTQ loaders refuse it
        return {{"quant_method", "saliq_mixed"},
                {"bits", o.spec.bits},
                {"group_size", o.spec.group_size},
                {"bit_widths", {o.spec.bits - 1, o.spec.bits, o.spec.bits + 1}},
                {"sym", false},
                {"desc_act", false},
                {"pack_dtype", "int32"},
                {"saliq_method", o.method}};
    return {{"quant_method", "gptq"},
            {"bits", o.spec.bits},
            {"group_size", o.spec.group_size},
            {"sym", o.spec.symmetric && gptq_symmetric_zeros},
            {"desc_act", method_traits(o.method).orders_columns && o.gptq.act_order},
            {"static_groups", false},
            {"damp_percent", o.gptq.damp},
            {"true_sequential", o.gptq.true_sequential},
            // v2 keeps asymmetric zero points exact (v1's "z - 1" cannot store z = 0).
            {"checkpoint_format", o.spec.symmetric ? "gptq" : "gptq_v2"},
            {"pack_dtype", "int32"},
            {"saliq_method", o.method}};
}

}  // namespace

nlohmann::json gptq_quantization_config(const QuantizeOptions& o, bool gptq_symmetric_zeros) {
    const QuantizerTraits& quantizer = quantizer_traits(o.apiq.quantizer);
    if (quantizer.binary) {  // saliq's own layout (binarize.h); GPTQ loaders refuse the quant_method
        nlohmann::json q = {{"quant_method", "saliq_binary"},
                            {"binarizer", o.apiq.quantizer},
                            {"bits", quantizer.bits},
                            {"saliq_method", o.method}};
        if (quantizer.group_scales) q["group_size"] = o.spec.group_size;
        if (quantizer.experts) q["experts"] = o.apiq.mos_experts;
        return q;
    }
    if (o.spec.grid != GgmlGrid::kNone) {  // GGML blocks per linear (ggml_grid.h); GPTQ loaders refuse the quant_method
        const GgmlGridTraits& t = ggml_grid_traits(o.spec.grid);
        return {{"quant_method", "saliq_ggml"},
                {"grid", t.name},
                {"bits", t.bits},
                {"group_size", t.sub_block},
                {"layout", "<linear>.qweight: uint8 [out, row_bytes], the row's GGML blocks as GGUF stores them; "
                           "<linear>.ggml_type: int32 [1], GGUF's type id (the grid, or llama-quantize's fallback "
                           "for rows its blocks do not divide)"},
                {"saliq_method", o.method}};
    }
    nlohmann::json q = uniform_grid_config(o, gptq_symmetric_zeros);
    if (o.sparse.enabled())  // ReQuant's parts beside the packed tensors (gptq_pack.h); GPTQ loaders ignore them
        q["saliq_sparse"] = {{"outliers_percent", o.sparse.outliers_pct},
                             {"significant_percent", o.sparse.significant_pct},
                             {"layout", "<linear>.outlier_idx/.outlier_val and .significant_idx/.significant_val: "
                                        "int32 flat positions row*in+col ascending, fp16 values added to the "
                                        "dequantized weight"}};
    return q;
}

nlohmann::json run_fingerprint(const Checkpoint& source, const QuantizeOptions& o) {
    nlohmann::json f = {{"model", source.path},
                        {"method", o.method},
                        {"bits", o.spec.bits},
                        {"group_size", o.spec.group_size},
                        {"symmetric", o.spec.symmetric},
                        {"calib", {{"source", o.calib.source}, {"nsamples", o.calib.nsamples},
                                   {"seqlen", o.calib.seqlen}, {"seed", o.calib.seed},
                                   {"range", o.calib.range.to_string()}}},
                        {"device", o.model.device},
                        {"dtype", o.model.dtype},
                        {"batch_size", o.batch_size},
                        {"error_windows", o.error_windows},
                        {"act_dtype", o.act_dtype}};
    const MethodTraits& method = method_traits(o.method);
    if (method.orders_columns)  // GPTQ's solver
        f["gptq"] = {{"damp", o.gptq.damp}, {"block_size", o.gptq.block_size}, {"act_order", o.gptq.act_order},
                     {"true_sequential", o.gptq.true_sequential}};
    if (o.spec.grid != GgmlGrid::kNone) f["grid"] = ggml_grid_traits(o.spec.grid).name;  // absent: runs before it resume
    if (o.rtn_importance) f["rtn_importance"] = true;  // absent: runs before it resume
    if (f.contains("gptq") && o.gptq.group_order.value_or(false)) f["gptq"]["group_order"] = true;  // absent: runs before it resume
    if (gptq_allocates_bits(method)) f["slim"] = {{"salience_lambda", o.slim.salience_lambda}};
    if (o.sparse.enabled())  // absent without: runs interrupted before ReQuant existed resume
        f["sparse"] = {{"outliers_percent", o.sparse.outliers_pct}, {"significant_percent", o.sparse.significant_pct},
                       {"steps", o.sparse.steps}, {"pqi_points", o.sparse.pqi_points}};
    if (mixed_precision(o) && !gptq_allocates_bits(method))
        f["bit_map"] = o.bit_map.empty() || o.bit_map == "slim" ? nlohmann::json{{"kind", "slim"}, {"damp", o.gptq.damp}}
                                                                : nlohmann::json{{"file", o.bit_map}};
    if (method.learns_clipping) {
        f["apiq"] = {{"lora_rank", o.apiq.lora_rank}, {"lora_alpha", o.apiq.lora_alpha}, {"lwc_lr", o.apiq.lwc_lr},
                     {"lora_lr", o.apiq.lora_lr}, {"weight_decay", o.apiq.weight_decay},
                     {"stages", stages_json(o.apiq.stages)}, {"epochs", o.apiq.epochs},
                     {"train_batch", o.apiq.train_batch}, {"aug_loss", o.apiq.aug_loss},
                     {"train_dtype", o.apiq.train_dtype}, {"seed", o.apiq.seed}};
        if (o.apiq.lwc_init != "minmax") f["apiq"]["lwc_init"] = o.apiq.lwc_init;  // absent: runs before it resume
        if (is_binarizer(o.apiq.quantizer)) {  // absent for uniform: runs interrupted before the option resume
            f["apiq"]["quantizer"] = o.apiq.quantizer;
            if (quantizer_traits(o.apiq.quantizer).experts) f["apiq"]["mos_experts"] = o.apiq.mos_experts;
        }
        f["saliency"] = {{"enabled", o.saliency.enabled}, {"weighted", o.saliency.weighted},
                         {"reg_method", o.saliency.reg_method}, {"lambda", o.saliency.lambda},
                         {"lambda_multiplier", o.saliency.lambda_multiplier},
                         {"fisher_norm", o.saliency.fisher_norm}, {"metric", o.saliency.metric}};
    }
    return f;
}

namespace {

// An adapter tensor in its storage dtype (--adapter-dtype). fp16 holds what training gives at the papers' settings
// (SmolLM2 W2 g64: 117.5035 against fp32's 117.5045); a tensor beyond fp16's range stays fp32, said in the log,
// rather than turning into infinities.
at::Tensor stored_adapter(const at::Tensor& t, at::ScalarType dtype, const std::string& key) {
    if (dtype == at::kHalf && t.numel() > 0 && t.abs().max().item<double>() > 65504.0) {
        log_warn(key + " exceeds fp16's range: stored as fp32");
        return t.to(at::kFloat);
    }
    return t.to(dtype);
}

// "calib.seqlen: 512 (interrupted run) vs 256 (now)" for every leaf that differs between two fingerprints.
void fingerprint_differences(const nlohmann::json& saved, const nlohmann::json& now, const std::string& prefix,
                             std::vector<std::string>& out) {
    if (saved.is_object() && now.is_object()) {
        std::set<std::string> keys;
        for (auto it = saved.begin(); it != saved.end(); ++it) keys.insert(it.key());
        for (auto it = now.begin(); it != now.end(); ++it) keys.insert(it.key());
        for (const auto& k : keys)
            fingerprint_differences(saved.contains(k) ? saved[k] : nlohmann::json("(unset)"),
                                    now.contains(k) ? now[k] : nlohmann::json("(unset)"),
                                    prefix.empty() ? k : prefix + "." + k, out);
        return;
    }
    if (saved != now) out.push_back(prefix + ": " + saved.dump() + " (interrupted run) vs " + now.dump() + " (now)");
}

}  // namespace

void check_same_settings(const std::string& partial, const nlohmann::json& saved, const nlohmann::json& now) {
    if (saved == now) return;
    std::vector<std::string> diffs;
    fingerprint_differences(saved, now, "", diffs);
    std::string out;
    for (const auto& d : diffs) out += (out.empty() ? "" : "; ") + d;
    throw ConfigError("the interrupted run in " + partial + " used other settings (" + out +
                      "); rerun with the same options, or --force to start over");
}

bool continue_or_start_over(const std::string& partial, bool force, const std::function<void()>& check) {
    try {
        check();
        return true;
    } catch (const Error& e) {
        if (!force) throw;
        log_warn(std::string(e.what()) + " -- starting over, as --force asks");
        remove_tree(partial);
        return false;
    }
}

GptqFolderWriter::GptqFolderWriter(const std::string& out_dir, const Checkpoint& source,
                                   const QuantizeOptions& options, bool force, bool resume)
    : source_(source), options_(options), out_(out_dir), force_(force) {
    while (out_.size() > 1 && out_.back() == '/') out_.pop_back();
    partial_ = out_ + ".partial";
    if (!is_binarizer(options.apiq.quantizer))
        for (const auto& l : gptq_loader_rejected_linears(source.config))
            log_warn("GPTQ loaders may reject " + l +
                     " (GPTQ packers and most kernels need widths that are multiples of 32); saliq reads the folder");
    if (path_exists(out_) && (!is_directory(out_) || !is_empty_directory(out_)) && !force)
        throw ConfigError("output folder " + out_ + " already holds files; pass --force to replace it");
    fingerprint_ = run_fingerprint(source, options);
    if (!path_exists(partial_)) {
        if (resume) log_warn("--resume: no interrupted run at " + partial_ + "; starting from the first block");
        return;
    }
    if (resume) {
        resumed_ = continue_or_start_over(partial_, force, [this] { check_resumable(); });
        return;
    }
    if (finished_blocks() == 0) {  // nothing finished there: it cannot block a new run
        log_info(partial_ + " holds no finished block; starting over");
        remove_tree(partial_);
        return;
    }
    if (!force)
        throw ConfigError("an interrupted run left " + partial_ + " (" + std::to_string(finished_blocks()) +
                          " finished blocks); pass --resume to continue it or --force to start over");
    remove_tree(partial_);
}

void GptqFolderWriter::check_resumable() const {
    nlohmann::json saved;
    try {
        saved = parse_json(read_text_file(partial_ + "/state.json"), partial_ + "/state.json");
    } catch (const std::exception&) {
        throw FormatError(partial_ + "/state.json", "unreadable state of the interrupted run; use --force");
    }
    if (!saved.is_object() || !saved.contains("fingerprint"))  // the fuzzer's finding: a bare number
        throw FormatError(partial_ + "/state.json", "not the state of an interrupted run (no fingerprint object); "
                                                    "use --force to start over");
    check_same_settings(partial_, saved["fingerprint"], fingerprint_);
}

int64_t GptqFolderWriter::finished_blocks() const {
    if (!is_directory(partial_)) return 0;
    int64_t n = 0;
    for (const auto& name : list_directory(partial_))
        if (name.rfind("block_", 0) == 0 && name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0) ++n;
    return n;
}

void GptqFolderWriter::prepare() {
    if (resumed_ && path_exists(partial_)) return;
    make_directories(partial_);
    write_json_atomic(partial_ + "/state.json", {{"fingerprint", fingerprint_}});
}

void GptqFolderWriter::discard_if_unstarted() noexcept {
    try {
        if (finished_blocks() == 0 && path_exists(partial_)) remove_tree(partial_);
    } catch (...) {
    }
}

GptqFolderWriter::~GptqFolderWriter() = default;

double GptqFolderWriter::adapter_scale() const {
    return options_.apiq.lora_alpha / static_cast<double>(options_.apiq.lora_rank);
}

std::string GptqFolderWriter::final_absolute_path() const {
    const size_t slash = out_.rfind('/');
    const std::string parent = parent_directory(out_);
    const std::string name = slash == std::string::npos ? out_ : out_.substr(slash + 1);
    const std::string dir = canonical_path(parent);
    return (dir == "/" ? "" : dir) + "/" + name;
}

std::string GptqFolderWriter::block_path(int64_t layer) const {
    return partial_ + strprintf("/block_%04lld.safetensors", (long long)layer);
}

bool GptqFolderWriter::has(int64_t layer) const { return path_exists(block_path(layer)); }

void GptqFolderWriter::save(const BlockResult& block) {
    if (!is_directory(partial_)) prepare();
    const bool v2 = !options_.spec.symmetric;
    NamedTensors tensors;
    nlohmann::json meta = {{"layer", block.layer},
                           {"block_error", block.block_error},
                           {"seconds", block.seconds},
                           {"method_stats", block.method_stats},
                           {"linears", nlohmann::json::array()}};
    for (const auto& lr : block.linears) {
        if (lr.binary.defined()) {
            const auto parts = binary_pack(lr.binary);
            const BinaryWeight back = binary_unpack_parts(lr.binary.kind, lr.binary.in_features(),
                                                          lr.binary.out_features(), parts, lr.name);
            if (!at::equal(back.dequantize(), lr.binary.dequantize().to(at::kCPU)))
                throw Error("internal: packed weights of " + lr.name + " do not unpack to the binarized values");
            for (const auto& p : parts) tensors.emplace_back(lr.name + p.first, p.second);
            if (lr.lora_a.defined()) {
                tensors.emplace_back(lr.name + ".lora_A", lr.lora_a.to(at::kFloat));
                tensors.emplace_back(lr.name + ".lora_B", lr.lora_b.to(at::kFloat));
            }
            meta["linears"].push_back({{"name", lr.name}, {"rel_error", lr.rel_error}, {"lora_scale", lr.lora_scale},
                                       {"binary", lr.binary.kind}, {"in", lr.binary.in_features()},
                                       {"out", lr.binary.out_features()}});
            continue;
        }
        nlohmann::json entry = {{"name", lr.name}, {"rel_error", lr.rel_error}, {"lora_scale", lr.lora_scale}};
        if (lr.q.spec.grid != GgmlGrid::kNone) {  // the raw GGML blocks, as GGUF stores them
            const QuantizedTensor back = ggml_quantized(lr.q.ggml_blocks, lr.q.spec.grid, lr.q.out_features(),
                                                        lr.q.in_features(), lr.name);
            if (!at::equal(back.codes, lr.q.codes.to(at::kCPU)) || !at::equal(back.scales, lr.q.scales.to(at::kCPU)) ||
                !at::equal(back.offsets, lr.q.offsets.to(at::kCPU)))
                throw Error("internal: GGML blocks of " + lr.name + " do not decode to the quantized values");
            tensors.emplace_back(lr.name + ".qweight", lr.q.ggml_blocks);
            tensors.emplace_back(lr.name + ".ggml_type",
                                 at::full({1}, static_cast<int32_t>(ggml_grid_traits(lr.q.spec.grid).ggml_type), at::kInt));
            entry["in"] = lr.q.in_features();
            entry["out"] = lr.q.out_features();
        } else if (lr.q.group_bits.defined()) {
            const MixedTensors m = mixed_pack(lr.q);
            const QuantizedTensor back = mixed_unpack(m, lr.q.spec, lr.q.in_features(), lr.q.out_features(), lr.name);
            if (!at::equal(back.codes, lr.q.codes.to(at::kCPU)) || !at::equal(back.zeros, lr.q.zeros.to(at::kCPU)) ||
                !at::equal(back.scales, lr.q.scales.to(at::kCPU)) ||
                !at::equal(back.group_bits, lr.q.group_bits.to(at::kCPU)))
                throw Error("internal: mixed-precision weights of " + lr.name + " do not unpack to the quantized values");
            tensors.emplace_back(lr.name + ".qweight", m.qweight);
            tensors.emplace_back(lr.name + ".scales", m.scales);
            tensors.emplace_back(lr.name + ".zeros", m.zeros);
            tensors.emplace_back(lr.name + ".group_bits", m.group_bits);
            entry["in"] = lr.q.in_features();
            entry["out"] = lr.q.out_features();
        } else {
            const GptqTensors t = gptq_pack(lr.q, v2);
            // Round-trip check before anything reaches disk: a packing bug must never produce a plausible file.
            const QuantizedTensor back =
                gptq_unpack(t, lr.q.spec, lr.q.in_features(), lr.q.out_features(), v2, lr.name);
            if (!at::equal(back.codes, lr.q.codes.to(at::kCPU)) || !at::equal(back.zeros, lr.q.zeros.to(at::kCPU)) ||
                !at::equal(back.scales, lr.q.scales.to(at::kCPU)) || !at::equal(back.g_idx, lr.q.g_idx.to(at::kCPU)))
                throw Error("internal: packed weights of " + lr.name + " do not unpack to the quantized values");
            tensors.emplace_back(lr.name + ".qweight", t.qweight);
            tensors.emplace_back(lr.name + ".qzeros", t.qzeros);
            tensors.emplace_back(lr.name + ".scales", t.scales);
            tensors.emplace_back(lr.name + ".g_idx", t.g_idx);
        }
        if (lr.q.outliers.defined()) {
            const SparseTensors t = sparse_pack(lr.q.outliers);
            tensors.emplace_back(lr.name + ".outlier_idx", t.idx);
            tensors.emplace_back(lr.name + ".outlier_val", t.val);
        }
        if (lr.lora_a.defined()) {
            tensors.emplace_back(lr.name + ".lora_A", lr.lora_a.to(at::kFloat));
            tensors.emplace_back(lr.name + ".lora_B", lr.lora_b.to(at::kFloat));
        }
        if (lr.lwc_up.defined()) {
            tensors.emplace_back(lr.name + ".lwc_up", lr.lwc_up.to(at::kFloat));
            tensors.emplace_back(lr.name + ".lwc_low", lr.lwc_low.to(at::kFloat));
        }
        meta["linears"].push_back(entry);
    }
    write_safetensors(block_path(block.layer), tensors, {{"saliq_block", meta.dump()}});
}

BlockResult GptqFolderWriter::load(int64_t layer) const {
    const std::string path = block_path(layer);
    auto reader = SafetensorsReader::open(path);
    nlohmann::json meta;
    try {
        meta = parse_json(reader->metadata().at("saliq_block"), path);
    } catch (const std::exception&) {
        throw FormatError(path, "missing or unreadable block metadata; use --force to start over");
    }
    try {
        BlockResult block = read_block_file(*reader, meta, options_.spec, layer, source_.config, path);
        check_resumed_block(block, layer, source_.config, options_, path);
        return block;
    } catch (const nlohmann::json::exception& e) {
        throw FormatError(path, std::string("unreadable block metadata (") + e.what() + "); use --force to start over");
    }
}

bool GptqFolderWriter::has_significant() const { return path_exists(significant_path()); }

void GptqFolderWriter::save_significant(const std::map<std::string, SparsePart>& parts, const nlohmann::json& stats) {
    NamedTensors tensors;
    for (const auto& [name, part] : parts) {
        const SparseTensors t = sparse_pack(part);
        tensors.emplace_back(name + ".significant_idx", t.idx);
        tensors.emplace_back(name + ".significant_val", t.val);
    }
    write_safetensors(significant_path(), tensors, {{"saliq_significant", stats.dump()}});
}

nlohmann::json GptqFolderWriter::significant_stats() const {
    auto reader = SafetensorsReader::open(significant_path());
    try {
        return parse_json(reader->metadata().at("saliq_significant"), significant_path());
    } catch (const std::exception&) {
        throw FormatError(significant_path(), "missing or unreadable detach figures; use --force to start over");
    }
}

std::map<std::string, SparsePart> GptqFolderWriter::load_significant() const {
    const std::string path = significant_path();
    auto reader = SafetensorsReader::open(path);
    std::map<std::string, SparsePart> parts;
    const auto shapes = linear_shapes(source_.config);
    for (int64_t layer = 0; layer < source_.config.n_layers; ++layer)
        for (int i = 0; i < kNumLinears; ++i) {
            const std::string name = hf_names::linear_name(layer, i);
            if (!reader->has(name + ".significant_idx")) continue;
            parts[name] = sparse_unpack({reader->tensor(name + ".significant_idx").clone(),
                                         reader->tensor(name + ".significant_val").clone()},
                                        shapes[i][0], shapes[i][1], path + " (" + name + ")");
        }
    return parts;
}

void GptqFolderWriter::finish(const QuantizeResult& result, const nlohmann::json& extra) {
    const LlamaConfig& c = source_.config;
    StagingDir staging(out_, force_);
    std::vector<std::shared_ptr<SafetensorsReader>> blocks;
    std::map<std::string, size_t> owner;
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
        if (!has(layer)) throw Error("internal: block " + std::to_string(layer) + " was never saved");
        blocks.push_back(SafetensorsReader::open(block_path(layer)));
        // A block file holds its own layer's tensors only: another's would silently replace that layer's.
        const std::string prefix = hf_names::layer_prefix(layer);
        for (const auto& e : blocks.back()->entries())
            if (e.name.rfind(prefix, 0) != 0 || !owner.emplace(e.name, blocks.size() - 1).second)
                throw FormatError(block_path(layer), "holds '" + e.name + "', which is not a tensor of block " +
                                                         std::to_string(layer) + " (use --force to start over)");
    }
    auto packed = [&](const std::string& name) { return blocks[owner.at(name)]->tensor(name); };
    const std::shared_ptr<SafetensorsReader> significant =
        has_significant() ? SafetensorsReader::open(significant_path()) : nullptr;

    // model.safetensors is streamed: each tensor is read (from a block file or the source checkpoint), written and
    // its pages released, so assembling the folder never holds the model.
    std::vector<TensorSpec> specs;
    std::vector<std::function<at::Tensor()>> produce;
    std::vector<std::function<void()>> release;
    NamedTensors adapters, clipping;
    const at::ScalarType adapter_dtype = float_dtype(options_.apiq.adapter_dtype, "--adapter-dtype");
    for (const auto& name : llama_tensor_names(c)) {
        const std::string base = name.substr(0, name.size() - std::string(".weight").size());
        if (owner.count(base + ".qweight")) {
            const std::vector<std::string> suffixes =
                is_binarizer(options_.apiq.quantizer) ? binary_suffixes(options_.apiq.quantizer)
                : owner.count(base + ".ggml_type")
                    ? std::vector<std::string>(std::begin(kGgmlSuffixes), std::end(kGgmlSuffixes))
                : owner.count(base + ".group_bits")
                    ? std::vector<std::string>(std::begin(kMixedSuffixes), std::end(kMixedSuffixes))
                    : std::vector<std::string>(std::begin(kPackedSuffixes), std::end(kPackedSuffixes));
            for (const std::string& suffix : suffixes) {
                const std::string key = base + suffix;
                const at::Tensor t = packed(key);
                specs.push_back({key, t.scalar_type(), t.sizes().vec()});
                produce.emplace_back([&packed, key] { return packed(key); });
                release.emplace_back([&blocks, &owner, key] { blocks[owner.at(key)]->release(key); });
            }
            for (const char* suffix : {".outlier_idx", ".outlier_val"}) {  // ReQuant's parts (gptq_pack.h)
                const std::string key = base + suffix;
                if (!owner.count(key)) continue;
                const at::Tensor t = packed(key);
                specs.push_back({key, t.scalar_type(), t.sizes().vec()});
                produce.emplace_back([&packed, key] { return packed(key); });
                release.emplace_back([] {});
            }
            if (significant && significant->has(base + ".significant_idx"))
                for (const char* suffix : {".significant_idx", ".significant_val"}) {
                    const std::string key = base + suffix;
                    const at::Tensor t = significant->tensor(key);
                    specs.push_back({key, t.scalar_type(), t.sizes().vec()});
                    produce.emplace_back([&significant, key] { return significant->tensor(key); });
                    release.emplace_back([] {});
                }
            if (owner.count(base + ".lora_A")) {
                // B carries the scale alpha / r and the config says lora_alpha = r: PEFT (which multiplies by
                // lora_alpha / r) and GPTQModel (which applies x A^T B^T as stored) then compute the same thing.
                const std::string key_a = hf_names::lora_key(base, 'A'), key_b = hf_names::lora_key(base, 'B');
                adapters.emplace_back(key_a, stored_adapter(packed(base + ".lora_A"), adapter_dtype, key_a));
                adapters.emplace_back(key_b, stored_adapter(packed(base + ".lora_B") * adapter_scale(), adapter_dtype, key_b));
            }
            if (owner.count(base + ".lwc_up")) {
                clipping.emplace_back(base + ".lwc_up", packed(base + ".lwc_up"));
                clipping.emplace_back(base + ".lwc_low", packed(base + ".lwc_low"));
            }
        } else {
            if (name.find(".self_attn.") != std::string::npos || name.find(".mlp.") != std::string::npos)
                throw Error("internal: " + base + " was never quantized");
            const at::Tensor t = source_.tensors->get(name);  // embeddings, norms, head: stored as they came
            specs.push_back({name, t.scalar_type(), t.sizes().vec()});
            const TensorSource* src = source_.tensors.get();
            produce.emplace_back([src, name] { return src->get(name); });
            release.emplace_back([src, name] { src->release(name); });
        }
    }
    write_safetensors_streamed(
        staging.file("model.safetensors"), specs, [&](size_t i) { return produce[i](); },
        {{"format", "pt"}, {"quantized_by", "saliq"}, {"gptq_bits", std::to_string(options_.spec.bits)},
         {"gptq_group_size", std::to_string(options_.spec.group_size)}},
        [&](size_t i) { release[i](); });
    if (!adapters.empty()) {
        write_safetensors(staging.file("adapter_model.safetensors"), adapters, {{"format", "pt"}});
        const nlohmann::json adapter_config = {
            {"peft_type", "LORA"},
            {"task_type", "CAUSAL_LM"},
            // The quantized folder itself: PEFT's AutoPeftModelForCausalLM loads the adapters onto this model.
            {"base_model_name_or_path", final_absolute_path()},
            {"r", options_.apiq.lora_rank},
            {"lora_alpha", options_.apiq.lora_rank},  // B is pre-scaled by the trained alpha / r
            {"lora_dropout", 0.0},
            {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}},
            {"bias", "none"},
            {"fan_in_fan_out", false},
            {"modules_to_save", nullptr},
            {"init_lora_weights", true},
            {"use_rslora", false},
            {"use_dora", false},
            {"rank_pattern", nlohmann::json::object()},
            {"alpha_pattern", nlohmann::json::object()},
            {"layers_to_transform", nullptr},
            {"inference_mode", true},
            {"revision", nullptr}};
        write_json_atomic(staging.file("adapter_config.json"), adapter_config);
    }
    if (!clipping.empty()) write_safetensors(staging.file("lwc.safetensors"), clipping, {{"format", "pt"}});

    nlohmann::json config = llama_config_to_json(c);
    config["quantization_config"] = gptq_quantization_config(options_, gptq_symmetric_zeros(blocks, owner, options_.spec));
    write_json_atomic(staging.file("config.json"), config);
    write_tokenizer_files(source_.tokenizer_path, c, staging.path());

    nlohmann::json manifest = {{"saliq_version", "0.1.0"}, {"created", utc_now()}};
    manifest["source_model"] = {{"path", source_.path}, {"format", source_.format}, {"config", llama_config_to_json(c)}};
    manifest["method"] = options_.method;
    if (!adapters.empty())
        manifest["adapters"] = {{"r", options_.apiq.lora_rank},
                                {"lora_alpha", options_.apiq.lora_alpha},
                                {"scale", adapter_scale()},
                                {"dtype", options_.apiq.adapter_dtype},
                                {"stored", "lora_B pre-scaled by lora_alpha / r; adapter_config.json lora_alpha = r"}};
    manifest["settings"] = run_fingerprint(source_, options_);
    manifest["calibration"] = {{"source", options_.calib.source},
                               {"nsamples", options_.calib.nsamples},
                               {"seqlen", options_.calib.seqlen},
                               {"seed", options_.calib.seed},
                               {"range", options_.calib.range.to_string()},
                               {"range_tokens", result.calib.stream_tokens},
                               {"window_starts", result.calib.starts}};
    if (!result.calib.offsets.empty()) manifest["calibration"]["window_offsets"] = result.calib.offsets;
    nlohmann::json layers = nlohmann::json::array(), block_log = nlohmann::json::array();
    for (const auto& b : result.blocks) {
        block_log.push_back({{"layer", b.layer}, {"block_error", b.block_error}, {"seconds", b.seconds},
                             {"method_stats", b.method_stats}});
        for (const auto& lr : b.linears) layers.push_back({{"name", lr.name}, {"rel_error", lr.rel_error}});
    }
    manifest["blocks"] = block_log;
    manifest["layers"] = layers;
    manifest["timings"] = {{"calibration_seconds", result.calib_seconds}, {"quantize_seconds", result.seconds}};
    if (result.restored_blocks > 0) {  // quantize_seconds is this run's alone
        manifest["timings"]["restored_blocks"] = result.restored_blocks;
        manifest["timings"]["restored_block_seconds"] = result.restored_block_seconds;
    }
    if (options_.sparse.enabled()) manifest["sparse"] = result.sparse_stats;
    for (auto it = extra.begin(); it != extra.end(); ++it) manifest[it.key()] = it.value();
    nlohmann::json files = nlohmann::json::object();
    for (const char* name : {"model.safetensors", "adapter_model.safetensors", "adapter_config.json",
                             "lwc.safetensors", "config.json", "tokenizer.model", "tokenizer.json",
                             "tokenizer_config.json"}) {
        const std::string path = staging.file(name);
        if (path_exists(path)) files[name] = {{"bytes", file_size(path)}, {"sha256", sha256_file(path)}};
    }
    manifest["files"] = files;
    write_json_atomic(staging.file("saliq_manifest.json"), manifest);
    blocks.clear();
    staging.commit();
    remove_tree(partial_);
}

}  // namespace saliq
