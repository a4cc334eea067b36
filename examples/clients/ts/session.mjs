// session.mjs: one long MCP session with the official MCP TypeScript SDK
// client (@modelcontextprotocol/sdk), driven line by line, for deployments
// where the session must survive many requests (a load balancer in front of
// replicas, see docs/scale-out.md). It connects once, then reads commands on
// stdin and answers each with one JSON line on stdout:
//
//   call <tool> <JSON arguments>   -> {"session_id":…,"result":{content,isError}}
//                                     or {"session_id":…,"error":…,"status":<HTTP status>}
//   reconnect                      -> {"session_id":…} (a new initialize)
//   exit                           -> ends the session (DELETE) and exits
//
// Usage (Node 22):
//
//   NOMOS_MCP_TOKEN=<bearer key> node session.mjs --url http://127.0.0.1:8280/mcp
//
// It prints {"session_id":…} once connected. The token is read from the
// environment, never the command line.
import { parseArgs } from "node:util";
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const { values: opts } = parseArgs({ options: { url: { type: "string" } }, strict: true });
if (!opts.url) {
  console.error("usage: node session.mjs --url <mcp endpoint>");
  process.exit(2);
}
const token = process.env.NOMOS_MCP_TOKEN;

let client, transport;

async function connect() {
  transport = new StreamableHTTPClientTransport(new URL(opts.url), {
    requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
  });
  // A broken server-to-client stream (its replica stopped) is reported by
  // the next request, not here.
  transport.onerror = () => {};
  client = new Client({ name: "nomos-session-example", version: "1.0.0" });
  await client.connect(transport);
  return { session_id: transport.sessionId };
}

async function call(rest) {
  const space = rest.indexOf(" ");
  const name = space < 0 ? rest : rest.slice(0, space);
  const args = space < 0 ? {} : JSON.parse(rest.slice(space + 1));
  try {
    const result = await client.callTool({ name, arguments: args });
    return { session_id: transport.sessionId, result };
  } catch (err) {
    return { session_id: transport.sessionId, error: String(err?.message ?? err), status: err?.code ?? null };
  }
}

try {
  console.log(JSON.stringify(await connect()));
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, ...more] = line.split(" ");
    if (cmd === "call") {
      console.log(JSON.stringify(await call(more.join(" "))));
    } else if (cmd === "reconnect") {
      await client.close().catch(() => {});
      console.log(JSON.stringify(await connect()));
    } else if (cmd === "exit") {
      break;
    } else {
      console.log(JSON.stringify({ error: `unknown command ${cmd}` }));
    }
  }
  await transport.terminateSession().catch(() => {});
  await client.close();
} catch (err) {
  console.error(`session.mjs: ${err?.message ?? err}`);
  await client?.close().catch(() => {});
  process.exit(1);
}
