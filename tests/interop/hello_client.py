"""The Python MCP SDK (`mcp`, pinned in requirements.txt) against the README's one-tool server
(examples/hello.rs). Used by tests/newcomer.rs; by hand:

    .venv/bin/python hello_client.py http://127.0.0.1:3000/mcp

Prints `tools: add` and `add -> <text> isError: <bool>`; exits non-zero if anything fails.
"""

import asyncio
import sys
import traceback

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url: str) -> None:
    async with streamable_http_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            print("tools:", ",".join(t.name for t in tools), flush=True)
            result = await session.call_tool("add", {"a": 2, "b": 3})
            text = next(c.text for c in result.content if c.type == "text")
            print("add ->", text, "isError:", str(bool(result.isError)).lower(), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: hello_client.py <url>", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), 45))
    except BaseException:  # noqa: BLE001 - any failure must fail the run
        traceback.print_exc()
        sys.exit(1)
