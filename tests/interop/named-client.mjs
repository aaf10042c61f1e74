// The TypeScript MCP SDK (@modelcontextprotocol/sdk) against one named server of mcp-proxy
// (`--named-server`, `--named-server-config`). Used by mcp-proxy/tests/named.rs; by hand:
//
//   node named-client.mjs http://127.0.0.1:8080/servers/NAME/mcp TOOL
//   node named-client.mjs http://127.0.0.1:8080/servers/NAME/sse TOOL   (legacy HTTP+SSE)
//
// Prints `tools: <names>` and `TOOL -> <text>`; exits non-zero if anything fails.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';

const [url, tool] = process.argv.slice(2);
if (!url || !tool) throw new Error('usage: node named-client.mjs <url> <tool>');
const watchdog = setTimeout(() => {
  console.error('named-client: timed out');
  process.exit(1);
}, 45_000);
watchdog.unref();

try {
  const client = new Client({ name: 'ts-named', version: '1.0.0' });
  const transport = url.endsWith('/sse')
    ? new SSEClientTransport(new URL(url))
    : new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  const { tools } = await client.listTools();
  console.log('tools:', tools.map((t) => t.name).join(','));
  const result = await client.callTool({ name: tool, arguments: {} });
  const text = result.content.find((c) => c.type === 'text')?.text;
  console.log(`${tool} ->`, text);
  await client.close();
  process.exit(result.isError ? 1 : 0);
} catch (err) {
  console.error('named-client error:', err?.stack ?? err);
  process.exit(1);
}
