// The ChatProvider playground: pick a provider and a model from what the relay says this caller
// may use, chat with it (streamed), and see the provider's conditions.
//
// Plain ES module, no dependencies, no build step. It only talks to this origin's relay API:
//   GET  /v1/providers         the caller's providers, with conditions (playground route)
//   GET  /v1/models            the caller's usable models (qualified ids)
//   POST /v1/chat/completions  with "stream": true; the SSE answer is parsed from fetch's body
// Text from the network is only ever put in the page with textContent (never as HTML); the
// relay's Content-Security-Policy requires Trusted Types, so an HTML sink would fail loudly.

const REFRESH_MS = 10000;

const state = {
  token: "",           // a bearer token, kept in memory only
  providers: [],       // from /v1/providers
  models: [],          // from /v1/models
  history: [],         // the conversation sent with each request
  controller: null,    // AbortController of the answer being streamed
};

const $ = (id) => document.getElementById(id);

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "";
  }
}

function headers(json) {
  const h = { Accept: json ? "text/event-stream, application/json" : "application/json" };
  if (json) h["Content-Type"] = "application/json";
  if (state.token) h.Authorization = `Bearer ${state.token}`;
  return h;
}

async function getJSON(path) {
  const response = await fetch(path, { headers: headers(false), cache: "no-store" });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// ---- Server-sent events -------------------------------------------------------------------

// Yields the data of each event of an SSE byte stream (per the HTML standard's parsing rules:
// CR, LF or CRLF line ends, comment lines, multi-line data joined with "\n", a blank line ends
// an event).
export async function* sseEvents(byteStream) {
  const reader = byteStream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  const line = function* (text) {
    if (text === "") {
      if (data.length) yield data.join("\n");
      data = [];
      return;
    }
    if (text.startsWith(":")) return;  // a comment, such as the relay's ": keep-alive"
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      for (;;) {
        const end = buffer.search(/\r\n|\r|\n/);
        // A CR at the very end may be the first half of a CRLF split across chunks.
        if (end < 0 || (end === buffer.length - 1 && buffer[end] === "\r")) break;
        const width = buffer.startsWith("\r\n", end) ? 2 : 1;
        const text = buffer.slice(0, end);
        buffer = buffer.slice(end + width);
        yield* line(text);
      }
    }
    if (buffer.endsWith("\r")) buffer = buffer.slice(0, -1);
    if (buffer !== "") yield* line(buffer);
    if (data.length) yield data.join("\n");
  } finally {
    reader.releaseLock();
  }
}

// ---- Rendering ----------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function setStatus(text) { $("status").textContent = text; }

function selectedProvider() {
  return state.providers.find((p) => p.id === $("provider").value) || null;
}

function modelsOf(provider) {
  if (!provider) return [];
  return state.models.filter((m) => m.owned_by === provider.id);
}

function renderProviders() {
  const select = $("provider");
  const previous = select.value;
  select.replaceChildren();
  for (const p of state.providers) {
    const name = p.displayName ? `${p.displayName} (${p.id})` : p.id;
    const suffix = p.ready ? "" : ` · not ready: ${p.reason}`;
    select.append(el("option", { value: p.id }, name + suffix));
  }
  const keep = state.providers.find((p) => p.id === previous);
  const firstReady = state.providers.find((p) => p.ready);
  select.value = (keep || firstReady || state.providers[0] || { id: "" }).id;
  select.disabled = state.providers.length === 0;
  if (state.providers.length === 0) {
    setStatus("No provider you may use yet. Apply a ChatProvider, then: "
      + "kubectl wait --for=condition=Ready chatprovider/<name> -n <namespace>");
  }
  renderProvider();
}

function renderProvider() {
  const provider = selectedProvider();
  const modelSelect = $("model");
  const previous = modelSelect.value;
  modelSelect.replaceChildren();
  const models = modelsOf(provider);
  for (const m of models) {
    modelSelect.append(el("option", { value: m.id }, m.upstream_id || m.id));
  }
  if (models.some((m) => m.id === previous)) modelSelect.value = previous;
  modelSelect.disabled = models.length === 0;
  $("provider-description").textContent = provider
    ? [provider.description, provider.tags.length ? `tags: ${provider.tags.join(", ")}` : ""]
      .filter(Boolean).join(" · ")
    : "";
  renderConditions(provider);
  renderSnippet();
  const usable = models.length > 0;
  $("prompt").disabled = !usable;
  $("send").disabled = !usable || state.controller !== null;
}

function renderConditions(provider) {
  const stateLine = $("provider-state");
  const body = $("conditions").tBodies[0];
  body.replaceChildren();
  if (!provider) {
    stateLine.textContent = "No provider selected";
    stateLine.dataset.ready = "unknown";
    $("last-check").textContent = "";
    return;
  }
  if (provider.ready) {
    stateLine.textContent = `Ready: ${provider.message}`;
    stateLine.dataset.ready = "true";
  } else if (!provider.upToDate && provider.reason === "Ready") {
    stateLine.textContent = "Being checked after a change";
    stateLine.dataset.ready = "unknown";
  } else {
    stateLine.textContent = `Not ready: ${provider.reason}: ${provider.message}`;
    stateLine.dataset.ready = "false";
  }
  const marks = { True: "✔", False: "✘", Unknown: "?" };
  for (const c of provider.conditions) {
    if (c.type === "Ready") continue;
    body.append(el("tr", { "data-status": c.status, "data-type": c.type },
      el("td", { class: "mark", title: c.status }, marks[c.status] || "?"),
      el("td", {}, c.type),
      el("td", {}, c.reason, el("span", { class: "message" }, c.message))));
  }
  const last = provider.lastCheck;
  $("last-check").textContent = last && last.time
    ? `Last checked ${new Date(last.time).toLocaleString()}`
      + (last.latencyMs != null ? ` (${last.latencyMs} ms)` : "")
    : "";
}

function renderSnippet() {
  const model = $("model").value || "<model>";
  const base = `${window.location.origin}/v1`;
  const key = state.token ? "<your token>" : "unused";
  $("snippet-code").textContent = [
    "# Python (pip install openai)",
    "from openai import OpenAI",
    `client = OpenAI(base_url="${base}", api_key="${key}")`,
    "stream = client.chat.completions.create(",
    `    model="${model}",`,
    '    messages=[{"role": "user", "content": "Hello!"}],',
    "    stream=True,",
    ")",
    "for chunk in stream:",
    '    if chunk.choices:',
    '        print(chunk.choices[0].delta.content or "", end="")',
    "",
    "# curl",
    `curl ${base}/chat/completions -H 'Content-Type: application/json' \\`,
    ...(state.token ? ["  -H \"Authorization: Bearer $TOKEN\" \\"] : []),
    `  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello!"}]}'`,
  ].join("\n");
}

function appendMessage(role, text) {
  $("empty")?.remove();
  const textNode = el("div", { class: "text" }, text);
  const meta = el("div", { class: "meta" });
  const item = el("li", { class: `message ${role}`, "data-role": role },
    el("div", { class: "who" }, role === "user" ? "You" : "Assistant"), textNode, meta);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return { item, textNode, meta };
}

// ---- Loading ------------------------------------------------------------------------------

async function load() {
  try {
    const [providers, models] = await Promise.all([getJSON("/v1/providers"),
      getJSON("/v1/models")]);
    state.providers = providers.data;
    state.models = models.data;
    $("auth").hidden = true;
    $("relay").textContent = `${window.location.host} · ${state.providers.length} provider(s), `
      + `${state.models.length} model(s)`;
    renderProviders();
    if (state.providers.length) setStatus("");
    document.body.dataset.loaded = "true";
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      $("auth").hidden = false;
      $("auth-message").textContent = state.token ? `Refused: ${error.message}` : "";
      $("token").focus();
      setStatus("Sign in to see the providers you may use.");
    } else {
      setStatus(`Could not load providers: ${error.message}`);
    }
    document.body.dataset.loaded = "error";
  }
}

// ---- Chat ---------------------------------------------------------------------------------

function busy(on, controller = null) {
  state.controller = on ? controller : null;
  const usable = modelsOf(selectedProvider()).length > 0;
  $("stop").hidden = !on;
  $("provider").disabled = on || state.providers.length === 0;
  $("model").disabled = on || !usable;
  $("send").disabled = on || !usable;
}

async function send(text) {
  const model = $("model").value;
  if (!model || !text.trim()) return;
  state.history.push({ role: "user", content: text });
  appendMessage("user", text);
  const answer = appendMessage("assistant", "");
  answer.item.dataset.state = "streaming";
  const controller = new AbortController();
  busy(true, controller);
  setStatus(`Asking ${model} ...`);
  const started = performance.now();
  let firstToken = null;
  let content = "";
  let provider = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify({ model, messages: state.history, stream: true }),
      signal: controller.signal,
    });
    provider = response.headers.get("X-ChatProvider") || "";
    if (!response.ok) {
      throw new ApiError(response.status, await response.json().catch(() => null));
    }
    const type = response.headers.get("Content-Type") || "";
    if (type.startsWith("text/event-stream")) {
      let finished = false;
      for await (const data of sseEvents(response.body)) {
        if (data === "[DONE]") { finished = true; break; }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(0, chunk);  // the stream was ended by an error
        for (const choice of chunk.choices || []) {
          const piece = (choice.delta && choice.delta.content) || "";
          if (!piece) continue;
          if (firstToken === null) firstToken = performance.now();
          content += piece;
          answer.textNode.textContent = content;
        }
      }
      if (!finished) throw new Error("the stream ended before [DONE]");
    } else {  // an upstream that ignored "stream": true
      const body = await response.json();
      content = body.choices?.[0]?.message?.content ?? "";
      answer.textNode.textContent = content;
    }
    state.history.push({ role: "assistant", content });
    answer.item.dataset.state = "done";
    const total = Math.round(performance.now() - started);
    const ttft = firstToken === null ? "" : ` · first token ${Math.round(firstToken - started)} ms`;
    answer.meta.textContent = `${provider || model}${ttft} · ${total} ms`;
    setStatus("");
  } catch (error) {
    state.history.pop();  // the question was not answered: let it be asked again
    if (error.name === "AbortError") {
      answer.item.dataset.state = "stopped";
      answer.meta.textContent = "stopped";
      setStatus("Stopped.");
    } else {
      answer.item.dataset.state = "error";
      const code = error.code ? ` (${error.code})` : "";
      answer.textNode.textContent = content ? `${content}\n\n${error.message}` : error.message;
      answer.meta.textContent = `error${code}`;
      setStatus(`The request failed${code}: ${error.message}`);
      if (error.status === 401) $("auth").hidden = false;
    }
  } finally {
    busy(false);
    $("prompt").focus();
  }
}

// ---- Wiring -------------------------------------------------------------------------------

function init() {
  $("provider").addEventListener("change", renderProvider);
  $("model").addEventListener("change", renderSnippet);
  $("refresh").addEventListener("click", load);
  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    $("token").value = "";
    load();
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value;
    if (!text.trim() || state.controller) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("clear").addEventListener("click", () => {
    state.controller?.abort();
    state.history = [];
    $("messages").replaceChildren();
    setStatus("");
  });
  load();
  // Conditions change as the operator re-checks providers: refresh them while visible.
  setInterval(() => {
    if (document.visibilityState === "visible" && !state.controller) load();
  }, REFRESH_MS);
}

init();
