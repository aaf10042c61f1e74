"""Interop client: the official Python MCP SDK (`mcp`, pinned in requirements.txt) talking to an MCP
server over HTTP. Used by mcp-proxy/tests/interop.rs; can also be run by hand:

    .venv/bin/python py_client.py <url> [streamable|sse]     # MCP_TOKEN=... adds a bearer header

Prints `server: ...`, `session: <id>`, `tools: a,b,c`, `echo -> <text> isError: <bool>`,
`add -> <text> isError: <bool>`. Exits non-zero (error on stderr) if anything fails, or after 45 s.
"""

import asyncio
import os
import sys
import traceback

from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TIMEOUT_S = 45


def first_text(result) -> str:
    for item in result.content:
        if item.type == "text":
            return item.text
    raise RuntimeError(f"tool result has no text content: {result!r}")


async def session_calls(read, write, get_session_id=None) -> None:
    async with ClientSession(read, write) as s:
        init = await s.initialize()
        print("server:", init.serverInfo.name, "protocol:", init.protocolVersion, flush=True)
        if get_session_id is not None:
            print("session:", get_session_id() or "-", flush=True)
        tools = (await s.list_tools()).tools
        print("tools:", ",".join(t.name for t in tools), flush=True)
        r = await s.call_tool("echo", {"text": "hello interop"})
        print("echo ->", first_text(r), "isError:", str(bool(r.isError)).lower(), flush=True)
        r = await s.call_tool("add", {"a": 2, "b": 3})
        print("add ->", first_text(r), "isError:", str(bool(r.isError)).lower(), flush=True)


async def main(url: str, mode: str) -> None:
    headers = {"Authorization": f"Bearer {os.environ['MCP_TOKEN']}"} if "MCP_TOKEN" in os.environ else None
    if mode == "sse":
        async with sse_client(url, headers=headers) as (read, write):
            await session_calls(read, write)
        return
    async with create_mcp_http_client(headers=headers) as http_client:
        # Leaving the context sends DELETE with the session id (terminate_on_close=True).
        async with streamable_http_client(url, http_client=http_client) as (read, write, get_session_id):
            await session_calls(read, write, get_session_id)


if __name__ == "__main__":
    if len(sys.argv) < 2 or (len(sys.argv) > 2 and sys.argv[2] not in ("streamable", "sse")):
        print("usage: py_client.py <url> [streamable|sse]", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "streamable"), TIMEOUT_S))
    except BaseException:  # noqa: BLE001 - any failure (incl. ExceptionGroup, timeout) must fail the run
        traceback.print_exc()
        print("py_client: failed", file=sys.stderr)
        sys.exit(1)
