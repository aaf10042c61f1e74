// Interop client for the stdio bridge (mcp-proxy/tests/stdio.rs): the official TypeScript MCP SDK
// (@modelcontextprotocol/sdk, pinned in package.json) talking to `mcp-proxy -- node <server-everything> stdio`.
//
//   node child-client.mjs <url> [streamable|sse]
//
// Declares the `sampling` capability and answers `sampling/createMessage` with a fixed text, then:
// lists tools, calls `echo`, calls `trigger-long-running-operation` with a progress callback, and
// calls `trigger-sampling-request` (the child asks this client to sample, through the proxy).
// Prints `session: <id>`, `tools: a,b,c`, `echo -> <text>`, `progress: <count>`, `long -> <text>`,
// `sampling requests: <count>`, `sampling -> <text on one line>`.
// Exits non-zero (error on stderr) if anything fails, or after 45 s.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const TIMEOUT_MS = 45_000;
/** What this client's "model" answers to every sampling request. */
const MODEL_TEXT = 'fixed sampling reply from child-client.mjs';

function firstText(result) {
  if (result.isError) throw new Error(`tool returned isError: ${JSON.stringify(result)}`);
  const item = (result.content ?? []).find((c) => c.type === 'text');
  if (!item) throw new Error(`tool result has no text content: ${JSON.stringify(result)}`);
  return item.text;
}

async function main() {
  const [url, mode = 'streamable'] = process.argv.slice(2);
  if (!url || !['streamable', 'sse'].includes(mode)) {
    throw new Error('usage: node child-client.mjs <url> [streamable|sse]');
  }
  const transport =
    mode === 'sse' ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url));
  const client = new Client({ name: 'ts-child-client', version: '1.0.0' }, { capabilities: { sampling: {} } });
  let samplingRequests = 0;
  client.setRequestHandler(CreateMessageRequestSchema, async () => {
    samplingRequests += 1;
    return { role: 'assistant', content: { type: 'text', text: MODEL_TEXT }, model: 'child-client-model' };
  });

  await client.connect(transport); // initialize + notifications/initialized
  console.log('session:', transport.sessionId ?? '-');

  const { tools } = await client.listTools();
  console.log('tools:', tools.map((t) => t.name).join(','));

  const echo = await client.callTool({ name: 'echo', arguments: { message: 'hello child' } });
  console.log('echo ->', firstText(echo));

  let progress = 0;
  const long = await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
    CallToolResultSchema,
    { onprogress: () => (progress += 1) },
  );
  console.log('progress:', progress);
  console.log('long ->', firstText(long));

  const sampled = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 10 } });
  console.log('sampling requests:', samplingRequests);
  console.log('sampling ->', firstText(sampled).replace(/\s+/g, ' '));

  if (mode === 'streamable') {
    try {
      await transport.terminateSession(); // DELETE: ends the session and its child
    } catch (err) {
      if (!(err instanceof StreamableHTTPError && err.code === 405)) throw err;
      console.log('terminate: 405 (not supported by server)');
    }
  }
  await client.close();
}

const watchdog = setTimeout(() => {
  console.error(`child-client: timed out after ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);
watchdog.unref();

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error('child-client error:', err?.stack ?? err);
  process.exit(1);
}
