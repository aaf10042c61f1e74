//! 2026-07-28 clients through `mcp-proxy -- CMD`: the pool of children that bridges a 2025
//! stdio server to sessionless clients (see the `stdio` module docs), over loopback sockets
//! against the real binary, with `mcp-proxy/tests/fixtures/modern_child.py` as the child.
//!
//! Processes are counted in `/proc` (children of the proxy's pid, zombies included) after each
//! scenario: the pool's bound, reuse, reaping of idle and dead children, and shutdown.

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{
    HTTP_TIMEOUT, Proxy, Reply, children_of, delete, initialize, is_running, must_send, post,
    request_body, wait_until,
};

const MODERN: &str = "2026-07-28";

/// `python3 -u mcp-proxy/tests/fixtures/modern_child.py [flags]`, or `None` (after a skip line) without
/// python3.
fn child_command(flags: &[&str]) -> Option<Vec<OsString>> {
    let python = support::python()?;
    let script = support::fixtures_dir().join("modern_child.py");
    let mut command = vec![python, "-u".into(), script.into()];
    command.extend(flags.iter().map(OsString::from));
    Some(command)
}

fn start(flags: &[&str], child_flags: &[&str]) -> Option<Proxy> {
    let command = child_command(child_flags)?;
    Some(Proxy::start(flags, &command))
}

/// What a 2026-07-28 client declares, and the `_meta` extras of one request.
#[derive(Clone)]
struct Modern {
    capabilities: Value,
    extra_meta: Value,
}

impl Modern {
    fn with_capabilities(capabilities: Value) -> Self {
        Self {
            capabilities,
            extra_meta: json!({}),
        }
    }

    /// Declares sampling, elicitation and roots.
    fn all() -> Self {
        Self::with_capabilities(json!({"sampling": {}, "elicitation": {}, "roots": {}}))
    }

    fn meta(&self, extra: Value) -> Self {
        let mut next = self.clone();
        if let (Some(into), Some(from)) = (next.extra_meta.as_object_mut(), extra.as_object()) {
            into.extend(from.clone());
        }
        next
    }

    fn body(&self, id: i64, method: &str, mut params: Value) -> Value {
        let mut meta = json!({
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": self.capabilities,
        });
        if let (Some(meta), Some(extra)) = (meta.as_object_mut(), self.extra_meta.as_object()) {
            meta.extend(extra.clone());
        }
        params["_meta"] = meta;
        json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
    }

    fn headers(method: &str, params: &Value) -> Vec<(String, String)> {
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "accept".to_owned(),
                "application/json, text/event-stream".to_owned(),
            ),
            ("mcp-protocol-version".to_owned(), MODERN.to_owned()),
            ("mcp-method".to_owned(), method.to_owned()),
        ];
        if method == "tools/call"
            && let Some(name) = params["name"].as_str()
        {
            headers.push(("mcp-name".to_owned(), name.to_owned()));
        }
        headers
    }

    async fn send(&self, url: &str, id: i64, method: &str, params: Value) -> Reply {
        let headers = Self::headers(method, &params);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = self.body(id, method, params);
        must_send(Method::POST, url, &headers, body.to_string()).await
    }

    /// `tools/call` and its answer (the last message with id `id`).
    async fn call(&self, url: &str, id: i64, name: &str, arguments: Value) -> Value {
        self.call_with(url, id, json!({ "name": name, "arguments": arguments }))
            .await
    }

    async fn call_with(&self, url: &str, id: i64, params: Value) -> Value {
        let reply = self.send(url, id, "tools/call", params).await;
        assert_eq!(reply.status, StatusCode::OK, "tools/call: {reply}");
        answer(&reply, id)
    }
}

fn answer(reply: &Reply, id: i64) -> Value {
    reply
        .answer(id)
        .unwrap_or_else(|| panic!("no answer with id {id}: {reply}"))
}

/// The text of a complete tool result.
fn text(answer: &Value) -> &str {
    assert_eq!(
        answer["result"]["resultType"], "complete",
        "not a complete result: {answer}"
    );
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content: {answer}"))
}

/// The only input request of an `input_required` result: its key and request.
fn only_input(answer: &Value) -> (String, Value) {
    let inputs = input_requests(answer);
    assert_eq!(inputs.len(), 1, "not one input request: {answer}");
    inputs.into_iter().next().unwrap()
}

fn input_requests(answer: &Value) -> Vec<(String, Value)> {
    let result = &answer["result"];
    assert_eq!(result["resultType"], "input_required", "{answer}");
    assert!(
        result["requestState"].is_string(),
        "no requestState: {answer}"
    );
    let mut inputs: Vec<(String, Value)> = result["inputRequests"]
        .as_object()
        .unwrap_or_else(|| panic!("no inputRequests: {answer}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    inputs.sort_by(|a, b| a.1["method"].as_str().cmp(&b.1["method"].as_str()));
    inputs
}

/// The params of the retry of `tools/call name(arguments)` after `answer`.
fn retry(name: &str, arguments: Value, answer: &Value, responses: Value) -> Value {
    json!({
        "name": name,
        "arguments": arguments,
        "inputResponses": responses,
        "requestState": answer["result"]["requestState"],
    })
}

fn sampled(text: &str) -> Value {
    json!({ "role": "assistant", "content": { "type": "text", "text": text }, "model": "m" })
}

fn elicited(name: &str) -> Value {
    json!({ "action": "accept", "content": { "name": name } })
}

fn pid_of(text: &str) -> u32 {
    text.rsplit("pid=")
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"))
}

/// Waits until the proxy's log contains `needle`.
async fn log_shows(proxy: &Proxy, needle: &str, limit: Duration) {
    if wait_until(limit, || proxy.log().contains(needle))
        .await
        .is_err()
    {
        panic!("the proxy log never showed {needle:?}:\n{}", proxy.log());
    }
}

/// Waits until the proxy has no child at all (zombies included).
async fn no_children_left(proxy: &Proxy, limit: Duration) {
    if wait_until(limit, || proxy.children().is_empty())
        .await
        .is_err()
    {
        panic!(
            "children left: {:?}\nproxy:\n{}",
            proxy.children(),
            proxy.log()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A streamed POST response, read event by event.

struct PostStream {
    status: StatusCode,
    frames: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    buf: String,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for PostStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl PostStream {
    async fn open(url: &str, client: &Modern, id: i64, method: &str, params: Value) -> Self {
        let mut request = Request::builder().method(Method::POST).uri(url);
        for (name, value) in Modern::headers(method, &params) {
            request = request.header(name, value);
        }
        let body = client.body(id, method, params).to_string();
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let response = tokio::time::timeout(HTTP_TIMEOUT, http.request(request))
            .await
            .expect("no response head in time")
            .expect("POST failed");
        let status = response.status();
        let mut body = response.into_body();
        let (tx, frames) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data()
                    && tx.send(data).is_err()
                {
                    return;
                }
            }
        });
        PostStream {
            status,
            frames,
            buf: String::new(),
            reader,
        }
    }

    /// The next JSON-RPC message; `None` at the end of the body. Panics after `limit`.
    async fn next_message(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.buf = self.buf.replace("\r\n", "\n");
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() || data.join("").is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data.join("\n")).expect("event data is JSON"));
            }
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Err(_) => panic!("no SSE event within {limit:?} (buffered: {:?})", self.buf),
                Ok(Some(data)) => self.buf.push_str(&String::from_utf8_lossy(&data)),
                Ok(None) => return None,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_client_meets_a_2025_child() {
    let Some(proxy) = start(&[], &[]) else { return };
    let url = proxy.url();
    let client = Modern::with_capabilities(json!({"sampling": {}, "elicitation": {"form": {}}}));

    // server/discover is built from the child's initialize answer, stamped by the endpoint.
    let reply = client.send(&url, 1, "server/discover", json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply}");
    let discover = &answer(&reply, 1)["result"];
    assert_eq!(discover["resultType"], "complete", "{discover}");
    assert!(
        discover["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v == MODERN)),
        "{discover}"
    );
    assert_eq!(discover["capabilities"]["tools"]["listChanged"], true);
    assert!(
        discover["capabilities"]["logging"].is_object(),
        "{discover}"
    );
    assert_eq!(discover["instructions"], "Fixture instructions");
    assert_eq!(
        discover["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "modern-child-fixture"
    );
    assert_eq!(discover["ttlMs"], 0);
    assert_eq!(discover["cacheScope"], "private");

    let reply = client.send(&url, 2, "tools/list", json!({})).await;
    let list = answer(&reply, 2);
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "echo")),
        "{list}"
    );
    assert_eq!(list["result"]["cacheScope"], "private");

    let echo = client.call(&url, 3, "echo", json!({"text": "hello"})).await;
    assert_eq!(text(&echo), "hello");
    assert_eq!(
        echo["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "modern-child-fixture"
    );

    // The child sees a 2025 request: no 2026-07-28 _meta, but the progress token.
    let meta = client
        .meta(json!({"progressToken": "p-1", "io.modelcontextprotocol/logLevel": "error"}))
        .call(&url, 4, "meta", json!({}))
        .await;
    assert_eq!(text(&meta), r#"{"progressToken":"p-1"}"#);

    // The child declared what the client declared, nothing more.
    let caps = client.call(&url, 5, "caps", json!({})).await;
    assert_eq!(text(&caps), r#"{"elicitation":{"form":{}},"sampling":{}}"#);
    let mine = pid_of(text(&client.call(&url, 6, "whoami", json!({})).await));
    assert_eq!(
        proxy
            .live_children()
            .iter()
            .map(|p| p.pid)
            .collect::<Vec<_>>(),
        [mine],
        "one child served discovery and every call"
    );

    // A client that declared nothing gets a child of its own, which does not ask it.
    let bare = Modern::with_capabilities(json!({}));
    assert_eq!(text(&bare.call(&url, 7, "caps", json!({})).await), "{}");
    let other = pid_of(text(&bare.call(&url, 8, "whoami", json!({})).await));
    assert_ne!(other, mine);
    let refused = bare.call(&url, 9, "sample", json!({"prompt": "x"})).await;
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert_eq!(text(&refused), "client lacks sampling");
    assert_eq!(proxy.live_children().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_share_a_bounded_pool_that_is_reaped_when_idle() {
    let Some(proxy) = start(&["--max-pooled", "4", "--pool-idle-timeout", "1"], &[]) else {
        return;
    };
    let url = proxy.url();
    let client = Modern::all();

    // Count the proxy's live children while the calls run.
    let pid = proxy.pid;
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (most, done) = (most.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let live = children_of(pid).iter().filter(|p| p.state != 'Z').count();
                most.fetch_max(live, Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut calls = tokio::task::JoinSet::new();
    for id in 0..100 {
        let (url, client) = (url.clone(), client.clone());
        calls.spawn(async move {
            let answer = client.call(&url, id, "slow", json!({"ms": 30})).await;
            pid_of(text(&answer))
        });
    }
    let mut pids = HashSet::new();
    let mut answered = 0;
    while let Some(pid) = calls.join_next().await {
        pids.insert(pid.expect("a call task panicked"));
        answered += 1;
    }
    done.store(true, Ordering::Release);
    watcher.join().unwrap();
    assert_eq!(answered, 100);
    assert!(
        (2..=4).contains(&pids.len()),
        "the calls were served by {} children (want 2..=4): {pids:?}",
        pids.len()
    );
    let most = most.load(Ordering::Acquire);
    assert!(most <= 4, "{most} children were alive at once (bound 4)");

    // Idle for a second: every child is closed and reaped (no zombie either).
    no_children_left(&proxy, Duration::from_secs(10)).await;
    // And the pool starts again on demand.
    let again = client
        .call(&url, 200, "echo", json!({"text": "again"}))
        .await;
    assert_eq!(text(&again), "again");
    assert_eq!(proxy.live_children().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_dies_mid_request_fails_that_request_and_the_pool_recovers() {
    let Some(proxy) = start(&["--max-pooled", "1"], &[]) else {
        return;
    };
    let url = proxy.url();
    let client = Modern::all();
    let first = pid_of(text(&client.call(&url, 1, "whoami", json!({})).await));

    let died = client.call(&url, 2, "die", json!({})).await;
    assert_eq!(died["error"]["code"], -32603, "{died}");
    assert_eq!(
        died["error"]["message"], "the MCP server process exited",
        "{died}"
    );
    // The dead child is reaped: not even a zombie is left.
    if wait_until(Duration::from_secs(10), || {
        proxy.children().iter().all(|p| p.pid != first)
    })
    .await
    .is_err()
    {
        panic!("the dead child was not reaped: {:?}", proxy.children());
    }

    let second = pid_of(text(&client.call(&url, 3, "whoami", json!({})).await));
    assert_ne!(second, first);
    assert_eq!(
        text(&client.call(&url, 4, "echo", json!({"text": "ok"})).await),
        "ok"
    );
    let live: Vec<u32> = proxy.live_children().iter().map(|p| p.pid).collect();
    assert_eq!(live, [second]);
    assert_eq!(proxy.children().len(), 1, "{:?}", proxy.children());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_elicitation_of_the_child_go_through_input_required() {
    let Some(proxy) = start(&[], &[]) else { return };
    let url = proxy.url();
    let client = Modern::all();

    // Sampling: one round.
    let args = json!({"prompt": "What is 2+2?"});
    let round = client.call(&url, 1, "sample", args.clone()).await;
    let (key, request) = only_input(&round);
    assert_eq!(request["method"], "sampling/createMessage");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"],
        "What is 2+2?"
    );
    let done = client
        .call_with(
            &url,
            2,
            retry("sample", args, &round, json!({ key: sampled("four") })),
        )
        .await;
    assert_eq!(text(&done), "sampled: four");

    // Elicitation, and roots.
    let args = json!({"message": "Who are you?"});
    let round = client.call(&url, 3, "elicit", args.clone()).await;
    let (key, request) = only_input(&round);
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["message"], "Who are you?");
    let done = client
        .call_with(
            &url,
            4,
            retry("elicit", args, &round, json!({ key: elicited("Ada") })),
        )
        .await;
    assert_eq!(text(&done), "elicited: accept Ada");
    let round = client.call(&url, 5, "roots", json!({})).await;
    let (key, request) = only_input(&round);
    assert_eq!(request["method"], "roots/list");
    let roots = json!({"roots": [{"uri": "file:///a"}, {"uri": "file:///b"}]});
    let done = client
        .call_with(
            &url,
            6,
            retry("roots", json!({}), &round, json!({ key: roots })),
        )
        .await;
    assert_eq!(text(&done), "roots: 2");

    // Two rounds, one after the other: the second retry carries the first answer in the
    // sealed state, which the child does not see twice.
    let round1 = client.call(&url, 7, "twice", json!({})).await;
    let (key1, request) = only_input(&round1);
    assert_eq!(request["method"], "elicitation/create");
    let round2 = client
        .call_with(
            &url,
            8,
            retry(
                "twice",
                json!({}),
                &round1,
                json!({ &key1: elicited("Bo") }),
            ),
        )
        .await;
    let (key2, request) = only_input(&round2);
    assert_eq!(request["method"], "sampling/createMessage");
    assert_ne!(key1, key2);
    let done = client
        .call_with(
            &url,
            9,
            retry("twice", json!({}), &round2, json!({ key2: sampled("hi") })),
        )
        .await;
    assert_eq!(text(&done), "twice: Bo hi");

    // Two requests written together: one round asking both.
    let round = client.call(&url, 10, "both", json!({})).await;
    let inputs = input_requests(&round);
    let methods: Vec<&str> = inputs
        .iter()
        .map(|(_, r)| r["method"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(methods, ["elicitation/create", "sampling/createMessage"]);
    let responses = json!({ &inputs[0].0: elicited("Cy"), &inputs[1].0: sampled("yo") });
    let done = client
        .call_with(&url, 11, retry("both", json!({}), &round, responses))
        .await;
    assert_eq!(text(&done), "both: Cy yo");

    // Requests the client cannot be asked: ping is answered by the proxy, the rest refused.
    let pinged = client.call(&url, 12, "ping_client", json!({})).await;
    assert_eq!(text(&pinged), "pinged: {}");
    let odd = client.call(&url, 13, "odd", json!({})).await;
    assert_eq!(text(&odd), "odd: -32601");

    // A retry that does not fit the waiting call (other arguments) is refused, and the call
    // still waits for its own retry.
    let args = json!({"prompt": "p"});
    let round = client.call(&url, 14, "sample", args.clone()).await;
    let (key, _) = only_input(&round);
    let foreign = client
        .call_with(
            &url,
            15,
            retry(
                "sample",
                json!({"prompt": "other"}),
                &round,
                json!({ &key: sampled("no") }),
            ),
        )
        .await;
    assert_eq!(foreign["error"]["code"], -32602, "{foreign}");
    let done = client
        .call_with(
            &url,
            16,
            retry("sample", args, &round, json!({ key: sampled("yes") })),
        )
        .await;
    assert_eq!(text(&done), "sampled: yes");
    assert_eq!(proxy.live_children().len(), 1, "one child served it all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_retries_releases_the_child_request_after_the_timeout() {
    let Some(proxy) = start(&["--max-pooled", "1", "--input-timeout", "1"], &[]) else {
        return;
    };
    let url = proxy.url();
    let client = Modern::all();
    let pid = pid_of(text(&client.call(&url, 1, "whoami", json!({})).await));

    let args = json!({"prompt": "never answered"});
    let round = client.call(&url, 2, "sample", args.clone()).await;
    let (key, _) = only_input(&round);
    // The child's request fails after the timeout, and the call is cancelled at the child.
    log_shows(
        &proxy,
        "fixture: sampling failed: the client did not answer in time",
        Duration::from_secs(10),
    )
    .await;
    log_shows(&proxy, "fixture cancelled", Duration::from_secs(5)).await;

    // The child is free again (the only one the pool may have).
    let again = client.call(&url, 3, "whoami", json!({})).await;
    assert_eq!(pid_of(text(&again)), pid);
    // A retry after that is refused: the request it answers is gone.
    let late = client
        .call_with(
            &url,
            4,
            retry("sample", args, &round, json!({ key: sampled("late") })),
        )
        .await;
    assert_eq!(late["error"]["code"], -32602, "{late}");
    assert!(
        late["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no longer waiting")),
        "{late}"
    );
    let live: Vec<u32> = proxy.live_children().iter().map(|p| p.pid).collect();
    assert_eq!(live, [pid]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_makes_a_request_wait_then_fail() {
    let Some(proxy) = start(&["--max-pooled", "1", "--pool-wait", "0.5"], &[]) else {
        return;
    };
    let url = proxy.url();
    let client = Modern::all();
    // A call waiting for its retry holds the only child.
    let args = json!({"prompt": "hold"});
    let round = client.call(&url, 1, "sample", args.clone()).await;
    let (key, _) = only_input(&round);

    let started = Instant::now();
    let busy = client.call(&url, 2, "echo", json!({"text": "x"})).await;
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(busy["error"]["code"], -32000, "{busy}");
    assert_eq!(
        busy["error"]["message"],
        "all 1 MCP server processes are busy; retry later"
    );
    assert_eq!(proxy.live_children().len(), 1);

    let done = client
        .call_with(
            &url,
            3,
            retry("sample", args, &round, json!({ key: sampled("ok") })),
        )
        .await;
    assert_eq!(text(&done), "sampled: ok");
    assert_eq!(
        text(&client.call(&url, 4, "echo", json!({"text": "x"})).await),
        "x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_logs_reach_the_request_stream() {
    let Some(proxy) = start(&[], &[]) else { return };
    let url = proxy.url();
    let client = Modern::all();

    let reply = client
        .meta(json!({"progressToken": "tok-1"}))
        .send(
            &url,
            1,
            "tools/call",
            json!({"name": "progress", "arguments": {"steps": 3}}),
        )
        .await;
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{reply}"
    );
    let messages = reply.messages();
    let progress: Vec<(Value, Value)> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["progress"].clone(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [
            (json!("tok-1"), json!(1)),
            (json!("tok-1"), json!(2)),
            (json!("tok-1"), json!(3))
        ]
    );
    assert_eq!(text(messages.last().unwrap()), "progressed");

    // After a retry, the child's progress (under the first token it knows) goes to the retry's
    // stream, under the retry's token.
    let round = client
        .meta(json!({"progressToken": "first"}))
        .call(&url, 2, "ask_then_progress", json!({}))
        .await;
    let (key, _) = only_input(&round);
    let reply = client
        .meta(json!({"progressToken": "second"}))
        .send(
            &url,
            3,
            "tools/call",
            retry(
                "ask_then_progress",
                json!({}),
                &round,
                json!({ key: elicited("x") }),
            ),
        )
        .await;
    let messages = reply.messages();
    let tokens: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| &m["params"]["progressToken"])
        .collect();
    assert_eq!(tokens, [&json!("second"), &json!("second")], "{reply}");
    assert_eq!(text(messages.last().unwrap()), "asked then progressed");

    // Logs at and above the request's logLevel only; the child was told the level.
    let reply = client
        .meta(json!({"io.modelcontextprotocol/logLevel": "info"}))
        .send(
            &url,
            4,
            "tools/call",
            json!({"name": "log", "arguments": {}}),
        )
        .await;
    let messages = reply.messages();
    let levels: Vec<&str> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| m["params"]["level"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(levels, ["info", "error"], "{reply}");
    log_shows(&proxy, "fixture level info", Duration::from_secs(5)).await;
    // Without a logLevel: no log messages at all.
    let reply = client
        .send(
            &url,
            5,
            "tools/call",
            json!({"name": "log", "arguments": {}}),
        )
        .await;
    assert!(
        reply
            .messages()
            .iter()
            .all(|m| m["method"] != "notifications/message"),
        "{reply}"
    );
    assert_eq!(text(&answer(&reply, 5)), "logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_changed_of_the_child_reaches_the_listen_stream() {
    let Some(proxy) = start(&[], &[]) else { return };
    let url = proxy.url();
    let client = Modern::all();
    let mut listen = PostStream::open(
        &url,
        &client,
        70,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
    )
    .await;
    assert_eq!(listen.status, StatusCode::OK);
    let ack = listen.next_message(Duration::from_secs(10)).await.unwrap();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true);

    let changed = client.call(&url, 1, "change", json!({})).await;
    assert_eq!(text(&changed), "changed");
    let note = listen.next_message(Duration::from_secs(10)).await.unwrap();
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    assert_eq!(
        note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        70
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_stream_cancels_the_call_at_the_child() {
    let Some(proxy) = start(&["--max-pooled", "1"], &[]) else {
        return;
    };
    let url = proxy.url();
    let client = Modern::all();
    let pid = pid_of(text(&client.call(&url, 1, "whoami", json!({})).await));
    let mut stream = PostStream::open(
        &url,
        &client.meta(json!({"progressToken": 9})),
        2,
        "tools/call",
        json!({"name": "slow", "arguments": {"ms": 20000}}),
    )
    .await;
    let first = stream.next_message(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first["method"], "notifications/progress");
    drop(stream);
    log_shows(&proxy, "fixture cancelled", Duration::from_secs(10)).await;
    // The child is free again.
    let again = client.call(&url, 3, "whoami", json!({})).await;
    assert_eq!(pid_of(text(&again)), pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_2025_and_2026_use_the_same_proxy_at_once() {
    let Some(proxy) = start(&[], &[]) else { return };
    let url = proxy.url();
    let session = initialize(&proxy).await;
    let client = Modern::all();
    // One client of each era, side by side, each call after the other (a pooled child works
    // on one request at a time: concurrent modern calls would start more children).
    let legacy = {
        let (url, session) = (url.clone(), session.clone());
        tokio::spawn(async move {
            for i in 0..10 {
                let text = format!("legacy {i}");
                let params = json!({"name": "echo", "arguments": {"text": text}});
                let reply = post(
                    &url,
                    Some(&session),
                    &request_body(100 + i, "tools/call", params),
                )
                .await;
                assert_eq!(
                    answer(&reply, 100 + i)["result"]["content"][0]["text"],
                    text
                );
            }
        })
    };
    let modern = {
        let (url, client) = (url.clone(), client.clone());
        tokio::spawn(async move {
            for i in 0..10 {
                let text = format!("modern {i}");
                let reply = client
                    .call(&url, 200 + i, "echo", json!({"text": text}))
                    .await;
                assert_eq!(self::text(&reply), text);
            }
        })
    };
    legacy.await.expect("the 2025 client failed");
    modern.await.expect("the 2026-07-28 client failed");
    // The session's child and the pool's child.
    assert_eq!(proxy.live_children().len(), 2, "{:?}", proxy.children());
    let pooled = pid_of(text(&client.call(&url, 1, "whoami", json!({})).await));
    let params = json!({"name": "whoami", "arguments": {}});
    let reply = post(&url, Some(&session), &request_body(2, "tools/call", params)).await;
    let own = pid_of(
        answer(&reply, 2)["result"]["content"][0]["text"]
            .as_str()
            .unwrap(),
    );
    assert_ne!(own, pooled);
    // Ending the session ends its child only.
    assert_eq!(delete(&url, &session).await.status, StatusCode::OK);
    if wait_until(Duration::from_secs(10), || {
        proxy.children().iter().all(|p| p.pid != own)
    })
    .await
    .is_err()
    {
        panic!("the session's child is still there: {:?}", proxy.children());
    }
    let live: Vec<u32> = proxy.live_children().iter().map(|p| p.pid).collect();
    assert_eq!(live, [pooled]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_and_waiting_children() {
    let Some(mut proxy) = start(&["--graceful-shutdown-timeout", "3"], &[]) else {
        return;
    };
    let url = proxy.url();
    let client = Modern::all();
    let other = Modern::with_capabilities(json!({"sampling": {}}));
    // An idle child, and one held by a call waiting for its retry.
    let idle = pid_of(text(&client.call(&url, 1, "whoami", json!({})).await));
    let holder = pid_of(text(&other.call(&url, 2, "whoami", json!({})).await));
    let round = other.call(&url, 3, "sample", json!({"prompt": "p"})).await;
    only_input(&round);
    let before: Vec<_> = proxy.live_children();
    assert_eq!(before.len(), 2);
    assert!(before.iter().any(|p| p.pid == idle) && before.iter().any(|p| p.pid == holder));

    proxy.sigterm();
    let status = proxy.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        proxy.log()
    );
    for child in &before {
        assert!(!is_running(child), "{child:?} outlived the proxy");
    }
    // The waiting child request was answered before the child was closed.
    assert!(
        proxy
            .log()
            .contains("fixture: error answer to q1: the MCP server processes are shutting down"),
        "{}",
        proxy.log()
    );
    no_children_left(&proxy, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_speaks_2026_gets_requests_unchanged() {
    let Some(proxy) = start(&[], &["--modern"]) else {
        return;
    };
    let url = proxy.url();
    let client = Modern::all();
    let reply = client.send(&url, 1, "server/discover", json!({})).await;
    let discover = answer(&reply, 1);
    assert_eq!(
        discover["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "modern-speaking-child",
        "{discover}"
    );
    let meta = client.call(&url, 2, "meta", json!({})).await;
    let seen: Value = serde_json::from_str(text(&meta)).unwrap();
    assert_eq!(seen["io.modelcontextprotocol/protocolVersion"], MODERN);
    assert!(seen["io.modelcontextprotocol/clientCapabilities"].is_object());
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_child_does_not_stall_discovery() {
    // 100 log messages on every tools/list, also the one the endpoint sends while describing
    // the server, where no client reads them.
    let Some(proxy) = start(&[], &["--chatty"]) else {
        return;
    };
    let url = proxy.url();
    let client = Modern::all();
    let reply = client.send(&url, 1, "server/discover", json!({})).await;
    assert_eq!(
        answer(&reply, 1)["result"]["resultType"],
        "complete",
        "{reply}"
    );
    // A client's own tools/list gets them, at the level it asked for.
    let reply = client
        .meta(json!({"io.modelcontextprotocol/logLevel": "info"}))
        .send(&url, 2, "tools/list", json!({}))
        .await;
    let messages = reply.messages();
    let logs = messages
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .count();
    assert_eq!(logs, 100, "{reply}");
    assert!(answer(&reply, 2)["result"]["tools"].is_array());
}
