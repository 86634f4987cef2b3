// Keys: the operator's page. The admin token (Authorization: Bearer) unlocks listing,
// creating (the key is shown once), renaming and revoking API keys.

import { api, enc, session } from "../api.js";
import { h, mount, errorLine, toast, confirmDialog, fmtDate } from "../dom.js";

export default async function keys() {
  if (!session.admin) return unlock();
  let list;
  try {
    list = await api("GET", "api/api-keys/", undefined, { admin: true });
  } catch (e) {
    session.admin = null;
    return unlock(e.status === 401 || e.status === 403
      ? "That admin token was not accepted." : e.message);
  }
  const status = h("div", {});
  const name = h("input", { id: "new-key-name", required: true, placeholder: "laptop" });
  const workspace = h("input", { id: "new-key-workspace", placeholder: "default" });
  const shown = h("div", { id: "new-key" });
  const create = h("form", { class: "card grid", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const body = { name: name.value.trim() };
      if (workspace.value.trim()) body.workspace = workspace.value.trim();
      const made = await api("POST", "api/api-keys/", body, { admin: true });
      const key = made.key;
      shown.replaceChildren(h("div", { class: "card" },
        h("p", {}, "The new key, shown this once:"),
        h("p", { class: "shown-once", id: "new-key-value" }, key),
        h("button", { type: "button", onclick: async () => {
          try { await navigator.clipboard.writeText(key); toast("Copied"); }
          catch { toast("Select the key to copy it"); }
        } }, "Copy")));
      name.value = "";
      await refresh();
    } catch (err) {
      status.replaceChildren(errorLine(err));
    }
  } },
    h("h2", { class: "wide" }, "Create a key"),
    h("label", {}, "Name", name), h("label", {}, "Workspace", workspace),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Create")));
  const body = h("tbody", {});
  async function refresh() {
    list = await api("GET", "api/api-keys/", undefined, { admin: true });
    body.replaceChildren(...(list.data || list).map(row));
  }
  function row(k) {
    const label = h("input", { value: k.name, "aria-label": `Name of ${k.prefix}` });
    return h("tr", { "data-key": k.id },
      h("td", {}, label),
      h("td", {}, h("code", {}, k.prefix)),
      h("td", {}, k.workspace ?? ""),
      h("td", {}, fmtDate(k.created_at)),
      h("td", {}, fmtDate(k.last_used_at) || "never"),
      h("td", {}, k.revoked_at ? h("span", { class: "error" }, `revoked ${fmtDate(k.revoked_at)}`) : "active"),
      h("td", {}, h("div", { class: "row" },
        h("button", { type: "button", class: "quiet", onclick: async () => {
          try {
            await api("PATCH", `api/api-keys/${enc(k.id)}/`, { name: label.value.trim() }, { admin: true });
            toast("Renamed");
          } catch (e) { status.replaceChildren(errorLine(e)); }
        } }, "Rename"),
        k.revoked_at ? null : h("button", { type: "button", class: "danger", onclick: async () => {
          if (!await confirmDialog(`Revoke ${k.name}?`, `The key ${k.prefix}… stops working at once.`, "Revoke")) return;
          try {
            await api("DELETE", `api/api-keys/${enc(k.id)}/`, undefined, { admin: true });
            await refresh();
          } catch (e) { status.replaceChildren(errorLine(e)); }
        } }, "Revoke"))));
  }
  body.replaceChildren(...(list.data || list).map(row));
  mount(h("h1", {}, "Keys"), status, create, shown,
    h("div", { class: "table" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Name", "Prefix", "Workspace", "Created", "Last used", "State", ""]
        .map((t) => h("th", { scope: "col" }, t)))), body)));
}

function unlock(message) {
  const token = h("input", { type: "password", id: "admin-token", autocomplete: "off", required: true });
  mount(h("h1", {}, "Keys"), h("form", { class: "card", onsubmit: (e) => {
    e.preventDefault();
    session.admin = token.value.trim();
    keys();
  } },
    h("p", { class: "muted" }, "Key management takes the operator's admin token (AIMP_ADMIN_TOKEN), kept for this tab only."),
    h("label", {}, "Admin token", token),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Unlock")),
    message ? errorLine({ message }) : null));
  token.focus();
}
