"""Cluster client (mcp-proxy/tests/cluster.rs, issue 11): the official Python MCP SDK (`mcp`, pinned in
requirements.txt) through a load balancer in front of several mcp-proxy instances.

    .venv/bin/python cluster_client.py <url> <builtin|everything>

`builtin`: mcp-proxy's built-in server; `everything`: `-- node <server-everything> stdio`. Declares
`sampling` (a callback answering with a fixed text), then lists tools, calls echo, the server's
progress tool (with a progress callback) and its sampling tool (the server asks this client to
sample; the answer is a POST of its own, which a round-robin balancer sends to another instance),
and ends the session (DELETE on leaving the transport). Prints `session: <id>`, `tools: a,b,c`,
`echo -> <text>`, `progress: <count>`, `sampling requests: <count>`, `sampling -> <text on one line>`.
Exits non-zero (error on stderr) if anything fails, or after 45 s.
"""

import asyncio
import sys
import traceback

from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TIMEOUT_S = 45
# What this client's "model" answers to every sampling request.
MODEL_TEXT = "fixed sampling reply from cluster_client.py"

# The tools (and arguments) of each server.
TARGETS = {
    "builtin": {
        "echo": ("echo", {"text": "hello cluster"}),
        "progress": ("test_tool_with_progress", {}),
        "sampling": ("test_sampling", {"prompt": "hi"}),
    },
    "everything": {
        "echo": ("echo", {"message": "hello cluster"}),
        "progress": ("trigger-long-running-operation", {"duration": 1, "steps": 3}),
        "sampling": ("trigger-sampling-request", {"prompt": "hi", "maxTokens": 10}),
    },
}


def first_text(result) -> str:
    if result.isError:
        raise RuntimeError(f"tool returned isError: {result!r}")
    for item in result.content:
        if item.type == "text":
            return item.text
    raise RuntimeError(f"tool result has no text content: {result!r}")


async def main(url: str, tools) -> None:
    sampling_requests = 0

    async def sampling(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        nonlocal sampling_requests
        sampling_requests += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=MODEL_TEXT),
            model="cluster-client-model",
        )

    async with create_mcp_http_client() as http_client:
        # Leaving the context sends DELETE with the session id (terminate_on_close=True).
        async with streamable_http_client(url, http_client=http_client) as (read, write, get_session_id):
            async with ClientSession(read, write, sampling_callback=sampling) as s:
                await s.initialize()
                print("session:", get_session_id() or "-", flush=True)
                listed = (await s.list_tools()).tools
                print("tools:", ",".join(t.name for t in listed), flush=True)
                print("echo ->", first_text(await s.call_tool(*tools["echo"])), flush=True)

                progress = 0

                async def on_progress(value, total, message) -> None:
                    nonlocal progress
                    progress += 1

                first_text(await s.call_tool(*tools["progress"], progress_callback=on_progress))
                print("progress:", progress, flush=True)

                r = await s.call_tool(*tools["sampling"])
                print("sampling requests:", sampling_requests, flush=True)
                print("sampling ->", " ".join(first_text(r).split()), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in TARGETS:
        print("usage: cluster_client.py <url> <builtin|everything>", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1], TARGETS[sys.argv[2]]), TIMEOUT_S))
    except BaseException:  # noqa: BLE001 - any failure (incl. ExceptionGroup, timeout) must fail the run
        traceback.print_exc()
        print("cluster_client: failed", file=sys.stderr)
        sys.exit(1)
