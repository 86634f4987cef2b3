// The exact request a page made, as the API page's curl, Python and JavaScript snippets
// write it: $AIMP_GATEWAY_URL and $AIMP_API_KEY from the environment, the body as sent.

function indent(text, by) {
  return text.split("\n").map((l, i) => (i === 0 ? l : by + l)).join("\n");
}

export function curl(path, body) {
  // Single quotes around the body: a quote inside it closes, escapes and reopens.
  const json = JSON.stringify(body, null, 2).replaceAll("'", "'\\''");
  return [
    `curl -X POST "$AIMP_GATEWAY_URL/${path}" \\`,
    `  -H "X-API-Key: $AIMP_API_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d '${indent(json, "  ")}'`,
  ].join("\n");
}

/// A JSON value as a Python literal (True, False, None), indented as the page does.
function py(v, pad) {
  const inner = pad + "    ";
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return JSON.stringify(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    const flat = `[${v.map((x) => py(x, inner)).join(", ")}]`;
    if (flat.length < 60 && !flat.includes("\n")) return flat;
    return `[\n${v.map((x) => inner + py(x, inner)).join(",\n")},\n${pad}]`;
  }
  const keys = Object.keys(v);
  if (keys.length === 0) return "{}";
  const flat = `{${keys.map((k) => `${JSON.stringify(k)}: ${py(v[k], inner)}`).join(", ")}}`;
  if (flat.length < 60 && !flat.includes("\n")) return flat;
  return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${py(v[k], inner)}`).join(",\n")},\n${pad}}`;
}

export function python(path, body) {
  return `import os
import requests

gateway_url = os.environ["AIMP_GATEWAY_URL"].rstrip("/")
api_key = os.environ["AIMP_API_KEY"]

response = requests.post(
    f"{gateway_url}/${path}",
    headers={
        "X-API-Key": api_key,
        "Content-Type": "application/json",
    },
    json=${py(body, "    ")},
    timeout=60,
)
response.raise_for_status()
print(response.json())`;
}

/// A JSON value as a JavaScript literal: bare keys where they are identifiers.
function js(v, pad) {
  const inner = pad + "  ";
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    const flat = `[${v.map((x) => js(x, inner)).join(", ")}]`;
    if (flat.length < 60 && !flat.includes("\n")) return flat;
    return `[\n${v.map((x) => inner + js(x, inner)).join(",\n")},\n${pad}]`;
  }
  const keys = Object.keys(v);
  if (keys.length === 0) return "{}";
  const name = (k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k));
  const flat = `{ ${keys.map((k) => `${name(k)}: ${js(v[k], inner)}`).join(", ")} }`;
  if (flat.length < 60 && !flat.includes("\n")) return flat;
  return `{\n${keys.map((k) => `${inner}${name(k)}: ${js(v[k], inner)}`).join(",\n")},\n${pad}}`;
}

export function javascript(path, body) {
  return `const gatewayUrl = process.env.AIMP_GATEWAY_URL.replace(/\\/$/, "");

const response = await fetch(\`\${gatewayUrl}/${path}\`, {
  method: "POST",
  headers: {
    "X-API-Key": process.env.AIMP_API_KEY,
    "Content-Type": "application/json",
  },
  body: JSON.stringify(${js(body, "  ")}),
});

if (!response.ok) {
  throw new Error(\`AIMP request failed: \${response.status}\`);
}

console.log(await response.json());`;
}

export const SNIPPETS = { curl, python, javascript };
