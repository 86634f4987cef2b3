// Index: pictures dropped on the page (or a folder) go through the upload flow and into a
// scope in batches, with a progress bar, a line per file and a summary; texts for a model
// that indexes texts (demo-model), one a line.

import { run, upload, isPicture, listModels } from "../api.js";
import { h, mount, dropZone, errorLine } from "../dom.js";

/// Pictures per index run.
const BATCH = 8;

export default async function indexPage() {
  const models = (await listModels()).filter((m) => m.modes?.index && m.installed);
  const takes = (m, field) => Boolean(m.modes.index.input_schema?.properties?.[field]);
  const pictures = models.filter((m) => takes(m, "images"));
  const texts = models.filter((m) => takes(m, "texts"));
  const scope = h("input", { id: "index-scope", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}",
    placeholder: "e.g. holidays", autocomplete: "off" });
  const status = h("div", { id: "index-status" });
  const bar = h("progress", { id: "index-progress", max: "1", value: "0", hidden: true });
  const log = h("ul", { class: "log", id: "index-log", "aria-live": "polite" });
  const summary = h("p", { id: "index-summary" });
  const pictureModel = h("select", { id: "picture-model" },
    pictures.map((m) => h("option", { value: m.slug }, m.slug)));
  const textModel = h("select", { id: "text-model" }, texts.map((m) => h("option", { value: m.slug }, m.slug)));
  const textArea = h("textarea", { id: "texts", rows: "6", placeholder: "One text a line" });
  const textIds = h("input", { id: "text-id-prefix", value: "text-", "aria-label": "Id prefix" });

  function ready() {
    if (!scope.checkValidity() || !scope.value) {
      status.replaceChildren(errorLine({ message: "Give a scope: letters, digits, _ or -, up to 64.", param: "scope" }));
      scope.focus();
      return false;
    }
    status.replaceChildren();
    return true;
  }

  function line(ok, text) {
    log.append(h("li", { class: ok ? "ok" : "error" }, `${ok ? "✓" : "✗"} ${text}`));
  }

  async function indexPictures(files) {
    if (!ready()) return;
    const chosen = files.filter(isPicture);
    for (const f of files.filter((f) => !isPicture(f))) line(false, `${f.name}: not a JPEG, PNG, WebP or GIF picture`);
    if (chosen.length === 0) return;
    log.replaceChildren();
    summary.textContent = "";
    bar.hidden = false;
    bar.max = chosen.length;
    bar.value = 0;
    let indexed = 0, failed = 0, count = null;
    for (let i = 0; i < chosen.length; i += BATCH) {
      const batch = chosen.slice(i, i + BATCH);
      const uploaded = [];
      for (const file of batch) {
        try {
          const media = await upload(file);
          uploaded.push({ file, media });
        } catch (e) {
          failed++;
          line(false, `${file.webkitRelativePath || file.name}: ${e.message}`);
          bar.value += 1;
        }
      }
      if (uploaded.length === 0) continue;
      try {
        const answer = await run({
          model: pictureModel.value, mode: "index", scope: scope.value,
          input: {
            images: uploaded.map(({ media }) => ({ media_ref: media.media_ref, filename: media.filename })),
            image_ids: uploaded.map(({ file }) => file.webkitRelativePath || file.name),
          },
          params: {},
        });
        indexed += answer.output.indexed;
        count = answer.output.count;
        for (const { file } of uploaded) line(true, file.webkitRelativePath || file.name);
      } catch (e) {
        failed += uploaded.length;
        for (const { file } of uploaded) line(false, `${file.webkitRelativePath || file.name}: ${e.message}`);
      }
      bar.value += uploaded.length;
    }
    summary.textContent = `${indexed} indexed, ${failed} failed` +
      (count !== null ? `; ${scope.value} now holds ${count}` : "");
    summary.className = failed ? "error" : "ok";
  }

  async function indexTexts() {
    if (!ready()) return;
    const lines = textArea.value.split("\n").map((l) => l.trim()).filter(Boolean);
    if (lines.length === 0) return;
    log.replaceChildren();
    bar.hidden = false;
    bar.max = lines.length;
    bar.value = 0;
    let indexed = 0, failed = 0, count = null;
    for (let i = 0; i < lines.length; i += 32) {
      const batch = lines.slice(i, i + 32);
      const ids = batch.map((_, j) => `${textIds.value}${i + j + 1}`);
      try {
        const answer = await run({ model: textModel.value, mode: "index", scope: scope.value,
          input: { texts: batch, text_ids: ids }, params: {} });
        indexed += answer.output.indexed;
        count = answer.output.count;
        ids.forEach((id) => line(true, id));
      } catch (e) {
        failed += batch.length;
        line(false, `${ids[0]}…${ids.at(-1)}: ${e.message}`);
      }
      bar.value += batch.length;
    }
    summary.textContent = `${indexed} indexed, ${failed} failed` + (count !== null ? `; ${scope.value} now holds ${count}` : "");
    summary.className = failed ? "error" : "ok";
  }

  mount(h("h1", {}, "Index"),
    h("div", { class: "card fields" }, h("label", {}, "Scope", scope)),
    pictures.length ? h("section", { class: "card" },
      h("h2", {}, "Pictures"),
      h("div", { class: "fields" }, h("label", {}, "Model", pictureModel)),
      dropZone({ label: "Drop pictures here (ids are their file names)", folders: true, onFiles: indexPictures })) : null,
    texts.length ? h("section", { class: "card" },
      h("h2", {}, "Texts"),
      h("div", { class: "fields" }, h("label", {}, "Model", textModel), h("label", {}, "Id prefix", textIds)),
      textArea,
      h("div", { class: "row" }, h("button", { type: "button", id: "index-texts", onclick: indexTexts }, "Index texts"))) : null,
    status, bar, summary, log);
}
