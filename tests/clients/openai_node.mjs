// openai-node (the official OpenAI SDK for JavaScript) against a running chatd.
// Usage: node openai_node.mjs <operation> '<json arguments>'; prints one JSON result.
// Operations: tools (a two-turn tool conversation, turn one streamed when args.stream),
// models (list, then retrieve each), embeddings (the SDK's default base64, then floats).
import OpenAI from "openai";

const [op, raw] = process.argv.slice(2);
const args = JSON.parse(raw);
const client = new OpenAI({ baseURL: `${args.url}/v1`, apiKey: args.token, maxRetries: 0,
                            timeout: 10000 });

async function firstTurn(messages) {
  const request = { model: args.model, messages, tools: [args.tool] };
  if (!args.stream) {
    const r = await client.chat.completions.create(request);
    return { message: r.choices[0].message, finish: r.choices[0].finish_reason };
  }
  const stream = await client.chat.completions.create({ ...request, stream: true });
  const calls = [];
  let finish = null;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      for (const d of choice.delta.tool_calls ?? []) {
        const call = (calls[d.index] ??= { id: "", type: "function",
                                           function: { name: "", arguments: "" } });
        if (d.id) call.id = d.id;
        if (d.function?.name) call.function.name += d.function.name;
        if (d.function?.arguments) call.function.arguments += d.function.arguments;
      }
      finish = choice.finish_reason ?? finish;
    }
  }
  return { message: { role: "assistant", content: null, tool_calls: calls }, finish };
}

async function tools() {
  const messages = [{ role: "user", content: "What is the weather in Oslo?" }];
  const first = await firstTurn(messages);
  const call = first.message.tool_calls[0];
  messages.push(first.message);
  messages.push({ role: "tool", tool_call_id: call.id,
                  content: JSON.stringify({ temperature: 3 }) });
  const second = await client.chat.completions.create({ model: args.model, messages,
                                                        tools: [args.tool] });
  return { finish1: first.finish, call: { id: call.id, name: call.function.name,
                                          arguments: JSON.parse(call.function.arguments) },
           finish2: second.choices[0].finish_reason,
           content2: second.choices[0].message.content };
}

async function models() {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  const retrieved = [];
  for (const id of ids) retrieved.push((await client.models.retrieve(id)).id);
  return { ids, retrieved };
}

async function embeddings() {
  const input = ["a b", "c"];
  const b64 = await client.embeddings.create({ model: args.model, input });
  const floats = await client.embeddings.create({ model: args.model, input,
                                                  encoding_format: "float" });
  return { base64: b64.data.map((d) => Array.from(d.embedding)),
           floats: floats.data.map((d) => d.embedding), usage: b64.usage };
}

const ops = { tools, models, embeddings };
try {
  console.log(JSON.stringify({ ok: true, result: await ops[op]() }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: `${err.constructor.name}: ${err.message}`,
                               status: err.status ?? null }));
}
