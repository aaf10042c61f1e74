// The TypeScript MCP SDK (@modelcontextprotocol/sdk, pinned in package.json) against the README's
// one-tool server (examples/hello.rs). Used by tests/newcomer.rs; by hand:
//
//   node hello-client.mjs http://127.0.0.1:3000/mcp
//
// Prints `tools: add` and `add -> <text> isError: <bool>`; exits non-zero if anything fails.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url] = process.argv.slice(2);
if (!url) throw new Error('usage: node hello-client.mjs <url>');
const watchdog = setTimeout(() => {
  console.error('hello-client: timed out');
  process.exit(1);
}, 45_000);
watchdog.unref();

try {
  const client = new Client({ name: 'ts-newcomer', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  const { tools } = await client.listTools();
  console.log('tools:', tools.map((t) => t.name).join(','));
  const result = await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
  const text = result.content.find((c) => c.type === 'text')?.text;
  console.log('add ->', text, 'isError:', result.isError ?? false);
  await client.close();
  process.exit(0);
} catch (err) {
  console.error('hello-client error:', err?.stack ?? err);
  process.exit(1);
}
