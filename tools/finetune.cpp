// `saliq finetune`: end-to-end distillation of a quantized folder against its FP model.
#include "cli.h"

#include <cstdio>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/finetune.h"
#include "saliq/log.h"
#include "saliq/runtime.h"
#include "saliq/strings.h"
#include "saliq/threads.h"

namespace saliq {
namespace {

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

}  // namespace

Command add_finetune_command(CLI::App& app, const std::string& command_line) {
    auto model = std::make_shared<ModelArgs>();
    auto options = std::make_shared<FinetuneOptions>();
    auto args = std::make_shared<FinetuneArgs>();
    ModelArgs& ft_model = *model;
    FinetuneOptions& ft_options = *options;
    FinetuneArgs& ft_args = *args;
    ft_options.calib.source = "";
    ft_options.calib.nsamples = 128;
    ft_options.calib.seqlen = 2048;
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

    return {finetune, [model, options, args, command_line] {
                return run_finetune_command(*model, *options, *args, command_line);
            }};
}

}  // namespace saliq
