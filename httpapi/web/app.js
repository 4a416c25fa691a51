// codi2 dashboard: reads the JSON API under /v1/ and follows the live feed
// at /v1/events (Server-Sent Events). No build step, no dependencies.
// Every value an agent wrote is shown with textContent, never as HTML.
"use strict";

const PAGE = 50;        // rows per page of a list panel
const MAIL_KEEP = 100;  // mail rows kept
const REFRESH_MS = 150; // a burst of events refreshes a panel once

// el builds an element with text children.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

async function api(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || resp.status + " " + resp.statusText);
  return body;
}

// fieldText renders a record's fields generically: k=v, values as JSON.
function fieldText(fields, skip) {
  return Object.entries(fields || {})
    .filter(([k]) => !(skip || []).includes(k))
    .map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v)))
    .join("  ");
}

// holder is who holds a record's lease: the holder field, else the last
// writer of a leased record (state.Record.Holder).
function holder(r) {
  if (!r.expires_at) return "";
  const h = r.fields && r.fields.holder;
  return typeof h === "string" && h ? h : r.updated_by;
}

function ago(t) {
  const s = Math.round((Date.now() - Date.parse(t)) / 1000);
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  return Math.round(s / 3600) + "h ago";
}

// leftCell is a cell counting down to expires_at (updated every second).
function leftCell(expires) {
  const td = el("td", { class: "left" });
  if (expires) td.dataset.expires = expires;
  tick(td);
  return td;
}

function tick(td) {
  if (!td.dataset.expires) { td.textContent = "-"; return; }
  const s = Math.max(0, Math.round((Date.parse(td.dataset.expires) - Date.now()) / 1000));
  td.textContent = s >= 3600 ? Math.floor(s / 3600) + "h" + Math.floor(s % 3600 / 60) + "m" : s >= 60 ? Math.floor(s / 60) + "m" + (s % 60) + "s" : s + "s";
  td.classList.toggle("soon", s < 30);
}

function fill(section, rows, empty) {
  const tbody = section.querySelector("tbody");
  const cols = section.querySelectorAll("thead th").length;
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: cols }, empty))]));
}

function showError(section, err) {
  section.querySelector(".count").textContent = "(" + err.message + ")";
}

// debounce returns fn that runs at most once per burst of ms (default
// REFRESH_MS).
function debounce(fn, ms) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms || REFRESH_MS);
  };
}

// A paged list of one kind, paged with after= (next_after).
class ListPanel {
  constructor(id, kind, row) {
    this.section = document.getElementById(id);
    this.kind = kind;
    this.row = row;
    this.pages = [""]; // after= of each page seen
    this.next = "";
    this.refresh = debounce(() => this.load());
    const form = this.section.querySelector("form");
    if (form) form.addEventListener("input", () => { this.pages = [""]; this.refresh(); });
    this.section.querySelector("[data-page=first]").onclick = () => { this.pages = [""]; this.load(); };
    this.section.querySelector("[data-page=next]").onclick = () => { if (this.next) { this.pages.push(this.next); this.load(); } };
  }
  currentKind() {
    const input = this.section.querySelector("input[name=kind]");
    return (input && input.value.trim()) || this.kind;
  }
  async load() {
    const q = new URLSearchParams({ limit: PAGE });
    const after = this.pages[this.pages.length - 1];
    if (after) q.set("after", after);
    const prefix = this.section.querySelector("input[name=prefix]");
    if (prefix && prefix.value.trim()) q.set("prefix", prefix.value.trim());
    try {
      const page = await api("/v1/state/" + encodeURIComponent(this.currentKind()) + "?" + q);
      this.next = page.next_after || "";
      fill(this.section, page.records.map(r => this.row(r)), "none");
      this.section.querySelector(".count").textContent = "(" + page.records.length + (this.next ? "+" : "") + ")";
      this.section.querySelector(".page").textContent = "page " + this.pages.length;
      this.section.querySelector("[data-page=next]").disabled = !this.next;
    } catch (err) { showError(this.section, err); }
  }
  // onEvent refreshes the page when an event touches its kind.
  onEvent(ev) {
    const kind = (ev.record && ev.record.kind) || ev.kind;
    if (kind === this.currentKind()) this.refresh();
  }
}

function recordRow(r, cells) {
  return el("tr", { "data-key": r.kind + "/" + r.id }, ...cells);
}

const claims = new ListPanel("tasks", "task", r => recordRow(r, [
  el("td", {}, r.id), el("td", {}, holder(r)), el("td", { class: "fields" }, fieldText(r.fields, ["holder"])),
  el("td", {}, r.rev), leftCell(r.expires_at)]));

const reservations = new ListPanel("reservations", "reservation", r => recordRow(r, [
  el("td", {}, r.id), el("td", {}, holder(r)), el("td", { class: "fields" }, fieldText(r.fields, ["holder"])),
  leftCell(r.expires_at)]));

const agents = {
  section: document.getElementById("agents"),
  async load() {
    try {
      const out = await api("/v1/agents");
      // A page's worth: the count says how many there are.
      fill(this.section, out.agents.slice(0, PAGE).map(a => recordRow(a.presence, [
        el("td", {}, a.presence.id),
        el("td", {}, a.holds.map(h => h.kind + " " + h.id).join(", ")),
        el("td", { class: "fields" }, fieldText(a.presence.fields)),
        el("td", {}, ago(a.presence.updated_at)),
        leftCell(a.presence.expires_at)])), "no agent online");
      this.section.querySelector(".count").textContent = "(" + out.agents.length + (out.truncated ? "+" : "") + ")";
    } catch (err) { showError(this.section, err); }
  },
};
// /v1/agents reads every presence, task and reservation record: at most
// once a second.
agents.refresh = debounce(() => agents.load(), 1000);

const mail = {
  section: document.getElementById("mail"),
  rows: [],
  add(m) {
    const row = el("tr", {}, el("td", {}, new Date(m.time).toLocaleTimeString()), el("td", {}, m.from),
      el("td", {}, m.to), el("td", {}, m.type), el("td", {}, m.size));
    this.rows.unshift(row);
    this.rows.length = Math.min(this.rows.length, MAIL_KEEP);
    fill(this.section, this.rows, "no mail yet");
    this.section.querySelector(".count").textContent = "(" + this.rows.length + ")";
  },
};

// The audit tail: newest first, paged with before_seq, filtered.
const audit = {
  section: document.getElementById("audit"),
  pages: [0],
  next: 0,
  async load() {
    const q = new URLSearchParams({ newest_first: "true", limit: PAGE });
    const before = this.pages[this.pages.length - 1];
    if (before) q.set("before_seq", before);
    for (const name of ["source", "category", "from"]) {
      const v = this.section.querySelector("input[name=" + name + "]").value.trim();
      if (v) q.set(name, v);
    }
    try {
      const page = await api("/v1/audit?" + q);
      this.next = page.next_before_seq || 0;
      fill(this.section, page.records.map(r => el("tr", { "data-seq": r.seq },
        el("td", {}, r.seq), el("td", {}, new Date(r.time).toLocaleTimeString()), el("td", {}, r.source),
        el("td", {}, r.category), el("td", { class: "fields" }, JSON.stringify(r.data)))), "no records");
      this.section.querySelector(".count").textContent = "(" + page.records.length + (this.next ? "+" : "") + ")";
      this.section.querySelector(".page").textContent = "page " + this.pages.length;
      this.section.querySelector("[data-page=next]").disabled = !this.next;
    } catch (err) { showError(this.section, err); }
  },
};
audit.refresh = debounce(() => { if (audit.pages.length === 1) audit.load(); }, 500);
audit.section.querySelector("form").addEventListener("input", () => { audit.pages = [0]; audit.refresh(); });
audit.section.querySelector("[data-page=first]").onclick = () => { audit.pages = [0]; audit.load(); };
audit.section.querySelector("[data-page=next]").onclick = () => { if (audit.next) { audit.pages.push(audit.next); audit.load(); } };

// Health: watermarks and lag from /v1/status; the ingest rate from the
// audit watermarks of the feed.
const health = {
  section: document.getElementById("health"),
  samples: [], // [time ms, audit stream_seq]
  rate: 0,
  status: null,
  observe(streamSeq) {
    const now = Date.now();
    this.samples.push([now, streamSeq]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 10000) this.samples.shift();
    const [t0, s0] = this.samples[0];
    this.rate = now > t0 ? (streamSeq - s0) * 1000 / (now - t0) : 0;
  },
  async load() {
    try { this.status = await api("/v1/status"); } catch (err) { this.status = { problems: [err.message], consumers: [] }; }
    this.render();
  },
  render() {
    const st = this.status || { consumers: [] };
    const items = [
      ["state watermark", st.state ? st.state.stream_seq : "?"],
      ["audit watermark", st.audit ? st.audit.stream_seq : "?"],
      ["audit records", st.audit ? st.audit.count : "?"],
      ["ingest rate", this.rate.toFixed(1) + " events/s"],
    ];
    for (const c of st.consumers) items.push(["lag " + c.stream, c.error ? c.error : c.lag]);
    for (const p of st.problems || []) items.push(["problem", p]);
    this.section.querySelector("dl").replaceChildren(...items.flatMap(([k, v]) =>
      [el("dt", {}, k), el("dd", { class: k === "problem" ? "bad" : "" }, v)]));
    document.getElementById("summary").textContent = (st.problems && st.problems.length) ? st.problems.length + " problem(s)" : "";
  },
};
health.refresh = debounce(() => health.load(), 1000);

function live(on, text) {
  const b = document.getElementById("live");
  b.textContent = text;
  b.classList.toggle("off", !on);
}

// needLogin shows the login form when the server asks for one (auth on)
// and returns true then.
async function needLogin() {
  const resp = await fetch("/v1/status");
  if (resp.status !== 401) return false;
  const form = document.getElementById("login");
  form.hidden = false;
  document.querySelector("main").hidden = true;
  live(false, "logged out");
  form.file.onchange = async () => { if (form.file.files[0]) form.creds.value = await form.file.files[0].text(); };
  form.onsubmit = async ev => {
    ev.preventDefault();
    const resp = await fetch("/v1/login", { method: "POST", body: form.creds.value });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) { form.querySelector(".error").textContent = body.error || resp.statusText; return; }
    form.hidden = true;
    form.creds.value = "";
    document.querySelector("main").hidden = false;
    connect();
  };
  return true;
}

async function connect() {
  if (await needLogin()) return;
  const es = new EventSource("/v1/events");
  es.addEventListener("hello", () => {
    live(true, "live");
    // Whatever happened while the feed was down.
    agents.load(); claims.load(); reservations.load(); audit.load(); health.load();
  });
  es.addEventListener("state", e => {
    const m = JSON.parse(e.data);
    const ev = m.data || {};
    const kind = (ev.record && ev.record.kind) || m.subject.split(".")[3];
    const evk = Object.assign({ kind }, ev);
    claims.onEvent(evk);
    reservations.onEvent(evk);
    if (["agent", "task", "reservation"].includes(kind)) agents.refresh(); // presence, or what agents hold
  });
  es.addEventListener("mail", e => mail.add(JSON.parse(e.data)));
  es.addEventListener("audit-committed", e => {
    const m = JSON.parse(e.data);
    if (m.data) health.observe(m.data.stream_seq);
    audit.refresh();
    health.refresh();
  });
  es.addEventListener("state-committed", () => health.refresh());
  es.addEventListener("dropped", () => { agents.refresh(); claims.refresh(); reservations.refresh(); });
  es.onerror = async () => {
    live(false, "reconnecting");
    if (await needLogin().catch(() => false)) es.close();
  };
}

fill(mail.section, [], "no mail yet");
setInterval(() => document.querySelectorAll("td.left").forEach(tick), 1000);
setInterval(() => health.load(), 5000);
connect();
