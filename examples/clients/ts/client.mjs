// client.mjs: the official MCP TypeScript SDK client (@modelcontextprotocol/sdk)
// talking to an MCP endpoint over Streamable HTTP, typically Nomos' nomos_mcp
// gateway. It connects, lists every tool, optionally calls one tool, ends the
// session, and prints one JSON object on stdout:
//
//   {"server":{"name":…,"version":…},"tools":["lookup_order",…],
//    "call":{"name":…,"arguments":{…},"result":{"content":[…],"isError":…}}}
//
// Usage (Node 22):
//
//   NOMOS_MCP_TOKEN=<bearer key> node client.mjs --url http://127.0.0.1:8080/mcp \
//     [--call <tool> [--arguments '<JSON object>']]
//
// The bearer token is read from NOMOS_MCP_TOKEN rather than the command line,
// so it does not show in the process list. Without it no Authorization header
// is sent. A tool result with isError (a policy denial, a pending approval) is
// a normal result: the exit code is 0. A transport or JSON-RPC error prints a
// message on stderr and exits 1.
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    call: { type: "string" },
    arguments: { type: "string", default: "{}" },
  },
  strict: true,
});
if (!opts.url) {
  console.error("usage: node client.mjs --url <mcp endpoint> [--call <tool> [--arguments <json>]]");
  process.exit(2);
}

const token = process.env.NOMOS_MCP_TOKEN;
const transport = new StreamableHTTPClientTransport(new URL(opts.url), {
  requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
});
const client = new Client({ name: "nomos-example-client", version: "1.0.0" });

// listAllTools follows nextCursor until the server has listed every tool.
async function listAllTools() {
  const names = [];
  let cursor;
  do {
    const page = await client.listTools(cursor ? { cursor } : undefined);
    names.push(...page.tools.map((t) => t.name));
    cursor = page.nextCursor;
  } while (cursor);
  return names;
}

try {
  await client.connect(transport);
  const info = client.getServerVersion();
  const out = { server: { name: info?.name, version: info?.version }, tools: await listAllTools() };
  if (opts.call) {
    const args = JSON.parse(opts.arguments);
    const result = await client.callTool({ name: opts.call, arguments: args });
    out.call = { name: opts.call, arguments: args, result };
  }
  await transport.terminateSession();
  await client.close();
  console.log(JSON.stringify(out));
} catch (err) {
  console.error(`client.mjs: ${err?.message ?? err}`);
  await client.close().catch(() => {});
  process.exit(1);
}
