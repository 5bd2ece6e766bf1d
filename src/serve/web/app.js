// uerzoo serve's page: plain JS over the server's own API.
const $ = (id) => document.getElementById(id);
let controller = null;

async function api(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
  return j;
}

function fill(select, models, capability) {
  select.innerHTML = "";
  for (const m of models.filter((m) => m.capabilities.includes(capability))) {
    const o = document.createElement("option");
    o.value = m.id; o.textContent = m.id; o.dataset.preset = m.preset || "";
    select.appendChild(o);
  }
  select.closest("section").hidden = select.options.length === 0;
}

async function init() {
  const r = await fetch("/v1/models");
  const models = (await r.json()).data;
  fill($("gen-model"), models, "completions");
  fill($("mask-model"), models, "fill-mask");
  fill($("cls-model"), models, "classify");
  $("status").textContent = models.map((m) => m.id).join(" · ");
}

async function generate() {
  const n = Math.max(1, Math.min(8, +$("gen-n").value || 1));
  const out = $("gen-out");
  out.innerHTML = "";
  const boxes = [];
  const user = $("gen-text").value.trim();
  const preset = $("gen-preset").value || $("gen-model").selectedOptions[0]?.dataset.preset || "plain";
  for (let i = 0; i < n; i++) {
    const d = document.createElement("div");
    d.className = "cand"; d.id = "cand-" + i;
    d.textContent = user + (preset === "couplet" ? " - " : "");
    out.appendChild(d); boxes.push(d);
  }
  const body = { model: $("gen-model").value, prompt: user, n, stream: true,
    max_tokens: +$("gen-max").value || 40, preset: $("gen-preset").value || undefined };
  if ($("gen-greedy").checked) body.temperature = 0;
  else { body.temperature = +$("gen-temp").value; body.top_k = +$("gen-topk").value; }
  controller = new AbortController();
  $("gen-go").disabled = true; $("gen-stop").disabled = false;
  try {
    const r = await fetch("/v1/completions", { method: "POST", signal: controller.signal,
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!r.ok) { const j = await r.json(); throw new Error(j.error.message); }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let at;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, at); buf = buf.slice(at + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
        if (!data || data === "[DONE]") continue;
        const j = JSON.parse(data);
        if (j.error) throw new Error(j.error.message);
        const c = j.choices[0];
        const box = boxes[c.index % n];
        // data-steps: how many events wrote text (the browser test checks it streamed).
        if (c.text) { box.textContent += c.text; box.dataset.steps = (+box.dataset.steps || 0) + 1; }
        if (c.finish_reason) box.classList.add("done");
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") out.insertAdjacentHTML("beforeend", `<p class="err"></p>`), out.lastChild.textContent = e.message;
  } finally {
    controller = null; $("gen-go").disabled = false; $("gen-stop").disabled = true;
  }
}

async function fillMask() {
  const out = $("mask-out");
  out.textContent = "…";
  try {
    const j = await api("/v1/fill-mask", { model: $("mask-model").value, text: $("mask-text").value,
      top_k: +$("mask-k").value || 5, sequences: true });
    out.innerHTML = "";
    for (const m of j.masks) {
      for (const c of m.candidates) {
        const row = document.createElement("div");
        row.className = "bar";
        row.innerHTML = `<span class="tok"></span><span class="fill"></span><span class="p"></span>`;
        row.querySelector(".tok").textContent = c.token;
        row.querySelector(".fill").style.width = Math.max(2, Math.round(c.score * 600)) + "px";
        row.querySelector(".p").textContent = (c.score * 100).toFixed(1) + "%  " + c.sequence;
        out.appendChild(row);
      }
    }
  } catch (e) { out.innerHTML = `<p class="err"></p>`; out.lastChild.textContent = e.message; }
}

async function classify() {
  const out = $("cls-out");
  try {
    const j = await api("/v1/classify", { model: $("cls-model").value, input: $("cls-text").value });
    out.innerHTML = "";
    j.data[0].probabilities.forEach((p, label) => {
      const row = document.createElement("div");
      row.className = "bar";
      row.innerHTML = `<span class="tok">${label}</span><span class="fill"></span><span>${(p * 100).toFixed(1)}%</span>`;
      row.querySelector(".fill").style.width = Math.max(2, Math.round(p * 400)) + "px";
      out.appendChild(row);
    });
  } catch (e) { out.innerHTML = `<p class="err"></p>`; out.lastChild.textContent = e.message; }
}

$("gen-go").onclick = generate;
$("gen-stop").onclick = () => controller && controller.abort();
$("mask-go").onclick = fillMask;
$("cls-go").onclick = classify;
init().then(() => {
  // ?demo=1 (the browser test): a greedy couplet and a fill-mask on load.
  if (new URLSearchParams(location.search).has("demo")) {
    $("gen-greedy").checked = true; $("gen-n").value = 1; $("gen-preset").value = "couplet";
    generate(); fillMask();
  }
});
