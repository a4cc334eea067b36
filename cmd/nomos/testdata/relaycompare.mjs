// The relay comparison of cmd/nomos/relay_e2e_test.go: the official
// TypeScript SDK client drives @modelcontextprotocol/server-everything
// through every surface and prints what it saw as one JSON object, so the
// test can compare a direct connection with one through nomos_mcp field by
// field.
//
//   node relaycompare.mjs stdio <node> <server-everything/dist/index.js>
//   node relaycompare.mjs http <url> [<api key>]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const [mode, a, b] = process.argv.slice(2);

function transport() {
  if (mode === "stdio") {
    return new StdioClientTransport({ command: a, args: [b, "stdio"], env: { PATH: process.env.PATH ?? "" }, stderr: "ignore" });
  }
  const headers = b ? { Authorization: `Bearer ${b}` } : {};
  return new StreamableHTTPClientTransport(new URL(a), { requestInit: { headers } });
}

// The client declares sampling, form-only elicitation and roots, as the
// issue's client did: an upstream must not be told more. With
// RELAY_URL_ELICITATION=1 it declares URL-mode elicitation too, and only
// lists the tools (the upstream must then offer its URL-mode tool).
const urlMode = process.env.RELAY_URL_ELICITATION === "1";
const client = new Client(
  { name: "nomos-relay-compare", version: "1" },
  { capabilities: { sampling: {}, elicitation: urlMode ? { form: {}, url: {} } : {}, roots: { listChanged: true } } },
);
const seen = { sampling: [], elicitation: [], roots: 0, logs: [] };
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  seen.sampling.push(req.params.messages.map((m) => m.content.text ?? m.content.type));
  return { model: "relay-compare-model", role: "assistant", content: { type: "text", text: "sampled by the client" } };
});
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  seen.elicitation.push({ mode: req.params.mode ?? "form", message: req.params.message });
  return { action: "decline" };
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
  seen.roots++;
  return { roots: [{ uri: "file:///relay-compare/root", name: "relay-compare-root" }] };
});
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
  // The simulated log messages carry a random level (and over HTTP the
  // session id): keep only that one arrived. Other log messages (the
  // server's own, about roots) depend on timing.
  if (typeof n.params.level === "string" && /level.?message/i.test(String(n.params.data))) seen.logs.push(n.params.level);
});

// outcome is a call's result, or its protocol error (code and message).
async function outcome(fn) {
  try {
    return { result: await fn() };
  } catch (e) {
    return { error: { code: e.code ?? null, message: String(e.message) } };
  }
}

// sessionless replaces the upstream's session id, which differs between
// any two connections, in a tool's text.
const sessionless = (o) => JSON.parse(JSON.stringify(o).replace(/session [0-9a-f-]{36}/g, "session <id>"));

const call = (name, args, opts) => outcome(() => client.callTool({ name, arguments: args }, undefined, opts));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  await client.connect(transport());
  const out = {};
  out.server = { capabilities: client.getServerCapabilities(), instructions: client.getInstructions() ?? null };
  out.serverName = client.getServerVersion()?.name ?? null;
  await sleep(500); // the server syncs roots after initialized; let it
  const tools = (await client.listTools()).tools;
  out.tools = tools.sort((x, y) => x.name.localeCompare(y.name));
  if (urlMode) {
    process.stdout.write(JSON.stringify(out) + "\n");
    await client.close();
    return;
  }
  out.echo = await call("echo", { message: "hello relay" });
  out.sum = await call("get-sum", { a: 2, b: 40 });
  out.image = await call("get-tiny-image", {});
  out.structured = await call("get-structured-content", { location: "New York" });
  out.annotated = await call("get-annotated-message", { messageType: "error", includeImage: false });
  const progress = [];
  out.progressCall = await call("trigger-long-running-operation", { duration: 1, steps: 3 }, {
    onprogress: (p) => progress.push({ progress: p.progress, total: p.total ?? null }),
  });
  out.progress = progress;
  out.sampling = await call("trigger-sampling-request", { prompt: "say hi", maxTokens: 10 });
  out.elicitation = await call("trigger-elicitation-request", {});
  out.roots = await call("get-roots-list", {});
  out.env = await call("get-env", {});
  out.unknownTool = await call("no-such-tool", {});
  out.setLevel = await outcome(() => client.setLoggingLevel("debug"));
  out.loggingOn = sessionless(await call("toggle-simulated-logging", {}));
  for (let i = 0; i < 100 && seen.logs.length === 0; i++) await sleep(100);
  out.loggingOff = sessionless(await call("toggle-simulated-logging", {}));
  out.resources = await outcome(() => client.listResources());
  out.templates = await outcome(() => client.listResourceTemplates());
  const first = out.resources.result?.resources?.[0]?.uri;
  out.read = first ? await outcome(() => client.readResource({ uri: first })) : null;
  out.prompts = await outcome(() => client.listPrompts());
  out.simplePrompt = await outcome(() => client.getPrompt({ name: "simple-prompt" }));
  out.argsPrompt = await outcome(() => client.getPrompt({ name: "args-prompt", arguments: { city: "Paris", state: "IDF" } }));
  out.completion = await outcome(() => client.complete({ ref: { type: "ref/prompt", name: "completable-prompt" }, argument: { name: "department", value: "S" } }));
  out.ping = await outcome(() => client.ping());
  // Last: directly, this tool adds a resource to the session.
  out.hiddenTool = await call("gzip-file-as-resource", { name: "relay.gz", data: "data:text/plain,hi" });
  out.seen = { sampling: seen.sampling, elicitation: seen.elicitation, rootsAsked: seen.roots > 0, logReceived: seen.logs.length > 0 };
  process.stdout.write(JSON.stringify(out) + "\n");
  await client.close();
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`relaycompare: ${e?.stack ?? e}\n`);
  process.exit(1);
});
