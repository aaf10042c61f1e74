// The TypeScript SDK's demo OAuth authorization server (`setupAuthServer` of
// @modelcontextprotocol/sdk/examples/server/demoInMemoryOAuthProvider.js, pinned in package.json),
// for tests/auth.rs. It auto-approves every authorization request, supports dynamic client
// registration and PKCE, checks the RFC 8707 `resource` strictly against the MCP server URL, and
// answers RFC 7662-style `POST /introspect` with `{active, client_id, scope, exp, aud}`.
//
//   node demo-as.mjs <mcp server url, e.g. http://127.0.0.1:8080/mcp> [port]
//
// Listens on 127.0.0.1 only, on `port` or a free one, and prints
// `demo-as listening on http://127.0.0.1:PORT/` (its issuer URL) once it accepts connections.
// Every request is logged on stderr as `demo-as: METHOD PATH -> STATUS`. Exits when stdin closes,
// on SIGTERM, or after 10 minutes.
import http from 'node:http';
import net from 'node:net';
import { setupAuthServer } from '@modelcontextprotocol/sdk/examples/server/demoInMemoryOAuthProvider.js';

const LIFETIME_MS = 10 * 60 * 1000;

async function freePort() {
  const probe = net.createServer();
  await new Promise((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', resolve);
  });
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const [resource, portArg] = process.argv.slice(2);
if (!resource) {
  console.error('usage: node demo-as.mjs <mcp server url> [port]');
  process.exit(2);
}
const port = Number(portArg) || (await freePort());
const issuer = new URL(`http://127.0.0.1:${port}/`);

// setupAuthServer calls `authApp.listen(port, callback)`, which binds every interface: keep it on
// loopback, log each request, and say when it is ready.
const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function (...args) {
  if ((typeof args[0] === 'number' || typeof args[0] === 'string') && typeof args[1] !== 'string') {
    args.splice(1, 0, '127.0.0.1');
  }
  this.prependListener('request', (req, res) => {
    res.on('finish', () => console.error(`demo-as: ${req.method} ${(req.originalUrl ?? req.url).split('?')[0]} -> ${res.statusCode}`));
  });
  this.once('listening', () => console.log(`demo-as listening on ${issuer.href}`));
  this.once('error', (err) => {
    console.error('demo-as: listen failed:', err);
    process.exit(1);
  });
  return listen.apply(this, args);
};

const metadata = setupAuthServer({
  authServerUrl: issuer,
  mcpServerUrl: new URL(resource),
  strictResource: true,
});
console.error(`demo-as: introspection_endpoint ${metadata.introspection_endpoint}`);

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
setTimeout(() => {
  console.error('demo-as: lifetime over, exiting');
  process.exit(0);
}, LIFETIME_MS).unref();
