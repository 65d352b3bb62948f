#!/usr/bin/env python3
"""DeepSeek V4 chat prompts rendered by DeepSeek's reference encoder, for fp4kit's chat template test.

DeepSeek ships the encoder as encoding/encoding_dsv4.py in the DeepSeek-V4 model repositories (it needs
only the Python standard library). This script imports it from the path given, renders a fixed list of
conversations (system prompt, one and several turns, consecutive user messages, earlier assistant turns
with reasoning; tool schemas, assistant turns with tool calls, tool results, several results out of
call order) in both modes, and writes what encode_messages() returns:

  [{"name", "thinking": bool, "messages": [...], "tools": [...] (when any), "prompt": "..."}, ...]

"messages" and "tools" are as an OpenAI client sends them (tools at the request's top level, "function"
objects inside). They reach the encoder the way fp4kit serve passes them: the tools go on the first
message when it is a system message (as DeepSeek's own test_encoding_dsv4.py does), else on an empty
system message put first (as vLLM's DeepSeek V4 tokenizer does).

Usage: chat_prompts_reference.py PATH/TO/encoding_dsv4.py OUT.json
"""
import sys

from deepseek_encoder_io import load_encoder, write_cases

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

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["location"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {"name": "search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
}
NO_PARAMS = {"type": "function", "function": {"name": "now", "description": "Heure actuelle, 現在"}}

TOOL_CONVERSATIONS = {
    "tools_first_turn": ([WEATHER, SEARCH], [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Weather in Paris?"},
    ]),
    "tools_without_system": ([NO_PARAMS], [{"role": "user", "content": "What time is it?"}]),
    "tool_call_and_result": ([WEATHER], [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Tokyo for 3 days?"},
        {"role": "assistant", "content": None, "reasoning_content": "I need the weather.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\", \"days\": 3}"}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather",
                          "arguments": "{\"location\": \"Tokyo\", \"unit\": \"celsius\", \"days\": 3, \"extra\": {\"a\": [1, 2.5, true, null], \"b\": \"x\\ny\"}}"}},
        ]},
        # Results out of call order: the encoder puts them back in the order of the calls.
        {"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\": 18}"},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21°C"},
    ]),
    "multi_round_tools": ([WEATHER, SEARCH], [
        {"role": "user", "content": "Find news, then the weather."},
        {"role": "assistant", "content": "Let me search.", "reasoning_content": "Search first.", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"news\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "a", "content": "Nothing new."},
        {"role": "user", "content": "And the weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": "not json"}},
        ]},
        {"role": "tool", "tool_call_id": "b", "content": "Snow."},
        {"role": "assistant", "content": "It snows in Oslo.", "reasoning_content": "Done."},
        {"role": "user", "content": "Thanks!"},
    ]),
    # Tool messages without tools in the request: no tools section, earlier reasoning dropped.
    "tool_history_without_tools": ([], [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None, "reasoning_content": "Call it.", "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "x", "content": "12:00"},
    ]),
}


def encoder_messages(messages, tools):
    """The conversation as fp4kit serve hands it to the encoder."""
    messages = [dict(m) for m in messages]
    if tools:
        if messages[0]["role"] == "system":
            messages[0]["tools"] = tools
        else:
            messages.insert(0, {"role": "system", "content": "", "tools": tools})
    return messages


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    encoder = load_encoder(sys.argv[1])
    cases = []
    for name, messages in CONVERSATIONS.items():
        for thinking in (False, True):
            prompt = encoder.encode_messages(messages, thinking_mode="thinking" if thinking else "chat")
            cases.append({"name": name, "thinking": thinking, "messages": messages, "prompt": prompt})
    for name, (tools, messages) in TOOL_CONVERSATIONS.items():
        for thinking in (False, True):
            prompt = encoder.encode_messages(encoder_messages(messages, tools),
                                             thinking_mode="thinking" if thinking else "chat")
            case = {"name": name, "thinking": thinking, "messages": messages, "prompt": prompt}
            if tools:
                case["tools"] = tools
            cases.append(case)
    write_cases(cases, sys.argv[2])


if __name__ == "__main__":
    main()
