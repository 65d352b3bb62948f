#!/usr/bin/env python3
"""DeepSeek V4 chat prompts rendered by DeepSeek's reference encoder, for fp4kit's chat template test.

DeepSeek ships the encoder as encoding/encoding_dsv4.py in the DeepSeek-V4 model repositories (it needs
only the Python standard library). This script imports it from the path given, renders a fixed list of
conversations (system prompt, one and several turns, consecutive user messages, earlier assistant turns
with reasoning) in both modes, and writes what encode_messages() returns:

  [{"name", "thinking": bool, "messages": [...], "prompt": "..."}, ...]

Usage: chat_prompts_reference.py PATH/TO/encoding_dsv4.py OUT.json
"""
import importlib.util
import json
import sys

CONVERSATIONS = {
    "one_user": [{"role": "user", "content": "Hello!"}],
    "system_and_user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
    ],
    "multi_turn": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?", "reasoning_content": "The user greets me."},
        {"role": "user", "content": "Name a color."},
    ],
    "three_turns": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "reasoning_content": "r1"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
        {"role": "user", "content": "e"},
    ],
    "consecutive_users": [
        {"role": "user", "content": "First part."},
        {"role": "user", "content": "Second part."},
    ],
    "unicode_and_newlines": [
        {"role": "system", "content": "Réponds en français.\n"},
        {"role": "user", "content": "  Ça va ? 你好\n\n"},
    ],
    "empty_contents": [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
    ],
}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    spec = importlib.util.spec_from_file_location("encoding_dsv4", sys.argv[1])
    encoder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(encoder)
    cases = []
    for name, messages in CONVERSATIONS.items():
        for thinking in (False, True):
            prompt = encoder.encode_messages(messages, thinking_mode="thinking" if thinking else "chat")
            cases.append({"name": name, "thinking": thinking, "messages": messages, "prompt": prompt})
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
