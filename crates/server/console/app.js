// The console's shell: sign-in, the page links, and the page the URL's hash names.

import { api, session } from "./api.js";
import { h, mount, errorLine } from "./dom.js";
import { listen, route } from "./router.js";
import knowledge from "./pages/knowledge.js";
import browse from "./pages/browse.js";
import playground from "./pages/playground.js";
import indexPage from "./pages/index.js";
import models from "./pages/models.js";
import keys from "./pages/keys.js";
import recall from "./pages/recall.js";

const PAGES = { knowledge, browse, playground, index: indexPage, models, keys, recall };

async function signIn(key) {
  // Any authenticated read tells whether the key is good.
  await api("GET", "api/knowledge-bases", undefined, { key });
  session.key = key;
}

function signInPage(message) {
  const input = h("input", { type: "password", id: "api-key", autocomplete: "off", required: true,
    placeholder: "aimp_…" });
  const status = h("div", { id: "signin-status" }, message ? errorLine({ message }) : null);
  const form = h("form", { class: "card", id: "signin", onsubmit: async (e) => {
    e.preventDefault();
    status.replaceChildren(h("p", { class: "muted" }, "Checking the key…"));
    try {
      await signIn(input.value.trim());
      render();
    } catch (err) {
      status.replaceChildren(errorLine({ message: err.status === 401
        ? `That key was not accepted (${err.message}). Check it, or create one with \`aimp keys create\`.`
        : err.message }));
    }
  } },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "An API key of this gateway. It is kept for this tab only and sent as X-API-Key."),
    h("label", {}, "API key", input),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Sign in")),
    status);
  mount(form);
  input.focus();
}

function render() {
  const nav = document.getElementById("nav");
  const out = document.getElementById("signout");
  if (!session.key) {
    nav.hidden = true;
    out.hidden = true;
    signInPage();
    return;
  }
  nav.hidden = false;
  out.hidden = false;
  const { name, params } = route();
  const current = name === "browse" ? "knowledge" : name;
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === `#/${current}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const page = PAGES[name] || knowledge;
  Promise.resolve(page(params)).catch((e) => mount(errorLine(e)));
}

document.getElementById("signout").addEventListener("click", () => {
  session.key = null;
  session.admin = null;
  location.hash = "#/knowledge";
  render();
});
listen(render);
render();
