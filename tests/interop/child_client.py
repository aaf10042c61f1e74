"""Interop client for the stdio bridge (mcp-proxy/tests/stdio.rs): the official Python MCP SDK (`mcp`, pinned in
requirements.txt) talking to `mcp-proxy -- node <server-everything> stdio`.

    .venv/bin/python child_client.py <url> [streamable|sse]

Declares the `sampling` capability (by passing a sampling callback that answers with a fixed text),
then lists tools, calls `echo`, calls `trigger-long-running-operation` with a progress callback, and
calls `trigger-sampling-request` (the child asks this client to sample, through the proxy).
Prints `session: <id>`, `tools: a,b,c`, `echo -> <text>`, `progress: <count>`, `long -> <text>`,
`sampling requests: <count>`, `sampling -> <text on one line>`. Exits non-zero (error on stderr) if
anything fails, or after 45 s.
"""

import asyncio
import sys
import traceback

from mcp import ClientSession, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TIMEOUT_S = 45
# What this client's "model" answers to every sampling request.
MODEL_TEXT = "fixed sampling reply from child_client.py"


def first_text(result) -> str:
    if result.isError:
        raise RuntimeError(f"tool returned isError: {result!r}")
    for item in result.content:
        if item.type == "text":
            return item.text
    raise RuntimeError(f"tool result has no text content: {result!r}")


async def session_calls(read, write, get_session_id=None) -> None:
    sampling_requests = 0

    async def sampling(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        nonlocal sampling_requests
        sampling_requests += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=MODEL_TEXT),
            model="child-client-model",
        )

    async with ClientSession(read, write, sampling_callback=sampling) as s:
        await s.initialize()
        if get_session_id is not None:
            print("session:", get_session_id() or "-", flush=True)
        tools = (await s.list_tools()).tools
        print("tools:", ",".join(t.name for t in tools), flush=True)

        r = await s.call_tool("echo", {"message": "hello child"})
        print("echo ->", first_text(r), flush=True)

        progress = 0

        async def on_progress(value, total, message) -> None:
            nonlocal progress
            progress += 1

        r = await s.call_tool(
            "trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress
        )
        print("progress:", progress, flush=True)
        print("long ->", first_text(r), flush=True)

        r = await s.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 10})
        print("sampling requests:", sampling_requests, flush=True)
        print("sampling ->", " ".join(first_text(r).split()), flush=True)


async def main(url: str, mode: str) -> None:
    if mode == "sse":
        async with sse_client(url) as (read, write):
            await session_calls(read, write)
        return
    async with create_mcp_http_client() as http_client:
        # Leaving the context sends DELETE with the session id (terminate_on_close=True).
        async with streamable_http_client(url, http_client=http_client) as (read, write, get_session_id):
            await session_calls(read, write, get_session_id)


if __name__ == "__main__":
    if len(sys.argv) < 2 or (len(sys.argv) > 2 and sys.argv[2] not in ("streamable", "sse")):
        print("usage: child_client.py <url> [streamable|sse]", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "streamable"), TIMEOUT_S))
    except BaseException:  # noqa: BLE001 - any failure (incl. ExceptionGroup, timeout) must fail the run
        traceback.print_exc()
        print("child_client: failed", file=sys.stderr)
        sys.exit(1)
