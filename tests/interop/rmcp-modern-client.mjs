// Interop client for tests/rmcp.rs: the official TypeScript MCP client 2.x
// (@modelcontextprotocol/client, pinned in package.json), pinned to protocol 2026-07-28 (no
// session), driving an rmcp tool server served by mcp-tower-http. By hand:
//
//   node rmcp-modern-client.mjs <url>
//
// The server asks for input with `input_required`; the client fulfils it through its
// elicitation/create handler (answering {name: "Interop"}) and retries. Prints `protocol: <v>`,
// `tools: a,b,c`, `add -> <text>`, `elicited: <message>`, `greet -> <text>` and, when a call was
// retried with inputResponses, `retried with inputResponses`. Exits non-zero (error on stderr) if
// anything fails, or after 45 s.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const TIMEOUT_MS = 45_000;

function firstText(result) {
  if (result.isError) throw new Error(`tool failed: ${JSON.stringify(result)}`);
  const item = (result.content ?? []).find((c) => c.type === 'text');
  if (!item) throw new Error(`tool result has no text content: ${JSON.stringify(result)}`);
  return item.text;
}

async function main() {
  const [url] = process.argv.slice(2);
  if (!url) throw new Error('usage: node rmcp-modern-client.mjs <url>');
  let retried = false;
  const watchingFetch = async (input, init = {}) => {
    if (typeof init.body === 'string' && init.body.includes('"inputResponses"')) retried = true;
    return fetch(input, init);
  };
  const client = new Client(
    { name: 'ts-rmcp-modern', version: '1.0.0' },
    { capabilities: { elicitation: { form: {} } }, versionNegotiation: { mode: { pin: '2026-07-28' } } },
  );
  client.setRequestHandler('elicitation/create', async (request) => {
    console.log('elicited:', request.params.message);
    return { action: 'accept', content: { name: 'Interop' } };
  });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: watchingFetch }));
  console.log('protocol:', client.getNegotiatedProtocolVersion());

  const { tools } = await client.listTools();
  console.log('tools:', tools.map((t) => t.name).sort().join(','));
  console.log('add ->', firstText(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })));
  console.log('greet ->', firstText(await client.callTool({ name: 'greet', arguments: {} })));
  if (retried) console.log('retried with inputResponses');
  await client.close();
}

const watchdog = setTimeout(() => {
  console.error(`rmcp-modern-client: timed out after ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);
watchdog.unref();

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error('rmcp-modern-client error:', err?.stack ?? err);
  process.exit(1);
}
