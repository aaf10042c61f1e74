// Interop client: the official TypeScript MCP SDK (@modelcontextprotocol/sdk, pinned in package.json)
// talking to an MCP server over HTTP. Used by mcp-proxy/tests/interop.rs; can also be run by hand:
//
//   node ts-client.mjs <url> [streamable|sse]        # MCP_TOKEN=... adds "Authorization: Bearer ..."
//
// Prints `session: <id>`, `tools: a,b,c`, `echo -> <text> isError: <bool>`, `add -> <text> isError: <bool>`.
// Exits non-zero (error on stderr) if anything fails, or after 45 s.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const TIMEOUT_MS = 45_000;

function firstText(result) {
  const item = (result.content ?? []).find((c) => c.type === 'text');
  if (!item) throw new Error(`tool result has no text content: ${JSON.stringify(result)}`);
  return item.text;
}

async function main() {
  const [url, mode = 'streamable'] = process.argv.slice(2);
  if (!url || !['streamable', 'sse'].includes(mode)) {
    throw new Error('usage: node ts-client.mjs <url> [streamable|sse]');
  }
  const headers = process.env.MCP_TOKEN ? { Authorization: `Bearer ${process.env.MCP_TOKEN}` } : undefined;
  const requestInit = headers ? { headers } : undefined;
  const transport =
    mode === 'sse'
      ? new SSEClientTransport(new URL(url), { requestInit })
      : new StreamableHTTPClientTransport(new URL(url), { requestInit });
  const client = new Client({ name: 'ts-interop', version: '1.0.0' });

  await client.connect(transport); // initialize + notifications/initialized
  console.log('session:', transport.sessionId ?? '-');

  const { tools } = await client.listTools();
  console.log('tools:', tools.map((t) => t.name).join(','));

  const echo = await client.callTool({ name: 'echo', arguments: { text: 'hello interop' } });
  console.log('echo ->', firstText(echo), 'isError:', echo.isError ?? false);

  const add = await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
  console.log('add ->', firstText(add), 'isError:', add.isError ?? false);

  if (mode === 'streamable') {
    try {
      await transport.terminateSession(); // DELETE with Mcp-Session-Id (no-op without a session)
    } catch (err) {
      // A server that does not support explicit termination answers 405; anything else is an error.
      if (!(err instanceof StreamableHTTPError && err.code === 405)) throw err;
      console.log('terminate: 405 (not supported by server)');
    }
  }
  await client.close();
}

const watchdog = setTimeout(() => {
  console.error(`ts-client: timed out after ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);
watchdog.unref();

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error('ts-client error:', err?.stack ?? err);
  process.exit(1);
}
