// A bounded load test of `fp4kit serve`: C concurrent clients send R streamed completions in total
// (plain fetch, no SDK) and measure, per request, the time to the first text chunk (TTFT) and the
// tokens it generated. Prints one table row and writes JSON; exits 1 on any error or non-200 reply.
// The server's RSS (from /proc/PID/status) is sampled before, during and after the run.
//   node bench/serve_load.mjs --url URL --pid PID --clients C --requests R --max-tokens N [--json FILE]
import { readFileSync, writeFileSync } from 'node:fs';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, a, i, all) =>
  a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs, []));
const url = args.url, pid = args.pid;
const clients = Number(args.clients ?? 4), requests = Number(args.requests ?? 32), maxTokens = Number(args['max-tokens'] ?? 32);

const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function one(i) {
  const start = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: `Request ${i}: tell a story`, max_tokens: maxTokens, temperature: 0.8, seed: i,
      ignore_eos: true, stream: true }),
  });
  if (res.status !== 200) throw new Error(`request ${i}: HTTP ${res.status} ${await res.text()}`);
  let ttft = null, buffer = '', usage = null;
  const decoder = new TextDecoder();
  for await (const bytes of res.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith('data: ')) throw new Error(`request ${i}: bad event ${event}`);
      if (event === 'data: [DONE]') continue;
      const chunk = JSON.parse(event.slice(6));
      if (chunk.error) throw new Error(`request ${i}: ${chunk.error.message}`);
      if (ttft === null) ttft = performance.now() - start;
      if (chunk.usage) usage = chunk.usage;
    }
  }
  if (!usage || usage.completion_tokens !== maxTokens) throw new Error(`request ${i}: usage ${JSON.stringify(usage)}`);
  return { ttft, total: performance.now() - start, tokens: usage.completion_tokens };
}

const rssBefore = rssKb();
let rssPeak = rssBefore, next = 0;
const results = [];
const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssKb()); }, 50);
const started = performance.now();
await Promise.all(Array.from({ length: clients }, async () => {
  while (next < requests) results.push(await one(next++));
}));
const seconds = (performance.now() - started) / 1000;
clearInterval(sampler);
const rssAfter = rssKb();
const tokens = results.reduce((s, r) => s + r.tokens, 0);
const row = {
  clients, requests, max_tokens: maxTokens, errors: 0, seconds,
  ttft_p50_ms: percentile(results.map((r) => r.ttft), 50), ttft_p99_ms: percentile(results.map((r) => r.ttft), 99),
  tokens_per_second: tokens / seconds, rss_before_mb: rssBefore / 1024, rss_peak_mb: rssPeak / 1024, rss_after_mb: rssAfter / 1024,
};
console.log(`| ${clients} | ${requests} | ${maxTokens} | 0 | ${row.ttft_p50_ms.toFixed(1)} | ${row.ttft_p99_ms.toFixed(1)} | ` +
  `${row.tokens_per_second.toFixed(0)} | ${row.rss_before_mb.toFixed(1)} / ${row.rss_peak_mb.toFixed(1)} / ${row.rss_after_mb.toFixed(1)} |`);
if (args.json) writeFileSync(args.json, JSON.stringify(row, null, 1));
