#!/usr/bin/env python3
"""Reference encodings for fp4kit's byte-level BPE tokenizer, made with Hugging Face `tokenizers`.

Builds two small tokenizers in the tokenizer.json format and records how `tokenizers` encodes a list of
hand-picked and seeded random strings with them:

  deepseek_style.tokenizer.json  DeepSeek V3's pipeline: no normalizer, a Sequence of three Split
                                 pre-tokenizers (digits in groups of 1..3; runs of CJK ideographs and
                                 kana; words, punctuation and whitespace) and ByteLevel without its regex;
                                 ByteLevel decoder; BOS template; added tokens (special and not, one
                                 with lstrip, one with rstrip).
  gpt2_style.tokenizer.json      GPT-2's pipeline: a plain ByteLevel pre-tokenizer with its own regex.

Both BPE models are trained here on a short text, so that the merges are real merges by rank.

expected.json holds, per string: the pre-tokenized pieces and the ids (without and, for the DeepSeek-style
tokenizer, with special tokens), plus the ids of the GPT-2-style tokenizer with add_prefix_space switched on.

With --cpp-table FILE it also writes the Unicode class table of fp4kit's pre-tokenizer scanner
(src/calib/unicode_tables.cpp), taken from the regex engine `tokenizers` itself uses (Oniguruma): for every
code point, which of \\p{L}, \\p{M}, \\p{N}, \\p{P}, \\p{S} and \\s match it. --from-unicodedata takes the
classes from Python's unicodedata instead (no `tokenizers` needed; the Unicode version may differ).

Usage: tokenizer_reference.py OUT_DIR [--cpp-table FILE] [--from-unicodedata]
"""
import json
import os
import random
import sys

DEEPSEEK_DIGITS = r"\p{N}{1,3}"
DEEPSEEK_CJK = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
DEEPSEEK_WORDS = ('[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+'
                  '|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+'
                  '| ?[\\p{P}\\p{S}]+[\r\n]*'
                  '|\\s*[\r\n]+'
                  '|\\s+(?!\\S)'
                  '|\\s+')

BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
PAD = "<\uff5c\u2581pad\u2581\uff5c>"

TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. It's a sentence that uses every letter; we'll use it again.
Calibration needs text that looks like what the model will read: prose, code, numbers and lists.
def tokenize(text):
    return [piece for piece in text.split() if piece]
for (int i = 0; i < n; ++i) { total += values[i] * 2; }
1 + 1 = 2, 12 * 12 = 144, 3.14159 and 2.71828 are famous; 1,000,000 is a million.
- first item
- second item: 42 apples
- third item (optional)
中文分词需要处理汉字序列。我们在这里写一些中文句子，用于训练。
日本語のテキストも少し入れます。ひらがなとカタカナを使います。
Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München!
Le renard brun rapide saute par-dessus le chien paresseux. Ça va très bien.
Быстрая коричневая лиса прыгает через ленивую собаку.
The the the and and and of of of to to to in in in is is is that that that
""" * 3


def hand_picked():
    return [
        "", "Hello world", "Hello, world! It's 2024.", "  leading and trailing  ", "tabs\tand\nnewlines\r\n\r\nend",
        "12345678", "1234567890123", "3.14159 + 2.71828 = 5.85987", "x = f(a, b) // comment",
        "def foo(bar):\n    return bar**2\n", "\u4e2d\u6587\u5206\u8bcd\u6d4b\u8bd5\uff0c\u5305\u542b\u6807\u70b9\u3002",
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3002",
        "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
        "Gr\u00fc\u00dfe aus M\u00fcnchen \u2013 na\u00efve caf\u00e9", "emoji \U0001F600\U0001F44D\U0001F3FD family \U0001F468\u200d\U0001F469\u200d\U0001F467",
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u0939\u093f\u0928\u094d\u0926\u0940 \u092a\u093e\u0920",
        BOS + "Hello" + EOS, "a<think>b</think>c", "  <think>  x", "say <|mask|> now", "[R]   tail", "x [R]\n\ny",
        "<\uff5cUser\uff5c>hi<\uff5cAssistant\uff5c>", "   ", "\n\n\n", " \n ", "a \n\tb", "line1\r\nline2\rline3",
        "x\u00a0y\u2003z\u3000w", "1,000,000 and \u00bd \u2153 \u00b2\u00b3", "don't we'll they're I'M", "...!!!???",
        "$100 @user #tag .NET 'quoted'", "\u0301combining e\u0301 a\u0308", "control\x00\x01chars\x7f",
        "\uff26\uff35\uff2c\uff2c width \uff21\uff22\uff23\uff11\uff12\uff13", "\U0001D518\U0001D52B math \U0001D7D9\U0001D7DA",
        "\u216b \u2460 \u0661\u0662\u0663", "word\n", "word  \n  next", "tail spaces   ", "\t\t\tx", "a\u200bb\u2028c\u0085d",
        "private \ue000 \U0010FFFF nonchar \uffff", "x\x1cy\x1fz", "abc123def456ghi", "\u4e00\u9fa5\u9fa6\u3040\u30ff\u31f0",
        "The quick brown fox jumps over the lazy dog. " * 4,
    ]


def random_strings(count):
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "    ", "\t\n\r", "\u00e9\u00fc\u00df\u00f1\u00c0\u00bf\u00a1\u00b0", "\u00a0\u2003\u3000\u2009\u0085\u2028\u000b\u000c",
        "\u0301\u0308\u0327", "\u4e2d\u6587\u5b57\u6f22\u8a9e\u4e00\u9fa5", "\u304b\u306a\u30ab\u30ca\u30fc\u3063", "\ud55c\uae00",
        "\u0436\u0438\u0437\u043d\u044c", "\u0639\u0631\u0628\u064a", "\u0928\u092e\u0938\u094d\u0924\u0947",
        "\U0001F600\U0001F44D\U0001F3FD\u200d\U0001F468", "\u20ac\u00a3\u00a5\u00a9\u00ae\u00b1\u00d7\u00f7\u2192\u2211\u221e",
        "\u00bd\u00b2\u2462\u216b\u0663", "\uff21\uff22\uff11\uff12\uff01\uff0c\u3002", "\ue000\uffff\U0001D518\U0001D7D9",
        "\x00\x07\x1c\x7f", "'s't're've'm'll'd", "<think></think>" + BOS + "<|mask|>[R]",
    ]
    rng = random.Random(20240607)
    out = []
    for _ in range(count):
        n = rng.randint(1, 30)
        s = ""
        for _ in range(n):
            pool = rng.choice(pools)
            if pool.startswith("<think>") or pool.startswith("'s"):
                start = rng.randrange(len(pool))
                s += pool[start:start + rng.randint(1, 12)]
            else:
                s += rng.choice(pool) * rng.choice([1, 1, 1, 2, 3])
        out.append(s)
    return out


def build_deepseek_style(tokenizers):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(DEEPSEEK_DIGITS), "isolated", invert=False),
        pre_tokenizers.Split(Regex(DEEPSEEK_CJK), "isolated", invert=False),
        pre_tokenizers.Split(Regex(DEEPSEEK_WORDS), "isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=2, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer)
    tok.add_special_tokens([AddedToken("<|mask|>", lstrip=True, rstrip=False, normalized=False, special=True)])
    tok.add_tokens([
        AddedToken("<think>", normalized=False, special=False),
        AddedToken("</think>", normalized=False, special=False),
        AddedToken("<\uff5cUser\uff5c>", normalized=True, special=False),
        AddedToken("<\uff5cAssistant\uff5c>", normalized=True, special=False),
        AddedToken("[R]", rstrip=True, normalized=False, special=False),
    ])
    tok.post_processor = processors.TemplateProcessing(
        single=BOS + " $A", pair=BOS + " $A " + BOS + " $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return tok


def build_gpt2_style(tokenizers):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=2, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer)
    return tok


def pieces(tok, text):
    return [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]


def write_references(out_dir):
    import tokenizers
    from tokenizers import Tokenizer
    deepseek = build_deepseek_style(tokenizers)
    gpt2 = build_gpt2_style(tokenizers)
    deepseek.save(os.path.join(out_dir, "deepseek_style.tokenizer.json"), pretty=False)
    gpt2.save(os.path.join(out_dir, "gpt2_style.tokenizer.json"), pretty=False)
    gpt2_json = json.loads(gpt2.to_str())
    gpt2_json["pre_tokenizer"]["add_prefix_space"] = True
    gpt2_prefix = Tokenizer.from_str(json.dumps(gpt2_json))

    cases = []
    for text in hand_picked() + random_strings(80):
        cases.append({
            "text": text,
            "deepseek_pieces": pieces(deepseek, text),
            "deepseek_ids": deepseek.encode(text, add_special_tokens=False).ids,
            "deepseek_ids_special": deepseek.encode(text, add_special_tokens=True).ids,
            "deepseek_decoded": deepseek.decode(deepseek.encode(text, add_special_tokens=False).ids,
                                                skip_special_tokens=False),
            "gpt2_pieces": pieces(gpt2, text),
            "gpt2_ids": gpt2.encode(text, add_special_tokens=False).ids,
            "gpt2_prefix_space_ids": gpt2_prefix.encode(text, add_special_tokens=False).ids,
        })
    doc = {"made_with": "tokenizers " + tokenizers.__version__ + ", scripts/reference/tokenizer_reference.py",
           "cases": cases}
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print("cases:", len(cases), "tokenizers", tokenizers.__version__)


CLASSES = [("Letter", r"\p{L}"), ("Mark", r"\p{M}"), ("Number", r"\p{N}"), ("Punctuation", r"\p{P}"),
           ("Symbol", r"\p{S}")]


def all_code_points():
    return [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def members_by_regex(regex):
    """Code points the regex matches, as Oniguruma inside `tokenizers` decides."""
    from tokenizers import Regex, pre_tokenizers
    split = pre_tokenizers.Split(Regex(regex), "removed", invert=False)
    text = "".join(chr(cp) for cp in all_code_points())
    kept = set()
    for piece, _ in split.pre_tokenize_str(text):
        kept.update(ord(c) for c in piece)
    return {cp for cp in all_code_points() if cp not in kept}


def classes_from_tokenizers():
    import tokenizers
    cls = {}
    for index, (_, regex) in enumerate(CLASSES, start=1):
        for cp in members_by_regex(regex):
            if cp in cls:
                raise SystemExit(f"U+{cp:04X} is in two classes")
            cls[cp] = index
    return cls, sorted(members_by_regex(r"\s")), "Oniguruma in tokenizers " + tokenizers.__version__


def classes_from_unicodedata():
    import unicodedata
    letters = {"L": 1, "M": 2, "N": 3, "P": 4, "S": 5}
    cls = {}
    for cp in all_code_points():
        c = letters.get(unicodedata.category(chr(cp))[0])
        if c:
            cls[cp] = c
    space = [cp for cp in range(0x110000) if cp in (0x9, 0xA, 0xB, 0xC, 0xD, 0x85, 0x2028, 0x2029)
             or unicodedata.category(chr(cp)) == "Zs"]
    return cls, space, "Python unicodedata " + unicodedata.unidata_version


def write_cpp_table(path, cls, space, source):
    runs = []
    prev = None
    for cp in range(0x110000):
        c = cls.get(cp, 0)
        if 0xD800 <= cp <= 0xDFFF:
            c = 0
        if c != prev:
            runs.append((cp << 3) | c)
            prev = c
    lines = [
        "// Generated by scripts/reference/tokenizer_reference.py --cpp-table from " + source + ".",
        "// Do not edit: regenerate. Unicode classes of the pre-tokenizer regexes (\\p{L} \\p{M} \\p{N} \\p{P} \\p{S} \\s).",
        '#include "calib/unicode_tables.h"',
        "",
        "namespace fp4kit::calib::unicode_tables {",
        "",
        "const uint32_t kClassRuns[] = {",
    ]
    for i in range(0, len(runs), 8):
        lines.append("    " + ", ".join(f"0x{r:07x}" for r in runs[i:i + 8]) + ",")
    lines += ["};", "const size_t kClassRunCount = sizeof(kClassRuns) / sizeof(kClassRuns[0]);", "",
              "const uint32_t kWhitespace[] = {"]
    for i in range(0, len(space), 8):
        lines.append("    " + ", ".join(f"0x{cp:04x}" for cp in space[i:i + 8]) + ",")
    lines += ["};", "const size_t kWhitespaceCount = sizeof(kWhitespace) / sizeof(kWhitespace[0]);", "",
              "}  // namespace fp4kit::calib::unicode_tables", ""]
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(lines))
    print("table:", len(runs), "runs,", len(space), "whitespace code points, from", source)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out_dir = argv[1]
    table = argv[argv.index("--cpp-table") + 1] if "--cpp-table" in argv else None
    from_unicodedata = "--from-unicodedata" in argv
    os.makedirs(out_dir, exist_ok=True)
    if not from_unicodedata:
        write_references(out_dir)
    if table:
        cls, space, source = classes_from_unicodedata() if from_unicodedata else classes_from_tokenizers()
        write_cpp_table(table, cls, space, source)


if __name__ == "__main__":
    main(sys.argv)
