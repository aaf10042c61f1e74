//! The `cluster` module over real sockets with a real `redis-server` (feature `redis`): two or
//! three `McpStack` instances in this process, each on its own loopback port, sharing one Redis.
//!
//! `redis-server` comes from Debian's package, which `.ci/run` installs; these tests are
//! `#[ignore]`d so a plain `cargo test` lists them as ignored without it, and they fail (not
//! pass) when asked for and it is missing.

mod common;

use common::{
    ACCEPT_BOTH, ACCEPT_SSE, JSON, bounded, initialize, initialize_body, one_message, open, post,
    request_body, session_headers, sse_events,
};
use http::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use mcp_tower_http::auth::ApiKeys;
use mcp_tower_http::cluster::{Cluster, ClusterConfig, FORWARDED_HEADER};
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::{McpStack, SessionContext};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

const V: &str = "2025-11-25";
const SECRET: &str = "cluster-test-secret";

/// A `redis-server` on a free loopback port, in a temporary directory; killed on drop.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self::start_on(port)
    }

    fn start_on(port: u16) -> Redis {
        let dir =
            std::env::temp_dir().join(format!("mcp-cluster-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (`.ci/run` installs it from Debian's packages)");
        let redis = Redis { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One instance of the cluster on a loopback port; dropping it stops it like a killed process
/// (its port refuses connections).
struct Instance {
    url: String,
    addr: SocketAddr,
    cluster: Cluster,
    task: JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How an instance is built.
#[derive(Clone, Copy)]
enum Server {
    /// The built-in server: rebuildable.
    Everything,
    /// The same server behind a closure, which does not say it can be rebuilt: like a child
    /// process, its sessions end with their instance.
    Pinned,
}

/// `json`: JSON answers (a session held here then needs no Redis at all, where SSE answers store
/// their events); otherwise SSE.
async fn instance(redis: &Redis, server: Server, keys: Option<ApiKeys>, json: bool) -> Instance {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = ClusterConfig::new(redis.url(), addr.to_string(), SECRET)
        .session_ttl(Duration::from_secs(60));
    let cluster = Cluster::connect(config).await.expect("join the cluster");
    let task = match server {
        Server::Everything => {
            let mut stack = McpStack::new(EverythingServer::new())
                .cluster(cluster.clone())
                .json_response(json);
            if let Some(keys) = keys {
                stack = stack.authenticate(keys);
            }
            accept(listener, stack.endpoint_path("/mcp").into_service())
        }
        Server::Pinned => {
            let make = |_: &SessionContext<'_>| EverythingServer::new();
            let stack = McpStack::new(make)
                .cluster(cluster.clone())
                .json_response(json);
            accept(listener, stack.endpoint_path("/mcp").into_service())
        }
    };
    Instance {
        url: format!("http://{addr}/mcp"),
        addr,
        cluster,
        task,
    }
}

fn accept<S, B>(listener: TcpListener, service: S) -> JoinHandle<()>
where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<mcp_tower_http::BoxError>,
{
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            connections.spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
    })
}

fn call(id: i64, tool: &str, arguments: Value) -> String {
    request_body(
        id,
        "tools/call",
        json!({ "name": tool, "arguments": arguments }),
    )
}

/// The answer to request `id` among the messages of a response (JSON or SSE).
fn answer(headers: &http::HeaderMap, body: &str, id: i64) -> Value {
    if common::header(headers, "content-type").starts_with("text/event-stream") {
        common::sse_messages(body)
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id} in {body}"))
    } else {
        one_message(headers, body)
    }
}

#[tokio::test]
#[ignore = "needs redis-server (installed by .ci/run)"]
async fn any_instance_serves_a_session_and_a_held_session_costs_no_redis_round_trip() {
    let redis = Redis::start();
    let a = instance(&redis, Server::Everything, None, true).await;
    let b = instance(&redis, Server::Everything, None, true).await;
    let session = initialize(&a.url, V).await;

    // The record names A as the owner, and nothing in the id says so.
    let record: String = redis::AsyncCommands::get(
        &mut redis.connection().await,
        format!("mcp:session:{session}"),
    )
    .await
    .expect("record");
    let record: Value = serde_json::from_str(&record).expect("json record");
    assert_eq!(record["owner"], a.addr.to_string());
    assert_eq!(record["rebuildable"], true);
    assert!(!session.contains(&a.addr.port().to_string()));

    // On A (the owner): no Redis round trip.
    let before = a.cluster.redis_round_trips();
    let (status, headers, body) = post(
        &a.url,
        &session_headers(Some(&session), V),
        &call(2, "echo", json!({ "text": "on a" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        answer(&headers, &body, 2)["result"]["content"][0]["text"],
        "on a"
    );
    assert_eq!(
        a.cluster.redis_round_trips(),
        before,
        "a held session touched Redis"
    );

    // On B: one Redis read, then A answers through B.
    let before = b.cluster.redis_round_trips();
    let (status, headers, body) = post(
        &b.url,
        &session_headers(Some(&session), V),
        &call(3, "echo", json!({ "text": "via b" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        answer(&headers, &body, 3)["result"]["content"][0]["text"],
        "via b"
    );
    assert_eq!(b.cluster.redis_round_trips() - before, 1);

    // DELETE through B ends the session everywhere, and its keys go from Redis.
    let (status, _, body) = common::delete(&b.url, &session_headers(Some(&session), V)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for instance in [&a, &b] {
        let (status, _, _) = post(
            &instance.url,
            &session_headers(Some(&session), V),
            &call(4, "echo", json!({ "text": "gone" })),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut redis.connection().await, "mcp:*:*")
        .await
        .expect("keys");
    assert!(keys.is_empty(), "left in Redis: {keys:?}");
}

#[tokio::test]
#[ignore = "needs redis-server (installed by .ci/run)"]
async fn a_sampling_request_on_one_instance_is_answered_through_another() {
    let redis = Redis::start();
    let a = instance(&redis, Server::Everything, None, false).await;
    let b = instance(&redis, Server::Everything, None, false).await;
    let session = initialize(&a.url, V).await;

    // The tool call goes through B: its stream is A's, relayed.
    let response = open(
        Method::POST,
        &b.url,
        &session_headers(Some(&session), V),
        call(2, "test_sampling", json!({ "prompt": "hello" })),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut text = String::new();
    let request = loop {
        let frame = common::next_frame(&mut body, Duration::from_secs(10))
            .await
            .expect("the sampling request");
        text.push_str(&String::from_utf8_lossy(&frame));
        if let Some(request) = common::sse_messages(&text)
            .into_iter()
            .find(|m| m["method"] == "sampling/createMessage")
        {
            break request;
        }
    };
    // The answer goes to A directly (a load balancer's next pick).
    let answer_body = json!({
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {
            "role": "assistant",
            "content": { "type": "text", "text": "a reply from the client" },
            "model": "test-model",
            "stopReason": "endTurn",
        },
    })
    .to_string();
    let (status, _, reply) = post(&a.url, &session_headers(Some(&session), V), &answer_body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let rest = common::read_frames(&mut body, Duration::from_secs(10)).await;
    for frame in rest {
        text.push_str(&String::from_utf8_lossy(&frame));
    }
    let result = common::sse_messages(&text)
        .into_iter()
        .find(|m| m["id"] == 2)
        .unwrap_or_else(|| panic!("no tool result in {text}"));
    let result = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(result.contains("a reply from the client"), "{result}");
}

#[tokio::test]
#[ignore = "needs redis-server (installed by .ci/run)"]
async fn the_principal_binding_holds_across_instances_and_a_forged_forward_is_refused() {
    let redis = Redis::start();
    let keys = || {
        ApiKeys::new()
            .key("key-one-0123456789")
            .key("key-two-0123456789")
    };
    let a = instance(&redis, Server::Everything, Some(keys()), true).await;
    let b = instance(&redis, Server::Everything, Some(keys()), true).await;
    let one = ("x-api-key", "key-one-0123456789");
    let two = ("x-api-key", "key-two-0123456789");
    let (status, headers, body) =
        post(&a.url, &[ACCEPT_BOTH, JSON, one], &initialize_body(1, V)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = common::header(&headers, "mcp-session-id").to_owned();
    let with = |key| {
        let mut headers = session_headers(Some(&session), V);
        headers.push(key);
        headers
    };
    let (status, _, _) = post(
        &b.url,
        &with(one),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Another principal gets 404 on either instance, and B does not even forward it.
    for url in [&a.url, &b.url] {
        let (status, headers, body) =
            post(url, &with(two), &call(2, "echo", json!({ "text": "x" }))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        common::assert_rpc_error(&headers, &body, -32001, json!(2));
    }
    // A request claiming to be forwarded without the secret is refused outright.
    let mut forged = with(two);
    forged.push((FORWARDED_HEADER, "guessed"));
    let (status, _, body) = post(&a.url, &forged, &call(3, "echo", json!({ "text": "x" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Even with the secret, the owner authenticates the request again: still 404.
    let mut forwarded = with(two);
    forwarded.push((FORWARDED_HEADER, SECRET));
    let (status, _, body) =
        post(&a.url, &forwarded, &call(4, "echo", json!({ "text": "x" }))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The creator is served through B.
    let (status, headers, body) = post(
        &b.url,
        &with(one),
        &call(5, "echo", json!({ "text": "mine" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        answer(&headers, &body, 5)["result"]["content"][0]["text"],
        "mine"
    );
}

#[tokio::test]
#[ignore = "needs redis-server (installed by .ci/run)"]
async fn when_the_owner_dies_a_rebuildable_session_moves_and_its_events_replay_once() {
    let redis = Redis::start();
    let a = instance(&redis, Server::Everything, None, false).await;
    let b = instance(&redis, Server::Everything, None, false).await;
    let c = instance(&redis, Server::Everything, None, false).await;
    let session = initialize(&a.url, V).await;
    // A stream answered on A, its events in Redis.
    let (status, _, body) = post(
        &a.url,
        &session_headers(Some(&session), V),
        &request_body(
            2,
            "tools/call",
            json!({ "name": "test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": 7 } }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let events = sse_events(&body);
    let ids: Vec<&str> = events.iter().filter_map(|e| e.id.as_deref()).collect();
    assert!(ids.len() >= 4, "{body}");
    let first = ids[1].to_owned();
    drop(a);

    // B and C race for it: both answer, one adopts, the other forwards to it.
    let headers = session_headers(Some(&session), V);
    let (on_b, on_c) = (
        call(3, "echo", json!({ "text": "b" })),
        call(4, "echo", json!({ "text": "c" })),
    );
    let (b_answer, c_answer) =
        tokio::join!(post(&b.url, &headers, &on_b), post(&c.url, &headers, &on_c));
    assert_eq!(b_answer.0, StatusCode::OK, "{}", b_answer.2);
    assert_eq!(c_answer.0, StatusCode::OK, "{}", c_answer.2);
    assert_eq!(
        answer(&b_answer.1, &b_answer.2, 3)["result"]["content"][0]["text"],
        "b"
    );
    assert_eq!(
        answer(&c_answer.1, &c_answer.2, 4)["result"]["content"][0]["text"],
        "c"
    );
    let record: String = redis::AsyncCommands::get(
        &mut redis.connection().await,
        format!("mcp:session:{session}"),
    )
    .await
    .expect("record");
    let record: Value = serde_json::from_str(&record).expect("json");
    assert_eq!(record["epoch"], 1, "adopted exactly once: {record}");
    assert!(
        [b.addr.to_string(), c.addr.to_string()]
            .contains(&record["owner"].as_str().unwrap_or_default().to_owned())
    );

    // Resuming A's stream after its first event, on either survivor: the rest, once each.
    for url in [&b.url, &c.url] {
        let mut headers = vec![
            ACCEPT_SSE,
            ("mcp-protocol-version", V),
            ("mcp-session-id", &session),
        ];
        headers.push(("last-event-id", &first));
        let response = open(Method::GET, url, &headers, bytes::Bytes::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let frames = common::read_frames(&mut response.into_body(), Duration::from_secs(2)).await;
        let text: String = frames.iter().map(|f| String::from_utf8_lossy(f)).collect();
        let replayed: Vec<String> = sse_events(&text)
            .into_iter()
            .filter(|e| !e.data.is_empty())
            .filter_map(|e| e.id)
            .collect();
        let expected: Vec<String> = ids[2..].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(replayed, expected, "{text}");
    }
}

#[tokio::test]
#[ignore = "needs redis-server (installed by .ci/run)"]
async fn a_pinned_session_whose_owner_died_answers_404_at_once() {
    let redis = Redis::start();
    let a = instance(&redis, Server::Pinned, None, true).await;
    let b = instance(&redis, Server::Pinned, None, true).await;
    let session = initialize(&a.url, V).await;
    drop(a);
    let started = Instant::now();
    let (status, headers, body) = post(
        &b.url,
        &session_headers(Some(&session), V),
        &call(2, "echo", json!({ "text": "x" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    common::assert_rpc_error(&headers, &body, -32001, json!(2));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let exists: bool = redis::AsyncCommands::exists(
        &mut redis.connection().await,
        format!("mcp:session:{session}"),
    )
    .await
    .expect("exists");
    assert!(!exists, "the dead session's record stays");
}

#[tokio::test]
#[ignore = "needs redis-server (installed by .ci/run)"]
async fn without_redis_requests_that_need_it_get_503_and_service_comes_back_with_it() {
    let mut redis = Redis::start();
    let a = instance(&redis, Server::Everything, None, true).await;
    let b = instance(&redis, Server::Everything, None, true).await;
    let session = initialize(&a.url, V).await;
    redis.stop();

    let json = session_headers(Some(&session), V);
    let started = Instant::now();
    let (status, headers, body) =
        post(&b.url, &json, &call(2, "echo", json!({ "text": "x" }))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let error = common::assert_rpc_error(&headers, &body, -32000, json!(2));
    assert!(error.contains("unavailable"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // A new session cannot be shared: refused too, and not left behind on the instance.
    let (status, _, body) = post(&b.url, &[ACCEPT_BOTH, JSON], &initialize_body(1, V)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // Redis back on the same port (empty: the old records went with it): the instances
    // reconnect by themselves, a new session opens on B and A serves it.
    let _redis = Redis::start_on(redis.port);
    let deadline = Instant::now() + Duration::from_secs(15);
    let session = loop {
        let (status, headers, body) =
            post(&b.url, &[ACCEPT_BOTH, JSON], &initialize_body(1, V)).await;
        if status == StatusCode::OK {
            break common::header(&headers, "mcp-session-id").to_owned();
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "still {status}: {body}");
        bounded("pause", tokio::time::sleep(Duration::from_millis(200))).await;
    };
    let (status, headers, body) = post(
        &a.url,
        &session_headers(Some(&session), V),
        &call(3, "echo", json!({ "text": "back" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        answer(&headers, &body, 3)["result"]["content"][0]["text"],
        "back"
    );
}

/// Reads SSE frames from `body` until a message with `method` arrives; returns the ids of the
/// message events read, that one last.
async fn events_until(body: &mut hyper::body::Incoming, method: &str) -> Vec<String> {
    let mut text = String::new();
    loop {
        let frame = common::next_frame(body, Duration::from_secs(8))
            .await
            .unwrap_or_else(|| panic!("no {method} in {text}"));
        text.push_str(&String::from_utf8_lossy(&frame));
        let events: Vec<(String, Value)> = sse_events(&text)
            .into_iter()
            .filter_map(|e| Some((e.id?, serde_json::from_str(&e.data).ok()?)))
            .collect();
        if let Some(at) = events.iter().position(|(_, m)| m["method"] == method) {
            return events[..=at].iter().map(|(id, _)| id.clone()).collect();
        }
    }
}

fn seq(id: &str) -> u64 {
    let (stream, seq) = id.split_once('/').expect("stream/seq");
    assert_eq!(stream, "0", "not the standalone stream: {id}");
    seq.parse().expect("seq")
}

#[tokio::test]
#[ignore = "needs redis-server (installed by .ci/run)"]
async fn an_adopted_sessions_standalone_stream_goes_on_after_what_the_dead_owner_stored() {
    let redis = Redis::start();
    let a = instance(&redis, Server::Everything, None, false).await;
    let b = instance(&redis, Server::Everything, None, false).await;
    let session = initialize(&a.url, V).await;
    let get = [
        ACCEPT_SSE,
        ("mcp-protocol-version", V),
        ("mcp-session-id", &session),
    ];
    let subscribe = request_body(
        2,
        "resources/subscribe",
        json!({ "uri": "test://watched-resource" }),
    );

    let response = open(Method::GET, &a.url, &get, bytes::Bytes::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.into_body();
    let (status, _, body) = post(&a.url, &session_headers(Some(&session), V), &subscribe).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let on_a = events_until(&mut stream, "notifications/resources/updated").await;
    let first = on_a.last().cloned().unwrap_or_default();
    drop(stream);
    drop(a);

    // Resumed on B after A's last event: B adopts the session and the stream goes on after it,
    // without a gap or a repeat.
    let mut headers = get.to_vec();
    headers.push(("last-event-id", &first));
    let response = open(Method::GET, &b.url, &headers, bytes::Bytes::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.into_body();
    // The rebuilt server starts from its initialize: the client subscribes again.
    let (status, _, body) = post(&b.url, &session_headers(Some(&session), V), &subscribe).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let on_b = events_until(&mut stream, "notifications/resources/updated").await;
    let expected: Vec<u64> = (seq(&first) + 1..).take(on_b.len()).collect();
    assert_eq!(
        on_b.iter().map(|id| seq(id)).collect::<Vec<_>>(),
        expected,
        "{on_a:?} then {on_b:?}"
    );
}
