//! MCP (Model Context Protocol) access to the mailbox: a few tools and the caller's inbox as
//! a subscribable resource, over streamable HTTP at `/mcp` (next to the REST routes) or over
//! stdio (`mailbox-gateway mcp --stdio`). Every MCP type and call of the `rmcp` SDK lives
//! in this module, so that an upgrade of the SDK touches this file only.
//!
//! Identity comes from the bearer token alone (the `Authorization` header of each HTTP
//! request, or the token the stdio process was started with): the tools take no agent
//! argument, and every command goes `AS` the token's agent through the gateway's backend,
//! so the module's grants, quotas and audit apply as for REST.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use redis::Value;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListResourcesResult, PaginatedRequestParams,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceUpdatedNotificationParam, ServerCapabilities, ServerConfig,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde::{Deserialize, Serialize};

use crate::app::{self, authenticate, check_ids, require_read, Agent, App, AppState};
use crate::problem::{ApiError, ApiResult};
use crate::reply::{self, Message};
use crate::routes::mailboxes::{is_sub_option, SendRequest, SUB_OPTION_PATTERN};

/// The protocol revisions served: those with the `initialize` handshake and sessions, where
/// `resources/subscribe` and `notifications/resources/updated` exist.
const PROTOCOLS: &ProtocolVersion = &ProtocolVersion::V_2025_11_25;
/// Characters of a body a read returns when the call does not say.
const DEFAULT_BODY_CHARS: usize = 2000;
/// Resource subscriptions one MCP session may hold at once.
const MAX_WATCHES: usize = 16;

// ---------------------------------------------------------------- tool arguments

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    /// The recipient's mailbox (an agent name, e.g. `bob`, or `{team1}bob` in a namespace).
    pub to: String,
    /// The message text.
    pub body: String,
    /// Thread id that groups the messages of one conversation.
    pub thread: Option<String>,
    /// 0 (lowest, the default) to 9; higher priorities are read first.
    #[schemars(range(min = 0, max = 9))]
    pub priority: Option<u8>,
    /// Mailbox the answer should go to (default: the sender's own).
    pub reply_to: Option<String>,
    /// Seconds after which the message expires unread.
    #[schemars(range(min = 1))]
    pub ttl_s: Option<u64>,
    /// Ask for a delivery receipt (from `mailbox receipt`) in the sender's mailbox when it is acknowledged.
    pub confirm: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// Most messages to return (default 10).
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u64>,
    /// Wait up to this many seconds for a message when none is ready (default 0; at most the gateway's bound, 30 s by default).
    #[schemars(range(min = 0, max = 300))]
    pub wait_s: Option<u64>,
    /// Return only messages of this thread; messages of other threads met on the way are put back at once (counting as a delivery).
    pub thread: Option<String>,
    /// Include the message bodies (default true); false returns headers only.
    pub include_bodies: Option<bool>,
    /// Longest body returned, in characters (default 2000); a longer body is cut and ends with a marker saying how many characters were cut.
    #[schemars(range(min = 0, max = 1000000))]
    pub max_body_chars: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdsArgs {
    /// Ids of messages a `mailbox_read` returned.
    pub ids: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyArgs {
    /// Id of the message answered, as `mailbox_read` returned it.
    pub id: String,
    /// The answer's text.
    pub body: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishArgs {
    /// Dot-separated topic, e.g. `research.papers`.
    pub topic: String,
    /// The message text.
    pub body: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeArgs {
    /// Topic pattern: `*` matches one dot-separated word, `#` any number (`research.#`).
    pub pattern: String,
    /// Remove this subscription instead of adding it.
    pub unsubscribe: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThreadArgs {
    /// The thread id.
    pub thread: String,
    /// Most messages to return (default 50).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u64>,
}

// ---------------------------------------------------------------- compact outputs

/// A message as a tool returns it: the fields a model needs, the body cut to a budget.
#[derive(Debug, Serialize)]
struct Brief {
    id: String,
    from: String,
    ts: i64,
    #[serde(skip_serializing_if = "is_zero")]
    priority: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deliveries: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    /// The payload (base64 when it is not UTF-8), cut to the budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<bool>,
    /// The body's full length in characters.
    body_chars: usize,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `text` cut to `max` characters, with a marker saying how many were cut.
pub fn cut(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}…[cut {} of {total} characters]", total - max)
}

fn brief(m: Message, bodies: bool, max: usize) -> Brief {
    let (text, base64) = match (m.payload, m.payload_base64) {
        (Some(p), _) => (p, None),
        (None, Some(b)) => (b, Some(true)),
        (None, None) => (String::new(), None),
    };
    Brief {
        id: m.id,
        from: m.from,
        ts: m.ts,
        priority: m.priority,
        thread: m.thread,
        correlation: m.correlation,
        reply_to: m.reply_to,
        content_type: m.content_type,
        meta: m.meta,
        deliveries: m.deliveries,
        state: m.state,
        body_chars: text.chars().count(),
        body: bodies.then(|| cut(&text, max)),
        body_base64: if bodies { base64 } else { None },
    }
}

fn done<T: Serialize>(result: ApiResult<T>) -> Result<CallToolResult, ErrorData> {
    Ok(match result {
        Ok(v) => {
            let text = serde_json::to_string(&v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            CallToolResult::success(vec![ContentBlock::text(text)])
        }
        // A refusal is an answer the model can read and act on, not a protocol failure.
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e.detail)]),
    })
}

// ---------------------------------------------------------------- the server

/// The inbox resources this session watches: one task each, listening on the mailbox's
/// push channel. Dropped with the session, which stops the tasks.
#[derive(Default)]
struct Watches(Mutex<HashMap<String, tokio::task::JoinHandle<()>>>);

impl Drop for Watches {
    fn drop(&mut self) {
        if let Ok(map) = self.0.lock() {
            for task in map.values() {
                task.abort();
            }
        }
    }
}

/// One MCP session: the gateway's state, how to find the caller, and its subscriptions.
#[derive(Clone)]
pub struct Mailbox {
    app: AppState,
    /// stdio: the token the process was started with (looked up on every call, so a
    /// revoked token stops working at once). Over HTTP: none; each request's own token.
    token: Option<Arc<str>>,
    /// Over HTTP: the agent of the session's first request; a later request of the session
    /// with another agent's token is refused.
    owner: Arc<std::sync::OnceLock<String>>,
    watches: Arc<Watches>,
    tool_router: ToolRouter<Mailbox>,
}

fn inbox_uri(mailbox: &str) -> String {
    format!("mailbox://{mailbox}/inbox")
}

impl Mailbox {
    pub fn new(app: AppState, token: Option<String>) -> Self {
        Mailbox {
            app,
            token: token.map(Arc::from),
            owner: Arc::new(std::sync::OnceLock::new()),
            watches: Arc::new(Watches::default()),
            tool_router: Self::tool_router(),
        }
    }

    /// The agent of this call: from the HTTP request's token (checked by [`authenticate_mcp`]),
    /// or the stdio process's token.
    async fn caller(&self, ctx: &RequestContext<RoleServer>) -> ApiResult<Agent> {
        if let Some(parts) = ctx.extensions.get::<axum::http::request::Parts>() {
            let agent = parts
                .extensions
                .get::<Agent>()
                .cloned()
                .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
            if self.owner.get_or_init(|| agent.name().to_string()) != agent.name() {
                return Err(ApiError::forbidden("this MCP session belongs to another agent"));
            }
            return Ok(agent);
        }
        match &self.token {
            Some(token) => authenticate(&self.app, token).await,
            None => Err(ApiError::unauthorized("no token")),
        }
    }

    /// The caller's inbox named by a resource URI: `mailbox://<mailbox>/inbox`, where the
    /// mailbox is the caller's own (`alice`, or `{team1}alice`).
    fn own_inbox(uri: &str, agent: &Agent) -> Result<String, ErrorData> {
        let mailbox = uri
            .strip_prefix("mailbox://")
            .and_then(|rest| rest.strip_suffix("/inbox"))
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ErrorData::resource_not_found(format!("no such resource: {uri}"), None))?;
        if app::agent_mailbox(mailbox, agent.name()) != mailbox {
            return Err(ErrorData::invalid_params(
                format!("NOPERM agent '{}' may only watch its own inbox, not '{mailbox}'", agent.name()),
                None,
            ));
        }
        Ok(mailbox.to_string())
    }

    async fn read_messages(&self, agent: &Agent, a: ReadArgs) -> ApiResult<serde_json::Value> {
        let app = &self.app;
        let limit = a.limit.unwrap_or(10);
        if limit == 0 || limit > 100 {
            return Err(ApiError::bad_request("limit must be from 1 to 100"));
        }
        let wait = Duration::from_secs(a.wait_s.unwrap_or(0)).min(app.settings.max_wait);
        let mailbox = agent.name();
        // With a thread, read a wider batch and put back what belongs to other threads.
        let count = if a.thread.is_some() { app.settings.max_count.min(100) } else { limit };
        let mut cmd = redis::cmd("MAILBOX.READ");
        cmd.arg(mailbox).arg("COUNT").arg(count);
        let reply = if wait.is_zero() {
            cmd.arg("AS").arg(mailbox);
            app.backend.api(&cmd).await?
        } else {
            cmd.arg("BLOCK").arg(wait.as_millis() as u64).arg("AS").arg(mailbox);
            app.backend.call_blocking(&cmd, wait).await?
        };
        let mut messages = reply::messages(&reply, "MAILBOX.READ")?;
        if let Some(thread) = &a.thread {
            let (mut keep, other): (Vec<Message>, Vec<Message>) =
                messages.into_iter().partition(|m| m.thread.as_deref() == Some(thread.as_str()));
            let mut back: Vec<String> = other.into_iter().map(|m| m.id).collect();
            if keep.len() as u64 > limit {
                back.extend(keep.split_off(limit as usize).into_iter().map(|m| m.id));
            }
            if !back.is_empty() {
                crate::routes::mailboxes::nack_ids(app, mailbox, mailbox, &back, None).await?;
            }
            messages = keep;
        }
        let bodies = a.include_bodies.unwrap_or(true);
        let max = a.max_body_chars.unwrap_or(DEFAULT_BODY_CHARS);
        let briefs: Vec<Brief> = messages.into_iter().map(|m| brief(m, bodies, max)).collect();
        Ok(serde_json::json!({ "messages": briefs }))
    }

    async fn whoami(&self, agent: &Agent) -> ApiResult<serde_json::Value> {
        let mailbox = agent.name();
        let waiting =
            match self.app.backend.call(redis::cmd("MAILBOX.INFO").arg(mailbox).arg("AS").arg(mailbox)).await
            {
                Ok(v) => reply::pairs(&v)
                    .into_iter()
                    .find(|(k, _)| k == "ready")
                    .and_then(|(_, v)| reply::int(&v))
                    .unwrap_or(0),
                Err(crate::backend::CallError::Refused { detail, .. })
                    if detail.starts_with("no such mailbox") =>
                {
                    0
                }
                Err(e) => return Err(e.into()),
            };
        let subscriptions: Vec<String> =
            match self.app.backend.call(redis::cmd("MAILBOX.SUBS").arg(mailbox).arg("AS").arg(mailbox)).await
            {
                Ok(Value::Array(items)) => items
                    .iter()
                    .filter_map(|item| match item {
                        Value::Array(fields) => fields.first().and_then(reply::string),
                        _ => None,
                    })
                    .collect(),
                Ok(_) => Vec::new(),
                Err(crate::backend::CallError::Refused { detail, .. })
                    if detail.starts_with("no such mailbox") =>
                {
                    Vec::new()
                }
                Err(e) => return Err(e.into()),
            };
        Ok(serde_json::json!({
            "agent": agent.name(),
            "namespace": app::hash_tag(mailbox).unwrap_or("default"),
            "mailbox": mailbox,
            "inbox": inbox_uri(mailbox),
            "waiting": waiting,
            "subscriptions": subscriptions,
            "scopes": agent.record.scopes.names(),
        }))
    }
}

impl Mailbox {
    /// Runs a tool for the caller, with `scope` required of its token, and makes the answer
    /// or the refusal the tool's result.
    async fn act<F, Fut>(
        &self,
        ctx: &RequestContext<RoleServer>,
        scope: Option<&str>,
        f: F,
    ) -> Result<CallToolResult, ErrorData>
    where
        F: FnOnce(Agent) -> Fut,
        Fut: std::future::Future<Output = ApiResult<serde_json::Value>>,
    {
        let result = async {
            let agent = self.caller(ctx).await?;
            if let Some(scope) = scope {
                agent.require(scope)?;
            }
            f(agent).await
        }
        .await;
        done(result)
    }
}

fn send_request(body: String) -> SendRequest {
    SendRequest { payload: Some(body), ..SendRequest::default() }
}

#[tool_router]
impl Mailbox {
    #[tool(
        description = "Send a text message to another agent's mailbox; it waits there until that agent reads it. Returns the message id."
    )]
    async fn mailbox_send(
        &self,
        Parameters(a): Parameters<SendArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.act(&ctx, Some("send"), |agent| async move {
            let req = SendRequest {
                thread: a.thread,
                priority: a.priority,
                reply_to: a.reply_to,
                ttl_ms: a.ttl_s.map(|s| s.saturating_mul(1000)),
                confirm: a.confirm,
                ..send_request(a.body)
            };
            let mut cmd = redis::cmd("MAILBOX.SEND");
            cmd.arg(&a.to).arg(req.payload()?);
            req.push_options(&mut cmd)?;
            cmd.arg("AS").arg(agent.name());
            let id = reply::expect_string(&self.app.backend.api(&cmd).await?, "MAILBOX.SEND")?;
            Ok(serde_json::json!({ "id": id }))
        })
        .await
    }

    #[tool(
        description = "Read the next messages in your own mailbox, highest priority first. They are leased to you: call mailbox_ack once handled (or mailbox_nack to give them back), else they come back when the lease runs out."
    )]
    async fn mailbox_read(
        &self,
        Parameters(a): Parameters<ReadArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.act(&ctx, Some("read"), |agent| async move { self.read_messages(&agent, a).await }).await
    }

    #[tool(
        description = "Acknowledge messages you read, removing them from your mailbox for good. Returns how many were acknowledged."
    )]
    async fn mailbox_ack(
        &self,
        Parameters(a): Parameters<IdsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.act(&ctx, Some("read"), |agent| async move {
            let n = crate::routes::mailboxes::ack_ids(&self.app, agent.name(), agent.name(), &a.ids).await?;
            Ok(serde_json::json!({ "acked": n }))
        })
        .await
    }

    #[tool(
        description = "Give messages you read back to your mailbox unhandled, so they can be read again at once. Returns how many were put back."
    )]
    async fn mailbox_nack(
        &self,
        Parameters(a): Parameters<IdsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.act(&ctx, Some("read"), |agent| async move {
            let n = crate::routes::mailboxes::nack_ids(&self.app, agent.name(), agent.name(), &a.ids, None)
                .await?;
            Ok(serde_json::json!({ "requeued": n }))
        })
        .await
    }

    #[tool(
        description = "Answer a message in your mailbox: the answer goes to its reply_to (else its sender) in the same thread, correlated with the message's id. Returns the answer's id."
    )]
    async fn mailbox_reply(
        &self,
        Parameters(a): Parameters<ReplyArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.act(&ctx, Some("send"), |agent| async move {
            check_ids(std::slice::from_ref(&a.id))?;
            let mut cmd = redis::cmd("MAILBOX.REPLY");
            cmd.arg(agent.name()).arg(&a.id).arg(a.body.as_bytes()).arg("AS").arg(agent.name());
            let id = reply::expect_string(&self.app.backend.api(&cmd).await?, "MAILBOX.REPLY")?;
            Ok(serde_json::json!({ "id": id }))
        })
        .await
    }

    #[tool(
        description = "Publish a text message on a topic: every mailbox subscribed to a matching pattern gets a copy. Returns the id and how many mailboxes received it."
    )]
    async fn mailbox_publish(
        &self,
        Parameters(a): Parameters<PublishArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.act(&ctx, Some("send"), |agent| async move {
            let mut cmd = redis::cmd("MAILBOX.PUBLISH");
            cmd.arg(&a.topic).arg(a.body.as_bytes()).arg("AS").arg(agent.name());
            let (id, receivers) = reply::id_and_count(&self.app.backend.api(&cmd).await?, "MAILBOX.PUBLISH")?;
            Ok(serde_json::json!({ "id": id, "receivers": receivers }))
        })
        .await
    }

    #[tool(
        description = "Subscribe your mailbox to a topic pattern, so messages published on matching topics land in it (or remove the subscription with unsubscribe=true). Returns how many subscriptions changed."
    )]
    async fn mailbox_subscribe(
        &self,
        Parameters(a): Parameters<SubscribeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.act(&ctx, Some("read"), |agent| async move {
            let mailbox = agent.name();
            if is_sub_option(&a.pattern) {
                return Err(ApiError::bad_request(SUB_OPTION_PATTERN));
            }
            let verb = if a.unsubscribe == Some(true) { "MAILBOX.UNSUB" } else { "MAILBOX.SUB" };
            let cmd = redis::cmd(verb).arg(mailbox).arg(&a.pattern).arg("AS").arg(mailbox).clone();
            let n = reply::expect_int(&self.app.backend.api(&cmd).await?, "MAILBOX.SUB")?;
            Ok(serde_json::json!({ "count": n }))
        })
        .await
    }

    #[tool(
        description = "List the messages of one thread that your mailbox holds, read or not, oldest first, without leasing them; bodies are cut to 2000 characters."
    )]
    async fn mailbox_thread(
        &self,
        Parameters(a): Parameters<ThreadArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.act(&ctx, Some("read"), |agent| async move {
            let mailbox = agent.name();
            let limit = a.limit.unwrap_or(50);
            if limit == 0 || limit > self.app.settings.max_count {
                return Err(ApiError::bad_request(format!(
                    "limit must be from 1 to {}",
                    self.app.settings.max_count
                )));
            }
            let mut cmd = redis::cmd("MAILBOX.THREAD");
            cmd.arg(mailbox).arg(a.thread.as_bytes()).arg("COUNT").arg(limit).arg("AS").arg(mailbox);
            let messages = reply::messages(&self.app.backend.api(&cmd).await?, "MAILBOX.THREAD")?;
            let briefs: Vec<Brief> =
                messages.into_iter().map(|m| brief(m, true, DEFAULT_BODY_CHARS)).collect();
            Ok(serde_json::json!({ "messages": briefs }))
        })
        .await
    }

    #[tool(
        description = "Who you are in the mailbox system: your agent name, namespace, mailbox, inbox resource URI, how many messages wait for you, and your topic subscriptions."
    )]
    async fn mailbox_whoami(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        self.act(&ctx, None, |agent| async move { self.whoami(&agent).await }).await
    }
}

type Pushes = tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>;

/// A connection of its own, subscribed (`SSUBSCRIBE`) to a mailbox's push channel.
async fn listen(app: &App, channel: &str) -> ApiResult<(redis::aio::MultiplexedConnection, Pushes)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let conn = app.backend.push_subscription(channel, tx).await?;
    Ok((conn, rx))
}

/// Tells the client each time a message lands on the push channel, listening again
/// after an outage, until the client goes away or unsubscribes.
async fn watch(
    app: AppState,
    channel: String,
    uri: String,
    peer: Peer<RoleServer>,
    mut first: Option<(redis::aio::MultiplexedConnection, Pushes)>,
) {
    loop {
        let listening = match first.take() {
            Some(l) => Some(l),
            None => listen(&app, &channel).await.ok(),
        };
        if let Some((_conn, mut pushes)) = listening {
            while let Some(push) = pushes.recv().await {
                match push.kind {
                    redis::PushKind::SMessage | redis::PushKind::Message => {
                        let note = ResourceUpdatedNotificationParam::new(uri.clone());
                        if peer.notify_resource_updated(note).await.is_err() {
                            return; // the client is gone
                        }
                    }
                    redis::PushKind::Disconnection => break,
                    _ => {}
                }
            }
        }
        if peer.is_transport_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Mailbox {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder().enable_tools().enable_resources().enable_resources_subscribe().build(),
        )
        .with_server_info(Implementation::new("mailbox-gateway", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Durable mailboxes between agents. Read your mail with mailbox_read (wait_s to wait for it), \
             answer with mailbox_reply, then mailbox_ack what you handled; mailbox_send writes to another agent. \
             Subscribe to the resource mailbox://<you>/inbox to hear when mail lands.",
        );
        info.protocol_version = PROTOCOLS.clone();
        info
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(PROTOCOLS))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let agent = self.caller(&ctx).await.map_err(|e| ErrorData::invalid_request(e.detail, None))?;
        let mailbox = agent.name();
        let resource = Resource::new(inbox_uri(mailbox), format!("{mailbox} inbox"))
            .with_description("Your mailbox's waiting messages (read without leasing them); subscribe to hear when mail lands.")
            .with_mime_type("application/json");
        Ok(ListResourcesResult::with_all_items(vec![resource]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let agent = self.caller(&ctx).await.map_err(|e| ErrorData::invalid_request(e.detail, None))?;
        let mailbox = Self::own_inbox(&request.uri, &agent)?;
        let result: ApiResult<Vec<Message>> = async {
            agent.require("read")?;
            let cmd = redis::cmd("MAILBOX.PEEK")
                .arg(&mailbox)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(50)
                .arg("AS")
                .arg(agent.name())
                .clone();
            match self.app.backend.call(&cmd).await {
                Ok(v) => reply::messages(&v, "MAILBOX.PEEK"),
                Err(crate::backend::CallError::Refused { detail, .. })
                    if detail.starts_with("no such mailbox") =>
                {
                    Ok(Vec::new())
                }
                Err(e) => Err(e.into()),
            }
        }
        .await;
        let messages = result.map_err(|e| ErrorData::invalid_request(e.detail, None))?;
        let briefs: Vec<Brief> = messages.into_iter().map(|m| brief(m, true, DEFAULT_BODY_CHARS)).collect();
        let text = serde_json::json!({ "messages": briefs }).to_string();
        Ok(ReadResourceResult::new(vec![ResourceContents::TextResourceContents {
            uri: request.uri,
            mime_type: Some("application/json".to_string()),
            text,
            meta: None,
        }])
        .into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let agent = self.caller(&ctx).await.map_err(|e| ErrorData::invalid_request(e.detail, None))?;
        let mailbox = Self::own_inbox(&request.uri, &agent)?;
        agent.require("read").map_err(|e| ErrorData::invalid_request(e.detail, None))?;
        require_read(&self.app, agent.name(), &mailbox)
            .await
            .map_err(|e| ErrorData::invalid_request(e.detail, None))?;
        let running = |map: &HashMap<String, tokio::task::JoinHandle<()>>| {
            map.get(&request.uri).is_some_and(|t| !t.is_finished())
        };
        if self.watches.0.lock().map(|map| running(&map)).unwrap_or(false) {
            return Ok(());
        }
        // Listening before the answer: every message that lands after it is notified.
        let channel = format!("mailbox:{mailbox}");
        let first =
            listen(&self.app, &channel).await.map_err(|e| ErrorData::internal_error(e.detail, None))?;
        let mut map = self.watches.0.lock().map_err(|_| ErrorData::internal_error("lock poisoned", None))?;
        if running(&map) {
            return Ok(());
        }
        map.retain(|_, t| !t.is_finished());
        if map.len() >= MAX_WATCHES {
            return Err(ErrorData::invalid_request(
                format!("at most {MAX_WATCHES} resource subscriptions per session"),
                None,
            ));
        }
        let task = tokio::spawn(watch(
            self.app.clone(),
            channel,
            request.uri.clone(),
            ctx.peer.clone(),
            Some(first),
        ));
        map.insert(request.uri, task);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Ok(mut map) = self.watches.0.lock() {
            if let Some(task) = map.remove(&request.uri) {
                task.abort();
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- transports

/// Settings of the `/mcp` endpoint.
#[derive(Clone, Debug, Default)]
pub struct HttpSettings {
    /// `Host` values accepted (DNS rebinding protection); `*` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted; a request with any other `Origin` is refused (403).
    pub allowed_origins: Vec<String>,
}

/// Checks the bearer token of every `/mcp` request as the REST routes do and hands the
/// agent to the tools in the request's extensions.
async fn authenticate_mcp(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    match Agent::from_request_parts(&mut parts, &app).await {
        Ok(agent) => {
            parts.extensions.insert(agent);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

/// The streamable HTTP endpoint, to be nested at `/mcp`.
pub fn http_router(app: AppState, settings: &HttpSettings) -> Router<AppState> {
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_origins(settings.allowed_origins.clone())
        .enforce_origin_validation();
    config = if settings.allowed_hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(settings.allowed_hosts.clone())
    };
    let factory_app = app.clone();
    let service = StreamableHttpService::new(
        move || Ok(Mailbox::new(factory_app.clone(), None)),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new().route_service("/mcp", service).layer(middleware::from_fn_with_state(app, authenticate_mcp))
}

/// Serves the tools over stdin/stdout for the agent of `token` until the client closes.
pub async fn serve_stdio(app: Arc<App>, token: String) -> Result<(), String> {
    let service = Mailbox::new(app, Some(token))
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP over stdio: {e}"))?;
    service.waiting().await.map_err(|e| format!("MCP over stdio: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_cut_with_a_marker() {
        assert_eq!(cut("hello", 5), "hello");
        assert_eq!(cut("héllo wörld", 5), "héllo…[cut 6 of 11 characters]");
        assert_eq!(cut("abc", 0), "…[cut 3 of 3 characters]");
    }

    #[test]
    fn tool_schemas_refuse_unknown_arguments() {
        let tools = Mailbox::tool_router().list_all();
        assert_eq!(tools.len(), 9);
        for tool in tools.iter().filter(|t| t.name != "mailbox_whoami") {
            assert_eq!(
                tool.input_schema.get("additionalProperties"),
                Some(&serde_json::json!(false)),
                "{}",
                tool.name
            );
        }
    }
}
