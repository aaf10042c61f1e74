//! The fixture tools of the tasks-extension scenarios (`tasks-*`): `greet` never becomes a task,
//! the others do when the client accepts tasks ([`RequestContext::run_as_task`]) and otherwise
//! run in line, or refuse with `-32021` when their task support is required.

use super::{Answer, reply};
use crate::input::InputRequest;
use crate::jsonrpc::{ErrorCode, ErrorObject};
use crate::server::{CallToolResult, McpServerBuilder, NoArgs, ServerContext, Tool};
use crate::tasks::{TaskSupport, tasks_required};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// The longest `slow_compute` sleep accepted.
const MAX_SECONDS: f64 = 3600.0;

/// How long `failing_job` works before reporting its error.
const FAILING_AFTER: Duration = Duration::from_secs(1);

/// How long `protocol_error_job` and `test_tool_with_task` work.
const SHORT_WORK: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
struct GreetArgs {
    name: String,
}

#[derive(Deserialize)]
struct SlowArgs {
    seconds: f64,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Deserialize)]
struct DeleteArgs {
    filename: String,
}

fn confirm(message: String) -> InputRequest {
    InputRequest::elicitation(
        message,
        json!({
            "type": "object",
            "properties": { "confirm": { "type": "boolean", "description": "Go ahead?" } },
            "required": ["confirm"],
        }),
    )
}

fn name_request(message: &str) -> InputRequest {
    InputRequest::elicitation(
        message,
        json!({
            "type": "object",
            "properties": { "name": { "type": "string", "description": "A name" } },
            "required": ["name"],
        }),
    )
}

/// An elicitation answer's `content.<field>`, when the user accepted.
fn accepted<'a>(answer: &'a Value, field: &str) -> Option<&'a Value> {
    if answer.get("action").and_then(Value::as_str) != Some("accept") {
        return None;
    }
    answer.get("content")?.get(field)
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required })
}

/// Registers the tools.
pub(super) fn register(builder: McpServerBuilder) -> McpServerBuilder {
    let greet = object(
        json!({ "name": { "type": "string", "description": "Who to greet" } }),
        &["name"],
    );
    let slow = object(
        json!({
            "seconds": { "type": "number", "description": "How long to work (0 to 3600)" },
            "label": { "type": "string", "description": "A label echoed in the result" },
        }),
        &["seconds"],
    );
    let delete = object(
        json!({ "filename": { "type": "string", "description": "The file to delete" } }),
        &["filename"],
    );
    builder
        .tool(
            Tool::new("greet", "Greets by name (never a task)").input_schema(greet),
            |GreetArgs { name }, _| async move { reply(format!("Hello, {name}!")) },
        )
        .tool(
            Tool::new("slow_compute", "Sleeps the given number of seconds, as a task when the client accepts tasks")
                .input_schema(slow),
            |SlowArgs { seconds, label }, cx: ServerContext| async move {
                if !(0.0..=MAX_SECONDS).contains(&seconds) {
                    return Err(ErrorObject::invalid_params(format!(
                        "Invalid arguments for tool slow_compute: seconds must be between 0 and {MAX_SECONDS}"
                    )));
                }
                cx.run_as_task(TaskSupport::Optional).await?;
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                let label = label.unwrap_or_else(|| "slow_compute".into());
                reply(format!("Computed {label} in {seconds} s"))
            },
        )
        .tool(
            Tool::new("failing_job", "A task (required) that reports a tool error after a second"),
            |_: NoArgs, cx: ServerContext| async move {
                cx.run_as_task(TaskSupport::Required).await?;
                tokio::time::sleep(FAILING_AFTER).await;
                Ok(CallToolResult::error("failing_job failed, as it always does"))
            },
        )
        .tool(
            Tool::new("protocol_error_job", "A task that fails with a JSON-RPC error"),
            |_: NoArgs, cx: ServerContext| async move {
                cx.run_as_task(TaskSupport::Optional).await?;
                tokio::time::sleep(SHORT_WORK).await;
                Err(ErrorObject::new(
                    ErrorCode::INTERNAL_ERROR,
                    "protocol_error_job failed with a protocol error, as it always does",
                ))
            },
        )
        .tool(
            Tool::new("confirm_delete", "A task that asks the client to confirm before it deletes a file")
                .input_schema(delete),
            |DeleteArgs { filename }, cx: ServerContext| async move { confirm_delete(filename, &cx).await },
        )
        .tool(
            Tool::new("multi_input", "A task that asks two questions at once"),
            |_: NoArgs, cx: ServerContext| async move { multi_input(&cx).await },
        )
        .tool(
            Tool::new(
                "test_tool_with_task",
                "Asks for a name (input_required), then finishes as a task (required)",
            ),
            |_: NoArgs, cx: ServerContext| async move { tool_with_task(&cx).await },
        )
}

async fn confirm_delete(filename: String, cx: &ServerContext) -> Answer {
    cx.run_as_task(TaskSupport::Optional).await?;
    let answer = cx
        .ask("confirm", confirm(format!("Delete {filename}?")))
        .await?;
    let confirmed = accepted(&answer, "confirm") == Some(&json!(true));
    reply(if confirmed {
        format!("Deleted {filename}")
    } else {
        format!("Kept {filename}")
    })
}

async fn multi_input(cx: &ServerContext) -> Answer {
    cx.run_as_task(TaskSupport::Optional).await?;
    let answers = cx
        .ask_all([
            ("name".to_owned(), name_request("What is your name?")),
            ("confirm".to_owned(), confirm("Proceed?".into())),
        ])
        .await?;
    let null = Value::Null;
    let name = answers
        .get("name")
        .and_then(|a| accepted(a, "name"))
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let proceed = answers.get("confirm").unwrap_or(&null);
    let proceed = accepted(proceed, "confirm") == Some(&json!(true));
    reply(format!("Name: {name}; proceed: {proceed}"))
}

async fn tool_with_task(cx: &ServerContext) -> Answer {
    // Input first (an input_required round), then the rest as a task.
    if !cx.accepts_tasks() {
        return Err(tasks_required());
    }
    let answer = cx
        .ask("user_name", name_request("What is your name?"))
        .await?;
    cx.run_as_task(TaskSupport::Required).await?;
    tokio::time::sleep(SHORT_WORK).await;
    let name = accepted(&answer, "name")
        .and_then(Value::as_str)
        .unwrap_or("stranger");
    reply(format!("Hello, {name}!"))
}
