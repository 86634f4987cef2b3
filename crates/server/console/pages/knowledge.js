// Knowledge Bases: every model/collection/scope of the workspace that holds data, to open,
// check and drop.

import { api, enc, listKnowledgeBases } from "../api.js";
import { h, mount, toast, confirmDialog, errorLine, fmtDate } from "../dom.js";
import { go } from "../router.js";

export default async function knowledge() {
  const status = h("div", {});
  mount(h("h1", {}, "Knowledge Bases"), status, h("p", { class: "muted" }, "Loading…"));
  const bases = await listKnowledgeBases();
  if (bases.length === 0) {
    mount(h("h1", {}, "Knowledge Bases"), h("p", { class: "card" },
      "Nothing is indexed in this workspace yet. ",
      h("a", { href: "#/index" }, "Index pictures or texts"), "."));
    return;
  }
  const rows = bases.map((kb) => {
    const name = `${kb.model}/${kb.collection}/${kb.scope}`;
    return h("tr", { "data-kb": name },
      h("td", {}, h("a", { href: `#/browse?${new URLSearchParams({ model: kb.model, collection: kb.collection, scope: kb.scope })}` }, name)),
      h("td", {}, kb.count.toLocaleString()),
      h("td", {}, kb.dimensions),
      h("td", {}, kb.metric),
      h("td", {}, kb.precision),
      h("td", {}, fmtDate(kb.updated_at)),
      h("td", {}, h("div", { class: "row" },
        h("button", { type: "button", class: "quiet",
          onclick: () => go("playground", { model: kb.model, scope: kb.scope }) }, "Search"),
        h("button", { type: "button", class: "quiet",
          onclick: () => go("recall", { model: kb.model, collection: kb.collection, scope: kb.scope }) }, "Recall"),
        h("button", { type: "button", class: "danger", "aria-label": `Drop ${name}`,
          onclick: () => drop(kb, status) }, "Drop"))));
  });
  mount(h("h1", {}, "Knowledge Bases"), status,
    h("div", { class: "table" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Model / collection / scope", "Items", "Dimensions", "Metric",
        "Precision", "Updated", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows))));
}

async function drop(kb, status) {
  const name = `${kb.model}/${kb.collection}/${kb.scope}`;
  const yes = await confirmDialog(`Drop ${name}?`,
    `All ${kb.count.toLocaleString()} items of ${name} and their vectors are deleted. This cannot be undone.`,
    `Drop ${kb.scope}`);
  if (!yes) return;
  try {
    await api("DELETE", `api/knowledge-bases/${enc(kb.model)}/${enc(kb.collection)}/${enc(kb.scope)}`);
    toast(`Dropped ${name}`);
    knowledge();
  } catch (e) {
    status.replaceChildren(errorLine(e));
  }
}
