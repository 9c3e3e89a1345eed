// The status page: polls /status every two seconds and redraws. Plain DOM (textContent only: nothing from the
// server is ever parsed as HTML), no framework, nothing fetched from elsewhere.
"use strict";

const POLL_MS = 2000;
let previous = null; // { at: ms, traffic: Map("lb/zone" -> counters) }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function table(caption, headers, rows) {
  const head = el("tr", {}, ...headers.map(([label, cls]) => el("th", { scope: "col", class: cls || "" }, label)));
  const body = el("tbody", {}, ...rows);
  return el("div", { class: "scroll" }, el("table", {}, el("caption", { class: "visually-hidden" }, caption), el("thead", {}, head), body));
}

// The state as a coloured badge that also says it in words (colour is never the only signal).
function badge(state, description) {
  const pending = description === "Instance registration is still in progress.";
  return el("span", { class: "state " + (pending ? "pending" : state), "data-state": state }, state);
}

function rate(key, now, count, field) {
  if (!previous || !previous.traffic.has(key)) return "–";
  const seconds = (now - previous.at) / 1000;
  const delta = count[field] - previous.traffic.get(key)[field];
  return seconds > 0 && delta >= 0 ? (delta / seconds).toFixed(1) : "–";
}

function zonesTable(lb, now) {
  const rows = lb.nodes.map((node) => {
    const key = lb.name + "/" + node.zone;
    const t = node.traffic;
    const healthy = lb.instances.filter((i) => i.zone === node.zone && i.state === "InService").length;
    const total = lb.instances.filter((i) => i.zone === node.zone).length;
    const listeners = el("td", {}, ...node.listeners.flatMap((l, n) => [
      ...(n ? [el("br")] : []), l.protocol + " ", el("code", {}, l.address || "not bound")]));
    return el("tr", {},
      el("th", { scope: "row" }, node.zone), listeners,
      el("td", { class: "num" }, healthy + " / " + total),
      el("td", { class: "num" }, rate(key, now, t, "requests")),
      el("td", { class: "num" }, t.elb_4xx + t.backend_4xx),
      el("td", { class: "num" }, t.elb_5xx + t.backend_5xx),
      el("td", { class: "num wide" }, t.elb_5xx),
      el("td", { class: "num" }, t.surge_queue_length),
      el("td", { class: "num wide" }, t.spillover));
  });
  return table("Zones of " + lb.name, [["Zone"], ["Listeners"], ["InService"], ["req/s"], ["4xx"], ["5xx"],
    ["ELB 5xx", "wide"], ["Surge queue"], ["Spillover", "wide"]], rows);
}

// Cluster mode: each live member's state for the instance (the State column is the worst of them).
function viewsCell(views) {
  return el("td", { class: "nowrap" }, ...Object.entries(views || {}).flatMap(([member, state], n) => [
    ...(n ? [el("br")] : []), member + " ", badge(state, "")]));
}

function instancesTable(lb) {
  const clustered = lb.instances.some((i) => i.views && Object.keys(i.views).length);
  const rows = lb.instances.map((i) => el("tr", { "data-instance": i.instance_id },
    el("th", { scope: "row" }, i.instance_id), el("td", {}, i.zone), el("td", { class: "wide" }, el("code", {}, i.address)),
    el("td", {}, badge(i.state, i.description)), el("td", {}, i.reason_code), el("td", {}, i.description),
    ...(clustered ? [viewsCell(i.views)] : [])));
  return table("Instances of " + lb.name, [["Instance"], ["Zone"], ["Address", "wide"], ["State"], ["Reason"],
    ["Description"], ...(clustered ? [["Members' views"]] : [])], rows);
}

// Whether the state store answers: while it does not, this process serves its last state and API writes
// answer 503, which an operator must see first.
function storeLine(store) {
  if (!store) return [];
  const words = store.reachable ? "reachable" : "unreachable";
  const since = new Date(store.since_unix_ms).toLocaleString();
  const consequence = store.reachable ? "" : " · serving the last state it applied; API writes answer 503";
  return [el("p", { id: "store" }, "State store (" + store.kind + "): ",
    el("span", { class: "state " + (store.reachable ? "InService" : "OutOfService"), "data-reachable": String(store.reachable) },
      words), " since " + since + " · revision " + store.revision + consequence)];
}

function membersTable(members) {
  const rows = members.map((m) => el("tr", { "data-member": m.node_id },
    el("th", { scope: "row" }, m.node_id, m.this ? " (this process)" : ""), el("td", {}, m.zones.join(", ")),
    el("td", {}, ...m.nodes.flatMap((n, i) => [...(i ? [el("br")] : []), n.load_balancer + " " + n.zone + " ",
      el("code", {}, n.address)])),
    el("td", { class: "wide" }, el("a", { href: "http://" + m.admin + "/" }, m.admin)),
    el("td", { class: "nowrap wide" }, new Date(m.started_unix_ms).toLocaleString())));
  return table("Cluster members", [["Member"], ["Zones"], ["Nodes"], ["Admin", "wide"], ["Started", "wide"]], rows);
}

// Shown only in cluster mode (`members` and `store` are absent otherwise).
function cluster(status) {
  const section = document.getElementById("cluster");
  const members = status.members || [];
  section.hidden = !members.length && !status.store;
  document.getElementById("cluster-body").replaceChildren(...storeLine(status.store),
    ...(members.length ? [membersTable(members)] : []));
}

function loadBalancer(lb, now) {
  const id = "lb-" + lb.name;
  return el("section", { class: "card", "aria-labelledby": id },
    el("h2", { id }, lb.name), el("p", { class: "dns" }, lb.dns_name),
    el("h3", {}, "Zones and nodes"), zonesTable(lb, now),
    el("h3", {}, "Instances"), instancesTable(lb));
}

function changeRow(c) {
  return el("tr", {},
    el("td", { class: "nowrap" }, new Date(c.at_unix_ms).toLocaleTimeString()), el("td", {}, c.load_balancer),
    el("th", { scope: "row" }, c.instance_id),
    el("td", { class: "nowrap" }, badge(c.from, ""), " → ", badge(c.to, c.description)),
    el("td", {}, c.reason_code === "N/A" ? "–" : c.reason_code + ": " + c.description));
}

function render(status, now) {
  document.getElementById("load-balancers").replaceChildren(...status.load_balancers.map((lb) => loadBalancer(lb, now)));
  cluster(status);
  const changes = status.recent_changes.length
    ? status.recent_changes.map(changeRow)
    : [el("tr", {}, el("td", { colspan: "5" }, "None since start."))];
  document.querySelector("#changes tbody").replaceChildren(...changes);
  const instances = status.load_balancers.flatMap((lb) => lb.instances);
  const inService = instances.filter((i) => i.state === "InService").length;
  const reload = status.config.last_reload_error ? " · last reload refused: " + status.config.last_reload_error : "";
  const members = (status.members && status.members.length ? " · " + status.members.length + " cluster member(s)" : "") +
    (status.store && !status.store.reachable ? " · state store unreachable" : "");
  document.getElementById("summary").textContent = status.load_balancers.length + " load balancer(s), " + inService +
    " of " + instances.length + " instances InService" + members + " · configuration " + status.config.generation + reload +
    " · updated " + new Date(now).toLocaleTimeString();
  previous = { at: now, traffic: new Map(status.load_balancers.flatMap((lb) => lb.nodes.map((n) => [lb.name + "/" + n.zone, n.traffic]))) };
}

async function poll() {
  try {
    const response = await fetch("/status", { cache: "no-store" });
    if (!response.ok) throw new Error("/status answered " + response.status);
    render(await response.json(), Date.now());
  } catch (error) {
    const summary = document.getElementById("summary");
    summary.textContent = "Cannot read /status: " + error.message + " (retrying)";
    summary.classList.add("error");
    return;
  }
  document.getElementById("summary").classList.remove("error");
}

poll();
setInterval(poll, POLL_MS);
