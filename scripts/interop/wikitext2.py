"""The text saliq scores, as the interop scripts read it: a file whole, or wiki.test.raw joined as saliq joins
WikiText-2 (Hugging Face's rows: blank lines -> "", other lines keep their newline; joined with "\n\n")."""


def read_text(path, wikitext2=False):
    text = open(path, encoding="utf-8").read()
    if wikitext2:
        rows = ["" if line.strip() == "" else line for line in text.splitlines(keepends=True)]
        text = "\n\n".join(rows)
    return text
