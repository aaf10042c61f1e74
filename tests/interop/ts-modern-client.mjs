// Interop client: the official TypeScript MCP client 2.x (@modelcontextprotocol/client, pinned in
// package.json) against an MCP server over Streamable HTTP. Used by mcp-proxy/tests/interop_modern.rs; can
// also be run by hand:
//
//   node ts-modern-client.mjs <url> <pin|auto|legacy> [steps]
//
// Modes set `versionNegotiation.mode`: `pin` = { pin: '2026-07-28' }, `auto` = 'auto' (probes
// `server/discover`, falls back to `initialize`), `legacy` = 'legacy' (plain 2025 handshake).
// `steps` is a comma list (default: all of them, except `discover`/`listen` in legacy mode):
//   discover  client.discover()                        (2026-07-28 only)
//   tools     client.listTools()
//   echo      tools/call echo {"text": ...}
//   add       tools/call add {"a":2,"b":3}
//   elicit    tools/call test_elicitation; the registered elicitation/create handler answers
//   sample    tools/call test_sampling; the registered sampling/createMessage handler answers
//   listen    client.listen({toolsListChanged:true}), tools/call test_trigger_tool_change, wait
//             for notifications/tools/list_changed on that stream, close it (2026-07-28 only)
//   progress  a tool call with `onprogress`: the progress notifications reach the client
//             (INTEROP_TARGET=everything only)
//
// INTEROP_TARGET picks the server's tools: `builtin` (default, mcp-proxy's built-in server, as
// above) or `everything` (@modelcontextprotocol/server-everything, e.g. behind
// `mcp-proxy -- npx -y @modelcontextprotocol/server-everything`): echo {message},
// trigger-elicitation-request, trigger-sampling-request {prompt}, trigger-long-running-operation
// for progress, and listen for notifications/resources/list_changed after gzip-file-as-resource
// (a data: URI, no network) registers a resource.
//
// In 2026-07-28 the server asks for input by answering `input_required`; the client fulfils it
// through the SAME handlers registered with setRequestHandler and retries (auto-fulfilment, on by
// default). In 2025 eras the server sends elicitation/sampling requests on the stream instead.
//
// Output: one JSON object per line on stdout: `{"step":...}` for what was observed and
// `{"wire":...}` for every HTTP exchange the client made (HTTP method, MCP headers, JSON-RPC method
// and id, whether params carried inputResponses/requestState, status, and the body of a 4xx/5xx). Exits non-zero with `ts-modern-client error: ...` on stderr on any failure, or after 45 s.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const TIMEOUT_MS = 45_000;
const NOTIFY_TIMEOUT_MS = 10_000;
const MODERN = '2026-07-28';
const ALL_STEPS = ['discover', 'tools', 'echo', 'add', 'elicit', 'sample', 'listen', 'progress'];
const MODERN_ONLY = ['discover', 'listen'];
const ELICIT_RESPONSE = 'interop elicited answer';
const SAMPLED_TEXT = 'interop sampled text';

const out = (obj) => console.log(JSON.stringify(obj));

const TARGET = process.env.INTEROP_TARGET ?? 'builtin';
const TOOLS = {
  builtin: {
    echo: { name: 'echo', arguments: { text: 'hello modern interop' } },
    elicit: { name: 'test_elicitation', arguments: { message: 'interop asks' } },
    elicitContent: { response: ELICIT_RESPONSE },
    sample: { name: 'test_sampling', arguments: { prompt: 'interop prompt' } },
    listen: {
      filter: { toolsListChanged: true },
      method: 'notifications/tools/list_changed',
      trigger: { name: 'test_trigger_tool_change', arguments: {} },
    },
  },
  everything: {
    echo: { name: 'echo', arguments: { message: 'hello modern interop' } },
    elicit: { name: 'trigger-elicitation-request', arguments: {} },
    // Its form requires `name`.
    elicitContent: { name: ELICIT_RESPONSE },
    sample: { name: 'trigger-sampling-request', arguments: { prompt: 'interop prompt' } },
    progress: { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
    listen: {
      filter: { resourcesListChanged: true },
      method: 'notifications/resources/list_changed',
      trigger: {
        name: 'gzip-file-as-resource',
        arguments: { name: 'interop.txt.gz', data: 'data:text/plain;base64,aW50ZXJvcA==' },
      },
    },
  },
}[TARGET];

/** Every text item of a tool result, joined (server-everything answers in several). */
function allText(result) {
  if (result.isError) throw new Error(`tool returned isError: ${JSON.stringify(result)}`);
  return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

function firstText(result) {
  if (result.isError) throw new Error(`tool returned isError: ${JSON.stringify(result)}`);
  const item = (result.content ?? []).find((c) => c.type === 'text');
  if (!item) throw new Error(`tool result has no text content: ${JSON.stringify(result)}`);
  return item.text;
}

function fail(msg) {
  throw new Error(msg);
}

/** A fetch that records every exchange as a `{"wire":...}` line (headers as the server saw them). */
function recordingFetch(label) {
  return async (input, init = {}) => {
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    let rpc = null;
    let msg = null;
    if (typeof init.body === 'string') {
      try {
        msg = JSON.parse(init.body);
        rpc = Array.isArray(msg)
          ? msg.map((m) => m.method ?? (m.result !== undefined ? 'result' : 'error'))
          : msg.method ?? (msg.result !== undefined ? 'result' : 'error');
      } catch {
        rpc = '(unparsed)';
      }
    }
    const single = msg && !Array.isArray(msg) ? msg : null;
    const wire = {
      client: label,
      http: init.method ?? 'GET',
      rpc,
      id: single?.id ?? null,
      inputResponses: single?.params?.inputResponses !== undefined,
      requestState: single?.params?.requestState !== undefined,
      'mcp-protocol-version': headers.get('mcp-protocol-version'),
      'mcp-method': headers.get('mcp-method'),
      'mcp-name': headers.get('mcp-name'),
      'mcp-session-id': headers.get('mcp-session-id'),
    };
    const params = [...headers.keys()].filter((k) => k.startsWith('mcp-param-'));
    if (params.length) wire['mcp-param'] = params;
    try {
      const res = await fetch(input, init);
      wire.status = res.status;
      wire['content-type'] = res.headers.get('content-type');
      if (res.status >= 400) wire.body = (await res.clone().text()).slice(0, 2000);
      out({ wire });
      return res;
    } catch (err) {
      wire.error = String(err?.message ?? err);
      out({ wire });
      throw err;
    }
  };
}

function negotiation(mode) {
  switch (mode) {
    case 'pin':
      return { mode: { pin: MODERN } };
    case 'auto':
      return { mode: 'auto' };
    case 'legacy':
      return { mode: 'legacy' };
    default:
      return fail(`unknown mode ${mode}`);
  }
}

async function main() {
  const [url, mode, stepsArg] = process.argv.slice(2);
  if (!url || !['pin', 'auto', 'legacy'].includes(mode)) {
    fail('usage: node ts-modern-client.mjs <url> <pin|auto|legacy> [steps]');
  }
  if (!TOOLS) fail(`unknown INTEROP_TARGET ${TARGET}`);
  const steps = stepsArg
    ? stepsArg.split(',').filter(Boolean)
    : ALL_STEPS.filter((s) => mode !== 'legacy' || !MODERN_ONLY.includes(s)).filter((s) => s !== 'progress' || TOOLS.progress);
  for (const s of steps) if (!ALL_STEPS.includes(s)) fail(`unknown step ${s}`);

  const client = new Client(
    { name: `ts-modern-${mode}`, version: '1.0.0' },
    {
      capabilities: { elicitation: { form: {} }, sampling: {} },
      versionNegotiation: negotiation(mode),
    },
  );
  const seen = { elicit: [], sample: [] };
  client.setRequestHandler('elicitation/create', async (request) => {
    seen.elicit.push(request.params.message);
    return { action: 'accept', content: TOOLS.elicitContent };
  });
  client.setRequestHandler('sampling/createMessage', async (request) => {
    seen.sample.push(request.params.messages?.length ?? 0);
    return { role: 'assistant', content: { type: 'text', text: SAMPLED_TEXT }, model: 'm' };
  });
  const listChanged = [];
  let onListChanged = () => {};
  client.setNotificationHandler(TOOLS.listen.method, (n) => {
    listChanged.push(n);
    onListChanged(n);
  });
  client.onerror = (err) => console.error('client onerror:', err?.message ?? err);

  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: recordingFetch(`ts-${mode}`) });
  await client.connect(transport);
  out({
    step: 'connect',
    era: client.getProtocolEra() ?? null,
    protocolVersion: client.getNegotiatedProtocolVersion() ?? null,
    server: client.getServerVersion() ?? null,
    session: transport.sessionId ?? null,
  });

  for (const step of steps) {
    switch (step) {
      case 'discover': {
        const d = await client.discover();
        out({
          step: 'discover',
          supportedVersions: d.supportedVersions,
          capabilities: d.capabilities,
          serverInfo: d._meta?.['io.modelcontextprotocol/serverInfo'] ?? null,
          ttlMs: d.ttlMs ?? null,
          cacheScope: d.cacheScope ?? null,
        });
        break;
      }
      case 'tools': {
        const { tools } = await client.listTools();
        out({ step: 'tools', names: tools.map((t) => t.name) });
        break;
      }
      case 'echo': {
        const r = await client.callTool(TOOLS.echo);
        out({ step: 'echo', text: firstText(r) });
        break;
      }
      case 'add': {
        const r = await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
        out({ step: 'add', text: firstText(r) });
        break;
      }
      case 'elicit': {
        const before = seen.elicit.length;
        const r = await client.callTool(TOOLS.elicit);
        const text = allText(r);
        const handled = seen.elicit.length - before;
        if (handled !== 1) fail(`elicitation handler ran ${handled} times (want 1); result: ${text}`);
        if (!text.includes(ELICIT_RESPONSE)) fail(`test_elicitation result lacks the response: ${text}`);
        out({ step: 'elicit', text, handled, message: seen.elicit.at(-1) });
        break;
      }
      case 'sample': {
        const before = seen.sample.length;
        const r = await client.callTool(TOOLS.sample);
        const text = allText(r);
        const handled = seen.sample.length - before;
        if (handled !== 1) fail(`sampling handler ran ${handled} times (want 1); result: ${text}`);
        if (!text.includes(SAMPLED_TEXT)) fail(`test_sampling result lacks the sampled text: ${text}`);
        out({ step: 'sample', text, handled });
        break;
      }
      case 'listen': {
        const sub = await client.listen(TOOLS.listen.filter);
        out({ step: 'listen', honored: sub.honoredFilter });
        for (const key of Object.keys(TOOLS.listen.filter)) {
          if (sub.honoredFilter?.[key] !== true) {
            fail(`listen ack did not honour ${key}: ${JSON.stringify(sub.honoredFilter)}`);
          }
        }
        const got = new Promise((resolve, reject) => {
          if (listChanged.length) return resolve(listChanged[0]);
          const t = setTimeout(
            () => reject(new Error(`no ${TOOLS.listen.method} within ${NOTIFY_TIMEOUT_MS} ms`)),
            NOTIFY_TIMEOUT_MS,
          );
          onListChanged = (n) => {
            clearTimeout(t);
            resolve(n);
          };
        });
        const r = await client.callTool(TOOLS.listen.trigger);
        out({ step: 'trigger', text: allText(r) });
        const n = await got;
        out({
          step: 'list_changed',
          method: n.method,
          subscriptionId: n.params?._meta?.['io.modelcontextprotocol/subscriptionId'] ?? null,
        });
        await sub.close();
        out({ step: 'listen_closed', how: await sub.closed });
        break;
      }
      case 'progress': {
        if (!TOOLS.progress) fail(`target ${TARGET} has no progress tool`);
        const seen = [];
        const r = await client.callTool(TOOLS.progress, {
          onprogress: (p) => seen.push(p.progress),
        });
        out({ step: 'progress', text: firstText(r), progress: seen });
        if (seen.length === 0) fail('no progress notification reached the client');
        break;
      }
    }
  }
  await client.close();
  out({ step: 'done' });
}

const watchdog = setTimeout(() => {
  console.error(`ts-modern-client error: timed out after ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);
watchdog.unref();

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error('ts-modern-client error:', err?.stack ?? err);
  if (err?.data !== undefined) console.error('error data:', JSON.stringify(err.data));
  process.exit(1);
}
