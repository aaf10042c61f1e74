//! The fixture's input-request tools and prompt (`test_input_required_result_*`), and the
//! diagnostic tools of the 2026-07-28 scenarios. One implementation serves every revision: each
//! asks with [`RequestContext::ask`], which is a server→client request in 2025 revisions and an
//! `input_required` round in 2026-07-28.

use super::Answer;
use crate::input::InputRequest;
use crate::jsonrpc::ErrorObject;
use crate::server::{
    Content, GetPromptResult, McpServerBuilder, NoArgs, Prompt, PromptMessage, ServerContext, Tool,
};
use crate::service::RequestContext;
use serde::Deserialize;
use serde_json::{Value, json};

/// The tools taking no arguments, answered by [`call`], with their descriptions.
const TOOLS: [(&str, &str); 14] = [
    (
        "test_missing_capability",
        "Needs the client's sampling capability",
    ),
    (
        "test_input_required_result_elicitation",
        "Asks the client for a name (elicitation)",
    ),
    (
        "test_input_required_result_sampling",
        "Asks the client's LLM a question (sampling)",
    ),
    (
        "test_input_required_result_list_roots",
        "Asks the client for its roots",
    ),
    (
        "test_input_required_result_request_state",
        "Asks for a confirmation; state round trip",
    ),
    (
        "test_input_required_result_multiple_inputs",
        "Asks for three inputs at once",
    ),
    (
        "test_input_required_result_multi_round",
        "Asks twice, one round after the other",
    ),
    (
        "test_input_required_result_tampered_state",
        "Asks for a confirmation; sealed state",
    ),
    (
        "test_input_required_result_capabilities",
        "Asks only for what the client declared",
    ),
    (
        "test_streaming_elicitation",
        "Streams progress before its result, never a request",
    ),
    (
        "test_logging_tool",
        "Logs at info level (sent only when the client asked for logs)",
    ),
    ("test_trigger_tool_change", "Announces a tools/list_changed"),
    (
        "test_trigger_prompt_change",
        "Announces a prompts/list_changed",
    ),
    (
        "test_trigger_resource_change",
        "Announces a resources/list_changed",
    ),
];

/// The prompt that asks for input.
const PROMPT: &str = "test_input_required_result_prompt";

#[derive(Deserialize)]
struct RegionArgs {
    region: String,
}

fn reply(text: String) -> Answer {
    super::reply(text)
}

/// Registers the tools and the prompt.
pub(super) fn register(mut builder: McpServerBuilder) -> McpServerBuilder {
    for (name, description) in TOOLS {
        builder = builder.tool(
            Tool::new(name, description),
            move |_: NoArgs, cx: ServerContext| async move { call(name, &cx).await },
        );
    }
    let region = json!({
        "type": "object",
        "properties": {
            "region": { "type": "string", "description": "A region name", "x-mcp-header": "Region" },
        },
        "required": ["region"],
    });
    builder
        .tool(
            Tool::new(
                "test_routing_header",
                "Echoes its region argument, which 2026-07-28 clients also send as the Mcp-Param-Region header",
            )
            .input_schema(region),
            |RegionArgs { region }, _| async move { reply(format!("Region: {region}")) },
        )
        .prompt(
            Prompt::new(PROMPT, "A prompt that asks the client for context first (input required)"),
            |_: NoArgs, cx: ServerContext| async move { get_prompt(&cx).await },
        )
}

fn elicit(message: &str, field: &str, kind: &str) -> InputRequest {
    InputRequest::elicitation(
        message,
        json!({
            "type": "object",
            "properties": { field: { "type": kind } },
            "required": [field],
        }),
    )
}

fn sample(prompt: &str, max_tokens: u32) -> InputRequest {
    InputRequest::sampling(json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "maxTokens": max_tokens,
    }))
}

/// An elicitation answer's `content.<field>` as text.
fn answered(answer: &Value, field: &str) -> String {
    match answer.get("content").and_then(|c| c.get(field)) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "unknown".to_owned(),
    }
}

fn sampled(answer: &Value, fallback: &str) -> String {
    super::sampled_text(answer).unwrap_or(fallback).to_owned()
}

fn roots(answer: &Value) -> usize {
    answer
        .get("roots")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// Answers one of [`TOOLS`].
async fn call(name: &str, cx: &RequestContext) -> Answer {
    match name {
        "test_missing_capability" => {
            cx.ask("sample", sample("Say anything", 10)).await?;
            reply("Success".into())
        }
        "test_input_required_result_elicitation" => {
            let answer = cx
                .ask("user_name", elicit("What is your name?", "name", "string"))
                .await?;
            reply(format!("Hello, {}!", answered(&answer, "name")))
        }
        "test_input_required_result_sampling" => {
            let answer = cx
                .ask(
                    "sample_request",
                    sample("What is the capital of France?", 100),
                )
                .await?;
            reply(format!(
                "Sampling result: {}",
                sampled(&answer, "no response")
            ))
        }
        "test_input_required_result_list_roots" => {
            let answer = cx.ask("roots_request", InputRequest::list_roots()).await?;
            reply(format!("Found {} root(s)", roots(&answer)))
        }
        "test_input_required_result_request_state" => {
            let answer = cx
                .ask("confirm", elicit("Please confirm", "ok", "boolean"))
                .await?;
            let confirmed = answer.get("content").and_then(|c| c.get("ok")) == Some(&json!(true));
            reply(if confirmed {
                "state-ok: requestState validated".into()
            } else {
                "state-ok: requestState validated, not confirmed".into()
            })
        }
        "test_input_required_result_multiple_inputs" => {
            let answers = cx
                .ask_all([
                    (
                        "user_name".to_owned(),
                        elicit("What is your name?", "name", "string"),
                    ),
                    ("greeting".to_owned(), sample("Generate a greeting", 50)),
                    ("client_roots".to_owned(), InputRequest::list_roots()),
                ])
                .await?;
            let null = Value::Null;
            let get = |key: &str| answers.get(key).unwrap_or(&null);
            reply(format!(
                "Name: {}; Greeting: {}; Roots: {}",
                answered(get("user_name"), "name"),
                sampled(get("greeting"), "Hello there!"),
                roots(get("client_roots"))
            ))
        }
        "test_input_required_result_multi_round" => {
            let step1 = cx
                .ask(
                    "step1",
                    elicit("Step 1: What is your name?", "name", "string"),
                )
                .await?;
            let step2 = cx
                .ask(
                    "step2",
                    elicit("Step 2: What is your favorite color?", "color", "string"),
                )
                .await?;
            reply(format!(
                "Multi-round complete for {} who likes {}",
                answered(&step1, "name"),
                answered(&step2, "color")
            ))
        }
        "test_input_required_result_tampered_state" => {
            // The transport refuses a tampered requestState before this handler runs again.
            cx.ask("confirm", elicit("Please confirm", "ok", "boolean"))
                .await?;
            reply("integrity-ok: state verified".into())
        }
        "test_input_required_result_capabilities" => {
            let declared = |c: &str| {
                cx.client_capabilities()
                    .and_then(|caps| caps.get(c))
                    .is_some()
            };
            let mut requests = Vec::new();
            if declared("elicitation") {
                requests.push((
                    "elicit_input".to_owned(),
                    elicit("Elicitation input", "value", "string"),
                ));
            }
            if declared("sampling") {
                requests.push(("sample_input".to_owned(), sample("Sample request", 50)));
            }
            if requests.is_empty() {
                return reply("No supported capabilities declared".into());
            }
            let answers = cx.ask_all(requests).await?;
            let keys: Vec<&str> = answers.keys().map(String::as_str).collect();
            reply(format!("capabilities-ok: received {}", keys.join(",")))
        }
        "test_streaming_elicitation" => {
            cx.notify_progress(50.0, Some(100.0), Some("Halfway")).await;
            reply("Streaming complete".into())
        }
        "test_logging_tool" => {
            let params = json!({ "level": "info", "logger": super::LOGGER, "data": "Diagnostic trace logging activated" });
            // Advisory: 2026-07-28 drops it unless the request asked for logs.
            let _ = cx
                .peer()
                .notify("notifications/message", Some(params))
                .await;
            reply("Logging evaluated".into())
        }
        "test_trigger_tool_change"
        | "test_trigger_prompt_change"
        | "test_trigger_resource_change" => {
            let kind = name
                .trim_start_matches("test_trigger_")
                .trim_end_matches("_change");
            let method = format!("notifications/{kind}s/list_changed");
            let _ = cx.peer().standalone().notify(&method, None).await;
            reply("Mutation triggered".into())
        }
        other => Err(ErrorObject::invalid_params(format!(
            "Unknown tool: {other}"
        ))),
    }
}

/// Answers [`PROMPT`].
async fn get_prompt(cx: &RequestContext) -> Result<GetPromptResult, ErrorObject> {
    let answer = cx
        .ask(
            "user_context",
            elicit("What context should the prompt use?", "context", "string"),
        )
        .await?;
    let text = format!("Prompt with context: {}", answered(&answer, "context"));
    Ok(GetPromptResult::new(
        "A prompt that asks the client for context first",
        [PromptMessage::user(Content::text(text))],
    ))
}
