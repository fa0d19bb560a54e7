// The ManMan dashboard: hash routes (#/, #/hosts/ID, #/sessions/ID, #/catalog) over the JSON
// layer of manman-web. Everything on the page is built with textContent: a game's console
// line or a name is always text, never markup.
"use strict";

let me = null;          // {name, role, csrf} once logged in
let refresh = null;     // the current view's refresh timer
let consoleSource = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (me) headers["X-CSRF-Token"] = me.csrf;
  }
  const r = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (r.status === 401 && path !== "/api/login") { showLogin(); }
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function when(t) { return t ? new Date(t).toLocaleString() : "-"; }
function uptime(t) {
  if (!t) return "-";
  let s = Math.max(0, Math.floor((Date.now() - new Date(t)) / 1000));
  const d = Math.floor(s / 86400); s %= 86400;
  const h = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}
function status(s) { return el("span", { class: `status-${s}` }, s); }
function link(href, text) { return el("a", { href }, text); }

function table(headers, rows) {
  return el("div", { class: "table" }, el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c)))))));
}

function showLogin() {
  me = null;
  stopView();
  $("nav").hidden = true;
  $("view").hidden = true;
  $("login").hidden = false;
}

function stopView() {
  if (refresh) clearInterval(refresh);
  refresh = null;
  if (consoleSource) consoleSource.close();
  consoleSource = null;
}

function view(...children) {
  const v = $("view");
  v.replaceChildren(...children);
  v.hidden = false;
  $("login").hidden = true;
}

// Overview: counts by state, hosts, live sessions; refreshed every 3 s.
async function overview() {
  const draw = async () => {
    const o = await api("GET", "/api/overview");
    const counts = Object.entries(o.counts);
    view(
      el("h1", {}, "Overview"),
      el("div", { class: "cards" },
        el("div", { class: "card" }, el("div", { class: "n", id: "hosts-online" },
          o.hosts.filter((h) => h.status === "online").length), "hosts online"),
        el("div", { class: "card" }, el("div", { class: "n", id: "live-total" }, o.live_total), "live sessions"),
        ...counts.map(([s, n]) => el("div", { class: "card" }, el("div", { class: "n" }, n), status(s)))),
      el("h2", {}, "Hosts"),
      table(["Host", "Status", "Last heartbeat"], o.hosts.map((h) =>
        [link(`#/hosts/${h.server_id}`, h.name), status(h.status), when(h.last_seen)])),
      el("h2", {}, "Live sessions"),
      o.sessions.length ? table(["Session", "Status", "Host", "Game/config", "Uptime", "CPU", "Memory", "Players"],
        o.sessions.map((s) => [link(`#/sessions/${s.session_id}`, `#${s.session_id}`), status(s.status),
          s.host, `${s.game}/${s.config}`, uptime(s.started_at),
          s.sample ? `${s.sample.cpu_percent.toFixed(1)}%` : "-",
          s.sample ? `${(s.sample.rss_bytes / 1048576).toFixed(0)} MiB` : "-", playersText(s.sample)]))
        : el("p", { class: "hint" }, "No live session. Start one from a deployment under Games & configs."));
  };
  await draw();
  refresh = setInterval(() => draw().catch(() => {}), 3000);
}

async function hostPage(id) {
  const usage = usageCharts(`/api/hosts/${id}/history`);
  const draw = async () => {
    const h = await api("GET", `/api/hosts/${id}`);
    await usage.draw().catch(() => {});
    view(
      el("h1", {}, `Host ${h.host.name}`),
      el("p", {}, status(h.host.status), ` · last heartbeat ${when(h.host.last_seen)}`),
      h.host.memory ? el("p", { class: "hint", id: "host-memory" },
        `memory ${(h.host.memory.available_bytes / 1073741824).toFixed(1)} GiB available of ` +
        `${(h.host.memory.total_bytes / 1073741824).toFixed(1)} GiB · ports for new deployments ` +
        `${h.host.port_range[0]}-${h.host.port_range[1]}`) : null,
      el("h2", {}, "Usage (all sessions)"), usage.node,
      el("h2", {}, "Sessions"),
      table(["Session", "Status", "Game/config", "Started", "Ended", "Exit"], h.sessions.map((s) =>
        [link(`#/sessions/${s.session_id}`, `#${s.session_id}`), status(s.status), `${s.game}/${s.config}`,
          when(s.started_at), when(s.ended_at), s.exit_code ?? "-"])));
  };
  await draw();
  refresh = setInterval(() => draw().catch(() => {}), 5000);
}

// A session: its state, power actions, the live console and the archive.
async function sessionPage(id) {
  const state = el("span", { id: "session-status" });
  const details = el("p", { class: "hint" });
  const result = el("p", { class: "result", id: "action-result", role: "status" });
  const out = el("div", { id: "console", "aria-live": "off" });
  const paused = el("span", { id: "console-paused", hidden: "" }, "paused: scrolled up (scroll down to follow)");
  let sgc = null;

  const draw = async () => {
    const s = await api("GET", `/api/sessions/${id}`);
    sgc = s.sgc_id;
    state.replaceChildren(status(s.status));
    details.textContent = `${s.game}/${s.config} on ${s.host} · started ${when(s.started_at)}` +
      ` · restarts ${s.restart_count}` + (s.reason ? ` · ${s.reason}` : "") +
      (s.sample ? ` · CPU ${s.sample.cpu_percent.toFixed(1)}% · ${(s.sample.rss_bytes / 1048576).toFixed(0)} MiB` +
        (s.sample.memory_peak_bytes ? ` (peak ${(s.sample.memory_peak_bytes / 1048576).toFixed(0)} MiB)` : "") +
        (s.sample.disk_bytes ? ` · disk ${(s.sample.disk_bytes / 1048576).toFixed(0)} MiB` : "") +
        ` · players ${playersText(s.sample)}` : "") + maintenanceText(s.maintenance);
  };
  const act = (label, verb, danger) => el("button", {
    class: danger ? "danger" : "", type: "button", id: `action-${verb}`,
    onclick: async () => {
      if (!confirm(`${label} session ${id}?`)) return;
      result.textContent = `${label}…`;
      try {
        const path = verb === "start" ? `/api/deployments/${sgc}/start` : `/api/sessions/${id}/${verb}`;
        const s = await api("POST", path, {});
        result.textContent = verb === "start" ? `started session ${s.session_id}` : `${label}: ${s.status}`;
        if (verb === "start") location.hash = `#/sessions/${s.session_id}`;
        else await draw();
      } catch (e) { result.textContent = `${label} failed: ${e.message}`; }
    } }, label);

  const follow = () => out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
  out.addEventListener("scroll", () => { paused.hidden = follow(); });
  const append = (cls, text) => {
    const stick = follow();
    out.append(el("div", { class: cls }, text));
    while (out.childNodes.length > 5000) out.firstChild.remove();
    if (stick) out.scrollTop = out.scrollHeight;
  };

  const input = el("input", { id: "console-command", placeholder: "console command, e.g. say hello", autocomplete: "off" });
  const form = el("form", { id: "console-input", onsubmit: async (ev) => {
    ev.preventDefault();
    const text = input.value;
    if (!text) return;
    try { await api("POST", `/api/sessions/${id}/input`, { input: text }); input.value = ""; }
    catch (e) { result.textContent = `send failed: ${e.message}`; }
  } }, input, el("button", { type: "submit" }, "Send"));

  const since = el("input", { type: "datetime-local", id: "archive-since" });
  const until = el("input", { type: "datetime-local", id: "archive-until" });
  const archived = el("div", { id: "archive" });
  const range = () => {
    const ms = (i) => i.value ? new Date(i.value).getTime() : 0;
    return `since=${ms(since)}&until=${ms(until)}`;
  };
  const archiveForm = el("form", { onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const a = await api("GET", `/api/sessions/${id}/archive?format=json&${range()}`);
      archived.replaceChildren(
        el("p", { class: "hint" }, `${a.lines.length} archived lines `,
          el("a", { href: `/api/sessions/${id}/archive?${range()}`, download: `session-${id}.log` }, "download")),
        el("div", { id: "archive-lines", class: "table" }, ...a.lines.map((l) =>
          el("div", { class: l.source }, `${when(l.timestamp)} ${l.source} ${l.message}`))));
    } catch (e) { archived.textContent = `archive: ${e.message}`; }
  } }, el("label", {}, "From", since), el("label", {}, "Until", until),
    el("button", { type: "submit", id: "archive-show" }, "Show archived lines"));

  // Backups of this session's deployment: the newest ones, "Back up now", "Restore".
  const backups = el("div", { id: "backups" });
  const drawBackups = async () => {
    if (sgc === null) return;
    const list = await api("GET", `/api/deployments/${sgc}/backups`);
    const progress = (b) => b.status === "running" && b.bytes_total
      ? ` ${Math.round(100 * b.bytes_done / b.bytes_total)}%` : "";
    const size = (b) => b.size_bytes ? `${(b.size_bytes / 1048576).toFixed(1)} MiB` : "-";
    const restoreButton = (b) => b.status !== "completed" ? "" : el("button", {
      type: "button", class: "danger", id: `restore-${b.backup_id}`,
      onclick: async () => {
        if (!confirm(`Restore backup ${b.backup_id}? The session stops, its files are replaced, and it starts again.`)) return;
        try { const r = await api("POST", `/api/backups/${b.backup_id}/restore`, {}); result.textContent = `restore ${r.restore_id}: ${r.status}`; }
        catch (e) { result.textContent = `restore failed: ${e.message}`; }
      } }, "Restore");
    backups.replaceChildren(list.items.length === 0 ? el("p", { class: "hint" }, "no backups yet") :
      table(["Backup", "Status", "Created", "Size", "Files", "Note / reason", ""],
        list.items.map((b) => [`#${b.backup_id}`, el("span", {}, status(b.status), progress(b)), when(b.created_at),
          size(b), b.file_count || "-", b.reason || b.note || "", restoreButton(b)])));
  };
  const backupNow = el("button", { type: "button", id: "backup-now", onclick: async () => {
    result.textContent = "backing up…";
    try { const b = await api("POST", `/api/deployments/${sgc}/backups`, {}); result.textContent = `backup ${b.backup_id}: ${b.status}`; await drawBackups(); }
    catch (e) { result.textContent = `backup failed: ${e.message}`; }
  } }, "Back up now");

  // Schedules of this session's deployment: their newest run, Run now, Pause/Resume, and a
  // form for a one-step schedule (multi-step ones come from `manman schedule create --step`).
  const schedulesBox = el("div", { id: "schedules" });
  const drawSchedules = async () => {
    if (sgc === null) return;
    const list = await api("GET", `/api/deployments/${sgc}/schedules`);
    const steps = (s) => s.steps.map((st) => st.action === "command" ? `command "${st.command}"`
      : st.action === "wait" ? `wait ${st.seconds} s` : st.action).join(" → ");
    const lastRun = (s) => !s.last_run ? "-" : el("span", {}, status(s.last_run.status),
      ` ${when(s.last_run.scheduled_for)}`, s.last_run.reason ? ` · ${s.last_run.reason}` : "");
    const button = (label, path, cls) => el("button", { type: "button", class: cls || "plain",
      id: path.replaceAll("/", "-").slice(1), onclick: async () => {
        try { await api("POST", `/api${path}`, {}); await drawSchedules(); }
        catch (e) { result.textContent = `${label} failed: ${e.message}`; }
      } }, label);
    schedulesBox.replaceChildren(list.items.length === 0 ? el("p", { class: "hint" }, "no schedules") :
      table(["Schedule", "Cron", "Next", "Steps", "Last run", ""], list.items.map((s) => [
        `#${s.schedule_id} ${s.name}`, `${s.cron} ${s.timezone}`, s.paused ? "paused" : when(s.next_run_at),
        steps(s), lastRun(s),
        el("span", {}, button("Run now", `/schedules/${s.schedule_id}/run`),
          s.paused ? button("Resume", `/schedules/${s.schedule_id}/resume`)
            : button("Pause", `/schedules/${s.schedule_id}/pause`))])));
  };
  const cron = el("input", { id: "schedule-cron", placeholder: "0 4 * * *", required: "" });
  const zone = el("input", { id: "schedule-timezone", placeholder: "UTC" });
  const action = el("select", { id: "schedule-action" },
    ...["restart", "backup", "command", "stop", "start"].map((a) => el("option", { value: a }, a)));
  const command = el("input", { id: "schedule-command", placeholder: "for command: say hello" });
  const scheduleForm = el("form", { id: "schedule-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const s = await api("POST", `/api/deployments/${sgc}/schedules`,
        { cron: cron.value, timezone: zone.value, action: action.value, command: command.value });
      result.textContent = `schedule ${s.schedule_id} created: next ${when(s.next_run_at)}`;
      await drawSchedules();
    } catch (e) { result.textContent = `schedule: ${e.message}`; }
  } }, el("label", {}, "Cron", cron), el("label", {}, "Time zone", zone),
    el("label", {}, "Action", action), el("label", {}, "Command", command),
    el("button", { type: "submit", id: "schedule-create" }, "Add schedule"));

  const usage = usageCharts(`/api/sessions/${id}/history`);
  view(
    el("h1", {}, `Session #${id} `, state), details,
    el("div", { class: "actions" }, act("Start again", "start"), act("Stop", "stop"), act("Kill", "kill", true)),
    result,
    el("h2", {}, "Usage"), usage.node,
    el("h2", {}, "Console"),
    el("div", { class: "console-bar" }, el("span", { id: "console-state" }, "connecting…"), paused),
    out, form,
    el("h2", {}, "Archive"), archiveForm, archived,
    el("h2", {}, "Backups"), el("div", { class: "actions" }, backupNow), backups,
    el("h2", {}, "Schedules"), schedulesBox, scheduleForm);
  await draw();
  await drawBackups().catch((e) => { backups.textContent = `backups: ${e.message}`; });
  await drawSchedules().catch((e) => { schedulesBox.textContent = `schedules: ${e.message}`; });
  await usage.draw().catch(() => {});
  refresh = setInterval(() => {
    draw().then(drawBackups).then(usage.draw).then(drawSchedules).catch(() => {});
  }, 3000);

  // EventSource reconnects by itself and sends Last-Event-ID: the server resumes after it.
  consoleSource = new EventSource(`/api/sessions/${id}/console`);
  consoleSource.onopen = () => { $("console-state").textContent = "live"; };
  consoleSource.addEventListener("line", (ev) => {
    const l = JSON.parse(ev.data);
    append(l.source, l.message);
  });
  consoleSource.addEventListener("gap", (ev) => append("gap", JSON.parse(ev.data).message));
  consoleSource.addEventListener("end", (ev) => {
    const why = JSON.parse(ev.data).error;
    $("console-state").textContent = why ? `stream ended: ${why}` : "session ended";
    consoleSource.close();
    draw().catch(() => {});
  });
  consoleSource.onerror = () => { $("console-state").textContent = "reconnecting…"; };
}

// Usage charts (CPU, memory, players) of the last hour or day from `path`, as inline SVG built
// node by node: a line per measure, its latest value and its peak in the title.
function usageCharts(path) {
  const box = el("div", { class: "charts", id: "charts" });
  let span = "hour";
  const svgEl = (tag, attrs) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  const chart = (id, label, points, value, unit) => {
    const W = 240, H = 60;
    const known = points.filter((p) => value(p) !== null && value(p) !== undefined);
    const svg = svgEl("svg", { id: `chart-${id}`, viewBox: `0 0 ${W} ${H}`, width: W, height: H,
      role: "img", "aria-label": label, "data-points": known.length });
    svg.append(svgEl("rect", { x: 0, y: 0, width: W, height: H, class: "chart-bg" }));
    if (known.length > 0) {
      const t0 = known[0].at_ms, t1 = Math.max(known[known.length - 1].at_ms, t0 + 1);
      const peak = Math.max(...known.map(value), 1e-9);
      const xy = known.map((p) => `${((p.at_ms - t0) / (t1 - t0) * (W - 4) + 2).toFixed(1)},` +
        `${(H - 2 - value(p) / peak * (H - 8)).toFixed(1)}`);
      svg.append(svgEl("polyline", { points: xy.join(" "), class: "chart-line", fill: "none" }));
    }
    const last = known.length ? value(known[known.length - 1]) : null;
    const peak = known.length ? Math.max(...known.map(value)) : null;
    const fmt = (v) => v === null ? "-" : `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`;
    return el("figure", { class: "chart" }, svg,
      el("figcaption", {}, `${label}: ${fmt(last)} (peak ${fmt(peak)})`));
  };
  const draw = async () => {
    const h = await api("GET", `${path}?window=${span}`);
    const mib = (p) => p.rss_bytes / 1048576;
    box.replaceChildren(
      chart("cpu", "CPU", h.items, (p) => p.cpu_percent, "%"),
      chart("memory", "Memory", h.items, mib, " MiB"),
      chart("players", "Players", h.items, (p) => p.players_online, ""));
  };
  const pick = (w) => el("button", { type: "button", id: `chart-window-${w}`, onclick: () => {
    span = w; draw().catch((e) => { box.textContent = `history: ${e.message}`; });
  } }, w === "hour" ? "Last hour" : "Last day");
  return { node: el("div", {}, el("div", { class: "actions" }, pick("hour"), pick("day")), box), draw };
}

// A pending `--when-empty` restart or stop, as `session show` tells it.
function maintenanceText(m) {
  if (!m || (m.status !== "waiting" && m.status !== "stopping")) return "";
  const who = m.players_seen === null ? "the first player count" : `${m.players_seen} player(s)`;
  return m.status === "waiting"
    ? ` · ${m.action} pending: waiting for ${who}, deadline ${when(m.deadline)}`
    : ` · ${m.action} under way`;
}

// "3/20", or "unknown" when the server was not (or could not be) asked: never 0 for that.
function playersText(sample) {
  if (!sample || sample.players_online == null) return "unknown";
  return sample.players_max != null ? `${sample.players_online}/${sample.players_max}` : `${sample.players_online}`;
}

// A config's limits in a few words ("4 GiB · 2.5 cores · disk 20 GiB"); "-" without any.
function limitsText(l) {
  if (!l) return "-";
  const gib = (b) => b >= 1073741824 ? `${(b / 1073741824).toFixed(1).replace(/\.0$/, "")} GiB` : `${Math.round(b / 1048576)} MiB`;
  const parts = [];
  if (l.memory_max_bytes) parts.push(gib(l.memory_max_bytes));
  if (l.cpu_max_cores) parts.push(`${l.cpu_max_cores} cores`);
  if (l.pids_max) parts.push(`${l.pids_max} pids`);
  if (l.disk_max_bytes) parts.push(`disk ${gib(l.disk_max_bytes)}`);
  return parts.length ? parts.join(" · ") : "-";
}

// Games, configs and deployments, with create forms.
async function catalog() {
  const [games, configs, deployments] = await Promise.all([
    api("GET", "/api/games"), api("GET", "/api/configs"), api("GET", "/api/deployments")]);
  const result = el("p", { class: "result", id: "catalog-result", role: "status" });
  const field = (name, label, attrs) => el("label", {}, label, el("input", { name, ...(attrs || {}) }));
  const submit = (path, after) => async (ev) => {
    ev.preventDefault();
    const body = Object.fromEntries(new FormData(ev.target).entries());
    try { const r = await api("POST", path, body); result.textContent = after(r); await route(); }
    catch (e) { result.textContent = e.message; }
  };
  const start = (sgc) => el("button", { type: "button", class: "plain", onclick: async () => {
    try { const s = await api("POST", `/api/deployments/${sgc}/start`, {}); location.hash = `#/sessions/${s.session_id}`; }
    catch (e) { result.textContent = `start failed: ${e.message}`; }
  } }, "Start");
  view(
    el("h1", {}, "Games & configs"), result,
    el("h2", {}, "Games"),
    table(["ID", "Name"], games.items.map((g) => [g.game_id, g.name])),
    el("form", { id: "game-form", onsubmit: submit("/api/games", (g) => `created game ${g.game_id}`) },
      field("name", "New game", { required: "" }), el("button", { type: "submit" }, "Create")),
    el("h2", {}, "Configs"),
    table(["ID", "Game", "Name", "Program", "Restart", "Ports", "Limits"], configs.items.map((c) =>
      [c.config_id, c.game_id, c.name, [c.program, ...c.args].join(" "), c.restart_policy, c.ports.join(", "),
        limitsText(c.limits)])),
    el("form", { id: "config-form", onsubmit: submit("/api/configs", (c) => `created config ${c.config_id}`) },
      field("game_id", "Game id", { required: "", inputmode: "numeric" }), field("name", "Name", { required: "" }),
      field("program", "Program", { required: "" }), el("label", {}, "Args (one per line)", el("textarea", { name: "args", rows: "1" })),
      field("stop_command", "Stop command"), field("ports", "Ports (25565/tcp, …)"),
      field("ready_line", "Ready when a line matches"),
      field("memory_max", "Memory limit (4G)"), field("cpu_max", "CPU limit (cores)"),
      field("pids_max", "Process limit (512)"), field("disk_max", "Disk limit (20G)"),
      el("label", {}, "Restart", el("select", { name: "restart_policy" },
        el("option", { value: "never" }, "never"), el("option", { value: "on-failure" }, "on-failure"),
        el("option", { value: "always" }, "always"))),
      el("button", { type: "submit" }, "Create")),
    el("h2", {}, "Deployments"),
    table(["ID", "Host", "Config", "Ports", ""], deployments.items.map((d) =>
      [d.sgc_id, link(`#/hosts/${d.server_id}`, `host ${d.server_id}`), d.config_id, d.ports.join(", "), start(d.sgc_id)])),
    el("form", { id: "deploy-form", onsubmit: submit("/api/deployments", (d) =>
      `deployment ${d.sgc_id} on host ${d.server_id}${d.placed ? " (placed by free memory)" : ""}`) },
      field("config_id", "Config id", { required: "", inputmode: "numeric" }),
      field("server_id", "Host id (empty: placed)", { inputmode: "numeric" }),
      el("button", { type: "submit" }, "Deploy")));
}

async function route() {
  stopView();
  if (!me) {
    try { me = await api("GET", "/api/me"); } catch { return showLogin(); }
  }
  $("nav").hidden = false;
  $("who").textContent = `${me.name} (${me.role})`;
  const path = location.hash.replace(/^#/, "") || "/";
  let m;
  try {
    if ((m = path.match(/^\/hosts\/(\d+)$/))) await hostPage(m[1]);
    else if ((m = path.match(/^\/sessions\/(\d+)$/))) await sessionPage(m[1]);
    else if (path === "/catalog") await catalog();
    else await overview();
  } catch (e) {
    if (me) view(el("p", { class: "error" }, e.message));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      me = await api("POST", "/api/login", { token: $("login-token").value });
      $("login-token").value = "";
      await route();
    } catch (e) { $("login-error").textContent = e.message; }
  });
  $("logout").addEventListener("click", async () => {
    try { await api("POST", "/api/logout", {}); } finally { showLogin(); }
  });
  window.addEventListener("hashchange", route);
  route();
});
