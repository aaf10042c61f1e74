// Cluster client (mcp-proxy/tests/cluster.rs, issue 11): the official TypeScript MCP SDK
// (@modelcontextprotocol/sdk, pinned in package.json) through a load balancer in front of several
// mcp-proxy instances. Can also be run by hand:
//
//   node cluster-client.mjs <url> <builtin|everything>
//
// `builtin`: mcp-proxy's built-in server; `everything`: `-- node <server-everything> stdio`.
// Declares `sampling` and answers `sampling/createMessage` with a fixed text, then lists tools,
// calls echo, the server's progress tool (with a progress callback) and its sampling tool (the
// server asks this client to sample; the answer is a POST of its own, which a round-robin
// balancer sends to another instance), and ends the session (DELETE).
// Prints `session: <id>`, `tools: a,b,c`, `echo -> <text>`, `progress: <count>`,
// `sampling requests: <count>`, `sampling -> <text on one line>`.
// Exits non-zero (error on stderr) if anything fails, or after 45 s.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const TIMEOUT_MS = 45_000;
/** What this client's "model" answers to every sampling request. */
const MODEL_TEXT = 'fixed sampling reply from cluster-client.mjs';

/** The tools (and arguments) of each server. */
const TARGETS = {
  builtin: {
    echo: { name: 'echo', arguments: { text: 'hello cluster' } },
    progress: { name: 'test_tool_with_progress', arguments: {} },
    sampling: { name: 'test_sampling', arguments: { prompt: 'hi' } },
  },
  everything: {
    echo: { name: 'echo', arguments: { message: 'hello cluster' } },
    progress: { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
    sampling: { name: 'trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 10 } },
  },
};

function firstText(result) {
  if (result.isError) throw new Error(`tool returned isError: ${JSON.stringify(result)}`);
  const item = (result.content ?? []).find((c) => c.type === 'text');
  if (!item) throw new Error(`tool result has no text content: ${JSON.stringify(result)}`);
  return item.text;
}

async function main() {
  const [url, target] = process.argv.slice(2);
  const tools = TARGETS[target];
  if (!url || !tools) throw new Error('usage: node cluster-client.mjs <url> <builtin|everything>');
  const transport = new StreamableHTTPClientTransport(new URL(url));
  const client = new Client({ name: 'ts-cluster-client', version: '1.0.0' }, { capabilities: { sampling: {} } });
  let samplingRequests = 0;
  client.setRequestHandler(CreateMessageRequestSchema, async () => {
    samplingRequests += 1;
    return { role: 'assistant', content: { type: 'text', text: MODEL_TEXT }, model: 'cluster-client-model' };
  });

  await client.connect(transport); // initialize + notifications/initialized
  console.log('session:', transport.sessionId ?? '-');

  const listed = await client.listTools();
  console.log('tools:', listed.tools.map((t) => t.name).join(','));

  console.log('echo ->', firstText(await client.callTool(tools.echo)));

  let progress = 0;
  const long = await client.callTool(tools.progress, CallToolResultSchema, { onprogress: () => (progress += 1) });
  firstText(long);
  console.log('progress:', progress);

  const sampled = await client.callTool(tools.sampling);
  console.log('sampling requests:', samplingRequests);
  console.log('sampling ->', firstText(sampled).replace(/\s+/g, ' '));

  await transport.terminateSession(); // DELETE: through the balancer, on any instance
  await client.close();
}

const watchdog = setTimeout(() => {
  console.error(`cluster-client: timed out after ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);
watchdog.unref();

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error('cluster-client error:', err?.stack ?? err);
  process.exit(1);
}
