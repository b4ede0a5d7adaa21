/* Live progress of a background task on its page: the patient's export (templates/patient/
   export.html) and the admin's task run and announcement (templates/admin/jobs_run.html,
   announcement.html), which include it only while the task runs. The element with data-task-url
   (id X) holds the <progress> bar (X-bar) and the status line (X-status). Polls
   GET /api/tasks/<id> with the session cookie and moves the bar. When the task ends, an export
   (data-download-url) shows its download link in place; any other page reloads once to show how
   it ended. Without JavaScript each page's Refresh link does the same job.
   ES5 and XMLHttpRequest only: patients use old phones. */
(function () {
  "use strict";
  var box = document.querySelector("[data-task-url]");
  var bar = box && document.getElementById(box.id + "-bar");
  var status = box && document.getElementById(box.id + "-status");
  if (!bar || !status || !window.XMLHttpRequest) {
    return;
  }
  var taskUrl = box.getAttribute("data-task-url");
  var downloadUrl = box.getAttribute("data-download-url");
  var unit = box.getAttribute("data-unit"); // what is counted, as in "3 of 8 visits"
  var delay = 1000;
  var started = new Date().getTime();
  var GIVE_UP_AFTER = 30 * 60 * 1000; // then the Refresh link (and an export's email) remain

  function text(node, value) {
    node.textContent = value; // never innerHTML: the status is text
  }

  function showDownload(task) {
    bar.max = 1;
    bar.value = 1;
    var rows = task.result && typeof task.result.rows === "number" ? task.result.rows : null;
    text(status, task.status || "Ready");
    var p = document.createElement("p");
    var link = document.createElement("a");
    link.className = "button";
    link.href = downloadUrl;
    text(link, "Download (CSV)");
    p.appendChild(link);
    box.appendChild(p);
    var preparing = document.getElementById(box.id + "-preparing");
    if (preparing) {
      text(preparing, "Your export is ready.");
    }
    var refresh = document.getElementById(box.id + "-refresh");
    if (refresh) {
      text(refresh, "The file was also emailed to you" +
        (rows === null ? "." : " (" + rows + (rows === 1 ? " visit)." : " visits).")));
    }
  }

  function show(task) {
    if (task.state === "SUCCESS" && downloadUrl) {
      showDownload(task);
      return false;
    }
    var line = task.status || task.state.toLowerCase();
    if (task.total > 0) {
      bar.max = task.total;
      bar.value = Math.min(task.current, task.total);
      line += ": " + task.current + " of " + task.total + (unit ? " " + unit : "");
    }
    text(status, line);
    if (task.state === "SUCCESS" || task.state === "FAILURE") {
      // The page says how it ended (a failed export offers to start again).
      window.setTimeout(function () { window.location.reload(); }, 1500);
      return false;
    }
    return true;
  }

  function poll() {
    var request = new XMLHttpRequest();
    request.open("GET", taskUrl, true);
    request.setRequestHeader("Accept", "application/json");
    request.onreadystatechange = function () {
      if (request.readyState !== 4 || request.status !== 200) {
        return; // signed out, or the server is away: leave it to the Refresh link
      }
      var task;
      try {
        task = JSON.parse(request.responseText);
      } catch (e) {
        return;
      }
      if (show(task) && new Date().getTime() - started < GIVE_UP_AFTER) {
        delay = Math.min(delay * 1.5, 10000);
        window.setTimeout(poll, delay);
      }
    };
    request.send();
  }

  window.setTimeout(poll, delay);
})();
