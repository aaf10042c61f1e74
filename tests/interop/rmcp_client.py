"""Interop client for tests/rmcp.rs: the official Python MCP SDK (`mcp`, pinned in
requirements.txt) driving an rmcp tool server served by mcp-tower-http. By hand:

    .venv/bin/python rmcp_client.py <url> [streamable|sse]

Declares elicitation (by passing a callback) and answers the server's `elicitation/create` with
{name: "Interop"}. Prints `tools: a,b,c`, `add -> <text>`, `elicited: <message>` and
`greet -> <text>`. Exits non-zero (error on stderr) if anything fails, or after 45 s.
"""

import asyncio
import sys
import traceback

from mcp import ClientSession, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

TIMEOUT_S = 45


def first_text(result) -> str:
    if result.isError:
        raise RuntimeError(f"tool failed: {result!r}")
    for item in result.content:
        if item.type == "text":
            return item.text
    raise RuntimeError(f"tool result has no text content: {result!r}")


async def elicit(context, params: types.ElicitRequestParams) -> types.ElicitResult:
    print("elicited:", params.message, flush=True)
    return types.ElicitResult(action="accept", content={"name": "Interop"})


async def session_calls(read, write) -> None:
    async with ClientSession(read, write, elicitation_callback=elicit) as s:
        await s.initialize()
        tools = (await s.list_tools()).tools
        print("tools:", ",".join(sorted(t.name for t in tools)), flush=True)
        print("add ->", first_text(await s.call_tool("add", {"a": 2, "b": 3})), flush=True)
        print("greet ->", first_text(await s.call_tool("greet", {})), flush=True)


async def main(url: str, mode: str) -> None:
    if mode == "sse":
        async with sse_client(url.removesuffix("/mcp") + "/sse") as (read, write):
            await session_calls(read, write)
        return
    # Leaving the context sends DELETE with the session id.
    async with streamable_http_client(url) as (read, write, _):
        await session_calls(read, write)


if __name__ == "__main__":
    if len(sys.argv) < 2 or (len(sys.argv) > 2 and sys.argv[2] not in ("streamable", "sse")):
        print("usage: rmcp_client.py <url> [streamable|sse]", file=sys.stderr)
        sys.exit(2)
    mode = sys.argv[2] if len(sys.argv) > 2 else "streamable"
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1], mode), TIMEOUT_S))
    except BaseException:  # noqa: BLE001 - any failure (incl. ExceptionGroup, timeout) must fail the run
        traceback.print_exc()
        print("rmcp_client: failed", file=sys.stderr)
        sys.exit(1)
