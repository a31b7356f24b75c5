// ollama-js (the official Ollama client for JavaScript) against a running chatd.
// Usage: node ollama_js.mjs <operation> '<json arguments>'; prints one JSON result.
// Operations: tools (a two-turn tool conversation, turn one streamed when args.stream),
// list, show, ps, embed (and the legacy embeddings).
import { Ollama } from "ollama";

const [op, raw] = process.argv.slice(2);
const args = JSON.parse(raw);
const client = new Ollama({ host: args.url,
                            headers: { Authorization: `Bearer ${args.token}` } });

async function firstTurn(messages) {
  const request = { model: args.model, messages, tools: [args.tool] };
  if (!args.stream) return (await client.chat({ ...request, stream: false })).message;
  const message = { role: "assistant", content: "", tool_calls: [] };
  for await (const part of await client.chat({ ...request, stream: true })) {
    message.content += part.message.content ?? "";
    message.tool_calls.push(...(part.message.tool_calls ?? []));
  }
  return message;
}

async function tools() {
  const messages = [{ role: "user", content: "What is the weather in Oslo?" }];
  const first = await firstTurn(messages);
  const call = first.tool_calls[0];
  messages.push(first);
  messages.push({ role: "tool", tool_name: call.function.name,
                  content: JSON.stringify({ temperature: 3 }) });
  const second = await client.chat({ model: args.model, messages, tools: [args.tool],
                                     stream: false });
  return { call: { name: call.function.name, arguments: call.function.arguments },
           done2: second.done_reason, content2: second.message.content };
}

async function list() {
  return { names: (await client.list()).models.map((m) => m.model) };
}

async function show() {
  const r = await client.show({ model: args.model });
  return { capabilities: r.capabilities ?? null, family: r.details?.family ?? null };
}

async function ps() {
  await client.chat({ model: args.model, messages: [{ role: "user", content: "hi" }],
                      stream: false });
  return { names: (await client.ps()).models.map((m) => m.model) };
}

async function embed() {
  const r = await client.embed({ model: args.model, input: ["a b", "c"] });
  const legacy = await client.embeddings({ model: args.model, prompt: "a b" });
  return { embeddings: r.embeddings, count: r.prompt_eval_count ?? null,
           legacy: legacy.embedding };
}

const ops = { tools, list, show, ps, embed };
try {
  console.log(JSON.stringify({ ok: true, result: await ops[op]() }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: `${err.constructor.name}: ${err.message}`,
                               status: err.status_code ?? err.status ?? null }));
}
