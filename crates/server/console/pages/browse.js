// One knowledge base's items, a page at a time: thumbnails of pictures, texts, ids,
// filenames and metadata, each deletable.

import { api, enc, run, thumbnail } from "../api.js";
import { h, mount, toast, confirmDialog, errorLine, fmtDate } from "../dom.js";
import { go } from "../router.js";

const SIZES = [25, 50, 100, 200];

export default async function browse(params) {
  const model = params.get("model");
  const collection = params.get("collection");
  const scope = params.get("scope");
  const limit = SIZES.includes(Number(params.get("limit"))) ? Number(params.get("limit")) : 50;
  const after = params.get("after") || "";
  // The cursors of the pages before this one, for "Previous".
  const back = params.get("back") ? params.get("back").split("\n") : [];
  const name = `${model}/${collection}/${scope}`;
  const path = `api/knowledge-bases/${enc(model)}/${enc(collection)}/${enc(scope)}/items`;
  const q = new URLSearchParams({ limit: String(limit) });
  if (after) q.set("after", after);
  const status = h("div", {});
  mount(h("h1", {}, name), h("p", { class: "muted" }, "Loading…"));
  const page = await api("GET", `${path}?${q}`);
  const at = (extra) => ({ model, collection, scope, limit, ...extra });
  const size = h("select", { id: "page-size", "aria-label": "Items per page",
    onchange: () => go("browse", at({ limit: size.value })) },
    SIZES.map((n) => h("option", { value: String(n), selected: n === limit }, `${n} a page`)));
  const last = page.data.at(-1)?.id;
  const nav = h("div", { class: "row" },
    size,
    h("button", { type: "button", class: "quiet", disabled: back.length === 0 && !after,
      onclick: () => go("browse", at({ after: back.at(-1) || "", back: back.slice(0, -1).join("\n") })) }, "Previous"),
    h("button", { type: "button", class: "quiet", disabled: !page.has_more, id: "next-page",
      onclick: () => go("browse", at({ after: last, back: [...back, after].join("\n") })) }, "Next"),
    page.count !== undefined ? h("span", { class: "muted" }, `${page.count.toLocaleString()} items`) : null,
    h("button", { type: "button", class: "quiet", onclick: () => go("playground", { model, scope }) }, "Search this scope"));
  const cards = page.data.map((item) => card(item, { model, scope, status }));
  mount(h("h1", {}, name), status, nav, h("div", { class: "results", id: "items" }, cards));
}

function card(item, { model, scope, status }) {
  const picture = item.media_ref ? h("img", { alt: item.filename || item.id, loading: "lazy" }) : null;
  if (picture) {
    thumbnail(item.media_ref).then((url) => { picture.src = url; })
      .catch((e) => picture.replaceWith(h("p", { class: "error text" }, e.message)));
  }
  const meta = item.metadata ? JSON.stringify(item.metadata) : "";
  const el = h("article", { class: "result", "data-id": item.id },
    picture,
    item.text ? h("div", { class: "text" }, item.text) : null,
    h("div", { class: "meta" },
      h("code", {}, item.id),
      item.filename ? h("span", { class: "muted" }, item.filename) : null,
      meta ? h("code", { class: "muted", title: meta }, meta.length > 120 ? meta.slice(0, 117) + "…" : meta) : null,
      h("span", { class: "muted" }, fmtDate(item.updated_at)),
      h("button", { type: "button", class: "quiet", "aria-label": `Delete ${item.id}`, onclick: async () => {
        if (!await confirmDialog(`Delete ${item.id}?`, `The item ${item.id} is removed from ${scope}.`, "Delete")) return;
        try {
          await run({ model, mode: "delete", scope, input: { ids: [item.id] }, params: {} });
          el.remove();
          toast(`Deleted ${item.id}`);
        } catch (e) {
          status.replaceChildren(errorLine(e));
        }
      } }, "Delete")));
  return el;
}
