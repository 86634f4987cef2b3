// Models: the marketplace's list, installed or not, verified, loaded, and what each does.

import { listModels } from "../api.js";
import { h, mount } from "../dom.js";

export default async function models() {
  const list = await listModels();
  const rows = list.map((m) => h("tr", { "data-model": m.slug },
    h("td", {}, h("strong", {}, m.slug), h("div", { class: "muted" }, m.name)),
    h("td", {}, m.installed ? "yes" : h("span", { class: "muted" }, "no: ", h("code", {}, m.install_command))),
    h("td", {}, m.verified ? "yes" : "no"),
    h("td", {}, m.status),
    h("td", {}, m.dimensions ?? "any"),
    h("td", {}, m.distance ?? ""),
    h("td", {}, m.precision ?? ""),
    h("td", {}, Object.keys(m.modes || {}).join(", "))));
  mount(h("h1", {}, "Models"), h("div", { class: "table" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Model", "Installed", "Verified", "Status", "Dimensions", "Distance",
      "Precision", "Modes"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows))));
}
