// Brand files: drag and drop or choose several files; each is streamed to the API's upload
// route with the session's CSRF token, shows its own progress bar, and ends as "stored" or
// with the server's reason for refusing it (the problem+json detail). Then the file list,
// with thumbnails, is fetched again from the page's fragment route.
(function () {
  "use strict";

  function item(list, name) {
    var li = document.createElement("li");
    var title = document.createElement("strong");
    title.textContent = name;
    var bar = document.createElement("progress");
    bar.max = 100; bar.value = 0;
    bar.setAttribute("aria-label", "Uploading " + name);
    var note = document.createElement("p");
    note.textContent = "Uploading…";
    li.appendChild(title); li.appendChild(bar); li.appendChild(note);
    list.appendChild(li);
    return { li: li, bar: bar, note: note };
  }

  function reason(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      return body.detail || body.title || ("HTTP " + xhr.status);
    } catch (e) { return "HTTP " + xhr.status; }
  }

  function uploadOne(zone, file, category, list) {
    return new Promise(function (resolve) {
      var row = item(list, file.name);
      var form = new FormData();
      form.append("category", category);  // before the file: the server reads it first
      form.append("file", file, file.name);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", zone.getAttribute("data-upload"));
      xhr.setRequestHeader("X-CSRF-Token", window.Omnify.csrf());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { row.bar.value = Math.round(100 * e.loaded / e.total); }
      });
      xhr.addEventListener("load", function () {
        row.bar.value = 100;
        if (xhr.status === 200 || xhr.status === 201) {
          row.li.className = "stored";
          row.note.textContent = xhr.status === 200 ? "Already stored (same content)." : "Stored.";
        } else {
          row.li.className = "refused";
          row.note.textContent = "Refused: " + reason(xhr);
        }
        row.li.setAttribute("data-status", row.li.className);
        resolve();
      });
      xhr.addEventListener("error", function () {
        row.li.className = "refused";
        row.note.textContent = "Refused: the upload did not reach the server.";
        row.li.setAttribute("data-status", "refused");
        resolve();
      });
      xhr.send(form);
    });
  }

  function refreshList(zone) {
    var box = document.getElementById("file-list-box");
    if (!box) { return; }
    fetch(zone.getAttribute("data-list"), { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { box.innerHTML = html; } });
  }

  function uploadAll(zone, files) {
    var list = document.getElementById("upload-results");
    var select = zone.querySelector("select[name=category]");
    var category = select ? select.value : "other";
    var jobs = Array.prototype.map.call(files, function (f) { return uploadOne(zone, f, category, list); });
    Promise.all(jobs).then(function () { refreshList(zone); });
  }

  function wire(root) {
    (root || document).querySelectorAll(".dropzone[data-upload]").forEach(function (zone) {
      if (zone.dataset.uploadWired) { return; }
      zone.dataset.uploadWired = "1";
      var input = zone.querySelector("input[type=file]");
      if (input) {
        input.addEventListener("change", function () {
          if (input.files.length) { uploadAll(zone, input.files); input.value = ""; }
        });
      }
      zone.addEventListener("dragover", function (e) { e.preventDefault(); zone.classList.add("dragover"); });
      zone.addEventListener("dragleave", function () { zone.classList.remove("dragover"); });
      zone.addEventListener("drop", function (e) {
        e.preventDefault();
        zone.classList.remove("dragover");
        if (e.dataTransfer && e.dataTransfer.files.length) { uploadAll(zone, e.dataTransfer.files); }
      });
    });
  }

  window.OmnifyUpload = { wire: wire };
  document.addEventListener("DOMContentLoaded", function () { wire(document); });
})();
