"""Writes lm-evaluation-harness task configs over saliq's local copies of PIQA, ARC-Easy/Challenge and BoolQ
(converted to the Hugging Face columns the official tasks read; the prompts are the official tasks'), so lm-eval
scores the same items offline. Usage: lm_eval_tasks.py DATA_DIR OUT_DIR"""
import json, os, sys

data, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
T = data + "/tasks"


def write_jsonl(name, rows):
    path = os.path.join(out, name + ".jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


labels = [int(x) for x in open(T + "/piqa/valid-labels.lst").read().split()]
piqa = [dict(json.loads(l), label=labels[i]) for i, l in enumerate(open(T + "/piqa/valid.jsonl", encoding="utf-8"))]
boolq = [json.loads(l) for l in open(T + "/boolq/dev.jsonl", encoding="utf-8")]
for r in boolq:
    r["label"] = int(bool(r["answer"]))


def arc(file):
    rows = []
    prefix, first, fmt = "Please choose the correct answer to the question: ", "\n\nAnswer1: ", "\n\nAnswer format: "
    for item in json.load(open(file, encoding="utf-8")):
        ins = item["instruction"]
        assert ins.startswith(prefix)
        stem = ins[len(prefix):ins.index(first)]
        body = ins[ins.index(first) + 2:ins.rindex(fmt)]
        choices, k = [], 1
        while True:
            tag = "Answer%d: " % k
            nxt = "Answer%d: " % (k + 1)
            start = body.index(tag) + len(tag)
            end = body.find(" " + nxt, start)
            if end < 0:
                choices.append(body[start:])
                break
            choices.append(body[start:end])
            k += 1
        labels = [str(i + 1) for i in range(len(choices))]
        rows.append({"question": stem, "choices": {"text": choices, "label": labels},
                     "answerKey": item["answer"].replace("answer", "")})
    return rows


tasks = {
    "piqa_local": (write_jsonl("piqa", piqa), 'doc_to_text: "Question: {{goal}}\\nAnswer:"\ndoc_to_target: label\n'
                   'doc_to_choice: "{{[sol1, sol2]}}"\n', True),
    "arc_easy_local": (write_jsonl("arc_easy", arc(T + "/arc/ARC-Easy_test.json")),
                       'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
                       'doc_to_target: "{{choices.label.index(answerKey)}}"\ndoc_to_choice: "{{choices.text}}"\n', True),
    "arc_challenge_local": (write_jsonl("arc_challenge", arc(T + "/arc/ARC-Challenge_test.json")),
                            'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
                            'doc_to_target: "{{choices.label.index(answerKey)}}"\ndoc_to_choice: "{{choices.text}}"\n', True),
    "boolq_local": (write_jsonl("boolq", boolq), 'doc_to_text: "{{passage}}\\nQuestion: {{question}}?\\nAnswer:"\n'
                    'doc_to_target: label\ndoc_to_choice: ["no", "yes"]\n', False),
}
for name, (path, prompt, norm) in tasks.items():
    metrics = "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    if norm:
        metrics += "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
    with open(os.path.join(out, name + ".yaml"), "w") as f:
        f.write("task: %s\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: %s\noutput_type: multiple_choice\n"
                "test_split: test\n%smetric_list:\n%smetadata:\n  version: 1.0\n" % (name, path, prompt, metrics))
print(" ".join(tasks))
