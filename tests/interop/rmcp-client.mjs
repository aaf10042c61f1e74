// Interop client for tests/rmcp.rs: the official TypeScript MCP SDK (@modelcontextprotocol/sdk,
// pinned in package.json) driving an rmcp tool server served by mcp-tower-http. By hand:
//
//   node rmcp-client.mjs <url> [streamable|sse]
//
// Declares the elicitation capability and answers the server's `elicitation/create` with
// {name: "Interop"}. Prints `tools: a,b,c`, `add -> <text>`, `elicited: <message>` and
// `greet -> <text>`. Exits non-zero (error on stderr) if anything fails, or after 45 s.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const TIMEOUT_MS = 45_000;

function firstText(result) {
  if (result.isError) throw new Error(`tool failed: ${JSON.stringify(result)}`);
  const item = (result.content ?? []).find((c) => c.type === 'text');
  if (!item) throw new Error(`tool result has no text content: ${JSON.stringify(result)}`);
  return item.text;
}

async function main() {
  const [url, mode = 'streamable'] = process.argv.slice(2);
  if (!url || !['streamable', 'sse'].includes(mode)) {
    throw new Error('usage: node rmcp-client.mjs <url> [streamable|sse]');
  }
  const transport =
    mode === 'sse'
      ? new SSEClientTransport(new URL(url.replace(/\/mcp$/, '/sse')))
      : new StreamableHTTPClientTransport(new URL(url));
  const client = new Client(
    { name: 'ts-rmcp-interop', version: '1.0.0' },
    { capabilities: { elicitation: {} } },
  );
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    console.log('elicited:', request.params.message);
    return { action: 'accept', content: { name: 'Interop' } };
  });

  await client.connect(transport);
  const { tools } = await client.listTools();
  console.log('tools:', tools.map((t) => t.name).sort().join(','));

  const add = await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
  console.log('add ->', firstText(add));

  const greet = await client.callTool({ name: 'greet', arguments: {} });
  console.log('greet ->', firstText(greet));

  if (mode === 'streamable') await transport.terminateSession();
  await client.close();
}

const watchdog = setTimeout(() => {
  console.error(`rmcp-client: timed out after ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);
watchdog.unref();

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error('rmcp-client error:', err?.stack ?? err);
  process.exit(1);
}
