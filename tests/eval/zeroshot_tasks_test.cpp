// Task loaders: exact request strings from the harness templates (two items per task from the real files), item
// counts, and clear errors for malformed or missing files.
#include <map>

#include <nlohmann/json.hpp>

#include "eval/tasks/tasks.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/strings.h"
#include "saliq/zeroshot.h"
#include "test_utils.h"

namespace saliq {
namespace {

using test::TempDir;

void expect_request(const McDoc& doc, size_t choice, const std::string& context, const std::string& continuation) {
    ASSERT_LT(choice, doc.requests.size());
    EXPECT_EQ(doc.requests[choice].context, context) << "choice " << choice;
    EXPECT_EQ(doc.requests[choice].continuation, continuation) << "choice " << choice;
}

// Runs `load` and returns the FormatError message (empty when nothing was thrown).
template <typename F>
std::string format_error_of(F load) {
    try {
        load();
    } catch (const FormatError& e) {
        return e.what();
    }
    return "";
}

// ----- exact requests, written from the harness templates -----

TEST(ZeroShotTasks, PiqaRequestsFollowTheHarnessTemplate) {
    const McTask task = load_task("piqa");
    ASSERT_EQ(task.docs.size(), 1838u);
    EXPECT_TRUE(task.has_acc_norm);
    const McDoc& d0 = task.docs[0];
    const std::string ctx0 = "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:";
    expect_request(d0, 0, ctx0,
                   " Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, "
                   "you will also need to supply it with a water bottle and a food dish.");
    expect_request(d0, 1, ctx0,
                   " Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, "
                   "you will also need to supply it with a water bottle and a food dish.");
    EXPECT_EQ(d0.gold, 0);
    EXPECT_EQ(d0.line, 1);
    // Trailing and double spaces are kept: the harness uses sol1/sol2 verbatim.
    const McDoc& d1 = task.docs[1];
    expect_request(d1, 0, "Question: dresser\nAnswer:", " replace drawer with bobby pin ");
    expect_request(d1, 1, "Question: dresser\nAnswer:", " finish, woodgrain with  bobby pin ");
    EXPECT_EQ(d1.choices, (std::vector<std::string>{"replace drawer with bobby pin ", "finish, woodgrain with  bobby pin "}));
    EXPECT_EQ(d1.gold, 1);
    int64_t ones = 0;
    for (const auto& d : task.docs) ones += d.gold;
    EXPECT_EQ(ones, 928);
}

TEST(ZeroShotTasks, ArcRecoversQuestionAndChoicesFromTheInstructionFormat) {
    const McTask easy = load_task("arc_easy");
    ASSERT_EQ(easy.docs.size(), 2376u);
    const std::string q0 =
        "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:";
    expect_request(easy.docs[0], 0, q0, " Sunlight is the source of energy for nearly all ecosystems.");
    expect_request(easy.docs[0], 3, q0, " The producers in all ecosystems are plants.");
    EXPECT_EQ(easy.docs[0].gold, 0);
    EXPECT_EQ(easy.docs[0].line, 2);  // the item's "{" in the pretty-printed array
    const std::string q1 =
        "Question: Which piece of safety equipment is used to keep mold spores from entering the respiratory "
        "system?\nAnswer:";
    EXPECT_EQ(easy.docs[1].choices,
              (std::vector<std::string>{"safety goggles", "breathing mask", "rubber gloves", "lead apron"}));
    expect_request(easy.docs[1], 1, q1, " breathing mask");
    EXPECT_EQ(easy.docs[1].gold, 1);
    EXPECT_EQ(easy.docs[1].line, 8);
    // A five-choice item.
    EXPECT_EQ(easy.docs[500].choices,
              (std::vector<std::string>{"nitrogen", "oxygen", "carbon dioxide", "hydrogen", "water vapor"}));

    const McTask challenge = load_task("arc_challenge");
    ASSERT_EQ(challenge.docs.size(), 1172u);
    const std::string c0 =
        "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most "
        "likely effect of this increase in rotation?\nAnswer:";
    expect_request(challenge.docs[0], 2, c0, " Planetary days will become shorter.");
    EXPECT_EQ(challenge.docs[0].gold, 2);
    // The sled item (numeric answer keys upstream; off by one in the llm-foundry copy): gold is choice 2.
    expect_request(challenge.docs[44], 1,
                   "Question: Which statement best describes the energy changes that occur while a child is riding "
                   "on a sled down a steep, snow-covered hill?\nAnswer:",
                   " Kinetic energy increases and potential energy decreases.");
    EXPECT_EQ(challenge.docs[44].gold, 1);
    // A three-choice item whose question ends without punctuation.
    expect_request(challenge.docs[121], 2,
                   "Question: A toy truck rolls over a smooth surface. If the surface is covered with sand, the "
                   "truck will most likely roll\nAnswer:",
                   " at the same speed");

    std::map<size_t, int> easy_sizes, challenge_sizes;
    for (const auto& d : easy.docs) ++easy_sizes[d.choices.size()];
    for (const auto& d : challenge.docs) ++challenge_sizes[d.choices.size()];
    EXPECT_EQ(easy_sizes, (std::map<size_t, int>{{3, 7}, {4, 2365}, {5, 4}}));
    EXPECT_EQ(challenge_sizes, (std::map<size_t, int>{{3, 4}, {4, 1165}, {5, 3}}));
}

TEST(ZeroShotTasks, HellaswagAppliesTheHarnessPreprocessing) {
    const McTask task = load_task("hellaswag");
    ASSERT_EQ(task.docs.size(), 10042u);
    // ActivityNet: ctx_b ("he") is capitalized by the harness.
    const McDoc& d0 = task.docs[0];
    const std::string q0 = "Roof shingle removal: A man is sitting on a roof. He";
    expect_request(d0, 0, q0, " is using wrap to wrap a pair of skis.");
    expect_request(d0, 1, q0, " is ripping level tiles off.");
    expect_request(d0, 2, q0, " is holding a rubik's cube.");
    expect_request(d0, 3, q0, " starts pulling up roofing on a roof.");
    EXPECT_EQ(d0.gold, 3);
    EXPECT_EQ(task.docs[1].requests[0].context,
              "Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady");
    // WikiHow (record at line 21031): ctx_b is empty; the leftover "[www.kiddio.org]" goes, and the double space
    // it leaves collapses.
    const McDoc& wiki = task.docs[3505];
    EXPECT_EQ(wiki.line, 21031);
    const std::string qw =
        "Family Life: How to entertain a toddler. Ask the toddler what he or she would like to do instead of doing "
        "what you would like to do.. Visit a site like to find loads of creative activities for toddlers and "
        "preschoolers.. Choose small, simple games like candy land or chutes and ladders.";
    expect_request(wiki, 1, qw,
                   " Try some arts and crafts like washable paints, little foamies, crayons, and paper.. Watch the "
                   "toddler's favorite movie, even if it's barney, and even if he or she has seen it 20 times before.");
    EXPECT_EQ(wiki.gold, 1);
    std::map<int64_t, int> golds;
    for (const auto& d : task.docs) ++golds[d.gold];
    EXPECT_EQ(golds, (std::map<int64_t, int>{{0, 2515}, {1, 2485}, {2, 2584}, {3, 2458}}));
}

TEST(ZeroShotTasks, HellaswagTextSteps) {
    EXPECT_EQ(detail::hellaswag_preprocess("  a [title] b [step] c  "), "a. b c");
    EXPECT_EQ(detail::hellaswag_preprocess("x [a [b] y"), "x y");  // non-greedy from the first "["
    EXPECT_EQ(detail::hellaswag_preprocess("a   b"), "a  b");      // one pass, as Python's str.replace
    EXPECT_EQ(detail::hellaswag_preprocess("unclosed [ bracket"), "unclosed [ bracket");
    EXPECT_EQ(detail::python_capitalize("the OLD man"), "The old man");
    EXPECT_EQ(detail::hellaswag_context("A man waves. the man"), "A man waves. The man");
    EXPECT_EQ(detail::hellaswag_context("a man"), "A man");  // empty ctx_a
    EXPECT_EQ(detail::hellaswag_context("How to cook. Boil water."), "How to cook. Boil water.");  // WikiHow
    EXPECT_EQ(detail::hellaswag_context("How to clean windows. you"), "How to clean windows. You");
}

TEST(ZeroShotTasks, WinograndeUsesPartialScoring) {
    const McTask task = load_task("winogrande");
    ASSERT_EQ(task.docs.size(), 1267u);
    EXPECT_FALSE(task.has_acc_norm);
    const McDoc& d0 = task.docs[0];
    expect_request(d0, 0, "Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases.");
    expect_request(d0, 1, "Sarah was a much better surgeon than Maria so Maria", " always got the easier cases.");
    EXPECT_EQ(d0.gold, 1);
    const McDoc& d1 = task.docs[1];
    expect_request(d1, 0, "Sarah was a much better surgeon than Maria so Sarah", " always got the harder cases.");
    expect_request(d1, 1, "Sarah was a much better surgeon than Maria so Maria", " always got the harder cases.");
    EXPECT_EQ(d1.gold, 0);
}

TEST(ZeroShotTasks, BoolqAsksYesOrNoAfterThePassage) {
    const McTask task = load_task("boolq");
    ASSERT_EQ(task.docs.size(), 3270u);
    EXPECT_FALSE(task.has_acc_norm);
    const McDoc& d0 = task.docs[0];
    EXPECT_TRUE(starts_with(d0.requests[0].context, "All biomass goes through at least some of these steps: "));
    EXPECT_TRUE(ends_with(d0.requests[0].context,
                          "concluded that producing ethanol from corn uses much less petroleum than producing "
                          "gasoline.\nQuestion: does ethanol take more energy make that produces?\nAnswer:"));
    EXPECT_EQ(d0.requests[0].continuation, " no");
    EXPECT_EQ(d0.requests[1].continuation, " yes");
    EXPECT_EQ(d0.requests[0].context, d0.requests[1].context);
    EXPECT_EQ(d0.gold, 0);
    const McDoc& d1 = task.docs[1];
    EXPECT_TRUE(starts_with(d1.requests[1].context, "Property tax or 'house tax' is a local tax on buildings"));
    EXPECT_TRUE(ends_with(d1.requests[1].context,
                          "falling in the first two brackets.\nQuestion: is house tax and property tax are same?\n"
                          "Answer:"));
    EXPECT_EQ(d1.gold, 1);
    // The whole context is passage + template, nothing else.
    const auto row = nlohmann::json::parse(split(read_text_file(test::data_path("tasks/boolq/dev.jsonl")), '\n')[1]);
    EXPECT_EQ(d1.requests[0].context, row["passage"].get<std::string>() + "\nQuestion: " +
                                          row["question"].get<std::string>() + "?\nAnswer:");
    int64_t yes = 0;
    for (const auto& d : task.docs) yes += d.gold;
    EXPECT_EQ(yes, 2033);
}

TEST(ZeroShotTasks, TaskListParsing) {
    EXPECT_EQ(parse_task_list("all"), zeroshot_task_names());
    EXPECT_EQ(parse_task_list(" piqa, boolq,piqa"), (std::vector<std::string>{"piqa", "boolq"}));
    EXPECT_EQ(zeroshot_task_names().size(), 6u);
    EXPECT_THROW(parse_task_list(""), ConfigError);
    try {
        parse_task_list("piqa,lambada");
        FAIL() << "expected ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("lambada"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("hellaswag"), std::string::npos);  // lists the known names
    }
}

// ----- malformed and missing files -----

TEST(ZeroShotTasks, MissingTaskFileNamesThePath) {
    TempDir dir;
    try {
        load_task("winogrande", dir.path());
        FAIL() << "expected IoError";
    } catch (const IoError& e) {
        EXPECT_NE(std::string(e.what()).find(dir.path() + "/tasks/winogrande/dev.jsonl"), std::string::npos)
            << e.what();
    }
    // PIQA needs its label file too.
    make_directories(dir.file("tasks/piqa"));
    test::write_bytes(dir.file("tasks/piqa/valid.jsonl"), "{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\"}\n");
    try {
        load_task("piqa", dir.path());
        FAIL() << "expected IoError";
    } catch (const IoError& e) {
        EXPECT_NE(std::string(e.what()).find("valid-labels.lst"), std::string::npos) << e.what();
    }
}

TEST(ZeroShotTasks, MalformedJsonLinesNameFileAndLine) {
    TempDir dir;
    const std::string path = dir.file("dev.jsonl");
    const std::string good = R"({"sentence":"A _ b.","option1":"x","option2":"y","answer":"1"})";
    test::write_bytes(path, good + "\n" + good + "\n{\"sentence\": \"broken\n");
    std::string msg = format_error_of([&] { detail::load_winogrande(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;

    test::write_bytes(path, good + "\n" + R"({"sentence":"A _ b.","option1":"x","answer":"1"})" + "\n");
    msg = format_error_of([&] { detail::load_winogrande(path); });
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("option2"), std::string::npos) << msg;

    test::write_bytes(path, R"({"sentence":"No blank.","option1":"x","option2":"y","answer":"1"})");
    EXPECT_NE(format_error_of([&] { detail::load_winogrande(path); }).find("blank"), std::string::npos);
    test::write_bytes(path, R"({"sentence":"A _ b.","option1":"x","option2":"y","answer":"3"})");
    EXPECT_NE(format_error_of([&] { detail::load_winogrande(path); }).find("line 1"), std::string::npos);
    test::write_bytes(path, "[1, 2]\n");
    EXPECT_NE(format_error_of([&] { detail::load_winogrande(path); }).find("JSON object"), std::string::npos);
    // A number beyond double's range is a JSON error too (found by tests/fuzz/fuzz_readers.cpp).
    test::write_bytes(path, good + "\n" + R"({"sentence":"A _ b.","option1":"x","option2":"y","answer":1e999})" + "\n");
    msg = format_error_of([&] { detail::load_winogrande(path); });
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
    test::write_bytes(dir.file("arc.json"), "[33E77777777777777777777]");
    EXPECT_NE(format_error_of([&] { detail::load_arc(dir.file("arc.json")); }).find("not valid JSON"), std::string::npos);

    test::write_bytes(path, R"({"question":"q","passage":"p","answer":"yes"})");
    msg = format_error_of([&] { detail::load_boolq(path); });
    EXPECT_NE(msg.find("line 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("answer"), std::string::npos) << msg;
}

TEST(ZeroShotTasks, PiqaLabelsMustMatchTheItems) {
    TempDir dir;
    const std::string items = dir.file("valid.jsonl"), labels = dir.file("valid-labels.lst");
    const std::string item = R"({"goal":"g","sol1":"a","sol2":"b"})";
    test::write_bytes(items, item + "\n" + item + "\n");
    test::write_bytes(labels, "0\n");
    std::string msg = format_error_of([&] { detail::load_piqa(items, labels); });
    EXPECT_NE(msg.find(labels), std::string::npos) << msg;
    EXPECT_NE(msg.find("1 labels"), std::string::npos) << msg;
    test::write_bytes(labels, "0\n2\n");
    msg = format_error_of([&] { detail::load_piqa(items, labels); });
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
    test::write_bytes(labels, "0\n1\n");
    EXPECT_EQ(detail::load_piqa(items, labels).size(), 2u);
}

TEST(ZeroShotTasks, ArcErrorsNameTheItemLine) {
    TempDir dir;
    const std::string path = dir.file("arc.json");
    const std::string good =
        "Please choose the correct answer to the question: Q?\\n\\nAnswer1: a Answer2: b\\n\\nAnswer format: "
        "answer1/answer2";
    auto file = [&](const std::string& second_instruction, const std::string& second_answer) {
        return "[\n    {\n        \"instruction\": \"" + good + "\",\n        \"answer\": \"answer2\"\n    },\n"
               "    {\n        \"instruction\": \"" + second_instruction + "\",\n        \"answer\": \"" +
               second_answer + "\"\n    }\n]\n";
    };
    test::write_bytes(path, file(good, "answer1"));
    const auto docs = detail::load_arc(path);
    ASSERT_EQ(docs.size(), 2u);
    EXPECT_EQ(docs[0].requests[1].context, "Question: Q?\nAnswer:");
    EXPECT_EQ(docs[0].requests[1].continuation, " b");
    EXPECT_EQ(docs[0].gold, 1);

    test::write_bytes(path, file("Please choose the correct answer to the question: Q? a b", "answer1"));
    std::string msg = format_error_of([&] { detail::load_arc(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 6"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Answer1:"), std::string::npos) << msg;

    test::write_bytes(path, file(good, "answer3"));
    msg = format_error_of([&] { detail::load_arc(path); });
    EXPECT_NE(msg.find("line 6"), std::string::npos) << msg;
    EXPECT_NE(msg.find("answer3"), std::string::npos) << msg;

    const std::string missing_marker =
        "Please choose the correct answer to the question: Q?\\n\\nAnswer1: a b\\n\\nAnswer format: answer1/answer2";
    msg = format_error_of([&] {
        test::write_bytes(path, file(missing_marker, "answer1"));
        detail::load_arc(path);
    });
    EXPECT_NE(msg.find("Answer2:"), std::string::npos) << msg;

    test::write_bytes(path, "[\n  {\"instruction\": \"x\",\n  \"answer\": }\n]");
    msg = format_error_of([&] { detail::load_arc(path); });
    EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
}

TEST(ZeroShotTasks, HellaswagRecordErrorsNameTheLine) {
    TempDir dir;
    const std::string path = dir.file("hs.txt");
    const std::string record = "Label: A man waves. the man\n2\ne0\ne1\ne2\ne3\n";
    test::write_bytes(path, record + "Label: ctx\nthree\ne0\ne1\ne2\ne3\n");
    std::string msg = format_error_of([&] { detail::load_hellaswag(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 8"), std::string::npos) << msg;
    EXPECT_NE(msg.find("three"), std::string::npos) << msg;

    test::write_bytes(path, record + "Label: ctx\n1\ne0\n");
    msg = format_error_of([&] { detail::load_hellaswag(path); });
    EXPECT_NE(msg.find("line 7"), std::string::npos) << msg;

    test::write_bytes(path, record);
    const auto docs = detail::load_hellaswag(path);
    ASSERT_EQ(docs.size(), 1u);
    EXPECT_EQ(docs[0].requests[3].context, "Label: A man waves. The man");
    EXPECT_EQ(docs[0].requests[3].continuation, " e3");
    EXPECT_EQ(docs[0].gold, 2);
}

}  // namespace
}  // namespace saliq
