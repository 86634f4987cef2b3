// The playground: search a scope by text or by a picture dropped on the page, see the
// results as a grid, search again from any result, and copy the exact request as curl,
// Python or JavaScript. The query lives in the URL, so a search can be shared.

import { api, run, upload, thumbnail, isPicture, listModels, listKnowledgeBases } from "../api.js";
import { h, mount, errorLine, dropZone, toast } from "../dom.js";
import { go } from "../router.js";
import { SNIPPETS } from "../snippets.js";

export default async function playground(params) {
  const [models, bases] = await Promise.all([listModels(), listKnowledgeBases()]);
  const searchable = models.filter((m) => m.modes?.search && m.installed);
  const state = {
    model: params.get("model") || searchable[0]?.slug || "",
    scope: params.get("scope") || "",
    text: params.get("text") || "",
    media_ref: params.get("media_ref") || "",
    filename: params.get("filename") || "",
    top_k: params.get("top_k") || "10",
    ef: params.get("ef") || "",
    exact: params.get("exact") === "true",
    filter: params.get("filter") || "",
  };
  const model = h("select", { id: "model", onchange: () => { fillScopes(); showDrop(); } },
    searchable.map((m) => h("option", { value: m.slug, selected: m.slug === state.model }, m.slug)));
  const scopes = h("datalist", { id: "scopes" });
  const scope = h("input", { id: "scope", list: "scopes", value: state.scope, required: true,
    pattern: "[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}", autocomplete: "off" });
  function fillScopes() {
    scopes.replaceChildren(...bases.filter((b) => b.model === model.value)
      .map((b) => h("option", { value: b.scope }, `${b.scope} (${b.count})`)));
    if (!scope.value) scope.value = bases.find((b) => b.model === model.value)?.scope || "";
  }
  fillScopes();
  // Typing a text replaces a dropped picture as the query.
  const text = h("input", { id: "query-text", type: "search", value: state.text,
    placeholder: "Describe what to find",
    oninput: () => { if (state.media_ref && text.value) { state.media_ref = ""; state.filename = ""; showPicked(); } } });
  const topK = h("input", { id: "top-k", type: "number", min: "1", max: "1000", value: state.top_k });
  const ef = h("input", { id: "ef", type: "number", min: "1", value: state.ef, placeholder: "default" });
  const exact = h("input", { id: "exact", type: "checkbox", checked: state.exact });
  const filter = h("textarea", { id: "filter", rows: "3",
    placeholder: '{"must": [{"key": "album", "match": {"value": "Holidays"}}]}' }, state.filter);
  const picked = h("div", { class: "row", id: "query-picture" });
  const status = h("div", { id: "status" });
  const results = h("div", { class: "results", id: "results" });
  const snippet = h("div", { id: "snippet" });

  function showPicked() {
    picked.replaceChildren();
    if (!state.media_ref) return;
    const img = h("img", { alt: "query picture", class: "thumb-small", id: "query-thumb" });
    thumbnail(state.media_ref, 128).then((u) => { img.src = u; }).catch(() => {});
    picked.append(img, h("span", {}, state.filename || state.media_ref),
      h("button", { type: "button", class: "quiet", onclick: () => { state.media_ref = ""; state.filename = ""; showPicked(); } }, "Clear picture"));
  }
  showPicked();

  const drop = dropZone({ label: "…or drop a picture to search by it", multiple: false, onFiles: async (files) => {
    const file = files.find(isPicture);
    if (!file) { status.replaceChildren(errorLine({ message: "That is not a JPEG, PNG, WebP or GIF picture." })); return; }
    status.replaceChildren(h("p", { class: "muted" }, `Uploading ${file.name}…`));
    try {
      const media = await upload(file);
      state.media_ref = media.media_ref;
      state.filename = media.filename;
      text.value = "";
      showPicked();
      search();
    } catch (e) {
      status.replaceChildren(errorLine(e));
    }
  } });

  // Only a model whose search takes a picture gets the drop zone.
  const dropBox = h("div", { class: "wide" });
  function showDrop() {
    const m = searchable.find((x) => x.slug === model.value);
    const pictures = Boolean(m?.modes?.search?.input_schema?.properties?.image);
    dropBox.replaceChildren(...(pictures ? [drop, picked] : []));
    if (!pictures) { state.media_ref = ""; state.filename = ""; }
  }
  showDrop();

  function request() {
    const input = state.media_ref
      ? { image: { media_ref: state.media_ref, filename: state.filename || "query" } }
      : { text: text.value };
    const p = {};
    if (topK.value) p.top_k = Number(topK.value);
    if (ef.value) p.ef = Number(ef.value);
    if (exact.checked) p.exact = true;
    if (filter.value.trim()) p.filter = JSON.parse(filter.value);
    return { model: model.value, mode: "search", scope: scope.value, input, params: p };
  }

  async function search() {
    let body;
    try {
      body = request();
    } catch (e) {
      status.replaceChildren(errorLine({ message: `The filter is not valid JSON: ${e.message}`, param: "params.filter" }));
      return;
    }
    if (!body.scope || (!state.media_ref && !text.value.trim())) {
      status.replaceChildren(errorLine({ message: "Give a scope and a text, or drop a picture." }));
      return;
    }
    go("playground", {
      model: body.model, scope: body.scope, text: state.media_ref ? "" : text.value,
      media_ref: state.media_ref, filename: state.filename, top_k: topK.value, ef: ef.value,
      exact: exact.checked ? "true" : "", filter: filter.value.trim(),
    }, { replace: true });
    status.replaceChildren(h("p", { class: "muted" }, "Searching…"));
    showSnippets(body);
    try {
      const started = performance.now();
      const answer = await run(body);
      const ms = Math.round(performance.now() - started);
      const out = answer.output;
      status.replaceChildren(h("p", { class: "muted", id: "summary" },
        `${out.results.length} results in ${ms} ms${out.exhaustive ? " (every item compared)" : ""}`));
      results.replaceChildren(...out.results.map((r, i) => resultCard(r, i)));
    } catch (e) {
      results.replaceChildren();
      status.replaceChildren(errorLine(e));
    }
  }

  function resultCard(r, i) {
    const img = r.media_ref ? h("img", { alt: r.filename || r.id }) : null;
    if (img) thumbnail(r.media_ref).then((u) => { img.src = u; })
      .catch((e) => img.replaceWith(h("p", { class: "error text" }, e.message)));
    return h("article", { class: "result", "data-id": r.id, "data-rank": String(i + 1) },
      img,
      r.text ? h("div", { class: "text" }, r.text) : null,
      h("div", { class: "meta" },
        h("strong", { class: "score" }, r.score.toFixed(4)),
        h("code", {}, r.id),
        r.filename ? h("span", { class: "muted" }, r.filename) : null,
        r.metadata ? h("code", { class: "muted" }, JSON.stringify(r.metadata)) : null,
        h("button", { type: "button", class: "quiet more-like-this", onclick: () => {
          if (r.media_ref) {
            state.media_ref = r.media_ref;
            state.filename = r.filename || r.id;
            text.value = "";
          } else {
            state.media_ref = "";
            text.value = r.text || r.id;
          }
          showPicked();
          search();
        } }, "More like this")));
  }

  function showSnippets(body) {
    const pre = h("pre", { id: "snippet-text", tabindex: "0", hidden: true });
    const buttons = Object.entries(SNIPPETS).map(([name, make]) =>
      h("button", { type: "button", class: "quiet", id: `copy-${name}`, onclick: async () => {
        pre.textContent = make("api/runs", body);
        pre.dataset.language = name;
        pre.hidden = false;
        try {
          await navigator.clipboard.writeText(pre.textContent);
          toast(`Copied as ${name}`);
        } catch {
          toast("Shown below: select it to copy (this browser did not allow the clipboard)");
        }
      } }, `Copy as ${name === "javascript" ? "JavaScript" : name === "python" ? "Python" : "curl"}`));
    snippet.replaceChildren(h("div", { class: "row" }, buttons), pre);
  }

  const form = h("form", { class: "card grid", id: "search-form", onsubmit: (e) => { e.preventDefault(); search(); } },
    h("label", {}, "Model", model),
    h("label", {}, "Scope", scope, scopes),
    h("label", { class: "wide" }, "Text", text),
    dropBox,
    h("label", {}, "top_k", topK),
    h("label", {}, "ef", ef),
    h("label", { class: "check" }, exact, "exact (compare every item)"),
    h("label", { class: "wide" }, "Filter (params.filter, JSON)", filter),
    h("div", { class: "row wide" }, h("button", { type: "submit", id: "search" }, "Search")));
  if (searchable.length === 0) {
    mount(h("h1", {}, "Playground"), h("p", { class: "card" }, "No installed model has a search mode. See ",
      h("a", { href: "#/models" }, "Models"), "."));
    return;
  }
  mount(h("h1", {}, "Playground"), form, status, results, snippet);
  if (state.scope && (state.text || state.media_ref)) search();
}
