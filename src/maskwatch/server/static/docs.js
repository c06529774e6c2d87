/* A small, self-contained renderer for /openapi.json (no CDN, no build step). */
"use strict";

(async function () {
  const main = document.getElementById("docs");
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  };
  /** Text with `code` spans, as a fragment. */
  const rich = (text) => {
    const frag = document.createDocumentFragment();
    String(text || "").split(/(`[^`]+`)/).forEach((part) => {
      if (part.startsWith("`") && part.endsWith("`") && part.length > 1) frag.append(el("code", {}, part.slice(1, -1)));
      else frag.append(part);
    });
    return frag;
  };

  let spec;
  try {
    spec = await (await fetch("/openapi.json")).json();
  } catch (e) {
    main.replaceChildren(el("p", { class: "message" }, "Could not load /openapi.json: " + e));
    return;
  }
  const refName = (ref) => ref.split("/").pop();
  const typeOf = (s) => {
    if (!s) return "";
    if (s.$ref) return refName(s.$ref);
    if (s.anyOf) return s.anyOf.map(typeOf).join(" | ");
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.type === "array") return typeOf(s.items) + "[]";
    if (s.type === "object" && s.additionalProperties) return "{string: " + typeOf(s.additionalProperties) + "}";
    return s.format ? `${s.type} (${s.format})` : (s.type || "any");
  };

  document.getElementById("api-title").textContent = `${spec.info.title} API ${spec.info.version}`;
  document.getElementById("api-summary").textContent = spec.info.summary || "";
  main.replaceChildren(el("p", {}, rich(spec.info.description)));

  for (const [path, ops] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(ops)) {
      const box = el("section", { class: "op", id: `${method}-${path}` });
      box.append(el("h3", {}, el("span", { class: `method ${method}` }, method.toUpperCase()),
        el("span", { class: "path" }, path), el("span", {}, op.summary || "")));
      if (op.description) box.append(el("p", {}, rich(op.description)));

      const params = op.parameters || [];
      if (params.length) {
        box.append(el("h4", {}, "Parameters"));
        const t = el("table", { class: "schema" }, el("thead", {}, el("tr", {},
          el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "default"), el("th", {}, "description"))));
        const tb = el("tbody");
        for (const p of params) {
          tb.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, typeOf(p.schema)),
            el("td", {}, p.schema && "default" in p.schema ? JSON.stringify(p.schema.default) : ""),
            el("td", {}, rich(p.description || (p.schema && p.schema.description) || ""))));
        }
        t.append(tb);
        box.append(t);
      }
      if (op.requestBody) {
        box.append(el("h4", {}, "Request body"));
        box.append(el("p", {}, rich(op.requestBody.description || "")));
        box.append(el("p", {}, "Content types: ", ...Object.keys(op.requestBody.content || {}).flatMap((c, i) =>
          [i ? ", " : "", el("code", {}, c)])));
      }
      box.append(el("h4", {}, "Responses"));
      const rl = el("ul");
      for (const [code, r] of Object.entries(op.responses || {})) {
        const kinds = Object.entries(r.content || {}).map(([ct, c]) => ct + (c.schema ? ` → ${typeOf(c.schema)}` : ""));
        rl.append(el("li", {}, el("code", {}, code), " ", rich(r.description || ""), kinds.length ? ` (${kinds.join(", ")})` : ""));
      }
      box.append(rl);

      // Try it out.
      const out = el("pre", { hidden: "" });
      const tryRow = el("div", { class: "try" });
      let fileInput = null;
      const paramInputs = {};
      if (op.requestBody) {
        fileInput = el("input", { type: "file", multiple: "" });
        tryRow.append(fileInput);
      }
      for (const p of params.filter((q) => q.in === "query")) {
        const inp = el("input", { placeholder: p.name, size: "8", "aria-label": p.name });
        paramInputs[p.name] = inp;
        tryRow.append(inp);
      }
      const btn = el("button", {}, "Try it");
      btn.addEventListener("click", async () => {
        const q = new URLSearchParams();
        for (const [k, inp] of Object.entries(paramInputs)) if (inp.value) q.set(k, inp.value);
        const init = { method: method.toUpperCase() };
        if (fileInput) {
          const form = new FormData();
          const name = path.includes("classify") ? "files" : "file";
          for (const f of fileInput.files) form.append(name, f, f.name);
          init.body = form;
        }
        out.hidden = false;
        out.textContent = "…";
        try {
          const r = await fetch(path + (q.toString() ? "?" + q : ""), init);
          const ct = r.headers.get("content-type") || "";
          if (ct.startsWith("image/")) {
            const img = el("img", { src: URL.createObjectURL(await r.blob()), class: "result-image" });
            out.replaceChildren(`${r.status} ${ct}\n`, img);
          } else {
            const text = await r.text();
            let shown = text;
            try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
            out.textContent = `${r.status}\n${shown}`;
          }
        } catch (e) {
          out.textContent = String(e);
        }
      });
      tryRow.append(btn);
      box.append(tryRow, out);
      main.append(box);
    }
  }

  const schemas = (spec.components && spec.components.schemas) || {};
  if (Object.keys(schemas).length) main.append(el("h2", {}, "Schemas"));
  for (const [name, s] of Object.entries(schemas)) {
    const box = el("section", { class: "op", id: "schema-" + name });
    box.append(el("h3", {}, el("span", { class: "path" }, name)));
    if (s.description) box.append(el("p", {}, rich(s.description)));
    const tb = el("tbody");
    for (const [prop, ps] of Object.entries(s.properties || {})) {
      tb.append(el("tr", {}, el("td", {}, el("code", {}, prop)), el("td", {}, typeOf(ps)), el("td", {}, rich(ps.description || ""))));
    }
    box.append(el("table", { class: "schema" }, el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "description"))), tb));
    main.append(box);
  }
})();
