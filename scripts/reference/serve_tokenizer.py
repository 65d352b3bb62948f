#!/usr/bin/env python3
"""The tokenizer of the `fp4kit serve` tests: tests/data/serve/tokenizer.json.

The tiny V4 checkpoint (tests/data/dsv4-tiny, vocab_size 1024) ships no tokenizer. This one is
tests/data/tokenizer/deepseek_style.tokenizer.json (DeepSeek's pipeline, with BOS 0 and EOS 1 as the
tiny config has them and the V4 chat tokens <｜User｜>, <｜Assistant｜>, <think>, </think>) with its
BPE vocabulary filled up to 1024 ids, so that every id the tiny model can produce has a text. The
extra entries are made-up syllable words with a leading space (" bako"); no merge produces them, so
encoding is unchanged and only decoding sees them.

Usage: serve_tokenizer.py SOURCE_TOKENIZER_JSON OUT_JSON
"""
import itertools
import json
import sys

VOCAB_SIZE = 1024


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    used = set(vocab.values()) | {t["id"] for t in tok["added_tokens"]}
    free = [i for i in range(VOCAB_SIZE) if i not in used]
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words = ("\u0120" + a + b for a, b in itertools.product(syllables, repeat=2))
    for i, w in zip(free, (w for w in words if w not in vocab)):
        vocab[w] = i
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
