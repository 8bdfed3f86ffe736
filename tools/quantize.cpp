// `saliq quantize`: a model quantized block by block into a packed folder.
#include "cli.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "saliq/binarize.h"
#include "saliq/distributed.h"
#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/inspect.h"
#include "saliq/log.h"
#include "saliq/method_traits.h"
#include "saliq/quantize.h"
#include "saliq/runtime.h"
#include "saliq/saliency.h"
#include "saliq/strings.h"
#include "saliq/threads.h"

namespace saliq {
namespace {

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
    bool plain_l2 = false;
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
    o.apiq.seed = o.calib.seed;
    if (!qargs.grid.empty()) {  // the type fixes bits, sub-block and symmetry; given options must agree
        o.spec.grid = parse_ggml_grid(qargs.grid);
        const GgmlGridTraits& t = ggml_grid_traits(o.spec.grid);
        if (!qargs.bits_given) o.spec.bits = t.bits;
        if (!qargs.group_size_given) o.spec.group_size = t.sub_block;
        if (!qargs.sym_given) o.spec.symmetric = !t.has_min;
    }
    if (!is_binarizer(o.apiq.quantizer)) o.spec.validate();  // the binarizers fix their bits (validate_quantize_options)
    const Checkpoint ckpt = load_checkpoint(margs.model, margs.tokenizer);
    const auto tokenizer = checkpoint_tokenizer(ckpt, margs.model);
    // Every option is checked before anything is created: a refused run leaves no folder behind.
    validate_quantize_options(ckpt, *tokenizer, o);
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
    const std::string fisher_file = o.saliency.fisher_path;  // the one given, if any
    if (o.saliency.enabled && o.saliency.weighted && o.saliency.fisher_path.empty()) {
        // No saliency file given: computed first, kept with the partial state so a resumed run reuses it. Ranks
        // other than 0 keep their (equal) copy in a file of their own, removed when the run ends.
        const std::string path =
            writer_owner != nullptr ? writer_owner->partial_dir() + "/fisher.safetensors"
                                    : (rank_fisher.path = strprintf("%s/saliq-fisher-rank%d-%d.safetensors",
                                                                    temp_directory().c_str(), dist_rank(), getpid()));
        const nlohmann::json stats = prepare_saliency(ckpt, *tokenizer, o, path, /*reuse=*/true, progress_printer());
        if (!stats.empty()) extra["fisher"] = stats;
    }
    log_info(strprintf("quantizing %s with %s, %s, calibration %s %lldx%lld", margs.model.c_str(), o.method.c_str(),
                       o.spec.describe().c_str(), o.calib.source.c_str(), (long long)o.calib.nsamples,
                       (long long)o.calib.seqlen));
    const QuantizeResult result = quantize_model(ckpt, *tokenizer, o, writer_owner.get(), progress_printer());
    if (!dist_is_main()) return 0;
    if (!result.distributed.empty()) extra["distributed"] = result.distributed;
    if (o.saliency.enabled) extra["fisher_file"] = fisher_file.empty() ? "computed" : fisher_file;
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

}  // namespace

Command add_quantize_command(CLI::App& app, const std::string& command_line) {
    auto model = std::make_shared<ModelArgs>();
    auto args = std::make_shared<QuantizeArgs>();
    ModelArgs& quant_model = *model;
    QuantizeArgs& quant_args = *args;
    QuantizeOptions& qo = quant_args.options;
    CLI::App* quantize = app.add_subcommand("quantize", "quantize a model block by block and write a packed folder");
    add_model_options(quantize, quant_model);
    std::string methods_help = "quantization method:";
    for (const auto& m : method_table()) methods_help += " " + m.name + " (" + m.summary + ");";
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
    quantize->add_flag("--rtn-importance", qo.rtn_importance,
                       "rtn: fit each group to the least error weighted by its columns' input mean squares on the "
                       "calibration windows (llama.cpp's importance matrix; on --grid, the type's weighted scale "
                       "search), instead of min-max");
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
                                                "logits ApiQ 5e-3, OmniQuant 1e-2; db-llm 1e-3, binarymos 1e-2; "
                                                "times --train-batch)");
    quantize->add_option("--lwc-init", ao.lwc_init,
                         "where the clipping factors start: minmax (sigmoid(4), OmniQuant's and ApiQ's), search "
                         "(per group, the pair from {0.98, 0.95, ..., 0.5} with the least input-weighted error) or "
                         "auto (search at 2 bits on the uniform grid, minmax otherwise)")
        ->capture_default_str();
    quantize->add_option("--quantizer", ao.quantizer,
                         "fake quantizer trained with LoRA: uniform (learnable clipping), db-llm (DB-LLM's dual "
                         "binarization, --bits 2) or binarymos (BinaryMoS, --bits 1); the binarizers' folders are "
                         "read by saliq, not by GPTQ loaders")
        ->capture_default_str();
    quantize->add_option("--mos-experts", ao.mos_experts, "binarymos: scale experts mixed by the router")
        ->capture_default_str();
    quantize->add_option("--lora-lr", ao.lora_lr, "ApiQ: learning rate of the LoRA adapters (default: ApiQ's 5e-4 "
                                                  "times --train-batch)");
    quantize->add_option("--adapter-dtype", ao.adapter_dtype,
                         "storage of the written LoRA adapters: fp32, fp16 or bf16 (training is unchanged; bf16 "
                         "halves the adapters' bits per weight)")
        ->capture_default_str();
    quantize->add_option("--weight-decay", ao.weight_decay, "AdamW weight decay (default: ApiQ 0.1, OmniQuant 0)");
    quantize->add_option("--epochs", ao.epochs, "epochs per block without --stages (ApiQ: 20)")->capture_default_str();
    quantize->add_option("--stages", quant_args.stages,
                         "training stages in order, STAGE:EPOCHS with STAGE opt (MSE), wpt (lambda R) or mixed "
                         "(MSE + lambda R); default opt:EPOCHS, or mixed:EPOCHS with --saliency (the seed paper's README: "
                         "wpt:15 opt:5)");
    quantize->add_option("--train-batch", ao.train_batch,
                         "windows per optimizer step; the default learning rates are per window and scale with it "
                         "(the linear rule), given ones do not")
        ->capture_default_str();
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
    quantize->add_option("--fisher", qo.saliency.fisher_path,
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
    quantize->add_option("--pqi-points", qo.saliency.pqi_points, "pqi: trapezoid intervals on the path")
        ->capture_default_str();
    quantize->add_option("--fisher-calib", qo.saliency.calib, "data for the computed saliency (Fisher, Hessian or PQI)")
        ->capture_default_str();
    quantize->add_option("--fisher-nsamples", qo.saliency.nsamples, "sequences for the computed Fisher")
        ->capture_default_str();
    quantize->add_option("--fisher-seqlen", qo.saliency.seqlen, "tokens per Fisher sequence")
        ->capture_default_str();
    quantize->add_option("--out,-o", quant_args.out, "output folder")->required();
    quantize->add_flag("--force", quant_args.force, "replace an existing output folder or interrupted run");
    quantize->add_flag("--resume", quant_args.resume,
                       "continue an interrupted run (same options) from its first unfinished block");

    return {quantize,
            [model, args, quantize, command_line] {
                args->bits_given = quantize->count("--bits") > 0;
                args->group_size_given = quantize->count("--group-size") > 0;
                args->sym_given = quantize->count("--sym") + quantize->count("--asym") > 0;
                return run_quantize(*model, *args, command_line);
            },
            model.get()};
}

}  // namespace saliq
