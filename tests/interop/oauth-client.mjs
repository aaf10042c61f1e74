// Headless OAuth MCP client for tests/auth.rs: the TypeScript SDK's StreamableHTTPClientTransport
// with an OAuthClientProvider that keeps everything in memory and "opens" the authorization URL
// with fetch(redirect: 'manual'), taking the `code` from the redirect (the demo authorization
// server approves at once).
//
//   node oauth-client.mjs <mcp url>
//
// The flow: connect → 401 → protected-resource metadata → authorization-server metadata →
// dynamic client registration → authorize (PKCE, RFC 8707 resource) → UnauthorizedError →
// finishAuth(code) (token) → connect again → tools/list → tools/call echo and add. A 403
// insufficient_scope on a call (step-up) goes the same way: the SDK re-authorizes with the
// scopes the challenge names, the call fails with UnauthorizedError, finishAuth, call again.
//
// Prints one line per HTTP exchange of the SDK (`http: METHOD URL -> STATUS [www-authenticate]`),
// `authorize: URL resource=… scope=…`, `token: scope=…`, `session: …`, `tools: a,b`,
// `echo -> TEXT isError: BOOL`, `add -> TEXT isError: BOOL`, `step-up: …`, `done`.
// Exits non-zero (error on stderr) if anything fails, or after 45 s.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const TIMEOUT_MS = 45_000;
const REDIRECT_URL = 'http://127.0.0.1:9/callback'; // never contacted: the code is read from Location
const MAX_AUTHORIZATIONS = 4;

class HeadlessProvider {
  constructor() {
    this.info = undefined;
    this.savedTokens = undefined;
    this.verifier = undefined;
    this.code = undefined;
    this.authorizations = 0;
  }
  get redirectUrl() {
    return REDIRECT_URL;
  }
  get clientMetadata() {
    return {
      client_name: 'mcp-tower-http headless oauth test',
      redirect_uris: [REDIRECT_URL],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    this.info = info;
    console.log('registered: client_id', info.client_id);
  }
  tokens() {
    return this.savedTokens;
  }
  saveTokens(tokens) {
    this.savedTokens = tokens;
    console.log(`token: type=${tokens.token_type} scope=${tokens.scope ?? ''}`);
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    if (!this.verifier) throw new Error('no code verifier saved');
    return this.verifier;
  }
  async redirectToAuthorization(url) {
    this.authorizations += 1;
    if (this.authorizations > MAX_AUTHORIZATIONS) throw new Error('too many authorization rounds');
    console.log(
      `authorize: ${url.origin}${url.pathname} resource=${url.searchParams.get('resource')} scope=${url.searchParams.get('scope') ?? ''}`,
    );
    const response = await fetch(url, { redirect: 'manual' });
    const location = response.headers.get('location');
    if (response.status < 300 || response.status >= 400 || !location) {
      throw new Error(`authorize answered ${response.status} without a redirect: ${await response.text()}`);
    }
    const redirect = new URL(location);
    const error = redirect.searchParams.get('error');
    if (error) throw new Error(`authorize refused: ${error} ${redirect.searchParams.get('error_description')}`);
    const code = redirect.searchParams.get('code');
    if (!code) throw new Error(`no code in the redirect ${location}`);
    this.code = code;
  }
}

/** fetch that logs every exchange of the SDK. */
async function tracingFetch(input, init) {
  const response = await fetch(input, init);
  const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
  const url = input instanceof Request ? input.url : String(input);
  const challenge = response.headers.get('www-authenticate');
  console.log(`http: ${method} ${url} -> ${response.status}${challenge ? ` [${challenge}]` : ''}`);
  return response;
}

function firstText(result) {
  const item = (result.content ?? []).find((c) => c.type === 'text');
  if (!item) throw new Error(`tool result has no text content: ${JSON.stringify(result)}`);
  return item.text;
}

/** Runs `step`; on UnauthorizedError (the SDK sent us to authorize), finishes auth and retries. */
async function authorized(label, transport, provider, step) {
  for (let round = 0; ; round += 1) {
    try {
      return await step();
    } catch (err) {
      if (!(err instanceof UnauthorizedError) || round >= 2) throw err;
      if (!provider.code) throw new Error(`${label}: UnauthorizedError without an authorization code`);
      const code = provider.code;
      provider.code = undefined;
      console.log(`step-up: ${label} needs authorization, exchanging the code`);
      await transport.finishAuth(code);
    }
  }
}

async function main() {
  const [url] = process.argv.slice(2);
  if (!url) throw new Error('usage: node oauth-client.mjs <mcp url>');
  const provider = new HeadlessProvider();
  const options = { authProvider: provider, fetch: tracingFetch };

  // First attempt: no token yet, so the SDK runs discovery, registers and sends us to authorize.
  const first = new StreamableHTTPClientTransport(new URL(url), options);
  const probe = new Client({ name: 'oauth-test', version: '1.0.0' });
  try {
    await probe.connect(first);
    throw new Error('connected without authorization: expected a 401 first');
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
    console.log('unauthorized: as expected, authorization code', provider.code ? 'received' : 'MISSING');
  }
  await probe.close().catch(() => {});
  if (!provider.code) throw new Error('no authorization code after the first attempt');
  const code = provider.code;
  provider.code = undefined;
  await first.finishAuth(code);

  // Second attempt: with the token.
  const transport = new StreamableHTTPClientTransport(new URL(url), options);
  const client = new Client({ name: 'oauth-test', version: '1.0.0' });
  await client.connect(transport);
  console.log('session:', transport.sessionId ?? '-');

  const { tools } = await authorized('tools/list', transport, provider, () => client.listTools());
  console.log('tools:', tools.map((t) => t.name).join(','));

  const echo = await authorized('tools/call echo', transport, provider, () =>
    client.callTool({ name: 'echo', arguments: { text: 'hello oauth' } }),
  );
  console.log('echo ->', firstText(echo), 'isError:', echo.isError ?? false);

  const add = await authorized('tools/call add', transport, provider, () =>
    client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }),
  );
  console.log('add ->', firstText(add), 'isError:', add.isError ?? false);

  await transport.terminateSession();
  await client.close();
  console.log('done');
}

const watchdog = setTimeout(() => {
  console.error(`oauth-client: timed out after ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);
watchdog.unref();

try {
  await main();
  process.exit(0);
} catch (err) {
  console.error('oauth-client error:', err?.stack ?? err);
  process.exit(1);
}
