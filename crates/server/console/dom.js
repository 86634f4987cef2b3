// Small DOM helpers: elements are built from data with textContent (never innerHTML), so
// nothing an item holds can run in the page.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function mount(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children);
  return main;
}

export function toast(text, ms = 4000) {
  const box = document.getElementById("toast");
  const line = h("div", {}, text);
  box.append(line);
  setTimeout(() => line.remove(), ms);
}

/// A message line for an error: what the gateway said, and the field it named.
export function errorLine(e) {
  const field = e.param ? ` (${e.param})` : "";
  return h("p", { class: "error", role: "alert" }, `${e.message}${field}`);
}

/// Asks before something that cannot be undone; resolves true when confirmed.
export function confirmDialog(title, text, action) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title" }, title),
      h("p", {}, text),
      h("div", { class: "row" },
        h("button", { type: "button", class: "danger", id: "confirm-yes",
          onclick: () => { dialog.close(); resolve(true); } }, action),
        h("button", { type: "button", class: "quiet",
          onclick: () => { dialog.close(); resolve(false); } }, "Cancel")));
    dialog.addEventListener("close", () => { dialog.remove(); resolve(false); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/// A drop zone that also opens a file picker (and a folder picker when `folders`).
export function dropZone({ label, multiple = true, folders = false, onFiles }) {
  const input = h("input", { type: "file", accept: "image/*", multiple, hidden: true,
    id: "file-input", onchange: () => { onFiles([...input.files]); input.value = ""; } });
  const folder = folders ? h("input", { type: "file", webkitdirectory: true, hidden: true,
    onchange: () => { onFiles([...folder.files]); folder.value = ""; } }) : null;
  const zone = h("div", { class: "drop", id: "drop-zone" },
    h("p", {}, label),
    h("div", { class: "row center" },
      h("button", { type: "button", class: "quiet", onclick: () => input.click() }, "Choose pictures"),
      folder && h("button", { type: "button", class: "quiet", onclick: () => folder.click() }, "Choose a folder")),
    input, folder);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    onFiles([...(e.dataTransfer?.files || [])]);
  });
  return zone;
}

export function fmtDate(s) {
  if (!s) return "";
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString();
}
