// operone dashboard: renders the snapshots the server pushes (server-sent
// events on /api/events).  No framework, no build step, no network access
// beyond this dashboard's own server.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (sel) => document.querySelector(sel);
  let snap = null;
  let streamUp = false;

  // ------------------------------------------------------------ helpers
  function dash(v, digits) {
    if (v === null || v === undefined || v === "") return "-";
    if (typeof v === "number") return digits === undefined ? String(v) : v.toFixed(digits);
    return String(v);
  }
  function when(t) {
    if (t === null || t === undefined) return "-";
    const d = new Date(t * 1000);
    const ago = snap ? Math.max(0, (snap.now || Date.now() / 1000) - t) : 0;
    return d.toLocaleTimeString() + " (" + span(ago) + " ago)";
  }
  function span(s) {
    if (s === null || s === undefined) return "-";
    if (s < 60) return s.toFixed(0) + " s";
    if (s < 3600) return (s / 60).toFixed(0) + " min";
    if (s < 86400) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }
  function el(tag, attrs, text) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function row(cells, attrs) {
    const tr = el("tr", attrs);
    for (const c of cells) {
      if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
      else if (c && typeof c === "object") { tr.appendChild(el("td", c.attrs, c.text)); }
      else tr.appendChild(el("td", {}, dash(c)));
    }
    return tr;
  }
  function api(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ "X-Operone-Dashboard": "1" }, opts.headers || {});
    opts.credentials = "same-origin";
    return fetch(path, opts).then(async (r) => {
      let body = null;
      try { body = await r.json(); } catch (e) { body = { error: r.status + " " + r.statusText }; }
      return { status: r.status, body: body };
    });
  }

  // -------------------------------------------------------------- pages
  function currentPage() {
    const p = (location.hash || "#mesh").slice(1);
    return ["mesh", "nodes", "links", "jobs"].includes(p) ? p : "mesh";
  }
  function showPage() {
    const p = currentPage();
    for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== "page-" + p;
    for (const a of document.querySelectorAll("nav a"))
      a.classList.toggle("active", a.dataset.page === p);
    if (p === "jobs") loadJobs();
  }
  window.addEventListener("hashchange", showPage);

  function nodeClass(n, links) {
    if (!n.up) return "down";
    if (n.local) return "up";
    const l = links[n.id];
    if (l && l.health !== null && l.health < 60) return "warn";
    return "up";
  }

  function renderStatus() {
    const st = $("#broker-status"), banner = $("#banner");
    if (!streamUp) {
      st.className = "status down";
      st.textContent = "dashboard server unreachable";
      banner.hidden = false;
      banner.textContent = "Lost the connection to the dashboard server; retrying…";
      return;
    }
    const b = snap.broker;
    if (b.up) {
      st.className = "status up";
      st.textContent = "broker " + dash(b.node) + " at " + b.address;
      banner.hidden = true;
      banner.textContent = "";
    } else {
      st.className = "status down";
      st.textContent = "broker at " + b.address + " down";
      banner.hidden = false;
      banner.textContent = "The broker at " + b.address + " does not answer: " + dash(b.error)
        + (b.since ? " (since " + when(b.since) + ")" : "")
        + ". Showing the last known state; it recovers by itself when the broker is back.";
    }
  }

  function renderMesh() {
    const svg = $("#mesh-graph");
    svg.classList.toggle("stale", !snap.broker.up);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const nodes = snap.nodes, links = {};
    for (const l of snap.links) links[l.peer] = l;
    const W = 800, H = 520, cx = W / 2, cy = H / 2, r = Math.min(W, H) / 2 - 70;
    const pos = {};
    // The local node in the middle, the others on a circle round it.
    const others = nodes.filter((n) => !n.local);
    const local = nodes.find((n) => n.local);
    if (local) pos[local.id] = [cx, cy];
    others.forEach((n, i) => {
      const a = (2 * Math.PI * i) / Math.max(1, others.length) - Math.PI / 2;
      pos[n.id] = local || others.length > 1 ? [cx + r * Math.cos(a), cy + r * Math.sin(a)]
        : [cx, cy];
    });
    for (const e of snap.edges) {
      const p = pos[e.source], q = pos[e.target];
      if (!p || !q) continue;
      const g = el("svg:g", { class: "edge " + (e.up ? "up" : "down"),
        "data-edge": e.source + "--" + e.target, "data-state": e.up ? "up" : "down" });
      g.appendChild(el("svg:line", { x1: p[0], y1: p[1], x2: q[0], y2: q[1] }));
      const label = e.up ? (e.latency_ms === null ? "-" : e.latency_ms.toFixed(2) + " ms")
        : "down";
      g.appendChild(el("svg:text", { x: (p[0] + q[0]) / 2, y: (p[1] + q[1]) / 2 - 6 }, label));
      svg.appendChild(g);
    }
    for (const n of nodes) {
      const [x, y] = pos[n.id];
      const cls = nodeClass(n, links);
      const g = el("svg:g", { class: "node " + cls + (n.local ? " local" : ""),
        "data-node": n.id, "data-state": n.up ? "up" : "down" });
      const title = el("svg:title", {}, n.id + (n.local ? " (this broker)" : "") + ": "
        + (n.up ? "up" : "down") + ", workers " + dash(n.workers) + ", load " + dash(n.load));
      g.appendChild(title);
      g.appendChild(el("svg:circle", { cx: x, cy: y, r: 22 }));
      g.appendChild(el("svg:text", { x: x, y: y + 40 }, n.name + (n.up ? "" : " (down)")));
      svg.appendChild(g);
    }
    const net = snap.network || {};
    const s = $("#mesh-summary");
    s.textContent = "";
    const parts = [["nodes", dash(net.total_nodes)], ["unreachable", dash(net.unreachable_nodes)],
      ["partitions", net.partitions === 1 ? "connected" : dash(net.partitions)],
      ["diameter", dash(net.network_diameter)],
      ["running", dash(snap.jobs_summary.running)], ["queued", dash(snap.jobs_summary.queued)],
      ["done", dash(snap.jobs_summary.completed)], ["failed", dash(snap.jobs_summary.failed)]];
    for (const [k, v] of parts) s.appendChild(el("span", {}, k + ": " + v));
  }

  function renderNodes() {
    const tb = $("#nodes-table tbody");
    tb.textContent = "";
    for (const n of snap.nodes) {
      tb.appendChild(row([
        n.name + (n.local ? " (this broker)" : ""),
        { text: n.up ? "up" : "down", attrs: { class: n.up ? "state-up" : "state-down" } },
        when(n.since), n.kind, n.workers, n.load === null ? null : n.load.toFixed(2),
        n.uptime === null ? null : span(n.uptime),
        n.tools.length ? n.tools.join(", ") : null,
        n.capabilities.length ? n.capabilities.join(", ") : null,
      ], { "data-node": n.id, class: n.up ? "" : "down" }));
    }
  }

  function spark(points, key, max) {
    const svg = el("svg:svg", { class: "spark", viewBox: "0 0 120 28",
      preserveAspectRatio: "none" });
    const vals = points.map((p) => p[key]).filter((v) => v !== null && v !== undefined);
    if (vals.length < 2) return svg;
    const hi = max !== undefined ? max : Math.max(...vals) || 1;
    const step = 120 / (points.length - 1);
    const pts = [];
    points.forEach((p, i) => {
      const v = p[key];
      if (v !== null && v !== undefined)
        pts.push((i * step).toFixed(1) + "," + (26 - (24 * v) / hi).toFixed(1));
    });
    svg.appendChild(el("svg:polyline", { points: pts.join(" ") }));
    svg.appendChild(el("svg:title", {}, key + ": last " + dash(vals[vals.length - 1], 2)
      + ", max " + dash(Math.max(...vals), 2)));
    return svg;
  }

  function renderLinks() {
    const tb = $("#links-table tbody");
    tb.textContent = "";
    let hl = 0;
    for (const l of snap.links) {
      hl = Math.max(hl, l.history.length);
      const q = Object.entries(l.queued_by_class).map(([k, v]) => k + " " + v).join(", ");
      tb.appendChild(row([
        l.peer + (l.address ? " (" + l.address + ")" : ""),
        { text: l.state || "-", attrs: { class: l.up ? "state-up" : "state-down" } },
        when(l.since), l.rtt_ms === null ? null : l.rtt_ms.toFixed(3),
        l.jitter_ms === null ? null : l.jitter_ms.toFixed(3),
        l.loss === null ? null : (l.loss * 100).toFixed(1) + " %",
        l.bandwidth_mb_s === null ? null : l.bandwidth_mb_s.toFixed(2), l.health, q || "0",
        spark(l.history, "rtt_ms"), spark(l.history, "health", 100), spark(l.history, "queued"),
      ], { "data-peer": l.peer, class: l.up ? "" : "down" }));
    }
    $("#history-len").textContent = String(hl);
  }

  // --------------------------------------------------------------- jobs
  let jobsLoading = false;
  let lastJobs = "";
  function loadJobs() {
    if (jobsLoading || currentPage() !== "jobs") return;
    jobsLoading = true;
    const q = new URLSearchParams();
    const st = $("#filter-state").value, nd = $("#filter-node").value.trim();
    if (st) q.set("state", st);
    if (nd) q.set("node", nd);
    api("api/jobs?" + q.toString()).then(({ status, body }) => {
      const tb = $("#jobs-table tbody");
      $("#jobs-unsupported").hidden = status !== 501;
      // Redraw only on a change: rows replaced under the pointer lose clicks.
      const key = status + " " + JSON.stringify(body);
      if (key === lastJobs) return;
      lastJobs = key;
      tb.textContent = "";
      if (status !== 200) {
        if (status !== 501)
          tb.appendChild(row([{ text: "jobs: " + dash(body.error), attrs: { colspan: 9 } }]));
        return;
      }
      for (const j of body.jobs) {
        let btn = null;
        if (j.state === "queued" || j.state === "running") {
          btn = el("button", { class: "cancel", "data-job": j.id, type: "button" }, "Cancel");
          btn.addEventListener("click", (ev) => { ev.stopPropagation(); cancelJob(j.id); });
        }
        const err = j.error && typeof j.error === "object" ? j.error.code : j.error;
        const tr = row([j.id, j.tool, j.node, (j.state || "-") + (err ? " (" + err + ")" : ""),
          j.attempts,
          j.duration === null ? null : j.duration.toFixed(3), j.submitter,
          j.started === null ? null : new Date(j.started * 1000).toLocaleTimeString(),
          btn || "-"], { "data-job": j.id, "data-state": j.state || "" });
        tr.addEventListener("click", () => showJob(j.id));
        tb.appendChild(tr);
      }
    }).catch((e) => { console.warn("jobs", e); }).finally(() => { jobsLoading = false; });
  }
  function showJob(id) {
    api("api/job/" + encodeURIComponent(id)).then(({ body }) => {
      const d = $("#job-detail");
      d.hidden = false;
      d.textContent = JSON.stringify(body.job || body, null, 2);
    });
  }
  function cancelJob(id) {
    const out = $("#cancel-result");
    out.textContent = "cancelling " + id + "…";
    api("api/cancel", { method: "POST", body: JSON.stringify({ job: id }),
      headers: { "Content-Type": "application/json" } }).then(({ status, body }) => {
      out.dataset.job = id;
      if (status === 200 && body.cancelled) {
        out.textContent = "cancelled " + id;
        out.dataset.result = "cancelled";
      } else {
        out.textContent = status === 200 ? "not cancelled: no job " + id
          + " submitted to this broker is in progress" : "error: " + dash(body.error);
        out.dataset.result = status === 200 ? "not-found" : "error";
      }
      loadJobs();
    });
  }
  $("#cancel-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("#cancel-id").value.trim();
    if (id) cancelJob(id);
  });
  $("#filter-state").addEventListener("change", loadJobs);
  $("#filter-node").addEventListener("input", loadJobs);

  // ------------------------------------------------------------ stream
  function render() {
    renderStatus();
    if (!snap) return;
    renderMesh();
    renderNodes();
    renderLinks();
    document.body.dataset.brokerUp = snap.broker.up ? "1" : "0";
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }
  // The first event of a stream carries each link's whole history ("full");
  // the next ones only its newest point, appended here and kept as bounded
  // as on the server.
  const histories = {};
  function mergeHistory(s) {
    const peers = new Set(s.links.map((l) => l.peer));
    for (const p of Object.keys(histories)) if (!peers.has(p)) delete histories[p];
    for (const l of s.links) {
      let h = s.full ? l.history.slice() : (histories[l.peer] || []);
      if (!s.full) {
        const lastT = h.length ? h[h.length - 1].t : -Infinity;
        for (const p of l.history) if (p.t > lastT) h.push(p);
      }
      if (h.length > s.history_points) h = h.slice(h.length - s.history_points);
      histories[l.peer] = h;
      l.history = h;
    }
  }
  function connect() {
    const es = new EventSource("api/events");
    es.addEventListener("snapshot", (ev) => {
      streamUp = true;
      snap = JSON.parse(ev.data);
      mergeHistory(snap);
      snap.now = Date.now() / 1000;
      render();
      loadJobs();
    });
    es.addEventListener("error", () => {
      streamUp = false;
      renderStatus();
      // EventSource retries by itself (the server asks for 2 s).
    });
  }
  showPage();
  connect();
})();
