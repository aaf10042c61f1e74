"""Interop client: the official Python MCP SDK 2.x (`mcp`, pinned in requirements-modern.txt,
installed in .venv-modern) against an MCP server over Streamable HTTP. Used by
mcp-proxy/tests/interop_modern.rs; can also be run by hand:

    .venv-modern/bin/python py_modern_client.py <url> <2026-07-28|auto|legacy> [steps]

The mode is passed as `Client(..., mode=...)`: a version pins the 2026-07-28 wire without a probe,
`auto` probes `server/discover` and falls back to `initialize`, `legacy` runs the 2025 handshake.
`steps` is a comma list (default: tools,echo,add,elicit,sample, plus listen unless legacy):
    discover  client.session.send_discover("2026-07-28")  (2026-07-28 only)
    tools     client.list_tools()
    echo      tools/call echo {"text": ...}
    add       tools/call add {"a": 2, "b": 3}
    elicit    tools/call test_elicitation; `elicitation_callback` answers
    sample    tools/call test_sampling; `sampling_callback` answers
    listen    `async with client.listen(tools_list_changed=True)`, tools/call
              test_trigger_tool_change, wait for the ToolsListChanged event (2026-07-28 only)
    progress  a tool call with `progress_callback`: progress reaches the client
              (INTEROP_TARGET=everything only)

INTEROP_TARGET picks the server's tools: `builtin` (default, mcp-proxy's built-in server, as
above) or `everything` (@modelcontextprotocol/server-everything, e.g. behind
`mcp-proxy -- npx -y @modelcontextprotocol/server-everything`): echo {message},
trigger-elicitation-request, trigger-sampling-request {prompt}, trigger-long-running-operation
for progress, and listen(resources_list_changed=True) for the ResourcesListChanged event after
gzip-file-as-resource (a data: URI, no network) registers a resource.

In 2026-07-28 the server asks for input with an `input_required` result; `Client.call_tool`
fulfils it through the same callbacks that serve 2025 server->client requests and retries.

The transport is `streamable_http_client(url, http_client=...)`, which is what `Client(url)`
builds itself; it is spelled out only to hang httpx event hooks on it that record the wire.

Output: one JSON object per line on stdout: `{"step": ...}` for what was observed, `{"wire": ...}`
for every HTTP exchange (HTTP method, MCP headers, JSON-RPC method and id, whether params carried
inputResponses/requestState, status, and the body of a 4xx/5xx). Exits non-zero with
`py_modern_client error: ...` on stderr on any failure, or after 45 s.
"""

import asyncio
import json
import os
import sys
import traceback

import anyio

import mcp.types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourcesListChanged, ToolsListChanged
from mcp.shared._httpx_utils import create_mcp_http_client

TIMEOUT_S = 45
NOTIFY_TIMEOUT_S = 10
MODERN = "2026-07-28"
ALL_STEPS = ["discover", "tools", "echo", "add", "elicit", "sample", "listen", "progress"]
ELICIT_RESPONSE = "interop elicited answer"
SAMPLED_TEXT = "interop sampled text"

TARGET = os.environ.get("INTEROP_TARGET", "builtin")
TOOLS = {
    "builtin": {
        "echo": ("echo", {"text": "hello modern interop"}),
        "elicit": ("test_elicitation", {"message": "interop asks"}),
        "elicit_content": {"response": ELICIT_RESPONSE},
        "sample": ("test_sampling", {"prompt": "interop prompt"}),
        "listen": ({"tools_list_changed": True}, "toolsListChanged", ToolsListChanged),
        "trigger": ("test_trigger_tool_change", {}),
    },
    "everything": {
        "echo": ("echo", {"message": "hello modern interop"}),
        "elicit": ("trigger-elicitation-request", {}),
        # Its form requires `name`.
        "elicit_content": {"name": ELICIT_RESPONSE},
        "sample": ("trigger-sampling-request", {"prompt": "interop prompt"}),
        "progress": ("trigger-long-running-operation", {"duration": 1, "steps": 3}),
        "listen": ({"resources_list_changed": True}, "resourcesListChanged", ResourcesListChanged),
        "trigger": ("gzip-file-as-resource", {"name": "interop.txt.gz", "data": "data:text/plain;base64,aW50ZXJvcA=="}),
    },
}.get(TARGET)


def out(obj) -> None:
    print(json.dumps(obj), flush=True)


class Failure(Exception):
    pass


def first_text(result) -> str:
    if result.is_error:
        raise Failure(f"tool returned isError: {result!r}")
    for item in result.content:
        if item.type == "text":
            return item.text
    raise Failure(f"tool result has no text content: {result!r}")


def all_text(result) -> str:
    """Every text item of a tool result, joined (server-everything answers in several)."""
    if result.is_error:
        raise Failure(f"tool returned isError: {result!r}")
    return "\n".join(item.text for item in result.content if item.type == "text")


def recording_hooks(label: str):
    async def on_request(request) -> None:
        rpc = None
        msg = None
        body = request.content if request.method == "POST" else b""
        if body:
            try:
                msg = json.loads(body)
                pick = lambda m: m.get("method") or ("result" if "result" in m else "error")  # noqa: E731
                rpc = [pick(m) for m in msg] if isinstance(msg, list) else pick(msg)
            except ValueError:
                rpc = "(unparsed)"
        single = msg if isinstance(msg, dict) else {}
        params = single.get("params") if isinstance(single.get("params"), dict) else {}
        request.extensions["interop_wire"] = {
            "client": label,
            "http": request.method,
            "rpc": rpc,
            "id": single.get("id"),
            "inputResponses": "inputResponses" in params,
            "requestState": "requestState" in params,
            "mcp-protocol-version": request.headers.get("mcp-protocol-version"),
            "mcp-method": request.headers.get("mcp-method"),
            "mcp-name": request.headers.get("mcp-name"),
            "mcp-session-id": request.headers.get("mcp-session-id"),
        }
        param_headers = [k for k in request.headers.keys() if k.lower().startswith("mcp-param-")]
        if param_headers:
            request.extensions["interop_wire"]["mcp-param"] = param_headers

    async def on_response(response) -> None:
        wire = dict(response.request.extensions.get("interop_wire", {}))
        wire["status"] = response.status_code
        wire["content-type"] = response.headers.get("content-type")
        if response.status_code >= 400:
            await response.aread()
            wire["body"] = response.text[:2000]
        out({"wire": wire})

    return {"request": [on_request], "response": [on_response]}


async def main(url: str, mode: str, steps: list[str]) -> None:
    seen = {"elicit": [], "sample": []}

    async def on_elicit(context, params):
        seen["elicit"].append(params.message)
        return types.ElicitResult(action="accept", content=TOOLS["elicit_content"])

    async def on_sample(context, params):
        seen["sample"].append(len(params.messages))
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=SAMPLED_TEXT), model="m"
        )

    label = f"py-{mode}"
    async with create_mcp_http_client() as http_client:
        http_client.event_hooks = recording_hooks(label)
        transport = streamable_http_client(url, http_client=http_client)
        async with Client(
            transport,
            mode=mode,
            client_info=types.Implementation(name=f"py-modern-{mode}", version="1.0.0"),
            elicitation_callback=on_elicit,
            sampling_callback=on_sample,
        ) as client:
            info = client.server_info
            out(
                {
                    "step": "connect",
                    "protocolVersion": client.protocol_version,
                    "server": info.model_dump(mode="json", exclude_none=True) if info else None,
                }
            )
            for step in steps:
                await run_step(client, step, seen)
    out({"step": "done"})


async def run_step(client: Client, step: str, seen: dict) -> None:
    if step == "discover":
        # `session.discover()` would return the result adopted at connect, which a pinned client
        # synthesizes without asking; send the request itself.
        dumped = await client.session.send_discover(MODERN)
        out(
            {
                "step": "discover",
                "supportedVersions": dumped.get("supportedVersions"),
                "capabilities": dumped.get("capabilities"),
                "serverInfo": (dumped.get("_meta") or {}).get("io.modelcontextprotocol/serverInfo"),
                "ttlMs": dumped.get("ttlMs"),
                "cacheScope": dumped.get("cacheScope"),
            }
        )
    elif step == "tools":
        tools = (await client.list_tools()).tools
        out({"step": "tools", "names": [t.name for t in tools]})
    elif step == "echo":
        out({"step": "echo", "text": first_text(await client.call_tool(*TOOLS["echo"]))})
    elif step == "add":
        out({"step": "add", "text": first_text(await client.call_tool("add", {"a": 2, "b": 3}))})
    elif step == "elicit":
        before = len(seen["elicit"])
        text = all_text(await client.call_tool(*TOOLS["elicit"]))
        handled = len(seen["elicit"]) - before
        if handled != 1:
            raise Failure(f"elicitation callback ran {handled} times (want 1); result: {text}")
        if ELICIT_RESPONSE not in text:
            raise Failure(f"test_elicitation result lacks the response: {text}")
        out({"step": "elicit", "text": text, "handled": handled, "message": seen["elicit"][-1]})
    elif step == "sample":
        before = len(seen["sample"])
        text = all_text(await client.call_tool(*TOOLS["sample"]))
        handled = len(seen["sample"]) - before
        if handled != 1:
            raise Failure(f"sampling callback ran {handled} times (want 1); result: {text}")
        if SAMPLED_TEXT not in text:
            raise Failure(f"test_sampling result lacks the sampled text: {text}")
        out({"step": "sample", "text": text, "handled": handled})
    elif step == "listen":
        filter_args, honored_key, event_type = TOOLS["listen"]
        async with client.listen(**filter_args) as sub:
            honored = sub.honored.model_dump(by_alias=True, mode="json", exclude_none=True)
            out({"step": "listen", "honored": honored, "subscriptionId": sub.subscription_id})
            if honored.get(honored_key) is not True:
                raise Failure(f"listen ack did not honour {honored_key}: {honored}")
            r = await client.call_tool(*TOOLS["trigger"])
            out({"step": "trigger", "text": all_text(r)})
            try:
                with anyio.fail_after(NOTIFY_TIMEOUT_S):
                    event = await anext(sub)
            except TimeoutError:
                raise Failure(f"no {event_type.__name__} event within {NOTIFY_TIMEOUT_S} s") from None
            if not isinstance(event, event_type):
                raise Failure(f"unexpected listen event: {event!r}")
            out({"step": "list_changed", "event": type(event).__name__})
        out({"step": "listen_closed"})
    elif step == "progress":
        if "progress" not in TOOLS:
            raise Failure(f"target {TARGET} has no progress tool")
        seen = []

        async def on_progress(progress, total, message):
            seen.append(progress)

        r = await client.call_tool(*TOOLS["progress"], progress_callback=on_progress)
        out({"step": "progress", "text": first_text(r), "progress": seen})
        if not seen:
            raise Failure("no progress notification reached the client")
    else:
        raise Failure(f"unknown step {step}")


def parse_args(argv: list[str]) -> tuple[str, str, list[str]]:
    if len(argv) < 2 or argv[1] not in (MODERN, "auto", "legacy"):
        raise Failure(f"usage: py_modern_client.py <url> <{MODERN}|auto|legacy> [steps]")
    if TOOLS is None:
        raise Failure(f"unknown INTEROP_TARGET {TARGET}")
    url, mode = argv[0], argv[1]
    if len(argv) > 2:
        steps = [s for s in argv[2].split(",") if s]
    else:
        steps = ["tools", "echo", "add", "elicit", "sample"] + ([] if mode == "legacy" else ["listen"])
    for s in steps:
        if s not in ALL_STEPS:
            raise Failure(f"unknown step {s}")
    return url, mode, steps


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(*parse_args(sys.argv[1:])), TIMEOUT_S))
    except BaseException as err:  # noqa: BLE001 - any failure (incl. ExceptionGroup, timeout) must fail the run
        traceback.print_exc()
        print(f"py_modern_client error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
