// Sheaf's admin page over the JSON API. Every value is put in the page as text (never as
// HTML), the token is kept in this tab's sessionStorage only, and the page asks /api/auth what
// the token opens before anything else, so a wrong token is a message, not a failed call.
"use strict";

const TOKEN = "sheaf-api-token";
const FAST = 3000;
const SLOW = 30000;
let access = "none";
let timer = null;
let editing = null;

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "onclick") el.addEventListener("click", value);
    else if (value !== undefined && value !== null && value !== false) el.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

function say(text, kind) {
  const box = $("message");
  box.textContent = text || "";
  box.className = kind === "info" ? "info" : "";
  box.hidden = !text;
}

class Refused extends Error {}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = text;
  try { data = JSON.parse(text); } catch (_) { /* not JSON */ }
  if (response.status === 401) throw new Refused("the token was refused");
  if (!response.ok) {
    const reason = data && typeof data === "object" ? (data.error || JSON.stringify(data)) : text;
    throw new Error(`${method} ${path}: ${response.status} ${reason}`);
  }
  return data;
}

/** Runs a changing call, then says what happened and refreshes. */
async function act(what, call) {
  try {
    await call();
    say(what, "info");
  } catch (e) {
    say(e.message);
  }
  refresh();
}

function when(stamp) {
  return stamp ? stamp.replace("T", " ").replace("Z", " UTC") : "";
}

function numberCell(n) {
  return h("td", { class: "num" }, n ?? "");
}

function progress(job) {
  const total = job.object_count;
  if (job.status === "finished" || job.status === "aborted") return h("span", { class: "muted" }, `${job.done_count || 0} documents`);
  if (!total) return h("span", { class: "muted" }, job.status === "new" ? "waiting" : "listing…");
  return h("span", {},
    h("progress", { max: total, value: job.done_count || 0 }),
    ` ${job.done_count || 0}/${total}`);
}

function errorList(job) {
  const errors = [...(job.gather_errors || []), ...(job.object_errors || [])];
  if (!errors.length) return "";
  return h("details", {},
    h("summary", {}, `${errors.length} error${errors.length > 1 ? "s" : ""}`),
    h("ul", { class: "errors" }, errors.slice(0, 50).map((e) => h("li", {},
      e.message, " ",
      e.original_url ? h("a", { href: e.original_url, rel: "noreferrer" }, "document") : ""))));
}

function statusText(job) {
  const cls = job.status === "aborted" || (job.gather_errors || []).length ? "bad" : job.status === "finished" ? "ok" : "";
  return h("span", { class: cls }, job.status);
}

function latestFrom(jobs) {
  const latest = {};
  for (const job of jobs) if (!latest[job.source]) latest[job.source] = job;
  return latest;
}

/** Each source's latest job: from the recent jobs, or asked for when it is older than them. */
async function latestJobs(sources, jobs) {
  const latest = latestFrom(jobs);
  const missing = sources.filter((s) => !latest[s.name]);
  const older = await Promise.all(missing.map((s) =>
    api("GET", `/api/harvest/jobs?source=${encodeURIComponent(s.name)}&limit=1`)));
  missing.forEach((s, i) => { if (older[i][0]) latest[s.name] = older[i][0]; });
  return latest;
}

function renderSources(sources, latest) {
  const body = $("sources-body");
  body.replaceChildren(...sources.map((s) => {
    const job = latest[s.name];
    const summary = job
      ? h("div", {}, statusText(job), " ", progress(job), h("br"),
        h("span", { class: "muted" },
          `${job.stats.added} added, ${job.stats.updated} updated, ${job.stats.unchanged} unchanged, ${job.stats.deleted} deleted, ${job.stats.errored} errored`))
      : h("span", { class: "muted" }, "no job yet");
    const actions = h("td", { class: "actions" },
      h("button", { type: "button", class: "link", onclick: () => act(`Job started for ${s.name}.`, () => api("POST", `/api/harvest/sources/${encodeURIComponent(s.name)}/jobs`)) }, "Run now"),
      h("button", { type: "button", class: "link", onclick: () => edit(s) }, "Edit"),
      s.active
        ? h("button", { type: "button", class: "link", onclick: () => act(`${s.name} deactivated; its records stay.`, () => api("DELETE", `/api/harvest/sources/${encodeURIComponent(s.name)}`)) }, "Deactivate")
        : h("button", { type: "button", class: "link", onclick: () => act(`${s.name} activated.`, () => api("PATCH", `/api/harvest/sources/${encodeURIComponent(s.name)}`, { active: true })) }, "Activate"),
      h("button", {
        type: "button", class: "link", onclick: () => {
          if (confirm(`Remove every record, job and document of ${s.name}? The source stays.`)) {
            act(`${s.name} cleared.`, () => api("POST", `/api/harvest/sources/${encodeURIComponent(s.name)}/clear`));
          }
        },
      }, "Clear"));
    return h("tr", { "data-source": s.name },
      h("td", {}, h("strong", {}, s.name), h("br"), h("span", { class: "muted" }, s.title || "")),
      h("td", {}, s.type),
      h("td", {}, h("a", { href: s.url, rel: "noreferrer" }, s.url)),
      h("td", {}, s.active ? `active, ${s.frequency}` : "inactive"),
      h("td", { class: "last-job" }, summary),
      actions);
  }));
  if (!sources.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No sources yet: add one below.")));
}

function edit(source) {
  editing = source.name;
  const form = $("source-form");
  for (const field of ["name", "url", "type", "title", "owner", "frequency"]) form.elements[field].value = source[field] || "";
  form.elements.name.disabled = true;
  form.elements.type.disabled = true;
  form.elements.config.value = JSON.stringify(source.config || {}, null, 2);
  $("source-editor-title").textContent = `Edit ${source.name}`;
  $("source-submit").textContent = "Save";
  $("source-cancel").hidden = false;
  $("source-editor").open = true;
  $("source-editor").scrollIntoView();
}

function stopEditing() {
  editing = null;
  const form = $("source-form");
  form.reset();
  form.elements.name.disabled = false;
  form.elements.type.disabled = false;
  $("source-editor-title").textContent = "Add a source";
  $("source-submit").textContent = "Add source";
  $("source-cancel").hidden = true;
}

async function submitSource(event) {
  event.preventDefault();
  const form = event.target;
  let config;
  try {
    config = JSON.parse(form.elements.config.value || "{}");
  } catch (e) {
    say(`The config is not JSON: ${e.message}`);
    return;
  }
  const fields = { url: form.elements.url.value, title: form.elements.title.value || undefined, owner: form.elements.owner.value, frequency: form.elements.frequency.value, config };
  if (editing) {
    const name = editing;
    await act(`${name} saved.`, () => api("PATCH", `/api/harvest/sources/${encodeURIComponent(name)}`, fields));
    stopEditing();
  } else {
    const name = form.elements.name.value;
    const created = { name, type: form.elements.type.value, ...fields };
    if (!created.owner) delete created.owner;
    await act(`${name} added and its first harvest started.`, async () => {
      await api("POST", "/api/harvest/sources", created);
      await api("POST", `/api/harvest/sources/${encodeURIComponent(name)}/jobs`);
    });
    form.reset();
  }
}

function renderJobs(jobs) {
  $("jobs-body").replaceChildren(...jobs.slice(0, 25).map((j) => h("tr", { "data-job": j.id, "data-source": j.source },
    h("td", {}, h("code", {}, j.id), h("br"), h("span", { class: "muted" }, when(j.created))),
    h("td", {}, j.source),
    h("td", { class: "status" }, statusText(j)),
    h("td", {}, progress(j)),
    numberCell(j.stats.added), numberCell(j.stats.updated), numberCell(j.stats.unchanged),
    numberCell(j.stats.deleted), numberCell(j.stats.errored),
    h("td", {}, errorList(j)))));
}

function renderLog(entries) {
  $("log-list").replaceChildren(...entries.map((e) => h("li", {},
    h("span", { class: e.level === "ERROR" ? "bad" : "muted" }, `${when(e.created)} ${e.level} `), e.content)));
  if (!entries.length) $("log-list").append(h("li", { class: "muted" }, "Nothing logged."));
}

function renderCatalogue(status) {
  $("catalogue-summary").replaceChildren(
    `${status.records} records, ${status.indexed} in the search index. `,
    status.consistent ? h("span", { class: "ok" }, "The catalogue matches the central WAF.")
      : h("span", { class: "bad" }, `Not consistent: ${status.unindexed} records not indexed, ${status.ghosts} index entries without a record; see missing and orphans below.`));
  $("integrity-body").replaceChildren(...status.sources.map((s) => h("tr", {},
    h("td", {}, s.source), numberCell(s.documents), numberCell(s.records), numberCell(s.rejected),
    h("td", { class: s.missing ? "num bad" : "num" }, s.missing), h("td", { class: s.orphans ? "num bad" : "num" }, s.orphans))));
}

function renderRebuild(state) {
  const bar = $("rebuild-progress");
  if (!state || state.status === "none") {
    $("rebuild-state").textContent = "No rebuild has run.";
    bar.hidden = true;
    return false;
  }
  const running = state.status === "running";
  const counts = state.stats ? `${state.stats.added} added, ${state.stats.updated} updated, ${state.stats.deleted} deleted, ${state.stats.errored} errored` : "";
  $("rebuild-state").textContent = running
    ? `Rebuild ${state.id} running since ${when(state.started)}: ${state.sources_done} of ${state.sources_total} sources. ${counts}`
    : `Rebuild ${state.id} ${state.status} ${when(state.finished)}: ${counts}, ${state.orphans_removed} orphans removed, ${state.indexed} records indexed.${state.error ? " Error: " + state.error : ""}`;
  bar.hidden = !running;
  bar.max = Math.max(state.sources_total, 1);
  bar.value = state.sources_done;
  $("rebuild").disabled = running;
  $("rebuild-report").hidden = running;
  return running;
}

function renderRejected(list) {
  $("rejected-body").replaceChildren(...list.map((r) => h("tr", {},
    h("td", {}, r.source),
    h("td", {}, h("a", { href: r.original_url, rel: "noreferrer" }, r.original_url)),
    h("td", {}, r.reason),
    h("td", {}, when(r.rejected)))));
  if (!list.length) $("rejected-body").append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "None.")));
}

function renderQueues(queues) {
  $("queues-body").replaceChildren(...Object.entries(queues).map(([name, d]) => h("tr", { "data-queue": name },
    h("td", {}, name), numberCell(d.visible), numberCell(d.in_flight),
    h("td", { class: d.dead_letters ? "num bad" : "num" }, d.dead_letters),
    h("td", { class: "actions" }, d.dead_letters ? h("button", { type: "button", class: "link", onclick: () => redrive(name) }, "Redrive") : ""))));
}

/** Sends a queue's dead letters back and says what became of them. */
async function redrive(queue) {
  let report;
  await act(`Redriving ${queue}…`, async () => { report = await api("POST", `/api/catalog/queues/${encodeURIComponent(queue)}/redrive`); });
  if (!report) return;
  const jobs = report.jobs_started.length ? ` (jobs started: ${report.jobs_started.join(", ")})` : "";
  const left = report.left.length ? ` Left: ${report.left.join("; ")}` : "";
  say(`${queue}: ${report.resent} sent back, ${report.taken_over} taken over by a harvest job${jobs}, ${report.dropped.length} dropped.${left}`, "info");
}

function renderTargets(targets, failures) {
  $("targets-body").replaceChildren(...targets.map((t) => h("tr", { "data-target": t.name },
    h("td", {}, t.name),
    h("td", {}, t.url),
    h("td", {}, t.enabled ? "enabled" : "disabled"),
    h("td", {}, !t.backfill ? "" : t.backfill.done ? `done (${t.backfill.sent} records)` : `running (${t.backfill.sent} records so far)`),
    h("td", {}, when(t.next_retry)),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "link", onclick: () => act(`${t.name} ${t.enabled ? "disabled" : "enabled; every record will be sent"}.`, () => api("PATCH", `/api/notifications/targets/${encodeURIComponent(t.name)}`, { enabled: !t.enabled })) }, t.enabled ? "Disable" : "Enable"),
      h("button", { type: "button", class: "link", onclick: () => { if (confirm(`Remove ${t.name} and its pending failures?`)) act(`${t.name} removed.`, () => api("DELETE", `/api/notifications/targets/${encodeURIComponent(t.name)}`)); } }, "Remove")))));
  if (!targets.length) $("targets-body").append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No targets.")));
  $("failures-body").replaceChildren(...failures.map((f) => h("tr", {},
    h("td", {}, f.target), h("td", {}, f.uuid), h("td", {}, f.action), h("td", { class: "bad" }, f.error),
    numberCell(f.attempts), h("td", {}, when(f.last_tried)))));
  if (!failures.length) $("failures-body").append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "None.")));
}

function renderPackaging(stats) {
  $("packaging-body").replaceChildren(...Object.entries(stats.totals || {}).map(([resource, t]) => h("tr", {},
    h("td", {}, resource === "*" ? "all resources" : resource), numberCell(t.requests), numberCell(t.errors), numberCell(t.emails))));
  $("packaging-errors").replaceChildren(...(stats.errors || []).map((e) => h("li", {},
    h("span", { class: "muted" }, `${new Date(e.timestamp * 1000).toISOString()} ${e.resource_id} `), e.message)));
  if (!(stats.errors || []).length) $("packaging-errors").append(h("li", { class: "muted" }, "None."));
}

/** One part of the page, its failure shown without stopping the others. */
async function part(load, render) {
  try {
    return render(await load());
  } catch (e) {
    if (e instanceof Refused) throw e;
    say(e.message);
    return false;
  }
}

async function refresh() {
  clearTimeout(timer);
  let busy = false;
  try {
    const [sources, jobs] = await Promise.all([
      api("GET", "/api/harvest/sources?all=true"),
      api("GET", "/api/harvest/jobs?limit=100"),
    ]);
    renderSources(sources, jobs.length < 100 ? latestFrom(jobs) : await latestJobs(sources, jobs));
    renderJobs(jobs);
    busy = jobs.some((j) => j.status === "new" || j.status === "running");
    const level = $("log-level").value;
    await Promise.all([
      part(() => api("GET", `/api/harvest/log?limit=100${level ? "&level=" + level : ""}`), (r) => renderLog(r.result || [])),
      part(() => api("GET", "/api/catalog/status"), renderCatalogue),
      part(() => api("GET", "/api/catalog/rebuild/result"), (state) => { busy = renderRebuild(state) || busy; }),
      part(() => api("GET", "/api/catalog/rejected?limit=100"), (r) => renderRejected(r.result || [])),
      part(() => api("GET", "/api/catalog/queues"), renderQueues),
      part(() => Promise.all([api("GET", "/api/notifications/targets"), api("GET", "/api/notifications/failures")]), ([t, f]) => renderTargets(t, f)),
      part(() => api("GET", "/api/packager/statistics"), renderPackaging),
    ]);
  } catch (e) {
    if (e instanceof Refused) {
      signIn("The token was refused: it is not this Sheaf's SHEAF_API_TOKEN or SHEAF_API_READ_TOKEN.");
      return;
    }
    say(e.message);
  }
  // While a job or a rebuild runs the page follows it closely.
  timer = setTimeout(refresh, busy ? FAST : SLOW);
}

function signIn(why) {
  clearTimeout(timer);
  $("main").hidden = true;
  $("login").hidden = false;
  $("sign-out").hidden = true;
  $("whoami").textContent = "";
  say(why);
  $("token").focus();
}

async function start() {
  let answer;
  try {
    answer = await api("GET", "/api/auth");
  } catch (e) {
    say(`Sheaf does not answer: ${e.message}`);
    return;
  }
  access = answer.access;
  if (access === "none") {
    signIn(answer.token_given
      ? "This token was refused: it is neither SHEAF_API_TOKEN nor SHEAF_API_READ_TOKEN of this Sheaf."
      : "");
    return;
  }
  say("");
  document.body.classList.toggle("read-only", access === "read");
  $("whoami").textContent = access === "read" ? "read-only token" : sessionStorage.getItem(TOKEN) ? "API token" : "trusted local access";
  $("sign-out").hidden = !sessionStorage.getItem(TOKEN);
  $("login").hidden = true;
  $("main").hidden = false;
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN);
    start();
  });
  $("source-form").addEventListener("submit", submitSource);
  $("source-cancel").addEventListener("click", stopEditing);
  $("target-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const target = { name: form.elements.name.value, url: form.elements.url.value };
    act(`${target.name} added; it receives every record now.`, () => api("POST", "/api/notifications/targets", target));
    form.reset();
  });
  $("log-level").addEventListener("change", refresh);
  $("rebuild").addEventListener("click", () => act("Rebuild started.", () => api("POST", "/api/catalog/rebuild")));
  $("retry").addEventListener("click", () => act("Failures sent again.", () => api("POST", "/api/notifications/retry")));
  $("rebuild-report").addEventListener("click", async () => {
    try {
      const report = await api("GET", "/api/catalog/rebuild/report");
      const link = h("a", { href: URL.createObjectURL(new Blob([JSON.stringify(report, null, 2)], { type: "application/json" })), download: "rebuild-report.json" });
      link.click();
      URL.revokeObjectURL(link.href);
    } catch (e) {
      say(e instanceof Refused ? "The token was refused." : e.message);
    }
  });
  start();
});
