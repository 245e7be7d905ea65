// genrec web page: every piece of catalog text goes through textContent,
// never innerHTML, so an item titled <script>…</script> shows as text.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function getJSON(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  const started = performance.now();
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(`${response.status}: ${detail || response.statusText}`);
  }
  body._ms = performance.now() - started;
  return body;
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text || "";
  status.classList.toggle("error", Boolean(isError));
}

function formatPrice(price) {
  return price === null || price === undefined ? "—" : `$${Number(price).toFixed(2)}`;
}

function itemCard(hit) {
  const card = el("li", "hit");
  card.dataset.itemId = hit.item_id;
  const head = el("div", "hit-head");
  if (hit.rank !== undefined) head.append(el("span", "rank", hit.rank));
  head.append(el("span", "title", hit.title));
  if (hit.score !== undefined && hit.score !== null) head.append(el("span", "score", Number(hit.score).toFixed(3)));
  card.append(head);
  const meta = el("div", "meta");
  meta.append(el("span", "category", (hit.category || []).join(" › ")));
  meta.append(el("span", "price", formatPrice(hit.price)));
  const origin = el("span", `origin origin-${hit.origin === "ai" ? "ai" : "human"}`, hit.origin === "ai" ? "AI-generated" : "human");
  meta.append(origin);
  if (hit.brand) meta.append(el("span", "brand", hit.brand));
  if (hit.action) meta.append(el("span", `action action-${hit.action}`, hit.action));
  card.append(meta);
  return card;
}

function resultColumn(answer) {
  const column = el("div", "column");
  column.dataset.retriever = answer.retriever;
  const header = el("div", "column-head");
  header.append(el("span", "retriever-name", answer.retriever));
  const what = answer.query === null
    ? `recommendations${answer.user_id === null ? " (anonymous)" : ` for user ${answer.user_id}`}`
    : `“${answer.query}”${answer.user_id === null ? "" : ` for user ${answer.user_id}`}`;
  header.append(el("span", "what", what));
  header.append(el("span", "took", `${answer.hits.length} items · ${answer._ms.toFixed(0)} ms`));
  column.append(header);
  const list = el("ol", "hits");
  for (const hit of answer.hits) list.append(itemCard(hit));
  if (!answer.hits.length) list.append(el("li", "empty muted", "No results."));
  column.append(list);
  return column;
}

let latestRun = 0;

async function runRequest() {
  const run = ++latestRun;
  const query = $("q").value.trim();
  const user = $("user").value;
  const k = $("k").value;
  const retrievers = [$("retriever-a").value];
  if ($("compare").checked && $("retriever-b").value) retrievers.push($("retriever-b").value);
  setStatus(query ? "searching…" : "recommending…");
  try {
    const answers = await Promise.all(retrievers.map((retriever) => query
      ? getJSON("/search", { q: query, user_id: user, k, retriever })
      : getJSON("/recommend", { user_id: user, k, retriever })));
    if (run !== latestRun) return;
    const results = $("results");
    results.replaceChildren(...answers.map(resultColumn));
    results.classList.toggle("two", answers.length === 2);
    setStatus("");
  } catch (error) {
    if (run === latestRun) setStatus(error.message, true);
  }
}

async function showUser() {
  const user = $("user").value;
  const summary = $("user-summary");
  const history = $("history");
  history.replaceChildren();
  if (!user) {
    summary.textContent = "Anonymous visitor: a cold-start user with no history.";
    return;
  }
  try {
    const profile = await getJSON(`/users/${encodeURIComponent(user)}`, { recent: 10 });
    summary.replaceChildren();
    summary.append(el("div", "user-id", `user ${profile.user_id}`));
    const facts = Object.entries(profile.profile).map(([key, value]) => `${key}: ${value}`);
    facts.push(`${profile.n_interactions} interactions`);
    summary.append(el("div", "muted", facts.join(" · ")));
    summary.append(el("div", "section-label", "Recent history"));
    for (const entry of profile.recent) history.append(itemCard(entry));
  } catch (error) {
    summary.textContent = error.message;
  }
}

function fillSelect(select, values, selected) {
  select.replaceChildren(...values.map((value) => {
    const option = el("option", null, value);
    option.value = value;
    option.selected = value === selected;
    return option;
  }));
}

async function init() {
  let health;
  for (;;) {
    try {
      health = await getJSON("/healthz");
      break;
    } catch (error) {
      setStatus("model is loading…");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  $("version").textContent = `model ${health.model_version}`;
  const names = health.retrievers;
  fillSelect($("retriever-a"), names, names[0]);
  fillSelect($("retriever-b"), names, names[1] || names[0]);
  $("compare").disabled = names.length < 2;
  const users = await getJSON("/users", { limit: 50 });
  for (const id of users.user_ids) {
    const option = el("option", null, `user ${id}`);
    option.value = id;
    $("user").append(option);
  }
  const params = new URLSearchParams(window.location.search);
  if (params.get("q")) $("q").value = params.get("q");
  const wantedUser = params.get("user_id");
  if (wantedUser && /^\d+$/.test(wantedUser)) {
    if (![...$("user").options].some((option) => option.value === wantedUser)) {
      const option = el("option", null, `user ${wantedUser}`);
      option.value = wantedUser;
      $("user").append(option);
    }
    $("user").value = wantedUser;
  }
  if (["10", "20", "50"].includes(params.get("k"))) $("k").value = params.get("k");
  if (params.get("compare") && names.length > 1) {
    $("compare").checked = true;
    $("retriever-b").disabled = false;
    if (params.get("b")) $("retriever-b").value = params.get("b");
  }
  if (params.get("retriever")) $("retriever-a").value = params.get("retriever");

  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); runRequest(); });
  $("user").addEventListener("change", () => { showUser(); runRequest(); });
  $("compare").addEventListener("change", () => { $("retriever-b").disabled = !$("compare").checked; runRequest(); });
  for (const id of ["retriever-a", "retriever-b", "k"]) $(id).addEventListener("change", runRequest);
  document.body.dataset.ready = "true";
  showUser();
  runRequest();
}

document.addEventListener("DOMContentLoaded", init);
