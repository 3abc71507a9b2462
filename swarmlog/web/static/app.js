// swarmlog web view: live updates (Server-Sent Events), data on demand, tidy filter URLs.
// Every value from the log goes into the page as text (textContent), never as markup.
"use strict";

(function () {
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function link(href, text, cls) {
    var a = el("a", cls || "id", text);
    a.setAttribute("href", href);
    return a;
  }

  function badge(shown) {
    return el("span", "badge c-" + shown.category + (shown.bad ? " bad" : ""), shown.event.event_type);
  }

  function taskLink(id) {
    return id ? link("/tasks/" + encodeURIComponent(id), id) : document.createTextNode("");
  }

  function agentLink(id) {
    return id ? link("/events?agent=" + encodeURIComponent(id), id) : document.createTextNode("");
  }

  function cell(row, child, cls) {
    var td = el("td", cls);
    if (child) td.appendChild(child);
    row.appendChild(td);
    return td;
  }

  function eventRow(shown, showTask) {
    var e = shown.event;
    var tr = el("tr", "fresh");
    tr.dataset.position = e.position;
    cell(tr, link("/events/" + e.position, e.position, " "), "num");
    var time = cell(tr, document.createTextNode(shown.when), "time");
    time.title = e.timestamp;
    cell(tr, badge(shown));
    cell(tr, document.createTextNode(e.source), "src");
    if (showTask) cell(tr, taskLink(e.task_id));
    cell(tr, agentLink(e.agent_id));
    var data = cell(tr, null, "data");
    if (shown.preview) {
      var more = el("button", "more", "▸");
      more.type = "button";
      more.dataset.position = e.position;
      data.appendChild(more);
    }
    data.appendChild(el("code", "", shown.preview));
    return tr;
  }

  function feedItem(shown) {
    var e = shown.event;
    var li = el("li", "fresh");
    li.dataset.position = e.position;
    li.appendChild(el("span", "time", shown.when.slice(11)));
    li.appendChild(badge(shown));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(taskLink(e.task_id));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(agentLink(e.agent_id));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "desc", shown.description));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "src", e.source));
    return li;
  }

  function setText(selector, value) {
    document.querySelectorAll(selector).forEach(function (node) { node.textContent = String(value); });
  }

  function showSummary(s) {
    Object.keys(s).forEach(function (key) {
      if (typeof s[key] === "number") setText('[data-figure="' + key + '"]', s[key]);
    });
    setText('[data-figure="tasks_completed"]', s.tasks_by_status.completed);
    Object.keys(s.tasks_by_status).forEach(function (status) {
      setText('[data-status="' + status + '"]', s.tasks_by_status[status]);
    });
    setText("#working-count", s.working + (s.working === 1 ? " task" : " tasks") + " assigned or running");
    var body = document.getElementById("running-rows");
    if (!body) return;
    body.textContent = "";
    if (!s.running.length) {
      var none = el("tr", "empty");
      var td = el("td", "", "nothing is running");
      td.colSpan = 6;
      none.appendChild(td);
      body.appendChild(none);
    }
    s.running.forEach(function (t) {
      var tr = el("tr");
      cell(tr, taskLink(t.task_id));
      cell(tr, el("span", "status s-" + t.status, t.status));
      cell(tr, agentLink(t.agent_id));
      cell(tr, document.createTextNode(t.since), "time");
      var tools = cell(tr, document.createTextNode(t.tool_calls), "num");
      if (t.tool_failures) tools.appendChild(el("span", "badtext", " (" + t.tool_failures + " failed)"));
      cell(tr, document.createTextNode(t.description), "desc");
      body.appendChild(tr);
    });
  }

  function follow(target) {
    var indicator = document.getElementById("live");
    var head = document.getElementById("head");
    var limit = parseInt(target.dataset.limit || "50", 10);
    var showTask = target.dataset.showTask !== "0";
    var isFeed = target.tagName === "UL";
    var source = new EventSource(target.dataset.stream);
    source.addEventListener("open", function () { indicator.dataset.state = "on"; });
    source.addEventListener("error", function () { indicator.dataset.state = "retry"; });
    source.addEventListener("reload", function () { source.close(); window.location.reload(); });
    source.addEventListener("batch", function (message) {
      var batch = JSON.parse(message.data);
      indicator.dataset.state = "on";
      head.textContent = String(batch.head);
      if (batch.summary) showSummary(batch.summary);
      if (!batch.rows.length) return;
      var empty = document.getElementById("no-events");
      if (empty) empty.remove();
      batch.rows.forEach(function (shown) {
        if (target.querySelector('[data-position="' + shown.event.position + '"]')) return;
        var node = isFeed ? feedItem(shown) : eventRow(shown, showTask);
        target.insertBefore(node, target.firstChild);
      });
      var items = target.querySelectorAll(isFeed ? "li" : "tr:not(.detail)");
      for (var i = limit; i < items.length; i++) items[i].remove();
      if (batch.skipped) {
        var note = document.getElementById("skipped") || el("p", "notice");
        note.id = "skipped";
        note.textContent = batch.skipped + " more events arrived at once; ";
        note.appendChild(link(window.location.href, "reload to see them all", " "));
        target.closest("section").prepend(note);
      }
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  function showData(button) {
    var row = button.closest("tr");
    var next = row.nextElementSibling;
    if (next && next.classList.contains("detail")) {
      next.remove();
      button.textContent = "▸";
      return;
    }
    button.textContent = "▾";
    fetch("/api/events/" + encodeURIComponent(button.dataset.position), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (event) {
        var detail = el("tr", "detail");
        var td = el("td");
        td.colSpan = row.children.length;
        var text = event.data_text !== undefined ? event.data_text : JSON.stringify(event.data, null, 2);
        td.appendChild(el("pre", "json", text));
        detail.appendChild(td);
        row.after(detail);
      })
      .catch(function (status) { button.textContent = "▸"; button.title = "could not load: " + status; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-stream]").forEach(function (target) {
      if (target.dataset.stream) follow(target);
    });
    document.addEventListener("click", function (event) {
      var button = event.target.closest("button.more");
      if (button) showData(button);
    });
    var filters = document.getElementById("filters");
    if (filters) {
      filters.addEventListener("submit", function () {
        filters.querySelectorAll("input, select").forEach(function (input) {
          if (input.value === "" || (input.name === "limit" && input.value === "50")) input.disabled = true;
        });
      });
      filters.querySelectorAll('input[type="checkbox"]').forEach(function (box) {
        box.addEventListener("change", function () { filters.requestSubmit(); });
      });
    }
  });
})();
