// The route lives in the URL's hash (`#/playground?model=clipo&scope=photos&text=...`), so a
// page's state is a link to share and the server is only ever asked for the console's files.

let onChange = () => {};

export function listen(render) {
  onChange = render;
  window.addEventListener("hashchange", () => onChange());
}

/// The route in the hash: its page and its parameters.
export function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, query = ""] = hash.split("?");
  return { name: name || "knowledge", params: new URLSearchParams(query) };
}

/// Goes to a page with parameters; `replace` keeps the history entry (a query refined in
/// place), and then the page is not drawn again.
export function go(name, params = {}, { replace = false } = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "" && v !== false) q.set(k, String(v));
  }
  const target = `#/${name}${q.toString() ? "?" + q : ""}`;
  if (replace) {
    history.replaceState(null, "", target);
  } else if (location.hash !== target) {
    location.hash = target;
  } else {
    onChange();
  }
}
