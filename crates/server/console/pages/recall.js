// Recall check: the scope's own vectors as queries, graph search against exact search:
// recall@k and both latencies, measured on the gateway.

import { api, enc, listKnowledgeBases } from "../api.js";
import { h, mount, errorLine } from "../dom.js";
import { go } from "../router.js";

export default async function recall(params) {
  const bases = await listKnowledgeBases();
  const wanted = `${params.get("model")}/${params.get("collection")}/${params.get("scope")}`;
  const base = h("select", { id: "recall-kb" }, bases.map((b) => {
    const name = `${b.model}/${b.collection}/${b.scope}`;
    return h("option", { value: name, selected: name === wanted }, `${name} (${b.count})`);
  }));
  const queries = h("input", { id: "recall-queries", type: "number", min: "1", max: "1000", value: params.get("queries") || "50" });
  const k = h("input", { id: "recall-k", type: "number", min: "1", max: "100", value: params.get("k") || "10" });
  const ef = h("input", { id: "recall-ef", type: "number", min: "1", max: "4096", value: params.get("ef") || "", placeholder: "default" });
  const out = h("div", { id: "recall-result" });
  const form = h("form", { class: "card grid", onsubmit: async (e) => {
    e.preventDefault();
    const [model, collection, scope] = base.value.split("/");
    go("recall", { model, collection, scope, queries: queries.value, k: k.value, ef: ef.value }, { replace: true });
    out.replaceChildren(h("p", { class: "muted" }, "Measuring…"));
    const body = { queries: Number(queries.value), k: Number(k.value) };
    if (ef.value) body.ef = Number(ef.value);
    try {
      const r = await api("POST", `api/knowledge-bases/${enc(model)}/${enc(collection)}/${enc(scope)}/recall`, body);
      const ms = (x) => (x === null ? "–" : `${x.toFixed(2)} ms`);
      out.replaceChildren(h("div", { class: "card" },
        h("p", {}, h("strong", { id: "recall-value" }, `recall@${r.k} ${r.recall.toFixed(3)}`),
          ` over ${r.queries} of the ${r.count.toLocaleString()} stored vectors, ef ${r.ef}`),
        h("table", {}, h("tbody", {},
          h("tr", {}, h("th", { scope: "row" }, "graph search"), h("td", {}, `p50 ${ms(r.graph_ms.p50)}`), h("td", {}, `p95 ${ms(r.graph_ms.p95)}`)),
          h("tr", {}, h("th", { scope: "row" }, "exact search"), h("td", {}, `p50 ${ms(r.exact_ms.p50)}`), h("td", {}, `p95 ${ms(r.exact_ms.p95)}`)))),
        r.graph_exhaustive > 0 ? h("p", { class: "muted" },
          `${Math.round(r.graph_exhaustive * 100)} % of the graph answers compared every item (a scope this small is searched exactly).`) : null));
    } catch (err) {
      out.replaceChildren(errorLine(err));
    }
  } },
    h("label", { class: "wide" }, "Knowledge base", base),
    h("label", {}, "Queries", queries), h("label", {}, "k", k), h("label", {}, "ef", ef),
    h("div", { class: "row" }, h("button", { type: "submit", id: "recall-run" }, "Check recall")));
  if (bases.length === 0) {
    mount(h("h1", {}, "Recall check"), h("p", { class: "card" }, "Nothing is indexed yet."));
    return;
  }
  mount(h("h1", {}, "Recall check"), form, out);
}
