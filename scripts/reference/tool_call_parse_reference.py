#!/usr/bin/env python3
"""DeepSeek V4 completions with tool calls, read back by DeepSeek's reference encoder, for fp4kit's
tool-call parser test.

Imports encoding/encoding_dsv4.py (shipped in the DeepSeek-V4 model repositories; standard library
only) from the path given and runs parse_message_from_completion_text() on a fixed list of crafted
model outputs in chat mode: calls with string and JSON parameters, several calls, a call without
parameters, text before the calls, non-ASCII text, no calls, and malformed blocks (which the encoder
refuses). Writes:

  [{"name", "completion": "...", "content": "...", "tool_calls": [{"name", "arguments"}], "error": bool}, ...]

Usage: tool_call_parse_reference.py PATH/TO/encoding_dsv4.py OUT.json
"""
import sys

from deepseek_encoder_io import load_encoder, write_cases

D = "｜DSML｜"
EOS = "<｜end▁of▁sentence｜>"


def block(*invokes):
    return "\n\n<" + D + "tool_calls>\n" + "\n".join(invokes) + "\n</" + D + "tool_calls>"


def invoke(name, *params):
    body = "\n".join('<{d}parameter name="{k}" string="{s}">{v}</{d}parameter>'.format(d=D, k=k, s=s, v=v)
                     for k, s, v in params)
    return '<{d}invoke name="{n}">\n{b}\n</{d}invoke>'.format(d=D, n=name, b=body)


COMPLETIONS = {
    "one_call": block(invoke("get_weather", ("location", "true", "Paris"), ("days", "false", "3"))) + EOS,
    "text_then_two_calls": "Let me check both cities." + block(
        invoke("get_weather", ("location", "true", "Tokyo"), ("unit", "true", "celsius")),
        invoke("search", ("q", "true", "line one\nline \"two\" </tag>"),
               ("filters", "false", '{"lang": ["en", "fr"], "max": 2.5, "safe": true, "x": null}'))) + EOS,
    "no_parameters": block('<{d}invoke name="now">\n</{d}invoke>'.format(d=D)) + EOS,
    "non_ascii": "Je cherche… 東京" + block(invoke("search", ("q", "true", "météo 東京"))) + EOS,
    "no_calls": "Just an answer, no tools.\n\nWith a blank line." + EOS,
    "empty_string_value": block(invoke("search", ("q", "true", ""))) + EOS,
    "malformed_missing_newline": "Hi\n\n<" + D + "tool_calls><" + D + 'invoke name="f">\n</' + D + "invoke>\n</" + D + "tool_calls>" + EOS,
    "malformed_bad_flag": block(invoke("f", ("a", "maybe", "1"))) + EOS,
    "malformed_duplicate_parameter": block(invoke("f", ("a", "true", "1"), ("a", "true", "2"))) + EOS,
}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    encoder = load_encoder(sys.argv[1])
    cases = []
    for name, completion in COMPLETIONS.items():
        case = {"name": name, "completion": completion}
        try:
            parsed = encoder.parse_message_from_completion_text(completion, thinking_mode="chat")
            case["content"] = parsed["content"]
            case["tool_calls"] = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                                  for c in parsed["tool_calls"]]
            case["error"] = False
        except (ValueError, AssertionError):
            case["error"] = True
        cases.append(case)
    write_cases(cases, sys.argv[2])


if __name__ == "__main__":
    main()
