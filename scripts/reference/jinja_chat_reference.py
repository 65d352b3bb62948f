#!/usr/bin/env python3
"""Chat prompts rendered by Jinja2 through real chat templates, for fp4kit's Jinja engine test.

Each template of TEMPLATE_DIR (tests/data/serve/templates/*.jinja) renders a fixed list of
conversations (system prompts, several turns, assistant turns with reasoning or a </think> in their
content, tool schemas, tool calls with and without content, tool results, text-part content, a
developer message), each with thinking on and off. The environment is the one transformers'
apply_chat_template compiles templates in (_compile_jinja_template of
src/transformers/utils/chat_template_utils.py): ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True) with the loopcontrols extension, its tojson filter (json.dumps with
ensure_ascii=False and the indent, separators and sort_keys arguments) and its raise_exception
global (a TemplateError). strftime_now is not defined here: a template that would print the date
is given `date_string` instead, as a chat_template_kwargs key.

The variables are those fp4kit serve passes (src/serve/jinja_chat_prompt.h): the messages as sent
("developer" read as "system", text parts joined, a missing content as None), tools (None without),
add_generation_prompt=True, bos_token and eos_token (DeepSeek's, or the template's family's), the
request's chat_template_kwargs, and thinking and enable_thinking set to the request's mode.

Output (JSON): [{"template", "name", "thinking", "request": {messages, tools?, chat_template_kwargs},
"bos_token", "eos_token", "prompt": "..."}, or instead of "prompt" "error": the message of the
template's raise_exception, or "failure": the Python error of a template that fails on the input}, ...]

Usage: jinja_chat_reference.py TEMPLATE_DIR OUT.json   (jinja2 3.1)
"""
import copy
import json
import pathlib
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web for \"text\" (quotes, ünïcode).",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}}}}


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


CONVERSATIONS = {
    "one_user": {"messages": [{"role": "user", "content": "Hello!"}]},
    "system_and_user": {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"}]},
    "two_systems_multi_turn": {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?", "reasoning_content": "The user greets me."},
        {"role": "user", "content": "Name a color."}]},
    "assistant_content_with_think": {"messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "thinking about a</think>b"},
        {"role": "user", "content": "  c with spaces  \n"}]},
    "text_parts_and_unicode": {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Système: "}, {"type": "text", "text": "réponds « court »."}]},
        {"role": "user", "content": [{"type": "text", "text": "你好, 'quotes' and \"double\"\n\tnew line"}]}]},
    "tool_call_and_result": {"tools": [WEATHER], "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call("call_1", "get_weather", {"city": "Paris"})]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21, \"unit\": \"c\"}"}]},
    "tool_round_then_answer": {"tools": [WEATHER, SEARCH], "messages": [
        {"role": "user", "content": "Weather in Paris and news?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            call("a", "get_weather", {"city": "Paris", "unit": "c"}), call("b", "search", {"query": "news", "limit": 3})]},
        {"role": "tool", "tool_call_id": "a", "content": "21 C"},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "headline one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "It is 21 C; headline one."},
        {"role": "user", "content": "Thanks!"}]},
    "tools_without_calls": {"tools": [WEATHER], "messages": [
        {"role": "user", "content": "Just say hi."}]},
    "extra_template_kwargs": {"chat_template_kwargs": {"custom_flag": True}, "messages": [
        {"role": "user", "content": "x"}]},
}

# Llama 3.1 prints today's date unless given one.
TEMPLATE_KWARGS = {"llama31_json_vllm.jinja": {"date_string": "26 Jul 2024"}}
# The special tokens of each template's model family.
TOKENS = {"llama31_json_vllm.jinja": ("<|begin_of_text|>", "<|eot_id|>"), "chatml_vllm.jinja": ("", "<|im_end|>")}
DEEPSEEK_TOKENS = ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>")


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def template_messages(messages):
    """The messages as fp4kit serve hands them to a template."""
    out = []
    for m in copy.deepcopy(messages):
        if m["role"] == "developer":
            m["role"] = "system"
        content = m.get("content")
        if isinstance(content, list):
            m["content"] = ("\n\n" if m["role"] == "tool" else "").join(p["text"] for p in content)
        elif content is None:
            m["content"] = None
        out.append(m)
    return out


def main():
    template_dir, out_path = pathlib.Path(sys.argv[1]), sys.argv[2]
    env = environment()
    cases = []
    for path in sorted(template_dir.glob("*.jinja")):
        template = env.from_string(path.read_text(encoding="utf-8"))
        bos, eos = TOKENS.get(path.name, DEEPSEEK_TOKENS)
        for name, conversation in CONVERSATIONS.items():
            for thinking in (True, False):
                kwargs = dict(conversation.get("chat_template_kwargs", {}))
                kwargs.update(TEMPLATE_KWARGS.get(path.name, {}))
                request = {"messages": conversation["messages"], "chat_template_kwargs": dict(kwargs, thinking=thinking)}
                if "tools" in conversation:
                    request["tools"] = conversation["tools"]
                variables = dict(kwargs, thinking=thinking, enable_thinking=thinking,
                                 messages=template_messages(conversation["messages"]),
                                 tools=copy.deepcopy(conversation.get("tools")), add_generation_prompt=True,
                                 bos_token=bos, eos_token=eos)
                case = {"template": path.name, "name": name, "thinking": thinking, "request": request,
                        "bos_token": bos, "eos_token": eos}
                try:
                    case["prompt"] = template.render(**variables)
                except jinja2.exceptions.TemplateError as e:  # raise_exception
                    case["error"] = str(e)
                except Exception as e:  # the template fails on this input (a type error, say)
                    case["failure"] = f"{type(e).__name__}: {e}"
                cases.append(case)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} refused, {sum('failure' in c for c in cases)} failed, from {len(list(template_dir.glob('*.jinja')))} templates")


if __name__ == "__main__":
    main()
