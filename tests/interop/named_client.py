"""The Python MCP SDK (`mcp`, pinned in requirements.txt) against one named server of mcp-proxy
(`--named-server`, `--named-server-config`). Used by mcp-proxy/tests/named.rs; by hand:

    .venv/bin/python named_client.py http://127.0.0.1:8080/servers/NAME/mcp TOOL

Prints `tools: <names>` and `TOOL -> <text>`; exits non-zero if anything fails.
"""

import asyncio
import sys
import traceback

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, tool: str) -> None:
    async with streamable_http_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            print("tools:", ",".join(t.name for t in tools), flush=True)
            result = await session.call_tool(tool, {})
            text = next(c.text for c in result.content if c.type == "text")
            print(f"{tool} ->", text, flush=True)
            if result.isError:
                sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: named_client.py <url> <tool>", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 45))
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001 - any failure must fail the run
        traceback.print_exc()
        sys.exit(1)
