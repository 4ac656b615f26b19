// tornado-kit reference app: plain JavaScript, no build step.
//
// Browsers cannot set an Authorization header on WebSocket or EventSource
// requests, so the token goes in the `access_token` query argument there (the
// server redacts it from its logs); fetch() calls use the header.
"use strict";

const state = {
  token: null,
  user: null,
  room: "lobby",
  ws: null,
  wsRetry: null,
  events: null,
};

const $ = (id) => document.getElementById(id);

function setText(id, text) {
  $(id).textContent = text;
}

async function api(method, path, { json, body, contentType } = {}) {
  const headers = {};
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  const response = await fetch(path, { method, headers, body });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && state.token) signOut();
    const detail = (data && (data.detail || data.title)) || response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

function wsUrl(path, params) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams(params).toString();
  return url.toString();
}

// -- sign in ------------------------------------------------------------------

async function signIn(name) {
  setText("signin-error", "");
  try {
    const data = await api("POST", "api/token", { json: { name } });
    state.token = data.token;
    state.user = data.user;
    sessionStorage.setItem("tk-session", JSON.stringify({ token: data.token, user: data.user }));
    start();
  } catch (err) {
    setText("signin-error", err.message);
  }
}

function signOut() {
  sessionStorage.removeItem("tk-session");
  state.token = null;
  state.user = null;
  closeChat();
  if (state.events) state.events.close();
  state.events = null;
  $("app").hidden = true;
  $("signin-section").hidden = false;
  setText("whoami", "Not signed in");
}

function start() {
  $("signin-section").hidden = true;
  $("app").hidden = false;
  setText("whoami", `Signed in as ${state.user.name}`);
  document.body.dataset.user = state.user.name;
  connectChat();
  connectFeed();
  loadUsers();
}

// -- chat over WebSocket ------------------------------------------------------

function closeChat() {
  clearTimeout(state.wsRetry);
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close(1000);
  }
  state.ws = null;
  setText("ws-status", "closed");
}

function connectChat() {
  closeChat();
  const ws = new WebSocket(wsUrl("ws", { room: state.room, access_token: state.token }));
  state.ws = ws;
  setText("ws-status", "connecting");
  ws.onopen = () => {
    setText("ws-status", "open");
    document.body.dataset.ws = "open";
  };
  ws.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    if (message.error) {
      setText("chat-error", message.error.detail || "error");
      return;
    }
    addMessage(message);
  };
  ws.onclose = (event) => {
    document.body.dataset.ws = "closed";
    setText("ws-status", `closed (${event.code}), reconnecting`);
    // 1001: the server is shutting down or restarting; the load balancer
    // sends the next connection to another backend.
    state.wsRetry = setTimeout(connectChat, event.code === 1001 ? 200 : 2000);
  };
}

function addMessage(message) {
  const li = document.createElement("li");
  li.className = "message";
  li.dataset.id = message.id;
  if (state.user && message.from === state.user.name) li.classList.add("mine");
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = message.from;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  const time = document.createElement("time");
  time.textContent = new Date(message.ts * 1000).toLocaleTimeString();
  li.append(from, text, time);
  $("messages").append(li);
  li.scrollIntoView({ block: "nearest" });
}

// -- live feed over Server-Sent Events ----------------------------------------

function connectFeed() {
  if (state.events) state.events.close();
  // EventSource reconnects by itself and sends Last-Event-ID: the server
  // replays what this page missed.
  const source = new EventSource("events?" + new URLSearchParams({ access_token: state.token }));
  state.events = source;
  source.onopen = () => {
    setText("feed-status", "open");
    document.body.dataset.feed = "open";
  };
  source.onerror = () => {
    // CONNECTING: EventSource retries by itself. CLOSED: the server refused
    // the stream (e.g. 401 for an expired token) and it will not retry.
    const closed = source.readyState === EventSource.CLOSED;
    setText("feed-status", closed ? "closed" : "reconnecting");
    document.body.dataset.feed = closed ? "closed" : "reconnecting";
  };
  source.addEventListener("chat", (event) => {
    const m = JSON.parse(event.data);
    addFeed(event.lastEventId, "chat", `${m.from} in #${m.room}: ${m.text}`);
  });
  source.addEventListener("user", (event) => {
    const m = JSON.parse(event.data);
    const who = m.user.name || `#${m.user.id}`;
    addFeed(event.lastEventId, "user", `user ${who} ${m.action}`);
    loadUsers();
  });
  source.addEventListener("image", (event) => {
    const m = JSON.parse(event.data);
    addFeed(event.lastEventId, "image", `${m.from} uploaded a ${m.width}x${m.height} ${m.format}`);
  });
  // The server could not resume exactly (our last id is too old or unknown):
  // it says so with a "reset" event, then sends everything it still has.
  source.addEventListener("reset", () => {
    $("feed").replaceChildren();
    addFeed("", "reset", "feed restarted: older events are no longer available");
  });
}

function addFeed(id, kind, text) {
  const li = document.createElement("li");
  li.className = `feed-item feed-${kind}`;
  li.dataset.eventId = id;
  li.textContent = text;
  const feed = $("feed");
  feed.prepend(li);
  while (feed.children.length > 100) feed.lastElementChild.remove();
}

// -- users --------------------------------------------------------------------

async function loadUsers() {
  try {
    const page = await api("GET", "api/users?limit=100");
    const list = $("users");
    list.replaceChildren(
      ...page.items.map((user) => {
        const li = document.createElement("li");
        li.className = "user";
        li.dataset.id = user.id;
        li.textContent = user.name;
        return li;
      })
    );
  } catch (err) {
    // The feed will trigger the next refresh.
  }
}

// -- image upload -------------------------------------------------------------

async function uploadImage(file) {
  setText("image-error", "");
  setText("image-info", "processing…");
  try {
    const result = await api("POST", "api/images", {
      body: file,
      contentType: file.type || "application/octet-stream",
    });
    const img = $("thumbnail");
    img.src = result.thumbnail;
    img.width = result.width;
    img.height = result.height;
    img.hidden = false;
    setText(
      "image-info",
      `${result.original.width}x${result.original.height} ${result.format}` +
        ` (${result.size} bytes) -> ${result.width}x${result.height}`
    );
  } catch (err) {
    setText("image-info", "");
    setText("image-error", err.message);
  }
}

// -- wiring -------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("name").value.trim());
  });
  $("room-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.room = $("room").value.trim() || "lobby";
    $("messages").replaceChildren();
    connectChat();
  });
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-input");
    const text = input.value;
    if (!text.trim() || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    setText("chat-error", "");
    state.ws.send(JSON.stringify({ text }));
    input.value = "";
  });
  $("refresh-users").addEventListener("click", loadUsers);
  $("signout").addEventListener("click", signOut);
  $("image-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) uploadImage(file);
    event.target.value = "";
  });
  const saved = sessionStorage.getItem("tk-session");
  if (saved) {
    try {
      const session = JSON.parse(saved);
      state.token = session.token;
      state.user = session.user;
      start();
    } catch (err) {
      sessionStorage.removeItem("tk-session");
    }
  }
});
