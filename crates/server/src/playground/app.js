// The sift playground: search a collection and see what the reranker changes, or rerank pasted
// texts. Every piece of server text reaches the page through textContent (never innerHTML), and
// the server sends a Content-Security-Policy that forbids inline scripts, so a document cannot
// inject markup or code.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "sift-api-key";

function status(message, ok) {
  const el = $("status");
  el.textContent = message || "";
  el.className = ok ? "ok" : "";
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = "Bearer " + key;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || response.statusText;
    const err = new Error(response.status === 401 ? "this server needs an API key: enter it above" : message);
    err.status = response.status;
    throw err;
  }
  return data;
}

// Lucene's English stop words, which sift's English BM25 analyzer drops: marking them would
// highlight words that did not make a document match.
const STOP_WORDS = new Set(("a an and are as at be but by for if in into is it no not of on or " +
  "such that the their then there these they this to was will with").split(" "));

// Query words worth marking (two letters or more, not stop words), as a case-insensitive
// pattern.
function termPattern(query) {
  const words = (query.toLowerCase().match(/[\p{L}\p{N}]{2,}/gu) || [])
    .filter((w) => !STOP_WORDS.has(w))
    .map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return words.length ? new RegExp("(" + [...new Set(words)].join("|") + ")", "giu") : null;
}

// The snippet as text nodes with <mark> around query words.
function markedText(text, pattern) {
  const span = el("span", "snippet");
  if (!pattern) {
    span.textContent = text;
    return span;
  }
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    span.append(document.createTextNode(text.slice(last, m.index)));
    span.append(el("mark", null, m[0]));
    last = m.index + m[0].length;
  }
  span.append(document.createTextNode(text.slice(last)));
  return span;
}

function position(label, value) {
  return label + " " + (value === null || value === undefined ? "–" : value);
}

function fmt(x) {
  return typeof x === "number" ? x.toFixed(3) : "–";
}

// One hit; `move` is the rank change against the recall list (reranked side only).
function hitItem(hit, pattern, move) {
  const li = el("li", "hit");
  li.dataset.id = hit.id;
  const head = el("div", "head");
  head.append(el("span", "rank", hit.rank), el("span", "id", hit.id));
  if (hit.title) head.append(el("span", "title", hit.title));
  if (move) head.append(el("span", "move " + move.kind, move.text));
  li.append(head);
  li.append(
    el(
      "div",
      "positions",
      [
        position("dense", hit.dense_rank),
        position("BM25", hit.bm25_rank),
        position("fused", hit.fused_rank),
        "rerank " + fmt(hit.rerank_score),
        "score " + fmt(hit.score),
      ].join(" · ")
    )
  );
  li.append(markedText(hit.snippet || "", pattern));
  return li;
}

function timings(t) {
  return (
    "embed " + t.query_embedding_ms.toFixed(1) + " · ANN " + t.ann_ms.toFixed(1) +
    " · BM25 " + t.bm25_ms.toFixed(1) + " · fusion " + t.fusion_ms.toFixed(1) +
    " · rerank " + t.rerank_ms.toFixed(1) + " · total " + t.total_ms.toFixed(1) + " ms"
  );
}

function moveOf(hit) {
  // fused_rank is the hit's place in hybrid recall, before reranking.
  const delta = hit.fused_rank - hit.rank;
  const topK = Number($("top-k").value) || 10;
  if (hit.fused_rank > topK) return { kind: "new", text: "new (was " + hit.fused_rank + ")" };
  if (delta > 0) return { kind: "up", text: "▲" + delta };
  if (delta < 0) return { kind: "down", text: "▼" + -delta };
  return { kind: "same", text: "=" };
}

async function loadCollections() {
  const select = $("collection");
  try {
    const data = await api("GET", "/collections");
    const chosen = select.value;
    select.replaceChildren(...data.collections.map((name) => {
      const option = el("option", null, name);
      option.value = name;
      return option;
    }));
    if (data.collections.includes(chosen)) select.value = chosen;
    status(data.collections.length ? "" : "no collections yet: index some documents first", true);
  } catch (e) {
    status(e.message);
  }
}

async function search(event) {
  event.preventDefault();
  const name = $("collection").value;
  const query = $("query").value;
  if (!name) return status("choose a collection");
  const topK = Number($("top-k").value) || 10;
  const candidates = Number($("candidates").value) || 100;
  const rerank = $("rerank-toggle").checked;
  const path = "/collections/" + encodeURIComponent(name) + "/search";
  status("searching…", true);
  try {
    const recall = await api("POST", path, { query, top_k: topK, rerank: false });
    const pattern = termPattern(query);
    $("recall-list").replaceChildren(...recall.hits.map((h) => hitItem(h, pattern, null)));
    $("recall-timings").textContent = timings(recall.timings);
    $("rerank-off").hidden = rerank;
    if (rerank) {
      const reranked = await api("POST", path, { query, top_k: topK, candidates, rerank: true });
      const items = reranked.hits.map((h) => hitItem(h, pattern, reranked.reranked ? moveOf(h) : null));
      $("rerank-list").replaceChildren(...items);
      $("rerank-timings").textContent = timings(reranked.timings);
      if (!reranked.reranked) status("this server has no rerank model (start it with --rerank-model)", true);
      else status("", true);
    } else {
      $("rerank-list").replaceChildren();
      $("rerank-timings").textContent = "";
      status("", true);
    }
  } catch (e) {
    status(e.message);
  }
}

async function rerankDirect(event) {
  event.preventDefault();
  const query = $("direct-query").value;
  const texts = $("direct-docs").value.split("\n").map((t) => t.trim()).filter((t) => t);
  if (!texts.length) return status("paste at least one document");
  status("reranking…", true);
  try {
    const ranked = await api("POST", "/rerank", { query, texts, return_text: true, truncate: true });
    const pattern = termPattern(query);
    $("direct-list").replaceChildren(...ranked.map((r, i) => {
      const li = el("li", "hit");
      li.dataset.index = r.index;
      const head = el("div", "head");
      head.append(el("span", "rank", i + 1), el("span", "id", "text " + (r.index + 1)), el("span", "positions", "score " + fmt(r.score)));
      li.append(head, markedText(r.text || "", pattern));
      return li;
    }));
    status("", true);
  } catch (e) {
    status(e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem(KEY) || "";
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("api-key").value.trim());
    loadCollections();
  });
  $("search-form").addEventListener("submit", search);
  $("direct-form").addEventListener("submit", rerankDirect);
  loadCollections();
});
