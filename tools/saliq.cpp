// saliq command line: parses options, calls the library, prints results. The one place errors are caught.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/calibration.h"
#include "saliq/corpus.h"
#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/finetune.h"
#include "saliq/inspect.h"
#include "saliq/file.h"
#include "saliq/generate.h"
#include "saliq/log.h"
#include "saliq/model.h"
#include "saliq/perplexity.h"
#include "saliq/quantize.h"
#include "saliq/runtime.h"
#include "saliq/saliency.h"
#include "saliq/strings.h"
#include "saliq/threads.h"
#include "saliq/tokenizer.h"
#include "saliq/zeroshot.h"
#include "launch.h"
#include "table.h"

namespace {

using namespace saliq;

struct ModelArgs {
    std::string model;
    std::string tokenizer;
    std::string device = "cpu";
    std::string dtype = "auto";
    int threads = 0;
    bool no_adapter = false;
    bool dequantize = false;
};

void add_model_options(CLI::App* cmd, ModelArgs& args) {
    cmd->add_option("--model,-m", args.model, "Hugging Face folder, llama2.c .bin or GGUF checkpoint")->required();
    cmd->add_option("--tokenizer", args.tokenizer, "SentencePiece .model or tokenizer.json (default: the folder's)");
    cmd->add_option("--device", args.device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--dtype", args.dtype, "compute dtype: fp32, bf16, fp16 or auto (fp32 on CPU, bf16 on CUDA)")
        ->capture_default_str();
    cmd->add_option("--threads", args.threads, "CPU threads (0: all cores)")->capture_default_str();
    cmd->add_flag("--no-adapter", args.no_adapter, "ignore LoRA adapters stored beside the weights");
    cmd->add_flag("--dequantize", args.dequantize,
                  "hold a packed folder's linears as dense weights (the reference path; default: compute from the "
                  "packed codes)");
}

struct LoadedModel {
    Checkpoint checkpoint;
    std::unique_ptr<LlamaModel> model;
    std::shared_ptr<Tokenizer> tokenizer;
};

// The checkpoint's tokenizer, refused when there is none or its vocabulary does not fit the model.
std::shared_ptr<Tokenizer> checkpoint_tokenizer(const Checkpoint& ckpt, const std::string& model_arg) {
    if (ckpt.tokenizer_path.empty())
        throw ConfigError("no tokenizer: " + model_arg +
                          " has no tokenizer.model or tokenizer.json beside it; pass --tokenizer");
    auto tokenizer = Tokenizer::load(ckpt.tokenizer_path);
    if (tokenizer->vocab_size() != ckpt.config.vocab_size)
        throw ConfigError(strprintf("tokenizer %s has %d pieces but the model's vocabulary is %lld",
                                    ckpt.tokenizer_path.c_str(), tokenizer->vocab_size(),
                                    (long long)ckpt.config.vocab_size));
    return tokenizer;
}

LoadedModel load_model(const ModelArgs& args, bool stream_blocks = false) {
    set_compute_threads(args.threads);
    LoadedModel loaded;
    loaded.checkpoint = load_checkpoint(args.model, args.tokenizer);
    loaded.tokenizer = checkpoint_tokenizer(loaded.checkpoint, args.model);
    ModelOptions options;
    options.device = args.device;
    options.dtype = args.dtype;
    options.use_adapter = !args.no_adapter;
    options.dequantize = args.dequantize;
    options.stream_blocks = stream_blocks;
    const auto start = std::chrono::steady_clock::now();
    loaded.model = LlamaModel::load(loaded.checkpoint, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& c = loaded.checkpoint.config;
    if (!loaded.checkpoint.adapter_path.empty())
        log_info(args.no_adapter ? "LoRA adapters present but not applied (--no-adapter)"
                                 : strprintf("LoRA adapters applied (scale %.4g)", loaded.checkpoint.adapter_scale));
    log_info(strprintf("loaded %s (%s): %lld layers, hidden %lld, heads %lld/%lld, vocab %lld, %s on %s, %d threads, "
                       "%.2f s",
                       args.model.c_str(), loaded.checkpoint.format.c_str(), (long long)c.n_layers,
                       (long long)c.hidden_size, (long long)c.n_heads, (long long)c.n_kv_heads,
                       (long long)c.vocab_size, c10::toString(loaded.model->options().dtype().toScalarType()),
                       loaded.model->options().device().str().c_str(), compute_threads(), seconds));
    return loaded;
}

// Draws progress on stderr: an in-place bar on a terminal, a line every 10% otherwise (logs, CI).
ProgressFn progress_printer() {
    if (!dist_is_main()) return [](const ProgressEvent&) { return true; };  // one bar for a distributed run: rank 0's
    const bool tty = isatty(STDERR_FILENO) != 0;
    auto last_decile = std::make_shared<int64_t>(-1);
    return [tty, last_decile](const ProgressEvent& e) {
        const double frac = e.total > 0 ? static_cast<double>(e.done) / static_cast<double>(e.total) : 0.0;
        const double eta = frac > 0 ? e.elapsed_s * (1.0 - frac) / frac : 0.0;
        if (tty) {
            const int width = 30;
            const int filled = static_cast<int>(frac * width);
            std::string bar(static_cast<size_t>(filled), '=');
            bar.resize(width, ' ');
            std::fprintf(stderr, "\r%s [%s] %lld/%lld %s  %s eta %s   ", e.stage.c_str(), bar.c_str(),
                         (long long)e.done, (long long)e.total, e.detail.c_str(), human_seconds(e.elapsed_s).c_str(),
                         human_seconds(eta).c_str());
            if (e.done >= e.total) std::fprintf(stderr, "\n");
        } else {
            const int64_t decile = static_cast<int64_t>(frac * 10);
            if (decile != *last_decile) {
                *last_decile = decile;
                log_info(strprintf("%s %lld/%lld %s  %s eta %s", e.stage.c_str(), (long long)e.done,
                                   (long long)e.total, e.detail.c_str(), human_seconds(e.elapsed_s).c_str(),
                                   human_seconds(eta).c_str()));
            }
        }
        return true;
    };
}

int run_tokenize(const std::string& tokenizer_arg, const std::string& text_path, const std::string& out) {
    std::string path = tokenizer_arg;
    if (is_directory(path)) path = load_checkpoint(path, "").tokenizer_path;
    if (path.empty()) throw ConfigError(tokenizer_arg + " has no tokenizer.model or tokenizer.json");
    const auto tok = Tokenizer::load(path);
    const auto ids = tok->encode(read_text_file(text_path));
    std::string line;
    line.reserve(ids.size() * 6);
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) line += ' ';
        line += std::to_string(ids[i]);
    }
    line += '\n';
    if (out.empty()) {
        std::cout << line;
    } else {
        write_file_atomic(out, [&](std::ostream& os) { os << line; });
    }
    log_info(strprintf("%zu tokens (%s, vocabulary %d)", ids.size(), tok->is_bpe() ? "byte-level BPE" : "SentencePiece",
                       tok->vocab_size()));
    return 0;
}

int run_convert(const std::string& from, const std::string& from_gguf, const std::string& tokenizer,
                const std::string& out, bool force) {
    if (from.empty() == from_gguf.empty()) throw ConfigError("give one of --from-llama2c and --from-gguf");
    Checkpoint ckpt = from.empty() ? read_gguf(from_gguf) : read_llama2c(from);
    if (!tokenizer.empty() && !path_exists(tokenizer)) throw IoError(tokenizer, "tokenizer file does not exist");
    if (!tokenizer.empty()) ckpt.tokenizer_path = tokenizer;
    std::string tokenizer_file;
    if (!ckpt.tokenizer_path.empty()) {  // refuse a broken or mismatched tokenizer before writing anything
        const auto tok = checkpoint_tokenizer(ckpt, from.empty() ? from_gguf : from);
        tokenizer_file = ", " + tok->file_name();
        log_info("tokenizer: " + std::string(tok->is_bpe() ? "byte-level BPE" : "SentencePiece") + " from " +
                 ckpt.tokenizer_path);
    }
    write_hf_folder(out, ckpt.config, *ckpt.tensors, ckpt.tokenizer_path, force);
    std::cout << "wrote " << out << " (config.json, model.safetensors"
              << tokenizer_file << ")\n";
    return 0;
}

int run_export(const std::string& model, const std::string& tokenizer, const std::string& out,
               const DenseExportOptions& options) {
    const Checkpoint ckpt = load_checkpoint(model, tokenizer);
    if (options.format == "compressed-tensors") {
        export_compressed_tensors(ckpt, out, options.force);
        std::cout << "wrote " << out << " (compressed-tensors pack-quantized"
                  << (ckpt.adapter_path.empty() ? "" : ", PEFT adapters beside it") << ")\n";
        return 0;
    }
    const std::string what = export_dense(ckpt, out, options);
    std::cout << "wrote " << out << " (" << options.format << ", " << what << ")\n";
    return 0;
}

struct EvalArgs {
    std::string dataset;
    std::string text_file;
    int64_t seqlen = 0;  // 0: min(2048, the model's context)
    int64_t max_windows = -1;
    int64_t batch_size = 1;
    std::string eval_range = "0:1";
    bool batch_size_given = false;
    std::string json_path;
    std::string json_format = "saliq";
    std::string tasks;
    int64_t limit = -1;
    bool bos = false, no_bos = false;  // neither: the tokenizer's own convention
    bool no_share_prefix = false;
};

constexpr int64_t kTaskBatchSize = 32;  // zero-shot requests per forward pass unless --batch-size is given

nlohmann::json run_perplexity(const EvalArgs& eargs, const LoadedModel& loaded) {
    const std::string source = !eargs.text_file.empty() ? eargs.text_file
                               : !eargs.dataset.empty() ? eargs.dataset : std::string("wikitext2");
    const auto t0 = std::chrono::steady_clock::now();
    const TokenRange range = TokenRange::parse(eargs.eval_range);
    const auto tokens = perplexity_tokens(source, *loaded.tokenizer, eargs.seqlen, range.begin, range.end);
    const double tokenize_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log_info(strprintf("%s: %zu tokens (tokenized in %.2f s)", source.c_str(), tokens.size(), tokenize_s));
    PerplexityOptions options;
    options.seqlen = eargs.seqlen;
    options.max_windows = eargs.max_windows;
    options.batch_size = eargs.batch_size;
    const PerplexityResult r = evaluate_perplexity(*loaded.model, tokens, options, progress_printer());
    std::printf("dataset    %s%s (seqlen %lld, %lld windows, %lld tokens scored)\n", source.c_str(),
                range.whole() ? "" : (" range " + range.to_string()).c_str(), (long long)eargs.seqlen,
                (long long)r.n_windows, (long long)r.tokens_scored);
    std::printf("perplexity %.6f\n", r.ppl);
    std::printf("time       %.2f s (%.0f tokens/s)\n", r.seconds, r.tokens_per_second);
    return {
        {"dataset", source},
        {"eval_range", range.to_string()},
        {"seqlen", eargs.seqlen},
        {"windows", r.n_windows},
        {"tokens_scored", r.tokens_scored},
        {"nll_sum", r.nll_sum},
        {"ppl", r.ppl},
        {"seconds", r.seconds},
        {"tokens_per_second", r.tokens_per_second},
    };
}

int run_eval(const ModelArgs& margs, EvalArgs eargs) {
    if (!eargs.dataset.empty() && !eargs.text_file.empty())
        throw ConfigError("give either --dataset or --text, not both");
    if (!eargs.text_file.empty() && !path_exists(eargs.text_file))
        throw IoError(eargs.text_file, "text file does not exist");
    if (eargs.limit == 0 || eargs.limit < -1) throw ConfigError("--limit must be a positive number of items");
    const bool want_tasks = !eargs.tasks.empty();
    const bool want_perplexity = !want_tasks || !eargs.dataset.empty() || !eargs.text_file.empty();
    std::vector<McTask> tasks;
    if (eargs.json_format != "saliq" && eargs.json_format != "lm-eval")
        throw ConfigError("--json-format must be saliq or lm-eval, not '" + eargs.json_format + "'");
    ZeroShotResult last_zeroshot;
    if (want_tasks)  // bad names and files fail before the model loads
        for (const auto& name : parse_task_list(eargs.tasks)) tasks.push_back(load_task(name));

    // Perplexity alone runs block-major, so no block need stay resident; zero-shot requests run window-major.
    LoadedModel loaded = load_model(margs, /*stream_blocks=*/!want_tasks);
    if (eargs.seqlen <= 0) eargs.seqlen = std::min<int64_t>(2048, loaded.checkpoint.config.max_position_embeddings);
    nlohmann::json json = {
        {"model", margs.model},
        {"format", loaded.checkpoint.format},
        {"tokenizer", loaded.checkpoint.tokenizer_path},
        {"device", loaded.model->options().device().str()},
        {"dtype", c10::toString(loaded.model->options().dtype().toScalarType())},
        {"threads", compute_threads()},
    };
    std::printf("model      %s\n", margs.model.c_str());
    if (want_perplexity) json.update(run_perplexity(eargs, loaded));
    if (want_tasks) {
        ZeroShotOptions options;
        options.batch_size = eargs.batch_size_given ? eargs.batch_size : kTaskBatchSize;
        options.limit = eargs.limit;
        options.add_bos = eargs.bos || (!eargs.no_bos && loaded.tokenizer->add_bos());
        options.share_prefix = !eargs.no_share_prefix;
        const ZeroShotResult r = evaluate_zeroshot(*loaded.model, *loaded.tokenizer, tasks, options, progress_printer());
        last_zeroshot = r;
        std::printf("\n%s", format_zeroshot_table(r).c_str());
        json["zeroshot"] = zeroshot_json(r);
    }
    if (dist_active()) json["ranks"] = dist_world_size();
    if (!eargs.json_path.empty() && dist_is_main()) {
        if (eargs.json_format == "lm-eval") {
            nlohmann::json lm = zeroshot_lm_eval_json(last_zeroshot, margs.model, json["device"].get<std::string>());
            if (json.contains("ppl")) {  // perplexity beside the tasks, as a results entry of its own
                const std::string name = json.value("dataset", std::string("text"));
                lm["results"][name] = {{"alias", name},
                                       {"token_perplexity,none", json["ppl"]},
                                       {"token_perplexity_stderr,none", "N/A"}};
                lm["higher_is_better"][name] = {{"token_perplexity", false}};
                lm["n-samples"][name] = {{"original", json["windows"]}, {"effective", json["windows"]}};
                lm["versions"][name] = nullptr;
            }
            lm["saliq"] = json;
            write_json_atomic(eargs.json_path, lm);
        } else {
            write_json_atomic(eargs.json_path, json);
        }
    }
    return 0;
}

std::string command_line(int argc, char** argv) {
    std::string out;
    for (int i = 0; i < argc; ++i) {
        if (i) out += ' ';
        out += argv[i];
    }
    return out;
}

struct QuantizeArgs {
    QuantizeOptions options;
    std::string calib_range = "0:1";
    int group_order = 0;  // CLI11 counts the flag: > 0 --group-order, < 0 --no-group-order, 0 the method's default
    std::string grid;                  // --grid: a GGML block type
    bool bits_given = false, group_size_given = false, sym_given = false;
    std::string out;
    bool force = false;
    bool resume = false;
    std::vector<std::string> stages;   // "wpt:15" "opt:5"
    bool saliency = false;
    std::string fisher_path;
    bool plain_l2 = false;
    std::string fisher_calib = "c4";
    int64_t pqi_points = 8;
    int64_t fisher_nsamples = 100;
    int64_t fisher_seqlen = 512;
};

std::vector<TrainStage> parse_stages(const std::vector<std::string>& specs) {
    std::vector<TrainStage> stages;
    for (const auto& spec : specs) {
        const auto colon = spec.find(':');
        TrainStage stage;
        stage.name = spec.substr(0, colon);
        try {
            if (colon == std::string::npos) throw std::invalid_argument(spec);
            size_t used = 0;
            stage.epochs = std::stoll(spec.substr(colon + 1), &used);
            if (used != spec.size() - colon - 1) throw std::invalid_argument(spec);
        } catch (const std::logic_error&) {
            throw ConfigError("--stages takes STAGE:EPOCHS items such as wpt:15 opt:5, got '" + spec + "'");
        }
        stages.push_back(stage);
    }
    return stages;
}

int run_quantize(const ModelArgs& margs, QuantizeArgs& qargs, const std::string& command) {
    set_compute_threads(margs.threads);
    QuantizeOptions& o = qargs.options;
    o.model.device = margs.device;
    o.model.dtype = margs.dtype;
    o.calib.range = TokenRange::parse(qargs.calib_range);
    if (qargs.group_order != 0) o.gptq.group_order = qargs.group_order > 0;
    o.apiq.stages = parse_stages(qargs.stages);
    o.saliency.enabled = qargs.saliency;
    o.saliency.weighted = !qargs.plain_l2;
    o.saliency.fisher_path = qargs.fisher_path;
    o.apiq.seed = o.calib.seed;
    if (!qargs.grid.empty()) {  // the type fixes bits, sub-block and symmetry; given options must agree
        o.spec.grid = parse_ggml_grid(qargs.grid);
        const GgmlGridTraits& t = ggml_grid_traits(o.spec.grid);
        if (!qargs.bits_given) o.spec.bits = t.bits;
        if (!qargs.group_size_given) o.spec.group_size = t.sub_block;
        if (!qargs.sym_given) o.spec.symmetric = !t.has_min;
    }
    if (o.apiq.quantizer == "uniform") o.spec.validate();  // the binarizers fix their bits (validate_quantize_options)
    if (o.saliency.metric != "fisher" && o.saliency.metric != "hessian" && o.saliency.metric != "pqi")
        throw ConfigError("--saliency-metric must be fisher, hessian or pqi");
    if (qargs.pqi_points < 1) throw ConfigError("--pqi-points must be at least 1");
    if (o.saliency.fisher_norm != "none" && o.saliency.fisher_norm != "mean")
        throw ConfigError("--fisher-norm must be none or mean");
    if (o.saliency.reg_method != "before_lora" && o.saliency.reg_method != "after_lora")
        throw ConfigError("--reg-method must be before_lora or after_lora");
    if (!o.saliency.fisher_path.empty() && !path_exists(o.saliency.fisher_path))
        throw IoError(o.saliency.fisher_path, "Fisher file does not exist");
    if (qargs.fisher_nsamples < 1 || qargs.fisher_seqlen < 2)
        throw ConfigError("--fisher-nsamples must be at least 1 and --fisher-seqlen at least 2");
    const Checkpoint ckpt = load_checkpoint(margs.model, margs.tokenizer);
    const auto tokenizer = checkpoint_tokenizer(ckpt, margs.model);
    // Every option is checked before anything is created: a refused run leaves no folder behind.
    validate_quantize_options(ckpt, *tokenizer, o);
    if (o.saliency.enabled && qargs.fisher_seqlen > ckpt.config.max_position_embeddings)
        throw ConfigError(strprintf("--fisher-seqlen %lld exceeds the model's max_position_embeddings %lld",
                                    (long long)qargs.fisher_seqlen, (long long)ckpt.config.max_position_embeddings));
    const MemoryEstimate need = estimate_quantize_memory(ckpt, o);
    const uint64_t available = available_memory_bytes();
    log_info("memory: " + need.describe() + (available > 0 ? ", available " + human_bytes(available) : ""));
    if (o.check_memory && available > 0 && need.total > available)
        throw ConfigError("this run needs about " + human_bytes(need.total) + " (" + need.describe() + ") but only " +
                          human_bytes(available) + " is available; lower --nsamples or --seqlen, store the buffers "
                          "narrower with --act-dtype bf16, or pass --no-memory-check");
    if (dist_active() && qargs.resume)
        throw ConfigError("--resume runs in one process (a distributed run's folder resumes with plain saliq "
                          "quantize ... --resume)");
    // Rank 0 alone writes the folder; the other ranks only compute their shares.
    std::unique_ptr<GptqFolderWriter> writer_owner;
    if (dist_is_main()) {
        writer_owner = std::make_unique<GptqFolderWriter>(qargs.out, ckpt, o, qargs.force, qargs.resume);
        writer_owner->prepare();
    }
    struct DiscardUnstarted {  // a run that fails before its first block finished leaves nothing behind
        GptqFolderWriter* writer;
        bool armed = true;
        ~DiscardUnstarted() {
            if (armed && writer != nullptr) writer->discard_if_unstarted();
        }
    } discard{writer_owner.get()};
    nlohmann::json extra = {{"command_line", command}, {"threads", compute_threads()}};
    struct RemoveOnExit {  // a rank's private file
        std::string path;
        ~RemoveOnExit() {
            if (!path.empty()) std::remove(path.c_str());
        }
    } rank_fisher;
    if (o.saliency.enabled && o.saliency.weighted && o.saliency.fisher_path.empty()) {
        // No Fisher file given: compute it first, kept with the partial state so a resumed run reuses it.
        // Ranks other than 0 keep their (equal) copy in a file of their own, removed when the run ends.
        const std::string fisher_path =
            writer_owner != nullptr ? writer_owner->partial_dir() + "/fisher.safetensors"
                                    : (rank_fisher.path = strprintf("%s/saliq-fisher-rank%d-%d.safetensors",
                                                                    temp_directory().c_str(), dist_rank(), getpid()));
        FisherOptions fo;
        fo.calib.source = qargs.fisher_calib;
        fo.calib.nsamples = qargs.fisher_nsamples;
        fo.calib.seqlen = qargs.fisher_seqlen;
        fo.calib.seed = o.calib.seed;
        fo.model = o.model;
        fo.metric = o.saliency.metric;
        fo.spec = o.spec;  // pqi: the path ends at this run's RTN values
        fo.pqi_points = qargs.pqi_points;
        if (dist_active() || !path_exists(fisher_path)) {  // every rank takes part in a distributed Fisher
            log_info(strprintf("saliency: %s from %s, %lld x %lld", fo.metric.c_str(), fo.calib.source.c_str(),
                               (long long)fo.calib.nsamples, (long long)fo.calib.seqlen));
            const auto t0 = std::chrono::steady_clock::now();
            const auto fisher = compute_saliency(ckpt, *tokenizer, fo, progress_printer());
            write_fisher(fisher_path, fisher, fo);
            extra["fisher"] = {{"metric", fo.metric}, {"calib", fo.calib.source}, {"nsamples", fo.calib.nsamples},
                               {"seqlen", fo.calib.seqlen},
                               {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
                               {"summary", fisher_summary(fisher)}};
        }
        o.saliency.fisher_path = fisher_path;
    }
    log_info(strprintf("quantizing %s with %s, %s, calibration %s %lldx%lld", margs.model.c_str(), o.method.c_str(),
                       o.spec.describe().c_str(), o.calib.source.c_str(), (long long)o.calib.nsamples,
                       (long long)o.calib.seqlen));
    const QuantizeResult result = quantize_model(ckpt, *tokenizer, o, writer_owner.get(), progress_printer());
    if (!dist_is_main()) return 0;
    if (!result.distributed.empty()) extra["distributed"] = result.distributed;
    if (o.saliency.enabled) extra["fisher_file"] = qargs.fisher_path.empty() ? "computed" : qargs.fisher_path;
    discard.armed = false;
    writer_owner->finish(result, extra);
    double worst = 0.0;
    std::string worst_name;
    for (const auto& b : result.blocks)
        for (const auto& l : b.linears)
            if (l.rel_error > worst) worst = l.rel_error, worst_name = l.name;
    const auto info = inspect_checkpoint(load_checkpoint(qargs.out));
    std::printf("quantized  %s -> %s\n", margs.model.c_str(), qargs.out.c_str());
    std::printf("method     %s, %s\n", o.method.c_str(), o.spec.describe().c_str());
    if (o.error_windows > 0)
        std::printf("worst      %s rel. error %.4e\n", worst_name.c_str(), worst);
    else
        std::printf("worst      not measured (--error-windows N measures it on N windows)\n");
    std::printf("size       %s model.safetensors, %.3f bits/weight in linears",
                human_bytes(info["file_bytes"].get<uint64_t>()).c_str(),
                info["bits_per_weight"]["linear"].get<double>());
    if (info["bits_per_weight"].contains("linear_with_adapters"))
        std::printf(", %.3f with the adapters (%s)", info["bits_per_weight"]["linear_with_adapters"].get<double>(),
                    human_bytes(info["bytes"]["adapters"].get<uint64_t>()).c_str());
    std::printf("\n");
    std::printf("time       %.2f s, peak RSS %s\n", result.seconds, human_bytes(peak_resident_bytes()).c_str());
    return 0;
}

int run_saliency(const ModelArgs& margs, FisherOptions& fo, const std::string& calib_range, const std::string& out) {
    set_compute_threads(margs.threads);
    fo.model.device = margs.device;
    fo.model.dtype = margs.dtype;
    fo.calib.range = TokenRange::parse(calib_range);
    const Checkpoint ckpt = load_checkpoint(margs.model, margs.tokenizer);
    const auto tokenizer = checkpoint_tokenizer(ckpt, margs.model);
    const auto t0 = std::chrono::steady_clock::now();
    const auto fisher = compute_saliency(ckpt, *tokenizer, fo, progress_printer());
    if (dist_is_main()) write_fisher(out, fisher, fo);
    double total = 0.0, top = 0.0;
    const nlohmann::json summary = fisher_summary(fisher);
    for (const auto& item : summary.items()) {
        total += item.value()["sum"].get<double>();
        top += item.value()["top1pct_mass"].get<double>() * item.value()["sum"].get<double>();
    }
    std::printf("%-10s %s (%zu tensors, %s, %lld x %lld tokens)\n", fo.metric.c_str(), out.c_str(), fisher.size(),
                fo.calib.source.c_str(), (long long)fo.calib.nsamples, (long long)fo.calib.seqlen);
    std::printf("mass       total %.4e, %.1f%% in the top 1%% of weights\n", total, total > 0 ? 100.0 * top / total : 0.0);
    std::printf("time       %.2f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
}

struct FinetuneArgs {
    std::string teacher;
    std::string calib_range = "0:1";
    std::string out;
    bool force = false;
    bool resume = false;
};

int run_finetune_command(const ModelArgs& margs, FinetuneOptions& fo, const FinetuneArgs& args,
                         const std::string& command) {
    set_compute_threads(margs.threads);
    fo.model.device = margs.device;
    fo.model.dtype = margs.dtype;
    fo.model.use_adapter = !margs.no_adapter;
    fo.calib.range = TokenRange::parse(args.calib_range);
    fo.validate();
    const Checkpoint student = load_checkpoint(margs.model, margs.tokenizer);
    const Checkpoint teacher = load_checkpoint(args.teacher, margs.tokenizer);
    const auto tokenizer = checkpoint_tokenizer(student, margs.model);
    if (tokenizer->vocab_size() != student.config.vocab_size)
        throw ConfigError(strprintf("tokenizer has %d pieces but the model's vocabulary is %lld",
                                    tokenizer->vocab_size(), (long long)student.config.vocab_size));
    if (fo.calib.seqlen > student.config.max_position_embeddings)
        throw ConfigError(strprintf("--seqlen %lld exceeds the model's max_position_embeddings %lld",
                                    (long long)fo.calib.seqlen, (long long)student.config.max_position_embeddings));
    const nlohmann::json fingerprint = {
        {"student", student.path}, {"teacher", teacher.path},
        {"calib", {{"source", fo.calib.source}, {"nsamples", fo.calib.nsamples}, {"seqlen", fo.calib.seqlen},
                   {"seed", fo.calib.seed}, {"range", fo.calib.range.to_string()}}},
        {"epochs", fo.epochs}, {"batch", fo.batch}, {"scale_lr", fo.scale_lr}, {"lora_lr", fo.lora_lr},
        {"norm_lr", fo.norm_lr}, {"train_scales", fo.train_scales}, {"train_lora", fo.train_lora},
        {"train_norms", fo.train_norms}, {"temperature", fo.temperature}, {"device", fo.model.device},
        {"dtype", fo.model.dtype}, {"adapters", fo.model.use_adapter}};
    FinetuneFolderWriter writer(args.out, student, fingerprint, args.force, args.resume);
    Finetuner finetuner(student, teacher, fo);
    log_info(strprintf("finetuning %s against %s: %zu tensors trained, %lld epochs x %lld windows of %lld tokens",
                       margs.model.c_str(), args.teacher.c_str(), finetuner.parameters().size(), (long long)fo.epochs,
                       (long long)fo.calib.nsamples, (long long)fo.calib.seqlen));
    const FinetuneResult result = run_finetune(finetuner, *tokenizer, fo, &writer, progress_printer());
    writer.finish(finetuner, result, {{"command_line", command}, {"threads", compute_threads()}});
    std::printf("finetuned  %s -> %s\n", margs.model.c_str(), args.out.c_str());
    std::printf("KL         %.5f -> %.5f (teacher || student, mean per token on the calibration windows)\n",
                result.kl_before, result.kl_after);
    std::printf("time       %.2f s, %lld steps, peak RSS %s\n", result.seconds, (long long)result.steps,
                human_bytes(peak_resident_bytes()).c_str());
    return 0;
}

int run_inspect(const std::string& path, const std::string& tokenizer, bool as_json) {
    const auto info = inspect_checkpoint(load_checkpoint(path, tokenizer));
    if (as_json) {
        std::cout << info.dump(2) << std::endl;
        return 0;
    }
    const auto& c = info["config"];
    std::printf("path          %s (%s)\n", path.c_str(), info["format"].get<std::string>().c_str());
    std::printf("architecture  llama: %lld layers, hidden %lld, intermediate %lld, heads %lld (kv %lld), head_dim %lld, "
                "vocab %lld, context %lld%s\n",
                (long long)c["num_hidden_layers"], (long long)c["hidden_size"], (long long)c["intermediate_size"],
                (long long)c["num_attention_heads"], (long long)c["num_key_value_heads"], (long long)c["head_dim"],
                (long long)c["vocab_size"], (long long)c["max_position_embeddings"],
                c["tie_word_embeddings"].get<bool>() ? ", tied embeddings" : "");
    if (info.contains("quantization")) {
        const auto& q = info["quantization"];
        if (q.contains("grid")) {
            std::string types;
            for (auto it = q["linears_by_type"].begin(); it != q["linears_by_type"].end(); ++it)
                types += strprintf("%s%lld %s", types.empty() ? "" : ", ", (long long)it.value().get<int64_t>(),
                                   it.key().c_str());
            std::printf("quantization  GGML grid %s (saliq_ggml): %s\n", q["grid"].get<std::string>().c_str(), types.c_str());
        } else {
            std::printf("quantization  %d-bit, group %lld, %s, %s%s, %lld linears packed\n", q["bits"].get<int>(),
                        (long long)q["group_size"], q["symmetric"].get<bool>() ? "symmetric" : "asymmetric",
                        q["checkpoint_format"].get<std::string>().c_str(), q["desc_act"].get<bool>() ? ", act-order" : "",
                        (long long)q["quantized_linears"]);
        }
        if (q.contains("bits_histogram")) {
            std::string hist;
            for (auto it = q["bits_histogram"].begin(); it != q["bits_histogram"].end(); ++it)
                hist += strprintf("%s%s-bit %.1f%%", hist.empty() ? "" : ", ", it.key().c_str(),
                                  100.0 * it.value().get<double>());
            std::printf("bit widths    %s of the linears' weights: %.4f code bits per weight\n", hist.c_str(),
                        q["code_bits_per_weight"].get<double>());
        }
        if (q.contains("sparse")) {
            const auto& sp = q["sparse"];
            std::printf("sparse parts  %lld outliers + %lld significant FP16 entries (%.3f%% of the linears' weights, "
                        "%.3f bits per weight of the total; GPTQ loaders ignore them)\n",
                        (long long)sp["outliers"].get<int64_t>(), (long long)sp["significant"].get<int64_t>(),
                        sp["percent"].get<double>(), sp["bits_per_weight"].get<double>());
        }
        if (q.contains("gptq_loaders_reject") && !q["gptq_loaders_reject"].empty()) {
            std::string list;
            for (const auto& l : q["gptq_loaders_reject"]) list += (list.empty() ? "" : "; ") + l.get<std::string>();
            std::printf("gptq loaders  may reject %s (widths not multiples of 32; saliq reads them)\n", list.c_str());
        }
    } else {
        std::printf("quantization  none\n");
    }
    std::printf("parameters    %lld (linear %lld, other %lld)\n", (long long)info["parameters"]["total"],
                (long long)info["parameters"]["linear"], (long long)info["parameters"]["other"]);
    std::printf("bytes         %s tensors (linear %s, other %s)\n",
                human_bytes(info["bytes"]["tensors"].get<uint64_t>()).c_str(),
                human_bytes(info["bytes"]["linear"].get<uint64_t>()).c_str(),
                human_bytes(info["bytes"]["other"].get<uint64_t>()).c_str());
    std::printf("bits/weight   %.3f in linears, %.3f overall\n", info["bits_per_weight"]["linear"].get<double>(),
                info["bits_per_weight"]["overall"].get<double>());
    if (info["bits_per_weight"].contains("adapters"))
        std::printf("adapters      %s, %.3f bits/weight: %.3f in linears with them, %.3f overall\n",
                    human_bytes(info["bytes"]["adapters"].get<uint64_t>()).c_str(),
                    info["bits_per_weight"]["adapters"].get<double>(),
                    info["bits_per_weight"]["linear_with_adapters"].get<double>(),
                    info["bits_per_weight"]["overall_with_adapters"].get<double>());
    return 0;
}

int run_generate(const ModelArgs& margs, const std::string& prompt, int64_t max_tokens) {
    LoadedModel loaded = load_model(margs);
    const auto start = std::chrono::steady_clock::now();
    const std::string text = generate_text(*loaded.model, *loaded.tokenizer, prompt, max_tokens);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << text << std::endl;
    log_info(strprintf("generated in %.2f s (prompt and up to %lld tokens)", seconds, (long long)max_tokens));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"saliq: 2-bit post-training quantization of LLaMA models (ApiQ with saliency-aware retraining)"};
    app.require_subcommand(1);
    app.fallthrough();
    // A repeated option takes its last value, so a command line can override a config file or a script's default.
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // global flags (-v, -q, --log-level) may follow the subcommand
    app.set_version_flag("--version", "saliq 0.1.0");
    app.set_config("--config", "", "read options from a TOML/INI file ([quantize], [eval] ... sections)");
    std::string log_level;
    bool verbose = false, quiet = false;
    app.add_option("--log-level", log_level, "debug, info, warn, error or off (env SALIQ_LOG_LEVEL)");
    app.add_flag("-v,--verbose", verbose, "debug logging");
    app.add_flag("-q,--quiet", quiet, "warnings and errors only");

    std::string from_llama2c, convert_tokenizer, convert_out;
    bool force = false;
    CLI::App* convert = app.add_subcommand("convert", "convert a llama2.c .bin or a GGUF checkpoint to a Hugging Face folder");
    std::string from_gguf;
    convert->add_option("--from-llama2c", from_llama2c, "llama2.c .bin checkpoint");
    convert->add_option("--from-gguf", from_gguf, "LLaMA GGUF file (F32/F16/BF16; Q8_0/Q4_0/Q4_1 dequantized)");
    convert->add_option("--tokenizer", convert_tokenizer,
                        "tokenizer for the folder: SentencePiece .model or tokenizer.json (default: a GGUF's own BPE "
                        "vocabulary)");

    std::string tok_path, tok_text, tok_out;
    CLI::App* tokenize = app.add_subcommand("tokenize", "token ids of a text file (no BOS/EOS), one line, space-separated");
    tokenize->add_option("--tokenizer", tok_path, "tokenizer.model, tokenizer.json, a GGUF or a model folder")->required();
    tokenize->add_option("--text", tok_text, "text file")->required();
    tokenize->add_option("--out,-o", tok_out, "write the ids here instead of stdout");
    convert->add_option("--out,-o", convert_out, "output folder")->required();
    convert->add_flag("--force", force, "replace an existing non-empty output folder");

    ModelArgs eval_model;
    EvalArgs eval_args;
    CLI::App* eval = app.add_subcommand("eval", "perplexity on a data set or text file, and/or zero-shot tasks");
    add_model_options(eval, eval_model);
    eval->add_option("--dataset", eval_args.dataset, "wikitext2 (default), c4, ptb or tinystories");
    eval->add_option("--text", eval_args.text_file, "score this text file instead of a named data set");
    eval->add_option("--seqlen", eval_args.seqlen, "window length in tokens (default: min(2048, the model's context))");
    eval->add_option("--max-windows", eval_args.max_windows, "score at most N windows (-1: all)")
        ->capture_default_str();
    CLI::Option* batch_size = eval->add_option("--batch-size", eval_args.batch_size,
                                               "windows (perplexity, default 1) or requests (tasks, default 32) per "
                                               "forward pass");
    eval->add_option("--eval-range", eval_args.eval_range,
                     "score only this fraction of the token stream (c4: of the documents), e.g. 0.5:1 to hold out "
                     "calibration data")
        ->capture_default_str();
    eval->add_option("--json", eval_args.json_path, "also write the result as JSON to this file");
    eval->add_option("--json-format", eval_args.json_format,
                     "saliq (default) or lm-eval (lm-evaluation-harness's results layout, perplexity as an entry)")
        ->capture_default_str();
    eval->add_option("--tasks", eval_args.tasks,
                     "zero-shot tasks, comma-separated or all: piqa, arc_easy, arc_challenge, hellaswag, winogrande, "
                     "boolq (alone: tasks only; with --dataset/--text: both)");
    eval->add_option("--limit", eval_args.limit, "score only the first N items of each task");
    eval->add_flag("--bos", eval_args.bos, "BOS before every task context (default: as the model's tokenizer does; on for LLaMA)");
    eval->add_flag("--no-bos", eval_args.no_bos, "no BOS before task contexts")->excludes("--bos");
    eval->add_flag("--no-share-prefix", eval_args.no_share_prefix,
                   "score every choice as a separate row instead of running a shared context once");

    ModelArgs quant_model;
    QuantizeArgs quant_args;
    QuantizeOptions& qo = quant_args.options;
    CLI::App* quantize = app.add_subcommand("quantize", "quantize a model block by block and write a packed folder");
    add_model_options(quantize, quant_model);
    std::string methods_help = "quantization method:";
    for (const auto& m : quant_methods()) methods_help += std::string(" ") + m.name + " (" + m.description + ");";
    quantize->add_option("--method", qo.method, methods_help)->capture_default_str();
    quantize->add_option("--bits", qo.spec.bits, "bits per weight: 2, 3, 4 or 8 (1 with --quantizer binarymos)")->capture_default_str();
    quantize->add_option("--group-size", qo.spec.group_size, "input columns per group (-1: one group per row)")
        ->capture_default_str();
    quantize->add_flag("--sym,!--asym", qo.spec.symmetric, "symmetric quantization (default: asymmetric)");
    quantize->add_option("--grid", quant_args.grid,
                         "a GGML block type instead of uniform groups, so the GGUF export is bit-exact: q2_k, q3_k, "
                         "q4_k, q4_0, q4_1, q5_0, q8_0 or iq4_nl (rows a k-quant cannot hold take llama-quantize's "
                         "fallback: q4_0 for q2_k/q3_k, q5_0 for q4_k); rtn and gptq");
    quantize->add_option("--calib", qo.calib.source, "calibration text: wikitext2, c4, ptb, tinystories or a file")
        ->capture_default_str();
    quantize->add_option("--nsamples", qo.calib.nsamples, "calibration windows")->capture_default_str();
    qo.calib.seqlen = 0;
    quantize->add_option("--seqlen", qo.calib.seqlen, "tokens per calibration window (default: min(2048, the "
                                                      "model's context))");
    quantize->add_option("--error-windows", qo.error_windows,
                         "calibration windows on which each layer's reconstruction error is measured (default: 0 "
                         "for rtn, which then reads no calibration text, 4 for the others; 0: off)");
    quantize->add_option("--act-dtype", qo.act_dtype,
                         "storage of the calibration activation buffers: auto (the compute dtype), fp32, bf16 or fp16")
        ->capture_default_str();
    quantize->add_flag("!--no-memory-check", qo.check_memory,
                       "run even when the estimated memory exceeds what is available");
    quantize->add_option("--seed", qo.calib.seed, "seed of the window draw and of the LoRA initialisation")->capture_default_str();
    quantize->add_option("--calib-range", quant_args.calib_range,
                         "draw windows only from this fraction of the text (c4: of the documents), e.g. 0:0.5")
        ->capture_default_str();
    quantize->add_option("--batch-size", qo.batch_size, "windows per forward pass")->capture_default_str();
    quantize->add_option("--damp", qo.gptq.damp, "GPTQ: dampening, fraction of mean(diag(H))")->capture_default_str();
    quantize->add_option("--block-size", qo.gptq.block_size, "GPTQ: lazy-batch width in columns")->capture_default_str();
    quantize->add_flag("--act-order", qo.gptq.act_order, "GPTQ: quantize columns by descending Hessian diagonal");
    quantize->add_flag("--group-order,!--no-group-order", quant_args.group_order,
                       "GPTQ: group-aware order (GAR, GPTQModel's act_group_aware): groups by their largest Hessian "
                       "diagonal, columns within each by theirs; groups stay natural (no g_idx permutation). Default: "
                       "on for gptq, off for slim-llm and with --act-order");
    quantize->add_option("--bit-map", qo.bit_map,
                         "omniquant / apiq-bw: mixed precision, 'slim' = SliM-LLM's bit allocation per block "
                         "(slim-llm-plus is omniquant with it), or a saliq_mixed folder whose widths to reuse");
    quantize->add_option("--slim-lambda", qo.slim.salience_lambda,
                         "slim-llm: weight of the salient weights' error in the group range search (default 1, the "
                         "released code's)");
    quantize->add_option("--sparse-outliers", qo.sparse.outliers_pct,
                         "ReQuant: % of the linears' weights kept as FP16 outliers (largest magnitudes, ratio per "
                         "linear chosen under this budget), taken out before quantizing; ReQuant's 0.45")
        ->capture_default_str();
    quantize->add_option("--sparse-significant", qo.sparse.significant_pct,
                         "ReQuant: % of the weights restored to FP16 after quantizing, chosen by the "
                         "post-quantization integral |PQI| on the calibration windows; ReQuant's 0.05")
        ->capture_default_str();
    quantize->add_option("--sparse-steps", qo.sparse.steps, "ReQuant: rounds of the significant detach (r_s / beta)")
        ->capture_default_str();
    quantize->add_option("--sparse-pqi-points", qo.sparse.pqi_points,
                         "ReQuant: trapezoid intervals of each round's integral")
        ->capture_default_str();
    quantize->add_flag("!--no-true-sequential", qo.gptq.true_sequential,
                       "GPTQ: collect all Hessians from the FP block instead of group by group");
    ApiqOptions& ao = qo.apiq;
    quantize->add_option("--lora-rank", ao.lora_rank, "ApiQ: LoRA rank r")->capture_default_str();
    quantize->add_option("--lora-alpha", ao.lora_alpha, "ApiQ: LoRA alpha (scale alpha/r)")->capture_default_str();
    quantize->add_option("--lwc-lr", ao.lwc_lr, "learning rate of the quantizer's parameters (default: clipping "
                                                "logits ApiQ 5e-3, OmniQuant 1e-2; db-llm 1e-3, binarymos 1e-2)");
    quantize->add_option("--quantizer", ao.quantizer,
                         "fake quantizer trained with LoRA: uniform (learnable clipping), db-llm (DB-LLM's dual "
                         "binarization, --bits 2) or binarymos (BinaryMoS, --bits 1); the binarizers' folders are "
                         "read by saliq, not by GPTQ loaders")
        ->capture_default_str();
    quantize->add_option("--mos-experts", ao.mos_experts, "binarymos: scale experts mixed by the router")
        ->capture_default_str();
    quantize->add_option("--lora-lr", ao.lora_lr, "ApiQ: learning rate of the LoRA adapters")->capture_default_str();
    quantize->add_option("--weight-decay", ao.weight_decay, "AdamW weight decay (default: ApiQ 0.1, OmniQuant 0)");
    quantize->add_option("--epochs", ao.epochs, "epochs per block without --stages (ApiQ: 20)")->capture_default_str();
    quantize->add_option("--stages", quant_args.stages,
                         "training stages in order, STAGE:EPOCHS with STAGE opt (MSE), wpt (lambda R) or mixed "
                         "(MSE + lambda R); default opt:EPOCHS, or mixed:EPOCHS with --saliency (the seed paper's README: "
                         "wpt:15 opt:5)");
    quantize->add_option("--train-batch", ao.train_batch, "windows per optimizer step")->capture_default_str();
    quantize->add_option("--train-dtype", ao.train_dtype,
                         "dtype of the training matmuls (apiq-bw, omniquant, apiq-lw): fp32, bf16, fp16 or auto (bf16 "
                         "on CUDA and on CPUs with bf16 matrix units, else the model's); master weights, optimizer "
                         "and loss stay fp32")
        ->capture_default_str();
    quantize->add_flag("--aug-loss,!--no-aug-loss", ao.aug_loss,
                       "also match the FP block applied to the quantized input (ApiQ's aug loss)")
        ->capture_default_str();
    quantize->add_flag("--saliency", quant_args.saliency,
                       "add the saliency-weighted regularizer lambda * sum F (W_eff - W)^2");
    quantize->add_option("--fisher", quant_args.fisher_path,
                         "diagonal Fisher file from `saliq saliency` (default: computed first)");
    quantize->add_flag("--plain-l2", quant_args.plain_l2, "regularize with F = 1 (plain L2) instead of the Fisher");
    quantize->add_option("--lambda", qo.saliency.lambda,
                         "regularizer weight lambda (default: 20 with --fisher-norm mean, 0.1 with none)");
    quantize->add_option("--lambda-multiplier", qo.saliency.lambda_multiplier, "block i uses lambda * m^i")
        ->capture_default_str();
    quantize->add_option("--reg-method", qo.saliency.reg_method,
                         "W_eff: before_lora (Q(W)) or after_lora (Q(W) + s B A)")
        ->capture_default_str();
    quantize->add_option("--fisher-norm", qo.saliency.fisher_norm,
                         "mean (each linear's F / sum F: a lambda that transfers between model sizes and metrics; "
                         "default) or none (raw F, the paper)")
        ->capture_default_str();
    quantize->add_option("--saliency-metric", qo.saliency.metric,
                         "saliency computed when no --fisher is given: hessian (SliM-LLM's; default), fisher (the "
                         "paper's) or pqi (ReQuant's post-quantization integral towards this run's RTN weights)")
        ->capture_default_str();
    quantize->add_option("--pqi-points", quant_args.pqi_points, "pqi: trapezoid intervals on the path")
        ->capture_default_str();
    quantize->add_option("--fisher-calib", quant_args.fisher_calib, "data for the computed saliency (Fisher, Hessian or PQI)")
        ->capture_default_str();
    quantize->add_option("--fisher-nsamples", quant_args.fisher_nsamples, "sequences for the computed Fisher")
        ->capture_default_str();
    quantize->add_option("--fisher-seqlen", quant_args.fisher_seqlen, "tokens per Fisher sequence")
        ->capture_default_str();
    quantize->add_option("--out,-o", quant_args.out, "output folder")->required();
    quantize->add_flag("--force", quant_args.force, "replace an existing output folder or interrupted run");
    quantize->add_flag("--resume", quant_args.resume,
                       "continue an interrupted run (same options) from its first unfinished block");

    ModelArgs sal_model;
    FisherOptions fisher_options;
    std::string sal_range = "0:1", sal_out;
    CLI::App* saliency = app.add_subcommand("saliency", "saliency of every quantizable weight: diagonal Fisher or Hessian salience");
    add_model_options(saliency, sal_model);
    saliency->add_option("--calib", fisher_options.calib.source, "wikitext2, c4, ptb, tinystories or a text file")
        ->capture_default_str();
    saliency->add_option("--nsamples", fisher_options.calib.nsamples, "sequences")->capture_default_str();
    saliency->add_option("--seqlen", fisher_options.calib.seqlen, "tokens per sequence")->capture_default_str();
    saliency->add_option("--seed", fisher_options.calib.seed, "seed of the window draw")->capture_default_str();
    saliency->add_option("--calib-range", sal_range, "fraction of the text (c4: documents) to draw from")
        ->capture_default_str();
    saliency->add_option("--metric", fisher_options.metric,
                         "fisher (diagonal empirical Fisher), hessian (SliM-LLM's w^2 / [chol(H^-1)]_jj^2) or pqi "
                         "(ReQuant's |post-quantization integral| towards RTN with --bits/--group-size)")
        ->capture_default_str();
    saliency->add_option("--bits", fisher_options.spec.bits, "pqi: bits of the RTN end point")->capture_default_str();
    saliency->add_option("--group-size", fisher_options.spec.group_size, "pqi: group size of the RTN end point")
        ->capture_default_str();
    saliency->add_option("--pqi-points", fisher_options.pqi_points, "pqi: trapezoid intervals on the path")
        ->capture_default_str();
    saliency->add_option("--out,-o", sal_out, "output .safetensors")->required();

    std::string inspect_path, inspect_tokenizer;
    bool inspect_json = false;
    CLI::App* inspect = app.add_subcommand("inspect", "print a checkpoint's architecture, quantization and size");
    inspect->add_option("path", inspect_path, "model folder or llama2.c .bin")->required();
    inspect->add_flag("--json", inspect_json, "print JSON");

    ModelArgs gen_model;
    std::string prompt;
    int64_t max_tokens = 256;
    CLI::App* generate = app.add_subcommand("generate", "greedy decoding (a correctness probe)");
    add_model_options(generate, gen_model);
    generate->add_option("--prompt,-p", prompt, "prompt text (empty: start from BOS)");
    generate->add_option("--max-tokens,-n", max_tokens, "tokens to generate")->capture_default_str();

    std::string export_model, export_tokenizer, export_out;
    DenseExportOptions export_options;
    CLI::App* exporter = app.add_subcommand(
        "export", "write a model for other tools: a Hugging Face folder (dense, adapters merged), a GGUF file for "
                  "llama.cpp (packed folders as GGML blocks where a type holds them, adapters as a GGUF LoRA "
                  "adapter; else dense) or compressed-tensors");
    exporter->add_option("--model,-m", export_model, "model folder or file")->required();
    exporter->add_option("--tokenizer", export_tokenizer, "SentencePiece .model (default: the folder's)");
    exporter->add_option("--format", export_options.format,
                         "hf, gguf (dense) or compressed-tensors (a GPTQ-packed folder as pack-quantized "
                         "W{2,3,4,8}A16 for vLLM, code for code)")
        ->capture_default_str();
    exporter->add_option("--dtype", export_options.dtype, "fp32, fp16 or bf16 (gguf norms stay F32)")->capture_default_str();
    exporter->add_option("--out,-o", export_out, "output folder (hf) or .gguf file")->required();
    exporter->add_flag("!--no-adapter", export_options.use_adapter, "leave the folder's LoRA adapters out");
    exporter->add_flag("--merge", export_options.merge,
                       "gguf of a --grid folder: dense weights with the adapters merged, instead of its GGML blocks "
                       "bit for bit beside a GGUF LoRA adapter");
    exporter->add_option("--adapter-out", export_options.adapter_out,
                         "gguf of a --grid folder: where the GGUF LoRA adapter goes (default: OUT with .lora.gguf)");
    exporter->add_flag("--force", export_options.force, "replace an existing output");

    ModelArgs ft_model;
    FinetuneOptions ft_options;
    ft_options.calib.source = "";
    ft_options.calib.nsamples = 128;
    ft_options.calib.seqlen = 2048;
    FinetuneArgs ft_args;
    CLI::App* finetune = app.add_subcommand(
        "finetune", "end-to-end distillation of a quantized folder against its FP model (KL on the logits): trains "
                    "the group scales, the LoRA adapters and optionally the norms; writes a folder in the same layout");
    add_model_options(finetune, ft_model);
    finetune->add_option("--teacher", ft_args.teacher, "the full-precision model the folder was quantized from")
        ->required();
    finetune->add_option("--calib", ft_options.calib.source, "wikitext2, c4, ptb, tinystories or a text file")
        ->required();
    finetune->add_option("--calib-range", ft_args.calib_range, "draw windows only from this fraction of the text")
        ->capture_default_str();
    finetune->add_option("--nsamples", ft_options.calib.nsamples, "training windows")->capture_default_str();
    finetune->add_option("--seqlen", ft_options.calib.seqlen, "tokens per window")->capture_default_str();
    finetune->add_option("--seed", ft_options.calib.seed, "seed of the window draw")->capture_default_str();
    finetune->add_option("--epochs", ft_options.epochs, "passes over the windows")->capture_default_str();
    finetune->add_option("--train-batch", ft_options.batch, "windows per optimizer step (as quantize's)")
        ->capture_default_str();
    finetune->add_option("--batch", ft_options.batch, "deprecated: --train-batch")
        ->each([](const std::string&) { log_warn("--batch is deprecated: say --train-batch, as quantize does"); });
    finetune->add_option("--scale-lr", ft_options.scale_lr, "Adam learning rate of the log-scales (relative steps)")
        ->capture_default_str();
    finetune->add_option("--lora-lr", ft_options.lora_lr, "Adam learning rate of the adapters")->capture_default_str();
    finetune->add_option("--norm-lr", ft_options.norm_lr, "Adam learning rate of the norms")->capture_default_str();
    finetune->add_flag("!--freeze-scales", ft_options.train_scales, "keep the group scales as they are");
    finetune->add_flag("!--freeze-lora", ft_options.train_lora, "keep the adapters as they are");
    finetune->add_flag("--train-norms", ft_options.train_norms, "train the blocks' RMSNorm weights too");
    finetune->add_option("--temperature", ft_options.temperature, "of both distributions in the KL")
        ->capture_default_str();
    finetune->add_option("--out,-o", ft_args.out, "output folder")->required();
    finetune->add_flag("--force", ft_args.force, "replace an existing output or interrupted run");
    finetune->add_flag("--resume", ft_args.resume, "continue an interrupted run (same options) after its last epoch");

    TableArgs table_args;
    CLI::App* table = app.add_subcommand("table", "run every row of a paper table config (configs/tables/*.toml): "
                                                  "quantize, perplexity, zero-shot; writes OUT/table.md and table.json");
    table->add_option("config", table_args.config, "table config (.toml)")->required();
    table->add_option("--rows", table_args.rows, "comma-separated row names to run (default: all)");
    table->add_option("--seeds", table_args.seeds, "comma-separated seeds (default: the config's)");
    table->add_option("--out,-o", table_args.out, "working and output folder (default: the config's)");
    table->add_option("--model,-m", table_args.model, "the model (default: the config's)");
    table->add_option("--tokenizer", table_args.tokenizer, "its tokenizer (default: the config's)");
    table->add_option("--threads", table_args.threads, "CPU threads of every child run (0: all cores)")
        ->capture_default_str();
    table->add_flag("--dry-run", table_args.dry_run, "print the commands, run nothing");
    table->add_flag("--keep-models", table_args.keep_models, "keep each row's quantized folder");

    int launch_nproc = 1;
    CLI::App* launch = app.add_subcommand(
        "launch", "run one saliq command as N processes on this machine (torchrun's environment, Gloo over "
                  "loopback): saliq launch --nproc N -- eval|quantize|saliency ARGS...");
    std::vector<std::string> launch_command;
    launch->add_option("--nproc", launch_nproc, "processes (ranks)")->required();
    launch->add_option("command", launch_command, "the saliq command and its arguments, after --")
        ->expected(-1)
        ->required();

    tune_allocator();
    // A misspelled key in a config file must not be silently ignored.
    app.allow_config_extras(CLI::config_extras_mode::error);
    for (CLI::App* sub : app.get_subcommands({})) sub->allow_config_extras(CLI::config_extras_mode::error);
    // `saliq launch --nproc N eval -m ...`: without the --, CLI11 would take -m for an option of launch.
    if (argc > 1 && std::string(argv[1]) == "launch") {
        bool dashes = false, help = false;
        for (int i = 2; i < argc; ++i) {
            dashes = dashes || std::string(argv[i]) == "--";
            help = help || std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h";
        }
        if (!dashes && !help) {
            std::fprintf(stderr, "saliq launch: put -- before the command: saliq launch --nproc N -- eval -m MODEL ...\n");
            return 2;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    try {
        LogLevel level = log_level_from_env(LogLevel::Info);
        if (verbose) level = LogLevel::Debug;
        if (quiet) level = LogLevel::Warn;
        if (!log_level.empty()) level = parse_log_level(log_level);
        set_log_level(level);
        if (const std::string shadowing = libstdcxx_shadowing(); !shadowing.empty()) log_warn(shadowing);

        auto run_subcommand = [&]() -> int {
            if (*tokenize) return run_tokenize(tok_path, tok_text, tok_out);
            if (*convert) return run_convert(from_llama2c, from_gguf, convert_tokenizer, convert_out, force);
            if (*eval) {
                eval_args.batch_size_given = batch_size->count() > 0;
                return run_eval(eval_model, eval_args);
            }
            if (*generate) return run_generate(gen_model, prompt, max_tokens);
            if (*quantize) {
                quant_args.bits_given = quantize->count("--bits") > 0;
                quant_args.group_size_given = quantize->count("--group-size") > 0;
                quant_args.sym_given = quantize->count("--sym") + quantize->count("--asym") > 0;
                return run_quantize(quant_model, quant_args, command_line(argc, argv));
            }
            if (*inspect) return run_inspect(inspect_path, inspect_tokenizer, inspect_json);
            if (*table) return run_table(table_args);
            if (*exporter) return run_export(export_model, export_tokenizer, export_out, export_options);
            if (*saliency) return run_saliency(sal_model, fisher_options, sal_range, sal_out);
            if (*finetune) return run_finetune_command(ft_model, ft_options, ft_args, command_line(argc, argv));
            return 0;
        };
        if (*launch) return run_launch(launch_nproc, launch_command);
        // A distributed run (torchrun's environment, or saliq launch): the subcommands that shard join the group;
        // the others would only repeat one process's work N times.
        const DistEnv dist_env = dist_env_from_environment();
        if (dist_env.world_size > 1) {
            std::string sub = app.get_subcommands().front()->get_name();
            const auto& names = distributed_subcommands();
            if (std::find(names.begin(), names.end(), sub) == names.end())
                throw ConfigError("saliq " + sub + " runs in one process; unset RANK/WORLD_SIZE");
            DistEnv env = dist_env;
            for (ModelArgs* m : {&eval_model, &quant_model, &sal_model})  // one GPU per local rank
                if (m->device == "cuda") {
                    m->device = "cuda:" + std::to_string(dist_env.local_rank);
                    env.cuda = true;
                }
            init_distributed(env);
            if (!dist_is_main() && std::freopen("/dev/null", "w", stdout) == nullptr)  // rank 0 alone prints results
                throw IoError("/dev/null", "cannot silence the standard output of this rank");
        }
        const int rc = run_subcommand();
        shutdown_distributed(/*clean=*/rc == 0);
        return rc;
    } catch (const ConfigError& e) {
        log_error(e.what());
        return 2;
    } catch (const FormatError& e) {
        log_error(e.what());
        return 3;
    } catch (const IoError& e) {
        log_error(e.what());
        return 3;
    } catch (const NumericError& e) {
        log_error(e.what());
        return 4;
    } catch (const DistributedError& e) {
        log_error(e.what());
        return 5;
    } catch (const Cancelled&) {
        log_error("cancelled");
        return 130;
    } catch (const std::exception& e) {
        log_error(std::string("internal error: ") + e.what());
        return 1;
    }
    return 0;
}
