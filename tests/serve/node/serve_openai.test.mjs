// fp4kit serve driven by the official OpenAI Node SDK. The server is started by
// tests/cli/serve_openai_node.sh, which passes its address, the fp4kit binary and the data folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';

const baseURL = process.env.FP4KIT_SERVE_URL;
const binary = process.env.FP4KIT_BINARY;
const data = process.env.FP4KIT_TEST_DATA;
// A generous per-request limit: the CI machine runs the heavy suites beside this one (ctest bounds the whole test).
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'node-k3y', maxRetries: 0, timeout: 300_000 });
const model = 'tiny';

async function post(path, body) {
  const res = await fetch(`${baseURL}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer node-k3y' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  return res.json();
}

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

test('models lists the served model', async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => m.id), [model]);
});

test('completion, not streamed: usage equals the tokenizer counts', async () => {
  const prompt = 'The quick brown fox';
  const r = await client.completions.create({ model, prompt, max_tokens: 7, temperature: 0, ignore_eos: true });
  const counted = await post('/tokenize', { prompt });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.prompt_tokens, counted.count);
  assert.equal(r.usage.completion_tokens, 7);
  assert.equal(r.usage.total_tokens, counted.count + 7);
});

test('greedy completion equals fp4kit generate', async () => {
  const prompt = 'Hello world';
  const { tokens } = await post('/tokenize', { prompt });
  const out = execFileSync(binary, ['generate', `${data}/dsv4-tiny`, '--ids', tokens.join(' '), '--max-new-tokens', '10',
    '--ignore-eos', '--threads', '2'], { encoding: 'utf8' });
  const ids = out.trim().split('\n').pop().split(' ').map(Number);
  assert.equal(ids.length, 10);
  const expected = (await post('/detokenize', { tokens: ids })).prompt;
  const r = await client.completions.create({ model, prompt, max_tokens: 10, temperature: 0, ignore_eos: true });
  assert.equal(r.choices[0].text, expected);
});

test('completion, streamed: the chunks add up to the whole reply', async () => {
  const req = { model, prompt: 'Once upon a time', max_tokens: 12, temperature: 0.8, seed: 11 };
  const whole = await client.completions.create(req);
  const chunks = await collect(await client.completions.create({ ...req, stream: true }));
  const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
  assert.equal(text, whole.choices[0].text);
  const last = chunks[chunks.length - 1];
  assert.equal(last.choices[0].finish_reason, whole.choices[0].finish_reason);
  assert.deepEqual(last.usage, whole.usage);
});

test('chat, not streamed and streamed, with the thinking text apart', async () => {
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hello.' }];
  const req = { model, messages, max_tokens: 16, temperature: 0.7, seed: 3 };
  const whole = await client.chat.completions.create(req);
  const msg = whole.choices[0].message;
  assert.equal(msg.role, 'assistant');
  const counted = await post('/tokenize', { messages });
  assert.equal(whole.usage.prompt_tokens, counted.count);
  const chunks = await collect(await client.chat.completions.create({ ...req, stream: true }));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  const reasoning = chunks.map((c) => c.choices[0]?.delta?.reasoning_content ?? '').join('');
  assert.equal(content, msg.content);
  assert.equal(reasoning, msg.reasoning_content ?? '');
  assert.deepEqual(chunks[chunks.length - 1].usage, whole.usage);
  // Thinking off: the prompt ends in </think> instead of <think>, and there is no reasoning.
  const off = await client.chat.completions.create({ ...req, chat_template_kwargs: { thinking: false } });
  assert.equal(off.choices[0].message.reasoning_content, undefined);
  assert.equal(off.usage.prompt_tokens, whole.usage.prompt_tokens);
});

test('the same seed gives the same text, another seed another', async () => {
  const req = { model, prompt: 'Seeds:', max_tokens: 16, temperature: 1.0, seed: 1234, logprobs: 1 };
  const a = await client.completions.create(req);
  const b = await client.completions.create(req);
  const c = await client.completions.create({ ...req, seed: 4321 });
  assert.equal(a.choices[0].text, b.choices[0].text);
  assert.notDeepEqual(a.choices[0].logprobs.tokens, c.choices[0].logprobs.tokens);
  for (const lp of a.choices[0].logprobs.token_logprobs) assert.ok(Number.isFinite(lp) && lp <= 0, `logprob ${lp}`);
});

test('stop strings are not emitted, streamed or not', async () => {
  const req = { model, prompt: 'Hello world', max_tokens: 16, temperature: 0, ignore_eos: true, logprobs: 0 };
  const free = await client.completions.create(req);
  const text = free.choices[0].text;
  const stop = free.choices[0].logprobs.tokens.slice(2).find((t) => /^ ?[a-z]{2,}$/.test(t));
  assert.ok(stop, `no plain word among the tokens of ${JSON.stringify(text)}`);
  const expected = text.slice(0, text.indexOf(stop));
  const stopped = await client.completions.create({ ...req, stop: [stop] });
  assert.equal(stopped.choices[0].text, expected);
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  const chunks = await collect(await client.completions.create({ ...req, stop: [stop], stream: true }));
  assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), expected);
});

test('a tool conversation as the SDK sends it: tools, calls and results go into the prompt', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
  const messages = [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function',
      function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: 'Sunny, 21 C' },
  ];
  const req = { model, messages, tools, max_tokens: 8, temperature: 0 };
  const reply = await client.chat.completions.create(req);
  assert.equal(reply.choices[0].message.role, 'assistant');
  assert.ok(['length', 'stop', 'tool_calls'].includes(reply.choices[0].finish_reason), reply.choices[0].finish_reason);
  const withTools = await post('/tokenize', { messages, tools });
  const without = await post('/tokenize', { messages });
  assert.equal(reply.usage.prompt_tokens, withTools.count);
  assert.ok(withTools.count > without.count + 50, `the tools section adds tokens: ${withTools.count} vs ${without.count}`);
  const none = await post('/tokenize', { messages, tools, tool_choice: 'none' });
  assert.equal(none.count, without.count);
  await assert.rejects(client.chat.completions.create({ ...req, tool_choice: 'required' }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.param, 'tool_choice');
    return true;
  });
});

test('errors arrive as the SDK error classes with OpenAI fields', async () => {
  await assert.rejects(client.completions.create({ model: 'nope', prompt: 'x' }), (e) => e instanceof OpenAI.NotFoundError);
  await assert.rejects(client.completions.create({ model, prompt: 'x', n: 2 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError);
    assert.equal(e.param, 'n');
    assert.equal(e.type, 'invalid_request_error');
    return true;
  });
  const wrongKey = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(wrongKey.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
});
